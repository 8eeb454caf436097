"""Kubernetes configuration: durations, resource names, validation naming the flag."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpu_exporter.kubernetes.config import (
    DEFAULT_SOCKET,
    KubernetesConfig,
    parse_duration,
    parse_resource_names,
)


@pytest.mark.parametrize(("text", "seconds"), [
    ("5", 5.0), ("0.5", 0.5), ("500ms", 0.5), ("5s", 5.0), ("1m30s", 90.0), ("2h", 7200.0),
    (" 1.5s ", 1.5),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "5x", "-1s", "-1", "5 s", "1m-3s", "nan", "inf", "1e3"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.text(max_size=20))
def test_duration_parser_only_raises_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert parse_duration(text) >= 0


def test_resource_names() -> None:
    assert parse_resource_names(" a.com/x, ,b.com/y ,") == ("a.com/x", "b.com/y")
    assert parse_resource_names("") == ()


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
