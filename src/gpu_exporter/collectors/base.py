"""What every collector shares: the per-GPU view it reads and the collector protocol.

A collector reads one physical GPU per call and returns a fresh
:class:`~gpu_exporter.model.CollectResult` (data, never text). The sampler calls it once per GPU
per cycle with the wanted field ids it produces, this cycle's batched field values and the time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from gpu_exporter.catalog import CATALOG, Level, as_is
from gpu_exporter.collectors.rates import RateTracker
from gpu_exporter.model import (
    CollectResult,
    Entity,
    Native,
    Sample,
    Unsupported,
    new_collect_result,
    new_sample,
)
from gpu_exporter.nvml import NOT_SUPPORTED as NVML_NOT_SUPPORTED
from gpu_exporter.nvml import SUCCESS, FieldReading, GpuInfo, Handle, Nvml

Readings = Mapping[tuple[int, int], FieldReading]
"""This cycle's batched field values of one GPU, keyed by (NVML field id, scope id)."""

_CONVERT = {fid: spec.convert for fid, spec in CATALOG.items()}
"""DCGM field id -> its catalog conversion (one lookup per sample in the hot path)."""

NOT_SUPPORTED = "not_supported"
ERROR = "error"
"""Reason of a field whose NVML entry failed with a code other than NOT_SUPPORTED this cycle."""


@dataclass(frozen=True, slots=True)
class Target:
    """One entity a collector reports on, with the handle to read it through.

    Attributes:
        entity: the GPU or MIG instance.
        handle: its NVML handle (the MIG device handle for an instance).
        gi_id: GPU instance id for a MIG instance, else ``None``.
    """

    entity: Entity
    handle: Handle
    gi_id: int | None = None


@dataclass(frozen=True, slots=True)
class DeviceView:
    """One probed physical GPU as collectors see it, built once per probe.

    Attributes:
        nvml: the NVML wrapper.
        info: static identity of the GPU.
        targets: entities per field level (``device``: the GPU once; ``instance``: its MIG
            instances when MIG is on, else the GPU; ``entity``: all of them).
        repeat_device: device-level values are exported on each MIG instance instead of the
            GPU (dcgm-exporter's layout): the sampler copies them after collection, and the
            XID fields of an instance include the GPU's own XIDs. ``entities`` then lists
            only the instances.
    """

    nvml: Nvml
    info: GpuInfo
    targets: dict[Level, tuple[Target, ...]] = field(default_factory=dict)
    entities: tuple[Entity, ...] = ()
    repeat_device: bool = False

    @property
    def handle(self) -> Handle:
        """Handle of the physical GPU."""
        return self.info.handle

    @property
    def entity(self) -> Entity:
        """The physical GPU's entity."""
        return self.info.entity


def make_view(
    nvml: Nvml, info: GpuInfo, *, instances: bool = True, device: bool = True,
    device_fields_once: bool = False,
) -> DeviceView:
    """Build the per-level targets of one GPU.

    Args:
        nvml: the NVML wrapper.
        info: the probed GPU.
        instances: report its MIG instances (``-d f`` / ``-d i``); False for ``-d g``.
        device: report device-level fields on the physical GPU (False for ``-d i``).
        device_fields_once: on a MIG-enabled GPU with instances, report device-level fields
            once on the GPU (``--mig-device-fields-once``) instead of on every instance, as
            dcgm-exporter does (the default).
    """
    whole = Target(info.entity, info.handle)
    migs = tuple(Target(m.entity, m.handle, m.entity.gi_id) for m in info.instances) \
        if instances else ()
    split = info.mig_enabled and instances
    if split and migs and not device_fields_once:
        # dcgm-exporter's layout: no series of the GPU itself, every value on each instance.
        # Device-level fields are still read once, from the GPU, and copied by the sampler.
        targets: dict[Level, tuple[Target, ...]] = {
            "device": (whole,), "instance": migs, "entity": migs,
        }
        return DeviceView(nvml=nvml, info=info, targets=targets,
                          entities=tuple(t.entity for t in migs), repeat_device=True)
    parent = (whole,) if device else ()
    targets = {
        "device": parent,
        "instance": migs if split else parent,
        "entity": parent + migs,
    }
    entities = tuple(t.entity for t in targets["entity"])
    return DeviceView(nvml=nvml, info=info, targets=targets, entities=entities)


class Collector(Protocol):
    """A source of DCGM field values for one GPU at a time."""

    name: ClassVar[str]

    def collect(
        self, device: DeviceView, fields: frozenset[int], _readings: Readings, _now: float, /,
    ) -> CollectResult:
        """Read ``fields`` (all of them produced by this collector) for one GPU."""
        ...  # pragma: no cover

    def collect_into(
        self, device: DeviceView, fields: frozenset[int], readings: Readings, now: float,
        out: ResultBuilder, /,
    ) -> None:
        """:meth:`collect`, adding to ``out`` (the sampler's one builder per GPU read)."""
        ...  # pragma: no cover

    def close(self) -> None:
        """Release what the collector holds (GPM buffers, ...)."""
        ...  # pragma: no cover


class DcgmFeed(Protocol):
    """A DCGM host engine as the profiling collector's source on GPUs without GPM.

    Implemented by :class:`gpu_exporter.dcgmsource.DcgmSource` (imported only when DCGM is
    asked for).
    """

    def begin_cycle(self, views: Sequence[DeviceView], fields: frozenset[int]) -> None:
        """Ask for this cycle's values of ``fields`` on the GPUs of ``views`` (no waiting)."""
        ...  # pragma: no cover

    def collect(self, device: DeviceView, fields: frozenset[int]) -> CollectResult:
        """One GPU's values and reasons for this cycle (a bounded wait)."""
        ...  # pragma: no cover

    def natives(self) -> list[Native]:
        """The source's own metrics (``gpu_exporter_dcgm_up``)."""
        ...  # pragma: no cover


class ResultBuilder:
    """Accumulates samples and unsupported marks for one collect call (or one GPU's cycle).

    ``previous``/``previous_marks``: what the same calls produced last cycle, in order (the
    sampler passes a GPU's last read). A value equal to the one at the same position last
    cycle (same entity object, field and value, no labels) reuses that immutable
    :class:`Sample` instead of building a new one; a mark likewise. Static and zero fields
    then cost no object per cycle, and the collector thread frees fewer.
    """

    __slots__ = ("_previous", "_previous_marks", "samples", "unsupported")

    def __init__(self, previous: Sequence[Sample] = (),
                 previous_marks: Sequence[Unsupported] = ()) -> None:
        self.samples: list[Sample] = []
        self.unsupported: list[Unsupported] = []
        self._previous = previous
        self._previous_marks = previous_marks

    def add(self, entity: Entity, field_id: int, raw: float | None) -> None:
        """Convert ``raw`` with the field's catalog conversion; ``None`` = NOT_SUPPORTED."""
        if raw is None:
            self.mark(entity, field_id, NOT_SUPPORTED)
            return
        convert = _CONVERT[field_id]
        value = raw if convert is as_is else convert(raw)
        if value is not None:
            self.put(entity, field_id, value)

    def add_all(self, entity: Entity, values: Iterable[tuple[int, float | None]]) -> None:
        """:meth:`add` for each (field id, raw value) of ``values``, in order (one call).

        The batch path of the collectors: :meth:`put`'s reuse rule is written out here rather
        than called, one method call less per value.
        """
        samples = self.samples
        previous = self._previous
        known = len(previous)
        for field_id, raw in values:
            if raw is None:
                self.mark(entity, field_id, NOT_SUPPORTED)
                continue
            convert = _CONVERT[field_id]
            value = raw if convert is as_is else convert(raw)
            if value is None:
                continue
            at = len(samples)
            if at < known:
                last = previous[at]
                if (last.entity is entity and last.field_id == field_id and last.value == value
                        and not last.labels):
                    samples.append(last)
                    continue
            samples.append(new_sample(entity, field_id, value))

    def put(self, entity: Entity, field_id: int, value: float | str) -> None:
        """Add one sample of an already converted ``value`` (no labels)."""
        samples = self.samples
        previous = self._previous
        at = len(samples)
        if at < len(previous):
            last = previous[at]
            if (last.entity is entity and last.field_id == field_id and last.value == value
                    and not last.labels):
                samples.append(last)
                return
        samples.append(new_sample(entity, field_id, value))

    def mark(self, entity: Entity, field_id: int, reason: str) -> None:
        """Mark one field unavailable on ``entity`` for ``reason`` (no sample)."""
        marks = self.unsupported
        previous = self._previous_marks
        at = len(marks)
        if at < len(previous):
            last = previous[at]
            if last.entity is entity and last.field_id == field_id and last.reason == reason:
                marks.append(last)
                return
        marks.append(Unsupported(entity, field_id, reason))

    def extend(self, result: CollectResult) -> None:
        """Add a finished result's samples and marks."""
        self.samples.extend(result.samples)
        self.unsupported.extend(result.unsupported)

    def counter_rate(
        self, tracker: RateTracker, entity: Entity, field_id: int,
        readings: tuple[FieldReading | None, ...], now: float,
    ) -> float | None:
        """Per-second rate of the summed cumulative counters ``readings``, or ``None``.

        A missing or NOT_SUPPORTED entry marks the field ``not_supported``; any other failed
        entry marks it ``error`` (the NVML error itself was counted when read). Timestamps
        are the driver's (µs), falling back to ``now``. The first reading gives no rate.
        """
        stamp_us = 0
        total = 0.0
        for reading in readings:
            if reading is None or reading.code == NVML_NOT_SUPPORTED:
                self.add(entity, field_id, None)
                return None
            value = reading.value
            if reading.code != SUCCESS or value is None:
                self.mark(entity, field_id, ERROR)
                return None
            stamp_us = max(stamp_us, reading.timestamp_us)
            total += value
        stamp = stamp_us / 1e6 if stamp_us > 0 else now
        return tracker.update((entity.gpu, field_id), stamp, total)

    def unsupported_all(self, entity: Entity, fields: frozenset[int], reason: str) -> None:
        """Mark every field of ``fields`` unsupported on ``entity``."""
        for fid in sorted(fields):
            self.mark(entity, fid, reason)

    def result(self) -> CollectResult:
        """The immutable result."""
        return new_collect_result(tuple(self.samples), tuple(self.unsupported))


class IntoCollector:
    """Base of collectors that write into a :class:`ResultBuilder` (:meth:`collect_into`).

    The sampler hands every collector of a GPU's read one builder (no result object per
    collector, samples reused where unchanged); :meth:`collect` is the same read on its own.
    """

    name: ClassVar[str] = ""

    def collect(
        self, device: DeviceView, fields: frozenset[int], readings: Readings, now: float, /,
    ) -> CollectResult:
        """Read ``fields`` of one GPU into a fresh result."""
        out = ResultBuilder()
        self.collect_into(device, fields, readings, now, out)
        return out.result()

    def collect_into(
        self, device: DeviceView, fields: frozenset[int], readings: Readings, now: float,
        out: ResultBuilder, /,
    ) -> None:
        """Read ``fields`` of one GPU, adding its samples and marks to ``out``."""
        raise NotImplementedError  # pragma: no cover


class SimpleCollector(IntoCollector):
    """Base for stateless collectors: nothing to release."""

    def close(self) -> None:
        """Nothing to release."""
