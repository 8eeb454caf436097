"""Dynamics: deterministic for (profile, seed, time), consistent and monotonic."""

from __future__ import annotations

from typing import Any

SNAPSHOT = '''
N.nvmlInit()
r = []
for i in range(N.nvmlDeviceGetCount()):
    h = N.nvmlDeviceGetHandleByIndex(i)
    m = N.nvmlDeviceGetMemoryInfo(h, version=N.nvmlMemory_v2)
    u = N.nvmlDeviceGetUtilizationRates(h)
    f = N.nvmlDeviceGetFieldValues(h, [83, 138, 197, 74, 78])
    r.append({
        "uuid": N.nvmlDeviceGetUUID(h), "serial": N.nvmlDeviceGetSerial(h),
        "util": u.gpu, "power": N.nvmlDeviceGetPowerUsage(h),
        "temp": N.nvmlDeviceGetTemperature(h, 0),
        "sm": N.nvmlDeviceGetClockInfo(h, 1), "energy": N.nvmlDeviceGetTotalEnergyConsumption(h),
        "mem": [m.total, m.reserved, m.used, m.free],
        "counters": [x.value.ullVal for x in f],
        "pids": sorted(p.pid for p in N.nvmlDeviceGetComputeRunningProcesses(h)),
    })
out(r)
'''


def _at(sim: Any, t: float, seed: int = 0) -> list[dict[str, Any]]:
    runner = sim("h100x8", seed=seed)
    return runner.run(SNAPSHOT, extra_env={"GPU_SIM_FROZEN_TIME": str(t)})


def test_same_seed_and_time_give_identical_values(sim: Any) -> None:
    assert _at(sim, 3600.0) == _at(sim, 3600.0)


def test_seed_changes_identity_and_pattern(sim: Any) -> None:
    a, b = _at(sim, 3600.0, seed=0), _at(sim, 3600.0, seed=1)
    assert [g["uuid"] for g in a] != [g["uuid"] for g in b]
    assert [g["power"] for g in a] != [g["power"] for g in b]


def test_values_move_together_and_stay_in_range(sim: Any) -> None:
    samples = [g for t in (0.0, 400.0, 1700.0, 5000.0) for g in _at(sim, t)]
    for g in samples:
        total, reserved, used, free = g["mem"]
        assert used + free + reserved == total
        assert 0 <= g["util"] <= 100
        assert 72_000 <= g["power"] <= 685_000
        assert 29 <= g["temp"] <= 66
    idle = [g for g in samples if g["util"] == 0]
    busy = [g for g in samples if g["util"] >= 60]
    assert idle
    assert busy
    assert max(g["power"] for g in idle) < min(g["power"] for g in busy)
    assert max(g["sm"] for g in idle) < min(g["sm"] for g in busy)


def test_cumulative_counters_only_grow(sim: Any) -> None:
    times = [0.0, 1.0, 60.0, 61.5, 600.0, 7200.0]
    series = [_at(sim, t) for t in times]
    for gpu in range(8):
        energies = [s[gpu]["energy"] for s in series]
        assert energies == sorted(energies)
        assert energies[0] < energies[-1]
        for k in range(5):
            values = [s[gpu]["counters"][k] for s in series]
            assert values == sorted(values), (gpu, k)


def test_processes_start_and_exit(sim: Any) -> None:
    pid_sets = {tuple(_at(sim, t)[0]["pids"]) for t in range(0, 3600, 300)}
    assert len(pid_sets) > 2
    always = set.intersection(*(set(p) for p in pid_sets))
    assert len(always) == 1  # the long-running job; the others come and go


def test_time_runs_when_not_frozen(sim: Any) -> None:
    res = sim("h100x8").run('''
N.nvmlInit()
h = N.nvmlDeviceGetHandleByIndex(0)
e1 = N.nvmlDeviceGetTotalEnergyConsumption(h)
f1 = N.nvmlDeviceGetFieldValues(h, [83])[0].timestamp
time.sleep(0.2)
e2 = N.nvmlDeviceGetTotalEnergyConsumption(h)
f2 = N.nvmlDeviceGetFieldValues(h, [83])[0].timestamp
out([e1, e2, f1, f2, time.time() * 1e6])
''')
    e1, e2, f1, f2, now_us = res
    assert e2 > e1
    assert f2 - f1 >= 150_000
    assert abs(now_us - f2) < 60e6  # real wall-clock microseconds
