"""Slow, silent and non-reading clients are cut off; the rate limit answers 429.

Real exporter, real sockets: partial request heads past --web-read-timeout, a client that
stops reading its responses past --web-write-timeout, and the web config's rate_limit.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from support.exporter import Exporter, run_exporter

ARGS = ["--simulate", "t4x4", "-c", "500"]


def _closed(sock: socket.socket, timeout: float) -> bool:
    """True when the peer closes ``sock`` within ``timeout`` seconds (reading what comes)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def _counter(exporter: Exporter, line: str, minimum: float, timeout: float = 30) -> float:
    deadline = time.monotonic() + timeout
    value = 0.0
    while time.monotonic() < deadline:
        for row in exporter.metrics().splitlines():
            if row.startswith(line + " "):
                value = float(row.rsplit(" ", 1)[1])
        if value >= minimum:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{line} = {value} < {minimum}")


def test_partial_request_heads_are_closed_after_the_read_timeout() -> None:
    with run_exporter([*ARGS, "--web-read-timeout", "1s"]) as exporter:
        host, port = exporter.url.removeprefix("http://").rsplit(":", 1)
        slow = []
        for i in range(50):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" if i % 2 else b"")
            slow.append(sock)
        try:
            started = time.monotonic()
            assert all(_closed(sock, 15) for sock in slow)
            assert time.monotonic() - started < 15
            assert exporter.get("/metrics")[0] == 200  # scrapes were never affected
            _counter(exporter,
                     'gpu_exporter_http_connections_closed_total{reason="read_timeout"}', 50)
        finally:
            for sock in slow:
                sock.close()


def test_a_client_that_stops_reading_is_closed_after_the_write_timeout() -> None:
    with run_exporter([*ARGS, "--web-write-timeout", "1s"]) as exporter:
        host, port = exporter.url.removeprefix("http://").rsplit(":", 1)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        try:
            request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n"
            sock.settimeout(5)
            try:
                # pipelined; their answers pile up unread until the kernel's socket buffers
                # (several MiB on loopback) are full and the server's writes block; sending
                # itself blocks (timeout) once the server stops reading requests
                for _ in range(1000):
                    sock.sendall(request)
            except (TimeoutError, ConnectionResetError, BrokenPipeError):
                pass
            _counter(exporter,
                     'gpu_exporter_http_connections_closed_total{reason="write_timeout"}', 1)
            assert _closed(sock, 30)
        finally:
            sock.close()
        assert exporter.get("/metrics")[0] == 200


def test_rate_limit_answers_429(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text("rate_limit:\n  interval: 1h\n  burst: 3\n")
    with run_exporter([*ARGS, "--web-config-file", str(web)], wait_ready=False) as exporter:
        statuses = [exporter.get("/health")[0] for _ in range(6)]
        assert statuses[:3] == [200, 200, 200]
        assert statuses[3:] == [429, 429, 429]


def test_no_version_in_any_server_header() -> None:
    with run_exporter(ARGS) as exporter:
        host, port = exporter.url.removeprefix("http://").rsplit(":", 1)
        for raw in (b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n",  # aiohttp's own 400 page
                    b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                    b"Connection: close\r\n\r\n",
                    b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(raw)
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    head += chunk
            headers = head.split(b"\r\n\r\n")[0].decode("latin-1").lower()
            assert "server: gpu-exporter\r\n" in headers + "\r\n", headers
            assert "aiohttp" not in headers
            assert "python" not in headers


def test_the_connection_cap_leaves_room_for_four_accept_batches() -> None:
    # asyncio keeps an accepted socket open for three loop iterations before a guard at the
    # limit can close it, accepting a batch of 128 in each: 512 descriptors + 128 others
    from gpu_exporter.listener import max_connections

    assert max_connections(0, 1024) == 1024 - 128 - 4 * 128
    assert max_connections(0, 65536) == 1024  # the default, far below the limit
    assert max_connections(2000, 4096) == 2000
    assert max_connections(5000, 4096) == 4096 - 640
    assert max_connections(0, 600) == 8  # never none
