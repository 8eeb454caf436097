"""Faults injected into a process that already has the library loaded, and call counters."""

from __future__ import annotations

from typing import Any

import pytest

from gpu_exporter.simulator import FaultInjector, SimulatorError

SUCCESS, NOT_SUPPORTED, LOST = 0, 3, 15


def test_lose_and_restore_a_gpu(sim: Any, repl: Any) -> None:
    runner = sim("h100x8")
    child = repl(runner)
    assert child.ask("name(2)") == SUCCESS
    runner.session.faults.lose_gpu(2)
    assert child.ask("until(lambda: name(2), lambda v: v != 0)") == LOST
    assert child.ask("code(N.nvmlDeviceGetHandleByIndex, 2)") == LOST
    assert child.ask("code(N.nvmlDeviceGetFieldValues, H[2], [83])") == LOST
    assert child.ask("code(N.nvmlDeviceGetVgpuCapabilities, H[2], 0)") == LOST  # stubs too
    assert child.ask("[name(i) for i in (0, 1, 3, 7)]") == [0, 0, 0, 0]
    runner.session.faults.restore_gpu(2)
    assert child.ask("until(lambda: name(2), lambda v: v == 0)") == SUCCESS


def test_ecc_increments(sim: Any, repl: Any) -> None:
    runner = sim("h100x8")
    child = repl(runner)
    runner.session.faults.ecc(4, sbe=2, dbe=1)
    runner.session.faults.ecc(4, sbe=3)
    expr = "[N.nvmlDeviceGetTotalEccErrors(H[4], e, c) for e in (0, 1) for c in (0, 1)]"
    assert child.ask(f"until(lambda: {expr}, lambda v: v[0] == 5)") == [5, 5, 1, 1]
    fields = child.ask("[f.value.ullVal for f in N.nvmlDeviceGetFieldValues(H[4], [3, 4, 5, 6])]")
    assert fields == [5, 1, 5, 1]
    assert child.ask("N.nvmlDeviceGetTotalEccErrors(H[3], 0, 0)") == 0


def test_function_and_field_turned_not_supported(sim: Any, repl: Any) -> None:
    runner = sim("h100x8")
    child = repl(runner)
    runner.session.faults.unsupported(1, "nvmlDeviceGetPowerUsage")
    runner.session.faults.unsupported(None, "field:82")
    assert child.ask("until(lambda: code(N.nvmlDeviceGetPowerUsage, H[1]), bool)") == NOT_SUPPORTED
    assert child.ask("code(N.nvmlDeviceGetPowerUsage, H[0])") == SUCCESS
    got = child.ask("until(lambda: [f.nvmlReturn for f in "
                    "N.nvmlDeviceGetFieldValues(H[5], [82, 83])], lambda v: v[0] != 0)")
    assert got == [NOT_SUPPORTED, SUCCESS]


def test_injected_error_codes(sim: Any, repl: Any) -> None:
    runner = sim("h100x8")
    child = repl(runner)
    runner.session.faults.error(1, "nvmlDeviceGetSerial", 999)  # UNKNOWN
    runner.session.faults.error(None, "nvmlSystemGetDriverVersion", 4)  # NO_PERMISSION
    runner.session.faults.error(2, "field:83", 14)
    assert child.ask("until(lambda: code(N.nvmlDeviceGetSerial, H[1]), bool)") == 999
    assert child.ask("code(N.nvmlDeviceGetSerial, H[0])") == SUCCESS
    assert child.ask("code(N.nvmlSystemGetDriverVersion)") == 4
    got = child.ask("[[f.nvmlReturn for f in N.nvmlDeviceGetFieldValues(H[i], [82, 83])] "
                    "for i in (2, 3)]")
    assert got == [[SUCCESS, 14], [SUCCESS, SUCCESS]]  # the entry fails, not the call
    runner.session.faults.lose_gpu(1)
    assert child.ask("until(lambda: code(N.nvmlDeviceGetSerial, H[1]), "
                     "lambda v: v != 999)") == LOST  # a lost GPU answers that first
    runner.session.faults.clear()
    assert child.ask("until(lambda: code(N.nvmlDeviceGetSerial, H[1]), "
                     "lambda v: v == 0)") == SUCCESS


def test_latency_and_hang(sim: Any, repl: Any) -> None:
    runner = sim("h100x8")
    child = repl(runner, '''
import threading
def timed(f, *a):
    t = time.monotonic(); f(*a); return time.monotonic() - t
box = {}
def bg():
    box["rc"] = code(N.nvmlDeviceGetPowerUsage, N.nvmlDeviceGetHandleByIndex(6))
''')
    runner.session.faults.latency("nvmlDeviceGetTemperature", 0.4, index=1)
    slow = child.ask("until(lambda: timed(N.nvmlDeviceGetTemperature, H[1], 0), lambda v: v > 0.3)")
    assert slow >= 0.8 * 0.4
    runner.session.faults.clear()
    runner.session.faults.hang("nvmlDeviceGetPowerUsage", index=6)
    child.ask("until(lambda: 0, lambda v: False, timeout=0.3)")  # let the child see the fault
    child.ask("[threading.Thread(target=bg, daemon=True).start(), 0][1]")
    assert child.ask("until(lambda: 'rc' in box, bool, timeout=0.5)") is False  # still hung
    assert child.ask("code(N.nvmlDeviceGetPowerUsage, H[5])") == SUCCESS  # other GPUs answer
    runner.session.faults.clear()
    assert child.ask("until(lambda: box.get('rc'), lambda v: v is not None)") == SUCCESS


def test_mig_reconfiguration_at_runtime(sim: Any, repl: Any) -> None:
    runner = sim("a100-mig")
    child = repl(runner, '''
def layout(i):
    h = N.nvmlDeviceGetHandleByIndex(i)
    mode = N.nvmlDeviceGetMigMode(h)[0]
    names = []
    for j in range(7):
        try:
            m = N.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
            names.append(N.nvmlDeviceGetName(m).split()[-1])
        except N.NVMLError:
            break
    return [mode, names]
''')
    assert child.ask("layout(3)") == [0, []]
    runner.session.faults.mig_reconfigure(3, ["3g.40gb", "2g.20gb", "1g.10gb"])
    assert child.ask("until(lambda: layout(3), lambda v: v[0] == 1)") == [
        1, ["3g.40gb", "2g.20gb", "1g.10gb"]]
    runner.session.faults.mig_reconfigure(0, [])
    assert child.ask("until(lambda: layout(0), lambda v: v[0] == 0)") == [0, []]
    runner.session.faults.clear()
    assert child.ask("until(lambda: layout(3), lambda v: v[0] == 0)") == [0, []]
    assert child.ask("until(lambda: layout(0), lambda v: v[0] == 1)")[1] == ["1g.10gb"] * 7


def test_call_counts_are_visible_from_another_process(sim: Any, repl: Any) -> None:
    runner = sim("l4x2")
    child = repl(runner)
    child.ask("[N.nvmlDeviceGetPowerUsage(H[0]) for _ in range(25)][0]")
    counts = runner.session.faults.call_counts()
    assert counts["nvmlDeviceGetPowerUsage"] == 25
    assert counts["nvmlInitWithFlags"] == 1
    assert counts["nvmlDeviceGetHandleByIndex_v2"] == 2
    assert "nvmlDeviceGetTemperature" not in counts


def test_injector_rejects_bad_specs(sim: Any) -> None:
    faults = sim("a100-mig").session.faults
    with pytest.raises(SimulatorError, match=r"outside 0\.\.7"):
        faults.lose_gpu(8)
    with pytest.raises(SimulatorError, match="not an NVML function"):
        faults.latency("getPower", 1)
    with pytest.raises(SimulatorError, match="field:<0-511>"):
        faults.unsupported(0, "field:x")
    with pytest.raises(SimulatorError, match="non-zero NVML return code"):
        faults.error(0, "nvmlDeviceGetSerial", 0)
    with pytest.raises(SimulatorError, match="neither an NVML function"):
        faults.error(None, "*", 999)
    with pytest.raises(SimulatorError, match="unknown MIG profile"):
        faults.mig_reconfigure(0, ["9g.90gb"])
    with pytest.raises(SimulatorError, match=r"does not fit|at most"):
        faults.mig_reconfigure(0, ["4g.40gb", "4g.40gb"])
    with pytest.raises(SimulatorError, match="not a simulator state directory"):
        FaultInjector("/nonexistent").xid(0, 79)


def test_mig_reconfigure_needs_a_mig_capable_gpu(sim: Any) -> None:
    with pytest.raises(SimulatorError, match="not MIG-capable"):
        sim("t4x4").session.faults.mig_reconfigure(0, ["1g.10gb"])


def test_concurrent_calls_while_faults_change(sim: Any, repl: Any) -> None:
    """Worker threads, an event-wait thread and fault reloads at the same time."""
    runner = sim("a100-mig")
    child = repl(runner, '''
import threading
errors, done = [], []
def worker(i):
    try:
        for _ in range(1500):
            # GPU_IS_LOST while GPU i is lost is documented: a code, not an exception here
            code(N.nvmlDeviceGetHandleByIndex, i % 8)
            h = H[i % 8]  # the REPL's handles, taken before any fault
            code(N.nvmlDeviceGetPowerUsage, h)
            code(N.nvmlDeviceGetFieldValues, h, [83, 138, 82])
            code(N.nvmlDeviceGetMigDeviceHandleByIndex, h, 0)
            code(N.nvmlDeviceGetMemoryInfo, h)
        done.append(i)
    except Exception as e:  # any crash or unexpected exception fails the test
        errors.append(repr(e))
def waiter():
    es = N.nvmlEventSetCreate()
    N.nvmlDeviceRegisterEvents(N.nvmlDeviceGetHandleByIndex(4), N.nvmlEventTypeXidCriticalError, es)
    for _ in range(20):
        code(N.nvmlEventSetWait, es, 50)
    done.append("waiter")
threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
threads.append(threading.Thread(target=waiter))
''')
    child.ask("[t.start() for t in threads] and 0")
    faults = runner.session.faults
    for k in range(10):
        faults.lose_gpu(k % 8)
        faults.mig_reconfigure(3, ["2g.20gb"] * (k % 3 + 1))
        faults.xid(4, 13)
        faults.clear()
    assert child.ask("[t.join(60) for t in threads] and sorted(map(str, done))", timeout=90) == [
        "0", "1", "2", "3", "waiter"]
    assert child.ask("errors") == []
    counts = faults.call_counts()
    assert counts["nvmlDeviceGetPowerUsage"] == 4 * 1500
    assert counts["nvmlDeviceGetHandleByIndex_v2"] >= 4 * 1500


def test_mig_override_survives_shutdown_and_init(sim: Any) -> None:
    runner = sim("a100-mig")
    runner.session.faults.mig_reconfigure(4, ["7g.80gb"])
    res = runner.run('''
N.nvmlInit()
h = N.nvmlDeviceGetHandleByIndex(4)
first = N.nvmlDeviceGetName(N.nvmlDeviceGetMigDeviceHandleByIndex(h, 0))
N.nvmlShutdown()
N.nvmlInit()
h = N.nvmlDeviceGetHandleByIndex(4)
out([first, N.nvmlDeviceGetName(N.nvmlDeviceGetMigDeviceHandleByIndex(h, 0)),
     N.nvmlDeviceGetMigMode(h)])
''')
    assert res == ["NVIDIA A100-SXM4-80GB MIG 7g.80gb"] * 2 + [[1, 1]]


def test_mig_handles_of_a_replaced_layout_stop_answering(sim: Any, repl: Any) -> None:
    """A reconfiguration never rewrites the devices that old handles point at."""
    runner = sim("a100-mig")
    child = repl(runner, '''
N.nvmlInit()
old = N.nvmlDeviceGetMigDeviceHandleByIndex(N.nvmlDeviceGetHandleByIndex(1), 0)
def gi(h):
    try:
        return N.nvmlDeviceGetGpuInstanceId(h)
    except N.NVMLError as e:
        return -e.value
''')
    assert child.ask("[gi(old), N.nvmlDeviceGetMaxMigDeviceCount(H[1])]") == [1, 7]
    runner.session.faults.mig_reconfigure(1, ["1g.10gb"] * 7)
    new = "gi(N.nvmlDeviceGetMigDeviceHandleByIndex(H[1], 0))"
    assert child.ask(f"until(lambda: {new}, lambda v: v != 1)") == 7
    assert child.ask("gi(old)") == -2  # INVALID_ARGUMENT, not silently the new instance


def test_split_gpu_instance_has_one_mig_device_per_compute_instance(sim: Any, repl: Any) -> None:
    runner = sim("a100-mig")
    child = repl(runner, '''
def split(i):
    h = N.nvmlDeviceGetHandleByIndex(i)
    devs = []
    for j in range(7):
        try:
            m = N.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
        except N.NVMLError:
            break
        devs.append([N.nvmlDeviceGetName(m).split()[-1], N.nvmlDeviceGetGpuInstanceId(m),
                     N.nvmlDeviceGetComputeInstanceId(m)])
    info = N.nvmlDeviceGetGpuInstanceProfileInfo(h, 2)  # 3g
    gis = (N.c_nvmlGpuInstance_t * 8)()
    n = ctypes.c_uint(0)
    N.nvmlLib.nvmlDeviceGetGpuInstances(h, info.id, gis, ctypes.byref(n))
    cis = (N.c_nvmlComputeInstance_t * 7)()
    m = ctypes.c_uint(0)
    if n.value:
        N.nvmlLib.nvmlGpuInstanceGetComputeInstances(gis[0], 0, cis, ctypes.byref(m))
    return [devs, n.value, info.instanceCount, m.value]
''')
    runner.session.faults.mig_reconfigure(4, ["1c.3g.40gb", "1c.3g.40gb", "1c.3g.40gb"])
    got = child.ask("until(lambda: split(4), lambda v: len(v[0]) == 3)")
    devs, gis, capacity, cis = got
    assert devs == [["1c.3g.40gb", 1, 0], ["1c.3g.40gb", 1, 1], ["1c.3g.40gb", 1, 2]]
    assert gis == 1  # one GPU instance, however many compute instances
    assert gis <= capacity
    assert cis == 3  # its three 1-slice compute instances
