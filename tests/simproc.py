"""Run a short Python snippet against the simulated NVML in its own process.

pynvml loads one library per process, and each test wants its own profile and faults, so every
NVML scenario runs as ``python -c PRELUDE + snippet`` with a deadline. The snippet fills the dict
``out``; the helper returns it (JSON round-trip). The prelude provides ``Nvml``, ``Sampler``,
``Entity``, ``json``, ``time``, ``default_fields()`` (ids of counters/default-counters.csv),
``ent(gpu, gi_id=None)`` and ``wait_until(predicate, timeout)``; the tests' own modules
(``nvml_decode``, ...) can be imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_MARK = "@@OUT@@"

PRELUDE = f"""
import json, sys, time
sys.path.append({str(ROOT / "tests")!r})  # the tests' own helpers (nvml_decode, ...)
from gpu_exporter.nvml import Nvml
from gpu_exporter.sampler import Sampler
from gpu_exporter.model import Entity
from gpu_exporter.counters import load_counters

DEFAULT_CSV = {str(ROOT / "counters" / "default-counters.csv")!r}

def default_fields():
    return frozenset(s.field_id for s in load_counters(DEFAULT_CSV))

def ent(gpu, gi_id=None):
    return Entity(gpu=gpu, uuid="", pci_bus_id="", model_name="", gi_id=gi_id)

def wait_until(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return None

out = {{}}
"""

_EPILOGUE = f"\nprint({_MARK!r} + json.dumps(out))\n"


def run_snippet(code: str, *, timeout: float = 90.0, env: dict[str, str] | None = None) -> Any:
    """Run ``code`` after the prelude in a fresh interpreter; return its ``out`` dict."""
    environment = dict(os.environ)
    environment.pop("GPU_SIM_DIR", None)
    environment.update(env or {})
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE + code + _EPILOGUE],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=environment,
        check=False,
    )
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    raise AssertionError(
        f"snippet failed (rc {result.returncode}):\n{result.stdout[-3000:]}\n"
        f"{result.stderr[-6000:]}")
