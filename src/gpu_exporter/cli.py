"""Command line: dcgm-exporter's flags and environment variables, plus our own.

One table (:data:`FLAGS`) maps every flag to its aliases, environment variable, upstream
default, unit and status. Precedence is flag > environment variable > default. This is the
only module that exits the process:

* 0 after a clean shutdown or ``--version``/``--help``;
* 1 when the exporter cannot run (no NVML library, listen failure, unreadable counters file);
* 2 for bad input (a malformed flag value, counters file or simulator profile), with one
  message naming the flag, file and line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import os
import re
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn

from gpu_exporter import __version__
from gpu_exporter.config import (
    Config,
    DcgmSettings,
    KubeSettings,
    ListenAddress,
    LogFormat,
    ServingLimits,
    WebConfig,
    WorkloadSettings,
)
from gpu_exporter.configfile import (
    ConfigFileError,
    FileSettings,
    load_config_file,
    parse_duration_ms,
)
from gpu_exporter.errors import BadInputError, StartupError, WebConfigError
from gpu_exporter.logs import setup_logging

Status = Literal["ok", "noop", "later"]
Kind = Literal["str", "bool", "int", "duration"]


@dataclass(frozen=True, slots=True)
class Flag:
    """One row of the flag table.

    Attributes:
        names: long flag first, then aliases (``-c``, ``-rbmn``).
        env: environment variable read when the flag is not given.
        default: upstream default, as text.
        kind: how the value is parsed (``duration``: a Go duration such as ``10s``).
        help: one-line help; units are named here.
        status: ``ok`` implemented; ``noop`` accepted, only meaningful with DCGM, logged once;
            ``later`` belongs to a feature not built yet: a non-default value is refused.
    """

    names: tuple[str, ...]
    env: str | None
    default: str
    kind: Kind
    help: str
    status: Status = "ok"

    @property
    def dest(self) -> str:
        """The attribute name argparse stores the value under."""
        return self.names[0].lstrip("-").replace("-", "_")


def _f(  # noqa: PLR0917  # one table row per call reads best positionally
    names: str, env: str | None, default: str, kind: Kind, help_: str, status: Status = "ok"
) -> Flag:
    return Flag(tuple(names.split()), env, default, kind, help_, status)


FLAGS: tuple[Flag, ...] = (
    _f("--collectors -f", "DCGM_EXPORTER_COLLECTORS", "/etc/dcgm-exporter/default-counters.csv",
       "str", "counters CSV file; re-read when it changes or on SIGHUP"),
    _f("--config-file", "DCGM_EXPORTER_CONFIG_FILE", "", "str",
       "YAML configuration file of dcgm-exporter 4.6+ (versions 1 and 2): the counters "
       "(metrics.file or metrics.fields) and the collect interval work; DCGM-only keys are "
       "validated without effect; per-field intervals (watchGroups, narrower collections) "
       "are refused. Flags and environment variables given explicitly win over it"),
    _f("--address -a", "DCGM_EXPORTER_LISTEN", ":9400", "str",
       "listen address host:port (':9400' = every interface, '[::]:9400' for IPv6)"),
    _f("--web-read-timeout", "DCGM_EXPORTER_WEB_READ_TIMEOUT", "10s", "duration",
       "longest time a client may take to send a request head (and the TLS handshake)"),
    _f("--web-write-timeout", "DCGM_EXPORTER_WEB_WRITE_TIMEOUT", "30s", "duration",
       "longest time a response may stay blocked on a client that does not read"),
    _f("--web-max-connections", "GPU_EXPORTER_WEB_MAX_CONNECTIONS", "0", "int",
       "open connections allowed (0: 1024; never above the descriptor limit minus 256)"),
    _f("--web-probe-address", "GPU_EXPORTER_WEB_PROBE_ADDRESS", "", "str",
       "also serve /health and /ready only, over plain HTTP without auth, on this host:port "
       "(for kubelet probes when the main port needs TLS client certificates or a password)"),
    _f("--max-concurrent-scrapes", "DCGM_EXPORTER_MAX_CONCURRENT_SCRAPES", "16", "int",
       "dcgm-exporter 4.8.4's cap on scrapes gathering at once (accepted, at least 1; no effect: "
       "scrapes here serve a pre-rendered snapshot and never wait on collection)", "noop"),
    _f("--enable-exporter-metrics", "DCGM_EXPORTER_ENABLE_EXPORTER_METRICS", "false", "bool",
       "dcgm-exporter 4.8.4's opt-in process metrics (accepted; process_* and gpu_exporter_* "
       "self-metrics are always exported here)", "noop"),
    _f("--collect-interval -c", "DCGM_EXPORTER_INTERVAL", "30000", "int",
       "collection interval in milliseconds (1 to 3600000: at most one hour)"),
    _f("--watch-max-keep-age", "DCGM_EXPORTER_WATCH_MAX_KEEP_AGE", "10m0s", "duration",
       "DCGM field-watch sample retention by age, for the watches set on a DCGM host engine "
       "(-r or --dcgm-local; without one it has no effect)", "noop"),
    _f("--watch-max-keep-samples", "DCGM_EXPORTER_WATCH_MAX_KEEP_SAMPLES", "0", "int",
       "DCGM field-watch sample retention by count (0: no limit), for the watches set on a "
       "DCGM host engine (-r or --dcgm-local; without one it has no effect)", "noop"),
    _f("--kubernetes -k", "DCGM_EXPORTER_KUBERNETES", "false", "bool",
       "attribute GPUs to pods through the kubelet pod-resources API"),
    _f("--kubernetes-gpu-id-type", "DCGM_EXPORTER_KUBERNETES_GPU_ID_TYPE", "uid", "str",
       "how the device plugin names GPUs: 'uid' (GPU UUIDs) or 'device-name' (nvidiaN)"),
    _f("--kubernetes-virtual-gpus", "KUBERNETES_VIRTUAL_GPUS", "false", "bool",
       "one series per container sharing a GPU, with a 'vgpu' label"),
    _f("--pod-resources-kubelet-socket", "DCGM_POD_RESOURCES_KUBELET_SOCKET",
       "/var/lib/kubelet/pod-resources/kubelet.sock", "str", "kubelet pod-resources socket"),
    _f("--nvidia-resource-names", "NVIDIA_RESOURCE_NAMES", "", "str",
       "comma-separated extra resource names counted as GPUs"),
    _f("--pod-resources-refresh-interval", "GPU_EXPORTER_POD_RESOURCES_REFRESH_INTERVAL",
       "5000", "int", "milliseconds between kubelet pod-resources refreshes (never per scrape)"),
    _f("--pod-resources-max-stale", "GPU_EXPORTER_POD_RESOURCES_MAX_STALE", "60000", "int",
       "milliseconds a pod index is kept while the kubelet is unreachable; pod labels are "
       "dropped after that"),
    _f("--pod-resources-timeout", "GPU_EXPORTER_POD_RESOURCES_TIMEOUT", "5000", "int",
       "milliseconds allowed for each kubelet pod-resources call"),
    _f("--kubernetes-enable-pod-labels", "DCGM_EXPORTER_KUBERNETES_ENABLE_POD_LABELS", "false",
       "bool", "copy pod labels onto series (watches this node's pods through the Kubernetes "
       "API; needs -k)"),
    _f("--kubernetes-enable-pod-uid", "DCGM_EXPORTER_KUBERNETES_ENABLE_POD_UID", "false", "bool",
       "add a pod_uid label (Kubernetes API; needs -k)"),
    _f("--kubernetes-pod-label-allowlist-regex",
       "DCGM_EXPORTER_KUBERNETES_POD_LABEL_ALLOWLIST_REGEX", "", "str",
       "comma-separated regexes of pod label keys to copy (empty: all)"),
    _f("--kubernetes-enable-dra", "KUBERNETES_ENABLE_DRA", "false", "bool",
       "attribute GPUs and MIG devices of DRA claims (driver gpu.nvidia.com; Kubernetes API "
       "ResourceSlices; needs -k)"),
    _f("--use-old-namespace -o", "DCGM_EXPORTER_USE_OLD_NAMESPACE", "false", "bool",
       "dcgm-exporter 1.x label names (uuid, pod_name, pod_namespace, container_name)"),
    _f("--devices -d", "DCGM_EXPORTER_DEVICES_STR", "f", "str",
       "GPUs to watch: 'f' all, 'g[:list]' GPUs, 'i[:list]' MIG GPU instances"),
    _f("--switch-devices -s", "DCGM_EXPORTER_OTHER_DEVICES_STR", "f", "str",
       "NVSwitches and NVLinks to watch", "later"),
    _f("--cpu-devices -p", "DCGM_EXPORTER_CPU_DEVICES_STR", "f", "str",
       "Grace CPUs and cores to watch", "later"),
    _f("--remote-hostengine-info -r", "DCGM_REMOTE_HOSTENGINE_INFO", "", "str",
       "host:port (port 5555 when left out) or unix://PATH of a running DCGM host engine "
       "(the GPU Operator's nvidia-dcgm:5555): the counters file's profiling fields of GPUs "
       "without GPM (before Hopper) come from it, through the host's libdcgm.so.4 (or .so.3); "
       "everything else still comes from NVML, and without an engine or library only those "
       "fields are missing (gpu_exporter_dcgm_up 0). As in dcgm-exporter, outside Kubernetes "
       "(-k) its host part becomes the hostname label"),
    _f("--dcgm-local", "GPU_EXPORTER_DCGM_LOCAL", "false", "bool",
       "as -r 127.0.0.1:5555 (a DCGM host engine already running on this machine, e.g. the "
       "nvidia-dcgm systemd service), keeping this host's name as the hostname label. The "
       "exporter never starts a DCGM engine of its own: one profiler per machine"),
    _f("--no-hostname -n", "DCGM_EXPORTER_NO_HOSTNAME", "false", "bool",
       "drop the hostname label"),
    _f("--hostname-label", "GPU_EXPORTER_HOSTNAME_LABEL", "Hostname", "str",
       "name of the hostname label, as the dcgm-exporter you migrate from spells it: "
       "'Hostname' (every release up to 4.5.3-4.8.2; the default, which existing dashboards "
       "and alerts query) or 'hostname' (4.6.0-4.8.3, 4.6.1-4.8.4)"),
    _f("--fake-gpus", "DCGM_EXPORTER_USE_FAKE_GPUS", "false", "bool",
       "DCGM fake entities (accepted, no effect; see --simulate)", "noop"),
    _f("--configmap-data -m", "DCGM_EXPORTER_CONFIGMAP_DATA", "none", "str",
       "read the counters from ConfigMap namespace:name (needs the Kubernetes API)", "later"),
    _f("--web-config-file", "DCGM_EXPORTER_WEB_CONFIG_FILE", "", "str",
       "exporter-toolkit web config file (TLS, mTLS, basic auth, headers; re-read on change)"),
    _f("--web-systemd-socket", "DCGM_EXPORTER_SYSTEMD_SOCKET", "false", "bool",
       "serve on the socket passed by systemd socket activation instead of --address"),
    _f("--xid-count-window-size -x", "DCGM_EXPORTER_XID_COUNT_WINDOW_SIZE", "300000", "int",
       "window of DCGM_EXP_XID_ERRORS_COUNT in milliseconds"),
    _f("--clock-events-count-window-size", "DCGM_EXPORTER_CLOCK_EVENTS_COUNT_WINDOW_SIZE",
       "300000", "int", "window of DCGM_EXP_CLOCK_EVENTS_COUNT in milliseconds"),
    _f("--replace-blanks-in-model-name -rbmn", "DCGM_EXPORTER_REPLACE_BLANKS_IN_MODEL_NAME",
       "false", "bool", "replace spaces in the modelName label with '-'"),
    _f("--container-labels", "DCGM_EXPORTER_CONTAINER_LABELS", "false", "bool",
       "labels of the container using a GPU, read from the container runtime", "later"),
    _f("--container-runtime-socket", "DCGM_CONTAINER_RUNTIME_SOCKET", "", "str",
       "container runtime socket for --container-labels", "later"),
    _f("--hpc-job-mapping-dir", "DCGM_HPC_JOB_MAPPING_DIR", "", "str",
       "directory of files named <gpu> or <gpu>.<GPU_I_ID> listing HPC job ids, one per "
       "line; series of those GPUs are exported once per job with an hpc_job label"),
    _f("--mig-device-fields-once", "GPU_EXPORTER_MIG_DEVICE_FIELDS_ONCE", "false", "bool",
       "on MIG-enabled GPUs, export device-level fields (clocks, power, temperature, ...) "
       "once per GPU without GPU_I_PROFILE/GPU_I_ID, instead of repeated on every MIG "
       "instance as dcgm-exporter does (sum() then counts each GPU once)"),
    _f("--omit-unsupported-zeros", "GPU_EXPORTER_OMIT_UNSUPPORTED_ZEROS", "false", "bool",
       "leave out DCGM_FI_DEV_MEMORY_TEMP on GPUs without a memory sensor and "
       "DCGM_FI_DEV_VGPU_LICENSE_STATUS outside vGPU guests, where dcgm-exporter exports 0"),
    _f("--workload-metrics", "GPU_EXPORTER_WORKLOAD_METRICS", "false", "bool",
       "per-workload GPU use (gpu_exporter_workload_*: SM, memory, encoder and decoder "
       "utilisation, memory, energy, processes per container, pod, Slurm job or systemd "
       "service) from NVML's per-process data and each process's cgroup; needs the host's "
       "/proc (hostPID, or the host's /proc mounted read-only: see --procfs-root). Off: no "
       "per-process NVML calls"),
    _f("--procfs-root", "GPU_EXPORTER_PROCFS_ROOT", "/proc", "str",
       "the host's /proc, for --workload-metrics (e.g. /host/proc when mounted there)"),
    _f("--workload-pid-labels", "GPU_EXPORTER_WORKLOAD_PID_LABELS", "false", "bool",
       "with --workload-metrics: one series per process, with a pid label (high "
       "cardinality: every process start is a new series)"),
    _f("--container-engine-socket", "GPU_EXPORTER_CONTAINER_ENGINE_SOCKET", "", "str",
       "with --workload-metrics: Docker or Podman API socket (e.g. /run/docker.sock) asked "
       "for container names (container label); empty: no engine is ever contacted"),
    _f("--debug", "DCGM_EXPORTER_DEBUG", "false", "bool", "debug logging"),
    _f("--log-format", "DCGM_EXPORTER_LOG_FORMAT", "text", "str",
       "log format on stderr: 'text' or 'json'"),
    _f("--enable-dcgm-log", "DCGM_EXPORTER_ENABLE_DCGM_LOG", "false", "bool",
       "DCGM internal log (no DCGM here: accepted, has no effect)", "noop"),
    _f("--dcgm-log-level", "DCGM_EXPORTER_DCGM_LOG_LEVEL", "NONE", "str",
       "DCGM internal log level (accepted, has no effect)", "noop"),
    _f("--dump-enabled", "DCGM_EXPORTER_DUMP_ENABLED", "false", "bool",
       "per-scrape JSON debug dumps", "later"),
    _f("--dump-directory", "DCGM_EXPORTER_DUMP_DIRECTORY",
       "/tmp/dcgm-exporter-debug", "str",  # noqa: S108  # upstream's default, never written
       "directory of debug dumps", "later"),
    _f("--dump-retention", "DCGM_EXPORTER_DUMP_RETENTION", "24", "int",
       "hours to keep debug dumps", "later"),
    _f("--dump-compression", "DCGM_EXPORTER_DUMP_COMPRESSION", "true", "bool",
       "gzip debug dumps", "later"),
    _f("--disable-startup-validate", "DISABLE_STARTUP_VALIDATE", "false", "bool",
       "skip the startup library check (accepted; failures are per GPU here anyway)", "noop"),
    _f("--enable-gpu-bind-unbind-watch", "DCGM_EXPORTER_ENABLE_GPU_BIND_UNBIND_WATCH", "false",
       "bool", "re-enumerate GPUs on bind/unbind (lost GPUs are re-probed every cycle anyway)",
       "noop"),
    _f("--gpu-bind-unbind-poll-interval", "DCGM_EXPORTER_GPU_BIND_UNBIND_POLL_INTERVAL", "1s",
       "duration", "poll interval of the bind/unbind watch (accepted, has no effect)", "noop"),
    _f("--enable-pprof", "DCGM_EXPORTER_ENABLE_PPROF", "false", "bool",
       "Go pprof routes (not applicable to this exporter: accepted, has no effect)", "noop"),
    _f("--simulate", "GPU_EXPORTER_SIMULATE", "", "str",
       "run on simulated GPUs: a profile name (h100x8, a100-mig, t4x4, l4x2, rtx4090) or a "
       "profile YAML file; never used unless given"),
    _f("--simulate-seed", "GPU_EXPORTER_SIMULATE_SEED", "0", "int",
       "seed of the simulated GPUs' dynamics"),
)

_TRUE = {"true", "1", "t", "yes"}
_FALSE = {"false", "0", "f", "no", ""}


class UsageError(ValueError):
    """Bad input on the command line or in the environment; the message names the flag.

    The message is one line whatever the input held: a value or path with control characters
    (a newline in a file name) is shown with them escaped (:func:`one_line`).
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def one_line(text: str) -> str:
    """``text`` with every non-printable character escaped as in a Python literal (pure)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser for :data:`FLAGS`; every default is ``None`` (resolved later)."""
    parser = argparse.ArgumentParser(
        prog="gpu-exporter",
        description="Prometheus exporter for NVIDIA GPUs, compatible with dcgm-exporter.",
        epilog="Precedence: flag > environment variable > default.",
    )
    for flag in FLAGS:
        env = f" [${flag.env}]" if flag.env else ""
        default = f" (default: {flag.default!r})" if flag.default else ""
        help_ = f"{flag.help}{default}{env}"
        if flag.status == "later":
            help_ += " - not supported yet"
        if flag.kind == "bool":
            parser.add_argument(
                *flag.names, dest=flag.dest, nargs="?", const="true", default=None,
                metavar="BOOL", help=help_,
            )
        else:
            parser.add_argument(*flag.names, dest=flag.dest, default=None, help=help_)
    parser.add_argument("--version", "-v", action="version",
                        version=f"gpu-exporter {__version__}")
    return parser


def resolve(namespace: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str]:
    """Raw text value of each flag: flag, else environment variable, else default."""
    values = {}
    for flag in FLAGS:
        given = getattr(namespace, flag.dest)
        if given is None and _env_sets(flag, environ):
            given = environ[flag.env or ""]
        values[flag.dest] = flag.default if given is None else given
    return values


def _env_sets(flag: Flag, environ: Mapping[str, str]) -> bool:
    """Whether the flag's environment variable sets it.

    As in dcgm-exporter (urfave/cli), an integer flag's variable set to the empty string is
    unset (the default applies); an empty string or boolean variable is a value.
    """
    if not flag.env or flag.env not in environ:
        return False
    return not (flag.kind == "int" and environ[flag.env] == "")


def explicit(namespace: argparse.Namespace, environ: Mapping[str, str]) -> frozenset[str]:
    """Flags given on the command line or through their environment variable."""
    return frozenset(
        flag.dest for flag in FLAGS
        if getattr(namespace, flag.dest) is not None or _env_sets(flag, environ)
    )


def apply_config_file(
    values: Mapping[str, str], given: frozenset[str], settings: FileSettings,
) -> tuple[dict[str, str], str | None]:
    """Values after the ``--config-file`` settings; explicit flags and env vars win (pure).

    Returns:
        The merged values, and the inline counters CSV to use instead of ``-f`` (``None``
        when the file has no ``metrics.fields`` or ``-f`` was given explicitly).
    """
    merged = dict(values)
    inline = settings.counters_csv if "collectors" not in given else None
    if settings.counters_file is not None and "collectors" not in given:
        merged["collectors"] = settings.counters_file
    if settings.interval_ms is not None and "collect_interval" not in given:
        merged["collect_interval"] = str(settings.interval_ms)
    return merged, inline


def _duration_ms(values: Mapping[str, str], dest: str) -> int:
    try:
        return parse_duration_ms(values[dest], allow_zero=True)
    except ValueError as exc:
        raise UsageError(f"{_flag(dest).names[0]}: {exc}") from None


def _timeout(values: Mapping[str, str], dest: str) -> float:
    ms = _duration_ms(values, dest)
    if not 100 <= ms <= 3_600_000:  # 100 ms .. 1 h
        raise UsageError(f"{_flag(dest).names[0]}: must be between 100ms and 1h, got "
                         f"{values[dest].strip()!r}")
    return ms / 1000


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """Long flags written with one dash (``-collect-interval 500``) as dcgm-exporter takes them.

    dcgm-exporter parses with Go's flag package, where ``-name`` and ``--name`` are the same;
    argparse would read ``-collectors`` as ``-c ollectors``. Pure; stops at ``--``.
    """
    long_names = {name[2:] for flag in FLAGS for name in flag.names if name.startswith("--")}
    long_names.add("version")
    out: list[str] = []
    for position, arg in enumerate(argv):
        if arg == "--":
            out.extend(argv[position:])
            break
        name = arg[1:].split("=", 1)[0]
        single = arg.startswith("-") and not arg.startswith("--") and name in long_names
        out.append("-" + arg if single else arg)
    return out


def _flag(dest: str) -> Flag:
    return next(f for f in FLAGS if f.dest == dest)


def _bool(values: Mapping[str, str], dest: str) -> bool:
    raw = values[dest].strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    flag = _flag(dest)
    raise UsageError(f"{flag.names[0]}: expected true or false, got {values[dest]!r}")


INT64_MAX = 2**63 - 1
"""Largest value of an integer flag without a tighter bound (Go's int, as upstream parses)."""

MAX_COLLECT_INTERVAL_MS = 3_600_000
"""Largest ``-c`` (one hour): beyond it a snapshot would outlive any scrape's usefulness."""

MAX_WINDOW_MS = 30 * 86_400_000
"""Largest XID / clock-event window (30 days)."""


_PATH_FLAGS = frozenset({
    "collectors", "config_file", "web_config_file", "pod_resources_kubelet_socket",
    "hpc_job_mapping_dir", "simulate", "dump_directory", "container_runtime_socket",
    "procfs_root", "container_engine_socket",
})
"""Flags naming files: any bytes a file name may hold are fine there."""


def _utf8(text: str) -> bool:
    """False for text holding bytes that were not UTF-8 (surrogate escapes of argv/environ)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _shown(text: str, limit: int = 40) -> str:
    """A value for an error message: repr, cut short when it is long."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def _int(
    values: Mapping[str, str], dest: str, *, minimum: int = 0, maximum: int = INT64_MAX,
) -> int:
    flag = _flag(dest)
    text = values[dest].strip()
    if not _INTEGER.fullmatch(text) or len(text) > 25:
        kind = "an integer" if len(text) <= 25 else f"an integer of at most {maximum}"
        raise UsageError(f"{flag.names[0]}: expected {kind}, got {_shown(values[dest])}")
    number = int(text)
    if number < minimum:
        raise UsageError(f"{flag.names[0]}: must be at least {minimum}, got {number}")
    if number > maximum:
        raise UsageError(f"{flag.names[0]}: must be at most {maximum}, got {number}")
    return number


def parse_address(text: str, flag: str = "--address") -> ListenAddress:
    """Parse ``host:port``, ``:port`` or ``[v6]:port``."""
    raw = text.strip()
    host, sep, port_text = raw.rpartition(":")
    if not sep:
        raise UsageError(f"{flag}: expected host:port such as ':9400', got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"{flag}: port must be a number, got {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"{flag}: port must be 0-65535, got {port}")
    return ListenAddress(host or None, port)


def remote_hostname(text: str) -> str:
    """The host part of ``-r host:port`` (``[v6]:port`` too); the text as is without a port.

    dcgm-exporter labels series with it outside Kubernetes, ``localhost`` included.
    """
    host, sep, _ = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    if not sep or ":" in host or "[" in host:
        return text  # no port, or an unbracketed IPv6 address: upstream keeps it whole
    return host


def _check_unsupported(values: Mapping[str, str]) -> list[str]:
    """Refuse 'later' flags set away from their default; list 'noop' flags that were set."""
    noops = []
    for flag in FLAGS:
        value = values[flag.dest]
        if value.strip().lower() == flag.default.lower():
            continue
        if flag.kind == "duration" and (
            _duration_ms(values, flag.dest) == parse_duration_ms(flag.default, allow_zero=True)
        ):
            continue
        if flag.kind == "bool" and flag.default == "false" and value.strip().lower() in _FALSE:
            continue
        if flag.status == "later":
            raise UsageError(
                f"{flag.names[0]}: not supported yet by gpu-exporter ({flag.help}); "
                "remove the flag or its environment variable"
                + (f" {flag.env}" if flag.env else "")
            )
        if flag.status == "noop":
            noops.append(flag.names[0])
    return noops


def build_config(
    values: Mapping[str, str], environ: Mapping[str, str], *, inline_counters: str | None = None,
) -> Config:
    """Turn resolved flag text into a :class:`Config`; raises :class:`UsageError`.

    ``inline_counters``: counters CSV text from the ``--config-file``'s ``metrics.fields``,
    used instead of the ``-f`` file.
    """
    for flag in FLAGS:
        if flag.dest not in _PATH_FLAGS and not _utf8(values[flag.dest]):
            env = f" (or {flag.env})" if flag.env else ""
            raise UsageError(f"{flag.names[0]}{env}: not valid UTF-8 text, got "
                             f"{_shown(values[flag.dest])}")
    interval_ms = _int(values, "collect_interval", minimum=1,
                       maximum=MAX_COLLECT_INTERVAL_MS)
    _int(values, "max_concurrent_scrapes", minimum=1)  # validated as upstream; no effect here
    _int(values, "watch_max_keep_samples")
    id_type = values["kubernetes_gpu_id_type"].strip()
    if id_type not in {"uid", "device-name"}:
        raise UsageError(
            f"--kubernetes-gpu-id-type: expected 'uid' or 'device-name', got {id_type!r}"
        )
    hostname_label = values["hostname_label"].strip()
    if hostname_label not in {"Hostname", "hostname"}:
        raise UsageError(
            f"--hostname-label: expected 'Hostname' or 'hostname', got {hostname_label!r}"
        )
    log_format = values["log_format"].strip()
    if log_format not in {"text", "json"}:
        raise UsageError(f"--log-format: expected 'text' or 'json', got {log_format!r}")
    node_name = environ.get("NODE_NAME", "")
    if not _utf8(node_name):
        raise UsageError(f"NODE_NAME: not valid UTF-8 text ({_shown(node_name)}); it names "
                         "the node in labels, which must be UTF-8")
    hostname: str | None = None
    dcgm = _dcgm_settings(values)
    if not _bool(values, "no_hostname"):
        remote = values["remote_hostengine_info"].strip()
        if remote and not _bool(values, "kubernetes") and not remote.startswith(UNIX_PREFIX):
            hostname = remote_hostname(remote)
        else:
            hostname = node_name or socket.gethostname()
            if not _utf8(hostname):
                raise UsageError(f"the host name is not valid UTF-8 text ({_shown(hostname)}); "
                                 "set NODE_NAME or pass -n")
    resource_names = tuple(
        n.strip() for n in values["nvidia_resource_names"].split(",") if n.strip()
    )
    refresh_ms = _int(values, "pod_resources_refresh_interval", minimum=100,
                      maximum=MAX_COLLECT_INTERVAL_MS)
    max_stale_ms = _int(values, "pod_resources_max_stale", minimum=refresh_ms,
                        maximum=MAX_WINDOW_MS)
    kube = KubeSettings(
        enabled=_bool(values, "kubernetes"),
        pod_labels=_bool(values, "kubernetes_enable_pod_labels"),
        pod_uid=_bool(values, "kubernetes_enable_pod_uid"),
        label_allowlist=_allowlist(values["kubernetes_pod_label_allowlist_regex"]),
        dra=_bool(values, "kubernetes_enable_dra"),
        node_name=environ.get("NODE_NAME") or None,
        socket=Path(values["pod_resources_kubelet_socket"]),
        gpu_id_type="uid" if id_type == "uid" else "device-name",
        virtual_gpus=_bool(values, "kubernetes_virtual_gpus"),
        resource_names=resource_names,
        refresh_interval=refresh_ms / 1000,
        max_stale=max_stale_ms / 1000,
        deadline=_int(values, "pod_resources_timeout", minimum=1,
                      maximum=MAX_COLLECT_INTERVAL_MS) / 1000,
        workloads=_bool(values, "workload_metrics"),
    )
    web = _load_web_config(values["web_config_file"].strip())
    fmt: LogFormat = "json" if log_format == "json" else "text"
    path = (Path(values["config_file"].strip()) if inline_counters is not None
            else counters_path(values["collectors"]))
    return Config(
        counters_path=path,
        counters_inline=inline_counters,
        address=parse_address(values["address"]),
        collect_interval=interval_ms / 1000,
        devices=values["devices"].strip(),
        hostname=hostname,
        hostname_label=hostname_label,
        old_names=_bool(values, "use_old_namespace"),
        replace_blanks=_bool(values, "replace_blanks_in_model_name"),
        xid_window=_int(values, "xid_count_window_size", minimum=1,
                        maximum=MAX_WINDOW_MS) / 1000,
        clock_events_window=_int(values, "clock_events_count_window_size", minimum=1,
                                 maximum=MAX_WINDOW_MS) / 1000,
        simulate=values["simulate"].strip() or None,
        simulate_seed=_int(values, "simulate_seed", maximum=2**64 - 1),
        kube=kube,
        systemd_socket=_bool(values, "web_systemd_socket"),
        hpc_job_dir=Path(values["hpc_job_mapping_dir"]) if values["hpc_job_mapping_dir"] else None,
        mig_device_fields_once=_bool(values, "mig_device_fields_once"),
        omit_unsupported_zeros=_bool(values, "omit_unsupported_zeros"),
        workloads=_workload_settings(values),
        dcgm=dcgm,
        web=web,
        limits=ServingLimits(
            read_timeout=_timeout(values, "web_read_timeout"),
            write_timeout=_timeout(values, "web_write_timeout"),
            max_connections=_int(values, "web_max_connections"),
            probe_address=(parse_address(values["web_probe_address"], "--web-probe-address")
                           if values["web_probe_address"].strip() else None),
        ),
        log_format=fmt,
        debug=_bool(values, "debug"),
    )


def _workload_settings(values: Mapping[str, str]) -> WorkloadSettings | None:
    """``--workload-metrics`` and its companions; a companion without it is refused."""
    enabled = _bool(values, "workload_metrics")
    pid_labels = _bool(values, "workload_pid_labels")
    root = values["procfs_root"]
    socket_path = values["container_engine_socket"].strip()
    if not enabled:
        for dest, given in (("workload_pid_labels", pid_labels),
                            ("procfs_root", root != _flag("procfs_root").default),
                            ("container_engine_socket", bool(socket_path))):
            if given:
                raise UsageError(f"{_flag(dest).names[0]}: needs --workload-metrics "
                                 "(GPU_EXPORTER_WORKLOAD_METRICS=true)")
        return None
    if not root.strip() or not Path(root).is_dir():
        raise UsageError(f"--procfs-root: {root!r} is not a directory (the host's /proc)")
    return WorkloadSettings(procfs_root=root, pid_labels=pid_labels,
                            engine_socket=Path(socket_path) if socket_path else None)


UNIX_PREFIX = "unix://"
"""DCGM's prefix of a host engine address that is a unix socket path."""
LOCAL_ENGINE = "127.0.0.1:5555"
"""``--dcgm-local``: nv-hostengine's default bind address and port."""


def _dcgm_settings(values: Mapping[str, str]) -> DcgmSettings | None:
    """The DCGM engine asked for by ``-r`` or ``--dcgm-local`` (not both), else None."""
    remote = values["remote_hostengine_info"].strip()
    local = _bool(values, "dcgm_local")
    if remote and local:
        raise UsageError("--dcgm-local and -r/--remote-hostengine-info (or their environment "
                         "variables) name two DCGM host engines: give one of them")
    if not remote and not local:
        return None
    keep_age_ms = _duration_ms(values, "watch_max_keep_age")
    keep_samples = _int(values, "watch_max_keep_samples", maximum=2**31 - 1)
    if not remote:
        return DcgmSettings(LOCAL_ENGINE, flag="--dcgm-local", max_keep_age=keep_age_ms / 1000,
                            max_keep_samples=keep_samples)
    unix = remote.startswith(UNIX_PREFIX)
    address = remote.removeprefix(UNIX_PREFIX) if unix else remote
    if not address or (unix and not address.startswith("/")):
        raise UsageError("-r/--remote-hostengine-info: expected host:port or unix:///absolute/"
                         f"path of a DCGM host engine, got {remote!r}")
    return DcgmSettings(address, unix_socket=unix, flag="-r", max_keep_age=keep_age_ms / 1000,
                        max_keep_samples=keep_samples)


def _allowlist(text: str) -> tuple[str, ...]:
    """``--kubernetes-pod-label-allowlist-regex``: comma-separated regexes, each compiled once."""
    patterns = tuple(p.strip() for p in text.split(",") if p.strip())
    pattern = ""
    try:
        for pattern in patterns:
            re.compile(pattern)
    except re.error as exc:
        raise UsageError(
            f"--kubernetes-pod-label-allowlist-regex: {pattern!r} is not a valid regular "
            f"expression: {exc}"
        ) from None
    return patterns


def packaged_counters() -> Path:
    """The default counters file shipped inside the package."""
    return Path(__file__).with_name("data") / "default-counters.csv"


def counters_path(value: str) -> Path:
    """The counters file to use: upstream's default path falls back to the packaged copy.

    dcgm-exporter's image has ``/etc/dcgm-exporter/default-counters.csv``; a bare host or a
    virtual environment does not, so when the default path is asked for and missing, the
    same file shipped with the package is used. An explicit path is never replaced.
    """
    path = Path(value)
    if value == _flag("collectors").default and not path.exists():
        return packaged_counters()
    return path


def missing_counters(value: str) -> str | None:
    """The message for a ``-f`` value whose counters file does not exist, else None."""
    if counters_path(value).exists():
        return None
    tried = [value]
    if value == _flag("collectors").default:
        tried.append(f"{packaged_counters()} (the copy shipped with the package: reinstall)")
    return (f"-f/--collectors: no counters file at {' or '.join(tried)}; pass -f PATH or set "
            "DCGM_EXPORTER_COLLECTORS")


def _load_config_file(path: str) -> FileSettings:
    try:
        return load_config_file(Path(path))
    except ConfigFileError as exc:
        raise UsageError(f"--config-file: {exc}") from None


def _load_web_config(path: str) -> WebConfig:
    if not path:
        return WebConfig()
    web: WebConfig
    try:
        # Imported here: a run without a web config file never loads the parser.
        from gpu_exporter.webconfig import load_web_config, ssl_context  # noqa: PLC0415

        web = load_web_config(Path(path))
        if web.tls is not None:
            ssl_context(web.tls)  # the certificate, key and CA files too, before anything runs
    except WebConfigError as exc:
        raise UsageError(f"--web-config-file: {exc}") from None
    return web


def _fail(message: str, code: int) -> NoReturn:
    print(f"gpu-exporter: {one_line(message)}", file=sys.stderr)
    raise SystemExit(code)


_CA_ENV = ("SSL_CERT_FILE", "SSL_CERT_DIR")


@contextlib.contextmanager
def _no_default_ca_bundle() -> Iterator[None]:
    """While the server's modules are imported, OpenSSL's default CA locations name nothing.

    Importing aiohttp builds two client SSL contexts at once, each reading the system CA
    bundle (about 40 ms and 1 MiB each, a fifth of the start-up). The exporter never uses
    them: its one aiohttp client (the Kubernetes API watch) makes its own context. With
    the variables pointing at an empty file those two contexts hold no CA (a client using
    them would fail to verify: closed, not open); the environment is restored right after
    the import, before any context of the exporter is made.
    """
    saved = {name: os.environ.get(name) for name in _CA_ENV}
    for name in _CA_ENV:
        os.environ[name] = os.devnull
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def needs_ssl(config: Config) -> bool:
    """True when the run makes a TLS connection: a TLS listener or the Kubernetes API watch.

    Nothing else speaks TLS from Python: the kubelet and the DCGM host engine are reached
    through their own libraries or unix sockets, and TLS cannot be switched on by a reload
    of the web config (``webstate``), so this holds for the whole run.
    """
    return config.web.tls is not None or config.kube.needs_api


_BUILTIN_HASHES = ("_md5", "_sha1", "_blake2", "_sha3",
                   *(("_sha2",) if sys.version_info >= (3, 12) else ("_sha256", "_sha512")))
"""The modules ``hashlib`` falls back on when OpenSSL's ``_hashlib`` is missing."""


def _without_ssl() -> None:
    """Keep OpenSSL (``ssl``, ``_hashlib``, libssl, libcrypto: about 7 MiB of RSS) out.

    Called before the server's modules are imported, in a run that makes no TLS connection
    (:func:`needs_ssl`). ``asyncio``, aiohttp, ``http.client`` and ``urllib`` import ``ssl``
    only when it can be imported, and go without TLS support otherwise; ``hashlib`` uses
    Python's own implementations of the same hashes when ``_hashlib`` cannot be imported (only
    where this Python has them all). A ``None`` entry in ``sys.modules`` is Python's
    documented way to make an import fail. A process that already loaded either module (an
    embedding program, the test suite) keeps it.
    """
    blocked = ["ssl"]
    if all(importlib.util.find_spec(name) is not None for name in _BUILTIN_HASHES):
        blocked.append("_hashlib")
    for name in blocked:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]


_NOOP_NOTES = {
    "--max-concurrent-scrapes": "scrapes serve a pre-rendered snapshot, so concurrent scrapes "
                                "cost nothing and never wait on collection",
    "--enable-exporter-metrics": "process and gpu_exporter_* self-metrics are always exported",
}


_DCGM_WATCH_FLAGS = frozenset({"--watch-max-keep-age", "--watch-max-keep-samples"})


@dataclass(frozen=True, slots=True)
class CommandLine:
    """What the command line, environment and ``--config-file`` resolve to."""

    config: Config
    values: Mapping[str, str]
    settings: FileSettings
    noops: list[str]


def parse_command_line(argv: Sequence[str] | None, environ: Mapping[str, str]) -> CommandLine:
    """Flags, environment and ``--config-file`` to a :class:`Config` (reads only files).

    Raises:
        UsageError: bad input, naming the flag, variable, file or key.
        SystemExit: argparse's own usage errors (exit 2), ``--help`` and ``--version``.
    """
    namespace = build_parser().parse_args(
        normalize_argv(sys.argv[1:] if argv is None else argv))
    values = resolve(namespace, environ)
    inline = None
    settings = FileSettings()
    if values["config_file"].strip():
        settings = _load_config_file(values["config_file"].strip())
        values, inline = apply_config_file(values, explicit(namespace, environ), settings)
    noops = _check_unsupported(values)
    config = build_config(values, environ, inline_counters=inline)
    return CommandLine(config, values, settings, noops)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``gpu-exporter`` console script."""
    try:
        parsed = parse_command_line(argv, os.environ)
    except UsageError as exc:
        _fail(str(exc), 2)
    config, values, settings, noops = (parsed.config, parsed.values, parsed.settings,
                                       parsed.noops)
    missing = (None if config.counters_inline is not None
               else missing_counters(values["collectors"]))
    if missing:
        _fail(missing, 2)
    setup_logging(config.log_format, debug=config.debug)
    log = logging.getLogger("gpu_exporter")
    if settings.no_effect:
        log.info("--config-file: %s accepted for compatibility, no effect here (no DCGM; "
                 "scrapes serve a pre-rendered snapshot)", ", ".join(settings.no_effect))
    for name in noops:
        if config.dcgm is not None and name in _DCGM_WATCH_FLAGS:
            continue  # in effect: the watches set on the engine use them
        if name in _NOOP_NOTES:
            log.info("%s: accepted for compatibility, no effect: %s", name, _NOOP_NOTES[name])
            continue
        log.info("%s has no effect without DCGM; accepted for compatibility", name)
    if config.dcgm is not None:
        label = (f"{config.hostname_label}={config.hostname!r}" if config.hostname is not None
                 else "no hostname label (-n)")
        log.info("%s %s: DCGM host engine for the profiling fields of GPUs without GPM; "
                 "everything else comes from NVML; %s", config.dcgm.flag,
                 config.dcgm.address, label)
    if not needs_ssl(config):
        _without_ssl()
    with _no_default_ca_bundle():
        from gpu_exporter.server import serve  # noqa: PLC0415  # keeps --help/--version light

    try:
        serve(config)
    except BadInputError as exc:
        _fail(str(exc), 2)
    except StartupError as exc:
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        pass
    # Everything the exporter owns is closed by now (listener, NVML, kubelet channel, scratch
    # directory). Skip the interpreter's teardown, which only frees memory and would run
    # beside the XID thread still inside its uninterruptible NVML wait: exit right away.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def flags_markdown() -> str:
    """The flag table as Markdown, for docs/flags.md (kept current by a test)."""
    status = {"ok": "supported", "noop": "accepted, no effect (DCGM only)",
              "later": "not supported yet"}
    rows = [
        "# Flags and environment variables",
        "",
        "Generated from `gpu_exporter.cli.FLAGS` by `python -m gpu_exporter.cli --markdown`.",
        "Precedence: flag > environment variable > default. Booleans take `true` or `false`;",
        "a boolean flag given without a value means `true`.",
        "",
        "| Flag | Environment variable | Default | Status | Meaning |",
        "|---|---|---|---|---|",
    ]
    for flag in FLAGS:
        names = ", ".join(f"`{n}`" for n in flag.names)
        env = f"`{flag.env}`" if flag.env else ""
        default = f"`{flag.default}`" if flag.default else "(empty)"
        rows.append(f"| {names} | {env} | {default} | {status[flag.status]} | {flag.help} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        sys.stdout.write(flags_markdown())
    else:
        main()
