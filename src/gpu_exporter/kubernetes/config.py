"""Configuration of Kubernetes pod attribution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GpuIdType = Literal["uid", "device-name"]

DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
"""Upstream default of ``--pod-resources-kubelet-socket``."""

DEFAULT_MAX_RECEIVE_BYTES = 64 * 1024 * 1024
"""Largest kubelet answer accepted (gRPC's own default of 4 MiB is too small for big nodes)."""


@dataclass(frozen=True, slots=True)
class KubernetesConfig:
    """Everything the pod-resources refresher and the pod join need.

    Attributes:
        socket_path: kubelet pod-resources unix socket (``--pod-resources-kubelet-socket``).
        refresh_interval: seconds between two kubelet refreshes (never per scrape).
        max_stale: seconds after the last good answer beyond which pod labels are dropped.
        deadline: seconds allowed for each kubelet call.
        gpu_id_type: ``uid`` joins GPU UUIDs, ``device-name`` joins ``nvidiaN`` ids.
        virtual_gpus: one series per sharing container, with a ``vgpu`` label.
        extra_resource_names: resource names counted as GPUs besides the defaults.
        max_backoff: longest wait between two attempts while the kubelet is unreachable.
        max_receive_bytes: largest kubelet answer accepted.
        pod_labels: copy pod labels from the API (``--kubernetes-enable-pod-labels``).
        pod_uid: add ``pod_uid`` from the API (``--kubernetes-enable-pod-uid``).
        label_allowlist: regexes of pod label keys to copy (empty: all).
        dra: attribute DRA claimed devices (``--kubernetes-enable-dra``).
    """

    socket_path: str = DEFAULT_SOCKET
    refresh_interval: float = 5.0
    max_stale: float = 60.0
    deadline: float = 5.0
    gpu_id_type: GpuIdType = "uid"
    virtual_gpus: bool = False
    extra_resource_names: tuple[str, ...] = ()
    max_backoff: float = 30.0
    max_receive_bytes: int = DEFAULT_MAX_RECEIVE_BYTES
    pod_labels: bool = False
    pod_uid: bool = False
    label_allowlist: tuple[str, ...] = ()
    dra: bool = False

    def __post_init__(self) -> None:
        """Reject values that cannot work, naming the flag."""
        if not self.socket_path:
            raise ValueError("--pod-resources-kubelet-socket: empty path")
        if not self.refresh_interval > 0:
            raise ValueError("--pod-resources-refresh-interval: must be greater than 0")
        if not self.deadline > 0:
            raise ValueError("--pod-resources-timeout: must be greater than 0")
        if self.max_stale < self.refresh_interval:
            raise ValueError(
                "--pod-resources-max-stale: must be at least --pod-resources-refresh-interval "
                f"({self.max_stale:g}s < {self.refresh_interval:g}s)"
            )
        if self.gpu_id_type not in ("uid", "device-name"):
            raise ValueError(
                f"--kubernetes-gpu-id-type: {self.gpu_id_type!r} is not one of uid, device-name"
            )
        if not self.max_backoff > 0:
            raise ValueError("max_backoff must be greater than 0")
        if self.max_receive_bytes < 1024:
            raise ValueError("max_receive_bytes must be at least 1024")
