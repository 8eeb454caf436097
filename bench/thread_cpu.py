"""CPU per collection cycle of each thread of the running exporter, measured from outside.

Starts ``gpu-exporter --simulate PROFILE -c INTERVAL`` (no scrapes), warms up, then reads
``/proc/PID/task/*/schedstat`` (on-CPU ns) and ``voluntary_ctxt_switches`` of every thread at
the start and the end of a window: per thread, CPU and switches per cycle. ``--before
OTHER/src`` runs the exporter of an older tree in the same rounds (interleaved: ours, before,
ours, ...), as ``bench/process_bench.py`` does; ``--mig 56`` uses its user profile of 8 A100s
with that many 1g.10gb instances instead of ``--profile``. Python does not name the OS threads,
so the rows are the other threads in decreasing CPU (medians by rank over the rounds), then the
main thread (the event loop).

Run: ``.venv/bin/python bench/thread_cpu.py [--before OTHER/src] [--rounds 3] [--mig 56]``.
Prints Markdown. Every wait here is bounded.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from process_bench import TARGETS, Target, _profile_files, load_average, started

Snap = dict[int, tuple[int, int]]  # tid -> (on-CPU ns, voluntary switches)


def snapshot(pid: int) -> Snap:
    """On-CPU ns and voluntary context switches of every live thread of ``pid``."""
    out: Snap = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            ns = int((task / "schedstat").read_text().split()[0])
            status = (task / "status").read_text()
        except OSError:  # the thread exited meanwhile
            continue
        switches = int(status.split("voluntary_ctxt_switches:")[1].split()[0])
        out[int(task.name)] = (ns, switches)
    return out


def measure(target: Target, profile: str, gpus: int, interval_ms: int, *, warmup: float,
            window: float) -> list[tuple[bool, float, float]]:
    """(main thread?, ms per cycle, switches per cycle) of each thread, busiest first."""
    with started(target, profile, interval_ms, gpus) as (proc, _, _, _):
        time.sleep(warmup)
        before, t0 = snapshot(proc.pid), time.monotonic()
        time.sleep(window)
        after, t1 = snapshot(proc.pid), time.monotonic()
    cycles = (t1 - t0) / (interval_ms / 1000)
    rows = []
    for tid, (ns, switches) in after.items():
        ns0, switches0 = before.get(tid, (0, 0))
        rows.append((tid == proc.pid, (ns - ns0) / 1e6 / cycles, (switches - switches0) / cycles))
    return sorted(rows, key=lambda row: -row[1])


def table(runs: list[list[tuple[bool, float, float]]]) -> list[str]:
    """The main thread's row, then the other threads' by rank; medians over the rounds."""
    mains = [next((row for row in run if row[0]), (True, 0.0, 0.0)) for run in runs]
    others = [[row for row in run if not row[0]] for run in runs]
    lines = []
    for rank in range(max(len(run) for run in others)):
        rows = [run[rank] for run in others if rank < len(run)]
        cpu = statistics.median(row[1] for row in rows)
        if cpu >= 0.001:
            switches = statistics.median(row[2] for row in rows)
            lines.append(f"| thread {rank + 1} | {cpu:.3f} ms ({switches:.1f}) |")
    lines.append(f"| main thread (the event loop) | "
                 f"{statistics.median(row[1] for row in mains):.3f} ms "
                 f"({statistics.median(row[2] for row in mains):.1f}) |")
    total = statistics.median(sum(row[1] for row in run) for run in runs)
    lines.append(f"| total | {total:.3f} ms |")
    return lines


def main() -> None:
    """Measure, print Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="h100x8")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs in --profile")
    parser.add_argument("--mig", type=int, choices=range(0, 57, 8), metavar="0|8|...|56",
                        help="8 A100 with this many 1g.10gb MIG instances instead of --profile")
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--before", help="also run our exporter from this src/ tree")
    args = parser.parse_args()
    targets = [TARGETS["ours"]]
    if args.before:
        targets.append(Target("before", "DCGM_FI_DEV_FB_USED{", src=args.before))
    loads = [load_average()]
    with tempfile.TemporaryDirectory() as tmp:
        profile, gpus = args.profile, args.gpus
        if args.mig is not None:
            profile = next(path for series, path, _, mig in _profile_files(Path(tmp))
                           if series == "mig" and mig == args.mig)
            gpus = 8
        runs: dict[str, list[list[tuple[bool, float, float]]]] = {t.name: [] for t in targets}
        for _ in range(args.rounds):
            for target in targets:
                runs[target.name].append(measure(target, profile, gpus, args.interval_ms,
                                                 warmup=args.warmup, window=args.window))
            loads.append(load_average())
    name = f"{args.mig} MIG instances (8 A100)" if args.mig is not None else args.profile
    print(f"Profile {name}, interval {args.interval_ms} ms, no scrapes, {args.rounds} "
          f"interleaved rounds, warm-up {args.warmup:g} s, window {args.window:g} s; load "
          f"average {'-'.join(sorted({loads[0], loads[-1]}))}. CPU per cycle (voluntary "
          "switches per cycle), median by rank.\n")
    for target in targets:
        print(f"| {target.name}: thread | CPU per cycle (switches) |\n|---|---|")
        print("\n".join(table(runs[target.name])))
        print()


if __name__ == "__main__":
    main()
