"""Fixtures for the simulated NVML tests.

pynvml loads one library per process and caches its symbols, so every test that talks to
the library runs a short Python script in a subprocess with the session's environment and
reads back the JSON the script prints on its last line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from gpu_exporter.simulator import SimSession, prepare

# Helpers every script gets: `N` is pynvml, `out(x)` prints the JSON result, `code(f)`
# returns the NVML return code of calling f (0 on success), `lib` is the raw ctypes library.
PRELUDE = '''
import ctypes, json, sys, time
import pynvml as N
def out(x):
    print(json.dumps(x), flush=True)
def code(f, *a):
    try:
        f(*a)
        return 0
    except N.NVMLError as e:
        return e.value
'''


class SimRunner:
    """Runs scripts against one prepared simulator session."""

    def __init__(self, session: SimSession) -> None:
        self.session = session

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "GPU_SIM_FROZEN_TIME"}
        env.update(self.session.env)
        return env

    def popen(self, script: str, *, extra_env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        env = {**self.env, **(extra_env or {})}
        return subprocess.Popen(
            [sys.executable, "-u", "-c", PRELUDE + textwrap.dedent(script)],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, script: str, *, extra_env: Mapping[str, str] | None = None,
            timeout: float = 60) -> Any:
        """Run ``script``; return the JSON value printed on its last stdout line."""
        env = {**self.env, **(extra_env or {})}
        proc = subprocess.run(
            [sys.executable, "-c", PRELUDE + textwrap.dedent(script)],
            env=env, capture_output=True, text=True, timeout=timeout, check=False,
        )
        assert proc.returncode == 0, f"script failed:\n{proc.stderr}"
        return json.loads(proc.stdout.strip().splitlines()[-1])


def _factory(base: Path) -> Callable[..., SimRunner]:
    counter = iter(range(1000))

    def make(profile: str | os.PathLike[str] = "h100x8", *, seed: int = 0,
             frozen_time: float | None = None) -> SimRunner:
        state = base / f"state{next(counter)}"
        return SimRunner(prepare(profile, seed=seed, state_dir=state, frozen_time=frozen_time))

    return make


@pytest.fixture
def sim(tmp_path: Path) -> Callable[..., SimRunner]:
    """Factory: ``sim("h100x8", seed=0, frozen_time=None)`` -> :class:`SimRunner`."""
    return _factory(tmp_path)


@pytest.fixture(scope="module")
def sim_module(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., SimRunner]:
    """Module-scoped variant of :func:`sim` (one run shared by many assertions)."""
    return _factory(tmp_path_factory.mktemp("sim"))
