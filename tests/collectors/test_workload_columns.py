"""The workload collector's column paths (pure parts, no NVML library).

The process-utilisation samples are decoded straight from NVML's buffer: the common layout
(the same processes in every sample period) with byte slices and 16-bit lanes, anything else
one sample at a time; both must give the same sums. The rows reach the renderer as columns
(``NativeRows``), which must render exactly as the same rows as ``Native`` objects.
"""

from __future__ import annotations

import pytest

from gpu_exporter.collectors.workload import (
    _blocks,
    _GpuState,
    _grouping,
    _Layout,
    _per_row,
    _percentages,
    _window,
)
from gpu_exporter.model import Entity, Native, NativeRows, Natives
from gpu_exporter.nvml import PROCESS_SAMPLE
from gpu_exporter.render import RenderOptions, native_families, render
from gpu_exporter.workloads.attribution import UNATTRIBUTED, WorkloadKey
from gpu_exporter.workloads.procfs import PidCache

P = 166_666
Sample = tuple[int, int, int, int, int, int]  # pid, stamp, sm, mem, enc, dec


def _raw(samples: list[Sample]) -> bytes:
    return b"".join(PROCESS_SAMPLE.pack(*s) for s in samples)


def _periods(pids: list[int], first: int, count: int, value: int = 0) -> list[Sample]:
    """``count`` sample periods of every process in ``pids``, oldest first."""
    return [(pid, (first + k) * P, value or 1 + (pid * 7 + k) % 60, (pid + k) % 30,
             k % 3, pid % 5)
            for k in range(count) for pid in pids]


def _decoded(samples: list[Sample], *, fast: bool) -> dict[int, tuple[float, int]]:
    """pid -> (average SM over the window, packed newest-period values)."""
    def state() -> _GpuState:
        return _GpuState(PidCache("/nonexistent"), last_seen_us=10 * P, period_us=P)

    raw = _raw(samples)
    assert (_blocks(raw, state()) is not None) is fast, "not the path the test is about"
    window = _window(raw, state())
    busy = [value * window.scale for value in window.busy]
    return dict(zip(window.pids, zip(busy, window.latest, strict=True), strict=True))


def _unpack(packed: int) -> tuple[int, int, int, int]:
    return packed & 0xFFFF, packed >> 16 & 0xFFFF, packed >> 32 & 0xFFFF, packed >> 48


def test_blocks_and_one_by_one_decode_the_same_sums() -> None:
    pids = [4242, 17, 90_000, 3, 51, 77_777]
    samples = _periods(pids, 11, 6)
    fast = _decoded(samples, fast=True)
    # the same samples in another order within each period: not the block layout
    shuffled = []
    for k in range(6):
        period = samples[k * len(pids):(k + 1) * len(pids)]
        shuffled.extend(period[k % 3:] + period[:k % 3] if k % 2 else period[::-1])
    assert fast == _decoded(shuffled, fast=False)
    for pid in pids:
        own = [s for s in samples if s[0] == pid]
        assert fast[pid][0] == pytest.approx(sum(s[2] for s in own) / 6 / 100, rel=1e-12)
        assert _unpack(fast[pid][1]) == own[-1][2:]


def test_one_period_and_many_periods_take_the_block_path() -> None:
    pids = list(range(100, 148))
    for count in (1, 6, 120):
        samples = _periods(pids, 11, count)
        decoded = _decoded(samples, fast=True)
        for pid in pids:
            own = [s for s in samples if s[0] == pid]
            assert decoded[pid][0] * 100 * count == pytest.approx(sum(s[2] for s in own),
                                                                  rel=1e-12)


def test_values_that_are_not_percentages_are_capped_and_summed_exactly() -> None:
    pids = [1, 2]
    samples = _periods(pids, 11, 3)
    samples[-1] = (2, samples[-1][1], 300, 101, 0, 7)  # newest period of process 2
    decoded = _decoded(samples, fast=False)
    assert _unpack(decoded[2][1]) == (100, 100, 0, 7)
    assert decoded[2][0] == pytest.approx(
        min((samples[1][2] + samples[3][2] + 300) / 3 / 100, 1.0), rel=1e-12)


def test_a_process_without_a_sample_in_the_newest_period_counts_zero_there() -> None:
    samples = [*_periods([1, 2], 11, 2), (1, 13 * P, 40, 4, 0, 0)]
    decoded = _decoded(samples, fast=False)
    assert _unpack(decoded[1][1]) == (40, 4, 0, 0)
    assert decoded[2][1] == 0
    assert decoded[2][0] > 0  # its earlier samples still count in the window's average


def test_rows_sum_their_processes_and_a_row_without_processes_is_zero() -> None:
    a, b = WorkloadKey("pod", "aaaaaaaaaaaa"), WorkloadKey("pod", "bbbbbbbbbbbb")
    keys = (a, b, UNATTRIBUTED)
    layout = _Layout((None, None, None), frozenset(), None, None, True, keys,
                     tuple(k.label_pairs() for k in keys), {10: 0, 11: 1, 12: 0},
                     frozenset({10, 11, 12}), 2, [2.0, 1.0, 0.0], [0.0, 0.0, 0.0])
    grouping = _grouping(layout, (11, 12, 10))
    assert _per_row([5, 7, 9], grouping) == [16, 5, 0]
    assert _grouping(layout, (11, 12, 10)) is grouping  # kept for the same order
    single = _grouping(layout, (12,))
    assert _per_row([3], single) == [3, 0, 0]


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


@pytest.mark.parametrize(("value", "percent"), [
    (0, True), (100, True), (101, False), (228, False), (229, False), (255, False),
    (256, False), (1 << 16, False), (1 << 24, False), (0xFFFFFFFF, False)])
@pytest.mark.parametrize("column", [2, 3, 4, 5])  # sm, mem, enc, dec
def test_percentages_check_every_value_of_a_block(value: int, percent: bool, column: int) -> None:
    samples = [[pid, 7 * P, 100, 0, 100, 1] for pid in (1, 2, 3)]
    samples[1][column] = value
    raw = _raw([(s[0], s[1], s[2], s[3], s[4], s[5]) for s in samples])
    assert _percentages(raw, 3) is percent
