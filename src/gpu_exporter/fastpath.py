"""Per-workload rows of NVML process-utilisation samples: a small C library, or the same in Python.

The workload collector reads, per GPU and cycle, the process-utilisation samples newer than
its last read (a driver answers one per process; a driver that kept one per process and
sample period would answer more, in any order: both are summed alike). This module turns
one such read into what the rows need, for a PID -> row mapping (:class:`RowMap`):

- the sums (:class:`SampleSums`): per process (a *slot* of the mapping) its SM percent summed
  over its samples, how many were counted, and its newest sample's timestamp and four values
  (each capped at 100); per row those SM sums added up, and the newest-period values of the
  processes whose newest sample lies within one sample period of the read's newest (the
  window of NVML's device utilisation) added up; :class:`Totals`: samples counted, samples
  whose PID the mapping lacks (the caller maps them and asks again), samples at or under
  ``lastSeenTimeStamp`` (never counted: no sample is counted twice), the newest and oldest
  timestamps, the smallest gap between two samples of one process and the sample period.
  All integers.
- the rows (:class:`RowValues`): each row's busy share over the read's window (with
  :func:`~gpu_exporter.workloads.attribution.window_scale`'s factor), the four utilisation
  families and memory reconciled with the device's values (the rest on the unattributed row),
  and the energy split added to the row counters. Plain left-to-right double sums in both
  implementations, so they agree to the bit.

The C ones (``gpu_exporter/_fast/samples.c`` and ``rows.c``, built by ``setup.py`` into one
plain shared library in ``gpu_exporter/_fast/``, no Python headers) are one ctypes call per GPU
and cycle over NVML's own buffer (``gx_cycle``: the sums, then the rows); :class:`PythonSums`
and :class:`PythonRows` are the fallback for a source tree where the library is not built
(:func:`load_sums` and :func:`load_rows` pick). This module is the only one that loads the
library.
"""

from __future__ import annotations

import ctypes
import logging
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from gpu_exporter.fastlib import LIBRARY
from gpu_exporter.fastlib import int_function as _int_function
from gpu_exporter.fastlib import open_library as _open
from gpu_exporter.workloads.attribution import (
    plain_sum,
    reconcile_rows,
    split_energy_rows,
    window_scale,
)

__all__ = [
    "FAMILIES",
    "LIBRARY",
    "SLOT_WORDS",
    "CSums",
    "PythonSums",
    "RowMap",
    "SampleSums",
    "Totals",
    "load_sums",
]

if TYPE_CHECKING:
    from gpu_exporter.nvml import ReadPlan

log = logging.getLogger(__name__)

SLOT_WORDS = 9
"""Words per slot: SM sum, samples, newest stamp, its sm/mem/enc/dec, then two the
implementations use on their own (see :meth:`RowMap.slot_values`)."""
FAMILIES = 5
"""Row sums, family by family: SM sums (all samples), then newest-period sm, mem, enc, dec."""
_TOTAL_WORDS = 8
_ABI = 1 * 10000 + SLOT_WORDS * 100 + _TOTAL_WORDS
DEFAULT_PERIOD_US = 166_667
"""NVML's shortest process-sample period, the period until one is seen (as attribution.py)."""
SAMPLE_SIZE = 32
"""``sizeof(nvmlProcessUtilizationSample_t)``: pid, padding, timeStamp, four percentages."""


class Totals(NamedTuple):
    """What one read held, over all its samples (see the module)."""

    used: int
    unknown: int
    stale: int
    newest: int
    oldest: int
    gap: int
    period: int
    max_busy: int


class RowMap:
    """A PID -> row mapping of one GPU's rows, with the arrays its sums are written to.

    Made once per layout of rows and reused while it holds; one thread at a time.

    Args:
        rows_of: pid -> its row (``0 <= row < n_rows``).
        n_rows: how many rows.

    Raises:
        ValueError: a row out of range.
    """

    __slots__ = ("arrays", "doubles", "energy", "memory", "n_rows", "pids", "raw", "rest",
                 "rows", "source", "sums", "totals")

    def __init__(self, rows_of: Mapping[int, int], n_rows: int, *, rest: int = 0,
                 memory: Sequence[float] = ()) -> None:
        self.pids = tuple(sorted(rows_of))
        self.rows = tuple(rows_of[pid] for pid in self.pids)
        if any(not 0 <= row < n_rows for row in self.rows) or not 0 <= rest < max(n_rows, 1):
            raise ValueError(f"row out of range 0..{n_rows - 1}: {self.rows}, rest {rest}")
        if memory and len(memory) != n_rows:
            raise ValueError(f"{len(memory)} memory values for {n_rows} rows")
        self.n_rows = n_rows
        self.rest = rest
        self.totals: Totals | None = None  # of the last read summed with this map
        self.raw: Sequence[int] = ()  # its slots, SLOT_WORDS per pid (a list or a C array)
        self.sums: list[int] = []  # the last read's row sums (FAMILIES x n_rows) by __call__
        self.arrays: Any = None  # the C implementation's arrays (see CSums)
        self.memory = (ctypes.c_double * max(n_rows, 1))(*memory)
        """The bytes each row's processes hold (see :class:`RowValues`)."""
        self.energy = (ctypes.c_double * max(n_rows, 1))()
        """Each row's energy counter (joules), added to by :class:`RowValues`."""
        self.doubles: Any = None  # RowValues' output array and call arguments (see CRows)
        self.source: tuple[memoryview, int, int] | None = None  # see CRows.cycle

    def slot_values(self) -> list[tuple[int, ...]]:
        """Per pid (in :attr:`pids` order), the last read's values.

        Its SM sum, samples, newest stamp, and that sample's sm, mem, enc, dec (capped at 100).
        """
        raw = self.raw[:len(self.pids) * SLOT_WORDS]
        return [tuple(raw[at:at + 7]) for at in range(0, len(raw), SLOT_WORDS)]

    def latest(self) -> dict[int, tuple[int, ...]]:
        """Each pid's newest-period (sm, mem, enc, dec) in the last read (see the module)."""
        totals = self.totals
        if totals is None:
            return {}
        recent = totals.newest - totals.period
        return {pid: values[3:] for pid, values in zip(self.pids, self.slot_values(),
                                                       strict=True)
                if values[1] and (totals.newest < totals.period or values[2] > recent)}


class SampleSums(Protocol):
    """Sum one read's samples for a mapping (see :class:`CSums`, :class:`PythonSums`)."""

    def __call__(self, samples: bytes | memoryview, count: int, last_seen: int,
                 period_hint: int, rows: RowMap) -> tuple[Totals, list[int]]:
        """Sum ``count`` samples; the totals and the row sums (``FAMILIES x n_rows``).

        ``rows`` keeps the totals and the per-slot values (:meth:`RowMap.slot_values`).
        """
        ...

    def totals(self, samples: bytes | memoryview, count: int, last_seen: int,
               period_hint: int, rows: RowMap) -> Totals:
        """The same sums, returning the totals only (what the collector's steady cycle needs).

        The row sums stay with ``rows``, where the same library's :class:`RowValues` reads
        them.
        """
        ...


class CSums:
    """:class:`SampleSums` by the C library (one call per read, over NVML's buffer).

    Args:
        path: the library.

    Raises:
        OSError: it cannot be loaded, or it is of another version.
    """

    def __init__(self, path: Path = LIBRARY) -> None:
        lib = _open(path, "gx_abi", _ABI)
        pointer, size, u64 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint64
        self._fn = _int_function(lib, "gx_sample_sums", pointer, size, u64, u64, pointer,
                                 pointer, size, size, pointer, pointer, pointer)
        self._lib = lib

    def __call__(self, samples: bytes | memoryview, count: int, last_seen: int,
                 period_hint: int, rows: RowMap) -> tuple[Totals, list[int]]:
        """See :class:`SampleSums`."""
        result = self.totals(samples, count, last_seen, period_hint, rows)
        rows.sums = rows.arrays[2][_TOTAL_WORDS:]
        return result, rows.sums

    def totals(self, samples: bytes | memoryview, count: int, last_seen: int,
               period_hint: int, rows: RowMap) -> Totals:
        """See :meth:`SampleSums.totals`.

        :attr:`RowMap.sums` is left empty: the row sums stay in the C arrays, where
        :class:`CRows` reads them.
        """
        arrays = rows.arrays
        if arrays is None:
            arrays = rows.arrays = _arrays(rows)
        count, address = _samples_address(samples, count)
        if self._fn(address, count, last_seen, period_hint, *arrays[3]):
            raise ValueError("gx_sample_sums refused its arguments")  # RowMap checked them
        rows.raw = arrays[1]
        rows.sums = []
        result: Totals = _totals(Totals, arrays[4].tolist())
        rows.totals = result
        return result


def _samples_address(samples: bytes | memoryview, count: int) -> tuple[int, Any]:
    """The count of whole samples to read (never past the buffer) and what to pass for them.

    A writable view (NVML's buffer) by its address, anything else as bytes (passed by
    address, not copied again).
    """
    size = samples.nbytes if isinstance(samples, memoryview) else len(samples)
    count = max(min(count, size // SAMPLE_SIZE), 0)
    if not count:
        return 0, None
    if isinstance(samples, memoryview) and not samples.readonly:
        return count, ctypes.addressof(ctypes.c_char.from_buffer(samples))
    return count, bytes(samples)


_totals: Any = tuple.__new__
"""``Totals(*values)`` without the named tuple's Python-level ``__new__``."""


def _arrays(rows: RowMap) -> tuple[Any, Any, Any, tuple[int, ...], memoryview]:
    """The C arrays of a mapping, the call's arguments that point to them, a view of totals."""
    n = len(rows.pids)
    keys = (ctypes.c_uint32 * (2 * n + 1))(*rows.pids, *rows.rows)
    slots = (ctypes.c_uint64 * (n * SLOT_WORDS + 1))()
    out = (ctypes.c_uint64 * (_TOTAL_WORDS + rows.n_rows * FAMILIES))()
    base = ctypes.addressof(keys)
    totals = ctypes.addressof(out)
    return keys, slots, out, (base, base + 4 * n, n, rows.n_rows, ctypes.addressof(slots),
                              totals + 8 * _TOTAL_WORDS, totals), \
        memoryview(out).cast("B").cast("Q")[:_TOTAL_WORDS]


class PythonSums:
    """:class:`SampleSums` in Python (the fallback; one sample at a time)."""

    def __call__(self, samples: bytes | memoryview, count: int, last_seen: int,
                 period_hint: int, rows: RowMap) -> tuple[Totals, list[int]]:
        """See :class:`SampleSums`."""
        view = memoryview(samples).cast("B")
        count = max(min(count, view.nbytes // SAMPLE_SIZE), 0)  # never past the buffer
        view = view[:count * SAMPLE_SIZE]
        words = view.cast("I")
        pids, stamps, sm = words[0::8].tolist(), view.cast("Q")[1::4].tolist(), words[4::8]
        n = len(rows.pids)
        slot_of = {pid: i for i, pid in enumerate(rows.pids)}.get
        busy, seen, stamp, before, where = [0] * n, [0] * n, [0] * n, [0] * n, [0] * n
        gap = 0
        for i, pid, ts in zip(range(count), pids, stamps, strict=True):
            slot = slot_of(pid) if ts > last_seen else None
            if slot is None:
                continue
            busy[slot] += sm[i]
            if seen[slot]:
                rise = ts - before[slot]
                if rise > 0 and (not gap or rise < gap):
                    gap = rise
                if ts >= stamp[slot]:
                    stamp[slot], where[slot] = ts, i
            else:
                stamp[slot], where[slot] = ts, i
            before[slot] = ts
            seen[slot] += 1
        fresh = [ts for ts in stamps if ts > last_seen]
        used = sum(seen)
        period = gap
        if period_hint and (not period or period_hint < period):
            period = period_hint
        period = period or DEFAULT_PERIOD_US
        newest = max(fresh, default=0)
        n_rows = rows.n_rows
        out = [0] * (n_rows * FAMILIES)
        slots = [0] * (n * SLOT_WORDS)
        for slot, row in enumerate(rows.rows):
            at = slot * SLOT_WORDS
            out[row] += busy[slot]
            slots[at:at + 3] = busy[slot], seen[slot], stamp[slot]
            if seen[slot]:
                i = where[slot]
                values = [min(words[8 * i + column], 100) for column in (4, 5, 6, 7)]
                slots[at + 3:at + 7] = values
                if newest < period or stamp[slot] > newest - period:
                    for family, value in enumerate(values, start=1):
                        out[family * n_rows + row] += value
        rows.raw = slots
        rows.sums = out
        result = rows.totals = Totals(used, len(fresh) - used, count - len(fresh), newest,
                                      min(fresh, default=0), gap, period, max(busy, default=0))
        return result, out

    def totals(self, samples: bytes | memoryview, count: int, last_seen: int,
               period_hint: int, rows: RowMap) -> Totals:
        """See :meth:`SampleSums.totals` (the row sums in :attr:`RowMap.sums`)."""
        return self(samples, count, last_seen, period_hint, rows)[0]


class RowValues(Protocol):
    """The floating-point part of one GPU's rows (see :class:`CRows`, :class:`PythonRows`).

    The rules of :mod:`gpu_exporter.workloads.attribution`, over a map's rows: each row's
    *busy* share (its SM sums x ``scale``: its average over the read's window; when some
    process's average passes 1, each process's is capped at 1 and summed per row), the four
    utilisation families (each row's newest-period percent / 100, reconciled with the
    device's value: the remainder on the map's ``rest`` row, or every row scaled by
    device / sum when the rows exceed it), the memory rows (:attr:`RowMap.memory` reconciled
    the same way with the device's used memory) and the energy split (the interval's joules
    by busy share, scaled to 1 when the shares pass it; the idle rest by the memory the rows
    hold, unattributed when none holds any) added to :attr:`RowMap.energy`.

    Every sum is a plain left-to-right sum, so both implementations agree to the bit.
    """

    def __call__(self, rows: RowMap, scale: float, device: Sequence[float],
                 sums: Sequence[int] | None = None) -> list[float]:
        """The rows' values: ``OUT_FAMILIES x n_rows`` (see :data:`OUT_FAMILIES`).

        ``device``: :data:`DEVICE_WORDS` values (sm, mem, enc, dec percent, used memory in
        bytes, the interval's joules), NaN where unknown: a utilisation family whose device
        value is unknown is left 0, unknown memory is the rows' own sum, unknown joules leave
        the energy counters as they are. ``sums``: ``FAMILIES x n_rows`` row sums, ``None``
        for the last read's sums of ``rows`` (by the same library's :class:`SampleSums`).

        Raises:
            ValueError: fewer values than asked for.
        """
        ...

    def cycle(self, samples: bytes | memoryview, count: int, last_seen: int, period_hint: int,
              *, rows: RowMap, device: Sequence[float]) -> tuple[Totals, list[float] | None]:
        """One whole GPU's read: its sums (as :meth:`SampleSums.totals`), then its rows.

        The rows' values (as a call with the factor
        :func:`~gpu_exporter.workloads.attribution.window_scale` gives for the totals,
        ``last_seen`` and ``period_hint``) only when every sample newer than
        ``last_seen`` belongs to the map and there is one; else ``None`` and the energy
        counters are untouched (the caller maps the new PIDs and asks again, or keeps the last
        values). One call of the C library.
        """
        ...


OUT_FAMILIES = 7
"""Row values per :class:`RowValues` call, family by family: busy, sm, mem, enc, dec, memory,
the energy counters."""
DEVICE_WORDS = 6
"""Device values of a :class:`RowValues` call: sm, mem, enc, dec (percent), memory, joules."""


class _Map(ctypes.Structure):
    """``struct gx_map`` of rows.c: one map's arrays and sizes, then one read's (``_READ``)."""

    _fields_ = (("pids", ctypes.c_void_p), ("slot_rows", ctypes.c_void_p),
                ("slots", ctypes.c_void_p), ("sums", ctypes.c_void_p),
                ("totals", ctypes.c_void_p), ("memory", ctypes.c_void_p),
                ("out", ctypes.c_void_p), ("energy", ctypes.c_void_p),
                ("n_slots", ctypes.c_uint64), ("n_rows", ctypes.c_uint64),
                ("rest", ctypes.c_uint64), ("samples", ctypes.c_void_p),
                ("count", ctypes.c_uint64), ("last_seen", ctypes.c_uint64),
                ("period_hint", ctypes.c_uint64), ("device", ctypes.c_double * DEVICE_WORDS))


_READ = struct.Struct(f"=4Q{DEVICE_WORDS}d")
"""A read's fields of ``struct gx_map`` (samples, count, last seen, period, device values),
written in one go at ``_READ_AT``."""
_READ_AT: int = _Map.samples.offset
_ROWS_ABI = (3 * 100 + DEVICE_WORDS * 10 + OUT_FAMILIES) * 1000 + ctypes.sizeof(_Map)


class CRows:
    """:class:`RowValues` by the C library (one call per GPU and cycle).

    Args:
        path: the library.

    Raises:
        OSError: it cannot be loaded, or it is of another version.
    """

    def __init__(self, path: Path = LIBRARY) -> None:
        lib = _open(path, "gx_rows_abi", _ROWS_ABI)
        pointer, size = ctypes.c_void_p, ctypes.c_size_t
        self._fn = _int_function(lib, "gx_rows", pointer, pointer, pointer, size, size, size,
                                 ctypes.c_double, pointer, pointer, pointer, pointer)
        self._cycle = _int_function(lib, "gx_cycle", pointer)
        self._lib = lib

    def __call__(self, rows: RowMap, scale: float, device: Sequence[float],
                 sums: Sequence[int] | None = None) -> list[float]:
        """See :class:`RowValues`."""
        doubles = rows.doubles
        if doubles is None:
            doubles = rows.doubles = _doubles(rows)
        view, inputs, own_sums, head, tail, _ = doubles
        inputs[:] = device
        if sums is None:
            address: Any = own_sums  # the row sums of the map's last read (CSums)
        else:
            if len(sums) < FAMILIES * rows.n_rows:
                raise ValueError(f"{len(sums)} sums for {rows.n_rows} rows")
            address = (ctypes.c_uint64 * len(sums))(*sums)
        if self._fn(address, *head, scale, *tail):
            raise ValueError("gx_rows refused its arguments")  # RowMap checked them
        values: list[float] = view.tolist()
        return values

    def cycle(self, samples: bytes | memoryview, count: int, last_seen: int, period_hint: int,
              *, rows: RowMap, device: Sequence[float]) -> tuple[Totals, list[float] | None]:
        """See :meth:`RowValues.cycle`."""
        doubles = rows.doubles
        if doubles is None:
            doubles = rows.doubles = _doubles(rows)
        view, _, _, _, _, cmap = doubles
        source = rows.source  # the buffer read last time, its whole samples and address
        if source is not None and source[0] is samples:
            count = max(min(count, source[1]), 0)
            address: int = source[2]
            held: Any = None
        else:
            if isinstance(samples, memoryview) and not samples.readonly:
                held = samples  # NVML's buffer, read in place
            else:
                held = bytearray(samples)  # a copy the call can point to
            size = (held.nbytes if isinstance(held, memoryview) else len(held)) // SAMPLE_SIZE
            count = max(min(count, size), 0)  # never past the buffer
            address = ctypes.addressof(ctypes.c_char.from_buffer(held)) if size else 0
            if held is samples:
                rows.source = (samples, size, address)
        _READ.pack_into(cmap, _READ_AT, address, count, last_seen, period_hint, *device)
        code = self._cycle(ctypes.byref(cmap))
        del held
        if code < 0:
            raise ValueError("gx_cycle refused its arguments")  # RowMap checked them
        totals: Totals = _totals(Totals, rows.arrays[4].tolist())
        rows.totals = totals  # rows.raw: the C slots (set by _doubles)
        if code:
            return totals, None
        values: list[float] = view.tolist()
        return totals, values


def _doubles(rows: RowMap) -> tuple[memoryview[float], Any, int, tuple[int, ...],
                                    tuple[int, ...], Any]:
    """:class:`CRows`' arrays of a map, and the call's arguments that point to them.

    A view of the output array (which keeps it alive), the device values' array, the address
    of the map's row sums (those of :class:`CSums`, sharing its arrays), the arguments before
    ``scale`` and after it, and the map's ``struct gx_map`` (for ``gx_cycle``).
    """
    if rows.arrays is None:
        rows.arrays = _arrays(rows)
    rows.raw = rows.arrays[1]  # the slots the C calls write
    _, _, _, (pids, slot_rows, n, n_rows, slots, sums, totals), _ = rows.arrays
    out = (ctypes.c_double * (OUT_FAMILIES * max(n_rows, 1)))()
    inputs = (ctypes.c_double * DEVICE_WORDS)()
    view: memoryview[float] = memoryview(out).cast("B").cast("d")
    memory, energy = ctypes.addressof(rows.memory), ctypes.addressof(rows.energy)
    cmap = _Map(pids, slot_rows, slots, sums, totals, memory, ctypes.addressof(out), energy, n,
                n_rows, rows.rest)
    return view, inputs, sums, (slots, slot_rows, n, n_rows, rows.rest), \
        (ctypes.addressof(inputs), memory, ctypes.addressof(out), energy), cmap


class PythonRows:
    """:class:`RowValues` in Python (the fallback: the C library's steps, in its order)."""

    def __call__(self, rows: RowMap, scale: float, device: Sequence[float],
                 sums: Sequence[int] | None = None) -> list[float]:
        """See :class:`RowValues`."""
        n = rows.n_rows
        if sums is None:
            sums = rows.sums or [0] * (FAMILIES * n)
        if len(sums) < FAMILIES * n or len(device) < DEVICE_WORDS:
            raise ValueError(f"{len(sums)} sums, {len(device)} device values for {n} rows")
        rest = rows.rest
        raw = rows.raw
        slot_busy = [raw[at] if at < len(raw) else 0
                     for at in range(0, len(rows.pids) * SLOT_WORDS, SLOT_WORDS)]
        if any(value * scale > 1.0 for value in slot_busy):
            busy: list[float] = [0.0] * n
            for row, value in zip(rows.rows, slot_busy, strict=True):
                average = value * scale
                busy[row] += average if average < 1.0 else 1.0
        else:
            busy = [sums[row] * scale for row in range(n)]
        out: list[float] = list(busy)
        for family in range(4):
            part = [percent / 100.0 for percent in sums[(1 + family) * n:(2 + family) * n]]
            if device[family] == device[family]:  # not NaN
                part = reconcile_rows(part, device[family] / 100.0, rest)
            else:
                part = [0.0] * n
            out.extend(part)
        memory = list(rows.memory[:n])
        device_memory = device[4]
        if device_memory != device_memory:  # noqa: PLR0124 (NaN: the rows' own sum)
            device_memory = plain_sum(memory)
        out.extend(reconcile_rows(memory, device_memory, rest))
        joules = device[5]
        if joules == joules:  # noqa: PLR0124 (not NaN)
            _split_energy(rows, busy, max(joules, 0.0))
        out.extend(rows.energy[:n])
        return out

    def cycle(self, samples: bytes | memoryview, count: int, last_seen: int, period_hint: int,
              *, rows: RowMap, device: Sequence[float]) -> tuple[Totals, list[float] | None]:
        """See :meth:`RowValues.cycle`."""
        totals = PythonSums().totals(samples, count, last_seen, period_hint, rows)
        if totals.unknown or not totals.used:
            return totals, None
        _, scale = window_scale(totals.gap, totals.oldest, totals.newest, last_seen,
                                period_hint or None)
        return totals, self(rows, scale, device)


def _split_energy(rows: RowMap, busy: list[float], joules: float) -> None:
    """The interval's ``joules`` split and added to ``rows.energy`` (see :class:`RowValues`)."""
    n = rows.n_rows
    energy = rows.energy
    for row, value in enumerate(split_energy_rows(joules, busy, rows.memory[:n], rows.rest)):
        energy[row] = energy[row] + value


class _Reader(ctypes.Structure):
    """``struct gx_reader`` of procs.c: one GPU's read and what the call answers.

    The read is a :class:`~gpu_exporter.nvml.ReadPlan`'s.
    """

    _fields_ = (("handle", ctypes.c_void_p), ("list_fn", ctypes.c_void_p * 3),
                ("list", ctypes.c_void_p * 3), ("list_count", ctypes.c_void_p * 3),
                ("list_entries", ctypes.c_uint64 * 3), ("last", ctypes.c_void_p * 3),
                ("last_count", ctypes.c_uint64 * 3), ("last_valid", ctypes.c_uint64),
                ("memory_fn", ctypes.c_void_p), ("memory", ctypes.c_void_p),
                ("samples_fn", ctypes.c_void_p), ("samples", ctypes.c_void_p),
                ("sample_count", ctypes.c_void_p), ("sample_entries", ctypes.c_uint64),
                ("sample_slack", ctypes.c_uint64), ("coder_fn", ctypes.c_void_p * 2),
                ("coder_value", ctypes.c_uint64 * 2), ("coder_code", ctypes.c_uint64 * 2),
                ("last_seen", ctypes.c_uint64),
                ("failed", ctypes.c_uint64), ("code", ctypes.c_uint64))


_READS_ABI = 1 * 10000 + ctypes.sizeof(_Reader)
READ_ROWS, READ_UNKNOWN, READ_NOTHING_NEWER, READ_CHANGED, READ_FAILED, READ_NO_SAMPLES = \
    range(6)
""":meth:`CReads.__call__`'s answers: the rows made; samples of a PID the map lacks; no
sample newer than ``last_seen`` among those read (the map's sums are of that read); read,
but the lists are not those of the last read (or no map given); a call answered otherwise
(:attr:`ReadState.failed`, :attr:`ReadState.code`); the same lists and no samples at all
(NVML's NOT_FOUND: the map untouched, its last read's values kept)."""
PROCESS_INFO_SIZE = 24
"""``sizeof(nvmlProcessInfo_t)``."""


class ReadState:
    """One GPU's compiled read (:class:`CReads`): the plan it was made from and its state.

    Args:
        plan: the reader's :class:`~gpu_exporter.nvml.ReadPlan`.
        generation: the reader's generation the plan belongs to.
    """

    __slots__ = ("address", "coders", "generation", "lasts", "lists", "reader")

    def __init__(self, plan: ReadPlan, generation: int) -> None:
        self.generation = generation
        self.coders = (bool(plan.coder_fns[0]), bool(plan.coder_fns[1]))
        """Whether the read asks for the encoder's, the decoder's utilisation."""
        self.lasts = tuple((ctypes.c_char * max(PROCESS_INFO_SIZE * entries, 1))()
                           for entries in plan.list_entries)
        """The last read's lists as the call compares them (the buffers' sizes)."""
        self.lists: tuple[bytes | None, bytes | None, bytes | None] = (None, None, None)
        """Those lists as bytes, once the caller has them (:meth:`keep`)."""
        reader = self.reader = _Reader(
            plan.handle, (ctypes.c_void_p * 3)(*plan.list_fns),
            (ctypes.c_void_p * 3)(*plan.lists), (ctypes.c_void_p * 3)(*plan.list_counts),
            (ctypes.c_uint64 * 3)(*plan.list_entries),
            (ctypes.c_void_p * 3)(*(ctypes.addressof(last) for last in self.lasts)),
            (ctypes.c_uint64 * 3)(), 0, plan.memory_fn, plan.memory, plan.samples_fn or None,
            plan.samples, plan.sample_count, plan.sample_entries, plan.sample_slack,
            (ctypes.c_void_p * 2)(*(fn or None for fn in plan.coder_fns)))
        self.address = ctypes.addressof(reader)

    @property
    def failed(self) -> int:
        """The call that answered otherwise (``nvml.READ_CALLS``: none)."""
        return int(self.reader.failed)

    @property
    def code(self) -> int:
        """Its answer."""
        return int(self.reader.code)

    def coder(self, index: int) -> float | None:
        """The encoder's (0) or decoder's (1) utilisation the last read got.

        ``None``: not supported, or not asked for. Only of a read that made the coders' calls
        (one that stopped before them, ``failed`` < ``nvml.CODER_CALL``, leaves an earlier
        read's answers, or none: the caller reads them).
        """
        reader = self.reader
        return float(reader.coder_value[index]) if reader.coder_code[index] == 0 else None

    def keep(self, lists: tuple[bytes | None, bytes | None, bytes | None]) -> None:
        """The caller holds the last read's lists (as ``lists``): the next read compares."""
        self.lists = lists
        self.reader.last_valid = 1


class CReads:
    """One GPU's per-process NVML reads and its rows in one call of the C library.

    ``gx_read`` (procs.c) calls the entry points of a
    :class:`~gpu_exporter.nvml.ReadPlan` into its buffers: the three process lists, the used
    memory, the samples newer than ``last_seen``, the encoder's and decoder's utilisation when
    asked for; then, when the lists are those of the last read and a map is given,
    ``gx_cycle`` (:meth:`RowValues.cycle`) over the samples just read, the used memory and
    the coders read as the device's (NaN when not supported). Any answer other than the
    expected one stops the read there (the caller carries on with
    ``nvml.ProcessReader.complete``).

    Args:
        path: the library.

    Raises:
        OSError: it cannot be loaded, or it is of another version.
    """

    def __init__(self, path: Path = LIBRARY) -> None:
        lib = _open(path, "gx_read_abi", _READS_ABI)
        CRows(path)  # the rows' part of the same library, of its version
        self._fn = _int_function(lib, "gx_read", ctypes.c_void_p, ctypes.c_void_p)
        self._lib = lib

    def __call__(self, state: ReadState, rows: RowMap | None, last_seen: int,
                 period_hint: int, device: Sequence[float]) -> tuple[Totals, list[float]] | int:
        """One read; the totals and row values (as :meth:`RowValues.cycle`) or the answer.

        ``device``: as :meth:`RowValues.cycle`'s; its used memory, and the coders' values
        asked for, are the call's answers. Answers other than the rows: ``READ_*``.
        """
        state.reader.last_seen = last_seen
        if rows is None:
            code: int = self._fn(state.address, None)
        else:
            doubles = rows.doubles
            if doubles is None:
                doubles = rows.doubles = _doubles(rows)
            cmap = doubles[5]
            _READ.pack_into(cmap, _READ_AT, 0, 0, last_seen, period_hint, *device)
            code = self._fn(state.address, ctypes.addressof(cmap))
        if code < 0:
            raise ValueError("gx_read refused its arguments")  # the plan and RowMap checked
        if code > READ_NOTHING_NEWER or rows is None:  # the map's sums not written
            return code
        totals: Totals = _totals(Totals, rows.arrays[4].tolist())
        rows.totals = totals  # of the samples read (rows.raw: the C slots)
        if code != READ_ROWS:
            return code
        values: list[float] = doubles[0].tolist()
        return totals, values


def load_reads(path: Path = LIBRARY) -> CReads | None:
    """The compiled reads, or ``None`` when the library cannot be loaded (read in Python)."""
    try:
        return CReads(path)
    except (OSError, AttributeError) as exc:
        log.debug("fast path library not loaded (%s): per-process reads in Python", exc)
        return None


def load_rows(path: Path = LIBRARY) -> RowValues:
    """The C implementation, or :class:`PythonRows` when the library cannot be loaded."""
    try:
        return CRows(path)
    except (OSError, AttributeError) as exc:
        log.debug("fast path library not loaded (%s): row values in Python", exc)
        return PythonRows()


def load_sums(path: Path = LIBRARY) -> SampleSums:
    """The C implementation, or :class:`PythonSums` when the library cannot be loaded."""
    try:
        return CSums(path)
    except (OSError, AttributeError) as exc:
        log.debug("fast path library not loaded (%s): per-row sums in Python", exc)
        return PythonSums()
