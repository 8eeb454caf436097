"""The pod-index refresher: asks the kubelet on its own timer, never per scrape.

One asyncio task calls ``List`` (and ``GetAllocatableResources``) every refresh interval,
builds a :class:`PodIndex` and keeps the last good one with its age. While the kubelet is
unreachable it retries with exponential backoff, logs one warning per outage and one info
line when it is back, and keeps serving the last good index until it is older than
``max_stale``; after that pod labels are dropped rather than left stale. GPU metrics never
wait for, or fail because of, the kubelet: :meth:`Refresher.current` and
:meth:`Refresher.apply` are plain, synchronous and cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import stat
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gpu_exporter.kubernetes.apiview import ApiSettings, LabelPolicy, apply_api
from gpu_exporter.kubernetes.attribution import Attributor
from gpu_exporter.kubernetes.config import KubernetesConfig
from gpu_exporter.kubernetes.deviceids import DeviceRef
from gpu_exporter.kubernetes.podindex import EMPTY_INDEX, PodCache, PodIndex, build_index
from gpu_exporter.kubernetes.podresources import Devices, KubeletError, Pod, PodResourcesClient
from gpu_exporter.model import Cycle, Entity, Native, Sample
from gpu_exporter.workloads.podjoin import OwnValues, PodDirectory, PodEntry, own_values

if TYPE_CHECKING:  # the API client (aiohttp) is loaded only when a flag needs it
    from gpu_exporter.kubernetes.apiserver import PodMeta, SliceDevice

LOG = logging.getLogger("gpu_exporter.kubernetes")

OFFLOAD_PODS = 1000
"""Pod counts above which the index is built in a worker thread."""

INDEX_AGE = "gpu_exporter_pod_index_age_seconds"
KUBELET_UP = "gpu_exporter_kubelet_up"
API_UP = "gpu_exporter_kube_api_up"
API_SYNC_AGE = "gpu_exporter_kube_api_last_sync_age_seconds"
API_RELISTS = "gpu_exporter_kube_api_relists_total"


class PodResourcesSource(Protocol):
    """What the refresher needs from a kubelet client (see :class:`PodResourcesClient`)."""

    @property
    def target(self) -> str:
        """Where the kubelet is, for log lines."""
        ...

    async def list_pods(self) -> tuple[Pod, ...]:
        """The kubelet's List answer."""
        ...

    async def allocatable(self) -> tuple[Devices, ...]:
        """The kubelet's GetAllocatableResources answer."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


def backoff_delay(interval: float, failures: int, cap: float) -> float:
    """Seconds to wait after ``failures`` consecutive failed refreshes (0 = none)."""
    if failures <= 0:
        return interval
    return min(interval * 2.0 ** min(failures - 1, 30), max(cap, interval))


class ApiSource(Protocol):
    """What the refresher reads of the Kubernetes API watch (see ``apiserver.ApiView``)."""

    @property
    def version(self) -> int:
        """Changes whenever anything below changes."""
        ...

    def pods(self) -> Mapping[str, PodMeta]:
        """Pods of the node by ``namespace/name``."""
        ...

    def deleted(self) -> Mapping[str, bool]:
        """``namespace/name`` of recently deleted pods."""
        ...

    def devices(self) -> Mapping[tuple[str, str], SliceDevice]:
        """DRA devices by (pool, device)."""
        ...

    def health(self) -> list[tuple[str, bool, float, int]]:
        """(resource, up, seconds since last answer, relists)."""
        ...

    async def close(self) -> None:
        """Stop watching."""
        ...


class Refresher:
    """Keeps the pod index of the node fresh.

    Args:
        config: Kubernetes settings.
        source: the kubelet client.
        clock: monotonic clock, in seconds (tests pass a fake one).
        api: the Kubernetes API watch, when a flag needs it; the kubelet's index is then
            passed through :func:`~gpu_exporter.kubernetes.apiview.apply_api` (once per
            change of either, never per scrape).
    """

    def __init__(
        self,
        config: KubernetesConfig,
        source: PodResourcesSource,
        *,
        clock: Callable[[], float] = time.monotonic,
        api: ApiSource | None = None,
    ) -> None:
        self._config = config
        self._source = source
        self._clock = clock
        self._api = api
        self._api_settings = ApiSettings(config.pod_labels, config.pod_uid, config.dra)
        self._policy = LabelPolicy(config.label_allowlist)
        self._derived: tuple[PodIndex, int, PodIndex] | None = None
        self._unknown_claims: tuple[str, ...] = ()
        self._directory: tuple[PodIndex, int, tuple[Entity, ...], PodDirectory] | None = None
        self._attributor = Attributor(config)
        self._index: PodIndex = EMPTY_INDEX
        self._good_at: float | None = None
        self._up = False
        self._failures = 0
        self._outage_since: float | None = None
        self._dropped = False
        self._allocatable_supported = True
        self._parse_cache: dict[str, DeviceRef | None] = {}
        self._pod_cache: PodCache = {}
        self._unparsed: tuple[str, ...] = ()
        self._task: asyncio.Task[None] | None = None
        self.refreshes = 0
        """Refresh attempts so far (successful or not)."""

    @property
    def up(self) -> bool:
        """True when the last refresh succeeded."""
        return self._up

    def age(self) -> float:
        """Seconds since the last good answer; ``inf`` when there has been none."""
        if self._good_at is None:
            return math.inf
        return max(0.0, self._clock() - self._good_at)

    def current(self) -> PodIndex:
        """The index to join with, as the API sees it when it is watched."""
        index = self._kubelet_index()
        api = self._api
        if api is None:
            return index
        version = api.version
        derived = self._derived
        if derived is not None and derived[0] is index and derived[1] == version:
            return derived[2]
        result = apply_api(index, pods=api.pods(), deleted=api.deleted(),
                           devices=api.devices(), settings=self._api_settings,
                           policy=self._policy)
        self._derived = (index, version, result)
        if result.unknown_claims != self._unknown_claims:
            self._unknown_claims = result.unknown_claims
            if result.unknown_claims:
                LOG.warning("DRA claimed devices that no ResourceSlice of gpu.nvidia.com "
                            "names (yet), so their pods get no labels: %s",
                            ", ".join(result.unknown_claims[:8]))
        return result

    def _kubelet_index(self) -> PodIndex:
        """The last good kubelet index, or empty when too old or absent."""
        if self._good_at is None:
            return EMPTY_INDEX
        age = self._clock() - self._good_at
        if age > self._config.max_stale:
            if not self._dropped:
                self._dropped = True
                LOG.warning(
                    "no kubelet answer for %.0fs (more than --pod-resources-max-stale %gs): "
                    "dropping pod labels until it answers again", age, self._config.max_stale,
                )
            return EMPTY_INDEX
        return self._index

    def pod_directory(self, entities: tuple[Entity, ...]) -> PodDirectory:
        """Names for pod processes (``--workload-metrics``).

        The API's pods (UID, containers' runtime ids), and the entities of ``entities`` the
        kubelet reports allocated to exactly one container. Rebuilt only when the index, the
        API's version or the entities change.
        """
        index = self.current()
        api = self._api
        version = api.version if api is not None else -1
        cached = self._directory
        if cached is not None and cached[0] is index and cached[1] == version \
                and cached[2] == entities:
            return cached[3]
        resolution = self._attributor.resolution(entities, index)
        holders = {key: (held[0].owner.namespace, held[0].owner.pod, held[0].owner.container)
                   for key, held in resolution.holders.items() if len(held) == 1}
        pods = {} if api is None else {
            meta.uid: PodEntry(meta.namespace, meta.name, dict(meta.containers))
            for meta in api.pods().values()}
        directory = PodDirectory(pods, holders)
        self._directory = (index, version, entities, directory)
        return directory

    def natives(self) -> tuple[Native, ...]:
        """The refresher's health series.

        ``gpu_exporter_pod_index_age_seconds``, ``gpu_exporter_kubelet_up`` and, with the API
        watch, ``gpu_exporter_kube_api_*`` per resource.
        """
        natives = [
            Native(INDEX_AGE, self.age()),
            Native(KUBELET_UP, 1.0 if self._up else 0.0),
        ]
        if self._api is not None:
            for kind, up, age, relists in self._api.health():
                labels = (("resource", kind),)
                natives.append(Native(API_UP, 1.0 if up else 0.0, labels))
                natives.append(Native(API_SYNC_AGE, age, labels))
                natives.append(Native(API_RELISTS, float(relists), labels))
        return tuple(natives)

    def attribute(self, cycle: Cycle) -> tuple[tuple[Sample, ...], tuple[Native, ...]]:
        """The cycle's samples with pod labels, and every Kubernetes native series.

        The natives are the allocation view (when an index is in use) followed by
        ``gpu_exporter_pod_index_age_seconds`` and ``gpu_exporter_kubelet_up``.
        """
        own: OwnValues | None = None
        uids: Mapping[tuple[str, str], str] = {}
        if self._config.virtual_gpus:
            own = own_values(cycle.natives) or None
            if own is not None and self._api is not None:
                uids = {(m.namespace, m.name): m.uid for m in self._api.pods().values()}
        samples, allocation = self._attributor.attribute(
            cycle.samples, cycle.entities, self.current(), own=own, uids=uids)
        return samples, allocation + self.natives()

    def apply(self, cycle: Cycle) -> Cycle:
        """The cycle with pod labels, allocation series and the refresher's own metrics."""
        samples, natives = self.attribute(cycle)
        return Cycle(samples, cycle.natives + natives, cycle.entities, cycle.started,
                     cycle.duration)

    async def _fetch(self) -> tuple[tuple[Pod, ...], tuple[Devices, ...] | None]:
        pods = await self._source.list_pods()
        allocatable: tuple[Devices, ...] | None = None
        if self._allocatable_supported:
            try:
                allocatable = await self._source.allocatable()
            except KubeletError as exc:
                if not exc.unimplemented:
                    raise
                self._allocatable_supported = False
                LOG.info("the kubelet does not offer GetAllocatableResources (%s); "
                         "gpu_exporter_gpu_allocatable is not exported", exc.detail or exc.code)
        return pods, allocatable

    async def refresh(self) -> bool:
        """Ask the kubelet once; True when a new index was taken."""
        self.refreshes += 1
        try:
            pods, allocatable = await self._fetch()
            build = functools.partial(build_index, pods, allocatable,
                                      self._config.extra_resource_names,
                                      self._parse_cache, self._pod_cache)
            # Big nodes: build in a worker thread so scrapes are not held up meanwhile.
            index = await asyncio.to_thread(build) if len(pods) > OFFLOAD_PODS else build()
        except asyncio.CancelledError:
            raise
        except KubeletError as exc:
            self._failed(str(exc))
            return False
        except Exception as exc:  # noqa: BLE001 (the kubelet must never stop GPU metrics)
            self._failed(f"{type(exc).__name__}: {exc}")
            return False
        self._taken(index)
        return True

    def _failed(self, reason: str) -> None:
        self._up = False
        self._failures += 1
        if self._outage_since is None:
            self._outage_since = self._clock()
            kept = (
                f"keeping the last pod index for up to {self._config.max_stale:g}s"
                if self._good_at is not None else "no pod labels until it answers"
            )
            LOG.warning("kubelet pod-resources at %s not usable: %s%s; %s, retrying with backoff",
                        self._source.target, reason,
                        permission_hint(reason, self._source.target, os.geteuid()), kept)
        else:
            LOG.debug("kubelet pod-resources still not usable (attempt %d): %s",
                      self._failures, reason)

    def _taken(self, index: PodIndex) -> None:
        if self._outage_since is not None:
            LOG.info("kubelet pod-resources at %s answers again after %.1fs (%d failed attempts)",
                     self._source.target, self._clock() - self._outage_since, self._failures)
        elif self._good_at is None:
            LOG.info("kubelet pod-resources at %s answers", self._source.target)
        self._up = True
        self._failures = 0
        self._outage_since = None
        self._dropped = False
        self._good_at = self._clock()
        if index != self._index:
            self._index = index  # an unchanged index keeps its identity, so joins stay cached
        if index.unparsed != self._unparsed:
            self._unparsed = index.unparsed
            if index.unparsed:
                LOG.warning("kubelet GPU device ids of unknown form (ignored): %s",
                            ", ".join(index.unparsed[:8]))

    def next_delay(self) -> float:
        """Seconds until the next refresh: the interval, or the backoff after failures."""
        return backoff_delay(self._config.refresh_interval, self._failures,
                             self._config.max_backoff)

    async def run(self) -> None:
        """Refresh forever (until cancelled)."""
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end pod attribution for good
                LOG.exception("pod-resources refresh failed unexpectedly")
                self._failed("internal error (see the traceback above)")
            await asyncio.sleep(self.next_delay())

    def start(self) -> None:
        """Start :meth:`run` as a background task (the first refresh happens at once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self.run(), name="pod-resources-refresher")

    async def close(self) -> None:
        """Stop the task and close the kubelet connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._source.close()
        if self._api is not None:
            await self._api.close()


def permission_hint(reason: str, target: str, uid: int) -> str:
    """What to change when connecting to the kubelet's socket was refused, or ``""``.

    Connecting to a unix socket needs write permission on it. The kubelet makes its
    pod-resources socket owned by root, mode 0755: a process running as another user (an
    image's non-root user under the GPU Operator, which sets no ``runAsUser``) is refused.
    """
    if "Permission denied" not in reason or not target.startswith("unix://"):
        return ""
    path = Path(target.removeprefix("unix://"))
    try:
        info = path.stat()
    except OSError:
        return ""
    return (f" (this process runs as uid {uid}; {path} belongs to uid {info.st_uid}, group "
            f"{info.st_gid}, mode {stat.S_IMODE(info.st_mode):04o}, and connecting needs write "
            "permission: run as root, as dcgm-exporter does and the chart's securityContext "
            "sets, or give the socket a group the pod joins)")


def make_client(config: KubernetesConfig) -> PodResourcesClient:
    """The gRPC pod-resources client for ``config``."""
    return PodResourcesClient(
        config.socket_path,
        deadline=config.deadline,
        max_receive_bytes=config.max_receive_bytes,
        max_reconnect_backoff=config.max_backoff,
        dra=config.dra,
    )


async def start(config: KubernetesConfig, api: ApiSource | None = None) -> Refresher:
    """Create a refresher on the kubelet socket of ``config`` and start it."""
    refresher = Refresher(config, make_client(config), api=api)
    refresher.start()
    return refresher


@contextlib.asynccontextmanager
async def running(config: KubernetesConfig) -> AsyncIterator[Refresher]:
    """Run a refresher for the duration of an ``async with`` block."""
    refresher = await start(config)
    try:
        yield refresher
    finally:
        await refresher.close()
