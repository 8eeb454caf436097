"""The sampler on the simulated NVML: isolation, XIDs, MIG levels, field support, selectors.

Each scenario runs in its own process (one NVML library per process, see ``simproc``).
"""

from __future__ import annotations

from simproc import run_snippet

HELPERS = """
def up(c):
    return {n.entity.gpu: n.value for n in c.natives if n.name == "gpu_exporter_gpu_up"}

def gpus_with(c, fid):
    return sorted({x.entity.gpu for x in c.samples if x.field_id == fid})

def _key(row):
    return [-1 if v is None else v for v in row[:3]]

def where(c, fid):
    return sorted(([x.entity.gpu, x.entity.gi_id, x.value] for x in c.samples
                   if x.field_id == fid), key=_key)

def support(c):
    return sorted(([n.entity.gpu, n.entity.gi_id, dict(n.labels)["field"],
                    dict(n.labels)["reason"], n.value]
                   for n in c.natives if n.name == "gpu_exporter_field_supported"), key=_key)

def natives(c, name):
    return sorted([list(n.labels), n.value] for n in c.natives if n.name == name)
"""


def _run(code: str) -> dict:
    return run_snippet(HELPERS + code)


def test_a_lost_gpu_leaves_the_others_exporting_and_comes_back() -> None:
    out = _run("""
nv = Nvml(simulate="h100x8")
s = Sampler(nvml=nv, fields=default_fields(), events=False)
c = s.collect_once()
out["before"] = up(c)
nv.sim_session.faults.lose_gpu(2)
c = wait_until(lambda: (lambda c: c if up(c)[2] == 0.0 else None)(s.collect_once()))
out["during"] = up(c)
out["power"] = gpus_with(c, 155)
out["fb"] = gpus_with(c, 252)
out["entities"] = sorted(e.gpu for e in c.entities)
out["errors"] = natives(c, "gpu_exporter_nvml_errors_total")
nv.sim_session.faults.restore_gpu(2)
c = wait_until(lambda: (lambda c: c if up(c)[2] == 1.0 else None)(s.collect_once()))
out["after"] = up(c)
out["power_after"] = gpus_with(c, 155)
s.close()
""")
    everyone = {str(i): 1.0 for i in range(8)}
    assert out["before"] == everyone
    assert out["during"] == {**everyone, "2": 0.0}
    assert out["power"] == [0, 1, 3, 4, 5, 6, 7]
    assert out["fb"] == [0, 1, 3, 4, 5, 6, 7]
    assert out["entities"] == list(range(8))  # the lost GPU is still listed
    assert any(labels[1] == ["code", "GPU_IS_LOST"] and value >= 1
               for labels, value in out["errors"])
    assert out["after"] == everyone
    assert out["power_after"] == list(range(8))


def test_default_counters_on_h100() -> None:
    out = _run("""
nv = Nvml(simulate="h100x8")
s = Sampler(nvml=nv, fields=default_fields(), events=False)
s.collect_once()
c = s.collect_once()
out["fields"] = sorted({x.field_id for x in c.samples if x.entity.gpu == 0})
out["driver"] = [x.value for x in c.samples if x.field_id == 1 and x.entity.gpu == 0]
out["power"] = where(c, 155)
out["fb"] = [[x.field_id, x.value] for x in c.samples if x.entity.gpu == 0
             and x.field_id in (250, 251, 252, 253)]
out["support"] = [row for row in support(c) if row[0] == 0]
out["collectors"] = natives(c, "gpu_exporter_collector_success")
out["total"] = natives(c, "gpu_exporter_collections_total")
s.close()
""")
    fields = set(out["fields"])
    for fid in (1, 100, 101, 140, 150, 155, 156, 202, 203, 204, 207, 250, 251, 252, 253,
                393, 394, 395, 449):
        assert fid in fields, fid
    assert out["driver"]
    assert isinstance(out["driver"][0], str)
    assert len(out["power"]) == 8
    assert all(0 < value < 800 for _, _, value in out["power"])
    fb = dict(out["fb"])
    assert fb[251] + fb[252] + fb[253] in (fb[250], fb[250] - 1, fb[250] - 2)  # MiB truncation
    reasons = {field: (reason, value) for _, _, field, reason, value in out["support"]}
    assert reasons["DCGM_FI_DEV_POWER_USAGE"] == ("supported", 1.0)
    assert reasons["DCGM_FI_DEV_VGPU_LICENSE_STATUS"][1] == 0.0
    assert all(value == 1.0 for _, value in out["collectors"])
    assert out["total"] == [[[], 2.0]]


def test_injected_xid_79_shows_in_all_three_xid_metrics() -> None:
    out = _run("""
fields = default_fields() | {9001}
nv = Nvml(simulate="h100x8")
s = Sampler(nvml=nv, fields=fields)
c = s.collect_once()
out["before"] = where(c, 230)
nv.sim_session.faults.xid(5, 79)
def seen():
    c = s.collect_once()
    return c if any(x.field_id == 230 and x.value == 79 for x in c.samples) else None
c = wait_until(seen)
out["xid"] = [[x.entity.gpu, x.value, list(x.labels)] for x in c.samples if x.field_id == 230]
out["count"] = [[x.entity.gpu, x.value, list(x.labels)] for x in c.samples if x.field_id == 9001]
out["total"] = [[n.entity.gpu, n.value, list(n.labels)] for n in c.natives
                if n.name == "gpu_exporter_xid_errors_total"]
s.close()
""")
    assert all(value == 0 for _, _, value in out["before"])
    xid = {gpu: (value, dict(labels)) for gpu, value, labels in out["xid"]}
    assert xid[5][0] == 79
    assert xid[5][1]["err_code"] == "79"
    assert xid[5][1]["err_msg"]
    assert all(value == 0 for gpu, (value, _) in xid.items() if gpu != 5)
    count = {gpu: (value, dict(labels)) for gpu, value, labels in out["count"]}
    assert count[5] == (1.0, {"window_size_in_ms": "300000", "xid": "79"})
    assert count[0] == (0.0, {"window_size_in_ms": "300000"})
    assert out["total"] == [[5, 1.0, [["xid", "79"]]]]


def test_a100_mig_power_once_per_gpu_memory_per_instance() -> None:
    out = _run("""
fields = frozenset({155, 156, 150, 100, 250, 252, 1001, 1})
nv = Nvml(simulate="a100-mig")
s = Sampler(nvml=nv, fields=fields, events=False)
c = s.collect_once()
out["power"] = [[x.entity.gpu, x.entity.gi_id] for x in c.samples if x.field_id == 155]
out["fb"] = [[x.entity.gpu, x.entity.gi_id, x.entity.gi_profile, x.value]
             for x in c.samples if x.field_id == 252]
out["labels"] = [[x.entity.gpu, x.entity.gi_id] for x in c.samples if x.field_id == 1]
out["mig_gpus"] = sorted({e.gpu for e in c.entities if e.gi_id is not None})
out["gpus"] = sorted({e.gpu for e in c.entities})
out["up"] = up(c)
out["support"] = support(c)
s.close()
""")
    power = out["power"]
    assert len(power) == len(out["gpus"])
    assert all(gi is None for _, gi in power)  # never per instance
    assert sorted(gpu for gpu, _ in power) == out["gpus"]
    assert out["mig_gpus"]
    fb_mig = [row for row in out["fb"] if row[1] is not None]
    fb_whole = [row for row in out["fb"] if row[1] is None]
    assert {row[0] for row in fb_mig} == set(out["mig_gpus"])
    assert all(row[2] and "g." in row[2] for row in fb_mig)  # GPU_I_PROFILE like 1g.10gb
    assert {row[0] for row in fb_whole} == set(out["gpus"]) - set(out["mig_gpus"])
    assert all(value == 1.0 for value in out["up"].values())
    reasons = {(gpu, gi, field): (reason, value)
               for gpu, gi, field, reason, value in out["support"]}
    mig_gpu = out["mig_gpus"][0]
    gi = next(row[1] for row in fb_mig if row[0] == mig_gpu)
    assert reasons[(mig_gpu, gi, "DCGM_FI_DEV_POWER_USAGE")] == ("mig_instance", 0.0)
    assert reasons[(mig_gpu, None, "DCGM_FI_DEV_FB_USED")] == ("mig_parent", 0.0)
    assert reasons[(mig_gpu, gi, "DCGM_FI_DEV_FB_USED")] == ("supported", 1.0)
    assert reasons[(mig_gpu, gi, "DCGM_FI_PROF_GR_ENGINE_ACTIVE")] == ("no_gpm", 0.0)
    # label fields go on every entity, instances included
    assert [mig_gpu, gi] in out["labels"]


def test_rtx4090_has_no_ecc_or_profiling_and_says_why() -> None:
    out = _run("""
import logging
lines = []
class Keep(logging.Handler):
    def emit(self, record):
        lines.append(record.getMessage())
logging.getLogger("gpu_exporter").addHandler(Keep())
logging.getLogger("gpu_exporter").setLevel(logging.INFO)
fields = default_fields() | {310, 311, 312, 313, 1002, 1003}
nv = Nvml(simulate="rtx4090")
s = Sampler(nvml=nv, fields=fields, events=False)
s.collect_once()
s.collect_once()
c = s.collect_once()
out["summaries"] = [line for line in lines if "requested fields unavailable" in line]
out["fields"] = sorted({x.field_id for x in c.samples})
out["support"] = support(c)
s.close()
""")
    fields = set(out["fields"])
    assert not fields & {310, 311, 312, 313}
    assert not any(1001 <= fid <= 1016 for fid in fields)
    assert 155 in fields
    reasons = {field: (reason, value) for _, _, field, reason, value in out["support"]}
    for name in ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL"):
        assert reasons[name] == ("not_supported", 0.0)
    for name in ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_SM_ACTIVE"):
        assert reasons[name] == ("no_gpm", 0.0)
    assert reasons["DCGM_FI_DEV_GPU_TEMP"] == ("supported", 1.0)
    (summary,) = out["summaries"]  # one line for the one GPU, not one per cycle or per row
    assert summary.startswith("GPU 0 (NVIDIA GeForce RTX 4090): ")
    assert "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL (not_supported)" in summary
    assert "DCGM_FI_PROF_SM_ACTIVE (no_gpm)" in summary


def test_device_selector_and_unknown_gpu() -> None:
    out = _run("""
nv = Nvml(simulate="h100x8")
s = Sampler(nvml=nv, fields=frozenset({155}), devices="g:1,3-4", events=False)
c = s.collect_once()
out["power"] = gpus_with(c, 155)
out["up"] = sorted(up(c))
s.close()
try:
    Sampler(nvml=nv, fields=frozenset({155}), devices="g:9", events=False)
except ValueError as exc:
    out["error"] = str(exc)
""")
    assert out["power"] == [1, 3, 4]
    assert out["up"] == [1, 3, 4]
    assert "-d/--devices" in out["error"]
    assert "GPU 9" in out["error"]


def test_static_identity_is_not_reread_each_cycle() -> None:
    out = _run("""
nv = Nvml(simulate="h100x8")
s = Sampler(nvml=nv, fields=default_fields(), events=False)
s.collect_once()
before = nv.sim_session.faults.call_counts()
for _ in range(10):
    s.collect_once()
after = nv.sim_session.faults.call_counts()
out["delta"] = {k: after.get(k, 0) - before.get(k, 0) for k in after
                if after.get(k, 0) != before.get(k, 0)}
s.close()
""")
    delta = out["delta"]
    for static in ("nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetSerial",
                   "nvmlDeviceGetHandleByIndex_v2", "nvmlSystemGetDriverVersion",
                   "nvmlDeviceGetPciInfo_v3"):
        assert static not in delta, static
    assert delta["nvmlDeviceGetFieldValues"] == 10 * 8  # one batched call per GPU per cycle
    assert sum(delta.values()) <= 10 * 8 * 14


def test_mig_reconfiguration_is_picked_up() -> None:
    out = _run("""
nv = Nvml(simulate="a100-mig")
s = Sampler(nvml=nv, fields=frozenset({252, 155}), events=False)
def layout(c, gpu):
    return sorted([e.gi_id, e.gi_profile] for e in c.entities if e.gpu == gpu and e.is_mig)
def fb(c, gpu):
    return sorted(-1 if x.entity.gi_id is None else x.entity.gi_id
                  for x in c.samples if x.field_id == 252 and x.entity.gpu == gpu)
c = s.collect_once()
out["before"] = layout(c, 0)
nv.sim_session.faults.mig_reconfigure(0, ["3g.40gb", "2g.20gb"])
c = wait_until(lambda: (lambda c: c if len(layout(c, 0)) == 2 else None)(s.collect_once()))
out["after"] = layout(c, 0)
out["fb_after"] = fb(c, 0)
nv.sim_session.faults.mig_reconfigure(0, [])
c = wait_until(lambda: (lambda c: c if not layout(c, 0) else None)(s.collect_once()))
out["off"] = layout(c, 0)
out["fb_off"] = fb(c, 0)
out["power_off"] = [x.entity.gi_id for x in c.samples if x.field_id == 155 and x.entity.gpu == 0]
s.close()
""")
    assert len(out["before"]) > 2
    assert sorted(profile for _, profile in out["after"]) == ["2g.20gb", "3g.40gb"]
    assert sorted(out["fb_after"]) == sorted(gi for gi, _ in out["after"])
    assert out["off"] == []
    assert out["fb_off"] == [-1]  # the whole GPU reports its framebuffer again
    assert out["power_off"] == [None]


def test_instance_selector_on_a100_mig() -> None:
    out = _run("""
nv = Nvml(simulate="a100-mig")
s = Sampler(nvml=nv, fields=frozenset({252, 155, 1}), devices="i:0,8", events=False)
c = s.collect_once()
out["fb"] = sorted([x.entity.gpu, x.entity.gi_id] for x in c.samples if x.field_id == 252)
out["power"] = [x.entity.gpu for x in c.samples if x.field_id == 155]
out["labels"] = sorted([x.entity.gpu, x.entity.gi_id] for x in c.samples if x.field_id == 1)
s.close()
try:
    Sampler(nvml=nv, fields=frozenset({252}), devices="i:500", events=False)
except ValueError as exc:
    out["error"] = str(exc)
""")
    assert len(out["fb"]) == 2
    assert all(gi is not None for _, gi in out["fb"])
    assert out["labels"] == out["fb"]
    assert out["power"] == []  # -d i: instances only, no device-level series
    assert "GPU instance 500 does not exist" in out["error"]


def test_base_unit_fields_are_derived_from_classic_ones() -> None:
    out = _run("""
nv = Nvml(simulate="h100x8", state_dir=None)
wanted = frozenset({1613, 1627, 1603, 1611, 252})
s = Sampler(nvml=nv, fields=wanted, events=False)
c = s.collect_once()
out["by_field"] = {str(fid): [x.value for x in c.samples if x.field_id == fid and x.entity.gpu == 0]
                   for fid in (1613, 1627, 1603, 1611, 252, 203, 100, 156)}
out["support"] = sorted(dict(n.labels)["field"] for n in c.natives
                        if n.name == "gpu_exporter_field_supported" and n.entity.gpu == 0)
s.close()
""")
    got = {int(k): v for k, v in out["by_field"].items()}
    assert got[203] == got[100] == got[156] == []  # classic fields only used, not exported
    assert len(got[252]) == 1
    assert got[1627] == [got[252][0] * 1048576]
    assert 0 <= got[1613][0] <= 1
    assert got[1603][0] > 1e8  # Hz
    assert got[1611][0] > 0  # J
    assert out["support"] == sorted([
        "DCGM_FI_DEV_GPU_UTIL_RATIO", "DCGM_FI_DEV_FB_USED_BYTES", "DCGM_FI_DEV_SM_CLOCK_HERTZ",
        "DCGM_FI_DEV_GPU_ENERGY_JOULES_TOTAL", "DCGM_FI_DEV_FB_USED"])


def test_mig_scoped_xid_attaches_to_its_instance() -> None:
    out = _run("""
nv = Nvml(simulate="a100-mig")
s = Sampler(nvml=nv, fields=frozenset({230, 9001}))
c = s.collect_once()
gi = sorted(e.gi_id for e in c.entities if e.gpu == 0 and e.is_mig)[0]
out["gi"] = gi
nv.sim_session.faults.xid(0, 31, gi_id=gi, ci_id=0)
def seen():
    c = s.collect_once()
    return c if any(x.field_id == 230 and x.value == 31 for x in c.samples) else None
c = wait_until(seen)
out["xid"] = sorted([-1 if x.entity.gi_id is None else x.entity.gi_id, x.value]
                    for x in c.samples if x.field_id == 230 and x.entity.gpu == 0)
out["total"] = [[n.entity.gi_id, n.value] for n in c.natives
                if n.name == "gpu_exporter_xid_errors_total"]
s.close()
""")
    gi = out["gi"]
    xid = dict(out["xid"])
    assert xid[gi] == 31
    assert xid[-1] == 0  # the physical GPU itself saw no XID
    assert all(value == 0 for entity, value in xid.items() if entity != gi)
    assert out["total"] == [[gi, 1.0]]
