"""Rootful podman on private storage, for the tests that run real containers.

Each test module gets its own ``--root``/``--runroot`` under a temporary directory and its own
containers.conf with this machine's workaround (docs in tooling-here.md, section 6): the
``runc`` runtime, and default ulimits that stay within the hard ``nofile`` limit (podman's
defaults ask for more than a container host in CI allows, and every ``podman run`` fails).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Podman:
    """A podman command line bound to private storage and a private containers.conf."""

    base: tuple[str, ...]
    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run podman, failing the test with its output when it exits non-zero."""
        result = self.quiet(*args, timeout=timeout)
        if result.returncode != 0:
            pytest.fail(f"podman {' '.join(args)} -> rc {result.returncode}\n"
                        f"{result.stdout}\n{result.stderr}")
        return result

    def out(self, *args: str, timeout: float = 120) -> str:
        """Standard output of a successful run, stripped."""
        return self(*args, timeout=timeout).stdout.strip()

    def quiet(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run without failing the test (cleanup)."""
        return subprocess.run([*self.base, *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env, check=False)


def containers_conf(nofile: str) -> str:
    """The private containers.conf: runc, and ulimits within the hard limit ``nofile``."""
    return ("[containers]\n"
            f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=32768:32768"]\n'
            "[engine]\n"
            'runtime = "runc"\n'
            "[network]\n"
            'network_backend = "netavark"\n')


@contextmanager
def private_podman(home: Path) -> Iterator[Podman]:
    """Podman with its storage and configuration under ``home``; reset on the way out."""
    hard = subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True,
                          check=True).stdout.strip()
    conf = home / "containers.conf"
    conf.write_text(containers_conf(hard if hard.isdigit() else "1024"), encoding="utf-8")
    tool = Podman(base=("podman", "--root", str(home / "root"), "--runroot", str(home / "run")),
                  env={**os.environ, "CONTAINERS_CONF": str(conf)})
    try:
        yield tool
    finally:
        tool.quiet("system", "reset", "--force")
