"""Real containers: podman runs two; its API service and the exporter name them.

Podman (rootful, private storage under a temporary directory, the containers.conf workaround
for this machine's limits: runc, ulimits within the hard limits) runs two containers from a
one-file image (a static ``pause`` program built here with gcc; no registry is reachable).
``podman system service`` serves the Docker-compatible API on a unix socket under the test's
temporary directory.

* :class:`~gpu_exporter.workloads.engine.ContainerNames` maps the full container ids
  ``podman run`` printed to the containers' names through that socket.
* End to end: the simulated NVML is told the containers' real host PIDs
  (``FaultInjector.add_process``), and the exporter, started with ``--workload-metrics
  --container-engine-socket <that socket>`` and the host's real ``/proc``, must attribute each
  process to its container through the real ``/proc/<pid>/cgroup`` file and the engine's list:
  ``workload_kind="container"``, ``workload`` = the short container id, ``container`` = the
  container's name, with the SM share and memory the simulator was given.
"""

from __future__ import annotations

import http.client
import os
import re
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
from support.exporter import run_exporter
from support.podman import Podman, private_podman
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

COUNTERS = Path(__file__).resolve().parents[2] / "counters" / "default-counters.csv"
NAMES = ("wl-trainer", "wl-notebook")
SM = {"wl-trainer": 60, "wl-notebook": 25}  # percent
MEM_MIB = {"wl-trainer": 2048, "wl-notebook": 512}
LIFETIME_S = 1200
"""Conmon kills a container after this long: a run killed before its teardown (which removes
them) leaves none behind for longer. The module's tests take a minute or two."""
TOOLS = {
    "podman": "apt-get install podman runc netavark aardvark-dns iptables catatonit uidmap",
    "runc": "apt-get install runc",
    "gcc": "apt-get install gcc libc6-dev",
}


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


def _collections(text: str) -> float:
    """``gpu_exporter_collections_total`` of one scrape (0 before the first cycle)."""
    for line in text.splitlines():
        if line.startswith("gpu_exporter_collections_total"):
            return float(line.rpartition(" ")[2])
    return 0.0


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    _require_tools()
    with private_podman(tmp_path_factory.mktemp("podman")) as tool:
        yield tool


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
            cid = podman.out("run", "-d", "--network=none", "--timeout", str(LIFETIME_S),
                             "--name", name, image)
            started.append(name)
            pid, lifetime = podman.out("inspect", "--format", "{{.State.Pid}} {{.Config.Timeout}}",
                                       name).split()
            assert int(pid) > 0, name
            assert int(lifetime) == LIFETIME_S, name  # bounded even if teardown never runs
            found[name] = Container(name, cid, int(pid))
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


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _samples(text: str, family: str) -> dict[tuple[str, str], tuple[dict[str, str], float]]:
    """(workload_kind, workload) -> (labels, value) of one family on GPU 0."""
    out = {}
    for line in text.splitlines():
        if line.startswith(family + "{"):
            labels_text, _, value = line[len(family) + 1:].rpartition("} ")
            labels = dict(_LABEL.findall(labels_text))
            if labels.get("gpu") == "0":
                out[(labels["workload_kind"], labels["workload"])] = (labels, float(value))
    return out


def test_each_container_is_named_through_its_cgroup_and_the_engine(
    containers: dict[str, Container], engine_socket: Path, tmp_path: Path,
) -> None:
    from gpu_exporter import simulator
    from gpu_exporter.workloads.cgroup import parse_cgroup

    for c in containers.values():
        text = Path(f"/proc/{c.pid}/cgroup").read_text(encoding="utf-8")
        ref = parse_cgroup(text)
        assert ref is not None, f"cgroup of {c.name} (pid {c.pid}) names no workload:\n{text}"
        assert (ref.kind, ref.container_id) == ("container", c.id), (c.name, ref, text)

    sim = simulator.prepare("l4x2", seed=3, state_dir=tmp_path / "sim")
    faults = simulator.FaultInjector(sim.state_dir)
    for c in containers.values():
        faults.add_process(c.pid, 0, sm=SM[c.name], mem_mib=MEM_MIB[c.name])
    args = ["-f", str(COUNTERS), "-c", "1000", "--workload-metrics",
            "--container-engine-socket", str(engine_socket)]
    with run_exporter(args, env=sim.env) as exporter:
        deadline = time.monotonic() + 60
        while True:
            text = exporter.metrics()
            sm = _samples(text, "gpu_exporter_workload_sm_utilization_ratio")
            named = {labels.get("container") for labels, _ in sm.values()}
            if set(NAMES) <= named or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        # The cycle that first names them may have begun before the processes were scripted
        # (its window holds less of their time): judge the values two full cycles later.
        settled = _collections(text) + 2
        while _collections(text) < settled and time.monotonic() < deadline + 30:
            time.sleep(0.2)
            text = exporter.metrics()
        sm = _samples(text, "gpu_exporter_workload_sm_utilization_ratio")
        memory = _samples(text, "gpu_exporter_workload_memory_used_bytes")
        processes = _samples(text, "gpu_exporter_workload_processes")
        for c in containers.values():
            key = ("container", c.id[:12])
            assert key in sm, f"{c.name} not attributed:\n{text[-4000:]}\n{exporter.log}"
            labels, value = sm[key]
            assert labels["container"] == c.name
            assert "pod" not in labels
            assert "namespace" not in labels
            assert value == pytest.approx(SM[c.name] / 100, abs=0.02)
            assert memory[key][1] == MEM_MIB[c.name] * 1024 * 1024
            assert processes[key][1] == 1
        # Nothing else ran on GPU 0: the remainder holds no process and no SM time beyond
        # rounding, and the rows add up to the device's utilisation.
        assert set(sm) == {("container", c.id[:12]) for c in containers.values()} | {
            ("unattributed", "unattributed")}
        total = sum(value for _, value in sm.values())
        device = [line for line in text.splitlines()
                  if line.startswith("DCGM_FI_DEV_GPU_UTIL{") and 'gpu="0"' in line]
        assert device, "no DCGM_FI_DEV_GPU_UTIL for GPU 0"
        assert total == pytest.approx(float(device[0].rpartition(" ")[2]) / 100, abs=0.02)
