"""Serving under many clients, with the connection limits on (docs/security.md figures).

Measures, on the simulated h100x8 profile with the default counters:

* 200 concurrent scrapers (wrk -t2 -c200) for ``SECONDS``: requests, errors, p99 latency, and
  the same load against a bare aiohttp handler serving the same bytes (the baseline);
* 500 idle connections held open, then sequential scrapes: how many succeed and their
  median time, against the same scrapes with no idle connections.

Run: ``.venv/bin/python bench/web_limits.py`` (needs ``wrk``). Prints a Markdown section for
bench/RESULTS.md. Every loop here is bounded.
"""

from __future__ import annotations

import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from load_metrics import _bare_server  # noqa: E402
from support.exporter import run_exporter  # noqa: E402

SECONDS = 20
IDLE = 500
SCRAPES = 50


def _wrk(url: str) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", "-c200", f"-d{SECONDS}s", "--latency", "-H",
         "Accept: text/plain;version=0.0.4", url],
        capture_output=True, text=True, timeout=SECONDS + 60, check=True,
    ).stdout
    requests = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0.0
    for kind in ("connect", "read", "write", "timeout"):
        match = re.search(rf"{kind} (\d+)", out)
        errors += float(match.group(1)) if match else 0.0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += float(non2xx.group(1)) if non2xx else 0.0
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    return {"requests": requests, "errors": errors, "p99_ms": p99_ms}


def _scrapes(url: str) -> tuple[int, float]:
    ok, times = 0, []
    for _ in range(SCRAPES):
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                ok += response.status == 200 and bool(response.read())
        except OSError:
            pass
        times.append(time.perf_counter() - start)
    return ok, statistics.median(times) * 1000


def main() -> None:
    with run_exporter(["--simulate", "h100x8", "-c", "1000"]) as exporter:
        body = exporter.get("/metrics", headers={"Accept": "text/plain;version=0.0.4"})[1]
        url = exporter.url + "/metrics"
        with _bare_server(body) as (bare, _):
            ours = _wrk(url)
            base = _wrk(bare)
        alone = _scrapes(url)
        host, port = exporter.url.removeprefix("http://").rsplit(":", 1)
        held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(IDLE)]
        try:
            time.sleep(1.5)
            crowded = _scrapes(url)
        finally:
            for sock in held:
                sock.close()
    print("## Serving limits under load (bench/web_limits.py)\n")
    print(f"Command: `.venv/bin/python bench/web_limits.py` (wrk -t2 -c200 -d{SECONDS}s; "
          "h100x8 simulated, default counters, text format; the baseline is a bare aiohttp "
          "handler serving the same bytes in the same run).\n")
    print("| Measure | gpu-exporter | Baseline | Ratio |")
    print("|---|---|---|---|")
    print(f"| 200 scrapers, requests in {SECONDS} s | {ours['requests']:,.0f} | "
          f"{base['requests']:,.0f} | {ours['requests'] / base['requests']:.2f} |")
    print(f"| 200 scrapers, errors | {ours['errors']:.0f} | {base['errors']:.0f} | |")
    print(f"| 200 scrapers, p99 latency | {ours['p99_ms']:.0f} ms | {base['p99_ms']:.0f} ms | "
          f"{ours['p99_ms'] / base['p99_ms']:.2f} |")
    print(f"| {SCRAPES} scrapes with {IDLE} idle connections held | {crowded[0]} ok, median "
          f"{crowded[1]:.1f} ms | without them: {alone[0]} ok, median {alone[1]:.1f} ms | "
          f"{crowded[1] / alone[1]:.2f} |")


if __name__ == "__main__":
    main()
