"""One GPU's per-cycle NVML reads in one compiled call, decoded only where a value changed.

The sampler reads each GPU once per cycle: the batched ``nvmlDeviceGetFieldValues``, then the
collectors in registry order. For the collectors whose reads are plain device calls
(``field_values``, ``clocks``, ``temperature``, ``power``, ``utilization``, ``memory``, and
``profiling`` on a GPU with GPM) this module builds, once per GPU view and field set, a
*plan*: every NVML call those collectors would make this cycle (entry point, handle, argument,
where its values go), in their order, with the batched field values first. :meth:`DeviceRead.read`
runs the whole plan in one call into ``gpu_exporter/_fast/reads.c`` (``gr_read_device``),
which writes each call's answer code and values into flat arrays and lists the values whose
number or code changed since the GPU's previous read. Only those are decoded in Python (the
collector's catalog conversion, a new :class:`~gpu_exporter.model.Sample` or mark); every
other value keeps last cycle's object. Each compiled collector then hands its kept samples and
marks to the GPU's builder in its own turn of the sampler's loop, so the order, the
per-collector isolation and the durations are those of the Python collectors; in a cycle where
none of them failed or counts a failure, each run of consecutive compiled collectors takes one
turn (:attr:`DeviceRead.turns`). The XID collector's clock event reasons are calls of the plan
too, fed to its own turn (:class:`_Fed`).

Semantics are the collectors' own (a test holds the two paths equal, fault injection
included): NOT_SUPPORTED marks the field ``not_supported``; any other answer of a call fails
that collector (the error counted once per cycle through :meth:`Nvml.failure`, its fields
marked ``error`` by the sampler; its later calls are not made, as its Python read stops
there), ``GPU_IS_LOST`` raising :class:`~gpu_exporter.nvml.GpuLostError` (no call made after
it); a failed field-value entry marks its field ``error`` and is counted, a failed GPM metric
is left out and counted. GPM takes each sample into the profiling collector's own buffers
(swapped in C; their roles handed back with :meth:`DeviceRead.release` when the plan is
dropped), so the first cycle and a reload behave as the collector does. The versioned entry
points (``TemperatureV``, ``MemoryInfo_v2``, ``CurrentClocksEventReasons``) are used while the
NVML module uses them: an answer on which the direct read falls back to the older call
(:meth:`Nvml.drop_versioned`) makes that collector read through Python for the cycle, and the
plan is built again with the older call. A collector whose entry point the library lacks, or
that is not the registry's own class, keeps its Python path; so does everything when the
library is not built (:func:`load` answers ``None``).
"""

from __future__ import annotations

import ctypes
import logging
import operator
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gpu_exporter.catalog import CATALOG, as_is
from gpu_exporter.collectors import clocks, memory, power, temperature, utilization
from gpu_exporter.collectors.base import ERROR, NOT_SUPPORTED, DeviceView, ResultBuilder, Target
from gpu_exporter.collectors.clocks import ClocksCollector
from gpu_exporter.collectors.field_values import FieldValuesCollector
from gpu_exporter.collectors.memory import MemoryCollector
from gpu_exporter.collectors.power import PowerCollector
from gpu_exporter.collectors.profiling import ProfilingCollector
from gpu_exporter.collectors.temperature import TemperatureCollector
from gpu_exporter.collectors.utilization import UtilizationCollector
from gpu_exporter.collectors.xid import XidCollector
from gpu_exporter.events import CLOCK_EVENTS_COUNT
from gpu_exporter.fastlib import LIBRARY, open_library
from gpu_exporter.model import SAMPLE_SETTERS, Entity, Sample, Unsupported, new_sample
from gpu_exporter.nvml import NOT_SUPPORTED as NVML_NOT_SUPPORTED
from gpu_exporter.nvml import (
    SUCCESS,
    FieldReading,
    Handle,
    Nvml,
    NvmlError,
    field_entries,
)

__all__ = ["COMPILED", "DeviceRead", "Reads", "load"]

log = logging.getLogger(__name__)

_ABI = 1
MAX_STEP_VALUES = 4096
"""Most values one call may give (``GR_MAX_STEP_VALUES``: field-value entries per batch)."""

# the call shapes of reads.c
_UINT, _UINT_ARG, _ULL, _UINT_PAIR, _UTILIZATION = 1, 2, 3, 4, 5
_MEMORY, _MEMORY_V2, _TEMPERATURE_V, _BAR1, _FIELDS, _GPM = 6, 7, 8, 9, 10, 11
NOT_RUN = -1
"""The answer code of a call not made: its collector's earlier call failed (or the GPU is lost)."""
_NEW = -(2**31)  # no value read yet: every value differs from it
_CODE_CHANGED = 0x80000000  # in a dirty index (GR_CODE_CHANGED): its answer code changed
_INDEX = 0x7FFFFFFF
_ANSWERED = frozenset({SUCCESS, NVML_NOT_SUPPORTED, NOT_RUN})
"""Answers that fail nothing (a call not made was not made because an earlier one failed)."""
_VALUES = {_UINT: 1, _UINT_ARG: 1, _ULL: 1, _UINT_PAIR: 2, _UTILIZATION: 2, _MEMORY: 3,
           _MEMORY_V2: 4, _TEMPERATURE_V: 1, _BAR1: 3}

_FIELD_VALUES = "nvmlDeviceGetFieldValues"
_GPM_METRICS = "nvmlGpmMetricsGet"
_new_reading: Callable[[type[FieldReading], tuple[int, int, float | None, int, int]],
                       FieldReading] = tuple.__new__
"""``FieldReading(...)`` without the named tuple's Python-level ``__new__``."""

# record kinds: how one (entity, field) output is decoded from the values
_PLAIN = 0    # a direct call's value (an int, as the direct read returns it)
_FIELD = 1    # a field-value entry (a float; its own code; a failed one marks ``error``)
_PERCENT = 2  # FB_USED_PERCENT: used / (total - reserved)
_ABSENT = 3   # always ``not_supported`` while its call answers (FB_RESERVED with the v1 struct)
_METRIC = 4   # a GPM metric (a float; nothing before the second sample; a failed one left out)
_NUMBERS = frozenset({_PLAIN, _FIELD, _METRIC})
"""Kinds whose sample is the converted value alone (its code is SUCCESS while it has one)."""

COMPILED: dict[str, type] = {
    "field_values": FieldValuesCollector, "clocks": ClocksCollector,
    "temperature": TemperatureCollector, "power": PowerCollector,
    "utilization": UtilizationCollector, "memory": MemoryCollector,
    "profiling": ProfilingCollector,
}
"""The collectors a plan can hold, with the class each must be to be compiled."""

_Into = Callable[[DeviceView, frozenset[int], Mapping[tuple[int, int], FieldReading], float,
                  ResultBuilder], None]
PlanRow = tuple[str, _Into, frozenset[int], str, bool, int]
"""The sampler's per-collector row: name, collect_into, fields, stage, needs readings, its
place in the timed list."""


class _Step(ctypes.Structure):
    _fields_ = (("fn", ctypes.c_void_p), ("device", ctypes.c_void_p),
                ("entries", ctypes.c_void_p), ("shape", ctypes.c_uint32),
                ("arg", ctypes.c_uint32), ("first", ctypes.c_uint32),
                ("bucket", ctypes.c_uint32))


class _Gpm(ctypes.Structure):
    _fields_ = (("samples", ctypes.c_void_p * 2), ("metrics_fn", ctypes.c_void_p),
                ("request", ctypes.c_void_p), ("current", ctypes.c_uint32),
                ("primed", ctypes.c_uint32), ("mig", ctypes.c_uint32),
                ("n_metrics", ctypes.c_uint32))


class _Read(ctypes.Structure):
    _fields_ = (("steps", ctypes.c_void_p), ("n_steps", ctypes.c_uint32),
                ("n_values", ctypes.c_uint32), ("n_buckets", ctypes.c_uint32),
                ("codes", ctypes.c_void_p), ("values", ctypes.c_void_p),
                ("value_codes", ctypes.c_void_p), ("stamps", ctypes.c_void_p),
                ("buckets", ctypes.c_void_p), ("dirty", ctypes.c_void_p),
                ("at", ctypes.c_void_p))


class Reads:
    """The library's ``gr_read_device``; builds a :class:`DeviceRead` per GPU view.

    Raises:
        OSError: the library cannot be loaded, or it is of another version.
        AttributeError: it has no device reads (built before them).
    """

    def __init__(self, path: Path = LIBRARY) -> None:
        lib = open_library(path, "gr_abi", _ABI)
        fn = lib.gr_read_device
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p]
        self._fn: Callable[[Any], int] = fn

    def build(
        self, nvml: Nvml, view: DeviceView, plan: Sequence[PlanRow], *,
        collectors: Mapping[str, object], requests: tuple[tuple[int, int], ...],
        fv_timed: int, n_timed: int, keep_readings: bool, generation: int,
    ) -> DeviceRead | None:
        """The plan of one GPU view; ``None`` when nothing of it can be compiled.

        Args:
            nvml: the NVML wrapper (entry points, handles, error accounting).
            view: the GPU as probed.
            plan: the sampler's per-collector rows, in registry order.
            collectors: the sampler's collectors by name (compiled only when of their class).
            requests: the batched field values' (field id, scope) pairs.
            fv_timed: the batched call's place in the sampler's timed list.
            n_timed: the length of that list.
            keep_readings: give every batched entry as readings (the workload collector's).
            generation: the sampler's field set, to know when the plan is out of date.
        """
        if not requests and not any(row[0] in COMPILED for row in plan):
            return None
        if len(requests) > MAX_STEP_VALUES or (requests and not nvml.has_entry(_FIELD_VALUES)):
            return None
        return DeviceRead(self._fn, nvml, view, plan, collectors=collectors,
                          requests=requests, fv_timed=fv_timed, n_timed=n_timed,
                          keep_readings=keep_readings, generation=generation)


def load(path: Path = LIBRARY) -> Reads | None:
    """The compiled device reads, or ``None`` when the library is not built (Python path)."""
    try:
        return Reads(path)
    except (OSError, AttributeError) as exc:
        log.debug("fast path library not loaded (%s): device reads in Python", exc)
        return None


class _Part:
    """One compiled collector of a GPU's plan: its calls, its outputs, what it hands out."""

    __slots__ = ("bucket", "counted", "dirty", "fail", "hi", "lo", "marks", "name", "owner",
                 "python_into", "samples", "steps")

    def __init__(self, owner: DeviceRead, name: str, python_into: _Into, bucket: int) -> None:
        self.owner = owner
        self.bucket = bucket  # its place in the timed list
        self.name = name
        self.python_into = python_into
        # (step, function, its versioned read or None, a GPM step's first value or -1)
        self.steps: list[tuple[int, str, str | None, int]] = []
        self.counted: list[tuple[str, int]] = []  # failures its turn counts (GPM metrics)
        self.lo = self.hi = 0  # its records
        self.dirty = True
        self.fail: tuple[str, int, str | None] | None = None
        self.samples: list[Sample] = []
        self.marks: list[Unsupported] = []

    def into(self, view: DeviceView, fields: frozenset[int],
             readings: Mapping[tuple[int, int], FieldReading], now: float, out: ResultBuilder,
             /) -> None:
        """The collector's turn: this cycle's samples and marks (or its failure)."""
        if self.dirty:
            self.owner.settle(self)
        fail = self.fail
        if fail is not None:
            function, code, versioned = fail
            nvml = self.owner.nvml
            if versioned is None:
                raise nvml.failure(function, code)
            error = nvml.drop_versioned(function, code)
            if error is not None:
                raise error
            # the direct read now calls the older entry point: so does this cycle, and the
            # plan is built again for the next (Nvml.switches went up)
            self.python_into(view, fields, readings, now, out)
            return
        for function, code in self.counted:
            self.owner.nvml.failure(function, code)  # counted, as the collector's read does
        out.samples.extend(self.samples)
        out.unsupported.extend(self.marks)


class _Fed:
    """The XID collector's turn, with the clock event reasons the compiled read made.

    Each device target's ``nvmlDeviceGetCurrentClocksEventReasons`` is a step of the plan (in
    the collector's time bucket); its turn feeds the bitmasks to the collector
    (:meth:`~gpu_exporter.collectors.xid.XidCollector.collect_read`). A call that failed, or
    was not made, leaves the turn to the collector's own read, which calls again and counts,
    raises or falls back to the older entry point as it always does.
    """

    __slots__ = ("collector", "owner", "python_into", "steps")

    def __init__(self, owner: DeviceRead, collector: XidCollector, python_into: _Into) -> None:
        self.owner = owner
        self.collector = collector
        self.python_into = python_into
        self.steps: list[tuple[int, int, Target]] = []  # (step, its value, target)

    def into(self, view: DeviceView, fields: frozenset[int],
             readings: Mapping[tuple[int, int], FieldReading], now: float, out: ResultBuilder,
             /) -> None:
        """The collector's turn with this cycle's bitmasks (or its own read)."""
        codes, values = self.owner._codes, self.owner._values
        masks: list[tuple[Target, int | None]] = []
        for step, at, target in self.steps:
            code = codes[step]
            if code == SUCCESS:
                masks.append((target, int(values[at])))
            elif code == NVML_NOT_SUPPORTED:
                masks.append((target, None))
            else:
                self.python_into(view, fields, readings, now, out)
                return
        self.collector.collect_read(view, fields, masks, now, out)


class _Run:
    """Consecutive compiled collectors of a plan taken in one turn (none failed, none counts).

    Their turns would each only hand out their kept samples and marks: one row of the
    sampler's loop instead of one per collector. Its time goes to the first collector's.
    """

    __slots__ = ("parts",)

    def __init__(self, parts: tuple[_Part, ...]) -> None:
        self.parts = parts

    def into(self, _view: DeviceView, _fields: frozenset[int],
             _readings: Mapping[tuple[int, int], FieldReading], _now: float, out: ResultBuilder,
             /) -> None:
        """The collectors' kept samples and marks, in their order."""
        samples, marks = out.samples, out.unsupported
        for part in self.parts:
            samples.extend(part.samples)
            marks.extend(part.marks)


class DeviceRead:
    """One GPU's compiled plan and the state kept between its reads (one thread at a time).

    Attributes:
        plan: the sampler's per-collector rows with the compiled collectors' turns.
    """

    def __init__(
        self, fn: Callable[[Any], int], nvml: Nvml, view: DeviceView, plan: Sequence[PlanRow], *,
        collectors: Mapping[str, object], requests: tuple[tuple[int, int], ...],
        fv_timed: int, n_timed: int, keep_readings: bool, generation: int,
    ) -> None:
        self.nvml = nvml
        self.view = view
        self.generation = generation
        self.switches = nvml.switches
        self._fn = fn
        self._requests = requests
        # what the plan is made of, filled by the builders below
        # function, shape, handle, argument, first value, bucket, its structure (or None)
        self._steps: list[tuple[str, int, Handle, int, int, int, Any]] = []
        self._records: list[tuple[int, Entity, int, int, Callable[[float], float | None],
                                  tuple[int, int]]] = []
        self._value_records: list[list[int]] = []
        self._value_parts: list[_Part | None] = []
        # GPM state per target: the C structure, the collector's buffers, their two samples
        self._gpm: list[tuple[_Gpm, Any, tuple[Any, Any]]] = []
        self._collectors = collectors
        self._fields_step = -1
        self._fields_first = 0
        self._fed_steps: list[int] = []  # the XID collector's calls (see _Fed)
        if requests:
            self._fields_step = len(self._steps)
            self._fields_first = self._step(_FIELDS, _FIELD_VALUES, view.handle, len(requests),
                                            fv_timed, entries=field_entries(requests))
        rows: list[PlanRow] = []
        reads_from_python: set[str] = set()
        for given in plan:
            row = given
            name, needs_readings = row[0], row[4]
            part = None
            kind = COMPILED.get(name)
            if kind is not None and type(collectors.get(name)) is kind:
                part = self._compile(row, view)
            elif name == "xid" and type(xid := collectors.get(name)) is XidCollector:
                row = self._feed_xid(row, view, xid)
            if part is None:
                rows.append(row)
                if needs_readings:
                    reads_from_python.add(name)
            else:
                rows.append((name, part.into, *row[2:]))
        self.plan: tuple[PlanRow, ...] = tuple(rows)
        self._parts = tuple(part for row in rows
                            if isinstance(part := getattr(row[1], "__self__", None), _Part))
        self._runs = _runs(rows)
        self.turns = self.plan
        """The rows of this cycle's turns: :attr:`plan` with runs of compiled collectors in
        one row when none failed and none counts a failure (see :meth:`read`)."""
        self._keep = self._kept_readings(plan, reads_from_python, keep_all=keep_readings)
        self._arrays(n_timed)

    # ------------------------------------------------------------------ plan building

    def _step(self, shape: int, function: str, handle: Handle, arg: int, bucket: int, *,
              count: int = 0, entries: Any = None) -> int:  # noqa: ANN401 - a ctypes object
        """Add one call; the index of its first value."""
        first = len(self._value_records)
        count = count or (arg if shape == _FIELDS else _VALUES[shape])
        self._steps.append((function, shape, handle, arg, first, bucket, entries))
        self._value_records.extend([] for _ in range(count))
        self._value_parts.extend(None for _ in range(count))
        return first

    def _record(self, part: _Part, kind: int, entity: Entity, fid: int, value: int, *,
                extra: tuple[int, int] = (-1, -1)) -> None:
        at = len(self._records)
        self._records.append((kind, entity, fid, value, CATALOG[fid].convert, extra))
        for index in (value, *extra):
            if index >= 0:
                self._value_records[index].append(at)
                self._value_parts[index] = part

    def _compile(self, row: PlanRow, view: DeviceView) -> _Part | None:
        """The part of collector ``name``; None (Python path) when a call cannot be made."""
        nvml = self.nvml
        name, into, fields, _, _, bucket = row
        mark = (len(self._steps), len(self._records), len(self._value_records), len(self._gpm))
        part = _Part(self, name, into, bucket)
        part.lo = len(self._records)
        try:
            ok = getattr(self, f"_plan_{name}")(part, view, fields)
        except NvmlError as exc:  # a GPM buffer could not be allocated: the collector says so
            log.debug("GPU %d: %s read in Python: %s", view.entity.gpu, name, exc)
            ok = False
        if ok:
            for at in range(mark[0], len(self._steps)):
                ok = ok and nvml.has_entry(self._steps[at][0])
        if not ok:  # undo what it added
            del self._steps[mark[0]:]
            del self._gpm[mark[3]:]
            del self._records[mark[1]:]
            del self._value_records[mark[2]:]
            del self._value_parts[mark[2]:]
            for records in self._value_records:
                records[:] = [r for r in records if r < mark[1]]
            self._value_parts = [None if p is part else p for p in self._value_parts]
            return None
        part.hi = len(self._records)
        return part

    def _feed_xid(self, row: PlanRow, view: DeviceView, collector: XidCollector) -> PlanRow:
        """The XID collector's row, its clock event reasons read by the plan where it can."""
        function = self._versioned("clocks_event_reasons")
        if CLOCK_EVENTS_COUNT not in row[2] or function is None:
            return row
        fed = _Fed(self, collector, row[1])
        for target in view.targets["device"]:
            step = len(self._steps)
            fed.steps.append((step, self._step(_ULL, function, target.handle, 0, row[5]),
                              target))
            self._fed_steps.append(step)
        return (row[0], fed.into, *row[2:])

    def _call(self, part: _Part, shape: int, function: str, handle: Handle, arg: int = 0, *,
              versioned: str | None = None, count: int = 0, entries: Any = None) -> int:  # noqa: ANN401
        """Add one call of ``part``; the index of its first value."""
        part.steps.append((len(self._steps), function, versioned,
                           len(self._value_records) if shape == _GPM else -1))
        return self._step(shape, function, handle, arg, part.bucket, count=count,
                          entries=entries)

    def _versioned(self, reading: str) -> str | None:
        """The entry point of a versioned read now; None when the library lacks it.

        The direct read then finds that out itself (it counts it once, and switches).
        """
        function = self.nvml.direct_function(reading)
        return function if self.nvml.has_entry(function) else None

    def _plan_field_values(self, part: _Part, view: DeviceView, fields: frozenset[int]) -> bool:
        if self._fields_step < 0:
            return False
        where = {key: self._fields_first + i for i, key in enumerate(self._requests)}
        for target in view.targets["device"]:
            for fid in sorted(fields):
                spec = CATALOG[fid]
                value = where.get((spec.nvml_field or 0, spec.scope))
                if value is None:  # not read: never there
                    self._record(part, _ABSENT, target.entity, fid, self._fields_first)
                else:
                    self._record(part, _FIELD, target.entity, fid, value)
        return True

    def _plan_clocks(self, part: _Part, view: DeviceView, fields: frozenset[int]) -> bool:
        events = self._versioned("clocks_event_reasons")
        for target in view.targets["device"]:
            handle, entity = target.handle, target.entity
            for table, function in ((clocks._CURRENT, "nvmlDeviceGetClockInfo"),
                                    (clocks._APPLICATIONS, "nvmlDeviceGetApplicationsClock"),
                                    (clocks._MAXIMUM, "nvmlDeviceGetMaxClockInfo")):
                for fid, clock_type in table.items():
                    if fid in fields:
                        value = self._call(part, _UINT_ARG, function, handle, clock_type)
                        self._record(part, _PLAIN, entity, fid, value)
            if clocks.REASONS in fields:
                if events is None:
                    return False
                value = self._call(part, _ULL, events, handle,
                                   versioned="clocks_event_reasons")
                self._record(part, _PLAIN, entity, clocks.REASONS, value)
            if clocks.PSTATE in fields:
                value = self._call(part, _UINT, "nvmlDeviceGetPerformanceState", handle)
                self._record(part, _PLAIN, entity, clocks.PSTATE, value)
        return True

    def _plan_temperature(self, part: _Part, view: DeviceView, fields: frozenset[int]) -> bool:
        function = self._versioned("temperature")
        for target in view.targets["device"]:
            if temperature.GPU_TEMP in fields:
                if function is None:
                    return False
                if function == "nvmlDeviceGetTemperature":
                    value = self._call(part, _UINT_ARG, function, target.handle)
                else:
                    value = self._call(part, _TEMPERATURE_V, function, target.handle,
                                       versioned="temperature")
                self._record(part, _PLAIN, target.entity, temperature.GPU_TEMP, value)
            if temperature.FAN_SPEED in fields:
                value = self._call(part, _UINT, "nvmlDeviceGetFanSpeed", target.handle)
                self._record(part, _PLAIN, target.entity, temperature.FAN_SPEED, value)
        return True

    def _plan_power(self, part: _Part, view: DeviceView, fields: frozenset[int]) -> bool:
        for target in view.targets["device"]:
            handle, entity = target.handle, target.entity
            for fid, function in ((power.POWER_USAGE, "nvmlDeviceGetPowerUsage"),
                                  (power.LIMIT, "nvmlDeviceGetPowerManagementLimit")):
                if fid in fields:
                    self._record(part, _PLAIN, entity, fid,
                                 self._call(part, _UINT, function, handle))
            if power.LIMIT_MIN in fields or power.LIMIT_MAX in fields:
                value = self._call(part, _UINT_PAIR,
                                   "nvmlDeviceGetPowerManagementLimitConstraints", handle)
                if power.LIMIT_MIN in fields:
                    self._record(part, _PLAIN, entity, power.LIMIT_MIN, value)
                if power.LIMIT_MAX in fields:
                    self._record(part, _PLAIN, entity, power.LIMIT_MAX, value + 1)
            for fid, function in ((power.LIMIT_DEFAULT, "nvmlDeviceGetPowerManagementDefaultLimit"),
                                  (power.ENFORCED, "nvmlDeviceGetEnforcedPowerLimit")):
                if fid in fields:
                    self._record(part, _PLAIN, entity, fid,
                                 self._call(part, _UINT, function, handle))
        return True

    def _plan_utilization(self, part: _Part, view: DeviceView, fields: frozenset[int]) -> bool:
        for target in view.targets["device"]:
            handle, entity = target.handle, target.entity
            if utilization.GPU_UTIL in fields or utilization.MEM_COPY_UTIL in fields:
                value = self._call(part, _UTILIZATION, "nvmlDeviceGetUtilizationRates", handle)
                if utilization.GPU_UTIL in fields:
                    self._record(part, _PLAIN, entity, utilization.GPU_UTIL, value)
                if utilization.MEM_COPY_UTIL in fields:
                    self._record(part, _PLAIN, entity, utilization.MEM_COPY_UTIL, value + 1)
            for fid, function in ((utilization.ENC_UTIL, "nvmlDeviceGetEncoderUtilization"),
                                  (utilization.DEC_UTIL, "nvmlDeviceGetDecoderUtilization")):
                if fid in fields:  # (utilisation, sampling period): the first
                    self._record(part, _PLAIN, entity, fid,
                                 self._call(part, _UINT_PAIR, function, handle))
        return True

    def _plan_memory(self, part: _Part, view: DeviceView, fields: frozenset[int]) -> bool:
        if not memory._FB.isdisjoint(fields) and not self._plan_framebuffer(part, view, fields):
            return False
        if not memory._BAR1.isdisjoint(fields):
            for target in view.targets["device"]:
                first = self._call(part, _BAR1, "nvmlDeviceGetBAR1MemoryInfo", target.handle)
                for fid, value in ((memory.BAR1_TOTAL, first), (memory.BAR1_USED, first + 2),
                                   (memory.BAR1_FREE, first + 1)):
                    if fid in fields:
                        self._record(part, _PLAIN, target.entity, fid, value)
        return True

    def _plan_framebuffer(self, part: _Part, view: DeviceView, fields: frozenset[int]) -> bool:
        function = self._versioned("memory_info")
        if function is None:
            return False
        v2 = function != "nvmlDeviceGetMemoryInfo"
        for target in view.targets["instance"]:
            entity = target.entity
            if v2:
                first = self._call(part, _MEMORY_V2, function, target.handle,
                                   versioned="memory_info")
            else:
                first = self._call(part, _MEMORY, function, target.handle)
            total, used, reserved = first, first + 2, first + 3 if v2 else -1
            for fid, value in ((memory.FB_TOTAL, total), (memory.FB_FREE, first + 1),
                               (memory.FB_USED, used)):
                if fid in fields:
                    self._record(part, _PLAIN, entity, fid, value)
            if memory.FB_RESERVED in fields:  # the v1 struct has none: not supported
                self._record(part, _PLAIN if v2 else _ABSENT, entity, memory.FB_RESERVED,
                             reserved if v2 else total)
            if memory.FB_USED_PERCENT in fields:
                self._record(part, _PERCENT, entity, memory.FB_USED_PERCENT, used,
                             extra=(total, reserved))
        return True

    def _plan_profiling(self, part: _Part, view: DeviceView, fields: frozenset[int]) -> bool:
        collector = self._collectors["profiling"]
        if not view.info.gpm_supported or not isinstance(collector, ProfilingCollector) \
                or not self.nvml.has_entry(_GPM_METRICS):
            return False  # from DCGM, or marked ``no_gpm``: the collector's own turn
        nvml = self.nvml
        request, ordered, targets = collector.gpm_plan(view, fields)
        slot = {metric: i for i, metric in enumerate(request.metric_ids)}
        for target, buffers in targets:
            pair = (buffers.current, buffers.previous)
            state = _Gpm(metrics_fn=nvml.entry_address(_GPM_METRICS),
                         request=nvml.gpm_request_address(request), current=0,
                         primed=int(buffers.primed), mig=int(target.gi_id is not None),
                         n_metrics=len(request.metric_ids))
            state.samples[0] = nvml.gpm_sample_address(pair[0])
            state.samples[1] = nvml.gpm_sample_address(pair[1])
            self._gpm.append((state, buffers, pair))
            function = "nvmlGpmSampleGet" if target.gi_id is None else "nvmlGpmMigSampleGet"
            first = self._call(part, _GPM, function, view.handle, target.gi_id or 0,
                               count=1 + len(request.metric_ids), entries=state)
            for fid, metric in ordered:
                self._record(part, _METRIC, target.entity, fid, first + 1 + slot[metric],
                             extra=(first, -1))
        return True

    def _kept_readings(self, plan: Sequence[PlanRow], python: set[str], *,
                       keep_all: bool) -> tuple[tuple[int, int, int], ...]:
        """(field id, scope, value index) of the entries the Python readers get as readings."""
        from gpu_exporter.collectors.field_values import field_requests  # noqa: PLC0415

        requests = self._requests
        if keep_all:
            wanted = set(requests)
        else:
            wanted = set(field_requests(f for row in plan if row[0] in python for f in row[2]))
        return tuple((fid, scope, self._fields_first + i)
                     for i, (fid, scope) in enumerate(requests) if (fid, scope) in wanted)

    def _arrays(self, n_timed: int) -> None:
        nvml = self.nvml
        n_steps, n_values = len(self._steps), len(self._value_records)
        steps = (_Step * max(n_steps, 1))()
        for step, (function, shape, handle, arg, first, bucket, entries) in zip(
                steps, self._steps, strict=False):
            step.fn = nvml.entry_address(function)
            step.device = nvml.handle_address(handle)
            step.shape, step.arg, step.first, step.bucket = shape, arg, first, bucket
            if entries is not None:
                step.entries = ctypes.addressof(entries)
        self._codes = (ctypes.c_int32 * max(n_steps, 1))()
        values = (ctypes.c_double * max(n_values, 1))()
        value_codes = (ctypes.c_int32 * max(n_values, 1))(*([_NEW] * n_values))
        stamps = (ctypes.c_int64 * max(n_values, 1))()
        buckets = (ctypes.c_double * max(n_timed, 1))()
        dirty = (ctypes.c_uint32 * max(n_values, 1))()
        self._at = ctypes.c_uint32(n_steps)
        self._keepalive = (steps, values, value_codes, stamps, buckets, self._steps)
        self._dirty = dirty
        self._values = memoryview(values).cast("B").cast("d")
        self._value_codes = memoryview(value_codes).cast("B").cast("i")
        self._stamps = memoryview(stamps).cast("B").cast("q")
        self._buckets = memoryview(buckets).cast("B").cast("d")[:n_timed]
        read = _Read(ctypes.addressof(steps), n_steps, n_values, max(n_timed, 1),
                     ctypes.addressof(self._codes), ctypes.addressof(values),
                     ctypes.addressof(value_codes), ctypes.addressof(stamps),
                     ctypes.addressof(buckets), ctypes.addressof(dirty),
                     ctypes.addressof(self._at))
        self._read_struct = read
        self._read_ref = ctypes.addressof(read)
        self._outs: list[Sample | Unsupported | None] = [None] * len(self._records)
        self._positions = [0] * len(self._records)  # in its part's samples or marks
        batch = range(self._fields_first, self._fields_first + len(self._requests)) \
            if self._fields_step >= 0 else range(0)
        # per value: the records it feeds, their part, whether it is a batched entry
        self._watch = [(tuple(records), part, at in batch) for at, (records, part) in
                       enumerate(zip(self._value_records, self._value_parts, strict=True))]
        # per value: when it feeds one number alone (the usual case), what a new value of
        # it needs without a look at its record (part, record, entity, field, conversion or
        # None, an int read), else None
        self._simple: list[tuple[_Part, int, Entity, int, Callable[[float], float | None] | None,
                                 bool] | None] = []
        for records, part in zip(self._value_records, self._value_parts, strict=True):
            simple = None
            if part is not None and len(records) == 1:
                kind, entity, fid, _, convert, _ = self._records[records[0]]
                if kind in _NUMBERS:
                    simple = (part, records[0], entity, fid,
                              None if convert is as_is else convert, kind == _PLAIN)
            self._simple.append(simple)
        stages = ["reading field values"] * n_steps  # the batched call's, as the sampler's
        for row in self.plan:
            into = row[1]
            part = getattr(into, "__self__", None)
            if isinstance(part, _Part):
                for step, *_ in part.steps:
                    stages[step] = f"collector {part.name}"
        for step in self._fed_steps:
            stages[step] = "collector xid"
        self._stages = stages
        self._entry_errors: dict[int, int] = {}

    # ------------------------------------------------------------------ the cycle

    def stage(self) -> str:
        """What the read is doing, for the hung-GPU log line.

        The collector whose call is under way, named as the sampler names a collector's turn.
        """
        at = self._at.value
        return self._stages[at] if at < len(self._stages) else "reading device values"

    def release(self) -> None:
        """Hand the GPM buffers' roles back to the profiling collector (the plan is dropped).

        The compiled read swaps a target's two buffers in C; the collector's own read, or the
        next plan, goes on from where this one left.
        """
        for state, buffers, pair in self._gpm:
            newer = state.current
            buffers.current, buffers.previous = pair[newer], pair[newer ^ 1]
            buffers.primed = bool(state.primed)
        self._gpm = []

    def valid(self, view: DeviceView, generation: int) -> bool:
        """Whether this plan still fits the GPU's view, field set and entry points."""
        return (self.view is view and self.generation == generation
                and self.switches == self.nvml.switches)

    def read(self, durations: list[float]) -> dict[tuple[int, int], FieldReading]:
        """Run the plan; this cycle's batched field values for the collectors read in Python.

        Only the entries those readers need are given (all of them with ``keep_readings``);
        ``{}`` when the batched call says NOT_SUPPORTED (or nothing is requested).
        ``durations``: the GPU read's seconds per timed step, added to (each call's time goes
        to its collector; the batched call's to ``field_values``).

        Raises:
            GpuLostError: the batched call answered ``GPU_IS_LOST``.
            NvmlError: it failed otherwise.
        """
        dirty = self._fn(self._read_ref)
        if dirty < 0:
            raise RuntimeError("gr_read_device refused its plan")  # a bug here, not NVML's
        durations[:] = map(operator.add, durations, self._buckets)
        if dirty:
            self._changed(self._dirty[:dirty])
        turns = self._runs
        for part in self._parts:
            if part.dirty:
                self.settle(part)
            if part.fail is not None or part.counted:
                turns = self.plan  # each collector in its own turn
        self.turns = turns
        step = self._fields_step
        if step < 0:
            return {}
        code = self._codes[step]
        nvml = self.nvml
        if code != SUCCESS:
            if code == NVML_NOT_SUPPORTED:
                return {}
            raise nvml.failure(_FIELD_VALUES, code)
        for entry_code in self._entry_errors.values():
            nvml.failure(_FIELD_VALUES, entry_code)  # counted, as each failed entry is
        values, codes, stamps = self._values, self._value_codes, self._stamps
        readings = {}
        for fid, scope, at in self._keep:
            entry_code = codes[at]
            value = values[at] if entry_code == SUCCESS else None
            readings[(fid, scope)] = _new_reading(FieldReading, (
                fid, scope, None if value != value else value, entry_code, stamps[at]))  # noqa: PLR0124
        return readings

    def _changed(self, dirty: Sequence[int]) -> None:  # noqa: PLR0912, PLR0915 - written out: per value
        """Decode the outputs that depend on the values in ``dirty``.

        A part whose outputs keep their kind (a sample stays a sample, a mark a mark, nothing
        nothing) and whose answer codes did not change gets the new objects in place; any
        other change makes it settle again (:meth:`settle`).
        """
        watch, outs, positions = self._watch, self._outs, self._positions
        recs, values = self._records, self._values
        decode = self._decode
        errors = self._entry_errors
        codes = self._value_codes
        simples = self._simple
        sample_class, make = Sample, object.__new__
        set_entity, set_field, set_value, set_labels = SAMPLE_SETTERS
        for entry in dirty:
            at = entry & _INDEX
            simple = simples[at]
            if simple is not None and entry == at:  # a number's value alone changed
                owner, record, entity, fid, convert, plain = simple
                if not owner.dirty and outs[record].__class__ is sample_class:
                    raw = values[at]
                    if plain:
                        raw = int(raw)
                    number = raw if convert is None else convert(raw)
                    if number is not None and number == number:  # noqa: PLR0124
                        # new_sample, written out (a hundred per cycle)
                        fresh = make(sample_class)
                        set_entity(fresh, entity)
                        set_field(fresh, fid)
                        set_value(fresh, number)
                        set_labels(fresh, ())
                        outs[record] = fresh
                        owner.samples[positions[record]] = fresh
                        continue
            records, part, entry_of_batch = watch[at]
            if part is not None:
                if part.dirty or entry & _CODE_CHANGED:
                    part.dirty = True
                    for record in records:
                        outs[record] = decode(record)
                else:
                    for record in records:
                        old = outs[record]
                        kind, entity, fid, value_at, convert, _ = recs[record]
                        if old.__class__ is Sample and kind in _NUMBERS:
                            # a number before, its code unchanged: a number now, unless its
                            # conversion drops it (or a field's value type has none)
                            raw = values[value_at]
                            if kind == _PLAIN:
                                raw = int(raw)
                            number = raw if convert is as_is else convert(raw)
                            if number is not None and number == number:  # noqa: PLR0124
                                fresh = outs[record] = new_sample(entity, fid, number)
                                part.samples[positions[record]] = fresh
                                continue
                        new = decode(record)
                        outs[record] = new
                        if new.__class__ is not old.__class__:
                            part.dirty = True
                        elif new.__class__ is Sample:
                            part.samples[positions[record]] = new
                        elif new is not None:
                            part.marks[positions[record]] = new  # type: ignore[assignment]
            if entry_of_batch and entry & _CODE_CHANGED:
                code = codes[at]
                if code in (SUCCESS, NVML_NOT_SUPPORTED):
                    errors.pop(at, None)
                else:
                    errors[at] = code

    def _decode(self, record: int) -> Sample | Unsupported | None:  # noqa: PLR0911, PLR0912 - a branch per record kind, as its collector decides
        """One output from the current values (the collectors' ``ResultBuilder.add``)."""
        kind, entity, fid, at, convert, extra = self._records[record]
        if kind == _ABSENT:
            return Unsupported(entity, fid, NOT_SUPPORTED)
        code = self._value_codes[at]
        raw: float | None
        if kind == _FIELD:
            if code == SUCCESS:
                raw = self._values[at]
                if raw != raw:  # noqa: PLR0124 - NaN: a value type without a number
                    raw = None
            elif code == NVML_NOT_SUPPORTED:
                raw = None
            else:
                return Unsupported(entity, fid, ERROR)
        elif kind == _METRIC:  # as the collector: its sample's answer first
            sampled = self._value_codes[extra[0]]
            if sampled != SUCCESS:
                return Unsupported(entity, fid, NOT_SUPPORTED) if sampled == NVML_NOT_SUPPORTED \
                    else None
            if code == SUCCESS:
                raw = self._values[at]
            elif code == NVML_NOT_SUPPORTED:
                raw = None
            else:  # not computed (the first sample), or failed: left out (counted: settle)
                return None
        elif code != SUCCESS:  # a failed call fails its collector (see settle)
            return Unsupported(entity, fid, NOT_SUPPORTED) if code == NVML_NOT_SUPPORTED \
                else None
        elif kind == _PLAIN:
            raw = int(self._values[at])
        elif kind == _PERCENT:
            total, reserved = extra
            usable = int(self._values[total]) - (int(self._values[reserved])
                                                 if reserved >= 0 else 0)
            raw = int(self._values[at]) / usable if usable > 0 else None
        if raw is None:
            return Unsupported(entity, fid, NOT_SUPPORTED)
        value = raw if convert is as_is else convert(raw)
        if value is None:
            return None
        return new_sample(entity, fid, value)

    def settle(self, part: _Part) -> None:
        """A part's failure (its first failed call, in call order) or its kept outputs.

        Also the failed GPM metrics its turn counts, as the collector's read counts them.
        """
        part.dirty = False
        codes, value_codes = self._codes, self._value_codes
        part.fail = None
        part.counted = []
        for step, function, versioned, gpm in part.steps:
            code = codes[step]
            if code in _ANSWERED:
                if gpm >= 0 and code == SUCCESS:  # the metrics follow the sample's slot
                    n = self._steps[step][6].n_metrics
                    part.counted.extend(
                        (_GPM_METRICS, c) for c in value_codes[gpm + 1:gpm + 1 + n]
                        if c not in _ANSWERED)
                continue
            # a GPM step whose sample was taken failed in its metrics call
            failed = _GPM_METRICS if gpm >= 0 and value_codes[gpm] == SUCCESS else function
            part.fail = (failed, code, versioned)
            part.dirty = True  # its outputs are not settled: decoded in full until they are
            return
        samples: list[Sample] = []
        marks: list[Unsupported] = []
        outs, positions = self._outs, self._positions
        for record in range(part.lo, part.hi):
            out = outs[record]
            if out.__class__ is Sample:
                positions[record] = len(samples)
                samples.append(out)
            elif out is not None:
                positions[record] = len(marks)
                marks.append(out)  # type: ignore[arg-type]
        part.samples, part.marks = samples, marks


def _runs(rows: Sequence[PlanRow]) -> tuple[PlanRow, ...]:
    """``rows`` with each run of consecutive compiled collectors in one row (a :class:`_Run`).

    The row keeps the first collector's name, stage and place in the timed list; its fields
    are the run's.
    """
    out: list[PlanRow] = []
    run: list[PlanRow] = []
    for row in (*rows, None):
        if row is not None and isinstance(getattr(row[1], "__self__", None), _Part):
            run.append(row)
            continue
        if len(run) > 1:
            first = run[0]
            parts = tuple(r[1].__self__ for r in run)  # type: ignore[attr-defined]
            out.append((first[0], _Run(parts).into, frozenset().union(*(r[2] for r in run)),
                        first[3], any(r[4] for r in run), first[5]))
        else:
            out.extend(run)
        run = []
        if row is not None:
            out.append(row)
    return tuple(out)
