"""activate(): the exporter's --simulate path inside one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_activate_then_pynvml_sees_the_profile(tmp_path: Path) -> None:
    script = f"""
import json
from gpu_exporter.simulator import activate, prepare
session = prepare("a100-mig", seed=4, state_dir={str(tmp_path / "s")!r})
activate(session)
import pynvml as N
N.nvmlInit()
h = N.nvmlDeviceGetHandleByIndex(0)
maps = [l.split()[-1] for l in open("/proc/self/maps") if "libnvidia-ml" in l]
print(json.dumps([N.nvmlDeviceGetCount(), N.nvmlDeviceGetName(h), N.nvmlDeviceGetMigMode(h),
                  len(set(maps))]))
"""
    env = {k: v for k, v in os.environ.items() if k not in {"GPU_SIM_DIR", "LD_LIBRARY_PATH"}}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, check=True, timeout=60).stdout
    assert out.strip() == '[8, "NVIDIA A100-SXM4-80GB", [1, 1], 1]'


def test_without_activation_the_simulator_is_never_loaded(tmp_path: Path) -> None:
    script = """
import pynvml as N
import gpu_exporter.simulator as sim
try:
    N.nvmlInit()
except N.NVMLError:
    pass
ours = str(sim.library_path())
print(any(ours in line for line in open("/proc/self/maps")))
"""
    env = {k: v for k, v in os.environ.items() if k not in {"GPU_SIM_DIR", "LD_LIBRARY_PATH"}}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, check=True, timeout=60, cwd=tmp_path).stdout
    # here (no driver) pynvml finds no library; on a GPU host it loads the driver's
    assert out.strip() == "False"
