"""--workload-metrics with -k: pod processes named through the API watch (pod UID, container
runtime id) or, without it, through unambiguous kubelet allocations; with virtual GPUs the
per-pod DCGM_FI_DEV_GPU_UTIL and DCGM_FI_DEV_FB_USED carry each pod's own value.

The real exporter on the simulated NVML, a real-gRPC fake kubelet, a fake API server, scripted
GPU processes and a fake procfs tree.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_apiserver import FakeApiServer, pod_object
from fake_kubelet import FakeKubelet, pod

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from support.exporter import Exporter, run_exporter  # noqa: E402

from gpu_exporter import simulator  # noqa: E402
from gpu_exporter.simulator.procfs import cgroup_text, write_tree  # noqa: E402

UID_A = "0a0a0a0a-1111-4222-8333-444455556666"
UID_B = "0b0b0b0b-1111-4222-8333-444455556666"
UID_C = "0c0c0c0c-1111-4222-8333-444455556666"
CID_A = "a1" * 32
CID_B = "b2" * 32
CID_C = "c3" * 32
MIB = 1 << 20
_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$', re.MULTILINE)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _rows(text: str, name: str, gpu: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for match in _LINE.finditer(text):
        if match.group(1) == name:
            labels = dict(_LABEL.findall(match.group(2)))
            if labels.get("gpu") == gpu:
                out.append((labels, float(match.group(3))))
    return out


def _poll(exporter: Exporter, ok: Callable[[str], bool], what: str,
          timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = exporter.metrics()
        if ok(text):
            return text
        assert time.monotonic() < deadline, f"{what}:\n{exporter.log[-3000:]}\n{text[-3000:]}"
        time.sleep(0.2)


def _pod_with_container(name: str, uid: str, cid: str) -> dict[str, Any]:
    obj = pod_object(name, "ml", uid=uid)
    obj["status"]["containerStatuses"][0]["containerID"] = f"containerd://{cid}"
    return obj


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FakeApiServer]:
    with FakeApiServer(tmp_path / "tls", served=("v1",)) as server:
        yield server


def _pod_cgroup(uid: str, cid: str) -> str:
    return cgroup_text("kubepods-containerd-systemd", pod_uid=uid, container_id=cid)


def test_virtual_gpus_carry_each_pods_own_values_named_through_the_api(
    kubelet: FakeKubelet, socket_path: Path, api: FakeApiServer, tmp_path: Path,
) -> None:
    sim = simulator.prepare("h100x8", state_dir=tmp_path / "sim")
    faults = sim.faults
    faults.add_process(1001, 0, mem_mib=1000, sm=30)
    faults.add_process(1002, 0, mem_mib=3000, sm=20)
    proc = tmp_path / "proc"
    write_tree(proc, {1001: _pod_cgroup(UID_A, CID_A), 1002: _pod_cgroup(UID_B, CID_B)})
    kubelet.set_pods([
        pod("pod-a", "ml", {"main": {"nvidia.com/gpu": ["nvidia0/vgpu0"]}}),
        pod("pod-b", "ml", {"main": {"nvidia.com/gpu": ["nvidia0/vgpu1"]}}),
        pod("pod-c", "ml", {"main": {"nvidia.com/gpu": ["nvidia0/vgpu2"]}}),  # no process
    ])
    kubelet.start()
    api.apply(_pod_with_container("pod-a", UID_A, CID_A))
    api.apply(_pod_with_container("pod-b", UID_B, CID_B))
    api.apply(_pod_with_container("pod-c", UID_C, CID_C))
    env = {**sim.env, "KUBECONFIG": str(api.kubeconfig(tmp_path / "kubeconfig"))}
    args = ["-c", "300", "-k", "--pod-resources-kubelet-socket", str(socket_path),
            "--pod-resources-refresh-interval", "300", "--kubernetes-gpu-id-type",
            "device-name", "--kubernetes-virtual-gpus", "--workload-metrics",
            "--procfs-root", str(proc)]

    def util(text: str) -> dict[str, float]:
        return {labels.get("pod", ""): value
                for labels, value in _rows(text, "DCGM_FI_DEV_GPU_UTIL", "0")}

    with run_exporter(args, env=env) as exporter:
        text = _poll(exporter, lambda t: util(t).get("pod-a") == 30 and util(t).get("pod-b")
                     == 20, "per-pod GPU_UTIL of pod-a and pod-b")
        # the device's own series (no pod labels) and one per holder with its pod's value
        assert util(text) == {"": 50, "pod-a": 30, "pod-b": 20, "pod-c": 0}
        rows = _rows(text, "DCGM_FI_DEV_GPU_UTIL", "0")
        held = {labels["pod"]: labels for labels, _ in rows if "pod" in labels}
        assert held["pod-a"]["vgpu"] == "0"
        assert held["pod-a"]["pod_uid"] == UID_A
        assert held["pod-c"]["container"] == "main"
        memory = {labels.get("pod", ""): value
                  for labels, value in _rows(text, "DCGM_FI_DEV_FB_USED", "0")}
        assert memory == {"": 4000, "pod-a": 1000, "pod-b": 3000, "pod-c": 0}
        # other fields are still copied to every holder, as before
        temps = _rows(text, "DCGM_FI_DEV_GPU_TEMP", "0")
        assert len(temps) == 3
        assert len({value for _, value in temps}) == 1
        # the workload families are named through the API (pod UID, container runtime id)
        workload = {labels["workload"]: (labels.get("namespace"), labels.get("pod"),
                                         labels.get("container"))
                    for labels, _ in _rows(text, "gpu_exporter_workload_memory_used_bytes",
                                           "0")}
        assert workload == {"a1a1a1a1a1a1": ("ml", "pod-a", "main"),
                            "b2b2b2b2b2b2": ("ml", "pod-b", "main"),
                            "unattributed": (None, None, None)}


def test_without_the_api_only_unambiguous_allocations_name_pods(
    kubelet: FakeKubelet, socket_path: Path, tmp_path: Path,
) -> None:
    sim = simulator.prepare("h100x8", state_dir=tmp_path / "sim")
    faults = sim.faults
    faults.add_process(2001, 1, mem_mib=500, sm=10)   # GPU 1: held by one container
    faults.add_process(2002, 2, mem_mib=500, sm=10)   # GPU 2: shared by two containers
    faults.add_process(2003, 3, mem_mib=500, sm=10)   # GPU 3: held by one container, but
    faults.add_process(2004, 3, mem_mib=500, sm=10)   # two pods' processes run there
    proc = tmp_path / "proc"
    write_tree(proc, {2001: _pod_cgroup(UID_A, CID_A), 2002: _pod_cgroup(UID_B, CID_B),
                      2003: _pod_cgroup(UID_C, CID_C), 2004: _pod_cgroup(UID_A, CID_A)})
    kubelet.set_pods([
        pod("solo", "ml", {"main": {"nvidia.com/gpu": ["nvidia1"]}}),
        pod("share-1", "ml", {"main": {"nvidia.com/gpu": ["nvidia2/vgpu0"]}}),
        pod("share-2", "ml", {"main": {"nvidia.com/gpu": ["nvidia2/vgpu1"]}}),
        pod("other", "ml", {"main": {"nvidia.com/gpu": ["nvidia3"]}}),
    ])
    kubelet.start()
    env = {**sim.env, "KUBECONFIG": str(tmp_path / "no-such-kubeconfig")}
    args = ["-c", "300", "-k", "--pod-resources-kubelet-socket", str(socket_path),
            "--pod-resources-refresh-interval", "300", "--kubernetes-gpu-id-type",
            "device-name", "--workload-metrics", "--procfs-root", str(proc)]

    def names(text: str, gpu: str) -> dict[str, tuple[str | None, ...]]:
        return {labels["workload"]: (labels.get("namespace"), labels.get("pod"),
                                     labels.get("container"))
                for labels, _ in _rows(text, "gpu_exporter_workload_processes", gpu)}

    with run_exporter(args, env=env) as exporter:
        text = _poll(exporter, lambda t: names(t, "1").get("a1a1a1a1a1a1", (None,))[0] == "ml",
                     "the sole holder's names on GPU 1")
        assert names(text, "1")["a1a1a1a1a1a1"] == ("ml", "solo", "main")
        # time-sliced between two containers: no names without the API (never guessed)
        assert names(text, "2")["b2b2b2b2b2b2"] == (None, None, None)
        # one holder but processes of two pods: no names either
        assert names(text, "3")["c3c3c3c3c3c3"] == (None, None, None)
        assert names(text, "3")["a1a1a1a1a1a1"] == (None, None, None)
    assert "Kubernetes API not configured" in exporter.log
