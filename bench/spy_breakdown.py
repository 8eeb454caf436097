"""Where the running exporter's CPU goes: py-spy samples of every thread, by stage.

Starts ``gpu-exporter --simulate PROFILE -c INTERVAL`` (no scrapes), warms up, then over one
window both reads the process's ``utime + stime`` from ``/proc/PID/stat`` and records py-spy
samples of all threads (``--nonblocking``, so the sampler does not stop the process). Samples
whose innermost frame is a blocking wait (epoll, a queue or condition wait, the XID event
wait) are dropped; the rest are sorted into stages by the frames they contain (first rule
that matches, most specific first), and each stage gets its share of the measured CPU per
cycle. py-spy sees Python frames only: time in C (the simulated NVML, zlib, the kernel) is
charged to the Python frame that called it, and a garbage collection to the frame that
triggered it.

Run: ``.venv/bin/python bench/spy_breakdown.py [--src OTHER/src] [--interval-ms 200]``
(needs the ``bench`` extra: py-spy; root or ptrace rights). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from process_bench import TARGETS, Target, cpu_seconds, load_average, started

WAITS = (
    "EpollSelector.select (selectors.py",
    "_worker (concurrent/futures/thread.py:81)",  # idle executor thread, blocked on its queue
    "Condition.wait (threading.py",
    "nvmlEventSetWait_v2 (pynvml.py",  # the XID thread inside the driver's wait
    "_Worker._run (gpu_exporter/sampler.py",  # a collection worker waiting for a job
    "Event.wait (threading.py",
    "lock.acquire",
)

STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("XID event thread (outside the wait)", ("nvml-events",)),
    ("gzip", ("compress (gzip.py",)),
    ("render: text", ("build_snapshot (gpu_exporter/snapshot.py:39)", "fmt=text")),
    ("render: OpenMetrics", ("build_snapshot (gpu_exporter/snapshot.py:40)", "fmt=openmetrics")),
    ("render (other)", ("render (gpu_exporter/render.py", "snapshot.py")),
    ("self-metrics (process collector, python_info)",
     ("prometheus_client", "client_families", "self_metrics")),
    ("families: DCGM rows", ("dcgm_families",)),
    ("families: gpu_exporter_* rows", ("native_families", "build_info")),
    ("NVML calls (pynvml + simulated library)", ("pynvml.py",)),
    ("sampler and collectors (Python)", ("gpu_exporter/sampler.py", "gpu_exporter/collectors",
                                         "gpu_exporter/nvml.py", "gpu_exporter/events.py")),
    ("asyncio loop and thread hand-offs", ("asyncio/", "concurrent/futures", "threading.py")),
)


def classify(stack: str) -> str | None:
    """The stage of one sampled stack, or None for a blocking wait."""
    frames = stack.split(";")
    if any(frames[-1].startswith(w) or w in frames[-1] for w in WAITS):
        return None
    for stage, needles in STAGES:
        if any(n in stack for n in needles):
            return stage
    return "other"


def main() -> None:
    """Record, classify, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="h100x8")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--interval-ms", type=int, default=200)
    parser.add_argument("--window", type=int, default=30)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--src", help="run our exporter from this src/ tree instead")
    args = parser.parse_args()
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        sys.exit("py-spy is not installed: pip install -e '.[bench]'")
    target = TARGETS["ours"] if args.src is None else Target("before", TARGETS["ours"].complete,
                                                              args.src)
    with started(target, args.profile, args.interval_ms, args.gpus) as (proc, _, _, _), \
            tempfile.TemporaryDirectory() as tmp:
        time.sleep(3)
        raw = Path(tmp) / "raw.txt"
        t0, c0 = time.monotonic(), cpu_seconds(proc.pid)
        subprocess.run([spy, "record", "-p", str(proc.pid), "-d", str(args.window), "-r",
                        str(args.rate), "--threads", "--nonblocking", "-f", "raw", "-o",
                        str(raw)], check=True, capture_output=True, timeout=args.window + 60)
        t1, c1 = time.monotonic(), cpu_seconds(proc.pid)
        lines = raw.read_text().splitlines()
    stages: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rpartition(" ")
        stage = classify(stack)
        if stage is not None:
            stages[stage] += int(count)
    cycles = (t1 - t0) / (args.interval_ms / 1000)
    per_cycle_ms = 1000 * (c1 - c0) / cycles
    total = sum(stages.values()) or 1
    print(f"`{' '.join(sys.argv)}`: profile {args.profile}, interval {args.interval_ms} ms, "
          f"window {t1 - t0:.0f} s, {cycles:.0f} cycles, load average {load_average()}; "
          f"process CPU {per_cycle_ms:.2f} ms per cycle (py-spy running beside it: its "
          f"reads add a little); {total} on-CPU samples (pid {os.getpid()}).\n")
    print("| Stage | Share of on-CPU samples | ms per cycle (share x process CPU) |")
    print("|---|---|---|")
    for stage, count in stages.most_common():
        print(f"| {stage} | {100 * count / total:.1f} % | {per_cycle_ms * count / total:.2f} |")


if __name__ == "__main__":
    main()
