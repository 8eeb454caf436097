"""The machine of the workload benchmarks: simulated ``h100x8`` with scripted GPU processes.

Used by bench/test_workload_cycle.py and bench/workload_breakdown.py: ``per_gpu`` processes on
every GPU, ``containers`` pod containers per GPU, each process with a fake
``/proc/<pid>/cgroup`` (containerd, systemd driver) under one pod UID.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from gpu_exporter.counters import load_counters
from gpu_exporter.nvml import Nvml
from gpu_exporter.simulator import FaultInjector
from gpu_exporter.simulator.procfs import cgroup_text, write_tree

UID = "0b7e1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4"


def scripted_machine(
    prefix: str, *, gpus: int = 8, per_gpu: int = 48, containers: int = 12,
) -> tuple[Path, Nvml, frozenset[int]]:
    """A fresh state directory, NVML on it, and the default counters' field ids.

    Returns the directory (its ``proc`` holds the fake procfs), the NVML wrapper and the fields.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    (root / "proc").mkdir()
    fields = frozenset(spec.field_id for spec in load_counters("counters/default-counters.csv"))
    nvml = Nvml(simulate="h100x8", state_dir=root / "sim")
    faults = FaultInjector(root / "sim")
    tree: dict[int, str | None] = {}
    for gpu in range(gpus):
        for i in range(per_gpu):
            pid = 100_000 + gpu * 1000 + i
            tree[pid] = cgroup_text("kubepods-containerd-systemd", pod_uid=UID,
                                    container_id=f"{gpu:02x}{i % containers:02x}" * 16)
            faults.add_process(pid, gpu, mem_mib=100 + i, sm=1 + i % 2, mem=1, dec=0)
    write_tree(root / "proc", tree)
    time.sleep(0.3)  # the library picks the processes up within ~100 ms
    return root, nvml, fields
