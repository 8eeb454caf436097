"""The workload collector's compiled read (one C call per GPU: the per-process NVML reads,
the sums and the rows) gives the rows of its Python paths, to the bit.

Three collectors on one simulated machine, called one after another with the same cycle's
inputs (the DCGM samples and field readings of each GPU): the exporter's (the compiled read,
``fastpath.CReads``), one reading through ``nvml.ProcessReader`` in Python (the C sums and
rows), and one wholly in Python (``fastpath.PythonRows``, as without the library). The
simulated library answers the same within one process-sample period (1/6 s), so every call
that fits in one is compared: the same blocks, names, labels and values (as hex floats), or
the same error. A call that straddles the start of a period is not compared, and the three
forget that GPU (their windows and energy counters would differ from there on) and start it
afresh. The steps (hypothesis) change the processes (kinds, MIG instances, lists that
grow past the reused buffers, PIDs that leave), fail each per-process call by fault injection
(an error, NOT_SUPPORTED), and the compiled call must have made the rows itself in many cycles.

Runs in its own interpreter (pynvml loads one library per process).
"""

from __future__ import annotations

from simproc import run_snippet

SNIPPET = r'''
import tempfile, traceback
from collections import Counter
from pathlib import Path
from hypothesis import given, settings, strategies as st, HealthCheck
from gpu_exporter.collectors.workload import WorkloadCollector
from gpu_exporter.config import WorkloadSettings
from gpu_exporter.fastpath import CReads, PythonRows
from gpu_exporter.nvml import NvmlError
from gpu_exporter.simulator import FaultInjector
from gpu_exporter.simulator.procfs import cgroup_text, write_tree

P = 166_666  # the simulator's process-sample period (us)
root = Path(tempfile.mkdtemp())
procfs = root / "proc"
procfs.mkdir()
nvml = Nvml(simulate="a100-mig", state_dir=root / "sim")
faults = FaultInjector(root / "sim")
answers = Counter()

class Counting(CReads):
    def __call__(self, *args):
        answer = super().__call__(*args)
        answers["rows" if not isinstance(answer, int) else answer] += 1
        return answer

def collector(reads, rows=None):
    made = WorkloadCollector(WorkloadSettings(procfs_root=str(procfs)))
    assert made._reads is not None  # the library is built: the exporter reads compiled
    made._reads = reads
    if rows is not None:
        made._values = rows
    return made

VARIANTS = (collector(Counting()), collector(None), collector(None, PythonRows()))
compared, skipped = Counter(), [0]
mismatches = []

def block(rows):
    return [[rows.entity.gpu, rows.entity.gi_id, list(rows.names),
             [list(labels) for labels in rows.labels],
             [[float(v).hex() for v in column] for column in rows.values]]]

class Three:
    """The sampler's workload collector: the three variants on the same inputs."""
    name = "workload"

    def collect(self, view, readings, samples=()):
        samples = list(samples)
        start = time.time()
        outs = []
        for variant in VARIANTS:
            try:
                outs.append(["rows", [b for rows in variant.collect(view, readings, samples)
                                      for b in block(rows)]])
            except NvmlError as exc:
                outs.append(["error", type(exc).__name__, exc.function, exc.code])
        end = time.time()
        if int(start * 1e6 - 3000) // P != int(end * 1e6 + 3000) // P:
            # a sample period began between the reads: not the same answers, so the three
            # keep different windows and energy counters from here; all three start this GPU
            # afresh, to compare again from the next cycle
            skipped[0] += 1
            for variant in VARIANTS:
                variant.reset(view.entity.gpu)
        elif outs[0] == outs[1] == outs[2]:
            compared[outs[0][0]] += 1
        else:
            mismatches.append([view.entity.gpu, outs])
        if outs[0][0] == "error":
            raise NvmlError(outs[0][2], outs[0][3])
        return []  # the sampler's own series are not what this test compares

    def reset(self, gpu):
        for variant in VARIANTS:
            variant.reset(gpu)

    def close(self):
        for variant in VARIANTS:
            variant.close()

sampler = Sampler(nvml=nvml, fields=default_fields(), events=False, workloads=Three())
UID = "0b7e1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4"
tree = {}
next_pid = [20000]
running = []  # (pid, gpu)

def start(gpu, kind, instance, count, mem_mib, sm):
    for _ in range(count):
        pid = next_pid[0]
        next_pid[0] += 1
        tree[pid] = cgroup_text("kubepods-containerd-systemd", pod_uid=UID,
                                container_id=f"{pid % 5:02x}" * 32)
        write_tree(procfs, {pid: tree[pid]})
        faults.add_process(pid, gpu, kind=kind, instance=instance, mem_mib=mem_mib, sm=sm,
                           mem=sm // 2, dec=sm % 7)
        running.append((pid, gpu))

CHECKS = {  # a function's fault, as a plain read sees it
    "nvmlDeviceGetMPSComputeRunningProcesses_v3": lambda h: nvml.running_processes_raw(h, "mps"),
    "nvmlDeviceGetComputeRunningProcesses_v3": lambda h: nvml.running_processes_raw(h, "compute"),
    "nvmlDeviceGetGraphicsRunningProcesses_v3": lambda h: nvml.running_processes_raw(h, "graphics"),
    "nvmlDeviceGetMemoryInfo_v2": lambda h: nvml.memory_info(h),
    "nvmlDeviceGetProcessUtilization": lambda h: nvml.process_utilization_raw(h, 0),
    "nvmlDeviceGetDecoderUtilization": lambda h: nvml.decoder_utilization(h),
}

def answer(check, handle):
    try:
        return ["value", check(handle) is None]
    except NvmlError as exc:
        return ["error", exc.code]

step = st.one_of(
    st.tuples(st.just("start"), st.sampled_from([3, 4]),
              st.sampled_from(["compute", "compute", "graphics", "mps"]),
              st.integers(1, 24), st.integers(0, 4000), st.integers(0, 60)),
    st.tuples(st.just("mig"), st.sampled_from([0, 1]), st.integers(1, 5)),
    st.tuples(st.just("stop"), st.integers(1, 20)),
    st.tuples(st.just("fault"), st.sampled_from(sorted(CHECKS)),
              st.sampled_from(["error", "unsupported"])),
)

def cycles(count):
    for _ in range(count):
        sampler.collect_once()
        time.sleep(0.2)

@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(st.lists(step, min_size=2, max_size=5))
def prop(steps):
    for action in steps:
        if action[0] == "start":
            _, gpu, kind, count, mem_mib, sm = action
            start(gpu, kind, None, count, mem_mib, sm)
        elif action[0] == "mig":
            _, gpu, count = action
            start(gpu, "compute", nvml.probe(gpu).instances[0].entity.gi_id, count, 100, 0)
        elif action[0] == "stop":
            for pid, _ in running[:action[1]]:
                faults.remove_process(pid)
            del running[:action[1]]
        time.sleep(0.25)  # the library picks the change up within ~100 ms
        if action[0] == "fault":
            _, function, how = action
            handle = nvml.handle(3)
            before = answer(CHECKS[function], handle)
            if how == "error":
                faults.error(3, function, 999)
                wait_until(lambda: answer(CHECKS[function], handle) == ["error", 999])
            else:
                faults.unsupported(3, function)
                wait_until(lambda: answer(CHECKS[function], handle) == ["value", True])
            cycles(2)
            faults.clear()
            wait_until(lambda: answer(CHECKS[function], handle) == before)
        cycles(3)

try:
    cycles(3)
    prop()
    out["ok"] = True
except Exception:
    out["ok"] = False
    out["error"] = traceback.format_exc()[-4000:]
out["compared"] = dict(compared)
out["skipped"] = skipped[0]
out["mismatches"] = mismatches[:3]
out["answers"] = {str(k): v for k, v in answers.items()}
sampler.close()
'''


def test_the_compiled_read_gives_the_rows_of_the_python_paths() -> None:
    out = run_snippet(SNIPPET, timeout=900)
    assert out["ok"], out.get("error")
    assert out["mismatches"] == []
    assert out["compared"].get("rows", 0) >= 200  # 8 GPUs a cycle, some skipped
    assert out["compared"].get("error", 0) >= 1  # the injected errors, raised alike
    answers = out["answers"]
    assert answers.get("rows", 0) >= 30  # the compiled call made the rows itself
    assert answers.get("3", 0) >= 5  # lists that changed: read, the rows made again
    assert answers.get("5", 0) >= 1  # no sample newer: the last period's values kept
    assert answers.get("4", 0) >= 1  # answers carried on by the reader's rules


STOPPED = r'''
import tempfile
from collections import Counter
from pathlib import Path
from gpu_exporter.collectors.workload import DECODER, ENCODER, WorkloadCollector
from gpu_exporter.config import WorkloadSettings
from gpu_exporter.fastpath import CReads
from gpu_exporter.nvml import CODER_CALL, READ_CALLS
from gpu_exporter.simulator import FaultInjector
from gpu_exporter.simulator.procfs import cgroup_text, write_tree

root = Path(tempfile.mkdtemp())
procfs = root / "proc"
procfs.mkdir()
nvml = Nvml(simulate="a100-mig", state_dir=root / "sim")  # A100: a decoder, no encoder
faults = FaultInjector(root / "sim")
stops = Counter()

class Counting(CReads):
    def __call__(self, state, *args):
        answer = super().__call__(state, *args)
        if state.failed < READ_CALLS:
            stops["before the coders" if state.failed < CODER_CALL else "at a coder"] += 1
        return answer

made = WorkloadCollector(WorkloadSettings(procfs_root=str(procfs)))
assert made._reads is not None  # the library is built: the exporter reads compiled
made._reads = Counting()
names = []

class Recording:
    name = "workload"

    def collect(self, view, readings, samples=()):
        blocks = made.collect(view, readings, samples)
        names.extend([view.entity.gpu, list(rows.names)] for rows in blocks
                     if rows.entity is not None and rows.entity.gpu == 3)
        return blocks

    def reset(self, gpu):
        made.reset(gpu)

    def close(self):
        made.close()

sampler = Sampler(nvml=nvml, fields=default_fields(), events=False, workloads=Recording())
pid = 30000


def start(count):
    global pid
    for _ in range(count):
        write_tree(procfs, {pid: cgroup_text("kubepods-containerd-systemd",
                                             pod_uid="0b7e1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4",
                                             container_id=f"{pid % 5:02x}" * 32)})
        faults.add_process(pid, 3, mem_mib=10, sm=1 + pid % 40, mem=5, dec=3)
        pid += 1
    time.sleep(0.25)  # the library picks the change up within ~100 ms


def cycles(count):
    for _ in range(count):
        sampler.collect_once()
        time.sleep(0.2)


start(2)
cycles(3)  # read in Python first, then compiled
# the compute list outgrows its buffer (16 entries, then 2 x 17 + 5) in two reads in a row:
# each compiled read stops at that list, the second one in a new read state (none of its
# calls answered yet)
start(15)
cycles(1)
start(23)
cycles(4)
out["names"] = names
out["stops"] = dict(stops)
sampler.close()
'''


def test_a_read_stopped_before_the_coders_reads_them_after_the_rest() -> None:
    """A compiled read that stopped before the encoder's and decoder's calls (here: a process
    list outgrew its buffer) reads them after the rest, as the Python read does: on an A100 (no
    encoder) the encoder family never appears, the decoder family always does."""
    out = run_snippet(STOPPED, timeout=300)
    assert out["stops"].get("before the coders", 0) >= 2, out["stops"]  # the case under test
    blocks = out["names"]
    assert len(blocks) >= 8
    assert all("gpu_exporter_workload_encoder_utilization_ratio" not in names
               for _, names in blocks), blocks
    assert all("gpu_exporter_workload_decoder_utilization_ratio" in names
               for _, names in blocks), blocks
