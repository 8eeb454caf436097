"""On a real GPU host: the exporter against the driver's own libnvidia-ml.so.1.

Deselected by default (``-m "not gpu and not dcgm"`` in pytest's addopts); run with
``pytest -m gpu`` on a machine with an NVIDIA GPU and driver. Nothing here loads the simulator.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from support.exporter import run_exporter

pytestmark = pytest.mark.gpu


def _driver_gpu_count() -> int:
    smi = shutil.which("nvidia-smi")
    assert smi, "nvidia-smi not found: this test needs a GPU host with the NVIDIA driver"
    out = subprocess.run([smi, "-L"], capture_output=True, text=True, check=True, timeout=60)
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def test_exports_every_gpu_from_the_driver() -> None:
    count = _driver_gpu_count()
    assert count > 0
    with run_exporter(["-c", "1000"]) as exporter:
        text = exporter.wait_for("DCGM_FI_DEV_GPU_TEMP{")
        temps = [line for line in text.splitlines() if line.startswith("DCGM_FI_DEV_GPU_TEMP{")]
        assert len(temps) >= count
        assert "simulated" not in exporter.log
        up = [line for line in text.splitlines() if line.startswith("gpu_exporter_gpu_up{")]
        assert up
        assert all(line.endswith(" 1") for line in up)
