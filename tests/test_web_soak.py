"""Abuse soak: idle connections past the descriptor limit, then malformed requests.

The exporter runs with ``nofile`` 1024 (set in the child before exec). 1,100 idle connections
are opened and held; scrapes keep succeeding (the connection cap sits below the descriptor
limit and the longest-silent connections make room). Then 10,000 malformed requests (a bad
URL byte, Content-Length with Transfer-Encoding, garbage): scrapes keep succeeding, the log
grows by less than 100 KB and RSS stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import time
from pathlib import Path

from support.exporter import Exporter, run_exporter

NOFILE = 1024
IDLE = 1100
MALFORMED = 10_000
BAD = (
    b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"\x16\x03\x01\x02\x00garbage that is not HTTP\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
)


def _limit_descriptors() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, hard))


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _scrape_ok(exporter: Exporter) -> bool:
    try:
        status, body, _ = exporter.get("/metrics", timeout=20)
    except OSError:
        return False
    return status == 200 and b"DCGM_FI_DEV_GPU_TEMP" in body


async def _malformed(host: str, port: int, count: int, concurrency: int = 64) -> int:
    answered = 0
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        nonlocal answered
        async with sem:
            try:
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(BAD[i % len(BAD)])
                await writer.drain()
                data = await asyncio.wait_for(reader.read(200), 20)
                answered += data.startswith(b"HTTP/1.")
                writer.close()
            except (OSError, asyncio.TimeoutError):
                pass

    await asyncio.gather(*(one(i) for i in range(count)))
    return answered


def test_idle_connections_and_malformed_requests(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    held: list[socket.socket] = []
    try:
        with run_exporter(["--simulate", "t4x4", "-c", "1000"],
                          preexec_fn=_limit_descriptors) as exporter:
            host, port = exporter.url.removeprefix("http://").rsplit(":", 1)
            assert _scrape_ok(exporter)
            rss_start = _rss_kib(exporter.process.pid)
            with contextlib.suppress(OSError):  # the backlog may refuse the last ones
                while len(held) < IDLE:
                    held.append(socket.create_connection((host, int(port)), timeout=10))
            assert len(held) >= NOFILE
            time.sleep(1.5)  # the held connections are now "silent for a while"
            for _ in range(5):
                assert _scrape_ok(exporter), exporter.log[-2000:]
            log_before = len(exporter.log.encode())
            answered = asyncio.run(_malformed(host, int(port), MALFORMED))
            assert answered >= MALFORMED * 0.9  # each got its 400 and a closed connection
            for _ in range(5):
                assert _scrape_ok(exporter), exporter.log[-2000:]
            growth = len(exporter.log.encode()) - log_before
            assert growth < 100_000, exporter.log[-3000:]
            assert "Traceback" not in exporter.log
            assert "Too many open files" not in exporter.log  # the cap keeps accept() working
            rss_end = _rss_kib(exporter.process.pid)
            assert rss_end < rss_start + 64 * 1024, (rss_start, rss_end)
            # every one is counted (the count is taken once per collection cycle)
            deadline = time.monotonic() + 60
            while True:
                text = exporter.metrics()
                errors = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                             if line.startswith("gpu_exporter_http_errors_total{"))
                if errors >= answered or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert errors >= answered, text[-3000:]
            assert "gpu_exporter_http_connections_max 384" in text  # 1024 - 128 - 4 * 128
            assert 'gpu_exporter_http_connections_closed_total{reason="evicted"}' in text
            print(f"soak: {len(held)} idle held, {answered} malformed answered, log +{growth} B,"
                  f" RSS {rss_start} -> {rss_end} KiB")
    finally:
        for sock in held:
            sock.close()
