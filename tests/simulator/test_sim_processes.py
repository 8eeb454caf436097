"""Scripted processes through real pynvml at the C ABI.

A test adds and removes processes with ``FaultInjector`` (or ``gpu-sim process``) while a child
process that loaded the simulated library reads them through pynvml, as the exporter does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from gpu_exporter.simulator import SimulatorError

SUCCESS, NOT_SUPPORTED, NOT_FOUND, INSUFFICIENT_SIZE = 0, 3, 6, 7
PERIOD_US = 166666

HELPERS = '''
LISTS = {"compute": N.nvmlDeviceGetComputeRunningProcesses,
         "graphics": N.nvmlDeviceGetGraphicsRunningProcesses,
         "mps": N.nvmlDeviceGetMPSComputeRunningProcesses}
def procs(h, kind="compute"):
    return sorted([p.pid, p.usedGpuMemory >> 20, p.gpuInstanceId, p.computeInstanceId]
                  for p in LISTS[kind](h))
def gpu_procs(i, kind="compute"):
    return procs(H[i], kind)
def util(i):
    u = N.nvmlDeviceGetUtilizationRates(H[i])
    return [u.gpu, u.memory]
def used_mib(h):
    return N.nvmlDeviceGetMemoryInfo(h, version=N.nvmlMemory_v2).used >> 20
def samples(h, last=0):
    try:
        got = N.nvmlDeviceGetProcessUtilization(h, last)
    except N.NVMLError as e:
        return e.value
    return [[s.pid, s.timeStamp, s.smUtil, s.memUtil, s.encUtil, s.decUtil] for s in got]
def mig(i, j):
    return N.nvmlDeviceGetMigDeviceHandleByIndex(H[i], j)
def mig_ids(i):
    out = []
    for j in range(7):
        try:
            m = mig(i, j)
        except N.NVMLError:
            break
        out.append([N.nvmlDeviceGetGpuInstanceId(m), N.nvmlDeviceGetComputeInstanceId(m)])
    return out
def power(i):
    return N.nvmlDeviceGetPowerUsage(H[i])
def energy(i):
    return N.nvmlDeviceGetTotalEnergyConsumption(H[i])
def drain(h, delays, last=0):
    """Read like an exporter: each call passes the newest timestamp seen so far."""
    acc = []
    for d in delays:
        got = samples(h, last)
        if isinstance(got, list) and got:
            acc.extend(got)
            last = max(s[1] for s in got)
        time.sleep(d)
    return acc
'''


def _wait_for(child: Any, expr: str, want: Any) -> Any:
    """Ask ``expr`` until it equals ``want`` (the library re-reads the state within ~100 ms)."""
    got = child.ask(f"until(lambda: {expr}, lambda v: v == {want!r}, timeout=20)")
    assert got == want, expr
    return got


def test_time_slicing_replaces_the_seeded_processes(sim: Any, repl: Any) -> None:
    runner = sim("h100x8")
    child = repl(runner, HELPERS)
    seeded_other = child.ask("gpu_procs(3)")
    faults = runner.session.faults
    faults.add_process(4101, 2, mem_mib=2048, sm=30, mem=10, enc=5, dec=1)
    faults.add_process(4102, 2, mem_mib=4096, sm=50, mem=20)
    faults.add_process(4103, 2, mem_mib=1024, sm=40, mem=15, dec=7)
    none = 0xFFFFFFFF
    _wait_for(child, "gpu_procs(2)", [[4101, 2048, none, none], [4102, 4096, none, none],
                                      [4103, 1024, none, none]])
    # device values follow the processes: SM sum capped at 100, memory sum, memory used exact
    assert child.ask("util(2)") == [100, 45]
    assert child.ask("used_mib(H[2])") == 2048 + 4096 + 1024
    assert child.ask("N.nvmlDeviceGetDecoderUtilization(H[2])[0]") == 8
    assert child.ask("gpu_procs(2, 'graphics')") == []
    assert child.ask("gpu_procs(2, 'mps')") == []
    # the other GPUs keep their seeded processes
    assert child.ask("gpu_procs(3)") == seeded_other
    assert [p["pid"] for p in faults.processes()] == [4101, 4102, 4103]

    # one sample per process (nvml.h: "one utilization sample structure is returned per
    # process running"), of the newest whole period: it carries the process's utilisation
    got = child.ask("until(lambda: samples(H[2]), lambda v: isinstance(v, list) and "
                    "[s[2] for s in v] == [30, 50, 40], timeout=20)")
    assert [s[0] for s in got] == [4101, 4102, 4103]
    assert [s[2:] for s in got] == [[30, 10, 5, 1], [50, 20, 0, 0], [40, 15, 0, 7]]
    assert len({s[1] for s in got}) == 1
    assert got[0][1] % PERIOD_US == 0
    # read again right away: the same samples while no newer period has ended, each PID once
    again = child.ask("samples(H[2])")
    assert sorted(s[0] for s in again) == [4101, 4102, 4103]


def test_mps_clients_and_server(sim: Any, repl: Any) -> None:
    runner = sim("h100x8")
    child = repl(runner, HELPERS)
    faults = runner.session.faults
    faults.add_process(5001, 1, kind="mps", mem_mib=1000, sm=20)
    faults.add_process(5002, 1, kind="mps", mem_mib=3000, sm=30)
    faults.add_process(5003, 1, mem_mib=500, sm=10)
    none = 0xFFFFFFFF
    _wait_for(child, "gpu_procs(1, 'mps')", [[5001, 1000, none, none], [5002, 3000, none, none]])
    compute = child.ask("gpu_procs(1)")
    # the compute list: the plain compute process and the MPS server holding its clients
    assert [5003, 500, none, none] in compute
    server = [p for p in compute if p[0] != 5003]
    assert len(server) == 1
    assert server[0][1] == 4000
    assert server[0][0] not in (5001, 5002)
    # memory used counts every process once (not the server and its clients twice)
    assert child.ask("used_mib(H[1])") == 4500
    assert child.ask("util(1)")[0] == 60
    # utilisation samples are per client
    got = child.ask("until(lambda: samples(H[1]), lambda v: isinstance(v, list) and "
                    "{s[0] for s in v} >= {5001, 5002, 5003}, timeout=20)")
    assert {s[0] for s in got} == {5001, 5002, 5003}


def test_mig_instances_with_several_processes(sim: Any, repl: Any) -> None:
    runner = sim("a100-mig")
    child = repl(runner, HELPERS)
    ids = child.ask("mig_ids(1)")   # 3g.40gb, 2g.20gb, 1g.10gb
    assert len(ids) == 3
    (gi_a, ci_a), (gi_b, ci_b), (gi_c, _) = ids
    faults = runner.session.faults
    faults.add_process(6001, 1, instance=gi_a, mem_mib=5000, sm=40)
    faults.add_process(6002, 1, instance=gi_a, mem_mib=7000, sm=50)
    faults.add_process(6003, 1, instance=gi_b, mem_mib=2000, sm=90, kind="graphics")
    faults.add_process(6004, 1, instance=gi_b, mem_mib=1000, sm=20)
    _wait_for(child, "procs(mig(1, 0))", [[6001, 5000, gi_a, ci_a], [6002, 7000, gi_a, ci_a]])
    assert child.ask("procs(mig(1, 1))") == [[6004, 1000, gi_b, ci_b]]
    assert child.ask("procs(mig(1, 1), 'graphics')") == [[6003, 2000, gi_b, ci_b]]
    assert child.ask("procs(mig(1, 2))") == []
    # the parent lists every instance's processes with their GPU/compute instance ids
    assert child.ask("gpu_procs(1)") == [[6001, 5000, gi_a, ci_a], [6002, 7000, gi_a, ci_a],
                                         [6004, 1000, gi_b, ci_b]]
    # per-instance memory is its processes' sum
    assert child.ask("[used_mib(mig(1, j)) for j in range(3)]") == [12000, 3000, 0]
    # process utilisation is not available on MIG: NOT_SUPPORTED, never zeros
    assert child.ask("[samples(mig(1, j)) for j in range(3)]") == [NOT_SUPPORTED] * 3
    assert child.ask("samples(H[1])") == NOT_SUPPORTED
    assert child.ask("code(N.nvmlDeviceGetUtilizationRates, mig(1, 0))") == NOT_SUPPORTED
    with pytest.raises(SimulatorError, match="not MIG-capable"):
        sim("t4x4").session.faults.add_process(1, 0, instance=gi_c)


def test_short_lived_process_between_two_reads(sim: Any, repl: Any) -> None:
    runner = sim("h100x8")
    child = repl(runner, HELPERS)
    faults = runner.session.faults
    faults.add_process(7001, 0, mem_mib=100, sm=10)
    _wait_for(child, "[p[0] for p in gpu_procs(0)]", [7001])
    first = child.ask("until(lambda: samples(H[0]), lambda v: isinstance(v, list), timeout=20)")
    last = max(s[1] for s in first)
    faults.add_process(7002, 0, mem_mib=900, sm=80)
    _wait_for(child, "[p[0] for p in gpu_procs(0)]", [7001, 7002])
    # let it run for at least one whole sample period, then it exits
    child.ask(f"until(lambda: samples(H[0], {last}), lambda v: isinstance(v, list) and "
              "[s[2] for s in v if s[0] == 7002] == [80], timeout=20)")
    before = time.time_ns() // 1000
    faults.remove_process(7002)
    after = time.time_ns() // 1000
    _wait_for(child, "[p[0] for p in gpu_procs(0)]", [7001])
    # gone from the lists and the memory, but its last sample stays for the next read
    assert child.ask("used_mib(H[0])") == 100
    got = child.ask(f"drain(H[0], (0.3,) * 5, last={last})", timeout=60)
    assert all(s[1] > last for s in got)
    mine = [s for s in got if s[0] == 7002]
    # newer at each read (a read brings one sample per process), the last one of the period it
    # exited in (a part of that period: at most its utilisation); a read made before that
    # period ended brings the whole period before it
    assert [s[1] for s in mine] == sorted({s[1] for s in mine})
    assert 1 <= len(mine) <= 2
    assert mine[-1][1] - PERIOD_US < after
    assert mine[-1][1] >= before
    assert 0 <= mine[-1][2] <= 80
    assert all(s[2] == 80 for s in mine[:-1])
    assert max(s[1] for s in got if s[0] == 7001) > after + PERIOD_US
    # every read brings at most one sample per process
    stamps = [s[1] for s in got if s[0] == 7001]
    assert stamps == sorted(set(stamps))


def test_pid_reuse_with_another_profile(sim: Any, repl: Any) -> None:
    runner = sim("h100x8")
    child = repl(runner, HELPERS)
    faults = runner.session.faults
    none = 0xFFFFFFFF
    faults.add_process(8001, 4, mem_mib=100, sm=20)
    _wait_for(child, "gpu_procs(4)", [[8001, 100, none, none]])
    faults.remove_process(8001)
    _wait_for(child, "gpu_procs(4)", [])
    faults.add_process(8001, 4, kind="graphics", mem_mib=300, sm=70)
    _wait_for(child, "gpu_procs(4, 'graphics')", [[8001, 300, none, none]])
    assert child.ask("gpu_procs(4)") == []
    assert child.ask("used_mib(H[4])") == 300
    reused = faults.processes()[0]["start_us"]
    got = child.ask(f"until(lambda: samples(H[4], {reused + PERIOD_US}), "
                    "lambda v: isinstance(v, list), timeout=20)")
    assert got[-1][0] == 8001
    assert got[-1][2] == 70
    # adding a PID that runs already replaces it (reuse without a visible gap)
    faults.add_process(8001, 4, mem_mib=50, sm=5)
    _wait_for(child, "gpu_procs(4)", [[8001, 50, none, none]])
    assert child.ask("gpu_procs(4, 'graphics')") == []
    assert len(faults.processes()) == 1


def test_two_call_protocol_insufficient_size(sim: Any, repl: Any) -> None:
    runner = sim("h100x8")
    child = repl(runner, HELPERS + '''
def raw_list(i, room, null=False):
    cnt = ctypes.c_uint(room)
    buf = (N.c_nvmlProcessInfo_t * max(room, 1))()
    r = N.nvmlLib.nvmlDeviceGetComputeRunningProcesses_v3(H[i], ctypes.byref(cnt),
                                                    None if null else buf)
    return [r, cnt.value, [buf[k].pid for k in range(cnt.value)] if r == 0 else []]
def raw_util(i, room, last, null=False):
    cnt = ctypes.c_uint(room)
    buf = (N.c_nvmlProcessUtilizationSample_t * max(room, 1))()
    r = N.nvmlLib.nvmlDeviceGetProcessUtilization(H[i], None if null else buf, ctypes.byref(cnt),
                                            ctypes.c_ulonglong(last))
    return [r, cnt.value, [[buf[k].pid, buf[k].timeStamp] for k in range(cnt.value)]
            if r == 0 else []]
''')
    faults = runner.session.faults
    for pid in (9001, 9002, 9003):
        faults.add_process(pid, 5, mem_mib=10, sm=10)
    _wait_for(child, "len(gpu_procs(5))", 3)
    assert child.ask("raw_list(5, 0, null=True)") == [INSUFFICIENT_SIZE, 3, []]
    assert child.ask("raw_list(5, 2)") == [INSUFFICIENT_SIZE, 3, []]
    assert child.ask("raw_list(5, 3)") == [SUCCESS, 3, [9001, 9002, 9003]]
    assert child.ask("raw_list(5, 11)") == [SUCCESS, 3, [9001, 9002, 9003]]
    faults.clear_processes(5)
    _wait_for(child, "raw_list(5, 0, null=True)", [SUCCESS, 0, []])

    faults.add_process(9004, 6, sm=10)
    faults.add_process(9005, 6, sm=20)
    _wait_for(child, "[p[0] for p in gpu_procs(6)]", [9004, 9005])
    start = max(p["start_us"] for p in faults.processes() if p["gpu"] == 6)
    # the size query counts the processes, one sample each (both of the same, newest period)
    r = child.ask(f"until(lambda: raw_util(6, 0, {start}, null=True), "
                  "lambda v: v[1] == 2, timeout=20)")
    assert r[0] == INSUFFICIENT_SIZE
    assert child.ask(f"raw_util(6, 1, {start})")[0] == INSUFFICIENT_SIZE
    r = child.ask(f"raw_util(6, 2, {start})")
    assert r[0] == SUCCESS
    assert [s[0] for s in r[2]] == [9004, 9005]
    assert r[2][0][1] == r[2][1][1]
    # once 9004 has exited, its sample is older than 9005's and comes first; a buffer too
    # small for both is refused whole (nvml.h's size protocol), never cut short
    faults.remove_process(9004)
    gone = time.time_ns() // 1000
    later = (gone // PERIOD_US + 2) * PERIOD_US
    r = child.ask(f"until(lambda: raw_util(6, 4, {start}), lambda v: v[0] == 0 and "
                  f"max(s[1] for s in v[2]) >= {later}, timeout=20)")
    assert [s[0] for s in r[2]] == [9004, 9005]
    assert r[2][0][1] < r[2][1][1]
    assert child.ask(f"raw_util(6, 1, {start})")[:2] == [INSUFFICIENT_SIZE, 2]
    nxt = child.ask(f"raw_util(6, 4, {r[2][0][1]})")
    assert nxt[0] == SUCCESS
    assert [s[0] for s in nxt[2]] == [9005]
    # nothing newer than the newest sample: NOT_FOUND (the wrapper's "no samples")
    far = int(time.time() * 1e6) + 3_600_000_000
    assert child.ask(f"raw_util(6, 0, {far}, null=True)")[0] == NOT_FOUND


def test_last_seen_bookkeeping_neither_repeats_nor_loses(sim: Any, repl: Any) -> None:
    runner = sim("h100x8")
    child = repl(runner, HELPERS)
    faults = runner.session.faults
    faults.add_process(9101, 7, sm=30, mem=12)
    faults.add_process(9102, 7, sm=55, enc=3)
    _wait_for(child, "len(gpu_procs(7))", 2)
    start = max(p["start_us"] for p in faults.processes())
    # read like an exporter: each call passes the newest timestamp seen so far, at uneven
    # intervals (several periods between some calls, none between others)
    rounds = child.ask("drain(H[7], (0.05, 0.4, 0.01, 0.7, 0.2, 0.0, 0.5, 0.3, 0.2))",
                       timeout=60)
    keys = [(s[0], s[1]) for s in rounds]
    assert len(keys) == len(set(keys)), "a sample was returned twice"
    for pid, sm in ((9101, 30), (9102, 55)):
        ts = [t for p, t in keys if p == pid]
        # a sample at every read that follows a pause longer than a period (five of them)
        assert len(ts) >= 5
        # newer at every read, and never older than the period before the read's newest
        assert ts == sorted(ts)
        full = [s for s in rounds if s[0] == pid and s[1] - PERIOD_US >= start]
        assert full
        assert all(s[2] == sm for s in full)


def test_power_and_energy_follow_the_processes(sim: Any, repl: Any) -> None:
    runner = sim("h100x8")
    child = repl(runner, HELPERS)
    faults = runner.session.faults
    e0 = child.ask("energy(0)")   # seeded processes, the profile's workload
    faults.add_process(9201, 0, sm=100)
    _wait_for(child, "util(0)[0]", 100)
    busy = child.ask("power(0)")
    e1 = child.ask("energy(0)")
    assert e0 < e1
    faults.clear_processes(0)
    _wait_for(child, "util(0)[0]", 0)
    idle = child.ask("power(0)")
    assert busy > idle
    assert child.ask("gpu_procs(0)") == []     # no seeded process comes back
    e2 = child.ask("energy(0)")
    faults.add_process(9202, 0, sm=60)
    _wait_for(child, "util(0)[0]", 60)
    mid = child.ask("power(0)")
    assert idle < mid < busy
    e3 = child.ask("energy(0)")
    assert e1 < e2 < e3
    # energy never goes back across many reads while processes come and go
    values = child.ask("[energy(0) for _ in range(200)]")
    assert values == sorted(values)


def test_injector_validates(sim: Any) -> None:
    faults = sim("h100x8").session.faults
    with pytest.raises(SimulatorError, match=r"outside 0\.\.7"):
        faults.add_process(1, 8)
    with pytest.raises(SimulatorError, match="kind must be one of"):
        faults.add_process(1, 0, kind="cuda")
    with pytest.raises(SimulatorError, match=r"sm must be an integer in 0\.\.100"):
        faults.add_process(1, 0, sm=101)
    with pytest.raises(SimulatorError, match="pid must be"):
        faults.add_process(0, 0)
    with pytest.raises(SimulatorError, match="no running process with PID 77"):
        faults.remove_process(77)
    for pid in range(100, 164):
        faults.add_process(pid, 3)
    with pytest.raises(SimulatorError, match="at most 64 processes"):
        faults.add_process(999, 3)
    # faults.clear() removes faults, not processes
    faults.lose_gpu(1)
    faults.clear()
    assert len(faults.processes()) == 64


def test_cli_process_commands(sim: Any) -> None:
    state = str(sim("t4x4").session.state_dir)

    def gpu_sim(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gpu_exporter.simulator.cli", *args],
                              capture_output=True, text=True, check=False, timeout=60)

    r = gpu_sim("process", "add", "--state-dir", state, "--gpu", "1", "--pid", "4242",
                "--kind", "mps", "--mem-mib", "8192", "--sm", "60", "--mem", "7")
    assert r.returncode == 0, r.stderr
    r = gpu_sim("process", "list", "--state-dir", state, "--json")
    listed = json.loads(r.stdout)
    assert [(p["pid"], p["gpu"], p["kind"], p["mem_mib"], p["sm"], p["mem"]) for p in listed] == [
        (4242, 1, "mps", 8192, 60, 7)]
    r = gpu_sim("process", "list", "--state-dir", state)
    assert "4242" in r.stdout
    assert "mps" in r.stdout
    r = gpu_sim("process", "add", "--state-dir", state, "--gpu", "1", "--pid", "5", "--sm", "300")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "gpu-sim: error: process: sm must be an integer in 0..100, got 300"]
    r = gpu_sim("process", "add", "--state-dir", state, "--gpu", "0", "--pid", "5",
                "--instance", "3")
    assert r.returncode == 2
    assert "not MIG-capable" in r.stderr
    r = gpu_sim("process", "add", "--state-dir", state, "--gpu", "2", "--pid", "77")
    assert r.returncode == 0, r.stderr
    r = gpu_sim("process", "clear", "--state-dir", state, "--gpu", "2")
    assert r.returncode == 0, r.stderr
    assert [p["pid"] for p in json.loads(
        gpu_sim("process", "list", "--state-dir", state, "--json").stdout)] == [4242]
    r = gpu_sim("process", "remove", "--state-dir", state, "--pid", "4242")
    assert r.returncode == 0, r.stderr
    r = gpu_sim("process", "remove", "--state-dir", state, "--pid", "4242")
    assert r.returncode == 2
    assert "no running process with PID 4242" in r.stderr
    assert json.loads(gpu_sim("process", "list", "--state-dir", state, "--json").stdout) == []

