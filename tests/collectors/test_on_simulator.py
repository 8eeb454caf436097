"""Collectors against the simulated NVML through the real pynvml (one process per test)."""

from __future__ import annotations

from simproc import run_snippet

RUN = """
from gpu_exporter.collectors.base import make_view
from gpu_exporter.collectors.registry import COLLECTORS, Deps
from gpu_exporter.collectors.field_values import field_requests
from gpu_exporter.events import EventLog

def run(name, fields, gpu=0, cycles=1, profile="h100x8"):
    global nv
    try:
        nv
    except NameError:
        nv = Nvml(simulate=profile)
    collector = COLLECTORS[name].factory(Deps(EventLog(), lambda g: True))
    view = make_view(nv, nv.probe(gpu))
    results = []
    for _ in range(cycles):
        requests = field_requests(fields)
        readings = {(r.field_id, r.scope_id): r
                    for r in (nv.field_values(view.handle, requests) or [])} if requests else {}
        res = collector.collect(view, frozenset(fields), readings, time.monotonic())
        results.append({"samples": [[s.entity.gi_id, s.field_id, s.value] for s in res.samples],
                        "unsupported": [[u.field_id, u.reason] for u in res.unsupported]})
        time.sleep(0.05)  # let simulated counters and GPM advance between two samples
    collector.close()
    return results
"""


def test_profiling_needs_two_samples_and_reports_ratios() -> None:
    out = run_snippet(RUN + """
out["runs"] = run("profiling", [1001, 1004, 1005, 1009], cycles=3)
""")
    first, second, third = out["runs"]
    assert first["samples"] == []
    assert first["unsupported"] == []
    for cycle in (second, third):
        values = {fid: value for _, fid, value in cycle["samples"]}
        assert set(values) == {1001, 1004, 1005, 1009}
        for fid in (1001, 1004, 1005):
            assert 0.0 <= values[fid] <= 1.0, fid
        assert values[1009] >= 0.0


def test_clocks_power_temperature_utilization_memory() -> None:
    out = run_snippet(RUN + """
out["clocks"] = run("clocks", [100, 101, 113, 114])[0]
out["power"] = run("power", [155, 160, 164])[0]
out["temp"] = run("temperature", [150])[0]
out["util"] = run("utilization", [203, 204, 206, 207])[0]
out["memory"] = run("memory", [250, 251, 252, 253, 254])[0]
""")
    clocks = {fid: v for _, fid, v in out["clocks"]["samples"]}
    assert 0 < clocks[100] <= clocks[113]
    assert 0 < clocks[101] <= clocks[114]
    power = {fid: v for _, fid, v in out["power"]["samples"]}
    assert 0 < power[155] <= power[164] * 1.2
    assert power[160] >= 100  # watts, not milliwatts
    assert 0 < out["temp"]["samples"][0][2] < 120
    util = {fid: v for _, fid, v in out["util"]["samples"]}
    assert all(0 <= v <= 100 for v in util.values())
    assert [206, "not_supported"] in out["util"]["unsupported"]  # H100 SXM has no NVENC
    memory = {fid: v for _, fid, v in out["memory"]["samples"]}
    assert memory[250] == 81559
    assert 0 <= memory[254] <= 1
    assert memory[251] + memory[252] + memory[253] <= memory[250]


def test_nvlink_rate_on_h100() -> None:
    out = run_snippet(RUN + """
out["runs"] = run("nvlink", [449, 440], cycles=2)
""")
    first, second = out["runs"]
    assert first["samples"] == []
    values = {fid: v for _, fid, v in second["samples"]}
    assert values[449] >= values[440] >= 0


def test_profiling_per_mig_instance_on_h100() -> None:
    out = run_snippet("""
nv = Nvml(simulate="h100x8")
nv.sim_session.faults.mig_reconfigure(0, ["3g.40gb", "2g.20gb"])
wait_until(lambda: nv.probe(0).mig_enabled, 10)
s = Sampler(nvml=nv, fields=frozenset({1001, 1009}), events=False)
for _ in range(3):
    c = s.collect_once()
    time.sleep(0.05)
out["gr"] = sorted(x.entity.gi_id for x in c.samples if x.field_id == 1001 and x.entity.gpu == 0)
out["gr_other"] = [x.entity.gi_id for x in c.samples if x.field_id == 1001 and x.entity.gpu == 1]
out["pcie"] = sorted([n.entity.gi_id, dict(n.labels)["reason"]] for n in c.natives
                     if n.name == "gpu_exporter_field_supported" and n.entity.gpu == 0
                     and n.entity.gi_id is not None
                     and dict(n.labels)["field"] == "DCGM_FI_PROF_PCIE_TX_BYTES")
s.close()
""")
    assert len(out["gr"]) == 2
    assert None not in out["gr"]
    assert out["gr_other"] == [None]  # a GPU without MIG reports as a whole
    # the simulator, like a MIG slice, has no per-instance PCIe GPM metric: said so, not 0
    assert [reason for _, reason in out["pcie"]] == ["not_supported"] * 2


def test_field_entry_errors_mark_fields_error_and_are_counted() -> None:
    out = run_snippet(RUN + """
nv = Nvml(simulate="h100x8")
nv.sim_session.faults.error(0, "field:83", 999)   # energy entry: UNKNOWN
nv.sim_session.faults.error(0, "field:138", 4)    # NVLink TX entry: NO_PERMISSION
h = nv.handle(0)
wait_until(lambda: any(r.code == 999 for r in nv.field_values(h, [(83, 0)])), 10)
out["fv"] = run("field_values", [156])[0]
out["nvlink"] = run("nvlink", [449], cycles=2)
out["errors"] = {f"{k[0]}/{k[1]}": v for k, v in nv.error_counts().items()}
""")
    assert out["fv"]["samples"] == []
    assert out["fv"]["unsupported"] == [[156, "error"]]
    for cycle in out["nvlink"]:
        assert cycle["samples"] == []
        assert cycle["unsupported"] == [[449, "error"]]
    assert out["errors"]["nvmlDeviceGetFieldValues/UNKNOWN"] >= 2
    assert out["errors"]["nvmlDeviceGetFieldValues/NO_PERMISSION"] == 2
