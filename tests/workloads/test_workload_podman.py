"""Real containers: podman runs two, and its own API service names them.

Podman (rootful, private storage under a temporary directory, the containers.conf workaround
for this machine's limits: runc, ulimits within the hard limits) runs two containers from a
one-file image (a static ``pause`` program built here with gcc; no registry is reachable).
``podman system service`` serves the Docker-compatible API on a unix socket under the test's
temporary directory, and :class:`~gpu_exporter.workloads.engine.ContainerNames` must map the
full container ids ``podman run`` printed to the containers' names through it.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.processes import stop

pytestmark = pytest.mark.slow

PAUSE_C = r"""
#include <signal.h>
#include <unistd.h>
static void bye(int sig) { (void)sig; _exit(0); }
int main(void) {
    signal(SIGTERM, bye);
    signal(SIGINT, bye);
    for (;;) pause();
}
"""
"""The containers' only process: waits for a signal, exits at SIGTERM."""

NAMES = ("wl-trainer", "wl-notebook")
TOOLS = {
    "podman": "apt-get install podman runc netavark aardvark-dns iptables catatonit uidmap",
    "runc": "apt-get install runc",
    "gcc": "apt-get install gcc libc6-dev",
}


@dataclass(frozen=True)
class Podman:
    """A podman command line bound to private storage and a private containers.conf."""

    base: tuple[str, ...]
    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run([*self.base, *args], capture_output=True, text=True,
                                timeout=timeout, env=self.env, check=False)
        if result.returncode != 0:
            pytest.fail(f"podman {' '.join(args)} -> rc {result.returncode}\n"
                        f"{result.stdout}\n{result.stderr}")
        return result.stdout.strip()

    def quiet(self, *args: str, timeout: float = 120) -> None:
        """Run without failing the test (cleanup)."""
        subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=timeout,
                       env=self.env, check=False)


@dataclass(frozen=True)
class Container:
    name: str
    id: str
    pid: int


def _require_tools() -> None:
    missing = [f"{tool} ({hint})" for tool, hint in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        pytest.fail("the podman workload test needs: " + "; ".join(missing))
    if os.geteuid() != 0:
        pytest.fail("the podman workload test needs root (rootful podman)")


def _api_get(socket_path: Path, path: str) -> int:
    """Status of one GET on the engine's unix socket (0 when nothing answers)."""

    class _Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(5)
            sock.connect(str(socket_path))
            self.sock = sock

    conn = _Conn("localhost", timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
    except OSError:
        return 0
    else:
        return response.status
    finally:
        conn.close()


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    _require_tools()
    home = tmp_path_factory.mktemp("podman")
    hard = subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True,
                          check=True).stdout.strip()
    nofile = hard if hard.isdigit() else "1024"
    conf = home / "containers.conf"
    conf.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=32768:32768"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        "[network]\n"
        'network_backend = "netavark"\n',
        encoding="utf-8",
    )
    tool = Podman(("podman", "--root", str(home / "root"), "--runroot", str(home / "run")),
                  {**os.environ, "CONTAINERS_CONF": str(conf)})
    try:
        yield tool
    finally:
        tool.quiet("system", "reset", "--force")


@pytest.fixture(scope="module")
def image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("pause-image")
    source = work / "pause.c"
    source.write_text(PAUSE_C, encoding="utf-8")
    rootfs = work / "rootfs"
    rootfs.mkdir()
    built = subprocess.run(["gcc", "-static", "-O2", "-o", str(rootfs / "pause"), str(source)],
                           capture_output=True, text=True, timeout=120, check=False)
    if built.returncode != 0:
        pytest.fail(f"gcc -static failed (libc6-dev provides libc.a):\n{built.stderr}")
    tarball = work / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(rootfs / "pause", arcname="pause")
    tag = "localhost/gpu-exporter-pause:test"
    podman("import", "--change", 'CMD ["/pause"]', str(tarball), tag)
    return tag


@pytest.fixture(scope="module")
def engine_socket(podman: Podman) -> Iterator[Path]:
    """``podman system service`` on a unix socket under a short temporary directory."""
    directory = Path(tempfile.mkdtemp(prefix="wl-engine-"))  # unix socket paths stay short
    sock = directory / "podman.sock"
    service = subprocess.Popen(
        [*podman.base, "system", "service", "--time=0", f"unix://{sock}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, env=podman.env,
    )
    try:
        deadline = time.monotonic() + 60
        while _api_get(sock, "/_ping") != 200:
            if service.poll() is not None:
                assert service.stderr is not None
                pytest.fail(f"podman system service exited:\n{service.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail("podman system service did not answer /_ping within 60 s")
            time.sleep(0.1)
        yield sock
    finally:
        stop(service)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def containers(podman: Podman, image: str) -> Iterator[dict[str, Container]]:
    started: list[str] = []
    try:
        found = {}
        for name in NAMES:
            cid = podman("run", "-d", "--network=none", "--name", name, image)
            started.append(name)
            pid = int(podman("inspect", "--format", "{{.State.Pid}}", name))
            assert pid > 0, name
            found[name] = Container(name, cid, pid)
        yield found
    finally:
        for name in started:
            podman.quiet("rm", "-f", "--time", "2", name)


def test_engine_socket_names_the_running_containers(
    containers: dict[str, Container], engine_socket: Path,
) -> None:
    # ContainerNames against podman 4.3's own service: full ids from `podman run` -> names.
    from gpu_exporter.workloads.engine import ContainerNames

    names = ContainerNames(engine_socket, timeout_s=5.0)
    for c in containers.values():
        assert names.lookup(c.id) == c.name
    assert names.lookup("0" * 64) is None
