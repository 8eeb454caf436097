"""Content negotiation (pure) and the handlers on a real aiohttp server with a fixed snapshot."""

from __future__ import annotations

import gzip
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from gpu_exporter.http import (
    HTTP_SETTINGS,
    NEGOTIATED_MAX,
    SNAPSHOT,
    HttpSettings,
    accepts_gzip,
    add_routes,
    ready_limit,
    stall_limit,
    wants_openmetrics,
)
from gpu_exporter.render import Family
from gpu_exporter.snapshot import Snapshot, SnapshotHolder, build_snapshot

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (PROMETHEUS_ACCEPT, True),
        ("text/plain;version=0.0.4", False),
        ("", False),
        ("*/*", False),
        ("application/openmetrics-text; version=1.0.0; q=0.2, text/plain; q=0.9", False),
        ("application/openmetrics-text;q=0", False),
    ],
)
def test_wants_openmetrics(accept: str, expected: bool) -> None:
    assert wants_openmetrics(accept) is expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [("gzip", True), ("gzip, deflate, br", True), ("identity", False), ("", False),
     ("gzip;q=0", False), ("*", True)],
)
def test_accepts_gzip(header: str, expected: bool) -> None:
    assert accepts_gzip(header) is expected


def _snapshot(age: float = 0.0) -> Snapshot:
    family = Family("gpu_exporter_collections_total", "counter", "cycles", (
        ("gpu_exporter_collections_total", (), 7.0),))
    return build_snapshot([family], created=time.time(), monotonic=time.monotonic() - age)


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, SnapshotHolder]]:
    app = web.Application()
    holder = SnapshotHolder()
    app[SNAPSHOT] = holder
    app[HTTP_SETTINGS] = HttpSettings(collect_interval=1.0)
    add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", holder
    finally:
        await runner.cleanup()


async def test_not_ready_until_first_snapshot_then_stale(
    server: tuple[str, SnapshotHolder],
) -> None:
    url, holder = server
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/health") as resp:
            assert resp.status == 200
            assert await resp.text() == "OK"
        async with session.get(f"{url}/ready") as resp:
            assert resp.status == 503
        async with session.get(f"{url}/metrics") as resp:
            assert resp.status == 503
        holder.current = _snapshot()
        async with session.get(f"{url}/ready") as resp:
            assert resp.status == 200
        holder.current = _snapshot(age=3.5)  # 3 intervals (1 s) but under the 30 s floor
        async with session.get(f"{url}/ready") as resp:
            assert resp.status == 200
        holder.current = _snapshot(age=31.0)  # older than max(3 intervals, 30 s)
        async with session.get(f"{url}/ready") as resp:
            assert resp.status == 503
            assert "old" in await resp.text()


async def test_metrics_formats_and_gzip(server: tuple[str, SnapshotHolder]) -> None:
    url, holder = server
    holder.current = _snapshot()
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(f"{url}/metrics", headers={"Accept-Encoding": "identity"}) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert "Content-Encoding" not in r.headers
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert await r.read() == holder.current.text
        async with session.get(
            f"{url}/metrics",
            headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"},
        ) as r:
            assert r.headers["Content-Type"].startswith("application/openmetrics-text")
            assert r.headers["Content-Encoding"] == "gzip"
            body = gzip.decompress(await r.read())
            assert body == holder.current.openmetrics
            assert body.endswith(b"# EOF\n")
        async with session.get(f"{url}/") as r:
            assert r.status == 200
            assert 'href="metrics"' in await r.text()


async def test_every_header_pair_is_negotiated_past_the_kept_ones(
    server: tuple[str, SnapshotHolder],
) -> None:
    """The handler keeps NEGOTIATED_MAX pairs; later pairs are negotiated all the same."""
    url, holder = server
    holder.current = _snapshot()
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        for i in range(2 * NEGOTIATED_MAX + 5):
            openmetrics, gzipped = i % 2 == 0, i % 3 == 0
            accept = (f"application/openmetrics-text;q=0.{i + 100}" if openmetrics
                      else f"text/plain;version=0.0.4;q=0.{i + 100}")
            encoding = f"gzip;q=0.{i + 100}" if gzipped else f"identity;q=0.{i + 100}"
            for _ in range(2):  # first negotiated, then kept (or not, past the bound)
                async with session.get(f"{url}/metrics", headers={
                        "Accept": accept, "Accept-Encoding": encoding}) as r:
                    body = await r.read()
                    assert r.headers["Content-Type"].startswith(
                        "application/openmetrics-text" if openmetrics else "text/plain"), i
                    assert r.headers.get("Content-Encoding") == ("gzip" if gzipped else None)
                    assert r.headers["Vary"] == "Accept, Accept-Encoding"
                    assert r.headers["X-Content-Type-Options"] == "nosniff"
                    plain = gzip.decompress(body) if gzipped else body
                    assert plain == (holder.current.openmetrics if openmetrics
                                     else holder.current.text)


async def test_health_fails_only_when_the_loop_has_stalled(
    server: tuple[str, SnapshotHolder],
) -> None:
    url, holder = server  # collect interval 1 s: the stall limit is 120 s
    async with aiohttp.ClientSession() as session:
        holder.current = _snapshot(age=100.0)  # stale for /ready, still alive
        async with session.get(f"{url}/health") as resp:
            assert resp.status == 200
        holder.current = _snapshot(age=121.0)
        async with session.get(f"{url}/health") as resp:
            assert resp.status == 503
            assert "no collection for" in await resp.text()


@pytest.mark.parametrize(
    ("interval", "limit"),
    [(0.001, 30.0), (1.0, 30.0), (10.0, 30.0), (30.0, 90.0), (120.0, 360.0)],
)
def test_ready_limit_is_never_shorter_than_a_cycle(interval: float, limit: float) -> None:
    # -c 1 (1 ms): three intervals are shorter than any cycle; the floor keeps /ready usable
    assert ready_limit(interval) == limit


def test_stall_limit() -> None:
    assert stall_limit(30.0) == 300.0
    assert stall_limit(1.0) == 120.0
