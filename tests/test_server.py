"""The exporter's lifecycle: what start-up failures leave behind."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from simproc import run_snippet

from gpu_exporter import server
from gpu_exporter.config import Config, KubeSettings, ListenAddress
from gpu_exporter.errors import StartupError
from gpu_exporter.kubernetes import integration


class FakeBackend:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_a_start_up_step_failing_after_nvml_opened_still_closes_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    opened: list[FakeBackend] = []

    def open_backend(*_args: object) -> FakeBackend:
        opened.append(FakeBackend())
        return opened[-1]

    async def start_refresher(_settings: KubeSettings) -> None:
        raise StartupError("kubelet: refused")

    monkeypatch.setattr(server, "open_backend", open_backend)
    monkeypatch.setattr(integration, "start_refresher", start_refresher)
    csv = tmp_path / "counters.csv"
    csv.write_text("DCGM_FI_DEV_GPU_TEMP, gauge, temperature\n")
    config = Config(counters_path=csv, address=ListenAddress("127.0.0.1", 0),
                    kube=KubeSettings(enabled=True))
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(StartupError, match="kubelet: refused"):
            loop.run_until_complete(server.run(config, server.read_counters(csv)))
        # closed by run() itself, not left to the loop's async-generator clean-up at exit
        assert [backend.closed for backend in opened] == [1]
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    assert [backend.closed for backend in opened] == [1]


@pytest.mark.parametrize(
    ("interval", "elapsed", "first", "delay"),
    [
        (30.0, 0.2, True, server.SECOND_CYCLE_DELAY_S),  # rates complete within seconds
        (30.0, 0.2, False, 29.8),
        (0.5, 0.2, True, 0.3),  # a short interval is never stretched
        (0.001, 0.2, True, 0.0),
        (0.001, 0.2, False, 0.0),
        (30.0, 31.0, False, 0.0),
    ],
)
def test_next_delay_takes_the_second_sample_soon_after_start(
        interval: float, elapsed: float, first: bool, delay: float) -> None:
    assert server.next_delay(interval, elapsed, first=first) == pytest.approx(delay)


@pytest.mark.parametrize(
    ("published", "now", "delay"),
    [
        (100.0, 100.0, 30.0),  # just published: due a whole bound later
        (100.0, 125.0, 5.0),
        (100.0, 130.0, server.STALE_CHECK_MIN_S),  # exactly at the bound: not stale yet
        (100.0, 129.999, server.STALE_CHECK_MIN_S),  # an early timer: no busy loop
        (100.0, 130.001, 0.0),  # past the bound: stale now
        (100.0, 500.0, 0.0),
    ],
)
def test_the_staleness_watch_sleeps_until_the_snapshot_would_outlive_its_bound(
        published: float, now: float, delay: float) -> None:
    assert server.stale_check_delay(published, now, 30.0) == pytest.approx(delay)


def test_cycles_are_collected_and_published_without_the_event_loop(tmp_path: Path) -> None:
    # The collector thread owns the timing: while the event loop is blocked (no callback,
    # no timer can run on it), snapshots still come, published by that thread alone; the
    # stop event ends its sleep at once.
    csv = tmp_path / "counters.csv"
    csv.write_text("DCGM_FI_DEV_GPU_TEMP, gauge, temperature\n")
    out = run_snippet(f"""
import asyncio, threading
from pathlib import Path
from aiohttp import web
from gpu_exporter import server
from gpu_exporter.config import Config, ListenAddress
from gpu_exporter.http import SNAPSHOT

async def main():
    csv = Path({str(csv)!r})
    config = Config(counters_path=csv, address=ListenAddress("127.0.0.1", 0),
                    simulate="t4x4", collect_interval=0.05)
    app = server.create_app(config, server.read_counters(csv))
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    holder = app[SNAPSHOT]
    while holder.current is None:
        await asyncio.sleep(0.01)
    seen = {{id(holder.current)}}
    loop_thread = threading.get_ident()
    deadline = time.monotonic() + 30
    while len(seen) < 4 and time.monotonic() < deadline:  # the loop blocked throughout
        time.sleep(0.01)
        seen.add(id(holder.current))
    out["published_while_blocked"] = len(seen) - 1
    out["on_loop_thread"] = threading.get_ident() == loop_thread
    out["collector"] = [t.name for t in threading.enumerate() if t.name == "collect"]
    out["text"] = holder.current.text.decode()
    await runner.cleanup()
    out["collector_after"] = [t.name for t in threading.enumerate() if t.name == "collect"]

asyncio.run(main())
""")
    assert out["published_while_blocked"] >= 3
    assert out["on_loop_thread"]
    assert out["collector"] == ["collect"]
    assert out["text"].count("DCGM_FI_DEV_GPU_TEMP{") == 4
    assert out["collector_after"] == []  # stopped by the app's clean-up, not left running
