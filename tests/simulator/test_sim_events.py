"""Event sets: blocking waits, XIDs delivered once with their instance ids, ECC events."""

from __future__ import annotations

import time
from typing import Any

NOT_SUPPORTED, TIMEOUT, LOST = 3, 10, 15
NO_INSTANCE = 0xFFFFFFFF

SETUP = '''
def wait(es, ms):
    t = time.monotonic()
    try:
        e = N.nvmlEventSetWait(es, ms)
        return [e.eventType, e.eventData, e.gpuInstanceId, e.computeInstanceId,
                N.nvmlDeviceGetIndex(e.device), time.monotonic() - t]
    except N.NVMLError as err:
        return [err.value, time.monotonic() - t]
'''


def test_wait_blocks_for_its_timeout(sim: Any) -> None:
    res = sim("h100x8").run(SETUP + '''
N.nvmlInit()
h = N.nvmlDeviceGetHandleByIndex(0)
es = N.nvmlEventSetCreate()
N.nvmlDeviceRegisterEvents(h, N.nvmlEventTypeXidCriticalError, es)
r = {"v2": wait(es, 300)}
raw = N.c_nvmlEventData_t()
t = time.monotonic()
r["v1"] = [N.nvmlLib.nvmlEventSetWait(es, ctypes.byref(raw), 200), time.monotonic() - t]
r["supported"] = N.nvmlDeviceGetSupportedEventTypes(h)
r["bad_type"] = code(N.nvmlDeviceRegisterEvents, h, N.nvmlEventTypeSingleBitEccErrorStorm, es)
N.nvmlEventSetFree(es)
out(r)
''')
    code, elapsed = res["v2"]
    assert code == TIMEOUT
    assert elapsed >= 0.8 * 0.3
    assert res["v1"][0] == TIMEOUT
    assert res["v1"][1] >= 0.8 * 0.2
    assert res["supported"] & 0x8
    assert res["supported"] & 0x1
    assert res["supported"] & 0x2
    assert res["bad_type"] == NOT_SUPPORTED


def test_injected_xid_is_delivered_once(sim: Any, repl: Any) -> None:
    runner = sim("h100x8")
    child = repl(runner, SETUP + '''
N.nvmlInit()
es = N.nvmlEventSetCreate()
for i in range(8):
    N.nvmlDeviceRegisterEvents(N.nvmlDeviceGetHandleByIndex(i), N.nvmlEventTypeXidCriticalError, es)
''')
    child.send("wait(es, 10000)")
    runner.session.faults.xid(3, 79)
    event = child.answer()
    assert event[:5] == [0x8, 79, NO_INSTANCE, NO_INSTANCE, 3]
    assert event[5] < 10  # woke up on the event, not at the timeout
    assert child.ask("wait(es, 300)")[0] == TIMEOUT  # exactly once
    runner.session.faults.xid(5, 48, gi_id=2, ci_id=0)
    runner.session.faults.xid(6, 94)
    first, second = child.ask("wait(es, 5000)"), child.ask("wait(es, 5000)")
    assert first[:5] == [0x8, 48, 2, 0, 5]
    assert second[:5] == [0x8, 94, NO_INSTANCE, NO_INSTANCE, 6]


QUIET = SETUP + '''
def switches():
    with open("/proc/thread-self/status") as f:
        return int(next(l for l in f if l.startswith("voluntary_ctxt_switches")).split()[1])
def quiet_wait(es, ms):
    before = switches()
    result = wait(es, ms)
    return [result[0], switches() - before]
N.nvmlInit()
es = N.nvmlEventSetCreate()
N.nvmlDeviceRegisterEvents(N.nvmlDeviceGetHandleByIndex(0), N.nvmlEventTypeXidCriticalError, es)
'''


def test_an_idle_wait_sleeps_whole_and_a_new_faults_file_wakes_it(sim: Any, repl: Any) -> None:
    # A driver sleeps in the kernel until an event or the timeout: the simulated wait must not
    # wake up on its own to look at the faults file (it cost the exporter's event thread a
    # wake-up every second). The watcher thread wakes it when the file is replaced.
    runner = sim("h100x8")
    child = repl(runner, QUIET)
    code, woke = child.ask("quiet_wait(es, 2500)")
    assert code == TIMEOUT
    assert woke <= 2, woke  # one sleep (two with a spurious wake-up), not one per second
    child.send("wait(es, 20000)")  # no other NVML caller in this process
    runner.session.faults.xid(0, 79)
    event = child.answer()
    assert event[:2] == [0x8, 79]
    assert event[5] < 5, event  # woken by the new file, long before the timeout


def test_xid_on_a_mig_instance_reaches_its_mig_handle(sim: Any, repl: Any) -> None:
    runner = sim("a100-mig")
    child = repl(runner, SETUP + '''
N.nvmlInit()
parent = N.nvmlDeviceGetHandleByIndex(0)
mig7 = N.nvmlDeviceGetMigDeviceHandleByIndex(parent, 0)    # GPU instance 7
es_mig = N.nvmlEventSetCreate()
N.nvmlDeviceRegisterEvents(mig7, N.nvmlEventTypeXidCriticalError, es_mig)
es_gpu = N.nvmlEventSetCreate()
N.nvmlDeviceRegisterEvents(parent, N.nvmlEventTypeXidCriticalError, es_gpu)
''')
    runner.session.faults.xid(0, 31, gi_id=8, ci_id=0)
    assert child.ask("wait(es_gpu, 5000)")[:4] == [0x8, 31, 8, 0]
    assert child.ask("wait(es_mig, 300)")[0] == TIMEOUT  # another instance's fault
    runner.session.faults.xid(0, 43, gi_id=7, ci_id=0)
    assert child.ask("wait(es_mig, 5000)")[:4] == [0x8, 43, 7, 0]
    assert child.ask("wait(es_gpu, 5000)")[:4] == [0x8, 43, 7, 0]


def test_ecc_injection_raises_ecc_events(sim: Any, repl: Any) -> None:
    runner = sim("h100x8")
    child = repl(runner, SETUP + '''
N.nvmlInit()
es = N.nvmlEventSetCreate()
N.nvmlDeviceRegisterEvents(N.nvmlDeviceGetHandleByIndex(1),
    N.nvmlEventTypeSingleBitEccError | N.nvmlEventTypeDoubleBitEccError, es)
''')
    runner.session.faults.ecc(1, sbe=4)
    assert child.ask("wait(es, 5000)")[:2] == [0x1, 4]
    runner.session.faults.ecc(1, dbe=1)
    assert child.ask("wait(es, 5000)")[:2] == [0x2, 1]


def test_clock_events_follow_the_clock_event_reasons(sim: Any, tmp_path: Any) -> None:
    profile = tmp_path / "fast.yaml"  # a quick workload, so the power cap comes and goes
    profile.write_text("base: l4x2\ndevice_count: 1\ndevice_defaults:\n"
                       "  workload: {mean: 50, amplitude: 50, period_s: 4}\n")
    res = sim(profile).run(SETUP + '''
N.nvmlInit()
h = N.nvmlDeviceGetHandleByIndex(0)
es = N.nvmlEventSetCreate()
N.nvmlDeviceRegisterEvents(h, N.nvmlEventTypeClock, es)
events, deadline = [], time.monotonic() + 20
while len(events) < 2 and time.monotonic() < deadline:
    e = wait(es, 1000)
    if len(e) > 2:
        events.append([e[0], e[1], N.nvmlDeviceGetCurrentClocksEventReasons(h)])
out(events)
''')
    assert len(res) == 2
    assert all(e[0] == 0x10 for e in res)
    assert res[0][1] != res[1][1]  # each event reports a change of the reasons
    assert {res[0][1], res[1][1]} <= {0, 0x1, 0x4, 0x20, 0x24, 0x5}


def test_mig_reconfiguration_raises_a_mig_config_change_event(sim: Any, repl: Any) -> None:
    runner = sim("a100-mig")
    child = repl(runner, SETUP + '''
N.nvmlInit()
es = N.nvmlEventSetCreate()
for i in (0, 3):
    N.nvmlDeviceRegisterEvents(N.nvmlDeviceGetHandleByIndex(i), 0x100, es)
''')
    assert child.ask("wait(es, 300)")[0] == TIMEOUT
    runner.session.faults.mig_reconfigure(3, ["3g.40gb", "2g.20gb"])
    event = child.ask("wait(es, 5000)")
    assert event[:5] == [0x100, 0, NO_INSTANCE, NO_INSTANCE, 3]
    assert event[5] < 5
    assert child.ask("wait(es, 300)")[0] == TIMEOUT  # once per change
    runner.session.faults.xid(3, 79)  # not a layout change: no MIG event
    assert child.ask("wait(es, 300)")[0] == TIMEOUT
    runner.session.faults.clear()  # GPU 3 back to the profile's layout (MIG off)
    assert child.ask("wait(es, 5000)")[:5] == [0x100, 0, NO_INSTANCE, NO_INSTANCE, 3]


def test_wait_reports_a_lost_registered_gpu(sim: Any, repl: Any) -> None:
    runner = sim("h100x8")
    child = repl(runner, SETUP + '''
N.nvmlInit()
both = N.nvmlEventSetCreate()
healthy = N.nvmlEventSetCreate()
for i in (1, 2):
    N.nvmlDeviceRegisterEvents(N.nvmlDeviceGetHandleByIndex(i), 0x8, both)
N.nvmlDeviceRegisterEvents(N.nvmlDeviceGetHandleByIndex(1), 0x8, healthy)
''')
    runner.session.faults.lose_gpu(2)
    assert child.ask("wait(both, 5000)")[0] == LOST
    assert child.ask("wait(both, 100)")[0] == LOST  # until the set is rebuilt without GPU 2
    assert child.ask("wait(healthy, 200)")[0] == TIMEOUT
    runner.session.faults.xid(1, 79)
    assert child.ask("wait(healthy, 5000)")[:5] == [0x8, 79, NO_INSTANCE, NO_INSTANCE, 1]
    assert child.ask("wait(both, 100)")[0] == LOST  # even with an event of GPU 1 queued
    runner.session.faults.restore_gpu(2)
    assert child.ask("until(lambda: wait(both, 300), lambda v: v[0] != 15)")[:5] == [
        0x8, 79, NO_INSTANCE, NO_INSTANCE, 1]  # kept queued meanwhile


def test_once_the_watcher_runs_the_calls_stop_looking_at_the_faults_file(
        sim: Any, repl: Any, tmp_path: Any) -> None:
    # A real driver reads no file: in a process that waits for events (the exporter's XID
    # thread), the inotify watcher reloads the faults file, and the NVML calls no longer stat
    # it every 100 ms (a cold syscall per collection cycle). Seen through a change the watcher
    # cannot see: the file rewritten in place through a hard link in another directory. A
    # process without the watcher (it never waited) polls and picks that change up.
    runner = sim("h100x8")
    runner.session.faults.unsupported(0, "nvmlDeviceGetPowerUsage")
    watching = repl(runner, SETUP + '''
N.nvmlInit()
es = N.nvmlEventSetCreate()
N.nvmlDeviceRegisterEvents(N.nvmlDeviceGetHandleByIndex(0), N.nvmlEventTypeXidCriticalError, es)
''')
    polling = repl(runner)
    power = "code(N.nvmlDeviceGetPowerUsage, H[0])"
    assert watching.ask("wait(es, 50)")[0] == TIMEOUT  # its watcher is on from here
    assert watching.ask(power) == NOT_SUPPORTED
    assert polling.ask(power) == NOT_SUPPORTED
    faults = runner.session.state_dir / "faults"
    alias = tmp_path / "alias"
    alias.mkdir()
    (alias / "faults").hardlink_to(faults)
    with (alias / "faults").open("r+") as f:  # same inode; no event in the watched directory
        f.truncate(0)
    time.sleep(0.3)  # three times the polling period
    assert polling.ask(power) == 0  # it looked at the file: no fault any more
    assert watching.ask(power) == NOT_SUPPORTED  # it did not look
    runner.session.faults.clear()  # a change the watcher sees (a new file): at once
    assert watching.ask(f"until(lambda: {power}, lambda c: c == 0)") == 0
