"""The workload collector's column paths (pure parts, no NVML library).

The process-utilisation samples are summed per row by :mod:`gpu_exporter.fastpath` (its C
library; ``tests/test_fastpath.py`` checks it against the Python fallback); the collector
turns the sums into the factor to per-row averages (``_window``), and the row values come
from the same library (``fastpath.RowValues``: C, or the Python fallback). The rows reach
the renderer as columns (``NativeRows``), which must render exactly as the same rows as
``Native`` objects.
"""

from __future__ import annotations

import math

import pytest

from gpu_exporter.collectors.workload import _GpuState, _known, _Layout, _Window, _window
from gpu_exporter.fastpath import CRows, CSums, PythonRows, PythonSums, RowMap, RowValues
from gpu_exporter.model import Entity, Native, NativeRows, Natives
from gpu_exporter.model import Sample as DcgmSample
from gpu_exporter.nvml import PROCESS_SAMPLE
from gpu_exporter.render import RenderOptions, native_families, render
from gpu_exporter.workloads.attribution import UNATTRIBUTED, WorkloadKey
from gpu_exporter.workloads.procfs import PidCache

P = 166_666
Sample = tuple[int, int, int, int, int, int]  # pid, stamp, sm, mem, enc, dec
A, B = WorkloadKey("pod", "aaaaaaaaaaaa"), WorkloadKey("pod", "bbbbbbbbbbbb")
KEYS = (A, B, UNATTRIBUTED)


def _raw(samples: list[Sample]) -> bytes:
    return b"".join(PROCESS_SAMPLE.pack(*s) for s in samples)


def _periods(pids: list[int], first: int, count: int) -> list[Sample]:
    """``count`` sample periods of every process in ``pids``, oldest first."""
    return [(pid, (first + k) * P, 1 + (pid * 7 + k) % 60, (pid + k) % 30, k % 3, pid % 5)
            for k in range(count) for pid in pids]


def _layout(rowof: dict[int, int]) -> _Layout:
    return _Layout((None, None, None), frozenset(), None, None, True, KEYS,
                   tuple(k.label_pairs() for k in KEYS), rowof, frozenset(rowof), 2,
                   [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], RowMap(rowof, len(KEYS)))


def _state() -> _GpuState:
    return _GpuState(PidCache("/nonexistent"), last_seen_us=10 * P, period_us=P)


Busy = list[float]
Util = tuple[list[int], list[int], list[int], list[int]]


def _values(window: _Window, layout: _Layout, values_of: RowValues) -> tuple[Busy, Util]:
    """A window's per-row averages (from the row values) and newest-period percent sums."""
    scale, sums = window
    n = len(layout.keys)
    own = layout.rowmap.sums if sums is None else sums
    out = values_of(layout.rowmap, scale, [math.nan] * 6, sums)
    sm, mem, enc, dec = (list(own[k * n:(k + 1) * n]) for k in range(1, 5))
    return out[:n], (sm, mem, enc, dec)


@pytest.mark.parametrize(("sums", "values_of"), [(CSums(), CRows()), (PythonSums(), PythonRows())],
                         ids=["c", "python"])
def test_rows_sum_their_processes_in_any_order(sums: CSums | PythonSums,
                                               values_of: RowValues) -> None:
    rowof = {4242: 0, 17: 1, 90_000: 0, 3: 1, 51: 0}
    pids = list(rowof)
    samples = _periods(pids, 11, 6)
    shuffled = []  # the same samples in another order within each period
    for k in range(6):
        period = samples[k * len(pids):(k + 1) * len(pids)]
        shuffled.extend(period[k % 3:] + period[:k % 3] if k % 2 else period[::-1])
    windows = []
    for order in (samples, shuffled):
        layout, state = _layout(rowof), _state()
        raw = _raw(order)
        windows.append(_values(_window(sums(raw, len(order), state.last_seen_us, P,
                                            layout.rowmap)[0], layout, state), layout, values_of))
        assert state.last_seen_us == 16 * P
        assert state.latest is layout.rowmap
    assert windows[0] == windows[1]
    busy, utils = windows[0]
    for row in (0, 1):
        own = [s for s in samples if rowof[s[0]] == row]
        assert busy[row] == pytest.approx(sum(s[2] for s in own) / 6 / 100, rel=1e-12)
        newest = [s for s in own if s[1] == 16 * P]
        for column, util in enumerate(utils):
            assert util[row] == sum(s[2 + column] for s in newest)
    assert busy[2] == 0.0
    assert [util[2] for util in utils] == [0, 0, 0, 0]


@pytest.mark.parametrize(("sums", "values_of"), [(CSums(), CRows()), (PythonSums(), PythonRows())],
                         ids=["c", "python"])
def test_an_average_over_one_is_capped_per_process(sums: CSums | PythonSums,
                                                   values_of: RowValues) -> None:
    rowof = {1: 0, 2: 0}
    samples = [*_periods([1, 2], 11, 2), (2, 13 * P, 300, 101, 0, 7)]  # not percentages
    layout, state = _layout(rowof), _state()
    samples[-2] = (2, 12 * P, 250, 0, 0, 0)
    busy, utils = _values(_window(sums(_raw(samples), len(samples), state.last_seen_us, P,
                                       layout.rowmap)[0], layout, state), layout, values_of)
    own1 = [s[2] for s in samples if s[0] == 1]
    assert busy[0] == pytest.approx(sum(own1) / 3 / 100 + 1.0, rel=1e-12)
    assert [util[0] for util in utils] == [100, 100, 0, 7]  # process 1: no newest sample


def test_nothing_newer_keeps_the_last_periods_values_of_processes_still_listed() -> None:
    rowof = {1: 0, 2: 1}
    layout, state = _layout(rowof), _state()
    samples = [*_periods([1, 2], 11, 2), (1, 13 * P, 40, 4, 0, 0), (2, 13 * P, 20, 2, 1, 1)]
    _window(CSums()(_raw(samples), len(samples), state.last_seen_us, P, layout.rowmap)[0],
            layout, state)
    again = _values(_window(None, layout, state), layout, CRows())
    assert again == ([0.0, 0.0, 0.0], ([40, 20, 0], [4, 2, 0], [0, 1, 0], [0, 1, 0]))
    # process 2 no longer listed: its values are gone with it
    fewer = _layout({1: 1})
    assert _values(_window(None, fewer, state), fewer, CRows())[1] == \
        ([0, 40, 0], [0, 4, 0], [0, 0, 0], [0, 0, 0])


def test_rows_in_columns_render_as_the_same_natives() -> None:
    gpu = Entity(0, "GPU-0", "00000000:18:00.0", "NVIDIA H100")
    mig = Entity(0, "GPU-0", "00000000:18:00.0", "NVIDIA H100", gi_id=7, gi_profile="1g.10gb")
    rows = (
        NativeRows(gpu, ("gpu_exporter_workload_processes",
                         "gpu_exporter_workload_energy_joules_total"),
                   (((("workload_kind", "pod"), ("workload", "a")),
                     (("workload_kind", "unattributed"), ("workload", "unattributed"))),
                    ((("workload_kind", "pod"), ("workload", "a")),)),
                   ([2.0, 0.0], (12.5,))),
        NativeRows(mig, ("gpu_exporter_workload_utilization_available",),
                   (((("reason", "mig"),),),), ((0.0,),)),
    )
    singles = (Native("gpu_exporter_gpu_up", 1.0, (), gpu),)
    natives = Natives(singles, rows)
    flat = [*singles, *(n for block in rows for n in block.natives())]
    assert list(natives) == flat
    assert len(natives) == 5
    assert natives[1] == Native("gpu_exporter_workload_processes", 2.0,
                                (("workload_kind", "pod"), ("workload", "a")), gpu)
    extra = (Native("gpu_exporter_collections_total", 3.0),)
    assert list(natives + extra) == [*singles, *extra, *flat[1:]]
    options = RenderOptions(hostname="node-1")
    for fmt in ("text", "openmetrics"):
        assert render(native_families(singles, options, rows), fmt) == \
            render(native_families(flat, options), fmt)



def test_device_values_are_read_where_they_were_and_searched_when_the_list_changes() -> None:
    gpu = Entity(0, "GPU-0", "00000000:18:00.0", "NVIDIA H100")
    other = Entity(1, "GPU-1", "00000000:19:00.0", "NVIDIA H100")
    state = _state()
    cycle = [DcgmSample(gpu, 150, 40.0), DcgmSample(gpu, 203, 55.0), DcgmSample(other, 204, 9.0),
             DcgmSample(gpu, 204, 30.0), DcgmSample(gpu, 207, "")]
    assert _known(cycle, gpu, state) == {203: 55.0, 204: 30.0}  # blank: NVML is asked
    assert state.known_at == (5, ((1, 203), (3, 204), (4, 207)))
    # the next cycle: same places, new values (a NaN is left out too)
    cycle = [DcgmSample(gpu, 150, 41.0), DcgmSample(gpu, 203, 60.0), DcgmSample(other, 204, 9.0),
             DcgmSample(gpu, 204, math.nan), DcgmSample(gpu, 207, 3.0)]
    assert _known(cycle, gpu, state) == {203: 60.0, 207: 3.0}
    # same length, other places: searched again
    cycle = [DcgmSample(gpu, 203, 61.0), DcgmSample(gpu, 150, 41.0), DcgmSample(gpu, 206, 1.0),
             DcgmSample(gpu, 204, 31.0), DcgmSample(gpu, 207, 4.0)]
    assert _known(cycle, gpu, state) == {203: 61.0, 206: 1.0, 204: 31.0, 207: 4.0}
    assert state.known_at == (5, ((0, 203), (2, 206), (3, 204), (4, 207)))
    # another length: searched again; any iterable is read
    assert _known(iter(cycle[:2]), gpu, state) == {203: 61.0}
    assert _known((), gpu, state) == {}
