"""Memory safety at the C ABI: no simulated call writes past the layout its caller passes.

``guard_harness.py`` calls every hand-written function of the library on every profile (whole
GPUs and MIG devices) with canary-fenced ctypes buffers sized as the caller's entry point
implies; here we assert on what it found. The same tests run against an AddressSanitizer and
UBSan build in test_sim_sanitizers.py.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gpu_exporter.simulator import library_path, list_profiles, prepare

HERE = Path(__file__).resolve().parent
NATIVE = Path(library_path().parent.parent / "native")
sys.path.insert(0, str(HERE))
from guard_harness import GUARD, LEGACY, Buf  # noqa: E402


def _header() -> Path:
    for entry in sys.path:
        hits = sorted(Path(entry or ".").glob("nvidia/cu*/include/nvml.h"))
        if hits:
            return hits[-1]
    pytest.fail("nvml.h not found: install nvidia-nvml-dev==13.5.37 (test dependency)")


def _lib_dir() -> str:
    """The library under test: a sanitized build when test_sim_sanitizers.py says so."""
    return os.environ.get("GPU_SIM_TEST_LIBDIR") or str(library_path().parent)


@pytest.fixture(scope="module")
def guard(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for profile in list_profiles():
        state = tmp_path_factory.mktemp(f"guard-{profile}")
        session = prepare(profile, state_dir=state)
        env = {**os.environ, **session.env}
        env["LD_LIBRARY_PATH"] = f"{_lib_dir()}:{env['LD_LIBRARY_PATH']}"
        proc = subprocess.run(
            [sys.executable, str(HERE / "guard_harness.py"), str(_header()), str(NATIVE),
             str(state)],
            env=env, capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, f"{profile}: harness failed:\n{proc.stderr[-4000:]}"
        results[profile] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results


def test_the_library_under_test_is_the_one_loaded(guard: dict[str, Any]) -> None:
    for profile, r in guard.items():
        assert Path(r["loaded"]).parent == Path(_lib_dir()).resolve(), profile


def test_no_call_writes_outside_the_callers_layout(guard: dict[str, Any]) -> None:
    found = {p: r["violations"] for p, r in guard.items() if r["violations"]}
    assert found == {}


def test_every_hand_written_function_is_exercised(guard: dict[str, Any]) -> None:
    never = set.intersection(*(set(r["uncovered"]) for r in guard.values()))
    assert never == set()
    assert all(len(r["calls"]) > 200 for r in guard.values())


def test_every_output_is_written_on_some_profile(guard: dict[str, Any]) -> None:
    """A guard check of a call that always fails proves nothing: each one succeeds somewhere."""
    ok = {name for r in guard.values() for name, _ctx, ret in r["calls"] if ret == 0}
    seen = {name for r in guard.values() for name, _ctx, _ret in r["calls"]}
    # these write nothing by design (or only clear state)
    quiet = {"nvmlDeviceClearFieldValues"}
    assert seen - ok - quiet == set()


def test_legacy_entry_points_succeed_within_their_old_layout(guard: dict[str, Any]) -> None:
    calls = [c for r in guard.values() for c in r["calls"]]
    for name in LEGACY:
        assert any(n == name and ret == 0 for n, _ctx, ret in calls), name


def test_the_canary_check_sees_an_overflow() -> None:
    libc = ctypes.CDLL(None)
    libc.memset.restype = ctypes.c_void_p
    buf = Buf(52)
    libc.memset(ctypes.c_void_p(buf.ptr), 0, ctypes.c_size_t(52))
    assert buf.intact()
    libc.memset(ctypes.c_void_p(buf.ptr), 0, ctypes.c_size_t(68))  # today's nvmlPciInfo_t
    assert not buf.intact()
    under = Buf(8)
    libc.memset(ctypes.c_void_p(under.ptr - 1), 0, ctypes.c_size_t(1))
    assert not under.intact()
    assert GUARD >= 16


LEGACY_PCI = '''
class Legacy(ctypes.Structure):  # nvmlPciInfo_t before _v3, as py3nvml 0.2.7 declares it
    _fields_ = [("busId", ctypes.c_char * 16), ("domain", ctypes.c_uint), ("bus", ctypes.c_uint),
                ("device", ctypes.c_uint), ("pciDeviceId", ctypes.c_uint),
                ("pciSubSystemId", ctypes.c_uint), ("reserved", ctypes.c_uint * 4)]
lib = ctypes.CDLL("libnvidia-ml.so.1")
N.nvmlInit()
h = N.nvmlDeviceGetHandleByIndex(1)
res = {}
for fn in ("nvmlDeviceGetPciInfo", "nvmlDeviceGetPciInfo_v2"):
    p = Legacy()
    rc = getattr(lib, fn)(h, ctypes.byref(p))
    res[fn] = [rc, p.busId.decode(), p.bus, p.pciDeviceId, list(p.reserved)]
p = Legacy()
rc = lib.nvmlDeviceGetNvLinkRemotePciInfo(h, 0, ctypes.byref(p))
res["remote"] = [rc, p.busId.decode(), p.bus]
v3 = N.nvmlDeviceGetPciInfo_v3(h)
res["v3"] = [v3.busIdLegacy.decode() if isinstance(v3.busIdLegacy, bytes) else v3.busIdLegacy,
             v3.busId if isinstance(v3.busId, str) else v3.busId.decode(), v3.bus]
out(res)
'''


def test_legacy_pci_info_layout_and_upper_case_legacy_bus_id(sim: Any) -> None:
    r = sim("h100x8").run(LEGACY_PCI)
    bus = r["v3"][2]
    legacy_id = f"0000:{bus:02X}:00.0"
    assert r["v3"][0] == legacy_id
    assert r["v3"][1] == f"00000000:{bus:02X}:00.0"
    for fn in ("nvmlDeviceGetPciInfo", "nvmlDeviceGetPciInfo_v2"):
        rc, bus_id, got_bus, dev_id, reserved = r[fn]
        assert (rc, bus_id, got_bus, reserved) == (0, legacy_id, bus, [0, 0, 0, 0])
        assert dev_id == 0x233010DE
    rc, bus_id, got_bus = r["remote"]
    assert rc == 0
    assert bus_id == f"0000:{got_bus:02X}:00.0"
    assert bus_id == bus_id.upper()
