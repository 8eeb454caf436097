"""Render cost of one h100x8-sized cycle, against prometheus_client's own writer as baseline.

Run: .venv/bin/pytest bench/test_render.py --benchmark-enable --benchmark-columns=mean,stddev,rounds
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from pytest_benchmark.fixture import BenchmarkFixture

from gpu_exporter.counters import load_counters
from gpu_exporter.model import Entity, Sample
from gpu_exporter.render import Family, RenderOptions, dcgm_families, render
from gpu_exporter.snapshot import build_snapshot

OPTIONS = RenderOptions(hostname="node-a")


def _cycle() -> tuple[list[Sample], list[object]]:
    counters = list(load_counters("counters/default-counters.csv"))
    samples = []
    for gpu in range(8):
        entity = Entity(gpu, f"GPU-{gpu:08x}-0000-0000-0000-000000000000",
                        f"00000000:{0x18 + gpu:02X}:00.0", "NVIDIA H100 80GB HBM3")
        for spec in counters:
            value: float | str = "570.124.06" if spec.prom_type == "label" else 1234.5 + gpu
            samples.append(Sample(entity, spec.field_id, value))
    return samples, counters  # type: ignore[return-value]


class _Baseline:
    """The same families through prometheus_client.generate_latest (sorted labels)."""

    def __init__(self, families: list[Family]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            metric = Metric(family.name, family.help, family.type)
            for name, labels, value in family.samples:
                metric.add_sample(name, dict(labels), value)
            yield metric


def test_render_text(benchmark: BenchmarkFixture) -> None:
    samples, counters = _cycle()
    body = benchmark(lambda: render(dcgm_families(samples, counters, OPTIONS)))  # type: ignore[arg-type]
    assert b"DCGM_FI_DEV_GPU_TEMP{" in body


def test_baseline_prometheus_client(benchmark: BenchmarkFixture) -> None:
    samples, counters = _cycle()
    baseline = _Baseline(dcgm_families(samples, counters, OPTIONS))  # type: ignore[arg-type]
    body = benchmark(lambda: generate_latest(baseline))  # type: ignore[arg-type]
    assert b"DCGM_FI_DEV_GPU_TEMP{" in body


def test_full_snapshot(benchmark: BenchmarkFixture) -> None:
    samples, counters = _cycle()

    def snapshot() -> int:
        families = dcgm_families(samples, counters, OPTIONS)  # type: ignore[arg-type]
        return len(build_snapshot(families, created=0.0, monotonic=0.0).text_gz)

    assert benchmark(snapshot) > 0
