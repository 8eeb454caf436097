"""Run the real ``gpu-exporter`` console script in a subprocess, on the simulated NVML.

One NVML topology per process: every test that needs a profile starts its own exporter.
The exporter listens on 127.0.0.1 port 0 and logs the bound address; readiness is polled
with a deadline; teardown terminates the exporter's own PID and waits for it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from support.processes import stop

EXPORTER = Path(sys.executable).with_name("gpu-exporter")
_LISTEN = re.compile(r"listening on https?://(\S+)/metrics")


@dataclass
class Exporter:
    """A running exporter subprocess."""

    process: subprocess.Popen[str]
    url: str
    log_lines: list[str] = field(default_factory=list)

    @property
    def log(self) -> str:
        """Everything the exporter wrote to stderr so far."""
        return "".join(self.log_lines)

    def get(self, path: str = "/metrics", *, headers: dict[str, str] | None = None,
            timeout: float = 5.0) -> tuple[int, bytes, dict[str, str]]:
        """One bounded GET; returns status, body and headers."""
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)

    def metrics(self) -> str:
        """The current /metrics text."""
        status, body, _ = self.get("/metrics")
        assert status == 200, body
        return body.decode()

    def wait_for(self, predicate: str, *, timeout: float = 15.0) -> str:
        """Poll /metrics until a line containing ``predicate`` appears; return the text."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            status, body, _ = self.get("/metrics")
            text = body.decode()
            if status == 200 and predicate in text:
                return text
            time.sleep(0.05)
        raise AssertionError(f"{predicate!r} not in /metrics after {timeout}s:\n{text[-3000:]}")


def _pump(process: subprocess.Popen[str], lines: list[str], found: threading.Event,
          address: list[str]) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        lines.append(line)
        match = _LISTEN.search(line)
        if match and not address:
            address.append(match.group(1))
            found.set()
    found.set()


@contextmanager
def run_exporter(
    args: Sequence[str], *, env: dict[str, str] | None = None, ready_timeout: float = 20.0,
    wait_ready: bool = True,
) -> Iterator[Exporter]:
    """Start ``gpu-exporter -a 127.0.0.1:0 ARGS`` and yield it once /ready answers 200."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DCGM_", "GPU_"))}
    full_env.update(env or {})
    full_env.setdefault("NODE_NAME", "test-node")
    process = subprocess.Popen(
        [str(EXPORTER), "-a", "127.0.0.1:0", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, env=full_env,
    )
    lines: list[str] = []
    found = threading.Event()
    address: list[str] = []
    pump = threading.Thread(target=_pump, args=(process, lines, found, address), daemon=True)
    pump.start()
    try:
        found.wait(ready_timeout)
        if not address:
            raise AssertionError(f"exporter did not start:\n{''.join(lines)}")
        exporter = Exporter(process, f"http://{address[0]}", lines)
        if wait_ready:
            deadline = time.monotonic() + ready_timeout
            while exporter.get("/ready")[0] != 200:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError(f"exporter never became ready:\n{exporter.log}")
                time.sleep(0.02)
        yield exporter
    finally:
        stop(process)
        pump.join(timeout=5)
