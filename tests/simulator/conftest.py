"""Fixtures for the simulated NVML tests.

pynvml loads one library per process and caches its symbols, so every test that talks to
the library runs a short Python script in a subprocess with the session's environment and
reads back the JSON the script prints on its last line.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
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
        if os.environ.get("GPU_SIM_TEST_LIBDIR"):  # a sanitized build (test_sim_sanitizers)
            env["LD_LIBRARY_PATH"] = f"{os.environ['GPU_SIM_TEST_LIBDIR']}:{env['LD_LIBRARY_PATH']}"
        return env

    def popen(
        self, script: str, *, extra_env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[str]:
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


REPL = '''
N.nvmlInit()
H = [N.nvmlDeviceGetHandleByIndex(i) for i in range(N.nvmlDeviceGetCount())]
def until(f, pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        v = f()
        if pred(v) or time.monotonic() > deadline:
            return v
        time.sleep(0.02)
def name(i):
    return code(N.nvmlDeviceGetName, H[i])
print("ready", flush=True)
for line in sys.stdin:
    out(eval(line))
'''


class Repl:
    """A child process with the library loaded that evaluates expressions sent to it."""

    def __init__(self, runner: SimRunner, setup: str = "") -> None:
        self.proc = runner.popen(setup + REPL)
        self._expect("ready")

    def _readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"no answer from the NVML process within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"NVML process exited: {err}")
        return line.strip()

    def _expect(self, text: str) -> None:
        assert self._readline(30) == text

    def send(self, expr: str) -> None:
        """Send an expression without waiting for its answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(expr + "\n")
        self.proc.stdin.flush()

    def answer(self, timeout: float = 30) -> Any:
        """Read the answer to a previously sent expression."""
        return json.loads(self._readline(timeout))

    def ask(self, expr: str, timeout: float = 30) -> Any:
        """Evaluate ``expr`` in the child and return its JSON value."""
        self.send(expr)
        return self.answer(timeout)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def repl() -> Iterator[Callable[..., Repl]]:
    """Factory: ``repl(runner, setup="")`` -> a :class:`Repl`, closed after the test."""
    made: list[Repl] = []

    def make(runner: SimRunner, setup: str = "") -> Repl:
        r = Repl(runner, setup)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()
