"""A real Prometheus server for end-to-end tests (Debian's ``prometheus`` package).

It listens on 127.0.0.1 only, keeps its config and TSDB in a temporary directory, scrapes the
given targets every second, and is terminated and waited for on exit. Readiness and the first
samples are polled with a deadline: Prometheus answers ``/-/ready`` at once but, because of
service-discovery batching, scrapes a new target for the first time only after about 5 s.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from support.processes import stop

JOB = "gpu-exporter"


class PrometheusError(RuntimeError):
    """Prometheus could not be started or answered a query with an error."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(targets: Sequence[str], *, interval: str = "1s", job: str = JOB,
           rule_files: Sequence[Path] = (),
           scrape: dict[str, Any] | None = None) -> dict[str, Any]:
    """A scrape config for ``targets`` (``host:port``), one static job, optional rule files.

    ``scrape`` adds keys to the job (``scheme``, ``tls_config``, ``basic_auth``).
    """
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "scrape_timeout": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{
            "job_name": job,
            "honor_labels": True,  # as the Helm chart's ServiceMonitor: pod labels stay `pod`
            "static_configs": [{"targets": list(targets)}],
            **(scrape or {}),
        }],
    }


@dataclass
class Prometheus:
    """A running Prometheus: query it through its HTTP API."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def log(self) -> str:
        """What Prometheus logged so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def api(self, path: str, params: dict[str, str] | None = None, *,
            timeout: float = 10.0) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``; raise on an error answer."""
        query = "?" + urllib.parse.urlencode(params) if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}",
                                        timeout=timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as err:
            body = json.loads(err.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, *, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query (now, or at Unix time ``at``); a list of ``{"metric", "value"}``.

        A scalar or string result comes back as a one-element list. Pass the same ``at`` to
        queries whose results are compared, so a scrape landing between them cannot differ.
        """
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.api("query", params)
        if data["resultType"] in {"scalar", "string"}:
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def wait_for(self, expr: str, *, timeout: float = 20.0, count: int = 1) -> list[dict[str, Any]]:
        """Poll ``expr`` until it returns at least ``count`` series; return them."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited ({self.process.returncode}):\n{self.log}")
            result = self.query(expr)
            if len(result) >= count:
                return result
            time.sleep(0.25)
        targets = self.api("targets")
        raise PrometheusError(
            f"{expr!r} returned {len(result)} series after {timeout} s (wanted {count}); "
            f"targets: {json.dumps(targets['activeTargets'], indent=1)[:3000]}"
        )


def _binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise PrometheusError("prometheus not found: apt-get install --no-install-recommends "
                              "prometheus")
    return found


@contextmanager
def run_prometheus(targets: Sequence[str], workdir: Path, *, interval: str = "1s",
                   rule_files: Sequence[Path] = (),
                   ready_timeout: float = 20.0,
                   scrape: dict[str, Any] | None = None) -> Iterator[Prometheus]:
    """Start Prometheus scraping ``targets``; yield once every target was scraped successfully.

    Stops it on exit: terminate, then wait (a graceful shutdown takes over a second).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prometheus.yml"
    settings = config(targets, interval=interval, rule_files=rule_files, scrape=scrape)
    config_path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    port = free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [_binary(), f"--config.file={config_path}",
             f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}",
             "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
    server = Prometheus(process, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise PrometheusError(f"prometheus exited ({process.returncode}):\n{server.log}")
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=1):
                    break
            except OSError as err:
                if time.monotonic() > deadline:
                    raise PrometheusError(f"prometheus not ready after {ready_timeout} s") from err
                time.sleep(0.1)
        # The first scrape of every target: after this, queries see data.
        server.wait_for(f'up{{job="{JOB}"}} == 1', count=len(targets), timeout=ready_timeout)
        yield server
    finally:
        stop(process, grace=15)
