"""Glue between the server's settings and the refresher (the server's only entry points).

``refresher = await start_refresher(config.kube)`` in a ``cleanup_ctx`` (``await
refresher.close()`` on the way out), then ``samples, natives = attribute(refresher, cycle,
config.kube)`` after every collection cycle: no kubelet call happens there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from gpu_exporter.kubernetes.config import KubernetesConfig
from gpu_exporter.kubernetes.refresher import Refresher, start

if TYPE_CHECKING:
    from gpu_exporter.config import KubeSettings
    from gpu_exporter.model import Cycle, Native, Sample

LOG = logging.getLogger("gpu_exporter.kubernetes")


def kubernetes_config(settings: KubeSettings) -> KubernetesConfig:
    """The refresher's configuration from the server's ``KubeSettings``.

    A max-stale shorter than the refresh interval would drop labels between two good
    refreshes; it is raised to the interval, with a warning.
    """
    max_stale = settings.max_stale
    if max_stale < settings.refresh_interval:
        LOG.warning(
            "--pod-resources-max-stale (%gs) is shorter than --pod-resources-refresh-interval "
            "(%gs); using %gs", max_stale, settings.refresh_interval, settings.refresh_interval,
        )
        max_stale = settings.refresh_interval
    return KubernetesConfig(
        socket_path=str(settings.socket),
        refresh_interval=settings.refresh_interval,
        max_stale=max_stale,
        deadline=settings.deadline,
        gpu_id_type=settings.gpu_id_type,
        virtual_gpus=settings.virtual_gpus,
        extra_resource_names=settings.resource_names,
        pod_labels=settings.pod_labels,
        pod_uid=settings.pod_uid,
        label_allowlist=settings.label_allowlist,
        dra=settings.dra,
    )


async def start_refresher(
    settings: KubeSettings, environ: Mapping[str, str] | None = None
) -> Refresher:
    """Start the pod-resources refresher, and the API watch when a flag needs it.

    Neither waits for its server; neither failing stops GPU metrics.
    """
    config = kubernetes_config(settings)
    api = None
    if settings.needs_api:
        # Imported here: the API client is loaded only when a flag needs it.
        from gpu_exporter.kubernetes.apiserver import start_watch  # noqa: PLC0415

        api = await start_watch(os.environ if environ is None else environ,
                                settings.node_name, dra=settings.dra,
                                deadline=max(settings.deadline, 5.0))
    return await start(config, api)


def attribute(
    refresher: object, cycle: Cycle, settings: KubeSettings  # noqa: ARG001 (settings fixed at start)
) -> tuple[tuple[Sample, ...], tuple[Native, ...]]:
    """Pod labels on the cycle's samples, plus every Kubernetes native series.

    Raises:
        TypeError: ``refresher`` did not come from :func:`start_refresher`.
    """
    if not isinstance(refresher, Refresher):
        raise TypeError(f"expected a Refresher, got {type(refresher).__name__}")
    return refresher.attribute(cycle)
