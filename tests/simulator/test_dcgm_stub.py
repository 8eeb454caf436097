"""The stub libdcgm.so.4 at its C ABI: every call through ctypes, every documented error path.

Each test runs a script in a child process (the stub loads the process's libnvidia-ml.so.1,
the simulated one, as a host engine would), with our own declarations from ``dcgm_abi.py``
(sizes asserted against DCGM's version words) and canary bytes around every output buffer.
The "host engine" is a plain listening socket the script opens; closing it is a lost engine.
With ``GPU_SIM_TEST_LIBDIR`` set (test_sim_sanitizers.py) the sanitized builds are tested.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpu_exporter.simulator import SimulatorError
from gpu_exporter.simulator.dcgm import CONFIG_ENV, DcgmControl, Entity, MetricGroup, library_path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dcgm_abi as d  # noqa: E402


def stub_path() -> str:
    """The library under test: a sanitized build when test_sim_sanitizers.py says so."""
    lib_dir = os.environ.get("GPU_SIM_TEST_LIBDIR")
    return str(Path(lib_dir) / "libdcgm.so.4") if lib_dir else str(library_path())


# Helpers every script gets on top of conftest's PRELUDE: `lib` (the stub), `engine()` (a
# listening TCP socket standing in for nv-hostengine), `connect()`, `watch()`, `values()`.
DPRE = f'''
import os, socket
sys.path.insert(0, {str(HERE)!r})
from dcgm_abi import *
lib = load(os.environ["DCGM_STUB"])
P = ctypes.byref
def engine():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s
def connect(addr, unix=0, timeout=3000, version=CONNECT_V2, persist=0):
    p = ConnectParams(version, persist, timeout, unix)
    h = ctypes.c_void_p(0)
    return lib.dcgmConnect_v2(addr.encode(), P(p), P(h)), h
def tcp(srv):
    return "127.0.0.1:%d" % srv.getsockname()[1]
def group(h, ents, name=b"g"):
    g = ctypes.c_void_p(0)
    assert lib.dcgmGroupCreate(h, GROUP_EMPTY, name, P(g)) == 0
    for eg, eid in ents:
        assert lib.dcgmGroupAddEntity(h, g, eg, eid) == 0, (eg, eid)
    return g
def fgroup(h, fields, name=b"f"):
    f = ctypes.c_void_p(0)
    arr = (ctypes.c_ushort * len(fields))(*fields)
    rc = lib.dcgmFieldGroupCreate(h, len(fields), arr, name, P(f))
    assert rc == 0, rc
    return f
def watch(h, ents, fields, freq=1000000, name=b"w"):
    g = group(h, ents, name + b"g")
    f = fgroup(h, fields, name + b"f")
    return lib.dcgmWatchFields(h, g, f, freq, 3600.0, 0), g, f
def values(h, ents, fields, flags=0):
    E = (EntityPair * len(ents))(*[EntityPair(a, b) for a, b in ents])
    F = (ctypes.c_ushort * len(fields))(*fields)
    buf = Guarded(FieldValue, len(ents) * len(fields))
    rc = lib.dcgmEntitiesGetLatestValues(h, E, len(ents), F, len(fields), flags, buf.obj)
    vals = []
    for v in buf.obj:
        val = (v.value.dbl if v.fieldType == FT_DOUBLE else
               v.value.str.decode() if v.fieldType == FT_STRING else v.value.i64)
        vals.append({{"ver": v.version, "eg": v.entityGroupId, "eid": v.entityId,
                     "field": v.fieldId, "type": chr(v.fieldType) if v.fieldType else "",
                     "status": v.status, "ts": v.ts, "value": val}})
    return rc, vals, buf.intact()
def by(vals):
    return {{(v["eg"], v["eid"], v["field"]): v for v in vals}}
assert lib.dcgmInit() == 0
'''


class Dcgm:
    """Runs stub scripts on one simulator profile."""

    def __init__(self, runner: Any, control: DcgmControl) -> None:
        self.runner = runner
        self.control = control

    def run(self, script: str, **env: str) -> Any:
        extra = {"DCGM_STUB": stub_path(), **self.control.env, **env}
        return self.runner.run(DPRE + script, extra_env=extra)


@pytest.fixture
def dcgm(sim: Callable[..., Any], tmp_path: Path) -> Callable[..., Dcgm]:
    def make(profile: str = "t4x4", frozen_time: float | None = 1000.0) -> Dcgm:
        return Dcgm(sim(profile, frozen_time=frozen_time), DcgmControl(tmp_path / "dcgm.conf"))
    return make


# ------------------------------------------------------------------ declarations, symbols


def test_declared_sizes_match_the_documented_version_words() -> None:
    assert ctypes.sizeof(d.ConnectParams) == 16
    assert d.CONNECT_V2 == 0x02000010
    assert ctypes.sizeof(d.FieldValue) == 4128
    assert d.FieldValue.ts.offset == 24
    assert d.FIELD_VALUE_V2 == 0x02001020
    assert ctypes.sizeof(d.MigHierarchyInfo) == 164
    assert d.MIG_HIERARCHY_V2 == 0x02011F08
    assert ctypes.sizeof(d.MetricGroupInfo) == 136
    assert d.METRIC_GROUPS_V3 == 0x03000560


def test_the_library_exports_dcgms_names_only_under_its_soname() -> None:
    path = stub_path()
    dyn = subprocess.run(["objdump", "-p", path], capture_output=True, text=True,
                         check=True).stdout
    assert "SONAME               libdcgm.so.4" in dyn
    syms = subprocess.run(["objdump", "-T", path], capture_output=True, text=True,
                          check=True).stdout
    exported = {line.split()[-1] for line in syms.splitlines()
                if " .text" in line and "DF" in line}
    assert exported == {
        "dcgmInit", "dcgmShutdown", "errorString", "dcgmConnect_v2", "dcgmDisconnect",
        "dcgmGetAllSupportedDevices", "dcgmGroupCreate", "dcgmGroupAddEntity",
        "dcgmGroupDestroy", "dcgmFieldGroupCreate", "dcgmFieldGroupDestroy", "dcgmWatchFields",
        "dcgmUnwatchFields", "dcgmUpdateAllFields", "dcgmEntitiesGetLatestValues",
        "dcgmGetGpuInstanceHierarchy", "dcgmProfGetSupportedMetricGroups"}
    # no NVML symbol of its own: NVML is the process's libnvidia-ml.so.1
    assert "nvml" not in " ".join(exported)


def test_error_strings(dcgm: Callable[..., Dcgm]) -> None:
    r = dcgm().run('''
out({str(c): (lib.errorString(c) or b"").decode() or None
     for c in (0, -1, -14, -16, -21, -33, -36, -37, -38, -67, -68, 1, -1000)})
''')
    assert r["0"] == "Success"
    for code in ("-1", "-14", "-16", "-21", "-33", "-36", "-37", "-38", "-67"):
        assert r[code], code
    assert "connection" in r["-21"].lower()
    assert "module" in r["-33"].lower()
    assert "pass" in r["-38"].lower()
    # a code DCGM does not define has no text (NULL), as in DCGM
    assert r["-68"] is None
    assert r["1"] is None
    assert r["-1000"] is None


# ------------------------------------------------------------------ connections


def test_connect_over_tcp_and_unix_socket_and_refusals(dcgm: Callable[..., Dcgm],
                                                        tmp_path: Path) -> None:
    sock = tmp_path / "he.sock"
    r = dcgm().run(f'''
res = {{}}
srv = engine()
res["tcp"] = connect(tcp(srv))[0]
u = socket.socket(socket.AF_UNIX)
u.bind({str(sock)!r}); u.listen(4)
res["unix"] = connect({str(sock)!r}, unix=1)[0]
res["unix_missing"] = connect({str(sock)!r} + ".nope", unix=1)[0]
res["unix_too_long"] = connect("/" + "x" * 200, unix=1)[0]
closed = engine(); port = closed.getsockname()[1]; closed.close()
res["refused"] = connect("127.0.0.1:%d" % port)[0]
res["default_port"] = connect("127.0.0.1", timeout=500)[0] in (0, CONNECTION_NOT_VALID)
res["bad_port"] = connect("127.0.0.1:99999")[0]
res["no_port"] = connect("127.0.0.1:")[0]
res["empty"] = connect("")[0]
res["v6"] = connect("[::1]:%d" % port)[0]
res["unresolvable"] = connect("no-such-host.invalid:5555")[0]
res["version"] = connect(tcp(srv), version=CONNECT_V2 + 1)[0]
h = ctypes.c_void_p(0)
res["null_params"] = lib.dcgmConnect_v2(b"127.0.0.1", None, P(h))
p = ConnectParams(CONNECT_V2, 0, 1000, 0)
res["null_handle"] = lib.dcgmConnect_v2(tcp(srv).encode(), P(p), None)
lib.dcgmShutdown()
res["uninitialized"] = connect(tcp(srv))[0]
out(res)
''')
    assert r == {
        "tcp": 0, "unix": 0, "unix_missing": d.CONNECTION_NOT_VALID,
        "unix_too_long": d.BADPARAM, "refused": d.CONNECTION_NOT_VALID, "default_port": True,
        "bad_port": d.BADPARAM, "no_port": d.BADPARAM, "empty": d.BADPARAM,
        "v6": d.CONNECTION_NOT_VALID, "unresolvable": d.CONNECTION_NOT_VALID,
        "version": d.VER_MISMATCH, "null_params": d.BADPARAM, "null_handle": d.BADPARAM,
        "uninitialized": d.UNINITIALIZED,
    }


def test_a_lost_engine_invalidates_the_handle_until_reconnected(dcgm: Callable[..., Dcgm]) -> None:
    r = dcgm().run('''
res = {}
srv = engine()
rc, h = connect(tcp(srv))
res["watch"] = watch(h, [(FE_GPU, 0)], [UUID])[0]
res["before"] = lib.dcgmUpdateAllFields(h, 1)
srv.close()   # never accepted: the kernel resets the queued connection
ids = (ctypes.c_uint * 32)(); n = ctypes.c_int(-1)
res["after"] = [lib.dcgmUpdateAllFields(h, 1), lib.dcgmGetAllSupportedDevices(h, ids, P(n)),
                values(h, [(FE_GPU, 0)], [UUID])[0], n.value]
res["disconnect"] = lib.dcgmDisconnect(h)
res["stale_handle"] = lib.dcgmUpdateAllFields(h, 1)
# an engine that accepted and then closed the connection
srv2 = engine()
rc, h2 = connect(tcp(srv2))
peer, _ = srv2.accept()
res["accepted"] = lib.dcgmUpdateAllFields(h2, 1)
peer.close()
res["closed_by_peer"] = lib.dcgmUpdateAllFields(h2, 1)
lib.dcgmDisconnect(h2)
# a new engine: a new connection works, and the old watches are gone with the old one
srv3 = engine()
rc, h3 = connect(tcp(srv3))
res["reconnect"] = rc
res["old_watch"] = values(h3, [(FE_GPU, 0)], [UUID])[1][0]["status"]
out(res)
''')
    assert r["watch"] == 0
    assert r["before"] == 0
    assert r["after"] == [d.CONNECTION_NOT_VALID] * 3 + [-1]
    assert r["disconnect"] == 0
    assert r["stale_handle"] == d.BADPARAM
    assert r["accepted"] == 0
    assert r["closed_by_peer"] == d.CONNECTION_NOT_VALID
    assert r["reconnect"] == 0
    assert r["old_watch"] == d.NOT_WATCHED


def test_persist_after_disconnect_keeps_the_watches(dcgm: Callable[..., Dcgm]) -> None:
    r = dcgm().run('''
srv = engine()
res = {}
for persist in (0, 1):
    rc, h = connect(tcp(srv), persist=persist)
    watch(h, [(FE_GPU, persist)], [GR_ACTIVE], name=b"p%d" % persist)
    lib.dcgmUpdateAllFields(h, 1)
    lib.dcgmDisconnect(h)
rc, h = connect(tcp(srv))
res["after"] = [v["status"] for v in values(h, [(FE_GPU, 0), (FE_GPU, 1)], [GR_ACTIVE])[1]]
# the slot of the persisted connection is reused: its watches stay the engine's
rc, h2 = connect(tcp(srv))
res["reused"] = values(h2, [(FE_GPU, 1)], [GR_ACTIVE])[1][0]["status"]
lib.dcgmShutdown()
lib.dcgmInit()
rc, h3 = connect(tcp(srv))
res["after_shutdown"] = values(h3, [(FE_GPU, 1)], [GR_ACTIVE])[1][0]["status"]
out(res)
''')
    assert r == {"after": [d.NOT_WATCHED, 0], "reused": 0, "after_shutdown": d.NOT_WATCHED}


def test_invalid_handles(dcgm: Callable[..., Dcgm]) -> None:
    r = dcgm().run('''
ids = (ctypes.c_uint * 32)(); n = ctypes.c_int()
out([lib.dcgmGetAllSupportedDevices(h, ids, P(n)) for h in (0, 1, 0x1234501, 2**40)]
    + [lib.dcgmDisconnect(0)])
''')
    assert r == [d.BADPARAM] * 5


# ------------------------------------------------------------------ devices, groups


def test_device_list_matches_nvml(dcgm: Callable[..., Dcgm]) -> None:
    r = dcgm("t4x4").run('''
srv = engine(); rc, h = connect(tcp(srv))
buf = Guarded(ctypes.c_uint, 32); n = ctypes.c_int(-1)
rc = lib.dcgmGetAllSupportedDevices(h, buf.obj, P(n))
N.nvmlInit()
bad = [lib.dcgmGetAllSupportedDevices(h, None, P(n)),
       lib.dcgmGetAllSupportedDevices(h, buf.obj, None)]
out([rc, list(buf.obj[:n.value]), buf.intact(), N.nvmlDeviceGetCount(), bad])
''')
    assert r == [0, [0, 1, 2, 3], True, 4, [d.BADPARAM, d.BADPARAM]]


def test_group_calls_and_their_errors(dcgm: Callable[..., Dcgm]) -> None:
    r = dcgm("t4x4").run('''
srv = engine(); rc, h = connect(tcp(srv))
res = {}
g = ctypes.c_void_p(0)
res["create"] = lib.dcgmGroupCreate(h, GROUP_EMPTY, b"mine", P(g))
res["default_type"] = lib.dcgmGroupCreate(h, 0, b"x", P(ctypes.c_void_p()))
res["null_name"] = lib.dcgmGroupCreate(h, GROUP_EMPTY, None, P(ctypes.c_void_p()))
res["null_out"] = lib.dcgmGroupCreate(h, GROUP_EMPTY, b"x", None)
res["add"] = lib.dcgmGroupAddEntity(h, g, FE_GPU, 3)
res["add_again"] = lib.dcgmGroupAddEntity(h, g, FE_GPU, 3)
res["add_missing_gpu"] = lib.dcgmGroupAddEntity(h, g, FE_GPU, 4)
res["add_missing_instance"] = lib.dcgmGroupAddEntity(h, g, FE_GPU_I, 0)
res["add_bad_kind"] = lib.dcgmGroupAddEntity(h, g, 99, 0)
res["add_unknown_group"] = lib.dcgmGroupAddEntity(h, 12345, FE_GPU, 0)
res["destroy"] = lib.dcgmGroupDestroy(h, g)
res["destroy_again"] = lib.dcgmGroupDestroy(h, g)
made = []
for i in range(70):
    x = ctypes.c_void_p(0)
    made.append(lib.dcgmGroupCreate(h, GROUP_EMPTY, b"n%d" % i, P(x)))
res["limit"] = [made.count(0), made[-1]]
out(res)
''')
    assert r == {
        "create": 0, "default_type": d.NOT_SUPPORTED, "null_name": d.BADPARAM,
        "null_out": d.BADPARAM, "add": 0, "add_again": d.BADPARAM, "add_missing_gpu": d.BADPARAM,
        "add_missing_instance": d.BADPARAM, "add_bad_kind": d.BADPARAM,
        "add_unknown_group": d.NOT_CONFIGURED, "destroy": 0, "destroy_again": d.NOT_CONFIGURED,
        "limit": [64, d.MAX_LIMIT],
    }


def test_field_group_calls_and_their_errors(dcgm: Callable[..., Dcgm]) -> None:
    r = dcgm().run('''
srv = engine(); rc, h = connect(tcp(srv))
res = {}
def mk(n, fields, name):
    f = ctypes.c_void_p(0)
    arr = (ctypes.c_ushort * max(len(fields), 1))(*fields)
    return lib.dcgmFieldGroupCreate(h, n, arr, name, P(f)), f
rc, f = mk(2, [54, 1001], b"a")
res["create"] = rc
res["duplicate_name"] = mk(1, [54], b"a")[0]
res["zero"] = mk(0, [], b"b")[0]
res["too_many"] = mk(129, [54] * 129, b"c")[0]
res["field_zero"] = mk(1, [0], b"d")[0]
res["field_too_big"] = mk(1, [1534], b"e")[0]
res["null_ids"] = lib.dcgmFieldGroupCreate(h, 1, None, b"f", P(ctypes.c_void_p()))
res["null_name"] = mk(1, [54], None)[0]
res["destroy"] = lib.dcgmFieldGroupDestroy(h, f)
res["destroy_again"] = lib.dcgmFieldGroupDestroy(h, f)
res["name_free_again"] = mk(1, [54], b"a")[0]
made = [mk(1, [54], b"n%d" % i)[0] for i in range(70)]
res["limit"] = [made.count(0), made[-1]]
out(res)
''')
    assert r == {
        "create": 0, "duplicate_name": d.DUPLICATE_KEY, "zero": d.BADPARAM,
        "too_many": d.BADPARAM, "field_zero": d.BADPARAM, "field_too_big": d.BADPARAM,
        "null_ids": d.BADPARAM, "null_name": d.BADPARAM, "destroy": 0,
        "destroy_again": d.BADPARAM, "name_free_again": 0, "limit": [63, d.MAX_LIMIT],
    }


# ------------------------------------------------------------------ watches and values


VALUES = '''
srv = engine(); rc, h = connect(tcp(srv))
N.nvmlInit()
n = N.nvmlDeviceGetCount()
ents = [(FE_GPU, i) for i in range(n)]
fields = [UUID, GR_ACTIVE, SM_ACTIVE, DRAM, FP32, PCIE_TX, PCIE_RX, NVLINK_TX, 1013]
wrc = watch(h, ents, fields)[0]
urc = lib.dcgmUpdateAllFields(h, 1)
rc, vals, intact = values(h, ents, fields)
nv = []
for i in range(n):
    d = N.nvmlDeviceGetHandleByIndex(i)
    u = N.nvmlDeviceGetUtilizationRates(d)
    nv.append({"uuid": N.nvmlDeviceGetUUID(d), "util": u.gpu, "mem": u.memory,
               "tx": N.nvmlDeviceGetPcieThroughput(d, 0),
               "rx": N.nvmlDeviceGetPcieThroughput(d, 1)})
out({"rcs": [wrc, urc, rc], "vals": vals, "intact": intact, "nv": nv})
'''


def test_values_follow_nvml_on_the_t4_profile(dcgm: Callable[..., Dcgm]) -> None:
    r = dcgm("t4x4").run(VALUES)
    assert r["rcs"] == [0, 0, 0]
    assert r["intact"]
    vals = r["vals"]
    assert len(vals) == 4 * 9
    assert {v["ver"] for v in vals} == {d.FIELD_VALUE_V2}
    assert all(v["status"] == 0 for v in vals)
    assert all(v["ts"] > 1.6e15 for v in vals)  # microseconds since 1970
    got = {(v["eid"], v["field"]): v for v in vals if v["eg"] == d.FE_GPU}
    assert len(got) == len(vals)
    for i, nv in enumerate(r["nv"]):
        assert got[i, d.UUID]["type"] == "s"
        assert got[i, d.UUID]["value"] == nv["uuid"]
        assert got[i, d.GR_ACTIVE]["type"] == "d"
        # the simulated clock is frozen: the same instant in NVML and in DCGM
        assert got[i, d.GR_ACTIVE]["value"] == pytest.approx(nv["util"] / 100)
        assert got[i, d.DRAM]["value"] == pytest.approx(nv["mem"] / 100)
        assert 0 <= got[i, d.SM_ACTIVE]["value"] <= got[i, d.GR_ACTIVE]["value"]
        assert got[i, d.PCIE_TX]["type"] == "i"
        assert got[i, d.PCIE_TX]["value"] == nv["tx"] * 1024
        assert got[i, d.PCIE_RX]["value"] == nv["rx"] * 1024
        # a T4 has no NVLink: its metric groups do not list the field
        assert got[i, d.NVLINK_TX]["value"] == d.INT64_BLANK + 2
        # a profiling field the stub does not simulate
        assert got[i, 1013]["value"] == d.FP64_BLANK + 2
    assert any(nv["util"] > 0 for nv in r["nv"])


def test_nvlink_rates_on_a_gpu_with_nvlink(dcgm: Callable[..., Dcgm]) -> None:
    r = dcgm("h100x8", frozen_time=None).run('''
srv = engine(); rc, h = connect(tcp(srv))
ents = [(FE_GPU, 0)]
rc = watch(h, ents, [NVLINK_TX, NVLINK_RX])[0]
time.sleep(0.3)
lib.dcgmUpdateAllFields(h, 1)
out([rc, values(h, ents, [NVLINK_TX, NVLINK_RX])[1]])
''')
    assert r[0] == 0
    for v in r[1]:
        assert v["status"] == 0
        assert v["type"] == "i"
        assert 0 < v["value"] < d.INT64_BLANK


def test_value_states_unwatched_not_yet_sampled_and_unwatch(dcgm: Callable[..., Dcgm]) -> None:
    r = dcgm().run('''
srv = engine(); rc, h = connect(tcp(srv))
res = {}
ents = [(FE_GPU, 0)]
res["unwatched"] = values(h, ents, [GR_ACTIVE])[1][0]
w, g, f = watch(h, ents, [GR_ACTIVE], freq=3600 * 10**6)
res["before_update"] = values(h, ents, [GR_ACTIVE])[1][0]
res["live"] = values(h, [(FE_GPU, 1)], [GR_ACTIVE], flags=1)[1][0]
lib.dcgmUpdateAllFields(h, 0)
res["after_update"] = values(h, ents, [GR_ACTIVE])[1][0]
res["unwatch"] = lib.dcgmUnwatchFields(h, g, f)
res["unwatched_again"] = values(h, ents, [GR_ACTIVE])[1][0]
res["unwatch_bad"] = [lib.dcgmUnwatchFields(h, 999, f), lib.dcgmUnwatchFields(h, g, 999)]
res["watch_bad"] = [lib.dcgmWatchFields(h, 999, f, 1000, 1.0, 0),
                    lib.dcgmWatchFields(h, g, 999, 1000, 1.0, 0),
                    lib.dcgmWatchFields(h, g, f, 0, 1.0, 0)]
res["update_bad"] = lib.dcgmUpdateAllFields(h, 2)
E = (EntityPair * 1)(EntityPair(FE_GPU, 0)); F = (ctypes.c_ushort * 1)(GR_ACTIVE)
V = (FieldValue * 1)()
res["get_bad"] = [lib.dcgmEntitiesGetLatestValues(h, None, 1, F, 1, 0, V),
                  lib.dcgmEntitiesGetLatestValues(h, E, 0, F, 1, 0, V),
                  lib.dcgmEntitiesGetLatestValues(h, E, 1, None, 1, 0, V),
                  lib.dcgmEntitiesGetLatestValues(h, E, 1, F, 0, 0, V),
                  lib.dcgmEntitiesGetLatestValues(h, E, 1, F, 1, 0, None)]
out(res)
''')
    blank = d.FP64_BLANK
    assert r["unwatched"]["status"] == d.NOT_WATCHED
    assert r["unwatched"]["value"] == blank
    assert r["before_update"]["status"] == d.NO_DATA
    assert r["before_update"]["value"] == blank
    assert r["live"]["status"] == 0
    assert r["live"]["value"] < blank
    assert r["after_update"]["status"] == 0
    assert r["after_update"]["value"] < blank
    assert r["unwatch"] == 0
    assert r["unwatched_again"]["status"] == d.NOT_WATCHED
    assert r["unwatch_bad"] == [d.NOT_CONFIGURED, d.BADPARAM]
    assert r["watch_bad"] == [d.NOT_CONFIGURED, d.BADPARAM, d.BADPARAM]
    assert r["update_bad"] == d.BADPARAM
    assert r["get_bad"] == [d.BADPARAM] * 5


def test_a_due_watch_is_sampled_by_the_engine_without_an_update_call(
        dcgm: Callable[..., Dcgm]) -> None:
    r = dcgm().run('''
srv = engine(); rc, h = connect(tcp(srv))
ents = [(FE_GPU, 0)]
watch(h, ents, [GR_ACTIVE], freq=100000)
deadline = time.monotonic() + 30
while True:
    v = values(h, ents, [GR_ACTIVE])[1][0]
    if v["status"] == 0 or time.monotonic() > deadline:
        break
    time.sleep(0.05)
out(v)
''')
    assert r["status"] == 0
    assert r["value"] < d.FP64_BLANK


# ------------------------------------------------------------------ MIG


MIG = '''
srv = engine(); rc, h = connect(tcp(srv))
buf = Guarded(MigHierarchy)
buf.obj[0].version = MIG_HIERARCHY_V2
rc = lib.dcgmGetGpuInstanceHierarchy(h, buf.obj)
H = buf.obj[0]
entries = [{"entity": [e.entity.entityGroupId, e.entity.entityId],
            "parent": [e.parent.entityGroupId, e.parent.entityId],
            "uuid": e.info.gpuUuid.decode(), "gpu": e.info.nvmlGpuIndex,
            "gi": e.info.nvmlInstanceId, "ci": e.info.nvmlComputeInstanceId,
            "profile": e.info.nvmlMigProfileId, "slices": e.info.nvmlProfileSlices}
           for e in H.entityList[:H.count]]
bad = MigHierarchy(); bad.version = MIG_HIERARCHY_V2 - 1
errs = [lib.dcgmGetGpuInstanceHierarchy(h, P(bad)), lib.dcgmGetGpuInstanceHierarchy(h, None)]
N.nvmlInit()
nv = []
for i in range(N.nvmlDeviceGetCount()):
    d = N.nvmlDeviceGetHandleByIndex(i)
    uuid = N.nvmlDeviceGetUUID(d)
    try:
        cur = N.nvmlDeviceGetMigMode(d)[0]
    except N.NVMLError:
        cur = 0
    if not cur:
        continue
    for j in range(N.nvmlDeviceGetMaxMigDeviceCount(d)):
        try:
            m = N.nvmlDeviceGetMigDeviceHandleByIndex(d, j)
        except N.NVMLError:
            continue
        mem = N.nvmlDeviceGetMemoryInfo(m)
        nv.append({"gpu": i, "uuid": uuid, "gi": N.nvmlDeviceGetGpuInstanceId(m),
                   "ci": N.nvmlDeviceGetComputeInstanceId(m),
                   "slices": N.nvmlDeviceGetAttributes(m).gpuInstanceSliceCount,
                   "occupancy": mem.used / mem.total})
'''


def test_mig_hierarchy_maps_dcgm_ids_to_nvml_ids(dcgm: Callable[..., Dcgm]) -> None:
    r = dcgm("a100-mig").run(MIG + 'out({"rc": rc, "intact": buf.intact(), "errs": errs, '
                                   '"entries": entries, "nv": nv})')
    assert r["rc"] == 0
    assert r["intact"]
    assert r["errs"] == [d.VER_MISMATCH, d.BADPARAM]
    gis = [e for e in r["entries"] if e["entity"][0] == d.FE_GPU_I]
    cis = [e for e in r["entries"] if e["entity"][0] == d.FE_GPU_CI]
    assert len(gis) == len(cis) == len(r["nv"]) > 0
    # every NVML MIG device appears once, with its GPU's UUID and NVML ids
    assert sorted((e["gpu"], e["uuid"], e["gi"]) for e in gis) == sorted(
        (m["gpu"], m["uuid"], m["gi"]) for m in r["nv"])
    assert sorted((e["gpu"], e["gi"], e["ci"]) for e in cis) == sorted(
        (m["gpu"], m["gi"], m["ci"]) for m in r["nv"])
    for e in gis:
        assert e["parent"] == [d.FE_GPU, e["gpu"]]
        assert e["ci"] == 0xFFFFFFFF
        # DCGM's own ids: GPU id * 7 (an A100's MIG slots) + the instance's position
        assert e["gpu"] * 7 <= e["entity"][1] < (e["gpu"] + 1) * 7
    slices = {(m["gpu"], m["gi"]): m["slices"] for m in r["nv"]}
    assert all(e["slices"] == slices[e["gpu"], e["gi"]] for e in gis)
    gi_ids = {e["entity"][1]: e for e in gis}
    for e in cis:
        assert e["parent"][0] == d.FE_GPU_I
        parent = gi_ids[e["parent"][1]]
        assert (parent["gpu"], parent["gi"]) == (e["gpu"], e["gi"])
    assert len({e["entity"][1] for e in gis}) == len(gis)


def test_mig_values_per_instance_and_gpu_only_fields_from_the_gpu(
        dcgm: Callable[..., Dcgm]) -> None:
    r = dcgm("a100-mig").run(MIG + '''
gi_ents = [tuple(e["entity"]) for e in entries]
gpu_ents = sorted({(FE_GPU, e["gpu"]) for e in entries})
ents = gi_ents + gpu_ents
fields = [GR_ACTIVE, DRAM, PCIE_TX, UUID]
wrc = watch(h, ents, fields)[0]
lib.dcgmUpdateAllFields(h, 1)
rc, vals, intact = values(h, ents, fields)
out({"entries": entries, "nv": nv, "wrc": wrc, "rc": rc, "intact": intact, "vals": vals})
''')
    assert r["wrc"] == 0
    assert r["rc"] == 0
    assert r["intact"]
    vals = {(v["eg"], v["eid"], v["field"]): v for v in r["vals"]}
    occ = {(m["gpu"], m["gi"]): m["occupancy"] for m in r["nv"]}
    for e in r["entries"]:
        eg, eid = e["entity"]
        act = vals[eg, eid, d.GR_ACTIVE]
        assert act["status"] == 0
        assert act["value"] == pytest.approx(occ[e["gpu"], e["gi"]])
        # PCIe is a GPU field: an instance reads its GPU's value
        assert vals[eg, eid, d.PCIE_TX]["value"] == vals[d.FE_GPU, e["gpu"], d.PCIE_TX]["value"]
        assert vals[eg, eid, d.UUID]["value"] == e["uuid"]
    gpus = {e["gpu"] for e in r["entries"]}
    for g in gpus:
        whole = vals[d.FE_GPU, g, d.GR_ACTIVE]
        assert whole["status"] == 0
        weighted = sum(occ[g, e["gi"]] * e["slices"] for e in r["entries"]
                       if e["gpu"] == g and e["entity"][0] == d.FE_GPU_I) / 7
        assert whole["value"] == pytest.approx(weighted)


def test_a_split_gpu_instance_has_one_entry_per_compute_instance(
        dcgm: Callable[..., Dcgm]) -> None:
    run = dcgm("a100-mig")
    run.runner.session.faults.mig_reconfigure(3, ["1c.3g.40gb", "2c.3g.40gb"])
    r = run.run(MIG + """
mine = [e for e in entries if e["gpu"] == 3]
ents = [tuple(e["entity"]) for e in mine]
watch(h, ents, [GR_ACTIVE, DRAM])
lib.dcgmUpdateAllFields(h, 1)
out({"rc": rc, "mine": mine, "nv": [m for m in nv if m["gpu"] == 3],
     "vals": values(h, ents, [GR_ACTIVE, DRAM])[1]})
""")
    assert r["rc"] == 0
    gis = [e for e in r["mine"] if e["entity"][0] == d.FE_GPU_I]
    cis = [e for e in r["mine"] if e["entity"][0] == d.FE_GPU_CI]
    assert len(gis) == 1
    assert len(cis) == 2
    assert gis[0]["slices"] == 3
    assert sorted(e["ci"] for e in cis) == [0, 1]
    assert sorted(e["slices"] for e in cis) == [1, 2]
    assert {e["gi"] for e in cis} == {gis[0]["gi"]}
    assert all(e["parent"] == gis[0]["entity"] for e in cis)
    assert len({e["entity"][1] for e in cis}) == 2
    assert sorted((m["gi"], m["ci"]) for m in r["nv"]) == sorted((e["gi"], e["ci"]) for e in cis)
    assert all(v["status"] == 0 and v["value"] < d.FP64_BLANK for v in r["vals"])


def test_values_of_an_entity_that_does_not_exist(dcgm: Callable[..., Dcgm]) -> None:
    r = dcgm("t4x4").run('''
srv = engine(); rc, h = connect(tcp(srv))
out(values(h, [(FE_GPU, 9), (FE_GPU_I, 0), (FE_GPU_CI, 3)], [GR_ACTIVE], flags=1)[1])
''')
    assert [v["status"] for v in r] == [d.BADPARAM, d.INSTANCE_NOT_FOUND, -46]
    assert all(v["value"] == d.FP64_BLANK + 1 for v in r)


# ------------------------------------------------------------------ profiling metric groups


GROUPS = '''
srv = engine(); rc, h = connect(tcp(srv))
N.nvmlInit()
res = []
for gpu in range(N.nvmlDeviceGetCount()) if "GPUS" not in globals() else GPUS:
    buf = Guarded(MetricGroups)
    buf.obj[0].version = METRIC_GROUPS_V3
    buf.obj[0].gpuId = gpu
    rc = lib.dcgmProfGetSupportedMetricGroups(h, buf.obj)
    m = buf.obj[0]
    res.append({"rc": rc, "intact": buf.intact(),
                "groups": [[g.majorId, g.minorId, list(g.fieldIds[:g.numFieldIds])]
                           for g in m.metricGroups[:m.numMetricGroups]] if rc == 0 else []})
'''

PRE_HOPPER = [[0, 1, [1002, 1003, 1004, 1007]], [0, 2, [1006]], [0, 3, [1008]], [1, 0, [1005]],
              [2, 0, [1009, 1010]], [3, 0, [1001]]]


def test_metric_groups_per_architecture(dcgm: Callable[..., Dcgm]) -> None:
    t4 = dcgm("t4x4").run(GROUPS + "out(res)")
    assert all(g == {"rc": 0, "intact": True, "groups": PRE_HOPPER} for g in t4)
    a100 = dcgm("a100-mig").run(GROUPS + "out(res)")
    assert all(g["groups"] == [*PRE_HOPPER, [4, 0, [1011, 1012]]] for g in a100)
    h100 = dcgm("h100x8").run(GROUPS + "out(res)")
    majors = [grp[0] for grp in h100[0]["groups"]]
    assert len(set(majors)) == len(majors) == 7  # GPM: no two groups exclude each other
    rtx = dcgm("rtx4090").run(GROUPS + "out(res)")
    assert {g["rc"] for g in rtx} == {d.PROFILING_NOT_SUPPORTED}
    errs = dcgm().run(GROUPS + '''
bad = MetricGroups(); bad.version = METRIC_GROUPS_V3; bad.gpuId = 4
old = MetricGroups(); old.version = METRIC_GROUPS_V3 - (1 << 24)
out([lib.dcgmProfGetSupportedMetricGroups(h, P(bad)),
     lib.dcgmProfGetSupportedMetricGroups(h, P(old)),
     lib.dcgmProfGetSupportedMetricGroups(h, None)])
''')
    assert errs == [d.BADPARAM, d.VER_MISMATCH, d.BADPARAM]


def test_profiling_not_available_module_library_and_gpu(dcgm: Callable[..., Dcgm]) -> None:
    run = dcgm("t4x4")
    script = GROUPS + '''
for gpu in range(4):
    w = watch(h, [(FE_GPU, gpu)], [GR_ACTIVE], name=b"w%d" % gpu)[0]
    res[gpu]["watch"] = w
    res[gpu]["uuid_watch"] = watch(h, [(FE_GPU, gpu)], [UUID], name=b"u%d" % gpu)[0]
out(res)
'''
    run.control.module_not_loaded()
    r = run.run(script)
    expect = (d.MODULE_NOT_LOADED, d.MODULE_NOT_LOADED, 0)
    assert [(g["rc"], g["watch"], g["uuid_watch"]) for g in r] == [expect] * 4
    run.control.clear()
    run.control.profiling_not_supported(1)
    run.control.library_error(2)
    r = run.run(script)
    assert [(g["rc"], g["watch"]) for g in r] == [
        (0, 0), (d.PROFILING_NOT_SUPPORTED,) * 2, (d.PROFILING_LIBRARY_ERROR,) * 2, (0, 0)]


def test_multi_pass_conflicts_follow_the_major_groups_and_the_mux(
        dcgm: Callable[..., Dcgm]) -> None:
    run = dcgm("t4x4")
    script = '''
srv = engine(); rc, h = connect(tcp(srv))
ents = [(FE_GPU, 0)]
res = {}
res["one_pass"] = watch(h, ents, [GR_ACTIVE, SM_ACTIVE, DRAM, PCIE_TX, FP32], name=b"a")[0]
res["two_passes"] = watch(h, ents, [FP64], name=b"b")[0]
res["three_passes"] = watch(h, ents, [FP16], name=b"c")[0]
# another connection's watches count too: the profiler is one per GPU
srv2 = engine(); rc, h2 = connect(tcp(srv2))
res["other_gpu"] = watch(h2, [(FE_GPU, 1)], [SM_ACTIVE, FP64, FP16], name=b"d")[0]
out(res)
'''
    assert run.run(script) == {"one_pass": 0, "two_passes": 0, "three_passes": 0,
                               "other_gpu": 0}
    run.control.mux(2)
    assert run.run(script) == {"one_pass": 0, "two_passes": 0,
                               "three_passes": d.PROFILING_MULTI_PASS,
                               "other_gpu": d.PROFILING_MULTI_PASS}
    run.control.mux(1)
    assert run.run(script) == {"one_pass": 0, "two_passes": d.PROFILING_MULTI_PASS,
                               "three_passes": d.PROFILING_MULTI_PASS,
                               "other_gpu": d.PROFILING_MULTI_PASS}
    # the control file's own groups replace the default split
    run.control.metric_groups(None, [MetricGroup(0, 0, (1001,)), MetricGroup(0, 1, (1002,))])
    r = run.run('''
srv = engine(); rc, h = connect(tcp(srv))
out([watch(h, [(FE_GPU, 0)], [GR_ACTIVE], name=b"a")[0],
     watch(h, [(FE_GPU, 0)], [SM_ACTIVE], name=b"b")[0],
     watch(h, [(FE_GPU, 1)], [GR_ACTIVE, SM_ACTIVE], name=b"c")[0]])
''')
    assert r == [0, d.PROFILING_MULTI_PASS, d.PROFILING_MULTI_PASS]


def test_control_groups_per_gpu_are_what_the_probe_returns(dcgm: Callable[..., Dcgm]) -> None:
    run = dcgm("t4x4")
    run.control.metric_groups(2, [MetricGroup(7, 1, (1001, 1002)), MetricGroup(8, 0, (1005,))])
    r = run.run(GROUPS + "out(res)")
    assert r[2]["groups"] == [[7, 1, [1001, 1002]], [8, 0, [1005]]]
    assert r[0]["groups"] == PRE_HOPPER
    # fields missing from a GPU's groups are NOT_SUPPORTED blanks there
    v = run.run('''
srv = engine(); rc, h = connect(tcp(srv))
ents = [(FE_GPU, 2)]
watch(h, ents, [GR_ACTIVE, PCIE_TX])
lib.dcgmUpdateAllFields(h, 1)
out(values(h, ents, [GR_ACTIVE, PCIE_TX])[1])
''')
    assert v[0]["status"] == 0
    assert v[0]["value"] < d.FP64_BLANK
    assert v[1]["status"] == 0
    assert v[1]["value"] == d.INT64_BLANK + 2


# ------------------------------------------------------------------ blanks and statuses


BLANKS = '''
srv = engine(); rc, h = connect(tcp(srv))
ents = [(FE_GPU, 0), (FE_GPU, 1)]
fields = [UUID, GR_ACTIVE, PCIE_TX]
watch(h, ents, fields)
lib.dcgmUpdateAllFields(h, 1)
out(by(values(h, ents, fields)[1]).__repr__())
'''


def _vals(text: str) -> dict[tuple[int, int, int], dict[str, Any]]:
    return eval(text)  # noqa: S307 - the repr of a dict of plain values, written by our script


def test_blank_sentinels_and_per_value_status_from_the_control_file(
        dcgm: Callable[..., Dcgm]) -> None:
    run = dcgm("t4x4")
    run.control.blank(1001, Entity("gpu", 0), "not_supported")
    run.control.blank(1009, Entity("gpu", 0), "not_found")
    run.control.blank(54, Entity("gpu", 0), "not_permissioned")
    run.control.blank(1009, Entity("gpu", 1))
    run.control.status(1001, Entity("gpu", 1), d.PROFILING_LIBRARY_ERROR)
    v = _vals(run.run(BLANKS))
    g = d.FE_GPU
    assert v[g, 0, 1001]["value"] == d.FP64_BLANK + 2
    assert v[g, 0, 1001]["status"] == 0
    assert v[g, 0, 1009]["value"] == d.INT64_BLANK + 1
    assert v[g, 0, 54]["value"] == d.STR_BLANKS[3]
    assert v[g, 1, 1009]["value"] == d.INT64_BLANK
    assert v[g, 1, 1009]["status"] == 0
    assert v[g, 1, 1001]["status"] == d.PROFILING_LIBRARY_ERROR
    assert v[g, 1, 1001]["value"] == d.FP64_BLANK
    assert v[g, 1, 54]["value"].startswith("GPU-")   # untouched
    # every field of every entity
    run.control.clear()
    run.control.blank(None, None, "not_found")
    v = _vals(run.run(BLANKS))
    assert {x["value"] for x in v.values() if x["type"] == "s"} == {d.STR_BLANKS[1]}
    assert {x["value"] for x in v.values() if x["type"] == "d"} == {d.FP64_BLANK + 1}


def test_paused_profiling_publishes_blanks(dcgm: Callable[..., Dcgm]) -> None:
    run = dcgm("t4x4")
    run.control.paused()
    v = _vals(run.run(BLANKS))
    g = d.FE_GPU
    assert v[g, 0, 1001]["value"] == d.FP64_BLANK
    assert v[g, 0, 1001]["status"] == 0
    assert v[g, 0, 1009]["value"] == d.INT64_BLANK
    assert v[g, 0, 54]["value"].startswith("GPU-")   # not a profiling field


def test_the_control_file_is_reread_when_it_changes(dcgm: Callable[..., Dcgm],
                                                    tmp_path: Path) -> None:
    run = dcgm("t4x4")
    ctl = tmp_path / "later.conf"
    r = run.run(f'''
srv = engine(); rc, h = connect(tcp(srv))
ents = [(FE_GPU, 0)]
watch(h, ents, [GR_ACTIVE])
lib.dcgmUpdateAllFields(h, 1)
res = [values(h, ents, [GR_ACTIVE])[1][0]["status"]]
open({str(ctl)!r} + ".tmp", "w").write("status 1001 gpu:0 -37\\n")
os.replace({str(ctl)!r} + ".tmp", {str(ctl)!r})
res.append(values(h, ents, [GR_ACTIVE])[1][0]["status"])
open({str(ctl)!r} + ".tmp", "w").write("this is not valid\\n")
os.replace({str(ctl)!r} + ".tmp", {str(ctl)!r})
res.append(values(h, ents, [GR_ACTIVE])[1][0]["status"])   # the previous behaviour stays
os.unlink({str(ctl)!r})
res.append(values(h, ents, [GR_ACTIVE])[1][0]["status"])   # no file: the default
out(res)
''', **{CONFIG_ENV: str(ctl)})
    assert r == [0, d.PROFILING_LIBRARY_ERROR, d.PROFILING_LIBRARY_ERROR, 0]


@pytest.mark.parametrize(("text", "message"), [
    ("bogus", "line 1: unknown key 'bogus'"),
    ("\n# fine\nmux 0", "line 3: mux takes a number of passes from 1 to 10"),
    ("paused 1", "line 1: paused takes no value"),
    ("library_error 32", "line 1: library_error takes a GPU id or *"),
    ("group 0 1 x 1001", "line 1: group takes GPU MAJOR MINOR FIELD[,FIELD...]"),
    ("group 0 1 0 1001,0", "line 1: group: bad field id '0'"),
    ("blank 1001 gpu:x", "line 1: blank takes FIELD|* ENTITY|* [KIND]"),
    ("blank 1001 * weird", "line 1: blank kind is one of"),
    ("status 1001 gpu:0 5", "line 1: status takes a negative DCGM return code"),
])
def test_an_invalid_control_file_is_reported_with_its_line(
        dcgm: Callable[..., Dcgm], tmp_path: Path, text: str, message: str) -> None:
    ctl = tmp_path / "bad.conf"
    ctl.write_text(text + "\n")
    env = {**dcgm().runner.env, "DCGM_STUB": stub_path(), CONFIG_ENV: str(ctl)}
    script = DPRE + '''
srv = engine(); rc, h = connect(tcp(srv))
buf = MetricGroups(); buf.version = METRIC_GROUPS_V3
out(lib.dcgmProfGetSupportedMetricGroups(h, P(buf)))
'''
    proc = subprocess.run([sys.executable, "-c", "import ctypes, json, sys, time\n"
                           "import pynvml as N\ndef out(x): print(json.dumps(x))\n" + script],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"   # the default behaviour stays
    assert f"libdcgm stub: {ctl}: {message}" in proc.stderr


# ------------------------------------------------------------------ the Python helper


def test_control_writer_renders_the_grammar(tmp_path: Path) -> None:
    ctl = DcgmControl(tmp_path / "c.conf")
    ctl.module_not_loaded()
    ctl.mux(2)
    ctl.profiling_not_supported(3)
    ctl.library_error(None)
    ctl.metric_groups(1, [MetricGroup(0, 1, (1001, 1002))])
    ctl.blank(1005, Entity("gpu_i", 7), "not_permissioned")
    ctl.status(None, None, -37)
    ctl.paused()
    assert (tmp_path / "c.conf").read_text().splitlines()[1:] == [
        "module_not_loaded", "mux 2", "profiling_not_supported 3", "library_error *",
        "group 1 0 1 1001,1002", "blank 1005 gpu_i:7 not_permissioned", "status * * -37",
        "paused"]
    ctl.module_not_loaded(on=False)
    ctl.paused(on=False)
    assert "module_not_loaded" not in ctl.render()
    assert "paused" not in ctl.render()
    ctl.clear()
    assert (tmp_path / "c.conf").read_text().splitlines()[1:] == []
    assert ctl.env == {CONFIG_ENV: str(tmp_path / "c.conf")}


@pytest.mark.parametrize("call", [
    lambda c: c.mux(0), lambda c: c.mux(11), lambda c: c.profiling_not_supported(32),
    lambda c: c.library_error(-1), lambda c: c.blank(0), lambda c: c.blank(1001, None, "x"),
    lambda c: c.status(1001, None, 0), lambda c: c.metric_groups(0, []),
    lambda c: c.metric_groups(0, [MetricGroup(0, 0, (1001,))] * 11),
    lambda c: Entity("vgpu", 0), lambda c: Entity("gpu", -1),
    lambda c: MetricGroup(0, 0, ()), lambda c: MetricGroup(70000, 0, (1001,)),
    lambda c: MetricGroup(0, 0, (1534,)),
])
def test_control_writer_refuses_what_the_stub_would(tmp_path: Path,
                                                    call: Callable[[DcgmControl], Any]) -> None:
    with pytest.raises(SimulatorError):
        call(DcgmControl(tmp_path / "c.conf"))
