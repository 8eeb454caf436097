"""Whole-process figures of the running exporter, measured from outside, beside nvitop-exporter.

Both exporters run as real processes on the same simulated profile and collection interval,
one after the other in interleaved rounds (ours, nvitop-exporter, ours, ...), so background
load on the shared machine hits both alike; the ratio of the two is the figure. Nothing
scrapes either process while its CPU is measured. Read from ``/proc``:

* CPU: ``utime + stime`` of ``/proc/PID/stat`` (every thread, exited ones included) over a
  window after a warm-up; per cycle = CPU in the window / cycles in the window (the window over
  the interval). The idle rate (a 1 h interval: no cycle in the window, which is
  ``--idle-window``, 35 s, so that our 30 s NVML event wait wakes in it) is reported on its own
  row and never subtracted silently; the "net" column subtracts it and says so;
* memory: ``VmRSS`` (``/proc/PID/status``) and ``Pss`` (``/proc/PID/smaps_rollup``) at the end of
  the window (at least ``--window`` seconds after start);
* start to first complete scrape: spawn to the first ``/metrics`` answer that holds every GPU;
* SIGTERM to exit: ``kill`` to ``waitpid`` returning.

``--growth`` also measures our exporter alone (CPU per cycle and ``/metrics`` size) against the
number of GPUs (user profiles based on h100x8) and of MIG instances (8 A100, 0-7 x 1g.10gb
each) and plots both to ``bench/growth.png`` (needs the ``bench`` extra: matplotlib).

Run: ``.venv/bin/python bench/process_bench.py [--results bench/RESULTS.md] [--growth]``.
Prints Markdown; ``--results`` also replaces the marked section(s) of that file. Every wait
here is bounded.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OURS = BIN / "gpu-exporter"
NVITOP = BIN / "nvitop-exporter"
TICK = os.sysconf("SC_CLK_TCK")
IDLE_MS = 3_600_000

sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "kubernetes"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads, exited ones included)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def cpu_ns_threads(pid: int) -> int:
    """Sum of ``/proc/PID/task/*/schedstat`` run time (ns; threads alive now only)."""
    return sum(_thread_ns(task) for task in Path(f"/proc/{pid}/task").iterdir())


def _thread_ns(task: Path) -> int:
    try:
        return int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0  # the thread exited meanwhile


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, Pss) in MiB."""
    rss = pss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1]) / 1024
    return rss, pss


@dataclass
class Run:
    """One measured process."""

    first_scrape_s: float
    cpu_per_s: float
    sched_cpu_per_s: float  # the same from schedstat (ns resolution; live threads only)
    cycles_per_s: float
    rss: float
    pss: float
    exit_s: float
    body_bytes: int

    @property
    def cpu_per_cycle_ms(self) -> float:
        """CPU seconds in the window per cycle, in ms (idle not subtracted)."""
        return 1000 * self.cpu_per_s / self.cycles_per_s if self.cycles_per_s else float("nan")


@dataclass(frozen=True)
class Target:
    """How to start one exporter and how to recognise its complete first scrape."""

    name: str
    complete: str  # a series name present once per GPU (or more) in a complete body
    src: str | None = None  # "before": our exporter run from another source tree

    def argv(self, port: int, interval_ms: int, profile: str, extra: Sequence[str]) -> list[str]:
        """Command line of the exporter."""
        if self.src is not None:
            return [sys.executable, "-c", _BEFORE_MAIN, "--simulate", profile,
                    "-a", f"127.0.0.1:{port}", "-c", str(interval_ms), *extra]
        if self.name == "ours":
            return [str(OURS), "--simulate", profile, "-a", f"127.0.0.1:{port}",
                    "-c", str(interval_ms), *extra]
        if self.name == "ours-driver":
            return [str(OURS), "-a", f"127.0.0.1:{port}", "-c", str(interval_ms), *extra]
        return [str(NVITOP), "--bind-address", "127.0.0.1", "--port", str(port),
                "--interval", f"{interval_ms / 1000:g}", *extra]


_BEFORE_MAIN = "import sys; from gpu_exporter.cli import main; main(sys.argv[1:])"

TARGETS = {
    "ours": Target("ours", "DCGM_FI_DEV_FB_USED{"),  # per GPU and per MIG instance
    "nvitop": Target("nvitop", "gpu_utilization_Percentage{"),
    # ours as deployed: no --simulate, the library found through the environment (prepared
    # here, as for nvitop-exporter), so no simulator set-up runs in the exporter's process
    "ours-driver": Target("ours-driver", "DCGM_FI_DEV_FB_USED{"),
}


def _env(target: Target, profile: str, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DCGM_", "GPU_"))}
    env["NODE_NAME"] = "bench-node"
    if target.src is not None:
        env["PYTHONPATH"] = target.src
    if target.name not in {"nvitop", "ours-driver"}:
        env["GPU_SIM_DIR"] = str(tmp / "sim")  # --simulate prepares it; same as a private one
        return env
    from gpu_exporter.simulator import prepare

    env.update(prepare(profile, state_dir=tmp / "sim").env)
    return env


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bytes(response.read()) if response.status == 200 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


@contextmanager
def started(target: Target, profile: str, interval_ms: int, gpus: int, *,
            extra: Sequence[str] = (), env_extra: dict[str, str] | None = None,
            ) -> Iterator[tuple[subprocess.Popen[bytes], str, float, bytes]]:
    """Start an exporter; yield (process, url, seconds to first complete scrape, that body)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = _env(target, profile, Path(tmp))
        env.update(env_extra or {})
        port = _free_port()
        url = f"http://127.0.0.1:{port}/metrics"
        log = Path(tmp) / "log"
        start = time.monotonic()
        with log.open("wb") as sink:
            process = subprocess.Popen(target.argv(port, interval_ms, profile, extra), env=env,
                                       stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
                                       cwd=tmp)
        try:
            deadline = start + 60
            while True:
                body = _get(url)
                if body is not None and body.count(target.complete.encode()) >= gpus:
                    first = time.monotonic() - start
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{target.name} never served a complete /metrics:\n{tail}")
                time.sleep(0.005)
            yield process, url, first, body
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


def measure(target: Target, profile: str, interval_ms: int, gpus: int, *, warmup: float,
            window: float, extra: Sequence[str] = (),
            env_extra: dict[str, str] | None = None) -> Run:
    """Start, warm up, measure CPU and memory over the window, then time SIGTERM to exit."""
    with started(target, profile, interval_ms, gpus, extra=extra,
                 env_extra=env_extra) as (proc, _, first, body):
        time.sleep(warmup)
        t0, c0, s0 = time.monotonic(), cpu_seconds(proc.pid), cpu_ns_threads(proc.pid)
        time.sleep(window)
        t1, c1, s1 = time.monotonic(), cpu_seconds(proc.pid), cpu_ns_threads(proc.pid)
        rss, pss = memory_mib(proc.pid)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        exit_s = time.monotonic() - sent
    elapsed = t1 - t0
    cycles = elapsed / (interval_ms / 1000) if interval_ms < IDLE_MS else 0.0
    return Run(first, (c1 - c0) / elapsed, (s1 - s0) / 1e9 / elapsed, cycles / elapsed,
               rss, pss, exit_s, len(body))


def _med(values: Sequence[float]) -> float:
    return statistics.median(values)


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}" if theirs > 0 else "n/a (baseline 0 in the window)"


def _span(values: Sequence[float], fmt: str) -> str:
    return f"{format(_med(values), fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def load_average() -> str:
    """The 1-minute load average, to note beside absolute figures."""
    return Path("/proc/loadavg").read_text().split()[0]


def byte_compile(trees: Sequence[Path]) -> None:
    """Write the bytecode of our source trees, as ``pip install`` does for an installed package.

    nvitop-exporter runs from site-packages with the bytecode pip wrote; our trees run from
    source (an editable install, or ``--before``'s PYTHONPATH), and where the environment sets
    ``PYTHONDONTWRITEBYTECODE`` (as the project's machines do) Python would compile every
    module again at each start: about 40 % of the start-up time, which no installed copy (the
    wheel, the image) pays.
    """
    for tree in trees:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree)], check=True,
                       stdout=subprocess.DEVNULL)


def compare(profile: str, gpus: int, *, rounds: int, warmup: float, window: float,
            interval_ms: int, before: str | None = None, idle_window: float = 35.0) -> str:
    """The main table: ours and nvitop-exporter (and an older tree), interleaved."""
    targets = [TARGETS["ours"], TARGETS["ours-driver"], TARGETS["nvitop"]]
    if before is not None:
        targets.append(Target("before", TARGETS["ours"].complete, before))
    byte_compile([ROOT / "src", *([Path(before)] if before is not None else [])])
    runs: dict[tuple[str, str], list[Run]] = {}
    loads = []
    for _ in range(rounds):
        for mode, ms, span in (("active", interval_ms, window), ("idle", IDLE_MS, idle_window)):
            for target in targets:
                loads.append(float(load_average()))
                runs.setdefault((target.name, mode), []).append(
                    measure(target, profile, ms, gpus, warmup=warmup, window=span))

    def per_cycle(name: str) -> list[float]:
        return [r.cpu_per_cycle_ms for r in runs[(name, "active")]]

    def net(name: str) -> list[float]:
        idle_rate = _med([r.cpu_per_s for r in runs[(name, "idle")]])
        return [1000 * (r.cpu_per_s - idle_rate) / r.cycles_per_s
                for r in runs[(name, "active")]]

    def idle_ms(name: str) -> list[float]:
        return [1000 * r.cpu_per_s for r in runs[(name, "idle")]]

    def sched_per_cycle(name: str) -> list[float]:
        return [1000 * r.sched_cpu_per_s / r.cycles_per_s for r in runs[(name, "active")]]

    def sched_idle_ms(name: str) -> list[float]:
        return [1000 * r.sched_cpu_per_s for r in runs[(name, "idle")]]

    def every(name: str, attr: str) -> list[float]:
        return [getattr(r, attr) for r in runs[(name, "active")] + runs[(name, "idle")]]

    measures = [
        ("CPU per cycle, gross (window CPU / cycles)", per_cycle, ".2f", " ms"),
        ("CPU per cycle, net of the idle rate below", net, ".2f", " ms"),
        (f"idle CPU (interval {IDLE_MS // 1000} s, no cycle in the window)", idle_ms, ".2f",
         " ms/s"),
        ("CPU per cycle, gross, from schedstat (ns resolution)", sched_per_cycle, ".2f",
         " ms"),
        ("idle CPU from schedstat (ns resolution)", sched_idle_ms, ".3f", " ms/s"),
        ("start to first complete scrape", lambda n: every(n, "first_scrape_s"), ".2f", " s"),
        ("SIGTERM to exit", lambda n: every(n, "exit_s"), ".3f", " s"),
        ("VmRSS at the end of the window", lambda n: every(n, "rss"), ".1f", " MiB"),
        ("PSS at the end of the window", lambda n: every(n, "pss"), ".1f", " MiB"),
        ("/metrics body, text (first complete scrape)", lambda n: every(n, "body_bytes"),
         ",.0f", " bytes"),
    ]
    names = [t.name for t in targets]
    head = ["Measure", "gpu-exporter --simulate", "nvitop-exporter 1.7.2", "ours / nvitop",
            "gpu-exporter as deployed (no --simulate)", "deployed / nvitop"]
    if before is not None:
        head += ["before (same run)", "ours / before"]
    out = [
        f"Profile `{profile}`, default counters, interval {interval_ms} ms for the active rows; "
        f"{rounds} interleaved rounds ({', '.join(names)}, per mode), warm-up "
        f"{warmup:g} s, window {window:g} s ({idle_window:g} s for the idle rows: our NVML "
        "event wait wakes every 30 s), no scrapes in the window; median (min-max); "
        "our trees byte-compiled first, as an install is (`byte_compile`). "
        f"Load average (1 min) during the run: {min(loads):.1f}-{max(loads):.1f} on 2 CPUs "
        "shared with other jobs: only the ratios are comparable across runs.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for label, values, fmt, unit in measures:
        ours = values("ours")
        row = [label, _span(ours, fmt) + unit, _span(values("nvitop"), fmt) + unit,
               _ratio(_med(ours), _med(values("nvitop")))]
        deployed = values("ours-driver")
        row += [_span(deployed, fmt) + unit, _ratio(_med(deployed), _med(values("nvitop")))]
        if before is not None:
            row += [_span(values("before"), fmt) + unit, _ratio(_med(ours), _med(values("before")))]
        out.append("| " + " | ".join(row) + " |")
    return "\n".join(out)


def kube_rss(*, warmup: float) -> str:
    """RSS/PSS in Kubernetes mode (-k) with a fake kubelet holding 110 pods."""
    from fake_kubelet import FakeKubelet, pod

    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "kubelet.sock"
        with FakeKubelet(sock) as kubelet:
            kubelet.set_pods([pod(f"p{i}", "ns", {"c": {"nvidia.com/gpu": [f"GPU-x{i}"]}})
                              for i in range(110)])
            run = measure(TARGETS["ours"], "h100x8", 1000, 8, warmup=warmup, window=5,
                          extra=["-k", "--pod-resources-kubelet-socket", str(sock)])
    return (f"| `-k`, fake kubelet with 110 pods, h100x8, interval 1 s | {run.rss:.1f} MiB | "
            f"{run.pss:.1f} MiB | {run.exit_s:.3f} s |")


def _profile_files(tmp: Path) -> list[tuple[str, str, int, int]]:
    """(series, profile path, GPUs, MIG instances) of the growth runs."""
    files = []
    for n in (1, 8, 16, 64):
        path = tmp / f"h100x{n}.yaml"
        path.write_text(f"base: h100x8\nname: h100x{n}\ndevice_count: {n}\n")
        files.append(("gpus", str(path), n, 0))
    for per_gpu in range(8):
        path = tmp / f"a100-mig{per_gpu * 8}.yaml"
        layout = ", ".join(["1g.10gb"] * per_gpu)
        lines = [f"base: a100-mig\nname: a100-mig{per_gpu * 8}\ndevices:"]
        lines += [f"  - {{index: {i}, mig: {{enabled: {str(per_gpu > 0).lower()}, "
                  f"devices: [{layout}]}}}}" for i in range(8)]
        path.write_text("\n".join(lines) + "\n")
        files.append(("mig", str(path), 8, per_gpu * 8))
    return files


def growth(*, rounds: int, warmup: float, window: float, interval_ms: int,
           png: Path | None) -> str:
    """CPU per cycle and body size of our exporter vs GPUs and MIG instances."""
    with tempfile.TemporaryDirectory() as tmp:
        files = _profile_files(Path(tmp))
        results: dict[str, list[Run]] = {}
        for _ in range(rounds):
            for _, path, gpus, _ in files:
                results.setdefault(path, []).append(
                    measure(TARGETS["ours"], path, interval_ms, gpus, warmup=warmup,
                            window=window))
    rows = []
    for series, path, gpus, mig in files:
        rs = results[path]
        rows.append((series, gpus, mig,
                     _med([1000 * r.sched_cpu_per_s / r.cycles_per_s for r in rs]),
                     _med([r.body_bytes for r in rs])))
    out = [f"Ours alone, interval {interval_ms} ms, default counters, {rounds} rounds, "
           f"window {window:g} s, load average {load_average()}; gross CPU per cycle from "
           "schedstat (idle not subtracted), body = uncompressed text format of the first "
           "complete scrape.", "",
           "| Series | GPUs | MIG instances | CPU per cycle | /metrics bytes |",
           "|---|---|---|---|---|"]
    out += [f"| {s} | {g} | {m} | {c:.2f} ms | {b:,.0f} |" for s, g, m, c, b in rows]
    if png is not None:
        _plot(rows, png)
        out += ["", f"Plot: `{png.relative_to(ROOT)}`."]
    return "\n".join(out)


def _plot(rows: list[tuple[str, int, int, float, float]], png: Path) -> None:
    import matplotlib as mpl  # bench extra only

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, series, xkey, xlabel in ((axes[0], "gpus", 1, "GPUs (h100x8-based profiles)"),
                                     (axes[1], "mig", 2, "MIG instances (8 A100, 1g.10gb)")):
        pts = [r for r in rows if r[0] == series]
        xs = [r[xkey] for r in pts]
        ax.plot(xs, [r[3] for r in pts], "o-", color="tab:blue")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("CPU per cycle (ms)", color="tab:blue")
        twin = ax.twinx()
        twin.plot(xs, [r[4] / 1024 for r in pts], "s--", color="tab:orange")
        twin.set_ylabel("/metrics size (KiB)", color="tab:orange")
    fig.suptitle("gpu-exporter: cost per collection cycle and body size")
    fig.tight_layout()
    fig.savefig(png, dpi=100)


def write_section(results: Path, name: str, text: str, command: str,
                  tag: str = "process_bench") -> None:
    """Replace (or append) the block between this section's markers in RESULTS.md.

    The markers are ``<!-- TAG:NAME -->`` and ``<!-- /TAG:NAME -->``: a run with its own
    ``tag`` (``--tag``) leaves the blocks of earlier runs alone and appends its own at the
    end of the file the first time (move it under its heading; later runs replace it there).

    Raises:
        SystemExit: the file holds this block more than once (which one to replace?).
    """
    begin, end = f"<!-- {tag}:{name} -->", f"<!-- /{tag}:{name} -->"
    block = f"{begin}\nCommand: `{command}`\n\n{text}\n{end}"
    current = results.read_text() if results.exists() else ""  # a new file: the block alone
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.DOTALL)
    found = len(pattern.findall(current))
    if found > 1:
        raise SystemExit(f"{results}: {found} blocks marked {begin}; rename all but one, or "
                         "write this run under its own --tag")
    if found:
        current = pattern.sub(lambda _: block, current)
    else:
        current = current.rstrip("\n") + "\n\n" + block + "\n"
    results.write_text(current)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options, run the chosen measurements, print (and write) Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="h100x8")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs in --profile")
    parser.add_argument("--interval-ms", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--idle-window", type=float, default=35.0,
                        help="window of the idle rows (more than the 30 s event wait)")
    parser.add_argument("--before", help="also run our exporter from this src/ tree "
                        "(an older checkout, for a same-run before/after)")
    parser.add_argument("--skip-compare", action="store_true")
    parser.add_argument("--kube", action="store_true", help="also RSS with -k")
    parser.add_argument("--growth", action="store_true", help="also the growth curves + PNG")
    parser.add_argument("--growth-interval-ms", type=int, default=500)
    parser.add_argument("--growth-window", type=float, default=15.0)
    parser.add_argument("--results", type=Path, help="write the sections into this file")
    parser.add_argument("--tag", default="process_bench",
                        help="name of this run's marker blocks in --results (default: "
                        "%(default)s; a new tag keeps the blocks of earlier runs)")
    args = parser.parse_args(argv)
    command = "python bench/process_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
    sections = []
    if not args.skip_compare:
        tag = f"compare-{args.profile}-{args.interval_ms}"
        sections.append((tag, compare(args.profile, args.gpus, rounds=args.rounds,
                                      warmup=args.warmup, window=args.window,
                                      interval_ms=args.interval_ms, before=args.before,
                                      idle_window=args.idle_window)))
    if args.kube:
        head = "| Mode | VmRSS | PSS | SIGTERM to exit |\n|---|---|---|---|\n"
        sections.append(("kube", head + kube_rss(warmup=args.warmup)))
    if args.growth:
        sections.append(("growth", growth(rounds=1, warmup=args.warmup,
                                          window=args.growth_window,
                                          interval_ms=args.growth_interval_ms,
                                          png=ROOT / "bench" / "growth.png")))
    for name, text in sections:
        print(f"### {name}\n\n{text}\n")
        if args.results is not None:
            write_section(args.results, name, text, command, args.tag)


if __name__ == "__main__":
    main()
