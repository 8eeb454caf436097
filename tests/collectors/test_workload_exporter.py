"""--workload-metrics end to end: the console script on the simulated NVML, real pynvml at the
C ABI, scripted processes and a fake procfs tree with the cgroup files of each workload form.

Every scenario checks the contract of collectors/workload.py: one row per workload, the
``unattributed`` row, and per GPU the rows of each family adding up to the device's value.
"""

from __future__ import annotations

import json
import math
import re
import socketserver
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from support.exporter import Exporter, run_exporter

from gpu_exporter.simulator import FaultInjector
from gpu_exporter.simulator.procfs import cgroup_text, write_tree

POD_UID = "0b7e1c2d-3f4a-4b5c-8d6e-7f8091a2b3c4"
CID_A = "a1" * 32
CID_B = "b2" * 32
MIB = 1 << 20
W = "gpu_exporter_workload_"
UTIL = {f"{W}sm_utilization_ratio": "DCGM_FI_DEV_GPU_UTIL",
        f"{W}memory_utilization_ratio": "DCGM_FI_DEV_MEM_COPY_UTIL",
        f"{W}decoder_utilization_ratio": "DCGM_FI_DEV_DEC_UTIL"}

Rows = dict[str, list[tuple[dict[str, str], float]]]


_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _parse(text: str) -> Rows:
    """Every sample line of a text exposition: name -> [(labels, value)]."""
    rows: Rows = defaultdict(list)
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is not None:
            labels = dict(_LABEL.findall(match.group(2) or ""))
            rows[match.group(1)].append((labels, float(match.group(3))))
    return rows


def _of(rows: Rows, name: str, gpu: int, gi: str | None = None) -> dict[str, float]:
    """workload label (plus pid when present) -> value, for one GPU or MIG instance."""
    out = {}
    for labels, value in rows.get(name, []):
        if labels.get("gpu") == str(gpu) and labels.get("GPU_I_ID") == gi:
            key = labels.get("workload", "")
            if "pid" in labels:
                key += f"/{labels['pid']}"
            out[key] = value
    return out


def _device(rows: Rows, name: str, gpu: int, gi: str | None = None) -> float:
    values = [v for labels, v in rows[name]
              if labels.get("gpu") == str(gpu) and labels.get("GPU_I_ID") == gi]
    assert len(values) == 1, (name, gpu, gi, values)
    return values[0]


def _poll(exporter: Exporter, ok: Callable[[Rows], bool], what: str,
          timeout: float = 60) -> Rows:
    deadline = time.monotonic() + timeout
    while True:
        rows = _parse(exporter.metrics())
        if ok(rows):
            return rows
        assert time.monotonic() < deadline, f"{what}:\n{exporter.log[-3000:]}"
        time.sleep(0.2)


@contextmanager
def _exporter(tmp_path: Path, profile: str, cgroups: dict[int, str | None], *extra: str,
              names: dict[int, str] | None = None) -> Iterator[tuple[Exporter, FaultInjector]]:
    """The exporter with --workload-metrics on a fake procfs tree; processes added after."""
    sim, proc = tmp_path / "sim", tmp_path / "proc"
    sim.mkdir()
    proc.mkdir()
    write_tree(proc, cgroups, names=names)
    args = ["--simulate", profile, "-c", "300", "--workload-metrics", "--procfs-root", str(proc),
            *extra]
    with run_exporter(args, env={"GPU_SIM_DIR": str(sim)}) as exporter:
        yield exporter, FaultInjector(sim)
        # the collector never failed (a failure drops that GPU's rows and logs a traceback)
        assert "collector workload failed" not in exporter.log, exporter.log[-3000:]
        assert 'gpu_exporter_collector_success{collector="workload"} 1' in exporter.metrics()


def _check_sums(rows: Rows, gpu: int) -> None:
    """Per family, the rows of a whole GPU add up to the device value."""
    for family, dcgm in UTIL.items():
        parts = _of(rows, family, gpu)
        assert "unattributed" in parts
        assert math.isclose(sum(parts.values()), _device(rows, dcgm, gpu) / 100,
                            abs_tol=1e-9), (family, parts)
    memory = _of(rows, f"{W}memory_used_bytes", gpu)
    assert math.isclose(sum(memory.values()), _device(rows, "DCGM_FI_DEV_FB_USED", gpu) * MIB,
                        abs_tol=1.0), memory


def test_time_sliced_gpu_per_workload_and_unattributed(tmp_path: Path) -> None:
    cgroups = {
        4242: cgroup_text("kubepods-containerd-systemd", container_id=CID_A, pod_uid=POD_UID),
        4243: cgroup_text("slurm", version=1, uid=1000, job=42),
        4244: None,  # a cgroup file that cannot be read: unattributed, never guessed
        4245: cgroup_text("user-session", uid=1000, session=3),
        4246: cgroup_text("systemd-service", unit="render"),
    }
    with _exporter(tmp_path, "h100x8", cgroups) as (exporter, faults):
        faults.add_process(4242, 0, mem_mib=1000, sm=30, mem=10, dec=4)
        faults.add_process(4243, 0, mem_mib=2000, sm=20, mem=5)
        faults.add_process(4244, 0, mem_mib=500, sm=10)
        faults.add_process(4245, 0, mem_mib=300, sm=5)
        faults.add_process(4246, 0, kind="graphics", mem_mib=100, sm=5, mem=1)
        sm = f"{W}sm_utilization_ratio"
        rows = _poll(exporter, lambda r: math.isclose(
            _of(r, sm, 0).get("a1a1a1a1a1a1", 0), 0.30, abs_tol=1e-9) and math.isclose(
            _of(r, sm, 0).get("unattributed", 0), 0.15, abs_tol=1e-9), "steady rows")
        assert _of(rows, sm, 0) == pytest.approx({
            "a1a1a1a1a1a1": 0.30, "42": 0.20, "render.service": 0.05, "unattributed": 0.15},
            abs=1e-9)
        assert _of(rows, f"{W}decoder_utilization_ratio", 0)["a1a1a1a1a1a1"] == \
            pytest.approx(0.04, abs=1e-9)
        assert _of(rows, f"{W}memory_used_bytes", 0) == {
            "a1a1a1a1a1a1": 1000 * MIB, "42": 2000 * MIB, "render.service": 100 * MIB,
            "unattributed": 800 * MIB}
        assert _of(rows, f"{W}processes", 0) == {
            "a1a1a1a1a1a1": 1, "42": 1, "render.service": 1, "unattributed": 2}
        kinds = {labels["workload"]: labels["workload_kind"]
                 for labels, _ in rows[f"{W}processes"] if labels["gpu"] == "0"}
        assert kinds == {"a1a1a1a1a1a1": "pod", "42": "slurm_job",
                         "render.service": "systemd_unit", "unattributed": "unattributed"}
        users = {labels["workload"]: labels.get("uid")
                 for labels, _ in rows[f"{W}processes"] if labels["gpu"] == "0"}
        assert users["42"] == "1000"  # the Slurm job's user, from its v1 cgroup path
        assert users["a1a1a1a1a1a1"] is None
        _check_sums(rows, 0)
        # no encoder on an H100: neither the DCGM field nor the workload family
        assert not _of(rows, f"{W}encoder_utilization_ratio", 0)
        # a GPU running its seeded processes (no procfs entries): everything unattributed
        assert set(_of(rows, f"{W}memory_used_bytes", 3)) == {"unattributed"}
        _check_sums(rows, 3)
        # no pid labels unless asked for
        assert all("pid" not in labels for labels, _ in rows[sm])


def test_energy_counters_only_grow_and_add_up_to_the_device_energy(tmp_path: Path) -> None:
    cgroups = {5000: cgroup_text("docker-systemd", container_id=CID_A),
               5001: cgroup_text("podman", container_id=CID_B)}
    energy = f"{W}energy_joules_total"
    with _exporter(tmp_path, "h100x8", cgroups) as (exporter, faults):
        faults.add_process(5000, 1, mem_mib=3000, sm=60)
        faults.add_process(5001, 1, mem_mib=1000, sm=10)
        _poll(exporter, lambda r: _of(r, energy, 1).get("b2b2b2b2b2b2", 0) > 0,
              "energy rows of both containers")
        time.sleep(1)  # past the interval in which the processes started
        first = _parse(exporter.metrics())
        device0 = _device(first, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 1) / 1000
        rows0 = _of(first, energy, 1)
        time.sleep(2)
        last = _parse(exporter.metrics())
        rows1 = _of(last, energy, 1)
        device1 = _device(last, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 1) / 1000
        assert set(rows1) == {"a1a1a1a1a1a1", "b2b2b2b2b2b2", "unattributed"}
        assert all(rows1[k] >= rows0[k] for k in rows1)
        grown = {k: rows1[k] - rows0[k] for k in rows1}
        # split from the same reading as the DCGM counter: exact (up to float rounding)
        assert math.isclose(sum(grown.values()), device1 - device0, rel_tol=1e-9)
        # busy share by SM (60 % and 10 %), idle share (30 %) by memory held (3000 : 1000 MiB)
        assert math.isclose(grown["a1a1a1a1a1a1"] / sum(grown.values()), 0.60 + 0.30 * 0.75,
                            rel_tol=0.02)
        assert grown["unattributed"] < 1e-6 * sum(grown.values())


def test_mps_clients_count_once_and_the_server_is_left_out(tmp_path: Path) -> None:
    # the simulator's MPS server has a PID in 900-989 (hashed from the GPU's seed)
    servers = range(900, 990)
    cgroups: dict[int, str | None] = dict.fromkeys(
        servers, cgroup_text("systemd-service", unit="nvidia-mps"))
    cgroups[6001] = cgroup_text("kubepods-crio-systemd", container_id=CID_A, pod_uid=POD_UID)
    cgroups[6002] = cgroup_text("kubepods-crio-systemd", container_id=CID_B, pod_uid=POD_UID)
    with _exporter(tmp_path, "h100x8", cgroups,
                   names=dict.fromkeys(servers, "nvidia-cuda-mps-server")) as (exporter, faults):
        faults.add_process(6001, 2, kind="mps", mem_mib=1000, sm=20)
        faults.add_process(6002, 2, kind="mps", mem_mib=3000, sm=30)
        rows = _poll(exporter, lambda r: math.isclose(
            _of(r, f"{W}sm_utilization_ratio", 2).get("b2b2b2b2b2b2", 0), 0.3, abs_tol=1e-9),
            "MPS client rows")
        assert _of(rows, f"{W}memory_used_bytes", 2) == {
            "a1a1a1a1a1a1": 1000 * MIB, "b2b2b2b2b2b2": 3000 * MIB, "unattributed": 0}
        assert _of(rows, f"{W}processes", 2) == {
            "a1a1a1a1a1a1": 1, "b2b2b2b2b2b2": 1, "unattributed": 0}
        _check_sums(rows, 2)


def test_mig_instances_memory_per_instance_and_no_utilisation(tmp_path: Path) -> None:
    cgroups = {
        7001: cgroup_text("kubepods-containerd-cgroupfs", container_id=CID_A, pod_uid=POD_UID),
        7002: cgroup_text("slurm", version=2, uid=1000, job=7),
        7003: cgroup_text("docker-cgroupfs", container_id=CID_B),
    }
    with _exporter(tmp_path, "a100-mig", cgroups) as (exporter, faults):
        first = _poll(exporter, lambda r: bool(r.get("DCGM_FI_DEV_FB_USED")), "first snapshot")
        gis = sorted({labels["GPU_I_ID"] for labels, _ in first["DCGM_FI_DEV_FB_USED"]
                      if labels["gpu"] == "1"}, key=int)
        assert len(gis) == 3
        faults.add_process(7001, 1, instance=int(gis[0]), mem_mib=2000, sm=40)
        faults.add_process(7002, 1, instance=int(gis[0]), mem_mib=1000, sm=20)
        faults.add_process(7003, 1, instance=int(gis[1]), mem_mib=512, sm=50)
        used = f"{W}memory_used_bytes"
        rows = _poll(exporter, lambda r: _of(r, used, 1, gis[1]).get("b2b2b2b2b2b2") == 512 * MIB
                     and "7" in _of(r, used, 1, gis[0]), "MIG rows")
        assert _of(rows, used, 1, gis[0]) == {
            "a1a1a1a1a1a1": 2000 * MIB, "7": 1000 * MIB, "unattributed": 0}
        assert _of(rows, f"{W}processes", 1, gis[0]) == {
            "a1a1a1a1a1a1": 1, "7": 1, "unattributed": 0}
        for gi in gis:
            assert math.isclose(sum(_of(rows, used, 1, gi).values()),
                                _device(rows, "DCGM_FI_DEV_FB_USED", 1, gi) * MIB, abs_tol=1)
            reasons = [(labels["reason"], v) for labels, v in rows[f"{W}utilization_available"]
                       if labels["gpu"] == "1" and labels.get("GPU_I_ID") == gi]
            assert reasons == [("mig", 0.0)]
        # utilisation and energy: never on a MIG GPU (absent, not 0); whole GPUs keep them
        for family in (f"{W}sm_utilization_ratio", f"{W}energy_joules_total"):
            assert not any(labels["gpu"] in {"0", "1", "2"} for labels, _ in rows[family])
            assert any(labels["gpu"] == "3" for labels, _ in rows[family])


def test_pid_labels_short_lived_process_and_pid_reuse(tmp_path: Path) -> None:
    cgroups: dict[int, str | None] = {8001: cgroup_text("docker-systemd", container_id=CID_A)}
    processes = f"{W}processes"
    with _exporter(tmp_path, "h100x8", cgroups, "--workload-pid-labels") as (exporter, faults):
        faults.add_process(8001, 4, mem_mib=100, sm=10)
        _poll(exporter, lambda r: _of(r, processes, 4).get("a1a1a1a1a1a1/8001") == 1,
              "per-PID row")
        # the PID exits (its row goes) and is reused by a process of another container
        faults.remove_process(8001)
        _poll(exporter, lambda r: "a1a1a1a1a1a1/8001" not in _of(r, processes, 4), "exit seen")
        write_tree(tmp_path / "proc", {8001: cgroup_text("podman", container_id=CID_B)})
        faults.add_process(8001, 4, mem_mib=200, sm=10)
        rows = _poll(exporter, lambda r: _of(r, processes, 4).get("b2b2b2b2b2b2/8001") == 1,
                     "reused PID attributed to its new container")
        assert "a1a1a1a1a1a1/8001" not in _of(rows, processes, 4)
        # a process without a /proc entry (gone already): unattributed, with its PID
        faults.add_process(8002, 4, mem_mib=50, sm=30)
        rows = _poll(exporter, lambda r: _of(r, processes, 4).get("unattributed/8002") == 1,
                     "PID without /proc entry unattributed")
        assert _of(rows, processes, 4)["unattributed"] == 0  # the remainder row: no pid
        _check_sums(rows, 4)


def test_off_by_default_no_series_and_no_per_process_calls(tmp_path: Path) -> None:
    with run_exporter(["--simulate", "h100x8", "-c", "300"],
                      env={"GPU_SIM_DIR": str(tmp_path)}) as exporter:
        faults = FaultInjector(tmp_path)
        faults.add_process(9001, 0, mem_mib=100, sm=10)
        text = exporter.wait_for("\ngpu_exporter_collections_total 4\n", timeout=60)
        assert W not in text
        assert 'collector="workload"' not in text
        time.sleep(0.3)  # the simulator publishes its call counters every ~100 ms
        per_process = [name for name in faults.call_counts()
                       if "RunningProcesses" in name or "ProcessUtilization" in name]
        assert per_process == []


class _EngineHandler(BaseHTTPRequestHandler):
    """A Docker-compatible engine: GET /containers/json lists one container, ``web``."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = json.dumps([{"Id": CID_A, "Names": ["/web"], "State": "running"}]).encode()
        self.send_response(200 if self.path == "/containers/json" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib's name)
        pass


class _EngineServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def test_container_names_from_the_engine_socket(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="gpx-wl-") as short:  # unix socket path < 108 bytes
        path = Path(short) / "docker.sock"
        server = _EngineServer(str(path), _EngineHandler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        try:
            cgroups: dict[int, str | None] = {
                4301: cgroup_text("docker-systemd", container_id=CID_A),
                4302: cgroup_text("podman", container_id=CID_B),  # unknown to the engine
            }
            with _exporter(tmp_path, "h100x8", cgroups, "--container-engine-socket",
                           str(path)) as (exporter, faults):
                faults.add_process(4301, 5, mem_mib=100, sm=10)
                faults.add_process(4302, 5, mem_mib=100, sm=10)
                rows = _poll(exporter, lambda r: len(_of(r, f"{W}processes", 5)) == 3,
                             "both container rows")
                labels = {lab["workload"]: lab.get("container")
                          for lab, _ in rows[f"{W}processes"] if lab["gpu"] == "5"}
                assert labels == {"a1a1a1a1a1a1": "web", "b2b2b2b2b2b2": None,
                                  "unattributed": None}
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=30)


def test_a_process_too_short_lived_to_be_listed_still_gets_its_energy(tmp_path: Path) -> None:
    cgroups: dict[int, str | None] = {8101: cgroup_text("docker-systemd", container_id=CID_A)}
    energy = f"{W}energy_joules_total"
    processes = f"{W}processes"
    sm = f"{W}sm_utilization_ratio"
    with _exporter(tmp_path, "h100x8", cgroups, "-c", "2000") as (exporter, faults):
        exporter.wait_for("\ngpu_exporter_collections_total 2\n", timeout=60)
        faults.add_process(8101, 6, mem_mib=100, sm=40)
        time.sleep(0.5)  # about 3 sample periods, most likely between two cycles
        faults.remove_process(8101)
        # its samples come with the next read although no list shows it any more: its energy
        # share is counted (never lost), and its counter stays after it left the GPU
        rows = _poll(exporter, lambda r: _of(r, energy, 6).get("a1a1a1a1a1a1", 0) > 0
                     and _of(r, processes, 6).get("a1a1a1a1a1a1", 1) == 0,
                     "the exited process's energy")
        _check_sums(rows, 6)
        later = _poll(exporter, lambda r: "a1a1a1a1a1a1" not in _of(r, processes, 6),
                      "the exited workload's gauges gone")
        assert _of(later, energy, 6)["a1a1a1a1a1a1"] == _of(rows, energy, 6)["a1a1a1a1a1a1"]
        assert "a1a1a1a1a1a1" not in _of(later, sm, 6)
