"""MIG on the a100-mig profile: enumeration, instance handles and per-instance data."""

from __future__ import annotations

from typing import Any

import pytest

NOT_SUPPORTED, NOT_FOUND, INVALID, VERSION_MISMATCH = 3, 6, 2, 25


@pytest.fixture(scope="module")
def mig(sim_module: Any) -> dict[str, Any]:
    return sim_module("a100-mig", frozen_time=50.0).run('''
        N.nvmlInit()
        r = {"gpus": []}
        for i in range(N.nvmlDeviceGetCount()):
            h = N.nvmlDeviceGetHandleByIndex(i)
            cur, pend = N.nvmlDeviceGetMigMode(h)
            g = {"mode": [cur, pend], "max": N.nvmlDeviceGetMaxMigDeviceCount(h),
                 "util": code(N.nvmlDeviceGetUtilizationRates, h), "migs": [],
                 "parent_procs": [[p.pid, p.gpuInstanceId]
                                  for p in N.nvmlDeviceGetComputeRunningProcesses(h)]}
            for j in range(g["max"]):
                try:
                    m = N.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
                except N.NVMLError as e:
                    g["stop"] = [j, e.value]
                    break
                mem = N.nvmlDeviceGetMemoryInfo(m)
                mem2 = N.nvmlDeviceGetMemoryInfo(m, version=N.nvmlMemory_v2)
                a = N.nvmlDeviceGetAttributes(m)
                parent = N.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(m)
                g["migs"].append({
                    "name": N.nvmlDeviceGetName(m), "uuid": N.nvmlDeviceGetUUID(m),
                    "gi": N.nvmlDeviceGetGpuInstanceId(m),
                    "ci": N.nvmlDeviceGetComputeInstanceId(m),
                    "is_mig": N.nvmlDeviceIsMigDeviceHandle(m).value,
                    "parent": N.nvmlDeviceGetIndex(parent),
                    "mem": [mem.total, mem.used, mem.free],
                    "mem2": [mem2.total, mem2.reserved, mem2.used, mem2.free],
                    "attrs": [a.multiprocessorCount, a.gpuInstanceSliceCount, a.memorySizeMB],
                    "util": code(N.nvmlDeviceGetUtilizationRates, m),
                    "putil": code(N.nvmlDeviceGetProcessUtilization, m, 0),
                    "temp": code(N.nvmlDeviceGetTemperature, m, 0),
                    "procs": [[p.pid, p.usedGpuMemory, p.gpuInstanceId, p.computeInstanceId]
                              for p in N.nvmlDeviceGetComputeRunningProcesses(m)],
                    "by_uuid": N.nvmlDeviceGetGpuInstanceId(
                        N.nvmlDeviceGetHandleByUUID(N.nvmlDeviceGetUUID(m))),
                })
            g["whole_is_mig"] = N.nvmlDeviceIsMigDeviceHandle(h).value
            g["gi_of_whole"] = code(N.nvmlDeviceGetGpuInstanceId, h)
            r["gpus"].append(g)
        h1 = N.nvmlDeviceGetHandleByIndex(1)
        info = N.nvmlDeviceGetGpuInstanceProfileInfo(h1, N.NVML_GPU_INSTANCE_PROFILE_3_SLICE,
                                                     version=2)
        name = info.name.decode() if isinstance(info.name, bytes) else info.name
        r["gip_v2"] = [info.id, info.sliceCount, info.instanceCount, info.multiprocessorCount,
                       info.memorySizeMB, name]
        class V3(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint), ("id", ctypes.c_uint),
                        ("sliceCount", ctypes.c_uint),
                        ("instanceCount", ctypes.c_uint), ("multiprocessorCount", ctypes.c_uint),
                        ("copyEngineCount", ctypes.c_uint), ("decoderCount", ctypes.c_uint),
                        ("encoderCount", ctypes.c_uint), ("jpegCount", ctypes.c_uint),
                        ("ofaCount", ctypes.c_uint), ("memorySizeMB", ctypes.c_ulonglong),
                        ("name", ctypes.c_char * 96), ("capabilities", ctypes.c_uint)]
        info3 = V3()
        info3.version = 0x03000098
        rc = N.nvmlLib.nvmlDeviceGetGpuInstanceProfileInfoV(
            h1, N.NVML_GPU_INSTANCE_PROFILE_1_SLICE, ctypes.byref(info3))
        r["gip_v3"] = [rc, ctypes.sizeof(V3), info3.id, info3.memorySizeMB, info3.name.decode()]
        info1 = N.nvmlDeviceGetGpuInstanceProfileInfo(h1, N.NVML_GPU_INSTANCE_PROFILE_7_SLICE,
                                                      version=1)
        r["gip_v1"] = [info1.id, info1.sliceCount]
        bad = N.c_nvmlGpuInstanceProfileInfo_v2_t()
        bad.version = 0x01000098
        r["gip_bad"] = N.nvmlLib.nvmlDeviceGetGpuInstanceProfileInfoV(h1, 2, ctypes.byref(bad))
        gis = (N.c_nvmlGpuInstance_t * 7)()
        cnt = ctypes.c_uint(0)
        gip3 = N.nvmlDeviceGetGpuInstanceProfileInfo(h1, N.NVML_GPU_INSTANCE_PROFILE_3_SLICE)
        r["gis_rc"] = N.nvmlLib.nvmlDeviceGetGpuInstances(h1, gip3.id, gis, ctypes.byref(cnt))
        r["gis_n"] = cnt.value
        gi = N.nvmlDeviceGetGpuInstanceById(h1, r["gpus"][1]["migs"][0]["gi"])
        gin = N.nvmlGpuInstanceGetInfo(gi)
        r["gi_info"] = [gin.id, gin.profileId, gin.placement.start, gin.placement.size]
        cis = (N.c_nvmlComputeInstance_t * 1)()
        cnt = ctypes.c_uint(0)
        r["cis_rc"] = N.nvmlLib.nvmlGpuInstanceGetComputeInstances(
            gi, N.NVML_COMPUTE_INSTANCE_PROFILE_3_SLICE, cis, ctypes.byref(cnt))
        ci = N.nvmlComputeInstanceGetInfo(cis[0])
        r["ci_info"] = [cnt.value, ci.id, ci.profileId, ci.placement.size]
        r["gi_missing"] = code(N.nvmlDeviceGetGpuInstanceById, h1, 42)
        out(r)
    ''')


def test_mig_mode_per_gpu(mig: dict[str, Any]) -> None:
    modes = [g["mode"] for g in mig["gpus"]]
    assert modes == [[1, 1]] * 3 + [[0, 0]] * 5
    assert all(g["max"] == 7 for g in mig["gpus"])


def test_dense_mig_indices_and_names(mig: dict[str, Any]) -> None:
    layouts = [[m["name"].rsplit(" ", 1)[-1] for m in g["migs"]] for g in mig["gpus"][:3]]
    assert layouts == [["1g.10gb"] * 7, ["3g.40gb", "2g.20gb", "1g.10gb"],
                       ["4g.40gb", "2g.20gb", "1g.10gb"]]
    assert mig["gpus"][1]["stop"] == [3, NOT_FOUND]
    for g in mig["gpus"][3:]:
        assert g["migs"] == []
        assert g["stop"] == [0, NOT_FOUND]
    names = [m["name"] for g in mig["gpus"] for m in g["migs"]]
    assert all(n.startswith("NVIDIA A100-SXM4-80GB MIG ") for n in names)


def test_instance_ids_and_handles(mig: dict[str, Any]) -> None:
    g0 = mig["gpus"][0]["migs"]
    assert [m["gi"] for m in g0] == list(range(7, 14))  # GI ids are not the MIG indices
    assert all(m["ci"] == 0 and m["is_mig"] == 1 for m in g0)
    assert [m["gi"] for m in mig["gpus"][1]["migs"]] == [1, 5, 13]
    uuids = [m["uuid"] for g in mig["gpus"] for m in g["migs"]]
    assert len(set(uuids)) == len(uuids) == 13
    assert all(u.startswith("MIG-") and len(u) == 40 for u in uuids)
    for i, g in enumerate(mig["gpus"][:3]):
        assert all(m["parent"] == i for m in g["migs"])
        assert all(m["by_uuid"] == m["gi"] for m in g["migs"])
    assert mig["gpus"][0]["whole_is_mig"] == 0
    assert mig["gpus"][0]["gi_of_whole"] == NOT_SUPPORTED


def test_memory_and_attributes_on_mig_handles(mig: dict[str, Any]) -> None:
    m3g = mig["gpus"][1]["migs"][0]
    assert m3g["mem"][0] == 40192 * 2**20
    total, reserved, used, free = m3g["mem2"]
    assert used + free + reserved == total
    assert m3g["attrs"] == [42, 3, 40192]
    assert mig["gpus"][0]["migs"][0]["attrs"] == [14, 1, 9728]


def test_utilization_not_supported_on_mig(mig: dict[str, Any]) -> None:
    for g in mig["gpus"][:3]:
        assert g["util"] == NOT_SUPPORTED  # parent in MIG mode
        for m in g["migs"]:
            assert m["util"] == NOT_SUPPORTED
            assert m["putil"] == NOT_SUPPORTED
            assert m["temp"] == NOT_SUPPORTED
    assert mig["gpus"][3]["util"] == 0


def test_processes_per_mig_device(mig: dict[str, Any]) -> None:
    for g in mig["gpus"][:3]:
        union = []
        for m in g["migs"]:
            assert m["procs"], "every MIG device runs a job"
            assert all(p[2] == m["gi"] and p[3] == m["ci"] for p in m["procs"])
            union += [[p[0], p[2]] for p in m["procs"]]
        assert g["parent_procs"] == union


def test_instance_profiles_and_instances(mig: dict[str, Any]) -> None:
    assert mig["gip_v2"] == [9, 3, 2, 42, 40192, "MIG 3g.40gb"]
    assert mig["gip_v3"] == [0, 0x98, 19, 9728, "MIG 1g.10gb"]
    assert mig["gip_v1"] == [0, 7]
    assert mig["gip_bad"] == VERSION_MISMATCH
    assert (mig["gis_rc"], mig["gis_n"]) == (0, 1)
    assert mig["gi_info"] == [1, 9, 0, 4]  # profile id 9 = 3g.40gb (nvidia-smi mig -lgi)
    assert mig["cis_rc"] == 0
    assert mig["ci_info"] == [1, 0, 2, 3]
    assert mig["gi_missing"] == NOT_FOUND
