"""Run the real ``gpu-exporter`` console script in a subprocess, on the simulated NVML.

One NVML topology per process: every test that needs a profile starts its own exporter.
The exporter listens on 127.0.0.1 port 0 and logs the bound address; readiness is polled
with a deadline; teardown terminates the exporter's own PID and waits for it.
"""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
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
    context: ssl.SSLContext | None = None  # client TLS settings for https
    headers: dict[str, str] = field(default_factory=dict)  # sent with every get()

    @property
    def log(self) -> str:
        """Everything the exporter wrote to stderr so far."""
        return "".join(self.log_lines)

    def get(self, path: str = "/metrics", *, headers: dict[str, str] | None = None,
            timeout: float = 5.0) -> tuple[int, bytes, dict[str, str]]:
        """One bounded GET; returns status, body and headers."""
        request = urllib.request.Request(self.url + path, headers={**self.headers,
                                                                   **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout,
                                        context=self.context) as response:
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
    wait_ready: bool = True, context: ssl.SSLContext | None = None,
    headers: dict[str, str] | None = None, preexec_fn: Callable[[], None] | None = None,
    command: Sequence[str] = (),
) -> Iterator[Exporter]:
    """Start ``gpu-exporter -a 127.0.0.1:0 ARGS`` and yield it once /ready answers 200.

    ``context`` and ``headers`` are what :meth:`Exporter.get` uses (TLS client settings,
    credentials); ``preexec_fn`` runs in the child before exec (resource limits);
    ``command`` replaces the console script (a wrapper that then calls the CLI's ``main``).
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DCGM_", "GPU_"))}
    full_env.update(env or {})
    full_env.setdefault("NODE_NAME", "test-node")
    process = subprocess.Popen(
        [*(command or [str(EXPORTER)]), "-a", "127.0.0.1:0", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, env=full_env, preexec_fn=preexec_fn,  # noqa: PLW1509  # rlimits only
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
        scheme = "https" if context is not None else "http"
        exporter = Exporter(process, f"{scheme}://{address[0]}", lines, context,
                            dict(headers or {}))
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
