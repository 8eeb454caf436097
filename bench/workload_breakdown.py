"""Where the workload collector's time goes, per GPU, timed in a loop (warm caches).

Run from the repository root (figures in bench/RESULTS.md)::

    .venv/bin/python bench/workload_breakdown.py [SPAN_S]

The setup of bench/test_workload_cycle.py (simulated ``h100x8``, 48 scripted processes per
GPU, fake ``/proc``), three cycles to warm the PID cache, then GPU 0's ``collect`` called
again and again, each call reading the last ``SPAN_S`` seconds of process samples (its
``lastSeenTimeStamp`` set back before each call, after waiting that long for them to
accumulate; default 1 s; one sample per process either way, 48).
Prints the best of 5 x N calls, then the same loop with the collector's parts wrapped in
timers (the wrappers add about a microsecond to each part). Cycles 1 s apart in the real
exporter find colder caches: bench/test_workload_cycle.py measures that.
"""

from __future__ import annotations

import sys
import time
import timeit
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from workload_setup import scripted_machine

from gpu_exporter import fastpath
from gpu_exporter import nvml as nvml_module
from gpu_exporter.collectors import workload
from gpu_exporter.collectors.workload import WorkloadCollector
from gpu_exporter.config import WorkloadSettings
from gpu_exporter.sampler import Sampler

PARTS = ("_read_target", "_window", "_rows", "_energy", "_known", "_block")
NVML_PARTS = ("running_processes_raw", "process_utilization_view", "memory_info")
READER_PARTS = ("lists", "samples", "memory_used")
"""The same calls through ``nvml.ProcessReader`` (trees that have it)."""


def _timed(spent: dict[str, float], name: str, call: Callable[..., Any]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - start
    return timed


def main() -> None:
    """Print the per-GPU figures (see the module)."""
    span = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    root, nvml, fields = scripted_machine("gpx-wl-breakdown-")
    collector = WorkloadCollector(WorkloadSettings(procfs_root=str(root / "proc")))
    seen: dict[int, tuple[Any, Any, list[Any]]] = {}
    collect = collector.collect

    def keep(view: Any, readings: Any, samples: Any = ()) -> Any:
        seen.setdefault(view.entity.gpu, (view, readings, list(samples)))
        return collect(view, readings, samples)

    collector.collect = keep  # type: ignore[method-assign,assignment]
    sampler = Sampler(nvml=nvml, fields=fields, events=False, workloads=collector)
    for _ in range(3):
        sampler.collect_once()
    time.sleep(span)  # the processes' samples of SPAN_S seconds accumulate
    view, readings, samples = seen[0]
    state = collector._state[0]  # the bench sets the read's window

    def one() -> None:
        state.last_seen_us = int(time.time() * 1e6 - span * 1e6)
        collect(view, readings, samples)

    one()
    calls = 2000 if span <= 1 else 300
    best = min(timeit.repeat(one, number=calls, repeat=5)) / calls
    print(f"collect, one GPU, {span:g} s of samples: {best * 1e6:.1f} us per call "
          f"(best of 5 x {calls})")
    spent: dict[str, float] = defaultdict(float)
    for name in PARTS:
        if hasattr(workload, name):
            setattr(workload, name, _timed(spent, name, getattr(workload, name)))
    if hasattr(collector, "_sum"):  # trees before the one call per GPU (gx_cycle)
        collector._sum = _timed(spent, "_sum (the sums: C call)", collector._sum)
    reads = getattr(fastpath, "CReads", None)  # the reads, sums and rows in one call (procs.c)
    if reads is not None:
        reads.__call__ = _timed(spent, "CReads (reads, sums and rows: C call)", reads.__call__)
    rows = getattr(fastpath, "CRows", None)
    if rows is not None:
        rows.cycle = _timed(spent, "CRows.cycle (sums and rows: C call)", rows.cycle)
        rows.__call__ = _timed(spent, "CRows.__call__ (rows: C call)", rows.__call__)
    for name in NVML_PARTS:
        setattr(nvml, name, _timed(spent, f"nvml.{name}", getattr(nvml, name)))
    reader = getattr(nvml_module, "ProcessReader", None)
    for name in READER_PARTS if reader is not None else ():
        setattr(reader, name, _timed(spent, f"reader.{name}", getattr(reader, name)))
    for _ in range(calls):
        one()
    spent.clear()
    start = time.perf_counter()
    for _ in range(calls):
        one()
    total = time.perf_counter() - start
    print(f"with timers: {total / calls * 1e6:.1f} us per call, of which")
    for name, value in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {name:36s} {value / calls * 1e6:6.1f} us")
    sampler.close()
    nvml.close()


if __name__ == "__main__":
    main()
