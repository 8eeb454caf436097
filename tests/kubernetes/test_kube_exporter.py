"""The real exporter in Kubernetes mode, on the simulated NVML, against the fake kubelet.

Scrapes never reach the kubelet: its call count does not move during 100 scrapes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from fake_kubelet import FakeKubelet, pod

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from support.exporter import run_exporter  # noqa: E402

_SERIES = re.compile(r'^DCGM_FI_DEV_GPU_TEMP\{([^}]*)\}', re.MULTILINE)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def temp_series(text: str) -> list[dict[str, str]]:
    return [dict(_LABEL.findall(m.group(1))) for m in _SERIES.finditer(text)]


def test_hundred_scrapes_make_no_kubelet_call(kubelet: FakeKubelet, socket_path: Path,
                                              tmp_path: Path) -> None:
    from gpu_exporter import simulator

    sim = simulator.prepare("h100x8", seed=3, state_dir=tmp_path / "sim")
    kubelet.set_pods([
        pod("train-0", "ml", {"trainer": {"nvidia.com/gpu": ["nvidia0"]}}),
        # GPU 1 shared through GKE time-sharing replicas by two pods.
        pod("zeta", "shared", {"c": {"nvidia.com/gpu": ["nvidia1/vgpu0"]}}),
        pod("alpha", "shared", {"c": {"nvidia.com/gpu": ["nvidia1/vgpu1"]}}),
    ])
    kubelet.set_allocatable({"nvidia.com/gpu": [f"nvidia{g}" for g in range(8)]})
    kubelet.start()
    args = ["-c", "200", "-k", "--kubernetes-gpu-id-type", "device-name",
            "--pod-resources-kubelet-socket", str(socket_path),
            # One refresh at start, the next only after the test is over.
            "--pod-resources-refresh-interval", "600000",
            "--pod-resources-max-stale", "600000"]
    with run_exporter(args, env=sim.env) as exporter:
        text = exporter.wait_for('pod="train-0"')
        series = {s["gpu"]: s for s in temp_series(text)}
        assert series["0"]["namespace"] == "ml"
        assert series["0"]["container"] == "trainer"
        assert series["1"]["pod"] == "alpha"  # smallest (namespace, pod, container) owns it
        assert "pod" not in series["2"]
        assert "vgpu" not in series["1"]
        assert "gpu_exporter_kubelet_up 1" in text
        assert text.count("gpu_exporter_gpu_allocatable{") == 8
        assert text.count("gpu_exporter_gpu_allocated{") == 3
        calls = dict(kubelet.calls)
        assert calls == {"List": 1, "GetAllocatableResources": 1}
        for _ in range(100):
            status, _body, _ = exporter.get("/metrics")
            assert status == 200
        assert dict(kubelet.calls) == calls


@pytest.mark.parametrize("old_names", [False, True], ids=["new-names", "old-names"])
def test_virtual_gpus_end_to_end(kubelet: FakeKubelet, socket_path: Path, tmp_path: Path,
                                 old_names: bool) -> None:
    from gpu_exporter import simulator

    sim = simulator.prepare("h100x8", seed=3, state_dir=tmp_path / "sim")
    kubelet.set_pods([
        pod("zeta", "shared", {"c": {"nvidia.com/gpu": ["nvidia1/vgpu0"]}}),
        pod("alpha", "shared", {"c": {"nvidia.com/gpu": ["nvidia1/vgpu1", "nvidia1/vgpu3"]}}),
    ])
    kubelet.start()
    args = ["-c", "200", "-k", "--kubernetes-gpu-id-type", "device-name",
            "--kubernetes-virtual-gpus", "true",
            "--pod-resources-kubelet-socket", str(socket_path)]
    if old_names:
        args.append("-o")
    pod_label = "pod_name" if old_names else "pod"
    with run_exporter(args, env=sim.env) as exporter:
        text = exporter.wait_for(f'{pod_label}="zeta"')
        on_gpu1 = sorted((s[pod_label], s["vgpu"]) for s in temp_series(text) if s["gpu"] == "1")
        assert on_gpu1 == [("alpha", "1,3"), ("zeta", "0")]
        assert [s for s in temp_series(text) if s["gpu"] == "0" and pod_label not in s]


def test_dra_and_pod_labels_without_api_or_kubelet_keep_serving(tmp_path: Path) -> None:
    """GPU Operator with DRA on, on a node with no API server and no kubelet socket."""
    from gpu_exporter import simulator

    sim = simulator.prepare("h100x8", seed=3, state_dir=tmp_path / "sim")
    env = {**sim.env, "KUBERNETES_ENABLE_DRA": "true", "DCGM_EXPORTER_KUBERNETES": "true",
           "DCGM_EXPORTER_KUBERNETES_ENABLE_POD_LABELS": "true",
           "DCGM_EXPORTER_KUBERNETES_ENABLE_POD_UID": "true",
           "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "9"}
    args = ["-c", "200", "--pod-resources-kubelet-socket", str(tmp_path / "no.sock"),
            "--pod-resources-refresh-interval", "200", "--pod-resources-max-stale", "1000"]
    with run_exporter(args, env=env) as exporter:
        text = exporter.wait_for("gpu_exporter_kubelet_up 0")
        assert len(temp_series(text)) == 8
        assert all("pod" not in s for s in temp_series(text))
        text = exporter.wait_for("gpu_exporter_kubelet_up 0")  # still serving later on
        assert len(temp_series(text)) == 8
        assert 'gpu_exporter_kube_api_up{resource="pods"} 0' in text
        assert 'gpu_exporter_kube_api_up{resource="resourceslices"} 0' in text
        assert "Traceback" not in exporter.log
    assert exporter.log.count("DRA attribution") == 1  # one line: the API is not reachable
