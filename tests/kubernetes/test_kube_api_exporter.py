"""The real exporter with the Kubernetes API: fake API server + real-gRPC fake kubelet.

Pod labels and UIDs appear, the allowlist filters, a finished pod is de-attributed within one
refresh while the kubelet still lists it, DRA GPU and MIG claims attribute, an API outage
keeps metrics flowing, and scrapes make no API call.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_apiserver import FakeApiServer, pod_object, slice_object
from fake_kubelet import ClaimSpec, FakeKubelet, pod

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from support.exporter import run_exporter  # noqa: E402

_SERIES = re.compile(r"^DCGM_FI_DEV_GPU_TEMP\{([^}]*)\}", re.MULTILINE)
_MIG_SERIES = re.compile(r"^DCGM_FI_DEV_FB_USED\{([^}]*)\}", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def series(text: str, pattern: re.Pattern[str] = _SERIES) -> list[dict[str, str]]:
    return [dict(_LABEL.findall(m.group(1))) for m in pattern.finditer(text)]


def by_gpu(text: str) -> dict[str, dict[str, str]]:
    return {s["gpu"]: s for s in series(text)}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FakeApiServer]:
    with FakeApiServer(tmp_path / "tls", served=("v1",)) as server:
        yield server


def _args(socket_path: Path, *extra: str) -> list[str]:
    return ["-c", "200", "-k", "--pod-resources-kubelet-socket", str(socket_path),
            "--pod-resources-refresh-interval", "300", *extra]


def test_pod_labels_uid_allowlist_and_finished_pods(
    kubelet: FakeKubelet, socket_path: Path, api: FakeApiServer, tmp_path: Path,
) -> None:
    from gpu_exporter import simulator

    sim = simulator.prepare("h100x8", seed=3, state_dir=tmp_path / "sim")
    kubelet.set_pods([
        pod("train-0", "ml", {"trainer": {"nvidia.com/gpu": ["nvidia0"]}}),
        pod("batch-1", "ml", {"job": {"nvidia.com/gpu": ["nvidia1"]}}),
        pod("shared-a", "ml", {"c": {"nvidia.com/gpu": ["nvidia2/vgpu0"]}}),
    ])
    kubelet.start()
    api.apply(pod_object("train-0", "ml", uid="uid-train-0", labels={
        "app": "train", "app.kubernetes.io/name": "trainer", "team": "vision"}))
    api.apply(pod_object("batch-1", "ml", uid="uid-batch-1", labels={"app": "batch"}))
    api.apply(pod_object("shared-a", "ml", uid="uid-shared-a", labels={"app": "share"}))
    env = {**sim.env, "KUBECONFIG": str(api.kubeconfig(tmp_path / "kubeconfig"))}
    args = _args(socket_path, "--kubernetes-gpu-id-type", "device-name",
                 "--kubernetes-enable-pod-labels", "--kubernetes-enable-pod-uid",
                 "--kubernetes-pod-label-allowlist-regex", "^app")
    with run_exporter(args, env=env) as exporter:
        text = exporter.wait_for('app_kubernetes_io_name="trainer"')
        gpus = by_gpu(text)
        assert gpus["0"]["pod"] == "train-0"
        assert gpus["0"]["pod_uid"] == "uid-train-0"
        assert gpus["0"]["app"] == "train"
        assert "team" not in gpus["0"]  # not in the allowlist
        assert gpus["1"]["app"] == "batch"
        assert "pod" not in gpus["3"]
        assert 'gpu_exporter_kube_api_up{resource="pods"} 1' in text

        # Scrapes never call the API (nor the kubelet).
        requests, attempts = dict(api.requests), api.attempts
        for _ in range(50):
            assert exporter.get("/metrics")[0] == 200
        assert api.attempts == attempts
        assert dict(api.requests) == requests

        # Labels follow the pod on the next cycle.
        api.apply(pod_object("train-0", "ml", uid="uid-train-0", labels={"app": "train-v2"}))
        text = exporter.wait_for('app="train-v2"')
        assert "app_kubernetes_io_name" not in by_gpu(text)["0"]

        # Finished (Succeeded/Failed) or deleted pods lose attribution at once, although the
        # kubelet still lists their devices.
        api.apply(pod_object("batch-1", "ml", uid="uid-batch-1", phase="Succeeded"))
        api.apply(pod_object("shared-a", "ml", uid="uid-shared-a"), delete=True)
        text = exporter.wait_for("gpu_exporter_kube_api_up")
        for _ in range(200):
            gpus = by_gpu(text)
            if "pod" not in gpus["1"] and "pod" not in gpus["2"]:
                break
            text = exporter.wait_for("gpu_exporter_kube_api_up")
        assert "pod" not in gpus["1"], gpus["1"]
        assert "pod" not in gpus["2"], gpus["2"]
        assert gpus["0"]["pod"] == "train-0"
        assert kubelet.calls["List"] > 0

        # An API outage: metrics keep flowing with what the exporter can vouch for.
        api.down = True
        text = exporter.wait_for('gpu_exporter_kube_api_up{resource="pods"} 0')
        assert len(series(text)) == 8
        assert by_gpu(text)["0"]["pod"] == "train-0"
        api.down = False
        exporter.wait_for('gpu_exporter_kube_api_up{resource="pods"} 1')
    assert exporter.log.count("not usable for pods") == 1
    assert set(api.selectors) == {"spec.nodeName=test-node"}


def _mig_uuids(env: dict[str, str]) -> dict[tuple[str, str], str]:
    """(gpu index, GPU instance id) -> MIG UUID, read through NVML (the simulated library)."""
    code = """
import json, pynvml
pynvml.nvmlInit()
out = {}
for i in range(pynvml.nvmlDeviceGetCount()):
    gpu = pynvml.nvmlDeviceGetHandleByIndex(i)
    try:
        count = pynvml.nvmlDeviceGetMaxMigDeviceCount(gpu)
    except pynvml.NVMLError:
        continue
    for j in range(count):
        try:
            mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu, j)
        except pynvml.NVMLError:
            continue
        out[f"{i}-{pynvml.nvmlDeviceGetGpuInstanceId(mig)}"] = pynvml.nvmlDeviceGetUUID(mig)
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)
    return {tuple(k.split("-")): v for k, v in json.loads(done.stdout).items()}  # type: ignore[misc]


def test_dra_gpu_and_mig_claims(
    kubelet: FakeKubelet, socket_path: Path, api: FakeApiServer, tmp_path: Path,
) -> None:
    import os

    from gpu_exporter import simulator

    sim = simulator.prepare("a100-mig", seed=1, state_dir=tmp_path / "sim")
    env = {**os.environ, **sim.env}
    migs = _mig_uuids(env)
    assert migs, "the a100-mig profile has MIG instances"
    (gpu, gi), mig_uuid = sorted(migs.items())[0]
    env = {**sim.env, "KUBECONFIG": str(api.kubeconfig(tmp_path / "kubeconfig"))}
    args = _args(socket_path, "--kubernetes-enable-dra")
    # The whole-GPU claim needs a GPU without MIG: find one through a first scrape.
    with run_exporter(args, env=env) as exporter:
        text = exporter.wait_for("DCGM_FI_DEV_GPU_TEMP{")
    whole = [s for s in series(text) if "GPU_I_ID" not in s]
    assert whole, "the a100-mig profile has GPUs without MIG"
    kubelet.set_pods([pod("dra-0", "ml", claims={"main": [
        ClaimSpec("gpu-claim", "ml", "test-node", "gpu-whole"),
        ClaimSpec("mig-claim", "ml", "test-node", "mig-one"),
    ]})])
    kubelet.start()
    devices = [{"name": "mig-one", "type": "mig", "uuid": mig_uuid,
                "parentUUID": "GPU-parent", "profile": "1g.10gb"},
               {"name": "gpu-whole", "type": "gpu", "uuid": whole[0]["UUID"]}]
    api.apply(slice_object("test-node-gpu.nvidia.com-x1", "test-node", devices))
    api.apply(pod_object("dra-0", "ml"))
    with run_exporter(args, env=env) as exporter:
        text = exporter.wait_for('dra_claim_name="mig-claim"')
        mig_rows = [s for s in series(text, _MIG_SERIES)
                    if s.get("gpu") == gpu and s.get("GPU_I_ID") == gi]
        assert mig_rows
        assert all(s["pod"] == "dra-0" for s in mig_rows), mig_rows
        assert mig_rows[0]["dra_mig_device_uuid"] == mig_uuid
        assert mig_rows[0]["dra_pool_name"] == "test-node"
        text = exporter.wait_for('dra_claim_name="gpu-claim"')
        (row,) = [s for s in series(text) if s["UUID"] == whole[0]["UUID"]]
        assert (row["pod"], row["container"], row["dra_device_name"]) == (
            "dra-0", "main", "gpu-whole")
        assert "gpu_exporter_gpu_allocated{" in text
        assert 'gpu_exporter_kube_api_up{resource="resourceslices"} 1' in text
