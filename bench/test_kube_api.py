"""Kubernetes API watch costs: exporter RSS with pod labels and 110 pods, 1,000-pod churn,
CPU per watch event.

Run (results in bench/RESULTS.md):
    .venv/bin/pytest bench/test_kube_api.py -s -p no:cacheprovider

The fake API server (tests/kubernetes/fake_apiserver.py) runs in the test process; the exporter
is the real one, on the simulated h100x8 profile, with the real-gRPC fake kubelet.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "kubernetes"))
sys.path.insert(0, str(ROOT / "tests"))

from fake_apiserver import FakeApiServer, pod_object  # noqa: E402
from fake_kubelet import FakeKubelet, pod  # noqa: E402
from targets import target  # noqa: E402

from gpu_exporter.kubernetes.apiserver import pod_reflector  # noqa: E402
from gpu_exporter.kubernetes.apiview import ApiSettings, LabelPolicy, apply_api  # noqa: E402
from gpu_exporter.kubernetes.podindex import build_index  # noqa: E402
from gpu_exporter.kubernetes.podresources import Container, Devices, Pod  # noqa: E402

LABELS = {"app": "trainer", "app.kubernetes.io/name": "trainer",
          "app.kubernetes.io/instance": "run-42", "team": "vision", "tier": "batch",
          "batch.kubernetes.io/job-name": "train", "controller-uid": "c0ffee",
          "pod-template-hash": "5d9f7c"}


def _rss(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines()
                if line.startswith("VmRSS:")) / 1024


def test_exporter_rss_pod_labels_110_pods_and_churn() -> None:
    """RSS with pod labels + UID on and 110 pods, then after 1,000 pod create/delete events."""
    from support.exporter import run_exporter

    from gpu_exporter import simulator

    work = Path(tempfile.mkdtemp(prefix="kube-api-rss-"))
    sim = simulator.prepare("h100x8", seed=1, state_dir=work / "sim")
    socket = work / "kubelet.sock"
    with FakeApiServer(work / "tls") as api, FakeKubelet(socket) as kubelet:
        kubelet.set_pods([
            pod(f"job-{i}", f"ns-{i % 7}",
                {"w": {"nvidia.com/gpu": [f"nvidia{i % 8}/vgpu{i // 8}"]}})
            for i in range(110)
        ])
        for i in range(110):
            api.apply(pod_object(f"job-{i}", f"ns-{i % 7}", labels={**LABELS, "index": str(i)}))
        env = {**sim.env, "KUBECONFIG": str(api.kubeconfig(work / "kubeconfig"))}
        args = ["-c", "1000", "-k", "--kubernetes-gpu-id-type", "device-name",
                "--pod-resources-kubelet-socket", str(socket),
                "--pod-resources-refresh-interval", "1000",
                "--kubernetes-enable-pod-labels", "--kubernetes-enable-pod-uid"]
        with run_exporter(args, env=env) as exporter:
            exporter.wait_for('app_kubernetes_io_instance="run-42"', timeout=60)
            for _ in range(20):
                for _ in range(10):
                    assert exporter.get("/metrics")[0] == 200
                time.sleep(0.5)
            steady = _rss(exporter.process.pid)
            start = time.monotonic()
            for i in range(1000):  # 1,000 short-lived pods on this node: 2,000 events
                churn = pod_object(f"churn-{i}", "batch", labels={**LABELS, "index": str(i)})
                api.apply(churn)
                api.apply(churn, delete=True)
            exporter.wait_for('gpu_exporter_kube_api_up{resource="pods"} 1')
            time.sleep(3)
            for _ in range(50):
                assert exporter.get("/metrics")[0] == 200
            churned = _rss(exporter.process.pid)
            elapsed = time.monotonic() - start
    print(f"\nexporter RSS, -k + pod labels + pod UID, 110 pods: {steady:.1f} MiB; "
          f"after 1,000 pod create/delete ({elapsed:.1f} s): {churned:.1f} MiB")
    target("exporter RSS, -k + pod labels + UID, 110 pods", steady, 72.0, "MiB")
    target("exporter RSS after 1,000 pod create/delete", churned, 72.0, "MiB")


def test_cpu_per_watch_event() -> None:
    """CPU of one MODIFIED pod event (JSON decode + reduce + store) and of the re-join."""
    reflector = pod_reflector("test-node")
    events = []
    for i in range(110):
        obj = pod_object(f"job-{i}", f"ns-{i % 7}", labels={**LABELS, "index": str(i)})
        obj["metadata"]["resourceVersion"] = str(1000 + i)
        events.append(json.dumps({"type": "MODIFIED", "object": obj}).encode())
    gc.collect()
    rounds = []
    for _ in range(20):
        start = time.process_time()
        for line in events:
            reflector.apply(json.loads(line))
        rounds.append((time.process_time() - start) / len(events))
    per_event = statistics.median(rounds)
    index = build_index([
        Pod(f"job-{i}", f"ns-{i % 7}", (Container("w", (Devices(
            "nvidia.com/gpu", (f"nvidia{i % 8}/vgpu{i // 8}",)),)),))
        for i in range(110)], None)
    settings, policy = ApiSettings(pod_labels=True, pod_uid=True), LabelPolicy()
    joins = []
    for _ in range(20):
        start = time.process_time()
        for _ in range(10):
            apply_api(index, pods=reflector.store, deleted=reflector.deleted, devices={},
                      settings=settings, policy=policy)
        joins.append((time.process_time() - start) / 10)
    per_join = statistics.median(joins)
    print(f"\nCPU per watch event (pod, 9 labels): {per_event * 1e6:.1f} us; "
          f"re-join of 110 pods after a change: {per_join * 1e3:.3f} ms")
