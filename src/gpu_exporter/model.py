"""Data types shared by the collectors, the pod join and the renderer.

Everything here is immutable. A collection cycle produces a fresh tuple of
:class:`Sample` per GPU; nothing is carried between cycles except what a
collector keeps on purpose (GPM's previous sample, the XID window), so series
of vanished GPUs, MIG instances or pods vanish by themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeAlias, overload

Labels: TypeAlias = tuple[tuple[str, str], ...]
"""Extra label pairs of one sample, e.g. ``(("err_code", "79"), ("err_msg", "..."))``."""


@dataclass(frozen=True, slots=True)
class Entity:
    """What a series is about: a whole GPU, or one MIG instance of it.

    Attributes:
        gpu: NVML index of the physical GPU (the ``gpu`` label).
        uuid: UUID of the physical GPU (``UUID``; on MIG series the parent's, as upstream).
        pci_bus_id: ``00000000:18:00.0`` form (``pci_bus_id``).
        model_name: NVML product name of the physical GPU (``modelName``).
        gi_id: MIG GPU instance id (``GPU_I_ID``); ``None`` for a whole GPU.
        gi_profile: MIG profile name such as ``1g.10gb`` (``GPU_I_PROFILE``).
        mig_uuid: ``MIG-...`` UUID of the instance, used to join kubelet device ids.
        mig_index: NVML MIG device index (not the GI id).
    """

    gpu: int
    uuid: str
    pci_bus_id: str
    model_name: str
    gi_id: int | None = None
    gi_profile: str | None = None
    mig_uuid: str | None = None
    mig_index: int | None = None
    # the hash of the fields above, computed once (0: not yet): entities key the sampler's
    # per-cycle dicts, and a frozen dataclass's own __hash__ hashes every field each time
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        """The hash of the identifying fields (as the dataclass's own), kept once computed."""
        cached = self._hash
        if cached:
            return cached
        value = hash((self.gpu, self.uuid, self.pci_bus_id, self.model_name, self.gi_id,
                      self.gi_profile, self.mig_uuid, self.mig_index))
        _SET_ENTITY_HASH(self, value)
        return value

    def __getstate__(self) -> list[object]:
        """The fields in order, for pickling, with the kept hash left out.

        String hashes differ between processes: the copy computes its own.
        """
        return [0 if f.name == "_hash" else getattr(self, f.name) for f in fields(self)]

    @property
    def device(self) -> str:
        """The ``device`` label: ``nvidia<index>``."""
        return f"nvidia{self.gpu}"

    @property
    def is_mig(self) -> bool:
        """True for a MIG instance, False for a whole (or parent) GPU."""
        return self.gi_id is not None


_SET_ENTITY_HASH: Callable[[Entity, int], None] = Entity.__dict__["_hash"].__set__


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one DCGM field for one entity, already in DCGM's unit.

    ``value`` is a ``str`` only for fields of CSV type ``label`` (driver
    version, serial, VBIOS, ...), which become labels rather than series.
    """

    entity: Entity
    field_id: int
    value: float | str
    labels: Labels = ()


def _slot_setters(cls: type, names: tuple[str, ...]) -> tuple[Callable[[Any, Any], None], ...]:
    declared = tuple(f.name for f in fields(cls))
    if declared != names:  # a field added or renamed: update new_sample with it
        raise TypeError(f"{cls.__name__} declares {declared}, new_sample sets {names}")
    return tuple(cls.__dict__[name].__set__ for name in names)


SAMPLE_SETTERS = _slot_setters(Sample, ("entity", "field_id", "value", "labels"))
"""The slot setters of :class:`Sample` (entity, field id, value, labels): :func:`new_sample`
written out in a loop that makes many (``gpu_exporter.fastread``)."""


def new_sample(entity: Entity, field_id: int, value: float | str, labels: Labels = (),
               ) -> Sample:
    """``Sample(entity, field_id, value, labels)``, built through its slots for hot loops.

    The very same object (class, fields, equality, hash, immutability) in about half the
    time: a frozen dataclass's ``__init__`` sets each field by name through
    ``object.__setattr__``. A collection cycle makes a few hundred samples.
    """
    set_entity, set_field, set_value, set_labels = SAMPLE_SETTERS
    sample: Sample = object.__new__(Sample)
    set_entity(sample, entity)
    set_field(sample, field_id)
    set_value(sample, value)
    set_labels(sample, labels)
    return sample


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A wanted field that this entity cannot provide, and why (never exported as 0)."""

    entity: Entity
    field_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class CollectResult:
    """What one collector returns for one cycle: data, never text."""

    samples: tuple[Sample, ...] = ()
    unsupported: tuple[Unsupported, ...] = ()
    errors: tuple[str, ...] = field(default=())


_SET_RESULT = _slot_setters(CollectResult, ("samples", "unsupported", "errors"))


def new_collect_result(samples: tuple[Sample, ...], unsupported: tuple[Unsupported, ...],
                       ) -> CollectResult:
    """``CollectResult(samples, unsupported)`` built through its slots (see :func:`new_sample`).

    Every collector returns one per GPU per cycle.
    """
    set_samples, set_unsupported, set_errors = _SET_RESULT
    result: CollectResult = object.__new__(CollectResult)
    set_samples(result, samples)
    set_unsupported(result, unsupported)
    set_errors(result, ())
    return result


@dataclass(frozen=True, slots=True)
class Native:
    """One sample of one of our own ``gpu_exporter_*`` metrics.

    The metric's type, help and unit live in :data:`gpu_exporter.native.NATIVE_METRICS`.
    When ``entity`` is set, the renderer puts the dcgm GPU label set (``gpu``, ``UUID``,
    ``pci_bus_id``, ``device``, ``model_name``, [``GPU_I_PROFILE``, ``GPU_I_ID``], ``hostname``)
    in front of ``labels``.
    """

    name: str
    value: float
    labels: Labels = ()
    entity: Entity | None = None


_SET_NATIVE = _slot_setters(Native, ("name", "value", "labels", "entity"))


def new_native(name: str, value: float, labels: Labels = (), entity: Entity | None = None,
               ) -> Native:
    """``Native(name, value, labels, entity)`` built through its slots (see :func:`new_sample`).

    A cycle makes a few dozen (per GPU: up, slow, data age; per collector: duration, success).
    """
    set_name, set_value, set_labels, set_entity = _SET_NATIVE
    native: Native = object.__new__(Native)
    set_name(native, name)
    set_value(native, value)
    set_labels(native, labels)
    set_entity(native, entity)
    return native


@dataclass(frozen=True, slots=True)
class NativeRows:
    """Rows of some of our own families for one entity, as columns: no object per row.

    Family ``names[i]`` has the rows ``zip(labels[i], values[i])``, in that order. A collector
    whose rows stay the same from cycle to cycle (the per-workload one) reuses ``names`` and
    ``labels`` and builds only ``values``; the renderer reads the columns directly.
    """

    entity: Entity | None
    names: tuple[str, ...]
    labels: tuple[tuple[Labels, ...], ...]
    values: tuple[tuple[float, ...] | list[float], ...]

    def natives(self) -> list[Native]:
        """The same rows as :class:`Native` objects, family by family."""
        return [Native(name, value, labels, self.entity)
                for name, rows, values in zip(self.names, self.labels, self.values, strict=True)
                for labels, value in zip(rows, values, strict=True)]


_SET_NATIVE_ROWS = _slot_setters(NativeRows, ("entity", "names", "labels", "values"))


def new_native_rows(entity: Entity | None, names: tuple[str, ...],
                    labels: tuple[tuple[Labels, ...], ...],
                    values: tuple[tuple[float, ...] | list[float], ...]) -> NativeRows:
    """``NativeRows(entity, names, labels, values)`` through its slots (see :func:`new_sample`).

    The per-workload collector makes one per GPU and cycle.
    """
    set_entity, set_names, set_labels, set_values = _SET_NATIVE_ROWS
    rows: NativeRows = object.__new__(NativeRows)
    set_entity(rows, entity)
    set_names(rows, names)
    set_labels(rows, labels)
    set_values(rows, values)
    return rows


class Natives(Sequence[Native]):
    """A cycle's own samples: single :class:`Native` objects and :class:`NativeRows` blocks.

    Iterating it (or indexing, ``len``) gives every row as a :class:`Native`, the singles
    first, made once on first use; the renderer and the pod join read :attr:`singles` and
    :attr:`blocks` instead, so a collection cycle builds no object per block row. Immutable.
    """

    __slots__ = ("_all", "blocks", "singles")

    def __init__(self, singles: tuple[Native, ...], blocks: tuple[NativeRows, ...] = ()) -> None:
        self.singles = singles
        self.blocks = blocks
        self._all: tuple[Native, ...] | None = None

    def _rows(self) -> tuple[Native, ...]:
        rows = self._all
        if rows is None:
            rows = self._all = (*self.singles, *(n for b in self.blocks for n in b.natives()))
        return rows

    def __len__(self) -> int:
        return len(self._rows())

    def __iter__(self) -> Iterator[Native]:
        return iter(self._rows())

    @overload
    def __getitem__(self, index: int) -> Native: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Native, ...]: ...
    def __getitem__(self, index: int | slice) -> Native | tuple[Native, ...]:
        return self._rows()[index]

    def __add__(self, other: tuple[Native, ...]) -> Natives:
        return Natives((*self.singles, *other), self.blocks)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Natives | tuple):
            return self._rows() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._rows())

    def __repr__(self) -> str:
        return f"Natives({self.singles!r}, {self.blocks!r})"


def split_natives(natives: Iterable[Native]) -> tuple[Iterable[Native], tuple[NativeRows, ...]]:
    """The single natives and the blocks of a cycle's ``natives``.

    Blocks are only in a :class:`Natives`; anything else is all singles.
    """
    if isinstance(natives, Natives):
        return natives.singles, natives.blocks
    return natives, ()


@dataclass(frozen=True, slots=True)
class Cycle:
    """Everything one collection cycle produced, ready to be joined and rendered.

    Attributes:
        samples: DCGM field values for every entity (label-type fields included).
        natives: our own metrics (GPU up, field support, collector stats, XID totals, ...).
        entities: every entity enumerated this cycle, GPUs and MIG instances, up or down.
        started: wall-clock time the cycle began (seconds since the epoch).
        duration: seconds the cycle took.
    """

    samples: tuple[Sample, ...]
    natives: tuple[Native, ...] | Natives
    entities: tuple[Entity, ...]
    started: float
    duration: float
