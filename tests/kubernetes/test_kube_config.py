"""Kubernetes configuration: defaults, and validation that names the flag."""

from __future__ import annotations

import pytest

from gpu_exporter.kubernetes.config import DEFAULT_SOCKET, KubernetesConfig


def test_defaults() -> None:
    config = KubernetesConfig()
    assert config.socket_path == DEFAULT_SOCKET == "/var/lib/kubelet/pod-resources/kubelet.sock"
    assert config.gpu_id_type == "uid"
    assert not config.virtual_gpus
    assert config.max_stale >= config.refresh_interval


@pytest.mark.parametrize(("kwargs", "flag"), [
    ({"refresh_interval": 0}, "--pod-resources-refresh-interval"),
    ({"deadline": 0}, "--pod-resources-timeout"),
    ({"refresh_interval": 10.0, "max_stale": 5.0}, "--pod-resources-max-stale"),
    ({"gpu_id_type": "index"}, "--kubernetes-gpu-id-type"),
    ({"socket_path": ""}, "--pod-resources-kubelet-socket"),
])
def test_validation_names_the_flag(kwargs: dict[str, object], flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        KubernetesConfig(**kwargs)  # type: ignore[arg-type]
