"""The pod join: pod labels on GPU samples, and the allocation view.

Pure functions plus one small cache. :func:`resolve_index` maps a :class:`PodIndex` onto the
entities of a cycle (once per index or entity change, not per cycle); :func:`join` adds
``pod``, ``namespace`` and ``container`` (and ``vgpu`` with virtual GPUs) to the samples of
owned entities; :func:`allocation_natives` builds ``gpu_exporter_gpu_allocatable`` and
``gpu_exporter_gpu_allocated``. :class:`Attributor` ties them together with the caches.

Shared GPUs: without virtual GPUs, the owner of an entity held by several containers is the
smallest ``(namespace, pod, container)``, so it stays the same while the allocation does;
with virtual GPUs, every holding container gets its own copy of each sample, labelled with
its replica ids as ``vgpu``. A MIG instance is attributed on its own series only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace

from gpu_exporter.kubernetes.config import GpuIdType, KubernetesConfig
from gpu_exporter.kubernetes.deviceids import DeviceRef, EntityKey, EntityLookup, resolve
from gpu_exporter.kubernetes.podindex import EMPTY_INDEX, Owner, PodIndex
from gpu_exporter.model import Cycle, Entity, Labels, Native, Sample, new_sample
from gpu_exporter.workloads.podjoin import OwnValues

LOG = logging.getLogger("gpu_exporter.kubernetes")

ALLOCATABLE = "gpu_exporter_gpu_allocatable"
ALLOCATED = "gpu_exporter_gpu_allocated"


@dataclass(frozen=True, slots=True)
class Holder:
    """One container holding one entity, with the labels its series get.

    Attributes:
        owner: the pod container.
        resources: resource names through which it holds the entity, sorted.
        vgpus: sharing replica ids it holds on the entity, sorted numerically.
        labels: ``container``, ``namespace``, ``pod`` pairs.
        vgpu_labels: ``labels`` plus ``vgpu`` when the container holds replicas.
    """

    owner: Owner
    resources: tuple[str, ...]
    vgpus: tuple[str, ...]
    labels: Labels
    vgpu_labels: Labels


@dataclass(frozen=True, slots=True)
class Resolution:
    """A pod index resolved against one set of entities.

    Attributes:
        holders: entity key -> its holders, smallest owner first.
        allocatable: (entity key, resource) pairs the kubelet can hand out, sorted.
        unresolved: GPU device ids that name no entity of this node, sorted.
    """

    holders: dict[EntityKey, tuple[Holder, ...]] = field(default_factory=dict)
    allocatable: tuple[tuple[EntityKey, str], ...] = ()
    unresolved: tuple[str, ...] = ()


def _holder(owner: Owner, resources: set[str], vgpus: set[str], extra: Labels = ()) -> Holder:
    labels: Labels = (
        ("container", owner.container),
        ("namespace", owner.namespace),
        ("pod", owner.pod),
    )
    if extra:  # pod_uid, pod labels, DRA claim labels (names never clash: see apiview)
        labels += extra
    ordered = tuple(sorted(vgpus, key=lambda v: (len(v), v)))
    vgpu_labels = (*labels, ("vgpu", ",".join(ordered))) if ordered else labels
    return Holder(owner, tuple(sorted(resources)), ordered, labels, vgpu_labels)


def resolve_index(
    index: PodIndex,
    lookup: EntityLookup,
    id_type: GpuIdType,
    cache: MutableMapping[str, EntityKey | None] | None = None,
) -> Resolution:
    """Map every assignment and allocatable id of ``index`` onto an entity key.

    Args:
        index: the pod index.
        lookup: the entities of the cycle.
        id_type: ``uid`` or ``device-name`` (which whole-GPU ids join).
        cache: device id -> entity key (``None`` for ids that name nothing), kept by the
            caller while the entities stay the same; failures are cached too.
    """
    memo: MutableMapping[str, EntityKey | None] = {} if cache is None else cache
    unresolved: set[str] = set()

    def key_of(device_id: str, ref: DeviceRef) -> EntityKey | None:
        try:
            key = memo[device_id]
        except KeyError:
            key = memo[device_id] = resolve(ref, lookup, id_type)
        if key is None:
            unresolved.add(device_id)
        return key

    grouped: dict[EntityKey, dict[Owner, tuple[set[str], set[str]]]] = {}
    own_labels: dict[tuple[EntityKey, Owner], Labels] = {}
    for item in index.assignments:
        key = key_of(item.device_id, item.ref)
        if key is None:
            continue
        per_owner = grouped.setdefault(key, {})
        resources, vgpus = per_owner.setdefault(item.owner, (set(), set()))
        resources.add(item.resource)
        if item.ref.vgpu is not None:
            vgpus.add(item.ref.vgpu)
        if item.labels:
            own_labels.setdefault((key, item.owner), item.labels)
    extra = index.extra

    def labels_of(key: EntityKey, owner: Owner) -> Labels:
        pod_labels = extra.get((owner.namespace, owner.pod), ()) if extra else ()
        return pod_labels + own_labels.get((key, owner), ())

    holders = {
        key: tuple(_holder(owner, res, vg, labels_of(key, owner))
                   for owner, (res, vg) in sorted(per_owner.items()))
        for key, per_owner in grouped.items()
    }

    allocatable: set[tuple[EntityKey, str]] = set()
    for offer in index.allocatable or ():
        key = key_of(offer.device_id, offer.ref)
        if key is not None:
            allocatable.add((key, offer.resource))
    return Resolution(holders, tuple(sorted(allocatable, key=_pair_order)),
                      tuple(sorted(unresolved)))


def _pair_order(pair: tuple[EntityKey, str]) -> tuple[int, int, str]:
    (gpu, gi), resource = pair
    return (gpu, -1 if gi is None else gi, resource)


def join(
    samples: Iterable[Sample],
    holders: dict[EntityKey, tuple[Holder, ...]],
    *,
    virtual_gpus: bool,
    own: OwnValues | None = None,
    uids: Mapping[tuple[str, str], str] | None = None,
) -> tuple[Sample, ...]:
    """Add pod labels to the samples of held entities.

    Without ``virtual_gpus`` a held entity's sample gets its first (smallest) holder's
    labels; with it, one copy per holder, each with ``vgpu`` when the holder has replicas.
    Samples of entities nobody holds are returned unchanged.

    ``own`` (virtual GPUs with ``--workload-metrics``): for the fields and entities it has
    (``DCGM_FI_DEV_GPU_UTIL``, ``DCGM_FI_DEV_FB_USED``), the device's sample is kept without
    pod labels and each holder's copy carries its pod's own value (0 for a pod without
    processes there) and ``pod_uid`` where ``uids`` knows it, as dcgm-exporter does.
    """
    if not holders:
        return tuple(samples)
    out: list[Sample] = []
    add = out.append
    last_entity: Entity | None = None
    held: tuple[Holder, ...] | None = None
    for sample in samples:
        entity = sample.entity
        if entity is not last_entity:
            last_entity = entity
            held = holders.get((entity.gpu, entity.gi_id))
        if held is None:
            add(sample)
        elif virtual_gpus and own is not None and \
                (values := own.get(((entity.gpu, entity.gi_id), sample.field_id))) is not None:
            add(sample)
            for holder in held:
                owner = holder.owner
                labels = sample.labels + holder.vgpu_labels
                uid = (uids or {}).get((owner.namespace, owner.pod))
                if uid and not any(name == "pod_uid" for name, _ in labels):
                    labels += (("pod_uid", uid),)
                add(new_sample(entity, sample.field_id,
                               values.get((owner.namespace, owner.pod), 0.0), labels))
        elif virtual_gpus:
            for holder in held:
                labels = sample.labels + holder.vgpu_labels if sample.labels else holder.vgpu_labels
                add(new_sample(entity, sample.field_id, sample.value, labels))
        else:
            first = held[0].labels
            add(new_sample(entity, sample.field_id, sample.value,
                           sample.labels + first if sample.labels else first))
    return tuple(out)


def allocation_natives(
    resolution: Resolution, entities: Iterable[Entity]
) -> tuple[Native, ...]:
    """``gpu_exporter_gpu_allocatable`` and ``gpu_exporter_gpu_allocated`` series.

    One allocatable series per (entity, resource), one allocated series per
    (entity, resource, container): time-slicing replicas of one GPU collapse into one.
    """
    by_key = {(e.gpu, e.gi_id): e for e in entities}
    natives: list[Native] = [
        Native(ALLOCATABLE, 1.0, (("resource", resource),), by_key[key])
        for key, resource in resolution.allocatable
        if key in by_key
    ]
    for key in sorted(resolution.holders, key=lambda k: (k[0], -1 if k[1] is None else k[1])):
        entity = by_key.get(key)
        if entity is None:
            continue
        for holder in resolution.holders[key]:
            owner = holder.owner
            natives.extend(
                Native(ALLOCATED, 1.0, (
                    ("resource", resource),
                    ("namespace", owner.namespace),
                    ("pod", owner.pod),
                    ("container", owner.container),
                ), entity)
                for resource in holder.resources
            )
    return tuple(natives)


class Attributor:
    """Applies a pod index to cycles, recomputing only when the index or entities change.

    Device-id resolutions (MIG UUID lookups included, failed ones too) are cached while the
    entity set stays the same; the resolved index and its allocation series are cached
    while both the index object and the entity set stay the same.
    """

    def __init__(self, config: KubernetesConfig) -> None:
        self._id_type: GpuIdType = config.gpu_id_type
        self._virtual = config.virtual_gpus
        self._entities: tuple[Entity, ...] | None = None
        self._lookup = EntityLookup.build(())
        self._key_cache: dict[str, EntityKey | None] = {}
        self._index: PodIndex | None = None
        self._resolution = Resolution()
        self._natives: tuple[Native, ...] = ()
        self._reported: tuple[str, ...] = ()

    def _refresh(self, entities: tuple[Entity, ...], index: PodIndex) -> None:
        if entities != self._entities:
            self._entities = entities
            self._lookup = EntityLookup.build(entities)
            self._key_cache = {}
            self._index = None
        if index is self._index:
            return
        self._index = index
        if len(self._key_cache) > 65536:
            self._key_cache.clear()
        self._resolution = resolve_index(index, self._lookup, self._id_type, self._key_cache)
        self._natives = allocation_natives(self._resolution, entities)
        self._report(self._resolution.unresolved)

    def _report(self, unresolved: tuple[str, ...]) -> None:
        if unresolved == self._reported:
            return
        self._reported = unresolved
        if unresolved:
            shown = ", ".join(unresolved[:8]) + (" ..." if len(unresolved) > 8 else "")
            LOG.warning(
                "%d kubelet GPU device id(s) match no GPU or MIG instance of this node, so "
                "their pods get no labels: %s (--kubernetes-gpu-id-type is %s: uid joins "
                "GPU-<uuid> ids, device-name joins nvidia<N> ids)",
                len(unresolved), shown, self._id_type,
            )
        else:
            LOG.info("every kubelet GPU device id matches a GPU or MIG instance again")

    def resolution(self, entities: tuple[Entity, ...], index: PodIndex) -> Resolution:
        """The index resolved against ``entities`` (cached)."""
        self._refresh(entities, index)
        return self._resolution

    def attribute(
        self, samples: tuple[Sample, ...], entities: tuple[Entity, ...], index: PodIndex,
        *, own: OwnValues | None = None, uids: Mapping[tuple[str, str], str] | None = None,
    ) -> tuple[tuple[Sample, ...], tuple[Native, ...]]:
        """Samples with pod labels joined, and the allocation series, for one cycle.

        ``own`` and ``uids``: pods' own values with virtual GPUs (see :func:`join`).
        """
        self._refresh(entities, index)
        if not self._resolution.holders:
            return samples, self._natives
        joined = join(samples, self._resolution.holders, virtual_gpus=self._virtual,
                      own=own, uids=uids)
        return joined, self._natives

    def apply(self, cycle: Cycle, index: PodIndex = EMPTY_INDEX) -> Cycle:
        """The cycle with pod labels joined and the allocation series appended."""
        samples, natives = self.attribute(cycle.samples, cycle.entities, index)
        if samples is cycle.samples and not natives:
            return cycle
        return replace(cycle, samples=samples, natives=cycle.natives + natives)
