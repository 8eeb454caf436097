"""Pure parts of the per-workload attribution: windows, reconciliation, the energy split."""

from __future__ import annotations

import pytest
from attribution_reference import UtilWindow, average_utilization, reconcile, split_energy
from nvml_decode import ProcessSamples

from gpu_exporter.workloads.attribution import (
    DEFAULT_PERIOD_US,
    UNATTRIBUTED,
    WorkloadKey,
    workload_key,
)
from gpu_exporter.workloads.cgroup import WorkloadRef

P = 166_666
CID = "0123456789ab" + "c" * 52


Row = tuple[int, int, int, int, int, int]


def _s(pid: int, k: int, sm: int, *more: int) -> Row:
    mem, enc, dec = (*more, 0, 0, 0)[:3]
    return (pid, k * P, sm, mem, enc, dec)


def _avg(rows: list[Row], last_seen: int, period: int | None) -> UtilWindow:
    # the columns NVML's buffer is read into, oldest first (sorted by timestamp, as NVML)
    return average_utilization(ProcessSamples.of(sorted(rows, key=lambda r: r[1])),
                               last_seen, period)


def test_a_process_running_the_whole_window_averages_its_utilisation() -> None:
    samples = [_s(1, k, 40, 10, 2, 3) for k in range(11, 17)] + \
        [_s(2, k, 20) for k in range(11, 17)]
    window = _avg(samples, 10 * P, None)
    assert window.period_us == P
    assert window.newest_us == 16 * P
    assert window.busy == pytest.approx({1: 0.40, 2: 0.20})
    assert window.latest[1] == pytest.approx((0.40, 0.10, 0.02, 0.03))
    assert window.latest[2] == pytest.approx((0.20, 0, 0, 0))


def test_a_process_running_part_of_the_window_gets_that_part() -> None:
    # 6 periods since the last read; process 2 ran (at 60 %) only in the last 2
    samples = [_s(1, k, 30) for k in range(11, 17)] + [_s(2, 15, 60), _s(2, 16, 60)]
    window = _avg(samples, 10 * P, P)
    assert window.busy[2] == pytest.approx(0.20)
    assert window.busy[1] == pytest.approx(0.30)


def test_idle_periods_after_the_last_read_count_in_the_window() -> None:
    # nothing ran in periods 11-14 (no samples: NOT_FOUND would have been answered then)
    window = _avg([_s(1, 15, 50), _s(1, 16, 50)], 10 * P, P)
    assert window.busy[1] == pytest.approx(50 * 2 / 6 / 100)


def test_one_sample_per_process_stands_for_the_whole_window() -> None:
    # what nvml.h describes and drivers return: one sample per process (its newest period),
    # here 120 periods after the last read; no process has two samples, so nothing says the
    # processes were idle before their newest period: each sample is held over the window
    samples = [_s(1, 130, 40, 10), _s(2, 130, 25), _s(3, 90, 60)]
    window = _avg(samples, 10 * P, None)
    assert window.busy == pytest.approx({1: 0.40, 2: 0.25, 3: 0.60})
    assert window.newest_us == 130 * P
    # the gauges' newest period: process 3's sample is older (it exited), so it is not there
    assert set(window.latest) == {1, 2}


def test_the_first_read_starts_one_period_before_its_oldest_sample() -> None:
    window = _avg([_s(7, k, 25) for k in range(100, 104)], 0, None)
    assert window.busy[7] == pytest.approx(0.25)
    assert window.newest_us == 103 * P


def test_no_samples_keep_last_seen_and_the_period() -> None:
    window = _avg([], 12345, P)
    assert window.busy == {}
    assert window.latest == {}
    assert (window.newest_us, window.period_us) == (12345, P)
    assert _avg([], 0, None).period_us == DEFAULT_PERIOD_US


def test_averages_are_capped_at_one() -> None:
    window = _avg([_s(1, 11, 100), _s(1, 12, 100)], 11 * P, P)
    assert window.busy[1] == 1.0


KEY_A = WorkloadKey("pod", "aaaaaaaaaaaa")
KEY_B = WorkloadKey("slurm_job", "42")


def test_reconcile_puts_the_rest_on_unattributed() -> None:
    rows = reconcile({KEY_A: 0.3, KEY_B: 0.2}, 0.6)
    assert rows[KEY_A] == pytest.approx(0.3)
    assert rows[KEY_B] == pytest.approx(0.2)
    assert rows[UNATTRIBUTED] == pytest.approx(0.1)
    assert sum(rows.values()) == pytest.approx(0.6)


def test_reconcile_scales_parts_that_exceed_the_device_value() -> None:
    rows = reconcile({KEY_A: 0.6, KEY_B: 0.2, UNATTRIBUTED: 0.2}, 0.5)
    assert rows[KEY_A] == pytest.approx(0.3)
    assert rows[KEY_B] == pytest.approx(0.1)
    assert rows[UNATTRIBUTED] == pytest.approx(0.1)
    assert sum(rows.values()) == pytest.approx(0.5)


def test_reconcile_always_has_the_unattributed_row() -> None:
    assert reconcile({}, 0.0) == {UNATTRIBUTED: 0.0}
    assert reconcile({KEY_A: 0.0}, 0.0) == {KEY_A: 0.0, UNATTRIBUTED: 0.0}


def test_energy_busy_share_by_sm_and_idle_share_by_memory_held() -> None:
    rows = split_energy(1000.0, {KEY_A: 0.5, KEY_B: 0.1},
                        {KEY_A: 1.0e9, KEY_B: 3.0e9, UNATTRIBUTED: 0.0})
    idle = 1000.0 * 0.4
    assert rows[KEY_A] == pytest.approx(500 + idle * 0.25)
    assert rows[KEY_B] == pytest.approx(100 + idle * 0.75)
    assert rows[UNATTRIBUTED] == pytest.approx(0.0)
    assert sum(rows.values()) == pytest.approx(1000.0)


def test_energy_with_no_memory_held_leaves_the_idle_share_unattributed() -> None:
    rows = split_energy(10.0, {KEY_A: 0.25}, {})
    assert rows[KEY_A] == pytest.approx(2.5)
    assert rows[UNATTRIBUTED] == pytest.approx(7.5)


def test_energy_busy_shares_above_one_are_scaled() -> None:
    rows = split_energy(9.0, {KEY_A: 0.9, KEY_B: 0.9}, {KEY_A: 1.0})
    assert rows[KEY_A] == pytest.approx(4.5)
    assert rows[KEY_B] == pytest.approx(4.5)
    assert rows[UNATTRIBUTED] == 0.0


def test_negative_energy_is_never_split() -> None:
    assert all(v == 0.0 for v in split_energy(-5.0, {KEY_A: 0.5}, {KEY_A: 1.0}).values())


def test_workload_keys_per_kind() -> None:
    pod = WorkloadRef("pod", pod_uid="u", container_id=CID, runtime="containerd")
    assert workload_key(pod, 10) == WorkloadKey("pod", "0123456789ab")
    assert workload_key(WorkloadRef("container", container_id=CID), 10).workload == \
        "0123456789ab"
    assert workload_key(WorkloadRef("slurm_job", job_id="77", uid="1000"), 10) == \
        WorkloadKey("slurm_job", "77", (("uid", "1000"),))
    assert workload_key(WorkloadRef("slurm_job", job_id="78"), 10) == \
        WorkloadKey("slurm_job", "78")  # a v2 path: no user
    assert workload_key(WorkloadRef("systemd_unit", unit="x.service"), 10) == \
        WorkloadKey("systemd_unit", "x.service")
    assert workload_key(None, 10) == UNATTRIBUTED


def test_pid_labels_make_one_row_per_process_unattributed_ones_too() -> None:
    key = workload_key(WorkloadRef("slurm_job", job_id="77"), 10, pid_labels=True)
    assert key.label_pairs() == (("workload_kind", "slurm_job"), ("workload", "77"),
                                 ("pid", "10"))
    lost = workload_key(None, 11, pid_labels=True)
    assert lost != UNATTRIBUTED
    assert lost.label_pairs()[-1] == ("pid", "11")
    assert sorted([lost, UNATTRIBUTED], key=WorkloadKey.order) == [UNATTRIBUTED, lost]


def test_known_labels_are_sorted_after_the_workload() -> None:
    key = workload_key(WorkloadRef("container", container_id=CID), 1,
                       labels=(("container", "web"),))
    assert key.label_pairs() == (("workload_kind", "container"), ("workload", "0123456789ab"),
                                 ("container", "web"))


def test_the_periodic_layout_and_any_other_order_give_the_same_averages() -> None:
    steady = [_s(pid, k, 10 + pid, pid, 1, 2) for k in range(11, 17) for pid in (1, 2, 3)]
    # the processes in another order in every period: summed one sample at a time
    shuffled = [_s(pid, k, 10 + pid, pid, 1, 2) for k in range(11, 17)
                for pid in ((1, 2, 3), (3, 1, 2), (2, 3, 1))[k % 3]]
    a = average_utilization(ProcessSamples.of(steady), 10 * P, None)
    b = average_utilization(ProcessSamples.of(shuffled), 10 * P, None)
    assert a.busy == pytest.approx(b.busy)
    assert set(a.latest) == set(b.latest) == {1, 2, 3}
    for pid, values in a.latest.items():
        assert values == pytest.approx(b.latest[pid])
    assert a.period_us == b.period_us == P
    assert a.busy[3] == pytest.approx(0.13)
    assert a.latest[3] == pytest.approx((0.13, 0.03, 0.01, 0.02))
    # a process missing from one period breaks the layout: still exact
    gappy = [r for r in steady if not (r[0] == 2 and r[1] == 13 * P)]
    c = average_utilization(ProcessSamples.of(gappy), 10 * P, None)
    assert c.busy[2] == pytest.approx(0.12 * 5 / 6)
    assert c.busy[1] == a.busy[1]


def test_latest_is_each_process_in_the_newest_period_only() -> None:
    # process 2 ran only in the first periods of the window: gone from the newest one
    samples = [_s(1, k, 30, 5) for k in range(11, 17)] + [_s(2, 11, 60), _s(2, 12, 60)]
    window = _avg(samples, 10 * P, P)
    assert window.latest == {1: pytest.approx((0.30, 0.05, 0.0, 0.0))}
    assert window.busy[2] == pytest.approx(0.20)  # its share of the window
    # the same from the one-at-a-time path (another order in each period)
    shuffled = [_s(pid, k, 10 * pid) for k in range(11, 14) for pid in ((1, 2), (2, 1))[k % 2]]
    assert _avg(shuffled, 10 * P, P).latest == {1: pytest.approx((0.1, 0, 0, 0)),
                                                2: pytest.approx((0.2, 0, 0, 0))}
