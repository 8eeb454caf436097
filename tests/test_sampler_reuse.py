"""Samples reused between cycles: only while a value is unchanged, never across a re-probe.

A GPU's read reuses the :class:`~gpu_exporter.model.Sample` objects of its last read where the
entity, field and value are the same (``ResultBuilder``), and the XID/clock-event windows with
nothing in them are built once. These scenarios check that what is exported stays exactly what
a fresh build gives: after a value changes, an XID arrives and leaves its window, a counters
reload, a lost GPU, and a collector that fails half-way. Each runs in its own process
(``simproc``).
"""

from __future__ import annotations

from simproc import run_snippet

HELPERS = """
def by_key(c):
    return {(x.entity.gpu, x.field_id, x.labels): x for x in c.samples}

def same_objects(c1, c2, gpu):
    a, b = by_key(c1), by_key(c2)
    return sorted({k[1] for k, x in b.items() if k[0] == gpu and a.get(k) is x})

def fresh_entities(c):
    # every sample names an entity object of this very cycle (no stale one after a re-probe)
    current = {id(e) for e in c.entities}
    return all(id(x.entity) in current for x in c.samples)

def up(c):
    return {n.entity.gpu: n.value for n in c.natives if n.name == "gpu_exporter_gpu_up"}

def value(c, gpu, fid):
    return [x.value for x in c.samples if x.entity.gpu == gpu and x.field_id == fid]
"""

SBE, DBE, POWER, POWER_LIMIT, XID = 310, 311, 155, 160, 230


def _run(code: str) -> dict:
    return run_snippet(HELPERS + code)


def test_unchanged_values_reuse_their_samples_and_a_changed_one_is_rebuilt() -> None:
    out = _run(f"""
nv = Nvml(simulate="h100x8")
s = Sampler(nvml=nv, fields=default_fields(), events=False)
s.collect_once()  # the first cycle has no rates yet
c1 = s.collect_once()
c2 = s.collect_once()
out["reused"] = same_objects(c1, c2, 3)
out["equal"] = sorted(by_key(c1)) == sorted(by_key(c2))  # the same series
nv.sim_session.faults.ecc(3, sbe=5)
c3 = wait_until(lambda: (lambda c: c if value(c, 3, {SBE}) == [5.0] else None)(s.collect_once()))
out["sbe3"] = value(c3, 3, {SBE})
out["sbe2"] = value(c3, 2, {SBE})
out["dbe3"] = value(c3, 3, {DBE})
c4 = s.collect_once()
out["sbe3_next"] = value(c4, 3, {SBE})
out["reused_after"] = same_objects(c3, c4, 3)
out["fresh"] = fresh_entities(c3) and fresh_entities(c4)
s.close()
""")
    # static fields (ECC counters, power limit, driver version) are the very same objects
    assert {SBE, DBE, POWER_LIMIT} <= set(out["reused"])
    assert out["equal"]
    assert out["sbe3"] == [5.0]  # the changed value, not the reused 0
    assert out["sbe2"] == [0.0]
    assert out["dbe3"] == [0.0]
    assert out["sbe3_next"] == [5.0]
    assert SBE in out["reused_after"]  # unchanged again from then on
    assert out["fresh"]


def test_an_xid_replaces_the_quiet_window_and_it_comes_back_when_the_window_passes() -> None:
    out = _run(f"""
fields = default_fields() | {{9001}}
nv = Nvml(simulate="h100x8")
s = Sampler(nvml=nv, fields=fields, xid_window_s=2.0)
c1 = s.collect_once()
c2 = s.collect_once()
out["quiet_reused"] = {{{XID}, 9001}} <= set(same_objects(c1, c2, 5))
nv.sim_session.faults.xid(5, 79)
def rows(c, gpu):
    return sorted([x.field_id, x.value, list(x.labels)] for x in c.samples
                  if x.entity.gpu == gpu and x.field_id in ({XID}, 9001))
c3 = wait_until(lambda: (lambda c: c if value(c, 5, {XID}) == [79.0] else None)(s.collect_once()))
out["during"] = rows(c3, 5)
out["other"] = rows(c3, 4) == rows(c2, 4)
c4 = wait_until(lambda: (lambda c: c if value(c, 5, {XID}) == [0.0] else None)(s.collect_once()),
                timeout=30.0)
out["after"] = rows(c4, 5)
out["before"] = rows(c2, 5)
s.close()
""")
    assert out["quiet_reused"]
    assert out["during"][0][:2] == [XID, 79.0]
    assert dict(out["during"][0][2])["err_code"] == "79"
    assert out["during"][1] == [9001, 1.0, [["window_size_in_ms", "2000"], ["xid", "79"]]]
    assert out["other"]
    assert out["after"] == out["before"]  # back to the quiet window: 0, err_code "0"
    assert dict(out["after"][0][2])["err_code"] == "0"
    assert out["after"][1] == [9001, 0.0, [["window_size_in_ms", "2000"]]]


def test_a_reload_and_a_lost_gpu_export_what_a_fresh_read_gives() -> None:
    out = _run(f"""
fields = default_fields()
nv = Nvml(simulate="h100x8")
s = Sampler(nvml=nv, fields=fields, events=False)
s.collect_once()
s.collect_once()
s.set_wanted(fields - {{{SBE}}})
c = s.collect_once()
out["without"] = value(c, 1, {SBE})
s.set_wanted(fields)
c = s.collect_once()
out["with"] = value(c, 1, {SBE})
def fids(c, gpu):
    return sorted({{x.field_id for x in c.samples if x.entity.gpu == gpu}})
out["fids_match"] = fids(c, 1) == fids(c, 0)
nv.sim_session.faults.lose_gpu(2)
c = wait_until(lambda: (lambda c: c if up(c).get(2) == 0.0 else None)(s.collect_once()))
out["lost_samples"] = [x.field_id for x in c.samples if x.entity.gpu == 2]
nv.sim_session.faults.restore_gpu(2)
c = wait_until(lambda: (lambda c: c if up(c).get(2) == 1.0 else None)(s.collect_once()))
c = s.collect_once()
out["back_fids"] = fids(c, 2) == fids(c, 1)
out["fresh"] = fresh_entities(c)
s.close()
""")
    assert out["without"] == []
    assert out["with"] == [0.0]
    assert out["fids_match"]
    assert out["lost_samples"] == []
    assert out["back_fids"]
    assert out["fresh"]


def test_a_collector_failing_half_way_leaves_none_of_its_samples() -> None:
    out = _run(f"""
nv = Nvml(simulate="h100x8")
s = Sampler(nvml=nv, fields=frozenset({{{POWER}, {POWER_LIMIT}}}), events=False)
s.collect_once()
# the power collector reads the draw first, then the limit: the limit fails on GPU 1
nv.sim_session.faults.error(1, "nvmlDeviceGetPowerManagementLimit", 999)
def failed(c):
    return c if any(n.name == "gpu_exporter_collector_success" and n.value == 0.0
                    for n in c.natives) else None
c = wait_until(lambda: failed(s.collect_once()))
out["gpu1"] = sorted(x.field_id for x in c.samples if x.entity.gpu == 1)
out["gpu0"] = sorted(x.field_id for x in c.samples if x.entity.gpu == 0)
out["marks"] = sorted([dict(n.labels)["field"], dict(n.labels)["reason"]] for n in c.natives
                      if n.name == "gpu_exporter_field_supported" and n.entity.gpu == 1)
nv.sim_session.faults.clear()
c = wait_until(lambda: (lambda c: c if {POWER} in [x.field_id for x in c.samples
                                               if x.entity.gpu == 1] else None)(s.collect_once()))
out["back"] = sorted(x.field_id for x in c.samples if x.entity.gpu == 1)
s.close()
""")
    assert out["gpu1"] == []  # the draw it had read before the limit failed is taken back
    assert out["gpu0"] == [POWER, POWER_LIMIT]
    assert out["marks"] == [["DCGM_FI_DEV_POWER_MGMT_LIMIT", "error"],
                            ["DCGM_FI_DEV_POWER_USAGE", "error"]]
    assert out["back"] == [POWER, POWER_LIMIT]
