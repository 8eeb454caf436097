"""Load and resource figures of the running exporter, each against a baseline in the same run.

Measures, on the simulated h100x8 profile with the default counters:

* time from process start to the first successful ``/metrics`` (several starts, median);
* ``/metrics`` throughput with wrk against a bare aiohttp handler serving the same bytes (the
  body after the second cycle, when the rate and profiling fields are in),
  interleaved rounds (the ratio of medians is the figure; both share 2 cores with wrk);
* RSS of the exporter after the load, in plain mode and in Kubernetes mode (``-k`` with a
  fake kubelet holding 110 pods), next to the RSS of a bare Python interpreter that has
  imported aiohttp (the floor any aiohttp exporter pays).

Run: ``.venv/bin/python bench/load_metrics.py`` (needs ``wrk``: ``apt-get install wrk``).
``--before OTHER/src`` adds the exporter of an older tree (run by the same interpreter through
``PYTHONPATH``) to the same interleaved throughput rounds and RSS rows. Prints a Markdown
section for bench/RESULTS.md. Every loop here is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "kubernetes"))

from fake_kubelet import FakeKubelet, pod  # noqa: E402
from support.exporter import EXPORTER, run_exporter  # noqa: E402

from gpu_exporter.simulator import prepare  # noqa: E402

WRK_SECONDS = 4
ROUNDS = 6
"""Throughput rounds; each runs every target once, in the reverse order of the round before
(with a fixed order and 3 rounds, two copies of one tree measured 0.97 of each other and the
ratio to the bare handler spread 0.72-1.08 between runs on the 2-CPU machine)."""
CONNECTIONS = 64
ACCEPT = "text/plain;version=0.0.4"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _wrk(url: str) -> float:
    return _wrk_latency(url)[0]


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _wrk_latency(url: str, connections: int = CONNECTIONS) -> tuple[float, float]:
    """(requests per second, p99 latency in ms) of one wrk run."""
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{WRK_SECONDS}s", "--latency",
         "-H", f"Accept: {ACCEPT}", url],
        capture_output=True, text=True, timeout=WRK_SECONDS + 30, check=True,
    )
    match = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", result.stdout)
    if not match or not p99:
        raise RuntimeError(result.stdout)
    return float(match.group(1)), float(p99.group(1)) * _UNITS[p99.group(2)]


OPEN_LOOP_RATE = 1000
"""Requests per second, all connections together, of the open-loop latency rows."""


def _open_loop(url: str, connections: int = CONNECTIONS, rate: float = OPEN_LOOP_RATE,
               ) -> dict[str, float]:
    """p50/p99 of ``bench/openloop.py``: fixed request rate, latency from each due time."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "openloop.py"), url, "--connections",
         str(connections), "--rate", str(rate), "--seconds", str(WRK_SECONDS), "--accept",
         ACCEPT], capture_output=True, text=True, timeout=WRK_SECONDS + 60, check=True)
    figures: dict[str, float] = json.loads(result.stdout)
    if figures["errors"]:
        raise RuntimeError(f"open-loop run had errors: {figures}")
    return figures


@contextmanager
def _bare_server(body: bytes) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A minimal aiohttp app answering every GET /metrics with ``body``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "body"
        path.write_bytes(body)
        port = _free_port()
        code = textwrap.dedent(f"""
            from pathlib import Path
            from aiohttp import web
            body = Path({str(path)!r}).read_bytes()
            async def handler(request):
                return web.Response(body=body, content_type="text/plain")
            app = web.Application()
            app.router.add_get("/metrics", handler)
            web.run_app(app, host="127.0.0.1", port={port}, print=None, access_log=None)
        """)
        process = subprocess.Popen([sys.executable, "-c", code])
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    urllib.request.urlopen(url, timeout=2).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield url, process
        finally:
            process.terminate()
            process.wait(timeout=10)


def time_to_first_metrics(runs: int = 5) -> list[float]:
    """Seconds from spawning the exporter to its first 200 on /metrics."""
    times = []
    for _ in range(runs):
        port = _free_port()
        start = time.monotonic()
        process = subprocess.Popen(
            [str(EXPORTER), "--simulate", "h100x8", "-a", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = start + 30
            while True:
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/metrics", timeout=2
                    ) as response:
                        if response.status == 200:
                            times.append(time.monotonic() - start)
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("exporter never served /metrics")
                time.sleep(0.01)
        finally:
            process.terminate()
            process.wait(timeout=10)
    return times


def bare_python_rss() -> float:
    """RSS of an interpreter that imported aiohttp.web (and nothing else), for reference."""
    code = ("import aiohttp.web, time, pathlib;"
            "print([l for l in pathlib.Path('/proc/self/status').read_text().splitlines()"
            " if l.startswith('VmRSS')][0].split()[1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=30)
    return int(out.stdout.strip()) / 1024


def _command(before: Path | None) -> tuple[list[str], dict[str, str]]:
    """``run_exporter``'s command and environment for this tree or the ``before`` one."""
    if before is None:
        return [], {}
    return ([sys.executable, "-c", "from gpu_exporter.cli import main; main()"],
            {"PYTHONPATH": str(before)})


@contextmanager
def _exporters(trees: dict[str, Path | None], tmp: Path,
               rss: dict[str, float]) -> Iterator[dict[str, str]]:
    """Every tree's exporter (``--simulate h100x8``) at once; their /metrics URLs.

    Each one's RSS at the end goes into ``rss``.
    """
    urls: dict[str, str] = {}
    pids: dict[str, int] = {}
    stack = []
    try:
        for name, tree in trees.items():
            command, env = _command(tree)
            manager = run_exporter(["--simulate", "h100x8"], command=command,
                                   env={**env, "GPU_SIM_DIR": str(tmp / name)})
            exporter = manager.__enter__()
            stack.append(manager)
            urls[name] = exporter.url + "/metrics"
            pids[name] = exporter.process.pid
        yield urls
        for name, pid in pids.items():
            rss[name] = _rss_mib(pid)
    finally:
        for manager in reversed(stack):
            manager.__exit__(None, None, None)


def deployed_rss(tree: Path | None, tmp: Path) -> float:
    """RSS after load of the exporter as deployed: no --simulate, NVML from the environment."""
    command, env = _command(tree)
    sim = prepare("h100x8", state_dir=tmp / "deployed-sim")
    with run_exporter([], command=command, env={**env, **sim.env}) as exporter:
        time.sleep(3)
        _wrk(exporter.url + "/metrics")
        return _rss_mib(exporter.process.pid)


def kube_rss(tree: Path | None, tmp: Path) -> float:
    """RSS after load with -k, a fake kubelet holding 110 pods (``--simulate``)."""
    command, env = _command(tree)
    tmp.mkdir(parents=True, exist_ok=True)
    sock = tmp / "kubelet.sock"
    with FakeKubelet(sock) as kubelet:
        pods = [pod(f"p{i}", "ns", {"c": {"nvidia.com/gpu": [f"GPU-x{i}"]}})
                for i in range(110)]
        kubelet.set_pods(pods)
        with run_exporter(
            ["--simulate", "h100x8", "-k", "--pod-resources-kubelet-socket", str(sock),
             "--pod-resources-refresh-interval", "1000"], command=command,
            env={**env, "GPU_SIM_DIR": str(tmp / "kube-sim")},
        ) as exporter:
            time.sleep(3)
            _wrk(exporter.url + "/metrics")
            return _rss_mib(exporter.process.pid)


STEADY_CYCLES = 2
"""The body the baseline serves is the exporter's after this many cycles: the first cycle
has no rate or profiling fields yet (they need two samples), so its body is smaller than
what every later cycle serves."""


def _steady_body(url: str) -> bytes:
    """The exporter's /metrics body once :data:`STEADY_CYCLES` collections have published."""
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(urllib.request.Request(  # our own loopback
                url, headers={"Accept": ACCEPT}), timeout=10) as response:
            body = response.read()
        found = re.search(rb"^gpu_exporter_collections_total (\d+)", body, re.MULTILINE)
        if found and int(found.group(1)) >= STEADY_CYCLES:
            return body
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}: fewer than {STEADY_CYCLES} collections in 30 s")
        time.sleep(0.1)


def main() -> None:  # one report, row after row
    """Run every measurement and print the Markdown section."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--before", type=Path, help="also the exporter of this older src/ tree")
    args = parser.parse_args()
    trees: dict[str, Path | None] = {"ours": None}
    if args.before is not None:
        trees["before"] = args.before.resolve()
    ttfm = time_to_first_metrics()
    loads: list[float] = []
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in (*trees, "bare")}
    opens: dict[str, list[dict[str, float]]] = {"ours": [], "bare": []}
    simulate: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp_name, \
            _exporters(trees, Path(tmp_name), simulate) as urls:
        body = _steady_body(urls["ours"])
        with _bare_server(body) as (url, _):
            urls["bare"] = url
            order = list(urls.items())
            for _ in range(ROUNDS):  # interleaved, so background load hits all alike
                loads.append(os.getloadavg()[0])
                for name, target in order:
                    runs[name].append(_wrk_latency(target))
                order.reverse()  # no target always first, or always after another
                opens["ours"].append(_open_loop(urls["ours"]))
                opens["bare"].append(_open_loop(url))
    with tempfile.TemporaryDirectory() as tmp_name:
        deployed = {name: deployed_rss(tree, Path(tmp_name) / name)
                    for name, tree in trees.items()}
    with tempfile.TemporaryDirectory() as tmp_name:
        kube = {name: kube_rss(tree, Path(tmp_name) / name) for name, tree in trees.items()}
    floor = bare_python_rss()
    rate = {name: statistics.median(r for r, _ in found) for name, found in runs.items()}
    p99 = {name: statistics.median(p for _, p in found) for name, found in runs.items()}
    open_p99 = {name: statistics.median(r["p99_ms"] for r in found)
                for name, found in opens.items()}
    open_p50 = {name: statistics.median(r["p50_ms"] for r in found)
                for name, found in opens.items()}
    ours, bare = rate["ours"], rate["bare"]
    rows = [
        ("/metrics throughput", f"{ours:,.0f} req/s",
         f"bare aiohttp handler, same bytes: {bare:,.0f} req/s", f"{ours / bare:.2f}", ">= 0.9"),
        ("/metrics p99 latency, wrk (closed loop, saturated)", f"{p99['ours']:.1f} ms",
         f"bare handler: {p99['bare']:.1f} ms", f"{p99['ours'] / p99['bare']:.2f}", "<= 10 ms"),
        (f"/metrics p99 latency, open loop: {CONNECTIONS} connections, {OPEN_LOOP_RATE} "
         "req/s in all (bench/openloop.py)",
         f"{open_p99['ours']:.1f} ms (p50 {open_p50['ours']:.1f} ms)",
         f"bare handler: {open_p99['bare']:.1f} ms (p50 {open_p50['bare']:.1f} ms)",
         f"{open_p99['ours'] / open_p99['bare']:.2f}", "<= 10 ms"),
        ("Time to first /metrics",
         f"median {statistics.median(ttfm):.2f} s (max {max(ttfm):.2f} s, {len(ttfm)} starts)",
         "", "", "<= 1.5 s"),
        ("RSS after load, as deployed (no `--simulate`)", f"{deployed['ours']:.1f} MiB",
         f"python + aiohttp.web imported: {floor:.1f} MiB",
         f"{deployed['ours'] / floor:.2f}", "<= 40 MiB"),
        ("RSS after load, `--simulate`", f"{simulate['ours']:.1f} MiB", "same floor",
         f"{simulate['ours'] / floor:.2f}", "<= 40 MiB"),
        ("RSS after load, -k, 110 pods (`--simulate`)", f"{kube['ours']:.1f} MiB", "same floor",
         f"{kube['ours'] / floor:.2f}", "<= 56 MiB"),
    ]
    if "before" in trees:
        rows.extend([
            ("before: /metrics throughput", f"{rate['before']:,.0f} req/s",
             f"bare handler {bare:,.0f} req/s; ours / before {ours / rate['before']:.2f}",
             f"{rate['before'] / bare:.2f}", ""),
            ("before: RSS as deployed, `--simulate`, -k",
             f"{deployed['before']:.1f}, {simulate['before']:.1f}, "
             f"{kube['before']:.1f} MiB", "", "", ""),
        ])
    print("## /metrics load, RSS and start-up (bench/load_metrics.py)\n")
    before = " --before ..." if "before" in trees else ""
    print(f"Command: `.venv/bin/python bench/load_metrics.py{before}` (wrk -t1 -c{CONNECTIONS} "
          f"-d{WRK_SECONDS}s --latency, "
          f"{ROUNDS} interleaved rounds each, the order reversed every round, medians; text "
          f"format, h100x8 simulated, default counters; body {len(body)} bytes; load average "
          f"(1 min) at the rounds "
          f"{min(loads):.2f}-{max(loads):.2f}).\n")
    print("| Measure | Value | Baseline (same run) | Ratio | Target |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
