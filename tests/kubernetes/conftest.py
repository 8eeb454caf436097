"""Fixtures of the Kubernetes tests: a short unix-socket path and a fake kubelet."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_kubelet import FakeKubelet


@pytest.fixture
def socket_path() -> Iterator[Path]:
    """A socket path in a fresh short directory (unix socket paths are limited to 107 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="kubelet-"))
    try:
        yield directory / "kubelet.sock"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def kubelet(socket_path: Path) -> Iterator[FakeKubelet]:
    """A fake kubelet, not started: tests start and stop it as their scenario needs."""
    fake = FakeKubelet(socket_path)
    try:
        yield fake
    finally:
        fake.stop()
