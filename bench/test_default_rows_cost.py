"""What our default counters file costs against upstream's default rows, same process, same run.

Our default file is upstream's (4.5.3-4.8.2, recorded in tests/data/upstream/) plus two rows for
the shipped alerts and 14 rows upstream leaves commented out, enabled so that the dashboard has
no empty panel (issue 8 item 10). This measures the price of those rows: CPU per collection
cycle (8x H100 simulated) and the size and render time of the exposition, interleaved rounds,
medians, reported as ratios.

Run (figures go to bench/RESULTS.md):

    .venv/bin/pytest bench/test_default_rows_cost.py -s -p no:randomly
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from gpu_exporter.counters import CounterSpec, load_counters
from gpu_exporter.nvml import Nvml
from gpu_exporter.render import RenderOptions, dcgm_families, render
from gpu_exporter.sampler import Sampler

ROOT = Path(__file__).resolve().parents[1]
FILES = {
    "upstream": ROOT / "tests" / "data" / "upstream" / "4.5.3-4.8.2" / "default-counters.csv",
    "ours": ROOT / "counters" / "default-counters.csv",
}
ROUNDS = 5
CYCLES = 200


def _specs(path: Path) -> tuple[CounterSpec, ...]:
    return load_counters(path, warn=lambda _: None)


def test_cost_of_our_default_rows() -> None:
    nvml = Nvml(simulate="h100x8")
    specs = {name: _specs(path) for name, path in FILES.items()}
    samplers = {name: Sampler(nvml=nvml, fields=frozenset(s.field_id for s in rows))
                for name, rows in specs.items()}
    cpu: dict[str, list[float]] = {name: [] for name in FILES}
    render_s: dict[str, list[float]] = {name: [] for name in FILES}
    size: dict[str, int] = {}
    options = RenderOptions(hostname="node-a")
    try:
        for sampler in samplers.values():
            for _ in range(3):  # prime GPM and NVLink rates, caches
                sampler.collect_once()
        for round_ in range(ROUNDS):
            order = list(FILES) if round_ % 2 == 0 else list(reversed(FILES))
            for name in order:
                start = time.process_time()
                for _ in range(CYCLES):
                    cycle = samplers[name].collect_once()
                cpu[name].append((time.process_time() - start) / CYCLES)
                start = time.perf_counter()
                body = render(dcgm_families(cycle.samples, specs[name], options))
                render_s[name].append(time.perf_counter() - start)
                size[name] = len(body)
    finally:
        for sampler in samplers.values():
            sampler.close()
        nvml.close()
    med = {name: statistics.median(values) for name, values in cpu.items()}
    rmed = {name: statistics.median(values) for name, values in render_s.items()}
    print(
        f"\nrows: upstream {len(specs['upstream'])}, ours {len(specs['ours'])}\n"
        f"CPU per cycle: upstream {med['upstream'] * 1e3:.3f} ms, ours {med['ours'] * 1e3:.3f} ms,"
        f" ratio {med['ours'] / med['upstream']:.2f}\n"
        f"DCGM families render: upstream {rmed['upstream'] * 1e3:.3f} ms, ours "
        f"{rmed['ours'] * 1e3:.3f} ms, ratio {rmed['ours'] / rmed['upstream']:.2f}\n"
        f"DCGM families text: upstream {size['upstream']} bytes, ours {size['ours']} bytes, "
        f"ratio {size['ours'] / size['upstream']:.2f}")
    assert len(specs["ours"]) == len(specs["upstream"]) + 16
