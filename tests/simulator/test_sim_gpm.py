"""GPM on Hopper profiles only: samples with counters, metrics from sample pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

NOT_SUPPORTED, INVALID, VERSION_MISMATCH = 3, 2, 25

GPM_SCRIPT = '''
N.nvmlInit()
def metrics(s1, s2, ids, version=N.NVML_GPM_METRICS_GET_VERSION):
    mg = N.c_nvmlGpmMetricsGet_t()
    mg.version = version
    mg.numMetrics = len(ids)
    mg.sample1 = s1
    mg.sample2 = s2
    for i, m in enumerate(ids):
        mg.metrics[i].metricId = m
    rc = N.nvmlLib.nvmlGpmMetricsGet(ctypes.byref(mg))
    return rc, {ids[i]: [mg.metrics[i].nvmlReturn, mg.metrics[i].value] for i in range(len(ids))}
'''

IDS = [1, 2, 3, 5, 10, 11, 12, 13, 20, 21, 30, 60, 61, 62, 63, 97, 100, 166, 476, 477]


def test_gpm_metrics_on_h100(sim: Any) -> None:
    res = sim("h100x8").run(GPM_SCRIPT + f'''
h = N.nvmlDeviceGetHandleByIndex(0)
idle = N.nvmlDeviceGetHandleByIndex(7)
r = {{"support": N.nvmlGpmQueryDeviceSupport(h).isSupportedDevice,
      "streaming": N.nvmlGpmQueryIfStreamingEnabled(h)}}
s1, s2 = N.nvmlGpmSampleAlloc(), N.nvmlGpmSampleAlloc()
N.nvmlGpmSampleGet(h, s1)
time.sleep(0.2)
N.nvmlGpmSampleGet(h, s2)
r["rc"], r["m"] = metrics(s1, s2, {IDS!r})
r["bad_version"] = metrics(s1, s2, [1], version=2)[0]
i1, i2 = N.nvmlGpmSampleAlloc(), N.nvmlGpmSampleAlloc()
N.nvmlGpmSampleGet(idle, i1)
time.sleep(0.05)
N.nvmlGpmSampleGet(idle, i2)
r["idle"] = metrics(i1, i2, [1, 2])[1]
r["mixed"] = metrics(s1, i2, [1])[0]
r["mig_sample"] = code(N.nvmlGpmMigSampleGet, h, 1, s1)
N.nvmlGpmSampleFree(s1)
r["freed_twice"] = code(N.nvmlGpmSampleFree, ctypes.c_void_p(12345))
out(r)
''')
    assert res["support"] == 1
    assert res["streaming"] == 0
    assert res["rc"] == 0
    assert res["bad_version"] == VERSION_MISMATCH
    m = {int(k): v for k, v in res["m"].items()}
    for mid in (1, 2, 3, 5, 10, 11, 12, 13):
        assert m[mid][0] == 0, mid
        assert 0 < m[mid][1] <= 100, mid
    assert m[2][1] < m[1][1]
    assert m[3][1] < m[2][1]
    assert m[20][0] == 0
    assert m[20][1] > 0
    assert m[21][1] > 0
    assert m[60][0] == 0
    assert m[60][1] > 0
    link_rx = m[62][1]
    assert 0 < link_rx < m[60][1]
    assert m[97][0] == 0  # link 17 TX exists on 18-link H100
    assert m[30][0] == 0  # NVDEC
    assert m[100][0] == NOT_SUPPORTED  # C2C: not on H100 SXM
    assert m[166][0] == NOT_SUPPORTED  # no NVENC on H100
    assert m[476][0] == NOT_SUPPORTED
    assert m[477][0] == INVALID
    assert {int(k): v for k, v in res["idle"].items()} == {1: [0, 0.0], 2: [0, 0.0]}
    assert res["mixed"] == INVALID
    assert res["mig_sample"] == 29  # NVML_ERROR_INVALID_STATE: MIG mode is off
    assert res["freed_twice"] == INVALID


def test_gpm_frozen_clock_gives_instantaneous_values(sim: Any) -> None:
    runner = sim("h100x8", frozen_time=123.0)
    script = GPM_SCRIPT + '''
h = N.nvmlDeviceGetHandleByIndex(2)
s1, s2 = N.nvmlGpmSampleAlloc(), N.nvmlGpmSampleAlloc()
N.nvmlGpmSampleGet(h, s1)
N.nvmlGpmSampleGet(h, s2)
out(metrics(s1, s2, [1, 5, 20, 60]))
'''
    first, second = runner.run(script), runner.run(script)
    assert first == second
    assert first[0] == 0
    assert all(v[0] == 0 and v[1] > 0 for v in first[1].values())


def test_gpm_not_supported_without_hopper(sim: Any) -> None:
    for profile in ("a100-mig", "rtx4090", "t4x4"):
        res = sim(profile).run('''
N.nvmlInit()
h = N.nvmlDeviceGetHandleByIndex(0)
s = N.nvmlGpmSampleAlloc()
out([N.nvmlGpmQueryDeviceSupport(h).isSupportedDevice, code(N.nvmlGpmSampleGet, h, s)])
''')
        assert res == [0, NOT_SUPPORTED], profile


def test_gpm_mig_samples(sim: Any, tmp_path: Path) -> None:
    profile = tmp_path / "h100-mig.yaml"
    profile.write_text("base: h100x8\ndevice_count: 1\ndevices:\n"
                       "  - index: 0\n    mig: {devices: [3g.40gb, 3g.40gb]}\n")
    res = sim(profile).run(GPM_SCRIPT + '''
h = N.nvmlDeviceGetHandleByIndex(0)
gis = [N.nvmlDeviceGetGpuInstanceId(N.nvmlDeviceGetMigDeviceHandleByIndex(h, j)) for j in range(2)]
r = {"gis": gis, "vals": []}
for gi in gis:
    s1, s2 = N.nvmlGpmSampleAlloc(), N.nvmlGpmSampleAlloc()
    N.nvmlGpmMigSampleGet(h, gi, s1)
    time.sleep(0.05)
    N.nvmlGpmMigSampleGet(h, gi, s2)
    r["vals"].append(metrics(s1, s2, [1, 20])[1])
r["missing"] = code(N.nvmlGpmMigSampleGet, h, 9, s1)
r["whole_on_mig"] = code(N.nvmlGpmSampleGet, N.nvmlDeviceGetMigDeviceHandleByIndex(h, 0), s1)
out(r)
''')
    assert res["gis"] == [1, 2]
    for vals in res["vals"]:
        assert vals["1"][0] == 0
        assert 0 < vals["1"][1] <= 100
        assert vals["20"][0] == NOT_SUPPORTED  # PCIe is per GPU, not per instance
    assert res["missing"] == 6  # NOT_FOUND
    assert res["whole_on_mig"] == NOT_SUPPORTED
