"""The per-row sums of process-utilisation samples and the rows' values: the C library and its
Python fallback.

The C library is built by ``pip install`` (as the simulated NVML is): the tests assert it is
the one loaded, then check that both implementations give identical results for random
buffers (unordered samples, PIDs the mapping lacks, timestamps at or under
``lastSeenTimeStamp``, values that are not percentages, empty buffers, counts past the
buffer), that both agree with the plain reference (``attribution_reference.py``), and that the
library refuses a mapping it could not honour without writing out of bounds. The same for the
rows' floating-point part (``RowValues``: averages, reconciliation with the device, the energy
split): identical to the bit, every family summing to the device's value, energy only growing.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from attribution_reference import sample_sums
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nvml_decode import ProcessSamples

from gpu_exporter.fastpath import (
    DEVICE_WORDS,
    FAMILIES,
    LIBRARY,
    OUT_FAMILIES,
    READ_CHANGED,
    READ_FAILED,
    READ_NO_SAMPLES,
    READ_NOTHING_NEWER,
    READ_UNKNOWN,
    SLOT_WORDS,
    CReads,
    CRows,
    CSums,
    PythonRows,
    PythonSums,
    ReadState,
    RowMap,
    SampleSums,
    Totals,
    load_reads,
    load_rows,
    load_sums,
)
from gpu_exporter.nvml import (
    _MEMORY_V2_VERSION,
    PROCESS_INFO,
    PROCESS_SAMPLE,
    ReadPlan,
    _MemoryV2,
)
from gpu_exporter.workloads.attribution import DEFAULT_PERIOD_US, window_scale

P = 166_667
Sample = tuple[int, int, int, int, int, int]  # pid, stamp, sm, mem, enc, dec


def _raw(samples: list[Sample]) -> bytes:
    return b"".join(PROCESS_SAMPLE.pack(*s) for s in samples)


def _both(raw: bytes, count: int, last_seen: int, hint: int, rows_of: dict[int, int], *,
          n_rows: int) -> tuple[tuple[Totals, list[int]], RowMap]:
    """The C and Python results for the same input (asserted equal); the C call's map."""
    c_map, py_map = RowMap(rows_of, n_rows=n_rows), RowMap(rows_of, n_rows=n_rows)
    c_sums: SampleSums = CSums()
    from_c = c_sums(memoryview(bytearray(raw)), count, last_seen, hint, c_map)  # NVML's buffer
    from_bytes = c_sums(raw, count, last_seen, hint, RowMap(rows_of, n_rows=n_rows))
    from_py = PythonSums()(raw, count, last_seen, hint, py_map)
    assert from_c == from_py
    assert from_bytes == from_py
    assert c_map.slot_values() == py_map.slot_values()
    assert c_map.latest() == py_map.latest()
    assert c_map.totals == py_map.totals == from_c[0]
    return from_c, c_map


def test_the_library_is_built_and_loaded() -> None:
    assert LIBRARY.is_file(), "pip install -e . builds it"
    assert isinstance(load_sums(), CSums)


def test_a_missing_library_falls_back_to_python(tmp_path: Path) -> None:
    assert isinstance(load_sums(tmp_path / "absent.so"), PythonSums)
    assert isinstance(load_rows(tmp_path / "absent.so"), PythonRows)


def test_the_row_values_come_from_the_library() -> None:
    assert isinstance(load_rows(), CRows)


_pids = st.sampled_from([7, 100, 4242, 65_535, 100_000, 0xFFFFFFFF])
_values = st.one_of(st.integers(0, 100), st.sampled_from([101, 255, 256, 1 << 16, 0xFFFFFFFF]))
_samples = st.lists(st.tuples(_pids, st.integers(0, 40 * P), _values, _values, _values, _values),
                    max_size=60)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples=_samples, mapped=st.sets(_pids), n_rows=st.integers(1, 4),
       data=st.data(), last_seen=st.sampled_from([0, 1, 10 * P, 20 * P, 50 * P]),
       hint=st.sampled_from([0, 1, P // 2, P, 3 * P]), extra=st.integers(-3, 3))
def test_c_and_python_give_identical_sums(
    *, samples: list[Sample], mapped: set[int], n_rows: int, data: st.DataObject,
    last_seen: int, hint: int, extra: int,
) -> None:
    rows_of = {pid: data.draw(st.integers(0, n_rows - 1)) for pid in sorted(mapped)}
    raw = _raw(samples)
    (totals, sums), rows = _both(raw, max(len(samples) + extra, 0), last_seen, hint,
                                 rows_of, n_rows=n_rows)
    counted = [s for s in samples[:max(len(samples) + extra, 0)] if s[1] > last_seen]
    assert totals.stale == min(len(samples), max(len(samples) + extra, 0)) - len(counted)
    assert totals.used == sum(1 for s in counted if s[0] in rows_of)
    assert totals.unknown == len(counted) - totals.used
    assert totals.newest == max((s[1] for s in counted), default=0)
    assert totals.oldest == min((s[1] for s in counted), default=0)
    assert len(sums) == FAMILIES * n_rows
    assert sum(sums[:n_rows]) == sum(s[2] for s in counted if s[0] in rows_of)
    for pid, values in zip(rows.pids, rows.slot_values(), strict=True):
        own = [s for s in counted if s[0] == pid]
        assert values[0] == sum(s[2] for s in own)
        assert values[1] == len(own)
    for family in range(1, FAMILIES):  # newest-period values are percentages, capped
        assert all(v <= 100 * len(rows_of) for v in sums[family * n_rows:(family + 1) * n_rows])


def test_the_sums_agree_with_the_reference() -> None:
    # unordered: periods in another order, processes shuffled in each
    samples = [(pid, k * P + pid, 10 + pid % 7 + k, pid % 5, k % 3, 1)
               for k in (13, 11, 14, 12, 16, 15) for pid in ((5, 3, 9), (9, 5, 3))[k % 2]]
    ref_sums, gap, oldest, newest, last = sample_sums(ProcessSamples.of(samples))
    (totals, sums), rows = _both(_raw(samples), len(samples), 0, 0, {3: 0, 5: 1, 9: 2}, n_rows=3)
    assert (totals.gap, totals.oldest, totals.newest) == (gap, oldest, newest)
    assert totals.period == gap
    assert sums[:3] == [ref_sums[3], ref_sums[5], ref_sums[9]]
    recent = newest - gap
    for pid, values in zip(rows.pids, rows.slot_values(), strict=True):
        stamp, *newest_values = last[pid]
        assert values[2] == stamp
        assert list(values[3:]) == newest_values
    assert rows.latest() == {pid: tuple(last[pid][1:]) for pid in (3, 5, 9)
                             if last[pid][0] > recent}


def test_only_samples_newer_than_last_seen_count_and_the_newest_period_is_kept() -> None:
    samples = [(1, k * P, 40, 4, 0, 0) for k in range(10, 14)] + [(2, 11 * P, 60, 6, 1, 1)]
    (totals, sums), rows = _both(_raw(samples), len(samples), 11 * P, P, {1: 0, 2: 1}, n_rows=2)
    assert totals == Totals(used=2, unknown=0, stale=3, newest=13 * P, oldest=12 * P, gap=P,
                            period=P, max_busy=80)
    assert sums == [80, 0, 40, 0, 4, 0, 0, 0, 0, 0]
    assert rows.latest() == {1: (40, 4, 0, 0)}
    # the period: the GPU's when smaller than the gap, the default when neither is known
    assert _both(_raw(samples), 1, 0, 0, {1: 0}, n_rows=1)[0][0].period == DEFAULT_PERIOD_US


def test_values_that_are_not_percentages_are_capped_in_the_newest_period_only() -> None:
    samples = [(1, 11 * P, 300, 101, 0xFFFFFFFF, 7), (1, 12 * P, 0xFFFFFFFF, 100, 5, 200)]
    (totals, sums), _ = _both(_raw(samples), 2, 0, P, {1: 0}, n_rows=1)
    assert sums == [300 + 0xFFFFFFFF, 100, 100, 5, 100]
    assert totals.max_busy == 300 + 0xFFFFFFFF


def test_empty_reads_and_an_empty_mapping() -> None:
    (totals, sums), rows = _both(b"", 0, 0, 0, {}, n_rows=1)
    assert totals == Totals(0, 0, 0, 0, 0, 0, DEFAULT_PERIOD_US, 0)
    assert sums == [0] * FAMILIES
    assert rows.latest() == {}
    (totals, sums), _ = _both(_raw([(9, P, 1, 1, 1, 1)]), 1, 0, 0, {}, n_rows=2)
    assert (totals.used, totals.unknown) == (0, 1)
    assert sums == [0] * (2 * FAMILIES)


def test_a_mapping_with_a_row_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="row out of range"):
        RowMap({1: 0, 2: 3}, 3)


def test_the_library_refuses_arguments_it_cannot_honour() -> None:
    lib = ctypes.CDLL(str(LIBRARY))
    fn = lib.gx_sample_sums
    fn.restype = ctypes.c_int
    pointer, size, u64 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint64
    fn.argtypes = [pointer, size, u64, u64, pointer, pointer, size, size, pointer, pointer,
                   pointer]
    raw = ctypes.create_string_buffer(_raw([(1, P, 5, 5, 5, 5), (2, P, 5, 5, 5, 5)]), 64)
    slots = (ctypes.c_uint64 * (2 * SLOT_WORDS))()
    rows = (ctypes.c_uint64 * (2 * FAMILIES))()
    totals = (ctypes.c_uint64 * 8)(*([7] * 8))

    def call(pids: list[int], slot_rows: list[int], n_rows: int, count: int = 2) -> int:
        p = (ctypes.c_uint32 * 2)(*pids)
        r = (ctypes.c_uint32 * 2)(*slot_rows)
        return int(fn(raw, count, 0, 0, p, r, 2, n_rows, slots, rows, totals))

    assert call([1, 2], [0, 1], 2) == 0
    assert list(rows) == [5, 5, 5, 5, 5, 5, 5, 5, 5, 5]
    assert call([1, 2], [0, 2], 2) == -1  # a row past the row arrays
    assert call([2, 1], [0, 1], 2) == -1  # PIDs not ascending
    assert call([1, 1], [0, 1], 2) == -1  # nor unique
    assert call([1, 2], [0, 1], 2, count=1 << 33) == -1  # more than NVML's unsigned count
    assert list(totals) == [0] * 8  # zeroed, nothing summed
    assert int(fn(raw, 2, 0, 0, None, None, 0, 0, None, None, None)) == -1
    assert int(fn(None, 1, 0, 0, None, None, 0, 0, None, None, totals)) == -1
    assert int(fn(None, 0, 0, 0, None, None, 0, 0, None, None, totals)) == 0


def test_the_count_never_reaches_past_the_buffer() -> None:
    samples = [(1, k * P, 10, 0, 0, 0) for k in range(1, 4)]
    raw = _raw(samples)
    for count in (0, 2, 3, 4, 1000):
        (totals, _), _ = _both(raw, count, 0, 0, {1: 0}, n_rows=1)
        assert totals.used == min(count, 3)
    # a buffer whose size is not a whole number of samples: the partial one is not read
    (totals, _), _ = _both(raw + b"\x01" * 31, 4, 0, 0, {1: 0}, n_rows=1)
    assert totals.used == 3


def test_one_read_of_a_steady_gpu() -> None:
    pids = list(range(100_000, 100_048))
    samples = [(pid, (11 + k) * P, 1 + pid % 2, 1, 0, 0) for k in range(120) for pid in pids]
    (totals, sums), rows = _both(_raw(samples), len(samples), 10 * P, P,
                                 {pid: i % 12 for i, pid in enumerate(pids)}, n_rows=13)
    assert totals.used == 5760
    assert sums[:13] == [4 * 120 * (1 + i % 2) for i in range(12)] + [0]
    assert sums[13:26] == [4 * (1 + i % 2) for i in range(12)] + [0]
    assert len(rows.latest()) == 48



# ---------------------------------------------------------------- row values

_device = st.one_of(st.floats(-10, 150), st.sampled_from([0.0, 100.0, math.nan]))
_held = st.one_of(st.just(0.0), st.floats(0, 80e9), st.integers(0, 1 << 40).map(float))


def _bits(values: list[float]) -> list[str]:
    return [value.hex() for value in values]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples=_samples, mapped=st.sets(_pids), n_rows=st.integers(1, 5), data=st.data(),
       last_seen=st.sampled_from([0, 10 * P]), window=st.sampled_from([1, P, 6 * P, 40 * P]),
       device=st.lists(_device, min_size=4, max_size=4),
       memory=st.one_of(st.just(math.nan), st.floats(0, 1e11)),
       joules=st.one_of(st.just(math.nan), st.floats(-5, 5000)), explicit=st.booleans())
def test_c_and_python_give_identical_row_values_that_reconcile(
    *, samples: list[Sample], mapped: set[int], n_rows: int, data: st.DataObject,
    last_seen: int, window: int, device: list[float], memory: float, joules: float,
    explicit: bool,
) -> None:
    rows_of = {pid: data.draw(st.integers(0, n_rows - 1)) for pid in sorted(mapped)}
    rest = data.draw(st.integers(0, n_rows - 1))
    held = data.draw(st.lists(_held, min_size=n_rows, max_size=n_rows))
    counters = data.draw(st.lists(st.floats(0, 1e6), min_size=n_rows, max_size=n_rows))
    raw = _raw(samples)
    maps = []
    for sums_of in (CSums(), PythonSums()):
        rows = RowMap(rows_of, n_rows, rest=rest, memory=held)
        rows.energy[:n_rows] = counters
        sums_of(raw, len(samples), last_seen, 0, rows)
        maps.append(rows)
    scale = P / window / 100.0
    inputs = [*device, memory, joules]
    given_sums = maps[1].sums if explicit else None
    from_c = CRows()(maps[0], scale, inputs, given_sums)[:OUT_FAMILIES * n_rows]
    from_py = PythonRows()(maps[1], scale, inputs, given_sums)[:OUT_FAMILIES * n_rows]
    assert _bits(from_c) == _bits(from_py)
    energy = [maps[0].energy[:n_rows], maps[1].energy[:n_rows]]
    assert _bits(energy[0]) == _bits(energy[1])
    # the rows of every known family add up to the device's value, none negative
    for family, value in enumerate(device, start=1):
        part = from_c[family * n_rows:(family + 1) * n_rows]
        assert all(v >= 0 for v in part)
        if math.isnan(value):
            assert part == [0.0] * n_rows
        else:
            assert math.isclose(sum(part), max(value, 0.0) / 100, rel_tol=1e-9, abs_tol=1e-12)
    part = from_c[5 * n_rows:6 * n_rows]
    assert math.isclose(sum(part), sum(held) if math.isnan(memory) else memory,
                        rel_tol=1e-9, abs_tol=1e-3)
    assert from_c[6 * n_rows:] == energy[0]  # the counters after the call
    # each row's average: its SM sum x scale, each process's capped at 1
    busy = from_c[:n_rows]
    assert all(v >= 0.0 for v in busy)
    per_slot = [min(values[0] * scale, 1.0) for values in maps[0].slot_values()]
    for row in range(n_rows):
        own = [v for v, r in zip(per_slot, maps[0].rows, strict=True) if r == row]
        assert math.isclose(busy[row], sum(own), rel_tol=1e-9, abs_tol=1e-12)
    # energy only grows, by the interval's joules in all
    added = [after - before for after, before in zip(energy[0], counters, strict=True)]
    assert all(v >= 0 for v in added)
    expect = 0.0 if math.isnan(joules) else max(joules, 0.0)
    assert math.isclose(sum(added), expect, rel_tol=1e-9, abs_tol=1e-6)


def test_row_values_by_hand() -> None:
    # rows: a (0), b (1), unattributed (2); a's process averages 0.3, b's 0.5
    rows = RowMap({10: 0, 20: 1}, 3, rest=2, memory=[3e9, 0.0, 1e9])
    samples = [(10, k * P, 30, 20, 0, 0) for k in (1, 2)] + [(20, k * P, 50, 10, 5, 0)
                                                              for k in (1, 2)]
    CSums()(_raw(samples), 4, 0, P, rows)
    scale = P / (2 * P) / 100.0
    out = CRows()(rows, scale, [90.0, 25.0, math.nan, 0.0, 5e9, 100.0])
    assert out[0:3] == [0.3, 0.5, 0.0]
    assert out[3:6] == pytest.approx([0.3, 0.5, 0.1])  # the rest of 90 % to unattributed
    assert out[6:9] == pytest.approx([0.2 * 25 / 30, 0.1 * 25 / 30, 0.0])  # scaled: 30 > 25
    assert out[9:12] == [0.0, 0.0, 0.0]  # encoder unknown
    assert out[12:15] == [0.0, 0.0, 0.0]
    assert out[15:18] == [3e9, 0.0, 2e9]  # 1e9 of the device's 5e9 held by no process
    assert out[18:21] == rows.energy[:3]
    # 100 J: 30 J and 50 J busy, the idle 20 J by memory held (3:1)
    assert rows.energy[:3] == pytest.approx([30.0 + 15.0, 50.0, 5.0])
    # no joules: the counters stay; no memory held: the idle energy is unattributed
    CRows()(rows, scale, [math.nan] * DEVICE_WORDS)
    assert rows.energy[:3] == pytest.approx([45.0, 50.0, 5.0])
    idle = RowMap({10: 0}, 2, rest=1, memory=[0.0, 0.0])
    CRows()(idle, 0.0, [0.0, 0.0, 0.0, 0.0, 0.0, 12.0])
    assert idle.energy[:2] == [0.0, 12.0]


def test_the_row_library_refuses_arguments_it_cannot_honour() -> None:
    lib = ctypes.CDLL(str(LIBRARY))
    fn = lib.gx_rows
    fn.restype = ctypes.c_int
    pointer, size = ctypes.c_void_p, ctypes.c_size_t
    fn.argtypes = [pointer, pointer, pointer, size, size, size, ctypes.c_double, pointer,
                   pointer, pointer, pointer]
    sums = (ctypes.c_uint64 * (2 * FAMILIES))()
    slots = (ctypes.c_uint64 * (2 * SLOT_WORDS))()
    device = (ctypes.c_double * DEVICE_WORDS)(50, 50, 50, 50, 10, 10)
    memory = (ctypes.c_double * 2)(1.0, 1.0)
    out = (ctypes.c_double * (2 * OUT_FAMILIES))(*([7.0] * (2 * OUT_FAMILIES)))
    energy = (ctypes.c_double * 2)()

    def call(slot_rows: list[int], n_rows: int, rest: int) -> int:
        rows = (ctypes.c_uint32 * 2)(*slot_rows)
        return int(fn(sums, slots, rows, 2, n_rows, rest, 0.01, device, memory, out, energy))

    assert call([0, 1], 2, 2) == -1  # the rest row past the rows
    assert call([0, 2], 2, 1) == -1  # a slot's row past them
    assert call([0, 1], 0, 0) == -1  # no rows
    assert list(out) == [7.0] * (2 * OUT_FAMILIES)  # nothing written
    assert list(energy) == [0.0, 0.0]
    assert int(fn(None, slots, None, 2, 2, 1, 0.01, device, memory, out, energy)) == -1
    assert call([0, 1], 2, 1) == 0
    assert list(energy) == [5.0, 5.0]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples=_samples, mapped=st.sets(_pids), n_rows=st.integers(1, 4), data=st.data(),
       last_seen=st.sampled_from([0, 1, 10 * P, 20 * P, 50 * P]),
       hint=st.sampled_from([0, 1, P // 2, P, 3 * P]),
       device=st.lists(_device, min_size=4, max_size=4),
       joules=st.one_of(st.just(math.nan), st.floats(0, 5000)))
def test_one_call_per_gpu_is_the_sums_then_the_rows(
    *, samples: list[Sample], mapped: set[int], n_rows: int, data: st.DataObject,
    last_seen: int, hint: int, device: list[float], joules: float,
) -> None:
    rows_of = {pid: data.draw(st.integers(0, n_rows - 1)) for pid in sorted(mapped)}
    rest = data.draw(st.integers(0, n_rows - 1))
    held = data.draw(st.lists(_held, min_size=n_rows, max_size=n_rows))
    inputs = [*device, 3e9, joules]
    raw = _raw(samples)
    results = []
    for values_of in (CRows(), PythonRows()):
        rows = RowMap(rows_of, n_rows, rest=rest, memory=held)
        rows.energy[:n_rows] = [1.0] * n_rows
        totals, values = values_of.cycle(memoryview(bytearray(raw)), len(samples), last_seen,
                                         hint, rows=rows, device=inputs)
        results.append((totals, None if values is None else _bits(values),
                        _bits(rows.energy[:n_rows]), rows.slot_values()))
    assert results[0] == results[1]
    totals, values, energy, _ = results[0]
    # the same totals as the sums alone; rows only when every newer sample is mapped
    alone = RowMap(rows_of, n_rows, rest=rest, memory=held)
    expect_totals, _ = CSums()(raw, len(samples), last_seen, hint, alone)
    assert totals == expect_totals
    assert (values is not None) == (totals.unknown == 0 and totals.used > 0)
    if values is None:
        assert energy == _bits([1.0] * n_rows)  # untouched
        return
    # the rows: a call with the window's factor (attribution.window_scale)
    _, scale = window_scale(totals.gap, totals.oldest, totals.newest, last_seen, hint or None)
    again = RowMap(rows_of, n_rows, rest=rest, memory=held)
    again.energy[:n_rows] = [1.0] * n_rows
    CSums()(raw, len(samples), last_seen, hint, again)
    assert _bits(CRows()(again, scale, inputs)) == values


def test_the_cycle_call_refuses_a_map_it_cannot_honour() -> None:
    lib = ctypes.CDLL(str(LIBRARY))
    fn = lib.gx_cycle
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p]
    assert int(fn(None)) == -1
    rows = RowMap({1: 0}, 2, rest=1, memory=[1.0, 0.0])
    raw = bytearray(_raw([(1, P, 5, 5, 5, 5)]))
    assert CRows().cycle(memoryview(raw), 1, 0, 0, rows=rows,
                         device=[50.0] * 4 + [1.0, 1.0])[1] is not None
    cmap = rows.doubles[-1]  # the map's struct gx_map, its read's fields as that call left them
    assert (cmap.count, cmap.samples) == (1, ctypes.addressof(ctypes.c_char.from_buffer(raw)))
    for field, value in (("rest", 2), ("n_rows", 0), ("count", 1 << 33)):
        saved = getattr(cmap, field)
        setattr(cmap, field, value)
        assert int(fn(ctypes.byref(cmap))) == -1
        setattr(cmap, field, saved)
    cmap.last_seen = 0
    assert int(fn(ctypes.byref(cmap))) == 0
    cmap.last_seen = 2 * P  # nothing newer: sums only
    assert int(fn(ctypes.byref(cmap))) == 2


# ---------------------------------------------------------------- one call: reads and rows

_LIST_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint),
                            ctypes.c_void_p)
_MEMORY_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
_SAMPLES_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                               ctypes.POINTER(ctypes.c_uint), ctypes.c_ulonglong)
_CODER_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint),
                             ctypes.POINTER(ctypes.c_uint))
Process = tuple[int, int, int, int]  # pid, used bytes, GPU instance, compute instance
SUCCESS, NOT_SUPPORTED, NOT_FOUND, INSUFFICIENT_SIZE = 0, 3, 6, 7


class _FakeNvml:
    """NVML's per-process entry points (called by the C read), answering what a test set,
    with nvml.h's size protocol; each call recorded."""

    def __init__(self) -> None:
        self.lists: list[list[Process]] = [[], [], []]
        self.used = 0
        self.samples: list[Sample] = []
        self.coders = [(SUCCESS, 0), (SUCCESS, 0)]  # encoder, decoder: answer, utilisation
        self.codes: dict[int, int] = {}  # call -> the answer instead (INSUFFICIENT_SIZE: count)
        self.calls: list[int] = []
        self.stamps: list[int] = []  # the lastSeenTimeStamp of each samples call
        self.list_fns = tuple(_LIST_FN(self._list(kind)) for kind in range(3))
        self.memory_fn = _MEMORY_FN(self._memory)
        self.samples_fn = _SAMPLES_FN(self._samples)
        self.coder_fns = tuple(_CODER_FN(self._coder(k)) for k in range(2))

    def _list(self, kind: int) -> Callable[..., int]:
        def call(_handle: int, count: Any, infos: int) -> int:
            self.calls.append(kind)
            entries = self.lists[kind]
            if kind in self.codes:
                count[0] = len(entries)
                return self.codes[kind]
            if len(entries) > count[0]:
                count[0] = len(entries)
                return INSUFFICIENT_SIZE
            data = b"".join(PROCESS_INFO.pack(*entry) for entry in entries)
            ctypes.memmove(infos, data, len(data))
            count[0] = len(entries)
            return SUCCESS
        return call

    def _memory(self, _handle: int, memory: int) -> int:
        self.calls.append(3)
        if 3 in self.codes:
            return self.codes[3]
        _MemoryV2.from_address(memory).used = self.used
        return SUCCESS

    def _coder(self, index: int) -> Callable[..., int]:
        def call(_handle: int, value: Any, period: Any) -> int:
            self.calls.append(5 + index)
            if 5 + index in self.codes:
                return self.codes[5 + index]
            code, value[0] = self.coders[index]
            period[0] = 167_000
            return code
        return call

    def _samples(self, _handle: int, buffer: int, count: Any, last_seen: int) -> int:
        self.calls.append(4)
        self.stamps.append(last_seen)
        newer = [s for s in self.samples if s[1] > last_seen]
        if 4 in self.codes:
            count[0] = len(newer)
            return self.codes[4]
        if not newer:
            return NOT_FOUND
        if len(newer) > count[0]:
            count[0] = len(newer)
            return INSUFFICIENT_SIZE
        data = _raw(newer)
        ctypes.memmove(buffer, data, len(data))
        count[0] = len(newer)
        return SUCCESS


class _Buffers:
    """The buffers of one read (a ProcessReader's in the exporter) and its plan."""

    def __init__(self, fake: _FakeNvml, list_entries: tuple[int, int, int], sample_entries: int,
                 slack: int, *, samples: bool = True,
                 coders: tuple[bool, bool] = (False, False)) -> None:
        self.lists = [(ctypes.c_char * (PROCESS_INFO.size * n))() for n in list_entries]
        self.counts = [ctypes.c_uint() for _ in range(3)]
        self.memory = _MemoryV2(version=_MEMORY_V2_VERSION)
        self.samples = (ctypes.c_char * (PROCESS_SAMPLE.size * sample_entries))()
        self.sample_count = ctypes.c_uint()
        address = ctypes.addressof

        def entry(fn: Any) -> int:
            return int(ctypes.cast(fn, ctypes.c_void_p).value or 0)

        self.plan = ReadPlan(
            0x1234, tuple(entry(fn) for fn in fake.list_fns),  # type: ignore[arg-type]
            tuple(address(buffer) for buffer in self.lists),  # type: ignore[arg-type]
            tuple(address(count) for count in self.counts),  # type: ignore[arg-type]
            list_entries, entry(fake.memory_fn), address(self.memory),
            entry(fake.samples_fn) if samples else 0, address(self.samples),
            address(self.sample_count), sample_entries, slack,
            (entry(fake.coder_fns[0]) if coders[0] else 0,
             entry(fake.coder_fns[1]) if coders[1] else 0))

    def read_lists(self) -> tuple[bytes, bytes, bytes]:
        return tuple(buffer[:PROCESS_INFO.size * count.value]  # type: ignore[return-value]
                     for buffer, count in zip(self.lists, self.counts, strict=True))


def _processes(kind: int) -> st.SearchStrategy[list[Process]]:
    return st.lists(st.tuples(st.integers(1, 1 << 22), st.sampled_from([0, 1 << 20, 5 << 30,
                                                                           (1 << 64) - 1]),
                              st.just(0xFFFFFFFF), st.just(kind)), max_size=12)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lists=st.tuples(_processes(0), _processes(1), _processes(2)),
       list_entries=st.tuples(*[st.integers(1, 14)] * 3), samples=_samples,
       sample_entries=st.integers(1, 70), slack=st.integers(0, 3), extra=st.sets(_pids),
       n_rows=st.integers(1, 4), data=st.data(), used=st.integers(0, 1 << 40),
       last_seen=st.sampled_from([0, 1, 10 * P, 20 * P]), hint=st.sampled_from([0, P, 3 * P]),
       device=st.lists(_device, min_size=4, max_size=4),
       joules=st.one_of(st.just(math.nan), st.floats(0, 5000)),
       coders=st.tuples(st.booleans(), st.booleans()),
       coder_answers=st.tuples(*[st.tuples(st.sampled_from([SUCCESS, NOT_SUPPORTED]),
                                           st.integers(0, 100))] * 2))
def test_one_compiled_read_is_the_reads_then_the_cycle_call(  # noqa: PLR0915
    *, lists: tuple[list[Process], ...], list_entries: tuple[int, int, int],
    samples: list[Sample], sample_entries: int, slack: int, extra: set[int], n_rows: int,
    data: st.DataObject, used: int, last_seen: int, hint: int, device: list[float],
    joules: float, coders: tuple[bool, bool], coder_answers: list[tuple[int, int]],
) -> None:
    fake = _FakeNvml()
    fake.lists = [list(entries) for entries in lists]
    fake.samples, fake.used, fake.coders = samples, used, list(coder_answers)
    buffers = _Buffers(fake, list_entries, sample_entries, slack, coders=coders)
    state = ReadState(buffers.plan, 0)
    mapped = {pid for entries in lists for pid, *_ in entries} | extra
    rows_of = {pid: data.draw(st.integers(0, n_rows - 1)) for pid in sorted(mapped)}
    rest = data.draw(st.integers(0, n_rows - 1))
    held = data.draw(st.lists(_held, min_size=n_rows, max_size=n_rows))
    rows = RowMap(rows_of, n_rows, rest=rest, memory=held)
    rows.energy[:n_rows] = [1.0] * n_rows
    reads = CReads()
    inputs = [*device, math.nan, joules]
    newer = [s for s in samples if s[1] > last_seen]

    # the first read: nothing to compare the lists with (or a buffer too small: stopped)
    answer = reads(state, rows, last_seen, hint, inputs)
    short = [kind for kind in range(3) if len(lists[kind]) > list_entries[kind]]
    if short:
        assert answer == READ_FAILED
        assert (state.failed, state.code) == (short[0], INSUFFICIENT_SIZE)
        assert buffers.counts[short[0]].value == len(lists[short[0]])  # the count it needs
        assert fake.calls == list(range(short[0] + 1))  # stopped there
        assert _bits(rows.energy[:n_rows]) == _bits([1.0] * n_rows)
        return
    expect_lists = tuple(b"".join(PROCESS_INFO.pack(*e) for e in entries) for entries in lists)
    assert buffers.read_lists() == expect_lists
    assert buffers.memory.used == used
    if newer and len(newer) + slack > sample_entries:  # too small, or too little room left
        assert answer == READ_FAILED
        assert state.failed == 4
        assert state.code == (INSUFFICIENT_SIZE if len(newer) > sample_entries else SUCCESS)
        return
    assert answer == READ_CHANGED
    assert buffers.sample_count.value == len(newer)  # NOT_FOUND: none
    assert fake.calls == [0, 1, 2, 3, 4, *(5 + k for k in (0, 1) if coders[k])]
    assert fake.stamps == [last_seen]
    read_coders = [float(value) if asked and code == SUCCESS else None
                   for asked, (code, value) in zip(coders, coder_answers, strict=True)]
    assert [state.coder(0), state.coder(1)] == read_coders
    state.keep(expect_lists)

    # the same lists again: the cycle call over the samples just read, the memory and the
    # coders asked for read as the device's: the same as a cycle call with those inputs
    answer = reads(state, rows, last_seen, hint, inputs)
    if not newer:  # NOT_FOUND: the map keeps its last read's values, untouched
        assert answer == READ_NO_SAMPLES
        assert rows.totals is None
        assert rows.slot_values() == [(0,) * 7] * len(rows_of)
        assert _bits(rows.energy[:n_rows]) == _bits([1.0] * n_rows)
        return
    expect = RowMap(rows_of, n_rows, rest=rest, memory=held)
    expect.energy[:n_rows] = [1.0] * n_rows
    device_read = [*device[:2], *((math.nan if read is None else read) if coders[k] else
                                  device[2 + k] for k, read in enumerate(read_coders))]
    totals, values = CRows().cycle(_raw(newer), len(newer), last_seen, hint, rows=expect,
                                   device=[*device_read, float(used), joules])
    if values is None:
        assert answer == (READ_UNKNOWN if totals.unknown else READ_NOTHING_NEWER)
    else:
        assert not isinstance(answer, int)
        assert answer[0] == totals
        assert _bits(answer[1]) == _bits(values)
    assert rows.totals == totals
    assert rows.slot_values() == expect.slot_values()
    assert _bits(rows.energy[:n_rows]) == _bits(expect.energy[:n_rows])

    # a list that changes: read, no rows; any call answering otherwise stops the read there
    fake.lists[1].append((99, 7, 0xFFFFFFFF, 0xFFFFFFFF))
    answer = reads(state, rows, last_seen, hint, inputs)
    assert answer in (READ_CHANGED, READ_FAILED)
    assert (answer == READ_FAILED) == (len(fake.lists[1]) > list_entries[1])
    made = [0, 1, 2, 3, 4, *(5 + k for k in (0, 1) if coders[k])]  # the calls of a read
    call = data.draw(st.sampled_from(made))
    code = data.draw(st.sampled_from([15, 25, 999] if call > 4 else  # a coder's NOT_SUPPORTED
                                     [3, 15, 25, 999]))  # is an answer; lost, version, other
    fake.codes = {call: code}
    fake.calls.clear()
    state.keep(buffers.read_lists())
    fake.lists[1] = list(lists[1])
    answer = reads(state, rows, last_seen, hint, inputs)
    assert answer == READ_FAILED
    assert (state.failed, state.code) == (call, code)
    assert fake.calls == made[:made.index(call) + 1]


def test_the_compiled_read_refuses_a_plan_it_cannot_honour() -> None:
    fake = _FakeNvml()
    buffers = _Buffers(fake, (4, 4, 4), 8, 2)
    state = ReadState(buffers.plan, 0)
    reads = CReads()
    assert reads(state, None, 0, 0, [math.nan] * 6) == READ_CHANGED  # reads only, no map
    for field, value in (("memory_fn", None), ("memory", None), ("sample_entries", 1 << 33)):
        saved = getattr(state.reader, field)
        setattr(state.reader, field, value)
        with pytest.raises(ValueError, match="gx_read"):
            reads(state, None, 0, 0, [math.nan] * 6)
        setattr(state.reader, field, saved)
    state.reader.list[2] = None
    with pytest.raises(ValueError, match="gx_read"):
        reads(state, None, 0, 0, [math.nan] * 6)
    # no samples (a MIG instance's read): lists and memory only
    fake.calls.clear()
    plain = ReadState(_Buffers(fake, (4, 4, 4), 8, 2, samples=False).plan, 0)
    assert reads(plain, None, 0, 0, [math.nan] * 6) == READ_CHANGED
    assert fake.calls == [0, 1, 2, 3]
    assert load_reads(Path("/nonexistent/lib.so")) is None
