"""CPU cost of one collection cycle: 8x H100 (simulated), upstream's default counters.

Run (figures go to bench/RESULTS.md):

    .venv/bin/pytest bench/test_collect_cycle.py --benchmark-enable -s \
        --benchmark-columns=min,median,mean,stddev,rounds

The simulated library answers each NVML call in about a microsecond, so the time measured is
the exporter's own: pynvml wrappers, decoding, conversions, sample objects, field-support
bookkeeping. One process, one profile (pynvml loads one library per process).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from gpu_exporter.counters import load_counters
from gpu_exporter.nvml import Nvml
from gpu_exporter.sampler import Sampler

CYCLES = 500


@pytest.fixture(scope="module")
def sampler() -> Iterator[Sampler]:
    fields = frozenset(spec.field_id for spec in load_counters("counters/default-counters.csv"))
    nvml = Nvml(simulate="h100x8")
    sampler = Sampler(nvml=nvml, fields=fields)
    for _ in range(3):  # prime GPM and NVLink rates, caches
        sampler.collect_once()
    try:
        yield sampler
    finally:
        sampler.close()
        nvml.close()


def test_collect_cycle(benchmark: BenchmarkFixture, sampler: Sampler) -> None:
    cycle = benchmark(sampler.collect_once)
    assert len({s.entity.gpu for s in cycle.samples}) == 8


def test_cpu_per_cycle(sampler: Sampler) -> None:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(CYCLES):
        cycle = sampler.collect_once()
    cpu = (time.process_time() - cpu0) / CYCLES
    wall = (time.perf_counter() - wall0) / CYCLES
    print(
        f"\ncollect_once on h100x8, default counters: {cpu * 1e3:.3f} ms CPU, "
        f"{wall * 1e3:.3f} ms wall per cycle over {CYCLES} cycles; "
        f"{len(cycle.samples)} samples, {len(cycle.natives)} natives")
    assert len(cycle.samples) > 100
