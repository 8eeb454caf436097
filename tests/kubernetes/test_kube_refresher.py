"""The refresher against a fake kubelet (real gRPC over a unix socket) and its faults."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from fake_kubelet import FakeKubelet, pod
from kube_fixtures import (
    ENTITIES,
    GPU0,
    GPU1,
    MIG2_9,
    MIG_B,
    UUID0,
    UUID1,
    by_entity,
    pod_labels,
    samples,
)

from gpu_exporter.kubernetes.config import KubernetesConfig
from gpu_exporter.kubernetes.podindex import EMPTY_INDEX
from gpu_exporter.kubernetes.refresher import (
    Refresher,
    backoff_delay,
    make_client,
    permission_hint,
    running,
)
from gpu_exporter.model import Cycle

LOGGER = "gpu_exporter.kubernetes"
TRAIN = pod("train-0", "ml", {"trainer": {"nvidia.com/gpu": [UUID0]}})
OTHER = pod("infer-1", "serving", {"server": {"nvidia.com/gpu": [UUID1]}})
MIG_POD = pod("small", "team-a", {"c": {"nvidia.com/mig-1g.5gb": [MIG_B]}})


def config(socket: object, **kw: object) -> KubernetesConfig:
    base: dict[str, object] = {
        "socket_path": str(socket), "refresh_interval": 0.05, "max_stale": 30.0,
        "deadline": 1.0, "max_backoff": 0.2,
    }
    base.update(kw)
    return KubernetesConfig(**base)  # type: ignore[arg-type]


def cycle() -> Cycle:
    return Cycle(samples(), (), ENTITIES, 1000.0, 0.1)


def owner(refresher: Refresher, entity: object = GPU0) -> str | None:
    out = refresher.apply(cycle())
    # Metrics keep flowing whatever the kubelet does: every sample is always there.
    assert len(out.samples) >= len(samples())
    labels = pod_labels(by_entity(out.samples, entity)[0])  # type: ignore[arg-type]
    return labels.get("pod")


def native(refresher: Refresher, name: str) -> float:
    (value,) = [n.value for n in refresher.natives() if n.name == name]
    return value


async def poll(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.01)


def logged(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def test_pods_are_attributed_and_scrapes_never_call_the_kubelet(
    kubelet: FakeKubelet, socket_path: object
) -> None:
    kubelet.set_pods([TRAIN, MIG_POD, pod("idle", "ns", {"c": {}})])
    kubelet.set_allocatable({"nvidia.com/gpu": [UUID0, UUID1]})
    kubelet.start()

    async def scenario() -> None:
        # A refresh interval far longer than the test: only the first refresh happens.
        async with running(config(socket_path, refresh_interval=3600.0,
                                  max_stale=3600.0)) as refresher:
            await poll(lambda: refresher.up)
            assert owner(refresher) == "train-0"
            assert owner(refresher, MIG2_9) == "small"
            assert owner(refresher, GPU1) is None
            calls = sum(kubelet.calls.values())
            assert kubelet.calls["List"] == 1
            for _ in range(100):  # 100 scrapes' worth of joins
                refresher.apply(cycle())
                refresher.current()
                refresher.natives()
            assert sum(kubelet.calls.values()) == calls
            assert native(refresher, "gpu_exporter_kubelet_up") == 1.0
            assert 0.0 <= native(refresher, "gpu_exporter_pod_index_age_seconds") < 3600.0
            names = {n.name for n in refresher.apply(cycle()).natives}
            assert {"gpu_exporter_gpu_allocatable", "gpu_exporter_gpu_allocated"} <= names

    run(scenario)


def test_pod_leaving_list_loses_labels_within_two_refreshes(
    kubelet: FakeKubelet, socket_path: object
) -> None:
    kubelet.set_pods([TRAIN, OTHER])
    kubelet.start()

    async def scenario() -> None:
        async with running(config(socket_path)) as refresher:
            await poll(lambda: owner(refresher) == "train-0")
            kubelet.set_pods([OTHER])
            before = refresher.refreshes
            await poll(lambda: owner(refresher) is None)
            assert refresher.refreshes - before <= 2
            assert owner(refresher, GPU1) == "infer-1"

    run(scenario)


def test_socket_absent_at_start_then_appearing(
    kubelet: FakeKubelet, socket_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    kubelet.set_pods([TRAIN])

    async def scenario() -> None:
        async with running(config(socket_path)) as refresher:
            await poll(lambda: refresher.refreshes >= 4)
            assert not refresher.up
            assert refresher.current() is EMPTY_INDEX
            assert owner(refresher) is None
            assert native(refresher, "gpu_exporter_kubelet_up") == 0.0
            assert math.isinf(native(refresher, "gpu_exporter_pod_index_age_seconds"))
            kubelet.start()
            await poll(lambda: owner(refresher) == "train-0")
            assert native(refresher, "gpu_exporter_kubelet_up") == 1.0

    run(scenario)
    warnings = logged(caplog, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert "not usable" in warnings[0]
    assert "No such file" in warnings[0] or "UNAVAILABLE" in warnings[0]
    infos = logged(caplog, logging.INFO)
    assert len([m for m in infos if "answers again" in m]) == 1, infos


def test_kubelet_restart_keeps_last_index_then_takes_the_new_one(
    kubelet: FakeKubelet, socket_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    kubelet.set_pods([TRAIN])
    kubelet.start()

    async def scenario() -> None:
        async with running(config(socket_path)) as refresher:
            await poll(lambda: owner(refresher) == "train-0")
            kubelet.stop()  # socket file removed, as a kubelet restart does
            await poll(lambda: not refresher.up)
            failed_at = refresher.refreshes
            await poll(lambda: refresher.refreshes >= failed_at + 2)
            assert owner(refresher) == "train-0"  # last good index kept while fresh enough
            kubelet.set_pods([pod("train-1", "ml", {"trainer": {"nvidia.com/gpu": [UUID0]}})])
            kubelet.start()  # a new socket inode at the same path
            await poll(lambda: owner(refresher) == "train-1")

    run(scenario)
    assert len(logged(caplog, logging.WARNING)) == 1
    assert len([m for m in logged(caplog, logging.INFO) if "answers again" in m]) == 1


def test_answers_slower_than_the_deadline(
    kubelet: FakeKubelet, socket_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    kubelet.set_pods([TRAIN])
    kubelet.start()

    async def scenario() -> None:
        async with running(config(socket_path, deadline=0.1)) as refresher:
            await poll(lambda: owner(refresher) == "train-0")
            kubelet.delay = 5.0
            await poll(lambda: not refresher.up)
            failed_at = refresher.refreshes
            await poll(lambda: refresher.refreshes >= failed_at + 2)
            assert owner(refresher) == "train-0"
            kubelet.delay = 0.0
            await poll(lambda: refresher.up)

    run(scenario)
    warnings = logged(caplog, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert "DEADLINE_EXCEEDED" in warnings[0]


def test_malformed_answers(
    kubelet: FakeKubelet, socket_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    kubelet.set_pods([TRAIN])
    kubelet.start()

    async def scenario() -> None:
        async with running(config(socket_path)) as refresher:
            await poll(lambda: owner(refresher) == "train-0")
            kubelet.garbage = True
            await poll(lambda: not refresher.up)
            failed_at = refresher.refreshes
            await poll(lambda: refresher.refreshes >= failed_at + 2)
            assert owner(refresher) == "train-0"
            kubelet.garbage = False
            await poll(lambda: refresher.up)

    run(scenario)
    warnings = logged(caplog, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert "MALFORMED" in warnings[0]
    # gRPC itself logs nothing about it: the bytes are decoded by the client.
    assert not [r for r in caplog.records if r.name.startswith("grpc")]


def test_unknown_device_id_forms_are_logged_once(
    kubelet: FakeKubelet, socket_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    kubelet.set_pods([TRAIN, pod("odd", "ns", {"c": {"nvidia.com/gpu": ["gpu#7"]}})])
    kubelet.start()

    async def scenario() -> None:
        async with running(config(socket_path)) as refresher:
            await poll(lambda: refresher.refreshes >= 4 and refresher.up)
            assert owner(refresher) == "train-0"

    run(scenario)
    warnings = logged(caplog, logging.WARNING)
    assert len(warnings) == 1
    assert "gpu#7" in warnings[0]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_labels_dropped_after_max_stale(
    kubelet: FakeKubelet, socket_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    kubelet.set_pods([TRAIN])
    kubelet.start()
    clock = FakeClock()
    cfg = config(socket_path, refresh_interval=5.0, max_stale=30.0, deadline=1.0)

    async def scenario() -> None:
        refresher = Refresher(cfg, make_client(cfg), clock=clock)
        try:
            assert await refresher.refresh()
            kubelet.stop()
            clock.now += 10
            assert not await refresher.refresh()
            assert owner(refresher) == "train-0"
            assert native(refresher, "gpu_exporter_pod_index_age_seconds") == 10.0
            clock.now += 21  # 31 s since the last good answer
            for _ in range(3):
                assert refresher.current() is EMPTY_INDEX
                assert owner(refresher) is None
            assert native(refresher, "gpu_exporter_pod_index_age_seconds") == 31.0
            assert native(refresher, "gpu_exporter_kubelet_up") == 0.0
            out = refresher.apply(cycle())
            assert not [n for n in out.natives if n.name == "gpu_exporter_gpu_allocated"]
            kubelet.start()
            clock.now += 5
            await poll_refresh(refresher)
            assert owner(refresher) == "train-0"
            assert native(refresher, "gpu_exporter_pod_index_age_seconds") == 0.0
        finally:
            await refresher.close()

    run(scenario)
    dropped = [m for m in logged(caplog, logging.WARNING) if "dropping pod labels" in m]
    assert len(dropped) == 1


async def poll_refresh(refresher: Refresher) -> None:
    deadline = time.monotonic() + 10.0
    while not await refresher.refresh():
        if time.monotonic() > deadline:
            raise AssertionError("kubelet did not answer")
        await asyncio.sleep(0.05)


def test_allocatable_unimplemented_is_asked_once(
    kubelet: FakeKubelet, socket_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    kubelet.set_pods([TRAIN])
    kubelet.allocatable_unimplemented = True
    kubelet.start()

    async def scenario() -> None:
        async with running(config(socket_path)) as refresher:
            await poll(lambda: kubelet.calls["List"] >= 3)
            out = refresher.apply(cycle())
            names = [n.name for n in out.natives]
            assert "gpu_exporter_gpu_allocated" in names
            assert "gpu_exporter_gpu_allocatable" not in names
            assert refresher.up

    run(scenario)
    assert kubelet.calls["GetAllocatableResources"] == 1
    assert len([m for m in logged(caplog, logging.INFO) if "GetAllocatableResources" in m]) == 1
    assert logged(caplog, logging.WARNING) == []


def test_backoff() -> None:
    assert [backoff_delay(1.0, n, 30.0) for n in range(8)] == [1, 1, 2, 4, 8, 16, 30, 30]
    assert backoff_delay(60.0, 3, 30.0) == 60.0  # never faster than the interval


def test_close_stops_the_task(kubelet: FakeKubelet, socket_path: object) -> None:
    kubelet.start()

    async def scenario() -> None:
        async with running(config(socket_path)) as refresher:
            await poll(lambda: refresher.up)
        calls = sum(kubelet.calls.values())
        await asyncio.sleep(0.2)
        assert sum(kubelet.calls.values()) == calls

    run(scenario)


def test_big_node_is_decoded_and_indexed_off_the_event_loop(
    kubelet: FakeKubelet, socket_path: object
) -> None:
    # 3,000 pods: a List answer above OFFLOAD_BYTES and a pod count above OFFLOAD_PODS.
    many = [pod(f"p-{i:04d}", "bulk", {"c": {"nvidia.com/gpu.shared": [f"{UUID1}::{i}"]}})
            for i in range(3000)]
    kubelet.set_pods([*many, TRAIN])
    kubelet.start()

    async def scenario() -> None:
        async with running(config(socket_path)) as refresher:
            await poll(lambda: refresher.up)
            assert len(refresher.current().assignments) == 3001
            assert owner(refresher) == "train-0"
            assert owner(refresher, GPU1) == "p-0000"  # smallest (namespace, pod, container)

    run(scenario)


class ListSource:
    """An in-process source: answers with fixed pods, counts calls."""

    target = "memory://test"

    def __init__(self) -> None:
        self.calls = 0

    async def list_pods(self) -> tuple[object, ...]:
        from gpu_exporter.kubernetes.podresources import Container, Devices, Pod

        self.calls += 1
        return (Pod("train-0", "ml", (Container("t", (Devices("nvidia.com/gpu", (UUID0,)),)),)),)

    async def allocatable(self) -> tuple[object, ...]:
        return ()

    async def close(self) -> None:
        pass


def test_an_unexpected_error_does_not_end_the_refresher(
    socket_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    source = ListSource()
    refresher = Refresher(config(socket_path), source)  # type: ignore[arg-type]
    original = refresher._taken
    broken = {"left": 1}

    def taken_once_broken(index: object) -> None:
        if broken["left"]:
            broken["left"] -= 1
            raise RuntimeError("bug")
        original(index)  # type: ignore[arg-type]

    refresher._taken = taken_once_broken  # type: ignore[method-assign]

    async def scenario() -> None:
        refresher.start()
        try:
            await poll(lambda: refresher.up)
            assert owner(refresher) == "train-0"
        finally:
            await refresher.close()

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        run(scenario)
    assert source.calls >= 2
    assert [r for r in caplog.records if "unexpectedly" in r.getMessage()]


def test_a_refused_socket_says_whose_it_is_and_what_to_change(tmp_path: Path) -> None:
    # Root is never refused, so the hint is checked on its own: the kubelet's socket belongs
    # to root with mode 0755, and a process running as another user may not connect.
    sock = tmp_path / "kubelet.sock"
    sock.touch(mode=0o755)
    sock.chmod(0o755)
    owner = sock.stat()
    reason = ("List: UNAVAILABLE: failed to connect to all addresses; last error: "
              f"unix:{sock}: connect failed: error: Permission denied")
    hint = permission_hint(reason, f"unix://{sock}", 65534)
    assert hint.startswith(f" (this process runs as uid 65534; {sock} belongs to uid "
                           f"{owner.st_uid}, group {owner.st_gid}, mode 0755")
    assert "run as root" in hint
    # Other failures, other transports and a vanished path add nothing.
    assert permission_hint("List: UNAVAILABLE: Connection refused", f"unix://{sock}", 65534) == ""
    assert permission_hint(reason, "dns:///kubelet:10250", 65534) == ""
    assert permission_hint(reason, f"unix://{tmp_path / 'gone.sock'}", 65534) == ""
