"""XID and clock-event windows (pure EventLog) and the event thread on the simulator."""

from __future__ import annotations

import json

from simproc import run_snippet

from gpu_exporter.events import (
    CLOCK_EVENTS_COUNT,
    XID_ERRORS,
    XID_ERRORS_COUNT,
    EventLog,
)
from gpu_exporter.model import Entity

GPU0 = Entity(gpu=0, uuid="GPU-0", pci_bus_id="00000000:18:00.0", model_name="X")
GPU1 = Entity(gpu=1, uuid="GPU-1", pci_bus_id="00000000:2A:00.0", model_name="X")
MIG = Entity(gpu=0, uuid="GPU-0", pci_bus_id="00000000:18:00.0", model_name="X", gi_id=7,
             gi_profile="1g.10gb", mig_uuid="MIG-a", mig_index=0)
BOTH = frozenset({XID_ERRORS, XID_ERRORS_COUNT})


def _describe(code: int) -> str:
    return {0: "none", 79: "fell off the bus", 31: "mmu fault"}.get(code, "other")


def _log(window: float = 300.0) -> EventLog:
    return EventLog(xid_window_s=window, clock_window_s=window, describe=_describe)


def _by_field(samples: list) -> dict[int, list[tuple[float, tuple]]]:
    out: dict[int, list[tuple[float, tuple]]] = {}
    for s in samples:
        out.setdefault(s.field_id, []).append((s.value, s.labels))
    return out


def test_no_xid_is_zero_not_absent() -> None:
    got = _by_field(_log().xid_samples(GPU0, BOTH, now=100.0))
    assert got[XID_ERRORS] == [(0.0, (("err_code", "0"), ("err_msg", "none")))]
    assert got[XID_ERRORS_COUNT] == [(0.0, (("window_size_in_ms", "300000"),))]


def test_last_xid_and_counts_per_code() -> None:
    log = _log()
    log.record_xid(0, 31, now=10.0)
    log.record_xid(0, 79, now=11.0)
    log.record_xid(0, 31, now=12.0)
    got = _by_field(log.xid_samples(GPU0, BOTH, now=20.0))
    assert got[XID_ERRORS] == [(31.0, (("err_code", "31"), ("err_msg", "mmu fault")))]
    assert got[XID_ERRORS_COUNT] == [
        (2.0, (("window_size_in_ms", "300000"), ("xid", "31"))),
        (1.0, (("window_size_in_ms", "300000"), ("xid", "79"))),
    ]
    # another GPU is untouched
    assert _by_field(log.xid_samples(GPU1, BOTH, now=20.0))[XID_ERRORS][0][0] == 0.0


def test_xid_is_not_sticky_after_the_window() -> None:
    log = _log(window=60.0)
    log.record_xid(0, 79, now=100.0)
    inside = _by_field(log.xid_samples(GPU0, BOTH, now=159.0))
    assert inside[XID_ERRORS][0][0] == 79.0
    after = _by_field(log.xid_samples(GPU0, BOTH, now=161.0))
    assert after[XID_ERRORS][0][0] == 0.0
    assert after[XID_ERRORS_COUNT] == [(0.0, (("window_size_in_ms", "60000"),))]


def test_a_quiet_window_reuses_its_samples_until_something_happens() -> None:
    log = _log(window=60.0)
    quiet = log.xid_samples(GPU0, BOTH, now=10.0)
    again = log.xid_samples(GPU0, BOTH, now=11.0)
    assert again == quiet
    assert all(a is b for a, b in zip(again, quiet, strict=True))  # built once
    again.clear()  # a caller's list is its own
    assert log.xid_samples(GPU0, BOTH, now=12.0) == quiet
    log.record_xid(0, 79, now=13.0)
    assert _by_field(log.xid_samples(GPU0, BOTH, now=14.0))[XID_ERRORS][0][0] == 79.0
    after = log.xid_samples(GPU0, BOTH, now=74.0)  # the XID left the window
    assert after == quiet
    assert _by_field(log.xid_samples(GPU0, frozenset({XID_ERRORS}), now=75.0)) == {
        XID_ERRORS: [(0.0, (("err_code", "0"), ("err_msg", "none")))]}  # other fields
    other = Entity(gpu=0, uuid="GPU-0", pci_bus_id="00000000:18:00.0", model_name="X")
    assert log.xid_samples(other, BOTH, now=76.0)[0].entity is other  # a re-probed GPU
    log.xid_window_s = 30.0
    assert _by_field(log.xid_samples(other, BOTH, now=77.0))[XID_ERRORS_COUNT] == [
        (0.0, (("window_size_in_ms", "30000"),))]
    clock = log.clock_samples(GPU0, now=1.0)
    assert log.clock_samples(GPU0, now=2.0)[0] is clock[0]
    log.observe_clock_reasons(0, 0x4, now=3.0)
    assert [s.value for s in log.clock_samples(GPU0, now=4.0)] == [1.0]
    assert log.clock_samples(GPU0, now=64.0) == clock
    assert log.clock_samples(other, now=65.0)[0].entity is other


def test_totals_never_decrease() -> None:
    log = _log(window=1.0)
    log.record_xid(0, 79, now=0.0)
    log.record_xid(0, 79, now=0.5)
    first = log.totals([GPU0, GPU1])
    assert [(n.name, n.value, n.labels, n.entity) for n in first] == [
        ("gpu_exporter_xid_errors_total", 2.0, (("xid", "79"),), GPU0)]
    log.xid_samples(GPU0, BOTH, now=100.0)  # window long gone: pruned
    log.record_xid(0, 48, now=100.0)
    later = {n.labels: n.value for n in log.totals([GPU0])}
    assert later == {(("xid", "48"),): 1.0, (("xid", "79"),): 2.0}


def test_totals_are_reused_until_an_xid_is_recorded() -> None:
    log = _log()
    log.record_xid(0, 79, now=0.0)
    first = log.totals([GPU0, GPU1])
    again = log.totals([GPU0, GPU1])
    assert again == first
    assert again[0] is first[0]  # nothing recorded since: the same objects
    assert log.totals([GPU1]) == []  # other entities: built anew
    log.record_xid(1, 48, now=1.0)
    assert {(n.entity, n.labels, n.value) for n in log.totals([GPU0, GPU1])} == {
        (GPU0, (("xid", "79"),), 1.0), (GPU1, (("xid", "48"),), 1.0)}


def test_mig_scoped_xid_attaches_to_the_exported_instance() -> None:
    log = _log()
    log.set_instances(0, [7])
    log.record_xid(0, 31, now=1.0, gi_id=7)
    log.record_xid(0, 79, now=2.0, gi_id=9)  # instance not exported: goes to the GPU
    assert _by_field(log.xid_samples(MIG, BOTH, now=3.0))[XID_ERRORS][0][0] == 31.0
    assert _by_field(log.xid_samples(GPU0, BOTH, now=3.0))[XID_ERRORS][0][0] == 79.0


def test_only_wanted_xid_fields() -> None:
    samples = _log().xid_samples(GPU0, frozenset({XID_ERRORS_COUNT}), now=1.0)
    assert {s.field_id for s in samples} == {XID_ERRORS_COUNT}


def test_clock_events_count_rising_edges_in_the_window() -> None:
    log = _log(window=100.0)
    assert [(s.value, s.labels) for s in log.clock_samples(GPU0, now=0.0)] == [
        (0.0, (("window_size_in_ms", "100000"),))]
    log.observe_clock_reasons(0, 0x1, now=1.0)  # idle at start: counts once
    log.observe_clock_reasons(0, 0x1, now=2.0)  # still idle: no new event
    log.observe_clock_reasons(0, 0x4, now=3.0)  # power cap on, idle off
    log.observe_clock_reasons(0, 0x0, now=4.0)
    log.observe_clock_reasons(0, 0x4 | 0x20 | 0x400, now=5.0)  # 0x400 has no label: ignored
    got = {dict(s.labels)["clock_event"]: s.value for s in log.clock_samples(GPU0, now=6.0)}
    assert got == {"gpu_idle": 1.0, "power_cap": 2.0, "sw_thermal": 1.0}
    assert all(s.field_id == CLOCK_EVENTS_COUNT for s in log.clock_samples(GPU0, now=6.0))
    later = log.clock_samples(GPU0, now=104.5)  # only the events at t=5 remain
    assert {dict(s.labels)["clock_event"]: s.value for s in later} == {
        "power_cap": 1.0, "sw_thermal": 1.0}


def test_forgetting_the_mask_recounts_active_reasons() -> None:
    log = _log()
    log.observe_clock_reasons(1, 0x4, now=1.0)
    log.forget_clock_state(1)
    log.observe_clock_reasons(1, 0x4, now=2.0)
    got = {dict(s.labels)["clock_event"]: s.value for s in log.clock_samples(GPU1, now=3.0)}
    assert got == {"power_cap": 2.0}


def test_default_describe_uses_the_xid_table() -> None:
    from gpu_exporter import xid
    log = EventLog()
    log.record_xid(0, 79, now=1.0)
    sample = log.xid_samples(GPU0, frozenset({XID_ERRORS}), now=2.0)[0]
    assert dict(sample.labels)["err_msg"] == xid.describe(79)


WATCH = """
from gpu_exporter.events import EventLog, EventWatcher
nv = Nvml(simulate="h100x8")
log = EventLog()
watcher = EventWatcher(nv, log, timeout_ms=100)
out["started"] = watcher.start()
out["registered"] = [watcher.add_gpu(i, nv.handle(i)) for i in range(nv.device_count())]
nv.sim_session.faults.xid(3, 79)
deadline = time.monotonic() + 20
while time.monotonic() < deadline and not log.totals([ent(3)]):
    time.sleep(0.02)
watcher.stop()
out["alive"] = watcher.running
out["totals"] = [[n.value, list(n.labels), n.entity.gpu] for n in log.totals(
    [ent(i) for i in range(8)])]
out["last"] = [[s.value, list(s.labels)] for s in log.xid_samples(
    ent(3), frozenset({230}), time.monotonic())]
"""


def test_watcher_delivers_an_injected_xid_and_stops() -> None:
    out = run_snippet(WATCH)
    assert out["started"] is True
    assert all(out["registered"])
    assert out["totals"] == [[1.0, [["xid", "79"]], 3]]
    assert out["last"][0][0] == 79.0
    assert out["alive"] is False
    assert json.dumps(out)  # plain data came back


def test_watcher_rebuilds_its_set_when_a_gpu_is_lost() -> None:
    out = run_snippet("""
from gpu_exporter.events import EventLog, EventWatcher
nv = Nvml(simulate="h100x8")
f = nv.sim_session.faults
log = EventLog()
watcher = EventWatcher(nv, log, timeout_ms=100)
watcher.start()
handles = [nv.handle(i) for i in range(4)]
out["registered"] = [watcher.add_gpu(i, h) for i, h in enumerate(handles)]
f.lose_gpu(2)
out["dropped"] = wait_until(lambda: not watcher.xid_supported(2), 10) is True
f.xid(1, 79)
out["healthy_xid"] = wait_until(lambda: log.totals([ent(1)]), 10) is not None
f.restore_gpu(2)
h2 = wait_until(lambda: _handle(2), 10)
out["back"] = watcher.add_gpu(2, h2)
f.xid(2, 48)
out["restored_xid"] = wait_until(lambda: log.totals([ent(2)]), 10) is not None
out["creates"] = nv.sim_session.faults.call_counts().get("nvmlEventSetCreate")
watcher.stop()
out["alive"] = watcher.running
""".replace("f.restore_gpu(2)", '''def _handle(i):
    try:
        return nv.handle(i)
    except Exception:
        return None
f.restore_gpu(2)'''))
    assert out["registered"] == [True] * 4
    assert out["dropped"]
    assert out["healthy_xid"]  # XIDs of healthy GPUs still arrive
    assert out["back"] is True
    assert out["restored_xid"]
    assert out["creates"] >= 2  # the set was rebuilt
    assert out["alive"] is False


def test_stop_keeps_the_set_of_a_thread_still_inside_nvml() -> None:
    out = run_snippet("""
from gpu_exporter.events import EventLog, EventWatcher
nv = Nvml(simulate="h100x8")
f = nv.sim_session.faults
f.hang("nvmlEventSetWait_v2")
f.error(None, "nvmlSystemGetCudaDriverVersion", 999)  # marks that the library has these faults
def reloaded():
    try:
        nv.cuda_driver_version()
    except Exception:
        return True
    return False
out["reloaded"] = wait_until(reloaded, 10)
watcher = EventWatcher(nv, EventLog(), timeout_ms=100)
watcher.start()
watcher.add_gpu(0, nv.handle(0))
counts = f.call_counts
out["waiting"] = wait_until(lambda: counts().get("nvmlEventSetWait_v2", 0) >= 1, 10)
watcher.stop(timeout_s=0.3)
out["alive_after_stop"] = watcher.running
out["freed_while_blocked"] = counts().get("nvmlEventSetFree", 0)
f.clear()
out["exited"] = wait_until(lambda: not watcher.running, 10)
""")
    assert out["reloaded"]
    assert out["waiting"]
    assert out["alive_after_stop"] is True
    assert out["freed_while_blocked"] == 0  # never freed under the blocked wait
    assert out["exited"]


def test_watcher_reports_mig_reconfigurations() -> None:
    out = run_snippet("""
from gpu_exporter.events import EventLog, EventWatcher
nv = Nvml(simulate="a100-mig")
watcher = EventWatcher(nv, EventLog(), timeout_ms=100)
watcher.start()
for i in (0, 3):
    watcher.add_gpu(i, nv.handle(i))
out["before"] = sorted(watcher.take_mig_changes())
nv.sim_session.faults.mig_reconfigure(3, ["3g.40gb", "2g.20gb"])
out["changed"] = sorted(wait_until(watcher.take_mig_changes, 10) or [])
watcher.stop()
""")
    assert out["before"] == []
    assert out["changed"] == [3]  # nvmlEventMigConfigChange of GPU 3 only
