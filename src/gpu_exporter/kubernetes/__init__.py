"""Kubernetes pod attribution from the kubelet pod-resources API.

Use: ``refresher = await start(KubernetesConfig(...))`` once, ``cycle = refresher.apply(cycle)``
after every collection cycle, ``await refresher.close()`` at shutdown. See docs/kubernetes.md.
"""

from gpu_exporter.kubernetes.config import DEFAULT_SOCKET, KubernetesConfig
from gpu_exporter.kubernetes.refresher import Refresher, running, start

__all__ = [
    "DEFAULT_SOCKET",
    "KubernetesConfig",
    "Refresher",
    "running",
    "start",
]
