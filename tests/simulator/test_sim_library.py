"""The simulated library through the real pynvml: success and error paths of each call."""

from __future__ import annotations

from typing import Any

import pytest

# (an NVML return code per name, as pynvml numbers them)
SUCCESS, UNINIT, INVALID, NOT_SUPPORTED, NOT_FOUND, INSUFFICIENT = 0, 1, 2, 3, 6, 7
VERSION_MISMATCH = 25


@pytest.fixture(scope="module")
def h100(sim_module: Any) -> dict[str, Any]:
    """One run of many checks against h100x8 with a frozen clock."""
    return sim_module("h100x8", seed=7, frozen_time=1000.0).run('''
        r = {}
        r["uninit"] = code(N.nvmlDeviceGetCount)
        N.nvmlInit()
        r["driver"] = N.nvmlSystemGetDriverVersion()
        r["nvml"] = N.nvmlSystemGetNVMLVersion()
        r["cuda"] = N.nvmlSystemGetCudaDriverVersion()
        r["cuda_v2"] = N.nvmlSystemGetCudaDriverVersion_v2()
        r["count"] = N.nvmlDeviceGetCount()
        h = N.nvmlDeviceGetHandleByIndex(0)
        r["bad_index"] = code(N.nvmlDeviceGetHandleByIndex, 8)
        r["name"] = N.nvmlDeviceGetName(h)
        r["uuid"] = N.nvmlDeviceGetUUID(h)
        r["serial"] = N.nvmlDeviceGetSerial(h)
        r["minor"] = N.nvmlDeviceGetMinorNumber(h)
        r["index"] = N.nvmlDeviceGetIndex(N.nvmlDeviceGetHandleByIndex(5))
        r["brand"] = N.nvmlDeviceGetBrand(h)
        r["arch"] = N.nvmlDeviceGetArchitecture(h)
        r["cc"] = list(N.nvmlDeviceGetCudaComputeCapability(h))
        r["vbios"] = N.nvmlDeviceGetVbiosVersion(h)
        r["inforom_img"] = N.nvmlDeviceGetInforomImageVersion(h)
        r["inforom_ecc"] = N.nvmlDeviceGetInforomVersion(h, N.NVML_INFOROM_ECC)
        r["inforom_pwr"] = code(N.nvmlDeviceGetInforomVersion, h, N.NVML_INFOROM_POWER)
        pci = N.nvmlDeviceGetPciInfo(h)
        r["pci"] = [pci.busId, pci.pciDeviceId, pci.domain, pci.bus]
        r["by_uuid"] = N.nvmlDeviceGetIndex(N.nvmlDeviceGetHandleByUUID(r["uuid"]))
        r["by_bus"] = N.nvmlDeviceGetIndex(N.nvmlDeviceGetHandleByPciBusId(pci.busId))
        r["by_uuid_missing"] = code(N.nvmlDeviceGetHandleByUUID, "GPU-nope")
        r["name_small_buffer"] = lib_small = None
        buf = ctypes.create_string_buffer(4)
        r["name_small_buffer"] = N.nvmlLib.nvmlDeviceGetName(h, buf, ctypes.c_uint(4))
        r["invalid_handle"] = N.nvmlLib.nvmlDeviceGetName(ctypes.c_void_p(12345), buf,
                                                          ctypes.c_uint(4))
        r["clocks"] = [N.nvmlDeviceGetClockInfo(h, t) for t in range(4)]
        r["max_clocks"] = [N.nvmlDeviceGetMaxClockInfo(h, t) for t in range(4)]
        r["bad_clock"] = code(N.nvmlDeviceGetClockInfo, h, 9)
        r["temp"] = N.nvmlDeviceGetTemperature(h, 0)
        tv = N.nvmlDeviceGetTemperatureV(h, 0)
        r["temp_v"] = tv.temperature if hasattr(tv, "temperature") else tv
        r["thresholds"] = [N.nvmlDeviceGetTemperatureThreshold(h, t) for t in range(4)]
        r["power"] = N.nvmlDeviceGetPowerUsage(h)
        r["energy"] = N.nvmlDeviceGetTotalEnergyConsumption(h)
        r["limits"] = [N.nvmlDeviceGetPowerManagementLimit(h), N.nvmlDeviceGetEnforcedPowerLimit(h),
                       N.nvmlDeviceGetPowerManagementDefaultLimit(h),
                       list(N.nvmlDeviceGetPowerManagementLimitConstraints(h))]
        u = N.nvmlDeviceGetUtilizationRates(h)
        r["util"] = [u.gpu, u.memory]
        r["enc"] = code(N.nvmlDeviceGetEncoderUtilization, h)
        r["dec"] = list(N.nvmlDeviceGetDecoderUtilization(h))
        m1 = N.nvmlDeviceGetMemoryInfo(h)
        m2 = N.nvmlDeviceGetMemoryInfo(h, version=N.nvmlMemory_v2)
        r["mem1"] = [m1.total, m1.free, m1.used]
        r["mem2"] = [m2.total, m2.reserved, m2.free, m2.used]
        b = N.nvmlDeviceGetBAR1MemoryInfo(h)
        r["bar1"] = [b.bar1Total, b.bar1Free, b.bar1Used]
        r["pcie"] = [N.nvmlDeviceGetCurrPcieLinkGeneration(h), N.nvmlDeviceGetCurrPcieLinkWidth(h),
                     N.nvmlDeviceGetMaxPcieLinkGeneration(h), N.nvmlDeviceGetMaxPcieLinkWidth(h),
                     N.nvmlDeviceGetPcieReplayCounter(h),
                     N.nvmlDeviceGetPcieThroughput(h, 0), N.nvmlDeviceGetPcieThroughput(h, 1)]
        r["ecc_mode"] = list(N.nvmlDeviceGetEccMode(h))
        r["ecc"] = [N.nvmlDeviceGetTotalEccErrors(h, e, c) for e in (0, 1) for c in (0, 1)]
        r["remapped"] = list(N.nvmlDeviceGetRemappedRows(h))
        r["retired"] = code(N.nvmlDeviceGetRetiredPages, h, 0)
        r["reasons"] = N.nvmlDeviceGetCurrentClocksEventReasons(h)
        r["reasons_throttle"] = N.nvmlDeviceGetCurrentClocksThrottleReasons(h)
        r["supported_reasons"] = N.nvmlDeviceGetSupportedClocksEventReasons(h)
        v = N.nvmlDeviceGetViolationStatus(h, N.NVML_PERF_POLICY_POWER)
        r["violation"] = [v.referenceTime, v.violationTime]
        r["nvlink"] = [N.nvmlDeviceGetNvLinkState(h, 0), N.nvmlDeviceGetNvLinkVersion(h, 17),
                       code(N.nvmlDeviceGetNvLinkState, h, 18)]
        r["fan"] = code(N.nvmlDeviceGetFanSpeed, h)
        r["vgpu_license"] = code(N.nvmlDeviceGetGridLicensableFeatures, h)
        r["virt"] = N.nvmlDeviceGetVirtualizationMode(h)
        r["stub"] = code(N.nvmlDeviceGetVgpuCapabilities, h, 0)
        r["stub_invalid_handle"] = N.nvmlLib.nvmlDeviceGetVgpuCapabilities(
            ctypes.c_void_p(8), 0, None)
        r["error_string"] = str(N.NVMLError(25))
        r["p2p"] = N.nvmlDeviceGetP2PStatus(h, N.nvmlDeviceGetHandleByIndex(1),
                                            N.NVML_P2P_CAPS_INDEX_NVLINK)
        N.nvmlShutdown()
        r["after_shutdown"] = code(N.nvmlDeviceGetCount)
        out(r)
    ''')


def test_uninitialised_and_shutdown(h100: dict[str, Any]) -> None:
    assert h100["uninit"] == UNINIT
    assert h100["after_shutdown"] == UNINIT


def test_system_versions(h100: dict[str, Any]) -> None:
    assert h100["driver"] == "550.54.15"
    assert h100["nvml"] == "12.550.54.15"
    assert h100["cuda"] == h100["cuda_v2"] == 12040


def test_identity(h100: dict[str, Any]) -> None:
    assert h100["count"] == 8
    assert h100["bad_index"] == INVALID
    assert h100["name"] == "NVIDIA H100 80GB HBM3"
    assert h100["uuid"].startswith("GPU-")
    assert len(h100["uuid"]) == 40
    assert len(h100["serial"]) == 13
    assert h100["serial"].isdigit()
    assert h100["minor"] == 0
    assert h100["index"] == 5
    assert h100["brand"] == 14  # NVML_BRAND_NVIDIA
    assert h100["arch"] == 9  # Hopper
    assert h100["cc"] == [9, 0]
    assert h100["vbios"] == "96.00.89.00.01"
    assert h100["inforom_img"] == "G520.0200.00.05"
    assert h100["inforom_ecc"] == "7.16"
    assert h100["inforom_pwr"] == NOT_SUPPORTED
    assert h100["pci"] == ["00000000:18:00.0", 0x233010DE, 0, 0x18]
    assert h100["by_uuid"] == 0
    assert h100["by_bus"] == 0
    assert h100["by_uuid_missing"] == NOT_FOUND
    assert h100["name_small_buffer"] == INSUFFICIENT
    assert h100["invalid_handle"] == INVALID


def test_clocks_and_thermals(h100: dict[str, Any]) -> None:
    graphics, sm, mem, _video = h100["clocks"]
    assert graphics == sm
    assert 345 <= sm <= 1980
    assert mem == 2619
    assert h100["max_clocks"][:3] == [1980, 1980, 2619]
    assert h100["bad_clock"] == INVALID
    assert 29 <= h100["temp"] <= 66
    assert h100["temp_v"] == h100["temp"]
    assert h100["thresholds"] == [92, 90, 95, 87]


def test_power_and_utilisation(h100: dict[str, Any]) -> None:
    assert 72_000 <= h100["power"] <= 685_000
    assert h100["energy"] > 0
    assert h100["limits"] == [700_000, 700_000, 700_000, [200_000, 700_000]]
    gpu, mem = h100["util"]
    assert 0 <= gpu <= 100
    assert 0 <= mem <= 100
    assert h100["enc"] == NOT_SUPPORTED  # H100 has no NVENC
    assert h100["dec"][1] > 0


def test_memory_v1_and_v2_are_consistent(h100: dict[str, Any]) -> None:
    total, free, used = h100["mem1"]
    total2, reserved, free2, used2 = h100["mem2"]
    assert total == total2 == 81559 * 2**20
    assert used2 + free2 + reserved == total2
    assert used == used2 + reserved
    assert free == free2
    assert reserved == 579 * 2**20
    bar_total, bar_free, bar_used = h100["bar1"]
    assert bar_total == 131072 * 2**20
    assert bar_free + bar_used == bar_total


def test_pcie_ecc_and_reliability(h100: dict[str, Any]) -> None:
    gen, width, max_gen, max_width, replay, tx, rx = h100["pcie"]
    assert (gen, width, max_gen, max_width, replay) == (5, 16, 5, 16, 0)
    assert tx > 0
    assert rx > 0
    assert h100["ecc_mode"] == [1, 1]
    assert h100["ecc"] == [0, 0, 0, 0]
    assert h100["remapped"] == [0, 0, 0, 0]
    assert h100["retired"] == NOT_SUPPORTED  # HBM3: row remapping instead of page retirement


def test_clock_reasons_violations_nvlink(h100: dict[str, Any]) -> None:
    assert h100["reasons"] == h100["reasons_throttle"]
    assert h100["reasons"] & ~h100["supported_reasons"] == 0
    ref, viol = h100["violation"]
    assert ref > 0
    assert viol > 0
    assert h100["nvlink"] == [1, 6, INVALID]  # NVML_NVLINK_VERSION_4_0 is 6
    assert h100["p2p"] == 0  # NVML_P2P_STATUS_OK


def test_unsimulated_and_vgpu_calls(h100: dict[str, Any]) -> None:
    assert h100["fan"] == NOT_SUPPORTED
    assert h100["vgpu_license"] == NOT_SUPPORTED
    assert h100["virt"] == 0
    assert h100["stub"] == NOT_SUPPORTED
    assert h100["stub_invalid_handle"] == INVALID
    assert "version mismatch" in h100["error_string"].lower()


def test_versioned_structs_reject_a_wrong_version(sim: Any) -> None:
    result = sim("h100x8").run('''
        N.nvmlInit()
        h = N.nvmlDeviceGetHandleByIndex(0)
        lib = N.nvmlLib
        r = {}
        m = N.c_nvmlMemory_v2_t()
        m.version = N.nvmlMemory_v2
        r["mem_ok"] = lib.nvmlDeviceGetMemoryInfo_v2(h, ctypes.byref(m))
        m.version = N.nvmlMemory_v2 + 1
        r["mem_bad"] = lib.nvmlDeviceGetMemoryInfo_v2(h, ctypes.byref(m))
        t = N.c_nvmlTemperature_v1_t()
        t.version = 0x0200000C
        r["temp_bad"] = lib.nvmlDeviceGetTemperatureV(h, ctypes.byref(t))
        p = N.c_nvmlProcessDetailList_v1_t()
        p.version = 1
        r["detail_bad"] = lib.nvmlDeviceGetRunningProcessDetailList(h, ctypes.byref(p))
        s = N.c_nvmlGpmSupport_t()
        s.version = 2
        r["gpm_bad"] = lib.nvmlGpmQueryDeviceSupport(h, ctypes.byref(s))
        u = N.c_nvmlProcessesUtilizationInfo_v1_t()
        u.version = 7
        r["putil_bad"] = lib.nvmlDeviceGetProcessesUtilizationInfo(h, ctypes.byref(u))
        e = N.nvmlPciInfoExt_v1_t()
        e.version = 3
        r["pciext_bad"] = lib.nvmlDeviceGetPciInfoExt(h, ctypes.byref(e))
        e.version = N.nvmlPciInfoExt_v1
        r["pciext_ok"] = lib.nvmlDeviceGetPciInfoExt(h, ctypes.byref(e))
        out(r)
    ''')
    assert result["mem_ok"] == SUCCESS
    assert result["pciext_ok"] == SUCCESS
    for key in ("mem_bad", "temp_bad", "detail_bad", "gpm_bad", "putil_bad", "pciext_bad"):
        assert result[key] == VERSION_MISMATCH, key


def test_field_values(sim: Any) -> None:
    fields = sim("h100x8", frozen_time=500.0).run('''
        N.nvmlInit()
        h = N.nvmlDeviceGetHandleByIndex(0)
        ids = [1, 3, 4, 5, 6, 29, 38, 45, 52, 59, 160, 138, (138, 0), (139, 17), (138, 18),
               74, 75, 78, 81, 82, 83, 91, 94, 95, 142, 143, 144, 145, 185, 186, 190, 193, 194,
               195, 196, 197, 198, 269, 270, 271, 999]
        vals = N.nvmlDeviceGetFieldValues(h, ids)
        res = []
        for v in vals:
            value = v.value.dVal if v.valueType == 0 else (
                v.value.uiVal if v.valueType == 1 else v.value.ullVal)
            res.append([v.fieldId, v.scopeId, v.nvmlReturn, v.valueType, v.timestamp, value])
        out(res)
    ''')
    by = {(f[0], f[1]): f for f in fields}
    stamps = {f[4] for f in fields}
    assert len(stamps) == 1
    assert next(iter(stamps)) == int((1_700_000_000 + 500) * 1e6)
    ok = {k: f for k, f in by.items() if f[2] == SUCCESS}
    assert by[(999, 0)][2] == NOT_SUPPORTED
    assert by[(29, 0)][2] == NOT_SUPPORTED  # no page retirement on H100
    assert by[(138, 18)][2] == INVALID  # link 18 does not exist
    assert ok[(1, 0)][5] == 1
    assert ok[(1, 0)][3] == 1
    assert ok[(83, 0)][3] == 3  # energy as unsigned long long
    assert ok[(91, 0)][5] == 18
    assert ok[(190, 0)][5] == 700_000
    assert [ok[(i, 0)][5] for i in (193, 194, 195, 196)] == [92, 90, 95, 87]
    all_links = ok[(138, 0xFFFFFFFF)][5] if (138, 0xFFFFFFFF) in ok else ok[(138, 0)][5]
    assert all_links > 0
    assert ok[(139, 17)][5] > 0
    assert 30 <= ok[(82, 0)][5] <= 80  # HBM temperature
    for fid in (3, 4, 5, 6, 38, 45, 52, 59, 160, 74, 75, 78, 81, 94, 95, 142, 143, 144, 145,
                185, 186, 197, 198, 269, 270, 271):
        assert (fid, 0) in ok, fid


def test_field_value_scope_all_links_is_the_sum(sim: Any) -> None:
    res = sim("h100x8", frozen_time=900.0).run('''
        N.nvmlInit()
        h = N.nvmlDeviceGetHandleByIndex(1)
        links = [(138, l) for l in range(18)]
        vals = N.nvmlDeviceGetFieldValues(h, [(138, 0xFFFFFFFF)] + links)
        out([v.value.ullVal for v in vals])
    ''')
    assert res[0] == sum(res[1:])


def test_process_two_call_protocols(sim: Any) -> None:
    res = sim("h100x8", frozen_time=100.0).run('''
        N.nvmlInit()
        h = N.nvmlDeviceGetHandleByIndex(0)
        idle = N.nvmlDeviceGetHandleByIndex(7)
        lib = N.nvmlLib
        r = {}
        c = ctypes.c_uint(0)
        r["size_query"] = lib.nvmlDeviceGetComputeRunningProcesses_v3(h, ctypes.byref(c), None)
        r["size"] = c.value
        buf = (N.c_nvmlProcessInfo_v3_t * c.value)()
        small = ctypes.c_uint(max(c.value - 1, 0))
        r["too_small"] = lib.nvmlDeviceGetComputeRunningProcesses_v3(h, ctypes.byref(small), buf)
        c2 = ctypes.c_uint(c.value)
        r["second"] = lib.nvmlDeviceGetComputeRunningProcesses_v3(h, ctypes.byref(c2), buf)
        c0 = ctypes.c_uint(0)
        rc = lib.nvmlDeviceGetComputeRunningProcesses_v3(idle, ctypes.byref(c0), None)
        r["idle_query"] = [rc, c0.value]
        procs = N.nvmlDeviceGetComputeRunningProcesses(h)
        r["procs"] = [[p.pid, p.usedGpuMemory, p.gpuInstanceId, p.computeInstanceId] for p in procs]
        r["v2"] = [[p.pid, p.usedGpuMemory] for p in N.nvmlDeviceGetComputeRunningProcesses_v2(h)]
        r["graphics"] = N.nvmlDeviceGetGraphicsRunningProcesses(h)
        r["mps"] = N.nvmlDeviceGetMPSComputeRunningProcesses(h)
        r["idle"] = N.nvmlDeviceGetComputeRunningProcesses(idle)
        m = N.nvmlDeviceGetMemoryInfo(h, version=N.nvmlMemory_v2)
        r["used"] = m.used
        detail = N.nvmlDeviceGetRunningProcessDetailList(h, N.nvmlProcessDetailList_v1, 0)
        r["detail"] = [p.pid for p in detail]
        # process utilisation: size query, then lastSeen semantics
        cnt = ctypes.c_uint(0)
        r["putil_query"] = lib.nvmlDeviceGetProcessUtilization(h, None, ctypes.byref(cnt),
                                                               ctypes.c_ulonglong(0))
        samples = N.nvmlDeviceGetProcessUtilization(h, 0)
        r["putil"] = [[s.pid, s.timeStamp, s.smUtil] for s in samples]
        newest = max(s.timeStamp for s in samples)
        r["putil_newer"] = code(N.nvmlDeviceGetProcessUtilization, h, newest)
        r["putil_idle"] = code(N.nvmlDeviceGetProcessUtilization, idle, 0)
        # retired pages: size query then a second call, both SUCCESS on a T4-less profile
        out(r)
    ''')
    assert res["size_query"] == INSUFFICIENT
    assert res["size"] >= 1
    assert res["too_small"] == INSUFFICIENT
    assert res["second"] == SUCCESS
    assert res["idle_query"] == [SUCCESS, 0]
    assert len(res["procs"]) == res["size"]
    assert all(p[2] == 0xFFFFFFFF and p[3] == 0xFFFFFFFF for p in res["procs"])
    assert [p[:2] for p in res["procs"]] == res["v2"]
    assert res["graphics"] == []
    assert res["mps"] == []
    assert res["idle"] == []
    # processes account for the used memory (plus a per-process context overhead)
    assert res["used"] >= sum(p[1] for p in res["procs"])
    assert res["detail"] == [p[0] for p in res["procs"]]
    assert res["putil_query"] == INSUFFICIENT
    assert {p[0] for p in res["putil"]} <= {p[0] for p in res["procs"]}
    assert res["putil_newer"] == NOT_FOUND
    assert res["putil_idle"] == NOT_FOUND


def test_retired_pages_two_call_on_t4(sim: Any) -> None:
    res = sim("t4x4").run('''
        N.nvmlInit()
        lib = N.nvmlLib
        h2 = N.nvmlDeviceGetHandleByIndex(2)
        h0 = N.nvmlDeviceGetHandleByIndex(0)
        c = ctypes.c_uint(0)
        r = {"query": lib.nvmlDeviceGetRetiredPages(h2, 0, ctypes.byref(c), None), "n": c.value}
        r["sbe"] = N.nvmlDeviceGetRetiredPages(h2, 0)
        r["dbe"] = N.nvmlDeviceGetRetiredPages(h2, 1)
        r["v2"] = [list(x) for x in N.nvmlDeviceGetRetiredPages_v2(h2, 0)]
        r["none"] = N.nvmlDeviceGetRetiredPages(h0, 0)
        r["pending"] = N.nvmlDeviceGetRetiredPagesPendingStatus(h2)
        r["remap"] = code(N.nvmlDeviceGetRemappedRows, h0)
        r["memtemp"] = N.nvmlDeviceGetFieldValues(h0, [82])[0].nvmlReturn
        r["ecc_agg"] = N.nvmlDeviceGetTotalEccErrors(h2, 0, 1)
        r["fan"] = code(N.nvmlDeviceGetFanSpeed, h0)
        r["name"] = N.nvmlDeviceGetName(h0)
        r["brand"] = N.nvmlDeviceGetBrand(h0)
        r["mig"] = code(N.nvmlDeviceGetMigMode, h0)
        r["gpm"] = N.nvmlGpmQueryDeviceSupport(h0).isSupportedDevice
        r["nvlink"] = code(N.nvmlDeviceGetNvLinkState, h0, 0)
        r["pavg"] = N.nvmlDeviceGetFieldValues(h0, [185])[0].nvmlReturn
        out(r)
    ''')
    assert res["query"] == INSUFFICIENT
    assert res["n"] == 2
    assert len(res["sbe"]) == 2
    assert res["dbe"] == []
    assert res["none"] == []
    assert len(res["v2"][0]) == 2
    assert len(res["v2"][1]) == 2
    assert res["pending"] == 0
    assert res["remap"] == NOT_SUPPORTED
    assert res["memtemp"] == NOT_SUPPORTED
    assert res["ecc_agg"] == 41
    assert res["fan"] == NOT_SUPPORTED
    assert res["name"] == "Tesla T4"
    assert res["brand"] == 14  # NVML_BRAND_NVIDIA, as drivers since R5xx report a T4
    assert res["mig"] == NOT_SUPPORTED
    assert res["gpm"] == 0
    assert res["nvlink"] == NOT_SUPPORTED
    assert res["pavg"] == NOT_SUPPORTED


def test_consumer_card_rtx4090(sim: Any) -> None:
    res = sim("rtx4090").run('''
        N.nvmlInit()
        h = N.nvmlDeviceGetHandleByIndex(0)
        r = {"count": N.nvmlDeviceGetCount(), "brand": N.nvmlDeviceGetBrand(h)}
        r["ecc"] = code(N.nvmlDeviceGetEccMode, h)
        r["ecc_total"] = code(N.nvmlDeviceGetTotalEccErrors, h, 0, 0)
        r["ecc_field"] = N.nvmlDeviceGetFieldValues(h, [1, 3, 82, 190])
        r["ecc_field"] = [f.nvmlReturn for f in r["ecc_field"]]
        r["serial"] = code(N.nvmlDeviceGetSerial, h)
        r["gpm"] = N.nvmlGpmQueryDeviceSupport(h).isSupportedDevice
        r["mig"] = code(N.nvmlDeviceGetMigMode, h)
        r["nvlink"] = code(N.nvmlDeviceGetNvLinkState, h, 0)
        r["fans"] = [N.nvmlDeviceGetNumFans(h), N.nvmlDeviceGetFanSpeed(h),
                     N.nvmlDeviceGetFanSpeed_v2(h, 1)]
        r["display"] = [N.nvmlDeviceGetDisplayMode(h), N.nvmlDeviceGetDisplayActive(h)]
        r["graphics"] = [p.pid for p in N.nvmlDeviceGetGraphicsRunningProcesses(h)]
        r["remap"] = list(N.nvmlDeviceGetRemappedRows(h))
        out(r)
    ''')
    assert res["count"] == 1
    assert res["brand"] == 5
    assert res["ecc"] == res["ecc_total"] == NOT_SUPPORTED
    assert res["ecc_field"] == [NOT_SUPPORTED, NOT_SUPPORTED, NOT_SUPPORTED, NOT_SUPPORTED]
    assert res["serial"] == NOT_SUPPORTED
    assert res["gpm"] == 0
    assert res["mig"] == NOT_SUPPORTED
    assert res["nvlink"] == NOT_SUPPORTED
    assert res["fans"][0] == 2
    assert 30 <= res["fans"][1] <= 68
    assert res["display"] == [1, 1]
    assert len(res["graphics"]) == 1
    assert res["remap"] == [0, 0, 0, 0]


def test_l4_profile(sim: Any) -> None:
    res = sim("l4x2").run('''
        N.nvmlInit()
        h = N.nvmlDeviceGetHandleByIndex(1)
        r = {"name": N.nvmlDeviceGetName(h), "cc": list(N.nvmlDeviceGetCudaComputeCapability(h))}
        r["mem"] = N.nvmlDeviceGetMemoryInfo(h).total // 2**20
        r["remap"] = list(N.nvmlDeviceGetRemappedRows(h))
        r["memtemp"] = N.nvmlDeviceGetFieldValues(h, [82])[0].nvmlReturn
        r["fan"] = code(N.nvmlDeviceGetFanSpeed, h)
        r["limit"] = N.nvmlDeviceGetPowerManagementLimit(h)
        out(r)
    ''')
    assert res == {"name": "NVIDIA L4", "cc": [8, 9], "mem": 23034, "remap": [0, 0, 0, 0],
                   "memtemp": NOT_SUPPORTED, "fan": NOT_SUPPORTED, "limit": 72_000}


def test_mps_processes(sim: Any, tmp_path: Any) -> None:
    profile = tmp_path / "mps.yaml"
    profile.write_text("base: l4x2\ndevice_count: 1\ndevice_defaults:\n"
                       "  workload: {pattern: steady, processes: 3, mps: true}\n")
    res = sim(profile, frozen_time=30.0).run('''
        N.nvmlInit()
        h = N.nvmlDeviceGetHandleByIndex(0)
        compute = [[p.pid, p.usedGpuMemory] for p in N.nvmlDeviceGetComputeRunningProcesses(h)]
        mps = [[p.pid, p.usedGpuMemory] for p in N.nvmlDeviceGetMPSComputeRunningProcesses(h)]
        detail = [p.pid for p in N.nvmlDeviceGetRunningProcessDetailList(
            h, N.nvmlProcessDetailList_v1, 2)]
        out([compute, mps, detail])
    ''')
    compute, mps, detail = res
    assert len(compute) == 1  # the MPS server holds its clients' memory
    assert mps
    assert compute[0][1] == sum(m[1] for m in mps)
    assert compute[0][0] not in [m[0] for m in mps]
    assert detail == [m[0] for m in mps]
