"""Health verdicts (pure rules), P2P status and vGPU licence (simulator)."""

from __future__ import annotations

import pytest
from simproc import run_snippet

from gpu_exporter.collectors.health import FAIL, OK, PASS, WARN, WATCHES, HealthInputs, assess
from gpu_exporter.collectors.p2p import link_status


def test_healthy_gpu_passes_every_watch() -> None:
    verdict = assess(HealthInputs(dbe_volatile=0, retired_pending=0, remap_pending=0,
                                  remap_failure=0, clock_reasons=0x1, inforom_valid=True))
    assert list(verdict) == list(WATCHES)
    assert len(WATCHES) == 11
    assert set(verdict.values()) == {(PASS, OK)}


@pytest.mark.parametrize(
    ("inputs", "watch", "expected"),
    [
        (HealthInputs(dbe_volatile=2), "MEM", (FAIL, "DCGM_FR_VOLATILE_DBE_DETECTED")),
        (HealthInputs(remap_pending=1), "MEM", (WARN, "DCGM_FR_PENDING_ROW_REMAP")),
        (HealthInputs(retired_pending=3), "MEM", (WARN, "DCGM_FR_PENDING_PAGE_RETIREMENTS")),
        (HealthInputs(remap_pending=1, remap_failure=1), "MEM",
         (FAIL, "DCGM_FR_ROW_REMAP_FAILURE")),
        (HealthInputs(xids=(48,)), "MEM", (FAIL, "DCGM_FR_XID_ERROR")),
        (HealthInputs(xids=(74,)), "NVLINK", (FAIL, "DCGM_FR_NVLINK_ERROR_CRITICAL")),
        (HealthInputs(clock_reasons=0x40), "THERMAL", (WARN, "DCGM_FR_CLOCK_THROTTLE_THERMAL")),
        (HealthInputs(clock_reasons=0x80), "POWER", (WARN, "DCGM_FR_CLOCK_THROTTLE_POWER")),
        (HealthInputs(inforom_valid=False), "INFOROM", (WARN, "DCGM_FR_CORRUPT_INFOROM")),
        (HealthInputs(xids=(79,)), "ALL", (FAIL, "DCGM_FR_XID_ERROR")),
        (HealthInputs(xids=(95,)), "ALL", (FAIL, "DCGM_FR_UNCONTAINED_ERROR")),
        (HealthInputs(clock_reasons=0x20), "ALL", (WARN, "DCGM_FR_CLOCK_THROTTLE_THERMAL")),
        (HealthInputs(xids=(13, 31)), "ALL", (PASS, OK)),  # application faults are not health
    ],
)
def test_health_rules(inputs: HealthInputs, watch: str, expected: tuple[int, str]) -> None:
    assert assess(inputs)[watch] == expected


def test_link_status_names() -> None:
    assert [link_status(code) for code in range(8)] == [
        "OK", "ChipsetNotSupported", "GPUNotSupported", "TopologyNotSupported",
        "DisabledByRegKey", "NotSupported", "Unknown", "Unknown"]


def test_p2p_health_and_vgpu_on_the_simulator() -> None:
    out = run_snippet("""
nv = Nvml(simulate="h100x8")
s = Sampler(nvml=nv, fields=frozenset({9003, 9004, 526}))
c = s.collect_once()
out["p2p"] = sorted([x.entity.gpu, dict(x.labels)["peer_gpu"], dict(x.labels)["link_status"],
                     x.value] for x in c.samples if x.field_id == 9004)
out["vgpu"] = [x.value for x in c.samples if x.field_id == 526]
omit = Sampler(nvml=nv, fields=frozenset({526}), placeholder_zeros=False)
out["vgpu_omitted"] = [x.value for x in omit.collect_once().samples if x.field_id == 526]
omit.close()
out["vgpu_support"] = sorted({dict(n.labels)["reason"] for n in c.natives
                              if n.name == "gpu_exporter_field_supported"
                              and dict(n.labels)["field"] == "DCGM_FI_DEV_VGPU_LICENSE_STATUS"})
def health(c, gpu):
    return {dict(x.labels)["health_watch"]: [x.value, dict(x.labels)["health_error_code"]]
            for x in c.samples if x.field_id == 9003 and x.entity.gpu == gpu}
out["healthy"] = health(c, 1)
nv.sim_session.faults.ecc(1, dbe=1)
nv.sim_session.faults.xid(1, 79)
c = wait_until(lambda: (lambda c: c if health(c, 1)["ALL"][0] == 20 and
                        health(c, 1)["MEM"][0] == 20 else None)(s.collect_once()))
out["sick"] = health(c, 1)
out["other"] = health(c, 0)["ALL"]
s.close()
""")
    p2p = out["p2p"]
    assert len(p2p) == 8 * 7  # every ordered pair, no self pair
    assert all(row[2] == "OK" and row[3] == 0.0 for row in p2p)
    assert out["vgpu"] == [0.0] * 8  # bare metal: dcgm-exporter's 0, yet not supported
    assert out["vgpu_support"] == ["not_supported"]
    assert out["vgpu_omitted"] == []  # --omit-unsupported-zeros
    assert set(out["healthy"]) == set(WATCHES)
    assert all(value == 0 for value, _ in out["healthy"].values())
    assert out["sick"]["MEM"] == [20.0, "DCGM_FR_VOLATILE_DBE_DETECTED"]
    assert out["sick"]["ALL"][0] == 20.0
    assert out["other"] == [0.0, "DCGM_FR_OK"]


def test_p2p_without_nvlink() -> None:
    out = run_snippet("""
nv = Nvml(simulate="l4x2")
s = Sampler(nvml=nv, fields=frozenset({9004}), events=False)
c = s.collect_once()
out["p2p"] = sorted([x.entity.gpu, dict(x.labels)["peer_gpu"], dict(x.labels)["link_status"],
                     x.value] for x in c.samples if x.field_id == 9004)
s.close()
""")
    assert out["p2p"] == [[0, "1", "NotSupported", 5.0], [1, "0", "NotSupported", 5.0]]


def test_lost_peer_gpu_does_not_take_healthy_gpus_down() -> None:
    out = run_snippet("""
nv = Nvml(simulate="h100x8")
s = Sampler(nvml=nv, fields=frozenset({9004}), events=False)
nv.sim_session.faults.lose_gpu(3)
def lost():
    try:
        nv.uuid(nv.handle(3))
    except Exception as exc:
        return type(exc).__name__ == "GpuLostError"
    return False
wait_until(lost, 10)
def up(c):
    return {n.entity.gpu: n.value for n in c.natives if n.name == "gpu_exporter_gpu_up"}
def pairs(c):
    return sorted((x.entity.gpu, int(dict(x.labels)["peer_gpu"]))
                  for x in c.samples if x.field_id == 9004)
c = s.collect_once()
out["up1"] = up(c)
c = s.collect_once()
out["up2"] = up(c)
out["pairs"] = pairs(c)
nv.sim_session.faults.restore_gpu(3)
c = wait_until(lambda: (lambda c: c if up(c).get(3) == 1.0 and len(pairs(c)) == 56 else None)(
    s.collect_once()), 20)
out["restored"] = c is not None
s.close()
""")
    expected = {str(gpu): (0.0 if gpu == 3 else 1.0) for gpu in range(8)}
    assert out["up1"] == expected
    assert out["up2"] == expected
    assert len(out["pairs"]) == 7 * 6  # the pairs with GPU 3 are skipped, the rest stay
    assert all(3 not in pair for pair in out["pairs"])
    assert out["restored"]  # pairs with GPU 3 were not cached while it was lost
