"""The server's entry points: start_refresher(config.kube) and attribute(...)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from fake_kubelet import FakeKubelet, pod
from kube_fixtures import ENTITIES, GPU0, UUID0, by_entity, pod_labels, samples

from gpu_exporter.config import KubeSettings
from gpu_exporter.kubernetes.integration import attribute, kubernetes_config, start_refresher
from gpu_exporter.model import Cycle


def test_start_and_attribute(kubelet: FakeKubelet, socket_path: Path) -> None:
    kubelet.set_pods([pod("train-0", "ml", {"trainer": {"nvidia.com/gpu": [UUID0]}})])
    kubelet.start()
    settings = KubeSettings(enabled=True, socket=socket_path, refresh_interval=0.05,
                            max_stale=10.0, deadline=1.0)
    cycle = Cycle(samples(), (), ENTITIES, 1000.0, 0.1)

    async def scenario() -> None:
        refresher = await start_refresher(settings)
        try:
            deadline = time.monotonic() + 10.0
            while not refresher.up:
                assert time.monotonic() < deadline, "kubelet never answered"
                await asyncio.sleep(0.01)
            joined, natives = attribute(refresher, cycle, settings)
            assert pod_labels(by_entity(joined, GPU0)[0])["pod"] == "train-0"
            names = [n.name for n in natives]
            assert "gpu_exporter_pod_index_age_seconds" in names
            assert "gpu_exporter_kubelet_up" in names
            assert "gpu_exporter_gpu_allocated" in names
        finally:
            await refresher.close()

    asyncio.run(scenario())


def test_attribute_needs_a_refresher() -> None:
    with pytest.raises(TypeError):
        attribute(object(), Cycle((), (), (), 0.0, 0.0), KubeSettings())


def test_settings_mapping(caplog: pytest.LogCaptureFixture) -> None:
    settings = KubeSettings(enabled=True, socket=Path("/run/k/kubelet.sock"),
                            gpu_id_type="device-name", virtual_gpus=True,
                            resource_names=("example.com/gpu",), refresh_interval=2.0,
                            max_stale=0.0, deadline=3.0)
    with caplog.at_level(logging.WARNING, logger="gpu_exporter.kubernetes"):
        config = kubernetes_config(settings)
    assert config.socket_path == "/run/k/kubelet.sock"
    assert config.gpu_id_type == "device-name"
    assert config.virtual_gpus
    assert config.extra_resource_names == ("example.com/gpu",)
    assert (config.refresh_interval, config.deadline) == (2.0, 3.0)
    assert config.max_stale == 2.0
    assert len(caplog.records) == 1
    assert "--pod-resources-max-stale" in caplog.records[0].getMessage()
