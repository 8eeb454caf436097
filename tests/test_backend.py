"""Opening and closing NVML with the sampler: nothing leaks, nothing shuts down under a call."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from gpu_exporter import backend
from gpu_exporter.config import Config
from gpu_exporter.nvml import NvmlError


class FakeNvml:
    def __init__(self, *, fail_versions: bool = False) -> None:
        self.fail_versions = fail_versions
        self.closed = 0

    def driver_version(self) -> str:
        if self.fail_versions:
            raise NvmlError("nvmlSystemGetDriverVersion", 999)
        return "550.54.15"

    def nvml_version(self) -> str:
        return "12.550.54.15"

    def device_count(self) -> int:
        return 1

    def close(self) -> None:
        self.closed += 1


class FakeSampler:
    def __init__(self, *, idle: bool = True, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.idle = idle
        self.workers_idle = False  # after close: no per-GPU call left (the event wait aside)
        self.closed: list[float] = []

    def close(self, timeout_s: float = 5.0) -> bool:
        self.closed.append(timeout_s)
        return self.idle


def _patch(monkeypatch: pytest.MonkeyPatch, nvml: FakeNvml, *, idle: bool = True,
           ) -> list[FakeSampler]:
    made: list[FakeSampler] = []

    def sampler(**kwargs: Any) -> FakeSampler:
        made.append(FakeSampler(idle=idle, **kwargs))
        return made[-1]

    monkeypatch.setattr(backend, "open_nvml", lambda _config, _state_dir=None: nvml)
    monkeypatch.setattr(backend, "Sampler", sampler)
    return made


def test_a_failure_after_the_sampler_started_closes_it_and_nvml(
        monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml(fail_versions=True)
    made = _patch(monkeypatch, nvml)
    with pytest.raises(NvmlError):
        backend.open_backend(Config(counters_path=Path("x.csv")), frozenset({150}), {})
    assert len(made) == 1
    assert made[0].closed  # the sampler's threads were stopped
    assert nvml.closed == 1


def test_close_skips_nvml_shutdown_while_a_call_is_stuck(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml()
    made = _patch(monkeypatch, nvml, idle=False)
    opened = backend.open_backend(Config(counters_path=Path("x.csv"), collect_interval=0.2),
                                  frozenset({150}), {})
    opened.close(timeout_s=0.1)
    assert made[0].closed == [0.1]
    assert nvml.closed == 0  # never nvmlShutdown under a thread still inside NVML
    assert made[0].kwargs["slow_s"] == 1.0  # a cycle waits one interval (1-10 s) for a GPU
    assert made[0].kwargs["deadline_s"] == 10.0  # and reports it down after 10 s


def test_close_without_nvml_shutdown_under_the_event_wait_is_no_warning(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    nvml = FakeNvml()
    made = _patch(monkeypatch, nvml, idle=False)
    opened = backend.open_backend(Config(counters_path=Path("x.csv")), frozenset({150}), {})
    made[0].workers_idle = True  # every per-GPU call returned; only the event wait is left
    with caplog.at_level(logging.DEBUG, logger="gpu_exporter.backend"):
        opened.close(timeout_s=0.1)
    assert nvml.closed == 0  # still no nvmlShutdown under the thread inside NVML
    assert [r.levelno for r in caplog.records if "nvmlShutdown" in r.getMessage()] == [
        logging.DEBUG]


def test_close_shuts_nvml_down_when_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml()
    _patch(monkeypatch, nvml)
    backend.open_backend(Config(counters_path=Path("x.csv")), frozenset(), {}).close()
    assert nvml.closed == 1


@pytest.mark.parametrize(("interval", "deadline"),
                         [(0.1, 1.0), (1.0, 1.0), (5.0, 5.0), (30.0, 10.0)])
def test_gpu_deadline_follows_the_interval_within_bounds(interval: float, deadline: float) -> None:
    assert backend.gpu_deadline(interval) == deadline
