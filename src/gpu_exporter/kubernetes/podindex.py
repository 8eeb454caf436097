"""The pod index: which pod container holds which GPU device id, built from kubelet data.

Pure. :func:`build_index` keeps the device ids of GPU resources only (``nvidia.com/gpu``,
``nvidia.com/gpu.shared``, every ``nvidia.com/mig-*`` and the extra names of
``--nvidia-resource-names``), parses each id once (:mod:`deviceids`) and keeps what the
join needs. Resolution against NVML entities happens later, in :mod:`attribution`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from gpu_exporter.kubernetes._hot import Setter, gc_paused, slot_setters
from gpu_exporter.kubernetes.deviceids import DeviceRef, parse_device_id
from gpu_exporter.model import Labels

if TYPE_CHECKING:  # the pod types live with the gRPC client; this module stays grpc-free
    from gpu_exporter.kubernetes.podresources import Devices, Pod

DEFAULT_RESOURCE_NAMES = frozenset({"nvidia.com/gpu", "nvidia.com/gpu.shared"})
"""Resource names always counted as GPUs (``gpu.shared`` is time-slicing's renamed resource)."""

MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
"""Prefix of the MIG resources of the ``mixed`` strategy (``nvidia.com/mig-1g.10gb``)."""

_PARSE_CACHE_LIMIT = 65536


def is_gpu_resource(name: str, extra: frozenset[str] = frozenset()) -> bool:
    """True when ``name`` is a resource whose device ids are GPUs or MIG instances."""
    return name in DEFAULT_RESOURCE_NAMES or name.startswith(MIG_RESOURCE_PREFIX) or name in extra


@dataclass(frozen=True, slots=True, order=True)
class Owner:
    """A pod container; ordering by (namespace, pod, container) picks shared GPUs' owner."""

    namespace: str
    pod: str
    container: str


@dataclass(frozen=True, slots=True)
class Assignment:
    """One GPU device id assigned to one container.

    ``labels`` are extra labels of this one assignment (DRA: the claim and device names).
    """

    owner: Owner
    resource: str
    device_id: str
    ref: DeviceRef
    labels: Labels = ()


@dataclass(frozen=True, slots=True)
class Claim:
    """One device claimed through DRA by one container (resolved later, via ResourceSlices)."""

    owner: Owner
    claim_name: str
    claim_namespace: str
    driver: str
    pool: str
    device: str


_UNSEEN = DeviceRef("gpu-index", index=-1)
"""Sentinel (compared by identity): a device id not in the parse cache; None is a failure."""

@dataclass(frozen=True, slots=True)
class Allocatable:
    """One GPU device id the node can hand out."""

    resource: str
    device_id: str
    ref: DeviceRef


@dataclass(frozen=True, slots=True)
class PodIndex:
    """What the kubelet said, reduced to GPU assignments.

    Attributes:
        assignments: every GPU device id held by a container, in (namespace, pod) order.
        allocatable: GPU device ids the node can hand out; ``None`` when unknown
            (kubelet without GetAllocatableResources, or no index at all).
        unparsed: GPU-resource device ids in none of the known forms, sorted.
        claims: DRA claimed devices of the kubelet's answer (``--kubernetes-enable-dra``),
            turned into assignments by :func:`gpu_exporter.kubernetes.apiview.apply_api`.
        extra: (namespace, pod) -> extra labels of its series (``pod_uid``, pod labels),
            set by :func:`~gpu_exporter.kubernetes.apiview.apply_api`.
        unknown_claims: ``pool/device`` names of claims no ResourceSlice maps (yet).
    """

    assignments: tuple[Assignment, ...] = ()
    allocatable: tuple[Allocatable, ...] | None = None
    unparsed: tuple[str, ...] = ()
    claims: tuple[Claim, ...] = ()
    extra: Mapping[tuple[str, str], Labels] = field(default_factory=dict)
    unknown_claims: tuple[str, ...] = ()


EMPTY_INDEX = PodIndex()
"""No attribution at all: no pod labels, no allocation series."""


PodEntry: TypeAlias = "tuple[tuple[str, str], Pod, tuple[Assignment, ...], tuple[str, ...]]"
"""((namespace, pod), the pod, its assignments, its unparsed device ids)."""

PodCache: TypeAlias = "MutableMapping[int, PodEntry]"
"""id(pod) -> its entry; the entry keeps the pod alive, so its id stays unique."""


_new = object.__new__
_SET_OWNER = slot_setters(Owner, "namespace", "pod", "container")
_SET_ASSIGNMENT = slot_setters(Assignment, "owner", "resource", "device_id", "ref", "labels")


def _walk(
    pod: Pod,
    wanted: Callable[[str], bool],
    cache: MutableMapping[str, DeviceRef | None],
    _set_owner: tuple[Setter, ...] = _SET_OWNER,
    _set_assignment: tuple[Setter, ...] = _SET_ASSIGNMENT,
) -> PodEntry:
    """The index entry of one pod (its GPU assignments and unparsed GPU device ids).

    Owners and assignments are built through their slots (:mod:`_hot`): the cold refresh
    makes one of each per GPU device of the node.
    """
    items: list[Assignment] = []
    bad: list[str] = []
    namespace, name = pod.namespace, pod.name
    for container in pod.containers:
        owner: Owner | None = None
        for devices in container.devices:
            resource = devices.resource_name
            if not wanted(resource):
                continue
            for device_id in devices.device_ids:
                ref = cache.get(device_id, _UNSEEN)
                if ref is _UNSEEN:
                    ref = cache[device_id] = parse_device_id(device_id)
                if ref is None:
                    bad.append(device_id)
                    continue
                if owner is None:
                    owner = _new(Owner)
                    _set_owner[0](owner, namespace)
                    _set_owner[1](owner, name)
                    _set_owner[2](owner, container.name)
                item = _new(Assignment)
                _set_assignment[0](item, owner)
                _set_assignment[1](item, resource)
                _set_assignment[2](item, device_id)
                _set_assignment[3](item, ref)
                _set_assignment[4](item, ())
                items.append(item)
    return (namespace, name), pod, tuple(items), tuple(sorted(set(bad))) if bad else ()


def build_index(
    pods: Iterable[Pod],
    allocatable: Iterable[Devices] | None,
    extra_resource_names: Iterable[str] = (),
    parse_cache: MutableMapping[str, DeviceRef | None] | None = None,
    pod_cache: PodCache | None = None,
) -> PodIndex:
    """Build a :class:`PodIndex` from a List answer and a GetAllocatableResources answer.

    Assignments come in (namespace, pod) order, so the same pods give an equal index
    whatever order the kubelet listed them in.

    Args:
        pods: the kubelet's pods (from ``List``).
        allocatable: the kubelet's allocatable devices, ``None`` when not available.
        extra_resource_names: resource names counted as GPUs besides the defaults.
        parse_cache: device id -> parsed ref, kept by the caller between builds so that
            ids seen before are not parsed again (failures included); bounded here.
        pod_cache: per pod object, its assignments from the previous build, kept by the
            caller: a pod the client hands back unchanged (same object) is not walked again.
            Replaced here by the entries of this build's pods.
    """
    with gc_paused():  # a cold build makes objects for every GPU device of the node
        return _build(pods, allocatable, frozenset(extra_resource_names), parse_cache,
                      pod_cache)


def _pod_name(entry: PodEntry) -> str:
    return entry[0][1]


def _namespace(entry: PodEntry) -> str:
    return entry[0][0]


def _build(
    pods: Iterable[Pod],
    allocatable: Iterable[Devices] | None,
    extra: frozenset[str],
    parse_cache: MutableMapping[str, DeviceRef | None] | None,
    pod_cache: PodCache | None,
) -> PodIndex:
    pods = pods if isinstance(pods, (tuple, list)) else tuple(pods)
    cache: MutableMapping[str, DeviceRef | None] = {} if parse_cache is None else parse_cache
    if len(cache) > _PARSE_CACHE_LIMIT:
        cache.clear()
    gpu_resource: dict[str, bool] = {}

    def wanted(resource: str) -> bool:
        known = gpu_resource.get(resource)
        if known is None:
            known = gpu_resource[resource] = is_gpu_resource(resource, extra)
        return known

    def ref_of(device_id: str, unparsed: set[str]) -> DeviceRef | None:
        ref = cache.get(device_id, _UNSEEN)
        if ref is _UNSEEN:
            ref = cache[device_id] = parse_device_id(device_id)
        if ref is None:
            unparsed.add(device_id)
        return ref

    previous: PodCache = {} if pod_cache is None else pod_cache
    current: dict[int, PodEntry] = {}
    held: list[PodEntry] = []
    unparsed: set[str] = set()
    for pod in pods:
        entry = previous.get(id(pod))
        if entry is None or entry[1] is not pod:
            entry = _walk(pod, wanted, cache)
        current[id(pod)] = entry
        if entry[2]:
            held.append(entry)
        if entry[3]:
            unparsed.update(entry[3])
    if pod_cache is not None:
        pod_cache.clear()
        pod_cache.update(current)
    # (namespace, pod) order in two stable passes: string keys compare much faster than tuples.
    held.sort(key=_pod_name)
    held.sort(key=_namespace)
    assignments = tuple([item for entry in held for item in entry[2]])

    allocatable_out: tuple[Allocatable, ...] | None = None
    if allocatable is not None:
        allocatable_out = tuple(
            Allocatable(devices.resource_name, device_id, ref)
            for devices in allocatable
            if wanted(devices.resource_name)
            for device_id in devices.device_ids
            if (ref := ref_of(device_id, unparsed)) is not None
        )
    return PodIndex(assignments, allocatable_out, tuple(sorted(unparsed)), _claims(pods))


def _claims(pods: Iterable[Pod]) -> tuple[Claim, ...]:
    """The DRA claimed devices of ``pods`` (containers carry none unless DRA is on)."""
    out = [
        Claim(Owner(pod.namespace, pod.name, container.name), c.claim_name, c.claim_namespace,
              c.driver, c.pool, c.device)
        for pod in pods
        for container in pod.containers
        if container.claims
        for c in container.claims
    ]
    out.sort(key=lambda c: (c.owner, c.pool, c.device))
    return tuple(out)
