"""The exporter's configuration: a tree of frozen dataclasses built by the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

LogFormat = Literal["text", "json"]


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where the HTTP server listens; ``host`` ``None`` means every interface."""

    host: str | None
    port: int

    def __str__(self) -> str:
        host = self.host or ""
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS settings from an exporter-toolkit web config file."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str = "TLS13"


@dataclass(frozen=True, slots=True)
class WebConfig:
    """What the ``--web-config-file`` asked for."""

    tls: TlsConfig | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class KubeSettings:
    """Pod attribution settings (``-k`` and friends)."""

    enabled: bool = False
    socket: Path = Path("/var/lib/kubelet/pod-resources/kubelet.sock")
    gpu_id_type: Literal["uid", "device-name"] = "uid"
    virtual_gpus: bool = False
    resource_names: tuple[str, ...] = ()
    refresh_interval: float = 5.0
    max_stale: float = 60.0
    deadline: float = 5.0


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the exporter needs to run, resolved from flags, env vars and defaults.

    Attributes:
        counters_path: the counters CSV (``-f``), re-read when it changes; with
            ``counters_inline``, the ``--config-file`` that holds the rows.
        counters_inline: counters CSV text from ``--config-file``'s ``metrics.fields``
            (read once, never reloaded), or ``None``.
        address: listen address (``-a``).
        collect_interval: seconds between collection cycles (``-c`` is milliseconds).
        devices: ``-d`` selector text (``f``, ``g[:list]``, ``i[:list]``).
        hostname: value of the hostname label, ``None`` with ``--no-hostname``.
        hostname_label: ``Hostname`` or ``hostname``.
        old_names: 1.x label names (``-o``).
        replace_blanks: ``-rbmn``.
        xid_window: seconds of the ``DCGM_EXP_XID_ERRORS_COUNT`` window.
        clock_events_window: seconds of the ``DCGM_EXP_CLOCK_EVENTS_COUNT`` window.
        simulate: simulator profile name or YAML file, ``None`` for the real driver.
        simulate_seed: seed of the simulator's dynamics.
        kube: pod attribution settings.
        hpc_job_dir: ``--hpc-job-mapping-dir``: GPU -> HPC job files, ``None`` when unset.
        mig_device_fields_once: ``--mig-device-fields-once``: device-level fields of a
            MIG-enabled GPU once on the GPU, not repeated on each MIG instance.
        omit_unsupported_zeros: ``--omit-unsupported-zeros``: no 0 where dcgm-exporter
            exports one for a field the GPU cannot provide (memory temperature, vGPU licence).
        systemd_socket: serve on the socket systemd passed (``--web-systemd-socket``).
        web: TLS and headers from ``--web-config-file``.
        log_format: ``text`` or ``json`` on stderr.
        debug: debug logging.
    """

    counters_path: Path
    counters_inline: str | None = None
    address: ListenAddress = ListenAddress(None, 9400)
    collect_interval: float = 30.0
    devices: str = "f"
    hostname: str | None = None
    hostname_label: str = "Hostname"
    old_names: bool = False
    replace_blanks: bool = False
    xid_window: float = 300.0
    clock_events_window: float = 300.0
    simulate: str | None = None
    simulate_seed: int = 0
    kube: KubeSettings = field(default_factory=KubeSettings)
    hpc_job_dir: Path | None = None
    mig_device_fields_once: bool = False
    omit_unsupported_zeros: bool = False
    systemd_socket: bool = False
    web: WebConfig = field(default_factory=WebConfig)
    log_format: LogFormat = "text"
    debug: bool = False
