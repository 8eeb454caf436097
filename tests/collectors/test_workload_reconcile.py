"""Reconciliation property (hypothesis): for random process sets on a simulated GPU, the
per-workload rows plus ``unattributed`` equal the device's value for every family, each row is
what its processes make it, and every energy counter only grows; with the C fast path (the
sums and the rows' values), which the exporter loads.

Runs in its own interpreter (pynvml loads one library per process): the real Sampler with the
workload collector, real pynvml on the simulated NVML, scripted processes and a fake procfs.
"""

from __future__ import annotations

from simproc import run_snippet

PROPERTY = r'''
import math, tempfile, traceback
from pathlib import Path
from hypothesis import given, settings, strategies as st, HealthCheck
from gpu_exporter.collectors.workload import WorkloadCollector
from gpu_exporter.config import WorkloadSettings
from gpu_exporter.fastpath import CRows
from gpu_exporter.simulator import FaultInjector
from gpu_exporter.simulator.procfs import cgroup_text, write_tree

root = Path(tempfile.mkdtemp())
procfs = root / "proc"
procfs.mkdir()
nvml = Nvml(simulate="h100x8", state_dir=root / "sim")
faults = FaultInjector(root / "sim")
collector = WorkloadCollector(WorkloadSettings(procfs_root=str(procfs)))
# the property holds for the C fast path the exporter runs (tests/test_fastpath.py holds the
# Python fallback identical to it)
assert isinstance(collector._values, CRows)
sampler = Sampler(nvml=nvml, fields=default_fields(), events=False, workloads=collector)
MIB = 1 << 20
UID = "0b7e1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4"
FORMS = {  # cgroup text -> the workload label it must give (None: unattributed)
    "pod-a": (cgroup_text("kubepods-containerd-systemd", pod_uid=UID, container_id="a1" * 32),
              "a1a1a1a1a1a1"),
    "pod-b": (cgroup_text("kubepods-crio-cgroupfs", pod_uid=UID, container_id="b2" * 32),
              "b2b2b2b2b2b2"),
    "docker": (cgroup_text("docker-cgroupfs", version=1, container_id="c3" * 32),
               "c3c3c3c3c3c3"),
    "slurm": (cgroup_text("slurm", version=1, uid=1000, job=77), "77"),
    "unit": (cgroup_text("systemd-service", unit="render"), "render.service"),
    "session": (cgroup_text("user-session", uid=1000, session=4), None),
    "unreadable": (None, None),
    "gone": ("", None),  # no /proc entry at all
}
FAMILIES = {"gpu_exporter_workload_sm_utilization_ratio": (203, "sm"),
            "gpu_exporter_workload_memory_utilization_ratio": (204, "mem"),
            "gpu_exporter_workload_decoder_utilization_ratio": (207, "dec")}
servers = range(900, 990)  # the simulator's MPS server PID (hashed from the GPU's seed)
write_tree(procfs, dict.fromkeys(servers, cgroup_text("systemd-service", unit="nvidia-mps")),
           names=dict.fromkeys(servers, "nvidia-cuda-mps-server"))
faults.add_process(9999, 0)  # GPU 0 runs scripted processes from now on (idle when cleared)
faults.clear_processes(0)
round_no = [0]
checked = [0]

def rows(cycle, name, gpu=0):
    out = {}
    for n in cycle.natives:
        if n.name == name and n.entity is not None and n.entity.gpu == gpu:
            labels = dict(n.labels)
            out[(labels["workload"], labels.get("pid"))] = n.value
    return out

def device(cycle, fid, gpu=0):
    values = [s.value for s in cycle.samples if s.field_id == fid and s.entity.gpu == gpu]
    assert len(values) == 1, (fid, values)
    return values[0]

def check_sums(cycle, gpu):
    for family, (fid, _) in FAMILIES.items():
        got = rows(cycle, family, gpu)
        assert ("unattributed", None) in got, family
        assert math.isclose(sum(got.values()), device(cycle, fid, gpu) / 100, abs_tol=1e-9), \
            (family, got, device(cycle, fid, gpu))
        assert all(v >= 0 for v in got.values())
    memory = rows(cycle, "gpu_exporter_workload_memory_used_bytes", gpu)
    assert math.isclose(sum(memory.values()), device(cycle, 252, gpu) * MIB, abs_tol=MIB), memory

def check_energy(before, after):
    e0, e1 = rows(before, "gpu_exporter_workload_energy_joules_total"), \
        rows(after, "gpu_exporter_workload_energy_joules_total")
    for key, value in e1.items():
        if key in e0:
            assert value >= e0[key], ("energy went back", key, e0[key], value)
    grown = sum(e1[k] - e0.get(k, 0.0) for k in e1 if k in e0)
    dev = (device(after, 156) - device(before, 156)) / 1000
    assert set(e1) >= set(e0) - {k for k in e0 if k not in e1}
    if set(e1) == set(e0):
        assert math.isclose(grown, dev, rel_tol=1e-9, abs_tol=1e-6), (grown, dev)

process = st.fixed_dictionaries({
    "kind": st.sampled_from(["compute", "compute", "graphics", "mps"]),
    "form": st.sampled_from(sorted(FORMS)),
    "mem_mib": st.integers(0, 4000),
    "sm": st.integers(0, 60),
    "mem": st.integers(0, 40),
    "dec": st.integers(0, 20),
})

@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(st.lists(process, min_size=0, max_size=7))
def prop(procs):
    round_no[0] += 1
    base = 10000 + 100 * round_no[0]
    faults.clear_processes(0)
    tree = {}
    for i, p in enumerate(procs):
        text, _ = FORMS[p["form"]]
        if text != "":
            tree[base + i] = text
    write_tree(procfs, tree)
    for i, p in enumerate(procs):
        faults.add_process(base + i, 0, kind=p["kind"], mem_mib=p["mem_mib"], sm=p["sm"],
                           mem=p["mem"], dec=p["dec"])
    time.sleep(0.3)            # the library picks the change up within ~100 ms
    first = sampler.collect_once()   # absorbs the window in which the set changed
    check_sums(first, 0)
    time.sleep(0.45)
    second = sampler.collect_once()  # a window of whole sample periods of this set
    check_sums(second, 0)
    check_sums(second, 1)       # a GPU with its seeded processes: all unattributed
    check_energy(first, second)
    # each row is what its processes make it
    expect_count, expect_mem, expect_util = {}, {}, {f: {} for f in FAMILIES}
    for i, p in enumerate(procs):
        name = FORMS[p["form"]][1] or "unattributed"
        expect_count[name] = expect_count.get(name, 0) + 1
        expect_mem[name] = expect_mem.get(name, 0) + p["mem_mib"] * MIB
        for family, (_, key) in FAMILIES.items():
            expect_util[family][name] = expect_util[family].get(name, 0) + p[key]
    counts = {k[0]: v for k, v in rows(second, "gpu_exporter_workload_processes").items()}
    assert counts == {**{"unattributed": 0}, **expect_count}, (counts, expect_count)
    memory = {k[0]: v for k, v in rows(second, "gpu_exporter_workload_memory_used_bytes").items()}
    assert memory == {**{"unattributed": 0}, **expect_mem}, (memory, expect_mem)
    for family, per in expect_util.items():
        total = sum(per.values())
        scale = min(1.0, 100 / total) if total else 1.0
        got = {k[0]: v for k, v in rows(second, family).items()}
        for name, value in per.items():
            assert math.isclose(got.get(name, 0.0), value / 100 * scale, abs_tol=1e-9), \
                (family, name, got, per)
    checked[0] += 1

try:
    prop()
    out["ok"] = True
except Exception:
    out["ok"] = False
    out["error"] = traceback.format_exc()[-4000:]
out["checked"] = checked[0]
sampler.close()
'''


def test_per_workload_rows_reconcile_with_the_device_for_random_process_sets() -> None:
    out = run_snippet(PROPERTY, timeout=600)
    assert out["ok"], out.get("error")
    assert out["checked"] >= 12
