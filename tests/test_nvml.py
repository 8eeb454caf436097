"""The NVML module: error mapping, decoding, probing, symbol fallbacks (real pynvml)."""

from __future__ import annotations

import struct

import pytest
from simproc import run_snippet

from gpu_exporter.nvml import (
    GpuLostError,
    NvmlError,
    NvmlLibraryNotFound,
    code_name,
    decode_value_bits,
    decode_value_bytes,
    gi_profile,
)


def test_code_names() -> None:
    assert code_name(15) == "GPU_IS_LOST"
    assert code_name(3) == "NOT_SUPPORTED"
    assert code_name(999) == "UNKNOWN"
    assert code_name(4242) == "CODE_4242"


def test_errors_name_function_and_code() -> None:
    err = NvmlError("nvmlDeviceGetPowerUsage", 15)
    assert str(err) == "nvmlDeviceGetPowerUsage failed: GPU_IS_LOST (15)"
    lost = GpuLostError("nvmlDeviceGetName", 15)
    assert isinstance(lost, NvmlError)
    assert (lost.function, lost.code) == ("nvmlDeviceGetName", 15)


def test_library_not_found_message_names_the_way_out() -> None:
    text = str(NvmlLibraryNotFound())
    assert "no NVML library found" in text
    assert "NVIDIA driver" in text
    assert "--simulate" in text


@pytest.mark.parametrize(
    ("value_type", "raw", "expected"),
    [
        (0, struct.pack("<d", 41.5), 41.5),
        (1, struct.pack("<I", 4000000000) + b"\xff" * 4, 4000000000.0),
        (2, struct.pack("<Q", 2**40), float(2**40)),
        (3, struct.pack("<Q", 2**63 + 1), float(2**63 + 1)),
        (4, struct.pack("<q", -5), -5.0),
        (5, struct.pack("<i", -7) + b"\x00" * 4, -7.0),
        (6, struct.pack("<H", 65535) + b"\x11" * 6, 65535.0),
        (0, struct.pack("<I", 45) + b"\x00" * 4, 45.0),  # r545 quirk: uint typed DOUBLE
        (7, b"\x00" * 8, None),
    ],
)
def test_decode_value_bytes(value_type: int, raw: bytes, expected: float | None) -> None:
    assert decode_value_bytes(value_type, raw) == expected
    # the batched read decodes the union from its 64 bits, the common types without bytes
    assert decode_value_bits(value_type, int.from_bytes(raw, "little")) == expected


def test_missing_library_becomes_our_error() -> None:
    out = run_snippet("""
import pynvml
from gpu_exporter import nvml as ours
def no_library(*args, **kwargs):
    raise OSError("libnvidia-ml.so.1: cannot open shared object file")
pynvml.CDLL = no_library
try:
    ours.Nvml()
except ours.NvmlLibraryNotFound as exc:
    out["error"] = str(exc)
""")
    assert "no NVML library found" in out["error"]
    assert "--simulate PROFILE" in out["error"]


def test_probe_h100() -> None:
    out = run_snippet("""
nv = Nvml(simulate="h100x8")
out["count"] = nv.device_count()
info = nv.probe(0)
e = info.entity
out["entity"] = [e.gpu, e.uuid, e.pci_bus_id, e.model_name, e.gi_id, e.device]
out["mig"] = [info.mig_enabled, len(info.instances)]
out["strings"] = {str(k): v for k, v in info.strings.items()}
out["versions"] = [nv.driver_version(), nv.nvml_version()]
out["uuids"] = len({nv.probe(i).entity.uuid for i in range(8)})
""")
    assert out["count"] == 8
    gpu, uuid, bus_id, model, gi_id, device = out["entity"]
    assert (gpu, gi_id, device) == (0, None, "nvidia0")
    assert uuid.startswith("GPU-")
    assert len(bus_id) == 16
    assert bus_id.startswith("0000")
    assert model == "NVIDIA H100 80GB HBM3"
    assert out["mig"] == [False, 0]
    strings = out["strings"]
    assert strings["1"] == out["versions"][0]
    assert strings["2"] == out["versions"][1]
    assert strings["50"] == model
    assert strings["54"] == uuid
    for fid in ("51", "53", "85"):
        assert strings[fid], fid
    assert out["uuids"] == 8


def test_not_supported_is_none_and_lost_is_counted() -> None:
    out = run_snippet("""
nv = Nvml(simulate="h100x8")
h = nv.handle(1)
nv.sim_session.faults.unsupported(1, "nvmlDeviceGetPowerUsage")
out["unsupported"] = wait_until(lambda: nv.power_usage(h) is None, 10)
out["errors_after_unsupported"] = len(nv.error_counts())
nv.sim_session.faults.clear()
nv.sim_session.faults.lose_gpu(1)
def lost():
    try:
        nv.temperature(h)
    except Exception as exc:
        return type(exc).__name__
    return None
out["raised"] = wait_until(lost, 10)
out["errors"] = [list(k) + [v] for k, v in nv.error_counts().items()]
""")
    assert out["unsupported"] is True  # None came back, not an exception
    assert out["errors_after_unsupported"] == 0  # NOT_SUPPORTED is not an error
    assert out["raised"] == "GpuLostError"
    assert ["nvmlDeviceGetTemperatureV", "GPU_IS_LOST", 1] in out["errors"]


def test_versioned_symbols_fall_back_once() -> None:
    out = run_snippet("""
import pynvml
calls = {"v": 0, "v2": 0}
real_lookup = pynvml._nvmlGetFunctionPointer
def v2_mismatch(handle, memory):
    calls["v2"] += 1
    return 25  # ARGUMENT_VERSION_MISMATCH: a driver that knows only the v1 struct
def lookup(name):  # the library's symbols, as the reads look them up
    if name == "nvmlDeviceGetTemperatureV":
        calls["v"] += 1
        raise pynvml.NVMLError(13)  # FUNCTION_NOT_FOUND: an old driver without the symbol
    if name == "nvmlDeviceGetMemoryInfo_v2":
        return v2_mismatch
    return real_lookup(name)
pynvml._nvmlGetFunctionPointer = lookup
nv = Nvml(simulate="h100x8")
h = nv.handle(0)
out["temps"] = [nv.temperature(h), nv.temperature(h)]
out["v_calls"] = calls["v"]
m = nv.memory_info(h)
nv.memory_info(h)
out["v2_calls"] = calls["v2"]
out["memory"] = [m.total, m.free, m.used, m.reserved]
""")
    first, second = out["temps"]
    assert 0 < first < 200
    assert 0 < second < 200
    assert out["v_calls"] == 1
    assert out["v2_calls"] == 1
    total, free, used, reserved = out["memory"]
    assert reserved is None
    assert total == free + used


def test_direct_reads_match_pynvml_wrappers() -> None:
    # The per-cycle reads call the C functions directly; they must read what pynvml's own
    # wrappers read from the same library (simulated values that do not move between reads).
    out = run_snippet("""
import pynvml
def theirs(fn, *args):
    try:
        return fn(*args)
    except pynvml.NVMLError_NotSupported:
        return None
nv = Nvml(simulate="h100x8")
h = nv.handle(3)
mem = pynvml.nvmlDeviceGetMemoryInfo(h, pynvml.nvmlMemory_v2)
rates = pynvml.nvmlDeviceGetUtilizationRates(h)
out["theirs"] = [
    pynvml.nvmlDeviceGetClockInfo(h, 1), pynvml.nvmlDeviceGetClockInfo(h, 2),
    pynvml.nvmlDeviceGetPowerManagementLimit(h),
    [rates.gpu, rates.memory],
    (theirs(pynvml.nvmlDeviceGetEncoderUtilization, h) or [None])[0],
    (theirs(pynvml.nvmlDeviceGetDecoderUtilization, h) or [None])[0],
    [mem.total, mem.free, mem.used, mem.reserved],
    pynvml.nvmlDeviceGetTemperatureV(h, 0),
    pynvml.nvmlDeviceGetCurrentClocksEventReasons(h),
]
m = nv.memory_info(h)
out["mine"] = [
    nv.clock(h, 1), nv.clock(h, 2), nv.power_limit(h), list(nv.utilization(h)),
    nv.encoder_utilization(h), nv.decoder_utilization(h),
    [m.total, m.free, m.used, m.reserved], nv.temperature(h), nv.clocks_event_reasons(h),
]
out["power"] = [nv.power_usage(h), pynvml.nvmlDeviceGetPowerUsage(h)]
""")
    mine, theirs = out["mine"], out["theirs"]
    assert mine == theirs
    assert mine[4] is None  # H100: no encoder utilisation (NOT_SUPPORTED gives None)
    total, free, used, reserved = mine[6]
    assert total == free + used + reserved > 0
    assert 0 < mine[7] < 200
    assert all(p > 0 for p in out["power"])


def test_field_values_match_pynvml_decoding() -> None:
    out = run_snippet("""
import pynvml
import gpu_exporter.nvml as ours
nv = Nvml(simulate="h100x8", state_dir=None)
h = nv.handle(0)
req = [(82, 0), (83, 0), (94, 0), (142, 0), (143, 0), (3, 0), (138, 0xFFFFFFFF), (9999, 0)]
mine = nv.field_values(h, req)
theirs = pynvml.nvmlDeviceGetFieldValues(h, req)
out["mine"] = [[r.field_id, r.scope_id, r.code, r.value, r.timestamp_us > 0] for r in mine]
attr = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
out["theirs"] = [[int(t.fieldId), int(t.scopeId), int(t.nvmlReturn),
                  float(getattr(t.value, attr[t.valueType])) if t.nvmlReturn == 0 else None]
                 for t in theirs]
""")
    mine = out["mine"]
    assert [row[:3] for row in mine] == [row[:3] for row in out["theirs"]]
    for (fid, _, code, value, stamped), their in zip(mine, out["theirs"], strict=True):
        if code == 0:
            assert stamped, fid
            assert value == pytest.approx(their[3], rel=1e-3), fid  # energy moves a little
        else:
            assert value is None
    assert mine[-1][2] != 0  # an unknown field fails on its own entry only


def test_process_lists_mig_ids_and_v2_fallback() -> None:
    out = run_snippet("""
from nvml_decode import running_processes
nv = Nvml(simulate="a100-mig")
faults = nv.sim_session.faults
info = nv.probe(0)
mig = info.instances[0]
out["mig"] = [[p.pid > 0, p.gi_id, p.used_bytes is None or p.used_bytes > 0]
              for p in running_processes(nv, mig.handle, "compute")]
out["gi"] = mig.entity.gi_id
whole = nv.probe(4)
out["whole_gi"] = sorted({str(p.gi_id) for p in running_processes(nv, whole.handle, "compute")})
# a driver without the _v3 entry points answers FUNCTION_NOT_FOUND: _v2 (the same layout)
# from then on, for every list, without asking _v3 again
faults.error(None, "nvmlDeviceGetComputeRunningProcesses_v3", 13)
faults.error(None, "nvmlDeviceGetGraphicsRunningProcesses_v3", 13)
time.sleep(0.25)  # the library picks the change up within ~100 ms
before = faults.call_counts()
first = running_processes(nv, mig.handle, "compute")
second = running_processes(nv, mig.handle, "compute")
graphics = running_processes(nv, mig.handle, "graphics")
after = faults.call_counts()
def calls(name):
    return after.get(name, 0) - before.get(name, 0)
out["fallback"] = [[[p.pid, p.gi_id] for p in first] == [[p.pid, p.gi_id] for p in second],
                   len(first) == len(out["mig"]), graphics is not None,
                   calls("nvmlDeviceGetComputeRunningProcesses_v3"),
                   calls("nvmlDeviceGetComputeRunningProcesses_v2"),
                   calls("nvmlDeviceGetGraphicsRunningProcesses_v3"),
                   calls("nvmlDeviceGetGraphicsRunningProcesses_v2")]
out["errors"] = {f"{k[0]}/{k[1]}": v for k, v in nv.error_counts().items()}
""")
    assert out["mig"]
    assert all(row == [True, out["gi"], True] for row in out["mig"])
    assert out["whole_gi"] in ([], ["None"])
    assert out["fallback"] == [True, True, True, 1, 2, 0, 1]
    assert out["errors"] == {}  # a fallback, not a failure


def test_older_nvidia_ml_py_without_newer_wrappers() -> None:
    # nvidia-ml-py 12.535 has neither TemperatureV nor ComputeRunningProcesses_v2
    out = run_snippet("""
import pynvml
del pynvml.nvmlDeviceGetTemperatureV
del pynvml.nvmlDeviceGetComputeRunningProcesses_v2
del pynvml.nvmlDeviceGetCurrentClocksEventReasons
nv = Nvml(simulate="h100x8")
h = nv.handle(0)
out["temp"] = nv.temperature(h)
out["reasons"] = nv.clocks_event_reasons(h)
out["procs"] = nv.running_processes_raw(h, "compute") is not None
s = Sampler(nvml=nv, fields=frozenset({150}), events=False)
c = s.collect_once()
out["exported"] = sum(1 for x in c.samples if x.field_id == 150)
s.close()
out["errors"] = len(nv.error_counts())
""")
    assert 0 < out["temp"] < 200
    assert out["reasons"] is not None
    assert out["procs"]
    assert out["exported"] == 8
    assert out["errors"] == 0


def test_probe_survives_label_only_failures() -> None:
    out = run_snippet("""
nv = Nvml(simulate="h100x8")
f = nv.sim_session.faults
f.error(1, "nvmlDeviceGetSerial", 999)           # UNKNOWN
f.error(1, "nvmlDeviceGetBrand", 4)              # NO_PERMISSION
f.error(1, "nvmlDeviceGetInforomVersion", 14)    # CORRUPTED_INFOROM
f.error(1, "nvmlDeviceGetVbiosVersion", 999)
h = nv.handle(1)
def failing():
    try:
        nv.serial(h)
    except Exception as exc:
        return type(exc).__name__
    return None
out["raised"] = wait_until(failing, 10)
info = nv.probe(1)
out["strings"] = sorted(info.strings)
out["whole"] = sorted(nv.probe(0).strings)
out["errors"] = sorted(f"{k[0]}/{k[1]}" for k in nv.error_counts())
s = Sampler(nvml=nv, fields=frozenset({150}), events=False)
c = s.collect_once()
out["up"] = {n.entity.gpu: n.value for n in c.natives if n.name == "gpu_exporter_gpu_up"}[1]
s.close()
f.lose_gpu(1)
def lost():
    try:
        nv.probe(1)
    except Exception as exc:
        return type(exc).__name__
    return None
out["lost"] = wait_until(lambda: lost() == "GpuLostError", 10)
""")
    assert out["raised"] == "NvmlError"
    assert {51, 53, 56, 85} <= set(out["whole"])
    # brand, serial, InfoROM object versions, VBIOS left out; the rest kept
    assert out["strings"] == sorted(set(out["whole"]) - {51, 53, 56, 80, 81, 85})
    assert {1, 2, 50, 54, 57} <= set(out["strings"])
    assert out["errors"] == [
        "nvmlDeviceGetBrand/NO_PERMISSION", "nvmlDeviceGetInforomVersion/CORRUPTED_INFOROM",
        "nvmlDeviceGetSerial/UNKNOWN", "nvmlDeviceGetVbiosVersion/UNKNOWN"]
    assert out["up"] == 1.0
    assert out["lost"] is True  # GPU_IS_LOST still fails the probe


@pytest.mark.parametrize(
    ("name", "profile"),
    [
        ("NVIDIA A100-SXM4-80GB MIG 3g.40gb", "3g.40gb"),
        ("NVIDIA A100-SXM4-80GB MIG 1c.3g.40gb", "3g.40gb"),
        ("NVIDIA H100 80GB HBM3 MIG 2c.4g.40gb", "4g.40gb"),
        ("NVIDIA H100 80GB HBM3 MIG 1g.10gb+me", "1g.10gb+me"),
        ("NVIDIA A100-SXM4-80GB MIG 7g.80gb", "7g.80gb"),
        ("", ""),
    ],
)
def test_gi_profile_strips_the_compute_instance_part(name: str, profile: str) -> None:
    assert gi_profile(name) == profile


def test_split_gpu_instance_is_one_instance() -> None:
    out = run_snippet("""
nv = Nvml(simulate="a100-mig")
nv.sim_session.faults.mig_reconfigure(3, ["1c.3g.40gb", "2c.3g.40gb", "3g.40gb"])
info = wait_until(lambda: (lambda i: i if i.mig_enabled else None)(nv.probe(3)), 10)
out["instances"] = [[m.entity.gi_id, m.entity.gi_profile, m.entity.mig_index]
                    for m in info.instances]
out["layout"] = [nv.mig_layout(info.handle)[0], [list(p) for p in nv.mig_layout(info.handle)[1]]]
s = Sampler(nvml=nv, fields=frozenset({250, 252}), events=False)
c = s.collect_once()
rows = [(x.entity.gi_id, x.field_id) for x in c.samples if x.entity.gpu == 3]
out["duplicates"] = len(rows) - len(set(rows))
out["fb_instances"] = sorted({x.entity.gi_profile for x in c.samples
                              if x.entity.gpu == 3 and x.field_id == 250})
s.close()
""")
    assert out["instances"] == [[1, "3g.40gb", 0], [2, "3g.40gb", 2]]
    assert out["layout"] == [True, [[0, 1], [2, 2]]]
    assert out["duplicates"] == 0
    assert out["fb_instances"] == ["3g.40gb"]


def test_per_process_calls_size_protocol_columns_and_mig() -> None:
    out = run_snippet("""
from nvml_decode import process_utilization, running_processes
import tempfile
from pathlib import Path
from gpu_exporter.simulator import FaultInjector
state = Path(tempfile.mkdtemp())
nvml = Nvml(simulate="a100-mig", state_dir=state)
faults = FaultInjector(state)
for i in range(40):  # more than the first buffer holds: INSUFFICIENT_SIZE, grow, again
    faults.add_process(5000 + i, 3, mem_mib=10 + i, sm=1 + i % 3, mem=i % 2)
faults.add_process(6000, 3, kind="graphics", mem_mib=7, sm=2)
h = nvml.handle(3)
wait_until(lambda: len(running_processes(nvml, h, "compute") or []) == 40)
listed = running_processes(nvml, h, "compute")
out["pids"] = sorted(p.pid for p in listed)
out["mem"] = {p.pid: p.used_bytes for p in listed}[5039]
out["graphics"] = [(p.pid, p.used_bytes) for p in running_processes(nvml, h, "graphics")]
out["mps"] = running_processes(nvml, h, "mps")
time.sleep(0.5)
first = process_utilization(nvml, h, 0)
newest = max(first.stamps)
out["columns"] = len({len(c) for c in first}) == 1 and len(first.pids) >= 41
out["one"] = [(s, m) for p, s, m in zip(first.pids, first.sm, first.mem) if p == 5004][-1]
time.sleep(0.4)
second = process_utilization(nvml, h, newest)
out["strictly_newer"] = min(second.stamps) > newest
out["nothing_newer"] = list(process_utilization(nvml, h, max(second.stamps) + 10**9).pids)
info = nvml.probe(0)
mig = info.instances[0].handle
out["mig_util"] = process_utilization(nvml, mig, 0)
out["mig_list"] = running_processes(nvml, mig, "compute") is not None
# a list grows past the buffer of the call that answered last (16 entries): grown, asked again
for i in range(20):
    faults.add_process(6001 + i, 3, kind="graphics", mem_mib=7, sm=1)
wait_until(lambda: len(running_processes(nvml, h, "graphics") or []) == 21)
out["grown"] = sorted(p.pid for p in running_processes(nvml, h, "graphics"))
out["errors"] = sorted(k[0] for k in nvml.error_counts())
""")
    assert out["grown"] == list(range(6000, 6021))
    assert out["pids"] == list(range(5000, 5040))
    assert out["mem"] == 49 * (1 << 20)
    assert out["graphics"] == [[6000, 7 * (1 << 20)]]
    assert out["mps"] == []
    assert out["columns"]
    assert out["one"] == [2, 0]  # sm 1 + 4 % 3, mem 4 % 2
    assert out["strictly_newer"]
    assert out["nothing_newer"] == []
    assert out["mig_util"] is None  # NOT_SUPPORTED on MIG devices: None, never zeros
    assert out["mig_list"]
    assert out["errors"] == []


def test_process_reader_answers_as_the_nvml_calls_and_fails_as_they_do() -> None:
    out = run_snippet("""
from nvml_decode import running_processes
import tempfile
from pathlib import Path
from gpu_exporter.nvml import PROCESS_SAMPLE, NvmlError
from gpu_exporter.simulator import FaultInjector
state = Path(tempfile.mkdtemp())
nvml = Nvml(simulate="a100-mig", state_dir=state)
faults = FaultInjector(state)
for i in range(20):  # more than a list buffer's first 16 entries: grown, asked again
    faults.add_process(5000 + i, 3, mem_mib=10 + i, sm=1 + i % 3)
faults.add_process(6000, 3, kind="graphics", mem_mib=7, sm=2)
h = nvml.handle(3)
reader = nvml.process_reader()
wait_until(lambda: len(running_processes(nvml, h, "compute") or []) == 20)
kinds = ("mps", "compute", "graphics")
out["lists"] = [reader.lists(h) == tuple(nvml.running_processes_raw(h, k) for k in kinds)
                for _ in range(3)]
out["memory"] = [reader.memory_used(h) == nvml.memory_info(h).used for _ in range(3)]
out["coder"] = [reader.coder_utilization(h, decoder=d) == (
    nvml.decoder_utilization(h) if d else nvml.encoder_utilization(h)) for d in (False, True)]
time.sleep(0.3)
def pids(raw):
    return sorted(p for p, *_ in PROCESS_SAMPLE.iter_unpack(bytes(raw)))
out["samples"] = [pids(reader.samples(h, 0)) == pids(nvml.process_utilization_raw(h, 0))
                  for _ in range(3)]
newest = max(s for _, s, *_ in PROCESS_SAMPLE.iter_unpack(bytes(reader.samples(h, 0))))
out["nothing_newer"] = repr(reader.samples(h, newest + 10**9))
mig = nvml.probe(0).instances[0].handle
out["mig"] = [reader.samples(mig, 0) for _ in range(2)], reader.lists(mig)[1] is not None
def fails(call):
    try:
        call()
    except NvmlError as exc:
        return exc.function
    return None
for function, call in (("nvmlDeviceGetMemoryInfo_v2", lambda: reader.memory_used(h)),
                       ("nvmlDeviceGetComputeRunningProcesses_v3", lambda: reader.lists(h)),
                       ("nvmlDeviceGetProcessUtilization", lambda: reader.samples(h, 0))):
    faults.error(3, function, 999)
    wait_until(lambda: fails(call) is not None)
    out.setdefault("failed", []).append(fails(call))
    faults.clear()
    wait_until(lambda: fails(call) is None)
out["again"] = reader.lists(h)[1] == nvml.running_processes_raw(h, "compute")
out["errors"] = sorted({k[0] for k in nvml.error_counts()})
""")
    assert out["lists"] == [True] * 3
    assert out["memory"] == [True] * 3
    assert out["coder"] == [True, True]
    assert out["samples"] == [True] * 3
    assert out["nothing_newer"] == "b''"  # NOT_FOUND: nothing newer
    assert out["mig"] == [[None, None], True]  # no per-process utilisation on MIG: None
    assert out["failed"] == ["nvmlDeviceGetMemoryInfo_v2",
                             "nvmlDeviceGetComputeRunningProcesses_v3",
                             "nvmlDeviceGetProcessUtilization"]
    assert out["again"]
    assert out["errors"] == sorted(out["failed"])  # counted as the Nvml methods count them


def test_entry_address_calls_the_same_function_and_fails_as_the_lookup_does() -> None:
    # Compiled code calls entry points by address: the address must be the function pynvml
    # resolved (called through it, it answers as the direct read does), and a symbol the
    # library lacks must fail as every other read does (FUNCTION_NOT_FOUND, counted).
    out = run_snippet("""
import ctypes
from gpu_exporter.nvml import NvmlError
nv = Nvml(simulate="h100x8")
h = nv.handle(2)
address = nv.entry_address("nvmlDeviceGetPowerManagementLimit")
proto = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint))
value = ctypes.c_uint()
out["code"] = proto(address)(h, ctypes.byref(value))
out["by_address"] = value.value
out["direct"] = nv.power_limit(h)
try:
    nv.entry_address("nvmlDeviceGetNoSuchThing")
except NvmlError as exc:
    out["missing"] = [exc.function, exc.code]
out["counts"] = {f"{k[0]}:{k[1]}": v for k, v in nv.error_counts().items()}
lost = nv.failure("nvmlDeviceGetPowerUsage", 15)
out["lost"] = [type(lost).__name__, lost.code]
""")
    assert out["code"] == 0
    assert out["by_address"] == out["direct"] > 0
    assert out["missing"] == ["nvmlDeviceGetNoSuchThing", 13]
    assert out["lost"] == ["GpuLostError", 15]
    assert any(k.startswith("nvmlDeviceGetNoSuchThing:") and v == 1
               for k, v in out["counts"].items())


def test_a_compiled_read_answers_as_the_reader_and_carries_on_by_its_rules() -> None:
    # The workload collector's reads in one compiled call (fastpath.CReads over the reader's
    # plan): the same lists, memory, samples and coders as the reader's Python reads; every
    # other answer (a list past its buffer, NOT_SUPPORTED, errors in each call) carried on by
    # the reader's rules from the answer the compiled call got: the same results, errors and
    # error counts, each NVML function called as often as the Python reads would have.
    out = run_snippet("""
from nvml_decode import running_processes
import math, tempfile
from pathlib import Path
from gpu_exporter.fastpath import CReads, ReadState, READ_CHANGED, READ_FAILED
from gpu_exporter.nvml import PROCESS_SAMPLE, READ_CALLS, NvmlError
from gpu_exporter.simulator import FaultInjector
state = Path(tempfile.mkdtemp())
nvml = Nvml(simulate="a100-mig", state_dir=state)
faults = FaultInjector(state)
for i in range(10):
    faults.add_process(5000 + i, 3, mem_mib=10 + i, sm=1 + i % 3)
faults.add_process(6000, 3, kind="graphics", mem_mib=7, sm=2)
h = nvml.handle(3)
reader = nvml.process_reader()
reads = CReads()
kinds = ("mps", "compute", "graphics")
wait_until(lambda: len(running_processes(nvml, h, "compute") or []) == 10)
held = {}
def read(handle=h, samples=True, coders=(True, True), last_seen=0):
    # one read as the collector makes it: compiled once the reader's plan is there
    st = held.get(samples)  # the GPU's read, or the MIG instance's (without samples)
    if st is None or st.generation != reader.generation or st.coders != coders:
        plan = reader.plan(handle, samples=samples, coders=coders)
        if plan is None:
            got = (reader.lists(handle), reader.memory_used(handle),
                   reader.samples(handle, last_seen) if samples else None)
            return "python", got, None
        st = held[samples] = ReadState(plan, reader.generation)
    answer = reads(st, None, last_seen, 0, [math.nan] * 6)
    failed = st.failed if answer == READ_FAILED else READ_CALLS
    got = reader.complete(handle, last_seen, failed, st.code, samples=samples)
    return ("failed", failed, st.code) if failed < READ_CALLS else "compiled", got, st
def pids(raw):
    return sorted(p for p, *_ in PROCESS_SAMPLE.iter_unpack(bytes(raw)))
def same(got, st, handle=h):
    lists, memory, samples = got
    coders = [nvml.encoder_utilization(handle), nvml.decoder_utilization(handle)]
    return (lists == tuple(nvml.running_processes_raw(handle, k) for k in kinds)
            and memory == nvml.memory_info(handle).used
            and (samples is None or pids(samples) == pids(nvml.process_utilization_raw(handle, 0)))
            and (st is None or [st.coder(0), st.coder(1)] == coders))
def calls():
    return faults.call_counts()
def fails(call):
    try:
        call()
    except NvmlError as exc:
        return [exc.function, exc.code]
    return None
time.sleep(0.3)
out["warm"] = [(lambda r: [r[0], same(r[1], r[2])])(read()) for _ in range(3)]
before = calls()
read()
after = calls()
out["one_call_each"] = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k)}
# a list past its buffer (16 entries): INSUFFICIENT_SIZE, grown and asked again, by the reader
for i in range(20):
    faults.add_process(5100 + i, 3, mem_mib=5, sm=1)
wait_until(lambda: len(running_processes(nvml, h, "compute") or []) == 30)
kind, got, st = read()
out["grown"] = [kind, same(got, st), len(got[0][1]) // 24]
out["grown_again"] = [(lambda r: [r[0], same(r[1], r[2])])(read()) for _ in range(2)]
# nothing newer: NOT_FOUND, no samples
newest = max(s for _, s, *_ in PROCESS_SAMPLE.iter_unpack(bytes(read()[1][2])))
out["nothing_newer"] = [read(last_seen=newest + 10**9)[0],
                      bytes(read(last_seen=newest + 10**9)[1][2]).hex()]
# an error in each call: the compiled call stops there, the reader raises it (counted once)
out["errors"] = []
for function in ("nvmlDeviceGetMPSComputeRunningProcesses_v3",
                 "nvmlDeviceGetComputeRunningProcesses_v3",
                 "nvmlDeviceGetGraphicsRunningProcesses_v3", "nvmlDeviceGetMemoryInfo_v2",
                 "nvmlDeviceGetProcessUtilization", "nvmlDeviceGetEncoderUtilization",
                 "nvmlDeviceGetDecoderUtilization"):
    while read()[0] != "compiled":
        pass
    counted = nvml.error_counts().get((function, "UNKNOWN"), 0)
    faults.error(3, function, 999)
    failure = wait_until(lambda: fails(read))
    out["errors"].append([failure, nvml.error_counts()[(function, "UNKNOWN")] - counted])
    faults.clear()
    wait_until(lambda: fails(read) is None)
# NOT_SUPPORTED: a list or the samples None, as the reader's; a coder's is an answer (None)
out["unsupported"] = []
out["coders"] = [nvml.encoder_utilization(h), nvml.decoder_utilization(h)]
for function, answers in (
        ("nvmlDeviceGetGraphicsRunningProcesses_v3",
         lambda: nvml.running_processes_raw(h, "graphics")),
        ("nvmlDeviceGetProcessUtilization", lambda: nvml.process_utilization_raw(h, 0)),
        ("nvmlDeviceGetDecoderUtilization", lambda: nvml.decoder_utilization(h))):
    while read()[0] != "compiled":
        pass
    faults.unsupported(3, function)
    wait_until(lambda: answers() is None)
    kinds_seen = []
    for _ in range(2):
        kind, got, st = read()
        kinds_seen.append([kind if isinstance(kind, str) else list(kind), same(got, st),
                           got[0][2] is None, got[2] is None])
    out["unsupported"].append(kinds_seen)
    faults.clear()
    wait_until(lambda: read()[0] == "compiled")
# a MIG instance: lists and memory, no samples
mig = nvml.probe(0).instances[0].handle
out["mig"] = [(lambda r: [r[0], same(r[1], None, mig), r[1][2]])(read(mig, samples=False))
              for _ in range(3)]
out["mig_samples_plan"] = [reader.samples(mig, 0), reader.plan(mig, samples=True)]  # none
""", timeout=180)
    assert out["warm"] == [["python", True], ["compiled", True], ["compiled", True]]
    assert out["one_call_each"] == {  # one read: each function once, nothing else
        "nvmlDeviceGetMPSComputeRunningProcesses_v3": 1,
        "nvmlDeviceGetComputeRunningProcesses_v3": 1,
        "nvmlDeviceGetGraphicsRunningProcesses_v3": 1, "nvmlDeviceGetMemoryInfo_v2": 1,
        "nvmlDeviceGetProcessUtilization": 1, "nvmlDeviceGetEncoderUtilization": 1,
        "nvmlDeviceGetDecoderUtilization": 1}
    assert out["grown"] == [["failed", 1, 7], True, 30]  # INSUFFICIENT_SIZE in the compute list
    assert out["grown_again"] == [["compiled", True]] * 2  # a new plan, the grown buffer
    assert out["nothing_newer"] == ["compiled", ""]
    assert out["errors"] == [[[function, 999], 1] for function in (
        "nvmlDeviceGetMPSComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v3",
        "nvmlDeviceGetGraphicsRunningProcesses_v3", "nvmlDeviceGetMemoryInfo_v2",
        "nvmlDeviceGetProcessUtilization", "nvmlDeviceGetEncoderUtilization",
        "nvmlDeviceGetDecoderUtilization")]
    graphics, samples, decoder = out["unsupported"]
    assert graphics == [[["failed", 2, 3], True, True, False], ["python", True, True, False]]
    assert samples == [[["failed", 4, 3], True, False, True], ["python", True, False, True]]
    assert decoder == [["compiled", True, False, False]] * 2  # an answer: None, no fallback
    assert out["coders"][1] is not None  # the decoder answered before
    # the reader's entry points answered for the GPU already: compiled from the first read
    assert out["mig"] == [["compiled", True, None]] * 3
    assert out["mig_samples_plan"] == [None, None]  # no samples there: no plan with them
