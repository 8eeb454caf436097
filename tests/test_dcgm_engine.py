"""The exporter's ctypes binding (gpu_exporter.dcgm) against the stub libdcgm.so.4.

The binding and the stub declare DCGM's API independently (src/gpu_exporter/dcgm.py and
src/gpu_exporter/simulator/dcgm/stub.h), so each call here checks one against the other. The
calls run in a child process on the simulated NVML (the stub reads the process's
libnvidia-ml.so.1, as a host engine would), with a plain listening socket as the engine; the
child compares what the binding returns with what pynvml says about the same GPUs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from gpu_exporter.simulator import prepare
from gpu_exporter.simulator.dcgm import DcgmControl, Entity, library_path

SCRIPT = r'''
import json, socket, sys
import pynvml
from gpu_exporter import dcgm

out = {}
api = dcgm.Dcgm(dcgm.load_library(sys.argv[1]))
closed = socket.socket(); closed.bind(("127.0.0.1", 0)); port = closed.getsockname()[1]
closed.close()
try:
    api.connect(f"127.0.0.1:{port}", unix_socket=False, timeout_ms=2000)
except dcgm.DcgmError as exc:
    out["refused"] = [exc.function, exc.code, bool(exc.text)]
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(4)
h = api.connect(f"127.0.0.1:{srv.getsockname()[1]}", unix_socket=False, timeout_ms=2000)
out["devices"] = list(api.supported_devices(h))

pynvml.nvmlInit()
nvml_gi = set()
nvml_util = {}
for i in range(pynvml.nvmlDeviceGetCount()):
    dev = pynvml.nvmlDeviceGetHandleByIndex(i)
    uuid = pynvml.nvmlDeviceGetUUID(dev)
    try:
        current, _ = pynvml.nvmlDeviceGetMigMode(dev)
    except pynvml.NVMLError:
        current = 0
    if current:
        for k in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(dev)):
            try:
                mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(dev, k)
            except pynvml.NVMLError:
                continue
            nvml_gi.add((uuid, i, pynvml.nvmlDeviceGetGpuInstanceId(mig)))
    else:
        nvml_util[i] = pynvml.nvmlDeviceGetUtilizationRates(dev).gpu
out["nvml_gi"] = sorted(nvml_gi)
hier = api.mig_hierarchy(h)
out["dcgm_gi"] = sorted((m.gpu_uuid, m.gpu_index, m.instance_id) for m in hier
                        if m.entity_group == dcgm.FE_GPU_I)
out["gi_parents"] = sorted({(m.parent_group, m.parent_id == m.gpu_index) for m in hier
                            if m.entity_group == dcgm.FE_GPU_I})
out["ci_parents_are_gis"] = all(
    any(p.entity_group == dcgm.FE_GPU_I and p.entity_id == m.parent_id
        and p.instance_id == m.instance_id for p in hier)
    for m in hier if m.entity_group == dcgm.FE_GPU_CI)
out["has_ci"] = any(m.entity_group == dcgm.FE_GPU_CI for m in hier)

groups = api.metric_groups(h, 3)
out["groups"] = [[g.major, g.minor, list(g.field_ids)] for g in groups]

grp = api.group_create(h, "g")
for gpu in (3, 4):
    api.group_add_entity(h, grp, dcgm.FE_GPU, gpu)
fg = api.field_group_create(h, [1001, 1003, 1009], "f")
api.watch(h, grp, fg, 1_000_000, 600.0, 0)
api.update_all(h, wait=True)
vals = api.latest_values(h, [(dcgm.FE_GPU, 3), (dcgm.FE_GPU, 4)], [1001, 1003, 1009])
out["values"] = [[v.entity_group, v.entity_id, v.field_id, v.status, v.value, v.blank]
                 for v in vals]
out["util"] = {str(k): v for k, v in nvml_util.items()}
api.unwatch(h, grp, fg)
api.field_group_destroy(h, fg)
api.group_destroy(h, grp)
try:
    api.metric_groups(h, 99)
except dcgm.DcgmError as exc:
    out["bad_gpu"] = exc.code
out["module_text"] = api.error_string(dcgm.ST_MODULE_NOT_LOADED)
api.disconnect(h)
api.shutdown()
print(json.dumps(out))
'''


def _run(tmp_path: Path, control: DcgmControl) -> dict[str, Any]:
    session = prepare("a100-mig", state_dir=tmp_path / "sim", frozen_time=1000.0)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DCGM_", "GPU_"))}
    env.update(session.env)
    env.update(control.env)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(library_path())],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_binding_reads_the_stub_engine_like_nvml_describes_the_gpus(tmp_path: Path) -> None:
    control = DcgmControl(tmp_path / "dcgm.conf")
    control.blank(1003, Entity("gpu", 4), "not_supported")
    control.status(1009, Entity("gpu", 4), -37)
    out = _run(tmp_path, control)
    assert out["refused"] == ["dcgmConnect_v2", -21, True]
    assert out["devices"] == list(range(8))
    # every NVML GPU instance, and only those, under DCGM's own entity ids
    assert out["nvml_gi"]
    assert out["dcgm_gi"] == out["nvml_gi"]
    assert out["gi_parents"] == [[1, True]]
    assert out["has_ci"]
    assert out["ci_parents_are_gis"]
    fields = {f for _major, _minor, ids in out["groups"] for f in ids}
    assert {1001, 1002, 1005, 1009} <= fields
    values = {(eg, eid, fid): (status, value, blank)
              for eg, eid, fid, status, value, blank in out["values"]}
    assert values[(1, 3, 1001)] == (0, out["util"]["3"] / 100, None)
    assert values[(1, 4, 1001)] == (0, out["util"]["4"] / 100, None)
    assert values[(1, 3, 1003)][0] == 0
    assert values[(1, 4, 1003)] == (0, None, "not_supported")
    assert values[(1, 4, 1009)][0] == -37
    assert values[(1, 4, 1009)][1] is None
    assert isinstance(values[(1, 3, 1009)][1], float)
    assert out["bad_gpu"] < 0
    assert out["module_text"]
