"""The API client against the fake API server: HTTPS, token, list+watch, 410, outages."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_apiserver import FakeApiServer, pod_object, slice_object

from gpu_exporter.kubernetes.apiserver import (
    ApiClient,
    ApiConfig,
    ApiConfigError,
    Watcher,
    in_cluster_config,
    kubeconfig_config,
    load_config,
    pod_reflector,
    slice_reflector,
    start_watch,
)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FakeApiServer]:
    server = FakeApiServer(tmp_path / "tls", served=("v1beta1",))
    server.bookmark_interval = 0.2
    with server:
        yield server


async def until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _config(api: FakeApiServer, token: str | None = None) -> ApiConfig:
    return ApiConfig(api.url, token=token or api.token, ca_file=api.ca)


def _watcher(api: FakeApiServer, *, dra: bool = False, token: str | None = None) -> Watcher:
    reflectors = [pod_reflector("test-node")]
    if dra:
        reflectors.append(slice_reflector("test-node"))
    return Watcher(ApiClient(_config(api, token), deadline=5.0), tuple(reflectors),
                   deadline=5.0, max_backoff=0.5, watch_timeout=2.0)


def test_list_then_watch_node_scoped_with_bookmarks(api: FakeApiServer) -> None:
    api.apply(pod_object("train-0", "ml", labels={"app": "train"}))
    api.apply(pod_object("elsewhere", "ml", node="other-node"))

    async def scenario() -> None:
        watcher = _watcher(api)
        pods = watcher.reflectors[0]
        watcher.start()
        try:
            await until(lambda: pods.synced)
            assert set(pods.store) == {"ml/train-0"}  # the other node's pod never arrives
            api.apply(pod_object("train-0", "ml", labels={"app": "train", "v": "2"}))
            api.apply(pod_object("infer-1", "ml", phase="Pending"))
            await until(lambda: "ml/infer-1" in pods.store
                        and dict(pods.store["ml/train-0"].labels).get("v") == "2")
            api.apply(pod_object("infer-1", "ml"), delete=True)
            await until(lambda: "ml/infer-1" in pods.deleted)
            assert "ml/infer-1" not in pods.store
            rv = pods.resource_version
            api.apply(pod_object("far", "ml", node="other-node"))  # no event for this node...
            await until(lambda: int(pods.resource_version) > int(rv))  # ...a bookmark says RV
            assert "ml/far" not in pods.store
            await until(lambda: pods.watches >= 2)  # the server ended a watch: resumed
            assert pods.lists == 1  # resumed from RV, no new list
            assert pods.relists == 0
        finally:
            await watcher.close()

    asyncio.run(scenario())
    assert set(api.selectors) == {"spec.nodeName=test-node"}  # never the whole cluster


def test_expired_resource_version_relists(api: FakeApiServer) -> None:
    api.apply(pod_object("a", "ns"))

    async def scenario() -> None:
        watcher = _watcher(api)
        pods = watcher.reflectors[0]
        watcher.start()
        try:
            await until(lambda: pods.synced)
            api.down = True  # cut the watch while events happen and history is compacted
            await until(lambda: not pods.up)
            api.apply(pod_object("b", "ns"))
            api.apply(pod_object("a", "ns"), delete=True)
            api.compact()
            api.down = False
            await until(lambda: pods.relists >= 1 and "ns/b" in pods.store)
            assert "ns/a" not in pods.store
            assert "ns/a" in pods.deleted  # vanished between two lists: counts as deleted
        finally:
            await watcher.close()

    asyncio.run(scenario())


def test_outage_logs_once_and_recovers(api: FakeApiServer,
                                       caplog: pytest.LogCaptureFixture) -> None:
    api.apply(pod_object("a", "ns", labels={"app": "x"}))
    caplog.set_level(logging.INFO, "gpu_exporter.kubernetes")

    async def scenario() -> None:
        watcher = _watcher(api)
        pods = watcher.reflectors[0]
        watcher.start()
        try:
            await until(lambda: pods.up)
            api.down = True
            await until(lambda: not pods.up)
            failures = api.attempts
            await until(lambda: api.attempts >= failures + 3)  # retried, backing off
            assert pods.store  # what it last said is kept
            api.down = False
            await until(lambda: pods.up)
        finally:
            await watcher.close()

    asyncio.run(scenario())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "not usable for pods" in warnings[0].getMessage()
    assert any("answers again for pods" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("forbidden", "token", "status"),
                         [(False, "wrong-token", "HTTP 401"), (True, None, "HTTP 403")])
def test_unauthorised_or_forbidden_is_down_not_fatal(
    api: FakeApiServer, caplog: pytest.LogCaptureFixture,
    forbidden: bool, token: str | None, status: str,
) -> None:
    api.forbidden = forbidden
    caplog.set_level(logging.WARNING, "gpu_exporter.kubernetes")

    async def scenario() -> None:
        watcher = _watcher(api, token=token)
        watcher.start()
        try:
            await until(lambda: api.attempts >= 3)
            (kind, up, age, _), = watcher.health()
            assert (kind, up, age) == ("pods", False, float("inf"))
        finally:
            await watcher.close()

    asyncio.run(scenario())
    assert [status in r.getMessage() for r in caplog.records] == [True]


def test_dra_slices_from_the_version_the_server_serves(api: FakeApiServer) -> None:
    api.apply(slice_object("test-node-gpu-abc", "test-node",
                           [{"name": "gpu-0", "type": "gpu", "uuid": "GPU-0"}],
                           version="v1beta1"))
    api.apply(slice_object("other", "other-node",
                           [{"name": "gpu-0", "type": "gpu", "uuid": "GPU-9"}],
                           node="other-node", version="v1beta1"))

    async def scenario() -> None:
        watcher = _watcher(api, dra=True)
        slices = watcher.reflectors[1]
        watcher.start()
        try:
            await until(lambda: slices.synced)
            assert slices.path == "/apis/resource.k8s.io/v1beta1/resourceslices"
            (devices,) = slices.store.values()
            assert [d.uuid for d in devices] == ["GPU-0"]
        finally:
            await watcher.close()

    asyncio.run(scenario())
    assert "spec.driver=gpu.nvidia.com,spec.nodeName=test-node" in api.selectors


def test_in_cluster_and_kubeconfig(api: FakeApiServer, tmp_path: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text(api.token + "\n")
    (sa / "ca.crt").write_bytes(api.ca.read_bytes())
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api.port)}
    in_cluster = in_cluster_config(env, sa)
    assert in_cluster.server == api.url
    assert in_cluster.bearer() == api.token
    kubeconfig = api.kubeconfig(tmp_path / "config")
    from_file = load_config({"KUBECONFIG": str(kubeconfig), **env})
    assert from_file == kubeconfig_config(kubeconfig)
    api.apply(pod_object("a", "ns"))
    for config in (in_cluster, from_file):
        async def scenario(config: ApiConfig = config) -> None:
            watcher = Watcher(ApiClient(config, deadline=5.0), (pod_reflector("test-node"),),
                              deadline=5.0)
            watcher.start()
            try:
                await until(lambda: watcher.reflectors[0].synced)
            finally:
                await watcher.close()
        asyncio.run(scenario())
    with pytest.raises(ApiConfigError, match="KUBERNETES_SERVICE_HOST"):
        load_config({})
    with pytest.raises(ApiConfigError, match="no service-account token"):
        in_cluster_config(env, tmp_path / "missing")


def test_no_configuration_is_a_down_view_not_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        view = await start_watch({}, "test-node", dra=True, deadline=1.0)
        assert view.health() == [("pods", False, float("inf"), 0),
                                 ("resourceslices", False, float("inf"), 0)]
        assert view.pods() == {}
        await view.close()

    asyncio.run(scenario())
    assert "Kubernetes API not configured" in caplog.text


def test_large_lists_come_in_pages_and_whole(api: FakeApiServer) -> None:
    """600 pods with labels: two pages of 500 and 100, each body read to its end."""
    labels = {f"label-{i}": "v" * 60 for i in range(20)}
    for i in range(600):
        api.apply(pod_object(f"p-{i:03d}", "big", labels=labels))

    async def scenario() -> None:
        watcher = _watcher(api)
        pods = watcher.reflectors[0]
        watcher.start()
        try:
            await until(lambda: pods.synced)
            assert len(pods.store) == 600
            assert len(pods.store["big/p-599"].labels) == 20
        finally:
            await watcher.close()

    asyncio.run(scenario())
    assert api.requests["list /api/v1/pods"] == 2


def test_a_watch_that_ends_at_once_backs_off_instead_of_spinning(api: FakeApiServer) -> None:
    api.apply(pod_object("a", "ns"))
    api.watch_ends_at_once = True

    async def scenario() -> None:
        watcher = _watcher(api)
        watcher.start()
        try:
            await asyncio.sleep(3.0)
        finally:
            await watcher.close()

    asyncio.run(scenario())
    # backoff from 0.5 s doubling, capped at 0.5 s here: a handful of watches in 3 s, where
    # a busy loop would make hundreds
    assert 1 <= api.requests["watch /api/v1/pods"] <= 20, api.requests


def test_a_server_too_slow_to_answer_times_out_and_is_down(
    api: FakeApiServer, caplog: pytest.LogCaptureFixture,
) -> None:
    api.apply(pod_object("a", "ns"))
    api.stall = 30.0
    caplog.set_level(logging.WARNING, "gpu_exporter.kubernetes")

    async def scenario() -> None:
        reflectors = (pod_reflector("test-node"),)
        watcher = Watcher(ApiClient(_config(api), deadline=0.5), reflectors, deadline=0.5,
                          max_backoff=0.5)
        watcher.start()
        try:
            await until(lambda: api.attempts >= 2)  # the first one timed out, then a retry
            assert not reflectors[0].up
            assert not reflectors[0].synced
        finally:
            await watcher.close()

    asyncio.run(scenario())
    assert "TimeoutError" in caplog.text or "Timeout" in caplog.text, caplog.text
