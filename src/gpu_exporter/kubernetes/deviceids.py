"""Kubelet device ids: every form device plugins hand out, normalised and resolved.

Pure functions. :func:`parse_device_id` turns one id into a :class:`DeviceRef` (what it
names, plus the sharing replica as ``vgpu``); :func:`resolve` maps a ref onto the entities
the sampler enumerated through NVML, giving an :data:`EntityKey` ``(gpu, gpu_instance_id)``.

| kubelet id                    | ref kind          | joins to                          |
|-------------------------------|-------------------|-----------------------------------|
| ``GPU-<uuid>``                | ``gpu-uuid``      | whole GPU by ``UUID`` (id type uid) |
| ``GPU-<uuid>::<N>``           | ``gpu-uuid``      | same, ``vgpu=N``                  |
| ``nvidia<N>``                 | ``gpu-index``     | whole GPU ``N`` (id type device-name) |
| ``nvidia<N>/vgpu<M>``         | ``gpu-index``     | same, ``vgpu=M``                  |
| ``MIG-<uuid>`` / ``::<N>``    | ``mig-uuid``      | MIG instance owning that UUID     |
| ``MIG-GPU-<uuid>/<gi>/<ci>``  | ``mig-parent``    | instance ``gi`` of that GPU       |
| ``nvidia<N>/gi<G>[/vgpu<M>]`` | ``mig-index``     | instance ``G`` of GPU ``N``       |
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from gpu_exporter.kubernetes._hot import Setter, slot_setters
from gpu_exporter.kubernetes.config import GpuIdType
from gpu_exporter.model import Entity

RefKind = Literal["gpu-uuid", "gpu-index", "mig-uuid", "mig-parent", "mig-index"]

EntityKey: TypeAlias = tuple[int, int | None]
"""``(gpu index, GPU instance id)``; the instance id is ``None`` for a whole GPU."""

_GPU_UUID = re.compile(r"(GPU-[^:/\s]+)(?:::(\d+))?")
_GPU_INDEX = re.compile(r"nvidia(\d+)(?:/vgpu(\d+))?")
_MIG_INDEX = re.compile(r"nvidia(\d+)/gi(\d+)(?:/vgpu(\d+))?")
_MIG_PARENT = re.compile(r"MIG-(GPU-[^:/\s]+)/(\d+)/(\d+)")
_MIG_UUID = re.compile(r"(MIG-[^:/\s]+)(?:::(\d+))?")


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """What one kubelet device id names.

    Attributes:
        kind: which form the id had (see the module table).
        uuid: ``GPU-...`` for ``gpu-uuid`` and ``mig-parent``, ``MIG-...`` for ``mig-uuid``.
        index: the GPU index of ``nvidia<N>`` forms.
        gi: the GPU instance id of ``mig-parent`` and ``mig-index`` forms.
        vgpu: the sharing replica (``::N``, ``/vgpuM``), ``None`` when the id has none.
    """

    kind: RefKind
    uuid: str = ""
    index: int | None = None
    gi: int | None = None
    vgpu: str | None = None


_SET_REF = slot_setters(DeviceRef, "kind", "uuid", "index", "gi", "vgpu")


def _ref(kind: RefKind, uuid: str, index: int | None, gi: int | None, vgpu: str | None,
         _set: tuple[Setter, ...] = _SET_REF) -> DeviceRef:
    # DeviceRef(...) through its slots (see _hot): the cold refresh parses every id.
    ref: DeviceRef = object.__new__(DeviceRef)
    _set[0](ref, kind)
    _set[1](ref, uuid)
    _set[2](ref, index)
    _set[3](ref, gi)
    _set[4](ref, vgpu)
    return ref


def parse_device_id(device_id: str) -> DeviceRef | None:
    """Normalise one kubelet device id; ``None`` when it has none of the known forms."""
    ref: DeviceRef | None = None
    if m := _GPU_UUID.fullmatch(device_id):
        uuid, vgpu = m.groups()
        ref = _ref("gpu-uuid", uuid, None, None, vgpu)
    elif m := _MIG_PARENT.fullmatch(device_id):
        ref = _ref("mig-parent", m.group(1), None, int(m.group(2)), None)
    elif m := _MIG_UUID.fullmatch(device_id):
        ref = _ref("mig-uuid", m.group(1), None, None, m.group(2))
    elif m := _GPU_INDEX.fullmatch(device_id):
        ref = _ref("gpu-index", "", int(m.group(1)), None, m.group(2))
    elif m := _MIG_INDEX.fullmatch(device_id):
        ref = _ref("mig-index", "", int(m.group(1)), int(m.group(2)), m.group(3))
    return ref


@dataclass(frozen=True, slots=True)
class EntityLookup:
    """The entities of one enumeration, indexed for :func:`resolve` (UUIDs lower-cased)."""

    gpu_by_uuid: dict[str, int]
    mig_by_uuid: dict[str, EntityKey]
    keys: frozenset[EntityKey]

    @classmethod
    def build(cls, entities: Iterable[Entity]) -> EntityLookup:
        """Index GPUs by UUID, MIG instances by MIG UUID, and every entity by its key."""
        gpu_by_uuid: dict[str, int] = {}
        mig_by_uuid: dict[str, EntityKey] = {}
        keys: set[EntityKey] = set()
        for entity in entities:
            key = (entity.gpu, entity.gi_id)
            keys.add(key)
            gpu_by_uuid[entity.uuid.lower()] = entity.gpu
            if entity.mig_uuid:
                mig_by_uuid[entity.mig_uuid.lower()] = key
        return cls(gpu_by_uuid, mig_by_uuid, frozenset(keys))


def resolve(ref: DeviceRef, lookup: EntityLookup, id_type: GpuIdType) -> EntityKey | None:
    """The entity a device ref names on this node, or ``None`` when it names none.

    Whole-GPU ids join by UUID with ``id_type`` ``uid`` and by ``nvidia<N>`` with
    ``device-name``, as upstream; MIG ids join whatever the id type.
    """
    key: EntityKey | None
    if ref.kind == "gpu-uuid":
        if id_type != "uid":
            return None
        gpu = lookup.gpu_by_uuid.get(ref.uuid.lower())
        key = None if gpu is None else (gpu, None)
    elif ref.kind == "gpu-index":
        if id_type != "device-name":
            return None
        key = (ref.index, None) if ref.index is not None else None
    elif ref.kind == "mig-uuid":
        return lookup.mig_by_uuid.get(ref.uuid.lower())
    elif ref.kind == "mig-parent":
        gpu = lookup.gpu_by_uuid.get(ref.uuid.lower())
        key = None if gpu is None else (gpu, ref.gi)
    else:  # mig-index
        key = (ref.index, ref.gi) if ref.index is not None else None
    return key if key in lookup.keys else None
