"""Open-loop /metrics latency: N keep-alive connections, a fixed total request rate.

wrk is a closed loop: each connection sends its next request when the previous answer
arrives, so at saturation the latency is set by Little's law (connections / throughput, about
10 ms for 64 connections at 6,500 requests/s on this 2-CPU machine, whatever the server does)
and its p99 is the scheduler's jitter. Here every request has a due time (the connections'
schedules are staggered, the total rate is fixed below saturation), and its latency is counted
from that due time to the last byte of the answer, so a stalled server is charged for every
request it delayed (no coordinated omission).

Run: ``python bench/openloop.py URL [--connections 64] [--rate 1000] [--seconds 5]``; prints
one JSON object: requests, errors, p50/p90/p99/max in ms. Used by ``bench/load_metrics.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from urllib.parse import urlsplit


async def _connection(host: str, port: int, path: str, *, accept: str, start: float,
                      period: float, end: float, latencies: list[float],
                      errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: {accept}\r\n"
               "\r\n").encode()
    due = start
    try:
        while due < end:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n", 1)[0].decode())
            latencies.append(time.monotonic() - due)
            due += period
    except (OSError, asyncio.IncompleteReadError) as exc:
        errors.append(repr(exc))
    finally:
        writer.close()


async def _run(url: str, connections: int, rate: float, seconds: float,
               accept: str) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    period = connections / rate
    start = time.monotonic() + 0.2
    end = start + seconds
    latencies: list[float] = []
    errors: list[str] = []
    await asyncio.gather(*(
        _connection(host, port, parts.path or "/", accept=accept,
                    start=start + i * period / connections, period=period, end=end,
                    latencies=latencies, errors=errors)
        for i in range(connections)))
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"requests": len(ordered), "errors": len(errors), "p50_ms": pct(0.50),
            "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": 1000 * ordered[-1],
            "mean_ms": 1000 * statistics.fmean(ordered)}


def main() -> None:
    """Parse the options, run, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second, all")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--accept", default="text/plain;version=0.0.4")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_run(args.url, args.connections, args.rate, args.seconds,
                                      args.accept))))


if __name__ == "__main__":
    main()
