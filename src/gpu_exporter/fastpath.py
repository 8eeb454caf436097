"""Per-row sums of NVML process-utilisation samples: a small C library, or the same in Python.

The workload collector reads, per GPU and cycle, up to NVML's whole sample buffer (one
sample per process and 1/6 s: 48 processes x 20 s are 5,760 samples). This module turns one
such read into what the rows need, for a PID -> row mapping (:class:`RowMap`):

- per process (a *slot* of the mapping): its SM percent summed over its samples, how many
  were counted, and its newest sample's timestamp and four values (each capped at 100);
- per row: those SM sums added up, and the newest-period values of the processes whose newest
  sample lies within one sample period of the read's newest (the window of NVML's device
  utilisation) added up;
- :class:`Totals`: samples counted, samples whose PID the mapping lacks (the caller maps them
  and asks again), samples at or under ``lastSeenTimeStamp`` (never counted: no sample is
  counted twice), the newest and oldest timestamps, the smallest gap between two samples of
  one process and the sample period.

All integers: the floating-point part (averages, reconciliation) stays with the caller, so
both implementations agree exactly. The C one (``gpu_exporter/_fast/samples.c``, built by
``setup.py`` into ``gpu_exporter/_fast/``, a plain shared library with no Python headers) is
one ctypes call per read over NVML's own buffer; :class:`PythonSums` is the fallback for a
source tree where the library is not built (:func:`load_sums` picks). This module is the only
one that loads the library.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

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

log = logging.getLogger(__name__)

LIBRARY = Path(__file__).resolve().parent / "_fast" / "libgpu_exporter_fast.so"
"""Where ``setup.py`` puts the library (in the package; under ``src/`` when editable)."""
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

    __slots__ = ("arrays", "n_rows", "pids", "raw", "rows", "totals")

    def __init__(self, rows_of: Mapping[int, int], n_rows: int) -> None:
        self.pids = tuple(sorted(rows_of))
        self.rows = tuple(rows_of[pid] for pid in self.pids)
        if any(not 0 <= row < n_rows for row in self.rows):
            raise ValueError(f"row out of range 0..{n_rows - 1}: {self.rows}")
        self.n_rows = n_rows
        self.totals: Totals | None = None  # of the last read summed with this map
        self.raw: Sequence[int] = ()  # its slots, SLOT_WORDS per pid (a list or a C array)
        self.arrays: Any = None  # the C implementation's arrays (see CSums)

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


class CSums:
    """:class:`SampleSums` by the C library (one call per read, over NVML's buffer).

    Args:
        path: the library.

    Raises:
        OSError: it cannot be loaded, or it is of another version.
    """

    def __init__(self, path: Path = LIBRARY) -> None:
        lib = ctypes.CDLL(str(path))
        abi = lib.gx_abi
        abi.restype = ctypes.c_int
        abi.argtypes = []
        if abi() != _ABI:
            raise OSError(f"{path}: version {abi()}, expected {_ABI} (rebuild the package)")
        fn = lib.gx_sample_sums
        fn.restype = ctypes.c_int
        pointer, size, u64 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint64
        fn.argtypes = [pointer, size, u64, u64, pointer, pointer, size, size, pointer, pointer,
                       pointer]
        self._fn = fn
        self._lib = lib

    def __call__(self, samples: bytes | memoryview, count: int, last_seen: int,
                 period_hint: int, rows: RowMap) -> tuple[Totals, list[int]]:
        """See :class:`SampleSums`."""
        arrays = rows.arrays
        if arrays is None:
            arrays = rows.arrays = _arrays(rows)
        size = samples.nbytes if isinstance(samples, memoryview) else len(samples)
        count = max(min(count, size // SAMPLE_SIZE), 0)  # never past the buffer
        if not count:
            address: Any = None
        elif isinstance(samples, memoryview) and not samples.readonly:
            address = ctypes.addressof(ctypes.c_char.from_buffer(samples))
        else:
            address = bytes(samples)  # passed by address, not copied again
        _, slots, out, args = arrays
        if self._fn(address, count, last_seen, period_hint, *args):
            raise ValueError("gx_sample_sums refused its arguments")  # RowMap checked them
        rows.raw = slots
        values = out[:]
        result = rows.totals = _totals(Totals, values[:_TOTAL_WORDS])
        return result, values[_TOTAL_WORDS:]


_totals: Any = tuple.__new__
"""``Totals(*values)`` without the named tuple's Python-level ``__new__``."""


def _arrays(rows: RowMap) -> tuple[Any, Any, Any, tuple[int, ...]]:
    """The C arrays of a mapping, and the call's arguments that point to them."""
    n = len(rows.pids)
    keys = (ctypes.c_uint32 * (2 * n + 1))(*rows.pids, *rows.rows)
    slots = (ctypes.c_uint64 * (n * SLOT_WORDS + 1))()
    out = (ctypes.c_uint64 * (_TOTAL_WORDS + rows.n_rows * FAMILIES))()
    base = ctypes.addressof(keys)
    totals = ctypes.addressof(out)
    return keys, slots, out, (base, base + 4 * n, n, rows.n_rows, ctypes.addressof(slots),
                              totals + 8 * _TOTAL_WORDS, totals)


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
        result = rows.totals = Totals(used, len(fresh) - used, count - len(fresh), newest,
                                      min(fresh, default=0), gap, period, max(busy, default=0))
        return result, out


def load_sums(path: Path = LIBRARY) -> SampleSums:
    """The C implementation, or :class:`PythonSums` when the library cannot be loaded."""
    try:
        return CSums(path)
    except (OSError, AttributeError) as exc:
        log.debug("fast path library not loaded (%s): per-row sums in Python", exc)
        return PythonSums()
