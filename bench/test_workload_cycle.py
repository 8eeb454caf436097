"""CPU added per collection cycle by --workload-metrics: 8 GPUs x 48 processes, warm PID cache.

Run (figures go to bench/RESULTS.md):

    .venv/bin/pytest bench/test_workload_cycle.py --benchmark-enable -s

Two samplers on the same simulated ``h100x8`` machine (one process: pynvml loads one library),
the default counters, 48 scripted processes on every GPU (12 pod containers x 4 processes,
each with a fake ``/proc/<pid>/cgroup``). One samples with the workload collector, the other
without; their cycles alternate, so both see the same load, and each is timed with
``time.process_time`` (CPU of this process; the simulated library runs in it too, about a
microsecond per NVML call). The added CPU is the median of each round's difference (with
minus without, measured a few milliseconds apart), which this shared machine's load moves
far less than the difference of the two medians (also printed). The PID cache is warm: the
processes run throughout, so after the first cycle no ``/proc`` file is read.

How many process-utilisation samples a cycle reads: one per process (nvml.h: "one utilization
sample structure is returned per process running"; the simulator answers so since the fifth
round of issue 10, before which it returned one per process and 1/6 s period, up to 5,760 per
GPU for 20 s), so 48 per GPU whatever the interval. The benchmark runs the cycles
``INTERVAL_S`` apart, and 20 s apart (as with ``-c 30000``, the default interval, where the PID
cache and every layout are as warm but the CPU caches colder).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from targets import target
from workload_setup import scripted_machine

from gpu_exporter import fastpath
from gpu_exporter import nvml as nvml_module
from gpu_exporter.collectors.workload import WorkloadCollector
from gpu_exporter.config import WorkloadSettings
from gpu_exporter.nvml import Nvml
from gpu_exporter.sampler import Sampler

GPUS = 8
PER_GPU = 48
CONTAINERS = 12
ROUNDS = 40
FULL_ROUNDS = 5
INTERVAL_S = 1.0


@pytest.fixture(scope="module")
def samplers() -> Iterator[tuple[Sampler, Sampler]]:
    root, nvml, fields = scripted_machine(
        "gpx-wl-bench-", gpus=GPUS, per_gpu=PER_GPU, containers=CONTAINERS)
    _time_per_process_calls(nvml)
    plain = Sampler(nvml=nvml, fields=fields, events=False)
    workloads = Sampler(nvml=nvml, fields=fields, events=False, workloads=WorkloadCollector(
        WorkloadSettings(procfs_root=str(root / "proc"))))
    for _ in range(3):  # prime rates, caches and the PID cache
        plain.collect_once()
        workloads.collect_once()
    try:
        yield plain, workloads
    finally:
        workloads.close()
        plain.close()
        nvml.close()


NVML_SPENT = [0.0]
"""Wall time inside the per-process NVML calls (lists, process utilisation) so far; with the
compiled read (``fastpath.CReads``, since issue 10's sixth round) that whole call, whose
sums and rows cannot be timed apart from its NVML calls."""


def _timed(call: Any) -> Any:
    """``call``, adding its wall time to :data:`NVML_SPENT` (a function or a method)."""

    def timed(*args: object) -> Any:
        start = time.perf_counter()
        try:
            return call(*args)
        finally:
            NVML_SPENT[0] += time.perf_counter() - start

    return timed


def _time_per_process_calls(nvml: Nvml) -> None:
    """Count the time spent in the calls only the workload collector makes (the simulated
    library's share of the cost: a real driver's would differ)."""
    for name in ("running_processes_raw", "process_utilization_view"):
        if not hasattr(nvml, name):  # an older tree (the baseline run), before the view
            name = "process_utilization_raw"  # noqa: PLW2901
        setattr(nvml, name, _timed(getattr(nvml, name)))
    reader = getattr(nvml_module, "ProcessReader", None)  # the collector's reads since f2f8403
    for name in ("lists", "samples") if reader is not None else ():
        setattr(reader, name, _timed(getattr(reader, name)))
    compiled = getattr(fastpath, "CReads", None)
    if compiled is not None:
        compiled.__call__ = _timed(compiled.__call__)


def _cpu(sampler: Sampler) -> tuple[float, int, float]:
    """CPU of one cycle, its workload series, the workload collector's own time (all GPUs)."""
    start = time.process_time()
    cycle = sampler.collect_once()
    cpu = time.process_time() - start
    rows = sum(1 for n in cycle.natives if n.name.startswith("gpu_exporter_workload_"))
    own = sum(n.value for n in cycle.natives
              if n.name == "gpu_exporter_collector_duration_seconds"
              and n.labels == (("collector", "workload"),))
    return cpu, rows, own


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _run(plain: Sampler, workloads: Sampler, rounds: int, interval: float) -> tuple[
        float, float, float, int, float, float]:
    """Medians of: CPU without, CPU with, the added CPU of each round (with minus without,
    the paired figure: a round's load is in both), workload rows, collector time, NVML."""
    base: list[float] = []
    more: list[float] = []
    own: list[float] = []
    calls: list[float] = []
    rows = 0
    for _ in range(rounds):
        time.sleep(interval)  # one interval between two cycles
        base.append(_cpu(plain)[0])
        before = NVML_SPENT[0]
        cpu, rows, spent = _cpu(workloads)
        more.append(cpu)
        own.append(spent)
        calls.append(NVML_SPENT[0] - before)
    added = _median([b - a for a, b in zip(base, more, strict=True)])
    return _median(base), _median(more), added, rows, _median(own), _median(calls)


def test_cpu_added_per_cycle(samplers: tuple[Sampler, Sampler]) -> None:
    plain, workloads = samplers
    base, more, added, rows, own, calls = _run(plain, workloads, ROUNDS, INTERVAL_S)
    print(f"\n{GPUS} GPUs x {PER_GPU} processes, cycles {INTERVAL_S:g} s apart, median of "
          f"{ROUNDS}: without --workload-metrics {base * 1e3:.3f} ms CPU per cycle, with "
          f"{more * 1e3:.3f} ms ({rows} workload series): added {added * 1e3:.3f} ms (median "
          f"of the rounds' differences; of the medians {(more - base) * 1e3:.3f} ms), "
          f"ratio {more / base:.2f}; the workload collector's own wall time "
          f"{own * 1e3:.3f} ms (all GPUs), of which {calls * 1e3:.3f} ms in the per-process "
          "NVML calls (simulated library and pynvml/ctypes; the compiled read: the whole "
          "call)")
    target(f"CPU added per cycle by --workload-metrics, 8x48 processes, {INTERVAL_S:g} s "
           "interval", added * 1e3, 0.5, "ms")
    assert rows > 0


def test_cpu_added_with_cycles_20_s_apart(samplers: tuple[Sampler, Sampler]) -> None:
    plain, workloads = samplers
    base, more, added, rows, own, calls = _run(plain, workloads, FULL_ROUNDS, 20.0)
    print(f"\n{GPUS} GPUs x {PER_GPU} processes, cycles 20 s apart (as with -c 30000), "
          f"median of {FULL_ROUNDS}: without "
          f"{base * 1e3:.3f} ms CPU, with {more * 1e3:.3f} ms: added {added * 1e3:.3f} ms "
          f"(of the medians {(more - base) * 1e3:.3f} ms), ratio {more / base:.2f}; "
          f"collector's own wall time {own * 1e3:.3f} ms, of which {calls * 1e3:.3f} ms in the "
          "per-process NVML calls")
    target("CPU added per cycle by --workload-metrics, 8x48 processes, 20 s interval",
           added * 1e3, 0.5, "ms")
    assert rows > 0
