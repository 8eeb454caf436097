"""The sampler on the simulated NVML: isolation, XIDs, MIG levels, field support, selectors.

Each scenario runs in its own process (one NVML library per process, see ``simproc``).
"""

from __future__ import annotations

import threading
import time

from simproc import run_snippet

from gpu_exporter.model import Entity
from gpu_exporter.sampler import _Gpu, _Runner

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

def natives_by_gpu(c, name):
    return {n.entity.gpu: n.value for n in c.natives if n.name == name}
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
    assert "DCGM_FI_DEV_POWER_USAGE" not in reasons  # supported: no row
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


def test_a100_mig_default_repeats_device_fields_on_each_instance_as_dcgm_exporter() -> None:
    out = _run("""
fields = frozenset({155, 150, 252, 1, 140, 526})
nv = Nvml(simulate="a100-mig")
s = Sampler(nvml=nv, fields=fields, events=False)
c = s.collect_once()
rows = {}
for x in c.samples:
    if not isinstance(x.value, str):
        rows.setdefault(x.field_id, []).append([x.entity.gpu, x.entity.gi_id, x.value])
out["rows"] = {str(k): v for k, v in rows.items()}
out["instances"] = sorted([e.gpu, e.gi_id] for e in c.entities if e.gi_id is not None)
out["gpus"] = sorted({e.gpu for e in c.entities})
out["support"] = support(c)
s.close()
""")
    rows = {int(k): v for k, v in out["rows"].items()}
    instances = out["instances"]
    mig_gpus = {gpu for gpu, _ in instances}
    whole = [[gpu, None] for gpu in out["gpus"] if gpu not in mig_gpus]
    # every device-level family: once per MIG instance (with its GI id) and per whole GPU;
    # never a series of a MIG-enabled GPU itself
    for field in (155, 150, 140, 526):
        assert sorted([gpu, gi] for gpu, gi, _ in rows[field] if gi is not None) == instances
        assert [[gpu, gi] for gpu, gi, _ in rows[field] if gi is None] == whole
    # the same GPU value on each of its instances
    by_gpu: dict[int, set[float]] = {}
    for gpu, gi, value in rows[155]:
        if gi is not None:
            by_gpu.setdefault(gpu, set()).add(value)
    assert all(len(values) == 1 for values in by_gpu.values())
    assert {value for _, _, value in rows[526]} == {0.0}  # bare metal: dcgm-exporter's 0
    assert sorted([gpu, gi] for gpu, gi, _ in rows[252] if gi is not None) == instances
    reasons = {(gpu, gi, field): (reason, value)
               for gpu, gi, field, reason, value in out["support"]}
    gpu, gi = instances[0]
    assert (gpu, gi, "DCGM_FI_DEV_POWER_USAGE") not in reasons  # supported: no row
    assert reasons[(gpu, gi, "DCGM_FI_DEV_VGPU_LICENSE_STATUS")] == ("not_supported", 0.0)
    assert (gpu, None, "DCGM_FI_DEV_POWER_USAGE") not in reasons


def test_a100_mig_device_fields_once_power_once_per_gpu_memory_per_instance() -> None:
    out = _run("""
fields = frozenset({155, 156, 150, 100, 250, 252, 1001, 1})
nv = Nvml(simulate="a100-mig")
s = Sampler(nvml=nv, fields=fields, events=False, mig_device_fields_once=True)
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
    assert (mig_gpu, gi, "DCGM_FI_DEV_POWER_USAGE") not in reasons  # mig_instance: no news
    assert (mig_gpu, None, "DCGM_FI_DEV_FB_USED") not in reasons  # mig_parent: no news
    assert (mig_gpu, gi, "DCGM_FI_DEV_FB_USED") not in reasons  # supported: no row
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
    assert "DCGM_FI_DEV_GPU_TEMP" not in reasons  # supported: no row
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
out["power"] = sorted([x.entity.gpu, x.entity.gi_id] for x in c.samples if x.field_id == 155)
out["labels"] = sorted([x.entity.gpu, x.entity.gi_id] for x in c.samples if x.field_id == 1)
s.close()
once = Sampler(nvml=nv, fields=frozenset({252, 155}), devices="i:0,8", events=False,
               mig_device_fields_once=True)
c = once.collect_once()
out["power_once"] = [x.entity.gpu for x in c.samples if x.field_id == 155]
out["fb_once"] = sorted([x.entity.gpu, x.entity.gi_id] for x in c.samples if x.field_id == 252)
once.close()
try:
    Sampler(nvml=nv, fields=frozenset({252}), devices="i:500", events=False)
except ValueError as exc:
    out["error"] = str(exc)
""")
    assert len(out["fb"]) == 2
    assert all(gi is not None for _, gi in out["fb"])
    assert out["labels"] == out["fb"]
    assert out["power"] == out["fb"]  # -d i: the selected instances, device fields included
    assert out["fb_once"] == out["fb"]
    assert out["power_once"] == []  # --mig-device-fields-once: no GPU series with -d i
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
    assert out["support"] == []  # all five supported: no field_supported row is news


def test_mig_scoped_xid_attaches_to_its_instance() -> None:
    out = _run("""
nv = Nvml(simulate="a100-mig")
s = Sampler(nvml=nv, fields=frozenset({230, 9001}), mig_device_fields_once=True)
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


def test_a_hung_gpu_is_left_behind_and_comes_back_when_its_call_returns() -> None:
    out = _run("""
import logging
lines = []
class Keep(logging.Handler):
    def emit(self, record):
        lines.append(record.getMessage())
logging.getLogger("gpu_exporter").addHandler(Keep())
nv = Nvml(simulate="h100x8")
f = nv.sim_session.faults
s = Sampler(nvml=nv, fields=default_fields(), events=False, deadline_s=0.5)
calls = f.call_counts().get("nvmlDeviceGetPowerUsage", 0)
c = s.collect_once()
per_gpu = (f.call_counts()["nvmlDeviceGetPowerUsage"] - calls) / 8
f.hang("nvmlDeviceGetPowerUsage", index=5)
c = wait_until(lambda: (lambda c: c if up(c)[5] == 0.0 else None)(s.collect_once()))
out["hung"] = up(c)
out["power"] = gpus_with(c, 155)
out["entities"] = sorted(e.gpu for e in c.entities)
before = f.call_counts()["nvmlDeviceGetPowerUsage"]
total = natives(c, "gpu_exporter_collections_total")[0][1]
for _ in range(3):
    c = s.collect_once()
out["still"] = up(c)
out["power_still"] = gpus_with(c, 155)
out["temp_still"] = gpus_with(c, 150)
out["cycles"] = natives(c, "gpu_exporter_collections_total")[0][1] - total
out["calls"] = f.call_counts()["nvmlDeviceGetPowerUsage"] - before
out["per_gpu"] = per_gpu
f.clear()
c = wait_until(lambda: (lambda c: c if up(c)[5] == 1.0 else None)(s.collect_once()))
out["after"] = up(c)
out["power_after"] = gpus_with(c, 155)
out["lines"] = lines
out["idle"] = s.close()
""")
    everyone = {str(i): 1.0 for i in range(8)}
    assert out["hung"] == {**everyone, "5": 0.0}
    assert out["power"] == [0, 1, 2, 3, 4, 6, 7]
    assert out["entities"] == list(range(8))  # the hung GPU is still listed
    # while the call is stuck the GPU is not handed out again; the others carry on
    assert out["still"] == {**everyone, "5": 0.0}
    assert out["power_still"] == out["temp_still"] == [0, 1, 2, 3, 4, 6, 7]
    assert out["cycles"] == 3
    assert out["per_gpu"] >= 1
    assert out["calls"] == 3 * 7 * out["per_gpu"]
    assert out["after"] == everyone
    assert out["power_after"] == list(range(8))
    assert any(line.startswith("GPU 5: NVML call not answered within 0.5s (collector power")
               for line in out["lines"]), out["lines"]
    assert any(line.startswith("GPU 5: the stuck NVML call returned") for line in out["lines"])
    assert out["idle"] is True


def test_close_with_a_call_still_stuck_gives_up_on_it() -> None:
    out = _run("""
nv = Nvml(simulate="h100x8")
f = nv.sim_session.faults
s = Sampler(nvml=nv, fields=default_fields(), deadline_s=0.5)
s.collect_once()
f.hang("nvmlDeviceGetPowerUsage", index=2)
wait_until(lambda: up(s.collect_once())[2] == 0.0)
out["idle"] = s.close(timeout_s=0.5)
out["again"] = s.close(timeout_s=0.5)
c = s.collect_once()  # after close: everything down, no NVML call
out["after_close"] = up(c)
f.clear()
""")
    assert out["idle"] is False
    assert out["again"] is False
    assert out["after_close"] == {str(i): 0.0 for i in range(8)}


MIG_SNIPPET = """
def layout(c, gpu):
    return sorted([e.gi_id, e.gi_profile] for e in c.entities if e.gpu == gpu and e.is_mig)
def fb(c, gpu):
    return sorted([x.entity.gi_id, x.entity.gi_profile] for x in c.samples
                  if x.field_id == 252 and x.entity.gpu == gpu and x.entity.is_mig)
nv = Nvml(simulate="a100-mig")
f = nv.sim_session.faults
f.mig_reconfigure(0, ["3g.40gb", "2g.20gb", "1g.10gb"])
handle = nv.handle(0)
wait_until(lambda: len(nv.mig_layout(handle)[1]) == 3)
s = Sampler(nvml=nv, fields=frozenset({252}), devices=DEVICES, events=False)
c = s.collect_once()
out["before"] = layout(c, 0)
f.mig_reconfigure(0, ["1g.10gb"] * 7)
wait_until(lambda: len(nv.mig_layout(handle)[1]) == 7)  # NVML answers with the new layout
c = s.collect_once()  # so the very next cycle must export it, with the right labels
out["after"] = layout(c, 0)
out["fb_after"] = fb(c, 0)
s.close()
"""


def test_a_mig_reconfiguration_relabels_instances_on_the_next_cycle() -> None:
    for devices in ("f", "i"):  # -d i used never to re-check the layout
        out = _run(MIG_SNIPPET.replace("DEVICES", repr(devices)))
        assert sorted(p for _, p in out["before"]) == ["1g.10gb", "2g.20gb", "3g.40gb"], devices
        assert len(out["after"]) == 7, devices
        assert {p for _, p in out["after"]} == {"1g.10gb"}, devices
        assert out["fb_after"] == out["after"], devices


def test_mig_enabled_gpu_without_instances_says_so() -> None:
    out = _run("""
import os, tempfile
from pathlib import Path
import gpu_exporter.simulator as simulator
text = (Path(simulator.__file__).parent / "profiles" / "a100-mig.yaml").read_text()
path = Path(tempfile.mkdtemp()) / "empty-mig.yaml"
path.write_text(text.rstrip() + "\\n  - index: 3\\n    mig: {enabled: true}\\n")
nv = Nvml(simulate=str(path))
s = Sampler(nvml=nv, fields=frozenset({252, 155}), events=False)
c = s.collect_once()
out["fb"] = where(c, 252)
out["power"] = gpus_with(c, 155)
out["support"] = [row for row in support(c) if row[0] in (3, 4)]
s.close()
""")
    assert 3 not in {gpu for gpu, _, _ in out["fb"]}  # nothing to read the framebuffer from
    assert 4 in {gpu for gpu, _, _ in out["fb"]}
    assert 3 in out["power"]
    reasons = {(gpu, field): (reason, value) for gpu, _, field, reason, value in out["support"]}
    assert reasons[(3, "DCGM_FI_DEV_FB_USED")] == ("no_mig_instances", 0.0)
    assert (3, "DCGM_FI_DEV_POWER_USAGE") not in reasons  # supported: no row
    assert (4, "DCGM_FI_DEV_FB_USED") not in reasons  # supported: no row


def test_a_failing_collector_marks_its_fields_error() -> None:
    out = _run("""
nv = Nvml(simulate="h100x8")
nv.sim_session.faults.error(1, "nvmlDeviceGetPowerUsage", 999)
s = Sampler(nvml=nv, fields=frozenset({155, 150}), events=False)
def failed(c):
    return c if any(n.name == "gpu_exporter_collector_success" and n.value == 0.0
                    and n.labels == (("collector", "power"),) for n in c.natives) else None
c = wait_until(lambda: failed(s.collect_once()))
out["up"] = up(c)
out["power"] = gpus_with(c, 155)
out["support"] = [row for row in support(c) if row[0] in (0, 1)]
nv.sim_session.faults.clear()
c = wait_until(lambda: (lambda c: c if 1 in gpus_with(c, 155) else None)(s.collect_once()))
out["recovered"] = [row for row in support(c) if row[0] in (0, 1)]
c = s.collect_once()
out["still"] = [row for row in support(c) if row[0] in (0, 1)]
s.close()
""")
    assert out["up"]["1"] == 1.0  # the GPU itself is fine
    assert 1 not in out["power"]
    reasons = {(gpu, field): (reason, value) for gpu, _, field, reason, value in out["support"]}
    assert reasons[(1, "DCGM_FI_DEV_POWER_USAGE")] == ("error", 0.0)
    assert (1, "DCGM_FI_DEV_GPU_TEMP") not in reasons  # supported: no row
    assert (0, "DCGM_FI_DEV_POWER_USAGE") not in reasons  # supported: no row
    # a change is news: the recovered field reads 1 "supported" from then on; others no row
    recovered = [[1, None, "DCGM_FI_DEV_POWER_USAGE", "supported", 1.0]]
    assert out["recovered"] == recovered
    assert out["still"] == recovered


def _gpus(n: int) -> list[_Gpu]:
    return [_Gpu(i, Entity(gpu=i, uuid="", pci_bus_id="", model_name="")) for i in range(n)]


def test_runner_leaves_a_stuck_gpu_behind_and_hands_it_out_once_it_returns() -> None:
    release = threading.Event()
    calls: list[int] = []

    def work(gpu: _Gpu) -> int:
        calls.append(gpu.index)
        if gpu.index == 1:
            release.wait(30)
        return gpu.index * 10

    runner = _Runner(deadline_s=0.2)
    gpus = _gpus(4)
    try:
        assert runner.run(gpus, work) == {0: 0, 2: 20, 3: 30}
        assert gpus[1].hung_since is not None
        # the caller leaves the hung GPU out; the runner itself never hands it out twice
        assert runner.run([g for g in gpus if g.hung_since is None], work) == {0: 0, 2: 20, 3: 30}
        assert calls.count(1) == 1
        release.set()
        deadline = time.monotonic() + 10  # the abandoned worker clears the mark on return
        while gpus[1].hung_since is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gpus[1].hung_since is None
        assert gpus[1].reprobe is True  # probed again before being read
        assert runner.run(gpus, work) == {0: 0, 1: 10, 2: 20, 3: 30}
    finally:
        release.set()
        runner.stop()
        assert runner.wait_idle(5)


def test_runner_stop_wakes_the_caller_and_reports_a_stuck_call() -> None:
    release = threading.Event()
    entered = threading.Event()

    def work(gpu: _Gpu) -> int:
        entered.set()
        release.wait(30)
        return gpu.index

    runner = _Runner(deadline_s=30)
    result: list[dict[int, int]] = []
    caller = threading.Thread(target=lambda: result.append(runner.run(_gpus(2), work)))
    caller.start()
    try:
        assert entered.wait(10)
        runner.stop()
        caller.join(10)
        assert not caller.is_alive()  # returned without waiting for the stuck call
        assert result == [{}]
        assert runner.wait_idle(0.1) is False  # the call is still in progress
        release.set()
        assert runner.wait_idle(10) is True
        assert runner.run(_gpus(2), work) == {}  # stopped: nothing handed out any more
    finally:
        release.set()


def test_t4_memory_temp_is_dcgm_exporter_s_zero_and_identity_numbers_come_from_nvml() -> None:
    out = _run("""
nv = Nvml(simulate="t4x4")
s = Sampler(nvml=nv, fields=frozenset({140, 150, 4, 5, 55}), events=False)
c = s.collect_once()
out["mem_temp"] = where(c, 140)
out["gpu_temp"] = gpus_with(c, 150)
out["count"] = where(c, 4)
out["cuda"] = where(c, 5)
out["minor"] = where(c, 55)
out["support"] = [row for row in support(c) if row[2] == "DCGM_FI_DEV_MEMORY_TEMP"]
s.close()
omit = Sampler(nvml=nv, fields=frozenset({140}), events=False, placeholder_zeros=False)
out["omitted"] = where(omit.collect_once(), 140)
omit.close()
""")
    # T4 has no memory sensor: NVML says NOT_SUPPORTED, DCGM (and so dcgm-exporter) says 0
    assert out["mem_temp"] == [[gpu, None, 0.0] for gpu in range(4)]
    assert out["gpu_temp"] == [0, 1, 2, 3]
    assert out["support"] == [[gpu, None, "DCGM_FI_DEV_MEMORY_TEMP", "not_supported", 0.0]
                              for gpu in range(4)]
    assert out["omitted"] == []  # --omit-unsupported-zeros
    assert out["count"] == [[gpu, None, 4.0] for gpu in range(4)]
    assert out["cuda"] == [[gpu, None, 12020.0] for gpu in range(4)]  # CUDA 12.2, as DCGM has it
    assert [value for _, _, value in out["minor"]] == [0.0, 1.0, 2.0, 3.0]


def test_runner_reads_every_gpu_at_once() -> None:
    # each GPU's work waits for all four to be in progress together: only a runner that
    # reads the GPUs concurrently gets past the barrier (one after another, it breaks)
    barrier = threading.Barrier(4, timeout=30)

    def work(gpu: _Gpu) -> int:
        barrier.wait()
        return gpu.index

    runner = _Runner(deadline_s=60)
    try:
        assert runner.run(_gpus(4), work) == {0: 0, 1: 1, 2: 2, 3: 3}
        assert not barrier.broken
    finally:
        runner.stop()
        assert runner.wait_idle(5)


def test_every_gpu_hung_is_found_out_within_one_deadline() -> None:
    out = _run("""
import logging, threading
lines = []
class Keep(logging.Handler):
    def emit(self, record):
        lines.append(record.getMessage())
logging.getLogger("gpu_exporter").addHandler(Keep())
nv = Nvml(simulate="h100x8")
f = nv.sim_session.faults
power = lambda: f.call_counts().get("nvmlDeviceGetPowerUsage", 0)
# a long deadline: every GPU's stuck call is entered while the first one is still waited for
s = Sampler(nvml=nv, fields=default_fields(), events=False, deadline_s=120)
s.collect_once()
f.hang("nvmlDeviceGetPowerUsage")
for _ in range(50):  # until the library has picked the fault up (a cycle that hangs)
    before = power()
    cycle = threading.Thread(target=s.collect_once, daemon=True)
    cycle.start()
    wait_until(lambda: power() - before >= 8 or not cycle.is_alive(), timeout=60)
    cycle.join(1.0)  # a cycle that is not stuck ends in milliseconds
    if cycle.is_alive():
        break
wait_until(lambda: power() - before >= 8, timeout=60)
out["entered"] = power() - before
out["cycle_still_waiting"] = cycle.is_alive()
# a short deadline, the fault in place: one cycle reports all eight down
s2 = Sampler(nvml=nv, fields=default_fields(), events=False, deadline_s=0.5)
c = s2.collect_once()
out["up"] = up(c)
out["temps"] = gpus_with(c, 150)
out["hung_lines"] = len([l for l in lines if "NVML call not answered within 0.5s" in l])
f.clear()
cycle.join(60)
out["idle"] = s.close()
c = wait_until(lambda: (lambda c: c if set(up(c).values()) == {1.0} else None)(s2.collect_once()))
out["back"] = up(c)
out["idle2"] = s2.close()
""")
    assert out["entered"] == 8
    assert out["cycle_still_waiting"] is True
    assert out["up"] == {str(i): 0.0 for i in range(8)}
    assert out["temps"] == []
    assert out["hung_lines"] == 8
    assert out["idle"] is True
    assert out["back"] == {str(i): 1.0 for i in range(8)}
    assert out["idle2"] is True


def test_a_slow_gpu_keeps_its_last_values_marked_slow_without_flapping() -> None:
    out = _run("""
import logging
lines = []
class Keep(logging.Handler):
    def emit(self, record):
        lines.append(record.getMessage())
logging.getLogger("gpu_exporter").setLevel(logging.INFO)
logging.getLogger("gpu_exporter").addHandler(Keep())
nv = Nvml(simulate="t4x4")
f = nv.sim_session.faults
s = Sampler(nvml=nv, fields=frozenset({150, 155}), events=False, deadline_s=30, slow_s=0.3)
c = s.collect_once()
out["fresh_slow"] = natives_by_gpu(c, "gpu_exporter_gpu_slow")
out["fresh_age"] = natives_by_gpu(c, "gpu_exporter_gpu_data_age_seconds")
f.latency("nvmlDeviceGetTemperature", 1.0, index=2)
f.latency("nvmlDeviceGetTemperatureV", 1.0, index=2)
c = wait_until(lambda: (lambda c: c if natives_by_gpu(c, "gpu_exporter_gpu_slow")[2] == 1.0
                        else None)(s.collect_once()))
cycles = []
for _ in range(12):  # several slow reads: every cycle exports GPU 2, marked slow
    c = s.collect_once()
    slow = natives_by_gpu(c, "gpu_exporter_gpu_slow")
    age = natives_by_gpu(c, "gpu_exporter_gpu_data_age_seconds")
    cycles.append([up(c)[2], slow[2], 2 in gpus_with(c, 150), age[2], slow[0]])
out["cycles"] = cycles
f.clear()
c = wait_until(lambda: (lambda c: c if natives_by_gpu(c, "gpu_exporter_gpu_slow")[2] == 0.0
                        else None)(s.collect_once()))
out["after"] = [up(c)[2], natives_by_gpu(c, "gpu_exporter_gpu_data_age_seconds")[2]]
out["slow_lines"] = [l for l in lines if l.startswith("GPU 2: NVML answers slower than 0.3s")]
out["again_lines"] = [l for l in lines if l.startswith("GPU 2: NVML answers within 0.3s again")]
out["down_lines"] = [l for l in lines if "not answered" in l]
out["idle"] = s.close()
""")
    assert out["fresh_slow"] == {str(i): 0.0 for i in range(4)}
    assert out["fresh_age"] == {str(i): 0.0 for i in range(4)}
    # never down, never without its values, always marked slow; the others are not slow
    assert all(row[:3] == [1.0, 1.0, True] for row in out["cycles"]), out["cycles"]
    assert all(row[4] == 0.0 for row in out["cycles"]), out["cycles"]
    assert any(row[3] > 0 for row in out["cycles"]), out["cycles"]  # old values say so
    assert out["after"] == [1.0, 0.0]
    assert len(out["slow_lines"]) == 1, out["slow_lines"]  # one line per episode
    assert len(out["again_lines"]) == 1, out["again_lines"]
    assert out["down_lines"] == []
    assert out["idle"] is True


def test_a_stuck_event_wait_shows_in_a_metric() -> None:
    out = _run("""
import logging
import gpu_exporter.sampler as sampler_module
sampler_module.EVENT_WAIT_STUCK_S = 1.0
import gpu_exporter.events as events_module
events_module.EVENT_WAIT_MS = 2000  # the default 30 s wait would be found stuck after 31 s
lines = []
class Keep(logging.Handler):
    def emit(self, record):
        lines.append(record.getMessage())
logging.getLogger("gpu_exporter").setLevel(logging.INFO)
logging.getLogger("gpu_exporter").addHandler(Keep())
nv = Nvml(simulate="h100x8")
f = nv.sim_session.faults
s = Sampler(nvml=nv, fields=default_fields())
stuck = lambda c: natives(c, "gpu_exporter_event_wait_stuck_seconds")[0][1]
out["before"] = stuck(s.collect_once())
f.hang("nvmlEventSetWait_v2")
c = wait_until(lambda: (lambda c: c if stuck(c) > 0 else None)(s.collect_once()), timeout=30)
out["stuck"] = c is not None and stuck(c) >= 1.0
f.clear()
c = wait_until(lambda: (lambda c: c if stuck(c) == 0 else None)(s.collect_once()), timeout=30)
out["after"] = c is not None and stuck(c)
out["lines"] = [l for l in lines if "event wait" in l]
s.close()  # the event thread may still be in its (long) wait: not waited for
""")
    assert out["before"] == 0.0
    assert out["stuck"] is True
    assert out["after"] == 0.0
    assert len(out["lines"]) == 2, out["lines"]  # stuck once, back once
    assert out["lines"][0].startswith("NVML event wait (nvmlEventSetWait_v2) blocked for")


def test_gpus_read_at_once_never_mix_their_batched_field_values() -> None:
    # every GPU is read in its own thread: the reused nvmlFieldValue_t arrays and GPM request
    # structs must not be shared between them (they once were: values of one GPU showed up on
    # another). With the simulator's time frozen every cycle must read the same values.
    out = run_snippet(HELPERS + """
nv = Nvml(simulate="h100x8")
s = Sampler(nvml=nv, fields=default_fields(), events=False)
s.collect_once()
def values(c):
    return sorted([x.entity.gpu, x.field_id, x.value] for x in c.samples
                  if x.field_id in (140, 240, 241, 156))
first = values(s.collect_once())
out["rows"] = len(first)
out["differ"] = sum(values(s.collect_once()) != first for _ in range(200))
out["per_gpu"] = len({tuple(v[1:]) for v in first}) > len({v[1] for v in first})
s.close()
""", env={"GPU_SIM_FROZEN_TIME": "1000"})
    assert out["rows"] >= 8 * 3
    assert out["per_gpu"] is True  # the GPUs' values differ from each other
    assert out["differ"] == 0


def test_runner_reads_in_one_thread_and_splits_off_the_gpus_behind_a_late_one() -> None:
    threads: dict[int, str] = {}
    release = threading.Event()

    def work(gpu: _Gpu) -> int:
        threads[gpu.index] = threading.current_thread().name
        if gpu.index == 0:
            release.wait(30)
        return gpu.index

    # nobody late (a long late_s): one thread reads every GPU in turn, one hand-off per cycle
    release.set()
    calm = _Runner(deadline_s=60, late_s=30)
    try:
        assert calm.run(_gpus(4), work) == {0: 0, 1: 1, 2: 2, 3: 3}
        assert calm.run(_gpus(4), work) == {0: 0, 1: 1, 2: 2, 3: 3}
        assert len(set(threads.values())) == 1
    finally:
        calm.stop()
        assert calm.wait_idle(5)
    # GPU 0 late: the GPUs behind it get their own threads and finish while it is held
    release.clear()
    threads.clear()
    runner = _Runner(deadline_s=60, late_s=0.05)
    try:
        tasks = runner.submit_all(_gpus(4), work)
        runner.wait(tasks[1:], runner.now() + 30)
        assert [t.done for t in tasks] == [False, True, True, True]
        assert len(set(threads.values())) == 4
        release.set()
        runner.wait(tasks[:1], runner.now() + 30)
        assert tasks[0].done
        assert tasks[0].result == 0
    finally:
        release.set()
        runner.stop()
        assert runner.wait_idle(5)
