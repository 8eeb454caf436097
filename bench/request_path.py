"""CPU per ``/metrics`` request of the request path alone, in process, beside a bare handler.

No sockets and no client: a request head is fed to the protocol of one keep-alive
connection whose transport only counts the bytes written, and the event loop runs until the
whole answer is written. What is left is the server's own Python work per request, which
wrk's throughput hides behind the socket calls and the scheduler of a shared machine. Four
set-ups, timed in alternating blocks in the same process (median of the blocks):

* ``bare``: aiohttp's request handler and a handler returning the body (the baseline of
  bench/load_metrics.py);
* ``bare+guard``: the same behind the exporter's connection guard (``listener._Guard``:
  read/write timeouts, connection limit);
* ``ours``: the exporter's routes and ``/metrics`` handler (negotiation, headers) serving a
  snapshot of the same bytes, no guard;
* ``ours+guard``: both, as the exporter serves.

Run: ``.venv/bin/python bench/request_path.py``; prints a Markdown table. With
``PYTHONPATH=OTHER/src`` in front it measures an older tree's request path the same way.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from typing import Any

from aiohttp import web

from gpu_exporter import http, listener
from gpu_exporter.render import Family
from gpu_exporter.snapshot import SnapshotHolder, build_snapshot

REQUEST = (b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9400\r\n"
           b"Accept: text/plain;version=0.0.4\r\n\r\n")
BLOCKS = 12
PER_BLOCK = 3000
SETUPS = ("bare", "bare+guard", "ours", "ours+guard")


def _families() -> list[Family]:
    """About 70 KB of text exposition: 8 GPUs x 40 gauges, each with its help text."""
    return [
        Family(f"DCGM_FI_DEV_FIELD_{field}", "gauge", f"Simulated field {field}.", tuple(
            (f"DCGM_FI_DEV_FIELD_{field}",
             (("gpu", str(gpu)), ("UUID", f"GPU-{gpu:08x}-0000-0000-0000-000000000000"),
              ("pci_bus_id", f"00000000:{gpu + 16:02X}:00.0"), ("device", f"nvidia{gpu}"),
              ("modelName", "NVIDIA H100 80GB HBM3"), ("Hostname", "node-1")),
             float(field * gpu))
            for gpu in range(8)))
        for field in range(40)
    ]


class _CountingTransport(asyncio.Transport):
    """Takes the answer's bytes; completes ``done`` once ``expected`` bytes were written."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.written = 0
        self.done: asyncio.Future[None] | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000),
                "sockname": ("127.0.0.1", 9400)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += len(data)
        if self.written >= self.expected and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))  # as asyncio's own transports do on 3.11

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def _protocol(setup: str, body: bytes) -> tuple[asyncio.Protocol, _CountingTransport]:
    app = web.Application()
    if setup.startswith("bare"):
        async def handler(_request: web.Request) -> web.Response:
            return web.Response(body=body, content_type="text/plain")
        app.router.add_get("/metrics", handler)
    else:
        holder = SnapshotHolder()
        holder.current = build_snapshot(_families(), created=0.0, monotonic=0.0)
        app[http.SNAPSHOT] = holder
        app[http.HTTP_SETTINGS] = http.HttpSettings(collect_interval=1.0)
        http.add_routes(app)
    stats = listener.ServingStats()
    quiet = listener.QuietLog(logging.getLogger("bench.request_path"), stats)
    kwargs = {"logger": quiet, "access_log": None, "keepalive_timeout": 75.0}
    runner = web.AppRunner(app, handle_signals=False, **kwargs)  # type: ignore[arg-type]
    await runner.setup()
    lst = listener.Listener(runner, listener.Limits(), stats, kwargs)
    protocol: asyncio.Protocol = (lst.protocol() if setup.endswith("+guard")
                                  else lst.make_handler())
    transport = _CountingTransport(len(body))
    protocol.connection_made(transport)
    return protocol, transport


async def measure() -> dict[str, list[float]]:
    """Microseconds of CPU (process time) per request, one value per block and set-up."""
    body = build_snapshot(_families(), created=0.0, monotonic=0.0).text
    loop = asyncio.get_running_loop()
    protocols = {setup: await _protocol(setup, body) for setup in SETUPS}

    async def one(protocol: asyncio.Protocol, transport: _CountingTransport) -> None:
        transport.written = 0
        transport.done = loop.create_future()
        protocol.data_received(REQUEST)  # type: ignore[attr-defined]
        await transport.done

    results: dict[str, list[float]] = {setup: [] for setup in SETUPS}
    for _ in range(BLOCKS):
        for setup, (protocol, transport) in protocols.items():
            for _ in range(200):  # warm
                await one(protocol, transport)
            start = time.process_time()
            for _ in range(PER_BLOCK):
                await one(protocol, transport)
            results[setup].append(1e6 * (time.process_time() - start) / PER_BLOCK)
    return results


def main() -> None:
    """Print the table."""
    results = asyncio.run(measure())
    bare = statistics.median(results["bare"])
    body = len(build_snapshot(_families(), created=0.0, monotonic=0.0).text)
    print(f"Command: `.venv/bin/python bench/request_path.py` ({BLOCKS} alternating blocks of "
          f"{PER_BLOCK} requests per set-up, median; body {body:,} bytes)\n")
    print("| Set-up | CPU per request | Over the bare handler |")
    print("|---|---|---|")
    for setup in SETUPS:
        value = statistics.median(results[setup])
        print(f"| {setup} | {value:.1f} us | {value - bare:+.1f} us ({value / bare:.3f}) |")


if __name__ == "__main__":
    main()
