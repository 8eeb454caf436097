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
    """``tls_server_config`` of an exporter-toolkit web config file, validated.

    Exactly one of ``cert_file``/``cert`` and of ``key_file``/``key`` is set; at most one of
    ``client_ca_file``/``client_ca``. Cipher suite and curve names are the Go names of the
    file (``TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256``, ``CurveP256``).
    """

    cert_file: Path | None = None
    key_file: Path | None = None
    cert: str | None = None
    key: str | None = field(default=None, repr=False)
    client_ca_file: Path | None = None
    client_ca: str | None = None
    client_auth_type: str = "NoClientCert"
    client_allowed_sans: tuple[str, ...] | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    curve_preferences: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True

    @property
    def files(self) -> tuple[Path, ...]:
        """The files this configuration reads (watched for changes)."""
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rate_limit``: a token bucket refilled every ``interval`` seconds, ``burst`` deep."""

    interval: float
    burst: int


@dataclass(frozen=True, slots=True)
class WebConfig:
    """What the ``--web-config-file`` asked for (``path`` ``None``: no file, plain HTTP)."""

    tls: TlsConfig | None = None
    headers: tuple[tuple[str, str], ...] = ()
    basic_auth_users: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    rate_limit: RateLimit | None = None
    http2: bool = True
    path: Path | None = None


@dataclass(frozen=True, slots=True)
class ServingLimits:
    """Connection limits of the HTTP listener (see docs/security.md).

    Attributes:
        read_timeout: seconds a client has to send a complete request head (from the
            connection, or from the first byte of a keep-alive request); also the TLS
            handshake limit.
        write_timeout: seconds a response may stay blocked on a client that does not read.
        idle_timeout: seconds a keep-alive connection may wait for its next request.
        max_connections: open connections allowed; ``0`` derives it from the descriptor limit.
        probe_address: a plain-HTTP listener serving only ``/health`` and ``/ready``
            (for kubelet probes when the main port needs a client certificate or a password).
    """

    read_timeout: float = 10.0
    write_timeout: float = 30.0
    idle_timeout: float = 75.0
    max_connections: int = 0
    probe_address: ListenAddress | None = None


@dataclass(frozen=True, slots=True)
class KubeSettings:
    """Pod attribution settings (``-k`` and friends).

    ``pod_labels``, ``pod_uid``, ``dra`` and ``workloads`` (``--workload-metrics``) need the
    Kubernetes API (a node-scoped watch
    on ``node_name``, the ``NODE_NAME`` environment variable); ``label_allowlist`` holds
    the regexes of ``--kubernetes-pod-label-allowlist-regex`` (empty: every label).
    """

    enabled: bool = False
    socket: Path = Path("/var/lib/kubelet/pod-resources/kubelet.sock")
    gpu_id_type: Literal["uid", "device-name"] = "uid"
    virtual_gpus: bool = False
    resource_names: tuple[str, ...] = ()
    refresh_interval: float = 5.0
    max_stale: float = 60.0
    deadline: float = 5.0
    pod_labels: bool = False
    pod_uid: bool = False
    label_allowlist: tuple[str, ...] = ()
    dra: bool = False
    node_name: str | None = None
    workloads: bool = False

    @property
    def needs_api(self) -> bool:
        """True when a flag that needs the Kubernetes API is set (and ``-k`` is on).

        ``--workload-metrics`` uses it to name pod processes (pod UID and container id ->
        namespace, pod, container); without it only the kubelet's unambiguous allocations do.
        """
        return self.enabled and (self.pod_labels or self.pod_uid or self.dra or self.workloads)


@dataclass(frozen=True, slots=True)
class WorkloadSettings:
    """``--workload-metrics`` and its companions (see collectors/workload.py).

    Attributes:
        procfs_root: where the host's ``/proc`` is (``--procfs-root``).
        pid_labels: one series per process with a ``pid`` label (``--workload-pid-labels``).
        engine_socket: Docker/Podman API socket for container names
            (``--container-engine-socket``); ``None``: no engine is ever contacted.
    """

    procfs_root: str = "/proc"
    pid_labels: bool = False
    engine_socket: Path | None = None


@dataclass(frozen=True, slots=True)
class DcgmSettings:
    """The DCGM host engine to read profiling fields from (``-r`` or ``--dcgm-local``).

    Attributes:
        address: ``host[:port]`` (port 5555 when left out), or a unix socket path.
        unix_socket: ``address`` is a unix socket (``-r unix://PATH``).
        flag: the flag that asked for it, for log lines.
        max_keep_age: seconds of samples the engine keeps per watched field
            (``--watch-max-keep-age``).
        max_keep_samples: samples the engine keeps per watched field, 0 = no limit
            (``--watch-max-keep-samples``).
    """

    address: str
    unix_socket: bool = False
    flag: str = "-r"
    max_keep_age: float = 600.0
    max_keep_samples: int = 0


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
        workloads: per-workload metrics (``--workload-metrics``), ``None`` when off.
        dcgm: the DCGM host engine for profiling fields NVML cannot provide, ``None``: none.
        systemd_socket: serve on the socket systemd passed (``--web-systemd-socket``).
        web: TLS, basic auth and headers from ``--web-config-file``.
        limits: connection limits and the probe listener (``--web-*-timeout`` and friends).
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
    workloads: WorkloadSettings | None = None
    dcgm: DcgmSettings | None = None
    systemd_socket: bool = False
    web: WebConfig = field(default_factory=WebConfig)
    limits: ServingLimits = field(default_factory=ServingLimits)
    log_format: LogFormat = "text"
    debug: bool = False
