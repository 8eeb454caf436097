"""A third-party NVML program, unmodified: nvitop-exporter (PyPI) against every profile."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gpu_exporter.simulator import list_profiles
from gpu_exporter.simulator.profiles import load_profile, resolve


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.slow
@pytest.mark.parametrize("profile", list_profiles())
def test_nvitop_exporter_reads_the_simulated_gpus(profile: str, sim: Any, tmp_path: Path) -> None:
    exe = shutil.which("nvitop-exporter", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("nvitop-exporter is a test dependency: pip install nvitop-exporter")
    runner = sim(profile)
    config = (runner.session.state_dir / "config").read_text().splitlines()
    uuids = [line.split()[-1] for line in config if re.match(r"g \d+ uuid ", line)]
    devices = resolve(load_profile(profile)).devices
    n = len(devices)
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--bind-address", "127.0.0.1", "--port", str(port), "--interval", "0.5"],
        env=runner.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )
    body = ""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                    body = resp.read().decode()
                # whole GPUs only (MIG devices are indexed "0:1" and come first on a100-mig)
                if all(len(set(re.findall(rf'{name}\{{[^}}]*index="(\d)"', body))) == n
                       for name in ("gpu_memory_total_MiB", "gpu_temperature_C")):
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    finally:
        proc.terminate()
        try:
            log, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            log, _ = proc.communicate()
    assert "gpu_memory_total_MiB{" in body, f"no GPU metrics from nvitop-exporter:\n{log}"
    totals = re.findall(r'gpu_memory_total_MiB\{[^}]*index="(\d)"[^}]*uuid="([^"]+)"\} (\S+)', body)
    assert sorted((int(i), u, float(v)) for i, u, v in totals) == [
        (i, uuids[i], float(devices[i]["memory"]["total_mib"])) for i in range(n)]
    assert f'devicename="{devices[0]["name"]}"' in body
    if profile == "h100x8":
        utils = dict(re.findall(r'gpu_utilization_Percentage\{[^}]*index="(\d)"[^}]*\} (\S+)',
                                body))
        assert float(utils["7"]) == 0.0  # the idle GPU
        assert all(0 < float(utils[str(i)]) <= 100 for i in range(7))
