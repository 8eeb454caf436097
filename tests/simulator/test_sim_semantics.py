"""NVML semantics from nvml.h and driver behaviour: NVLink enums and link indices, MIG device
indices, the calls a real A100/H100 answers (accounting, default ECC, supported clocks, row
remapper histogram, GSP firmware, module id, memory affinity, GPU instance capacity)."""

from __future__ import annotations

from typing import Any

import pytest

SCRIPT = '''
N.nvmlInit()
r = {}
h = N.nvmlDeviceGetHandleByIndex(0)
last = N.nvmlDeviceGetHandleByIndex(N.nvmlDeviceGetCount() - 1)
def field(fid, scope=0):
    v = N.nvmlDeviceGetFieldValues(h, [(fid, scope)])[0]
    return v.value.uiVal if v.nvmlReturn == 0 else -v.nvmlReturn
r["links"] = max(field(N.NVML_FI_DEV_NVLINK_LINK_COUNT), 0)
r["version"] = [code(N.nvmlDeviceGetNvLinkVersion, h, 0) or N.nvmlDeviceGetNvLinkVersion(h, 0)]
r["version_field"] = field(N.NVML_FI_DEV_NVLINK_GET_VERSION)
caps = {}
for link in range(N.NVML_NVLINK_MAX_LINKS + 1):
    row = []
    for cap in range(N.NVML_NVLINK_CAP_COUNT):
        try:
            row.append(N.nvmlDeviceGetNvLinkCapability(h, link, cap))
        except N.NVMLError as e:
            row.append(-e.value)
    caps[link] = row
r["caps"] = caps
top = max(r["links"] - 1, 0)
r["state"] = [code(N.nvmlDeviceGetNvLinkState, h, k) for k in (0, top, r["links"], 35)]
r["version_35"] = code(N.nvmlDeviceGetNvLinkVersion, h, 35)
r["version_36"] = code(N.nvmlDeviceGetNvLinkVersion, h, 36)
r["index"] = N.nvmlDeviceGetIndex(last)
migs = []
for parent in (h, last):
    has_mig = code(N.nvmlDeviceGetMaxMigDeviceCount, parent) == 0
    for i in range(N.nvmlDeviceGetMaxMigDeviceCount(parent) if has_mig else 0):
        try:
            m = N.nvmlDeviceGetMigDeviceHandleByIndex(parent, i)
        except N.NVMLError:
            break
        migs.append([i, N.nvmlDeviceGetIndex(m)])
r["mig_index"] = migs
r["accounting"] = [N.nvmlDeviceGetAccountingMode(h), N.nvmlDeviceGetAccountingBufferSize(h)]
r["default_ecc"] = code(N.nvmlDeviceGetDefaultEccMode, h) or N.nvmlDeviceGetDefaultEccMode(h)
mem = N.nvmlDeviceGetSupportedMemoryClocks(h)
r["mem_clocks"] = mem
r["max_mem"] = N.nvmlDeviceGetMaxClockInfo(h, N.NVML_CLOCK_MEM)
gfx = N.nvmlDeviceGetSupportedGraphicsClocks(h, mem[0])
r["gfx"] = [len(gfx), gfx[0], gfx[-1], sorted(gfx, reverse=True) == gfx]
r["max_sm"] = N.nvmlDeviceGetMaxClockInfo(h, N.NVML_CLOCK_SM)
r["gfx_bad"] = code(N.nvmlDeviceGetSupportedGraphicsClocks, h, 1)
try:
    hist = N.nvmlDeviceGetRowRemapperHistogram(h)
    r["hist"] = [hist.max, hist.high, hist.partial, hist.low, hist.none]
except N.NVMLError as e:
    r["hist"] = e.value
r["gsp"] = (code(N.nvmlDeviceGetGspFirmwareVersion, h)
            or N.nvmlDeviceGetGspFirmwareVersion(h).decode())
r["gsp_mode"] = list(N.nvmlDeviceGetGspFirmwareMode(h))
r["driver"] = N.nvmlSystemGetDriverVersion()
r["module"] = [N.nvmlDeviceGetModuleId(N.nvmlDeviceGetHandleByIndex(i))
               for i in range(N.nvmlDeviceGetCount())]
r["affinity"] = [list(N.nvmlDeviceGetMemoryAffinity(h, 2, s)) for s in (0, 1)]
r["numa"] = N.nvmlDeviceGetNumaNodeId(h)
cap = {}
for const in range(N.NVML_GPU_INSTANCE_PROFILE_COUNT):
    try:
        info = N.nvmlDeviceGetGpuInstanceProfileInfo(h, const)
    except N.NVMLError:
        continue
    try:
        cap[info.id] = N.nvmlDeviceGetGpuInstanceRemainingCapacity(h, info.id)
    except N.NVMLError as e:
        cap[info.id] = -e.value
    try:
        cnt = ctypes.c_uint(0)
        N.nvmlDeviceGetGpuInstancePossiblePlacements(h, info.id, None, ctypes.byref(cnt))
        arr = (N.c_nvmlGpuInstancePlacement_t * cnt.value)()
        N.nvmlDeviceGetGpuInstancePossiblePlacements(h, info.id, arr, ctypes.byref(cnt))
        cap[f"p{info.id}"] = [[p.start, p.size] for p in arr[:cnt.value]]
    except N.NVMLError as e:
        cap[f"p{info.id}"] = -e.value
r["capacity"] = cap
r["p2p_unknown"] = N.nvmlDeviceGetP2PStatus(h, last, N.NVML_P2P_CAPS_INDEX_UNKNOWN)
out(r)
'''


@pytest.fixture(scope="module")
def h100(sim_module: Any) -> dict[str, Any]:
    return sim_module("h100x8").run(SCRIPT)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def a100(sim_module: Any) -> dict[str, Any]:
    return sim_module("a100-mig").run(SCRIPT)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def t4(sim_module: Any) -> dict[str, Any]:
    return sim_module("t4x4").run(SCRIPT)  # type: ignore[no-any-return]


NOT_SUPPORTED, INVALID = 3, 2


def test_nvlink_version_is_the_header_enum(h100: dict[str, Any], a100: dict[str, Any]) -> None:
    assert h100["version"] == [6]  # NVML_NVLINK_VERSION_4_0
    assert a100["version"] == [5]  # NVML_NVLINK_VERSION_3_1: what real A100s answer
    assert h100["version_field"] == 6
    assert a100["version_field"] == 5


def test_capabilities_answer_every_link_index_below_the_maximum(h100: dict[str, Any]) -> None:
    links = h100["links"]
    assert links == 18
    caps = {int(k): v for k, v in h100["caps"].items()}
    valid = 5  # NVML_NVLINK_CAP_VALID
    for link in range(36):
        assert all(c >= 0 for c in caps[link]), link
        assert caps[link][valid] == (1 if link < links else 0), link
    assert caps[36] == [-INVALID] * 6  # past NVML_NVLINK_MAX_LINKS
    assert h100["version_35"] == 0
    assert h100["version_36"] == INVALID
    # only the state query rejects links the GPU does not have
    assert h100["state"] == [0, 0, INVALID, INVALID]


def test_no_nvlink_gpu_answers_not_supported(t4: dict[str, Any]) -> None:
    caps = {int(k): v for k, v in t4["caps"].items()}
    assert caps[0] == [-NOT_SUPPORTED] * 6
    assert t4["version"] == [NOT_SUPPORTED]


def test_mig_handles_report_their_mig_device_index(a100: dict[str, Any],
                                                   h100: dict[str, Any]) -> None:
    # GPU 0 holds seven 1g.10gb devices: indices 0..6, as GetMigDeviceHandleByIndex takes them
    assert a100["mig_index"][:7] == [[i, i] for i in range(7)]
    assert h100["mig_index"] == []
    assert h100["index"] == 7


def test_accounting_default_ecc_and_gsp(h100: dict[str, Any], t4: dict[str, Any]) -> None:
    assert h100["accounting"] == [0, 4000]  # disabled, 4000 records
    assert t4["accounting"] == [0, 4000]
    assert h100["default_ecc"] == [1]  # pynvml returns a one-element list
    assert h100["gsp"] == h100["driver"]
    assert h100["gsp_mode"] == [1, 1]
    assert t4["gsp"] == NOT_SUPPORTED
    assert t4["gsp_mode"] == [0, 0]


def test_supported_clocks(h100: dict[str, Any], t4: dict[str, Any]) -> None:
    assert h100["mem_clocks"] == [h100["max_mem"]]  # HBM: one memory clock
    assert t4["mem_clocks"] == [5001, 405]
    n, top, bottom, descending = h100["gfx"]
    assert top == h100["max_sm"]
    assert descending
    assert n == (top - bottom) // 15 + 1
    assert h100["gfx_bad"] == 6  # NOT_FOUND for a memory clock not in the list


def test_row_remapper_histogram(h100: dict[str, Any], t4: dict[str, Any]) -> None:
    assert h100["hist"] == [2560, 0, 0, 0, 0]
    assert t4["hist"] == NOT_SUPPORTED  # page retirement, no row remapping


def test_module_ids_and_memory_affinity(h100: dict[str, Any], t4: dict[str, Any]) -> None:
    assert h100["module"] == list(range(1, 9))  # HGX baseboard modules
    assert t4["module"] == [0, 0, 0, 0]
    node = h100["numa"]
    assert h100["affinity"] == [[1 << node, 0]] * 2


def test_gpu_instance_capacity_and_placements(a100: dict[str, Any], h100: dict[str, Any]) -> None:
    # GPU 0 of a100-mig is full (seven 1g.10gb): nothing more fits
    cap = a100["capacity"]
    assert cap["19"] == 0
    assert cap["0"] == 0
    assert cap["p19"] == [[s, 1] for s in range(7)]
    assert cap["p9"] == [[0, 4], [4, 4]]
    assert cap["p0"] == [[0, 8]]
    # MIG mode off: capacity NOT_SUPPORTED (nvml.h), placements still listed
    assert h100["capacity"]["19"] == -NOT_SUPPORTED
    assert h100["capacity"]["p14"] == [[0, 2], [2, 2], [4, 2]]


def test_p2p_unknown_index_is_answered(h100: dict[str, Any]) -> None:
    assert h100["p2p_unknown"] == 6  # NVML_P2P_STATUS_UNKNOWN
