"""Kubernetes attribution costs: kubelet refresh with 10,000 pods, join per cycle, RSS.

Run (results in bench/RESULTS.md):
    .venv/bin/pytest bench/test_kube.py --benchmark-enable -s \
        --benchmark-columns=min,median,mean,max,rounds

pytest-benchmark reports wall time, which on a busy 2-core machine includes waiting for a
core; the targets are CPU time, so each test also measures ``time.process_time`` over rounds
run back to back (garbage collection included) and prints (and checks) the median.
"""

from __future__ import annotations

import asyncio
import gc
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "kubernetes"))

from fake_kubelet import list_response, pod  # noqa: E402
from targets import target  # noqa: E402

from gpu_exporter.kubernetes.attribution import Attributor  # noqa: E402
from gpu_exporter.kubernetes.config import KubernetesConfig  # noqa: E402
from gpu_exporter.kubernetes.podindex import PodCache, build_index  # noqa: E402
from gpu_exporter.kubernetes.podresources import (  # noqa: E402
    ListDecoder,
    PodResourcesClient,
)
from gpu_exporter.model import Entity, Sample  # noqa: E402

UUIDS = [f"GPU-{g:08x}-0000-4000-8000-{g:012x}" for g in range(8)]
ENTITIES = tuple(
    Entity(g, UUIDS[g], f"00000000:{0x18 + g:02X}:00.0", "NVIDIA H100 80GB HBM3")
    for g in range(8)
)
FIELDS = (100, 101, 140, 150, 155, 156, 202, 203, 204, 206, 207, 230, 251, 252, 253, 449,
          526, 393, 394, 395, 1001, 1004, 1005, 1009, 1010)  # the 25 default families


def big_list(n: int = 10_000) -> list[object]:
    """n pods, each with a main container holding one time-slicing replica and a sidecar."""
    return [
        pod(f"pod-{i:05d}", f"ns-{i % 50:02d}",
            {"main": {"nvidia.com/gpu.shared": [f"{UUIDS[i % 8]}::{i // 8}"]}, "sidecar": {}})
        for i in range(n)
    ]


def cpu_median(fn: Callable[[], object], rounds: int, label: str) -> float:
    """CPU seconds of fn: median of rounds run back to back (garbage collection included)."""
    gc.collect()
    times = []
    total = time.process_time()
    for _ in range(rounds):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    mean = (time.process_time() - total) / rounds
    median = statistics.median(times)
    print(f"\n{label}: CPU median {median * 1000:.3f} ms, mean {mean * 1000:.3f} ms, "
          f"min {min(times) * 1000:.3f} ms, max {max(times) * 1000:.3f} ms over {rounds} rounds")
    return median


def test_refresh_10k_pods_steady(benchmark: BenchmarkFixture) -> None:
    """Steady state: the same 10,000 pods, listed in a new order every refresh."""
    pods = big_list()
    rng = random.Random(1)  # noqa: S311 (a shuffle)
    answers = []
    for _ in range(5):
        rng.shuffle(pods)
        answers.append(list_response(pods).SerializeToString())
    decoder, parse_cache, pod_cache = ListDecoder(), {}, {}  # type: ignore[var-annotated]
    turn = iter(range(10**9))

    def refresh() -> int:
        data = answers[next(turn) % len(answers)]
        index = build_index(decoder.decode(data), None, (), parse_cache, pod_cache)
        return len(index.assignments)

    assert refresh() == 10_000
    median = cpu_median(refresh, 30, "refresh, 10k pods, steady (decode + index)")
    benchmark(refresh)
    target("kubelet refresh, 10k pods, steady", median * 1000, 50, "ms CPU")


def test_refresh_10k_pods_cold(benchmark: BenchmarkFixture) -> None:
    """First refresh after start (or every pod changed): nothing reusable."""
    data = list_response(big_list()).SerializeToString()

    def refresh() -> int:
        index = build_index(ListDecoder().decode(data), None, (), {}, {})
        return len(index.assignments)

    assert refresh() == 10_000
    cpu_median(refresh, 10, "refresh, 10k pods, cold (decode + index)")
    benchmark(refresh)


def test_refresh_10k_pods_churn(benchmark: BenchmarkFixture) -> None:
    """1 % of the pods replaced between refreshes."""
    pods = big_list()
    decoder, parse_cache, pod_cache = ListDecoder(), {}, {}  # type: ignore[var-annotated]
    build_index(decoder.decode(list_response(pods).SerializeToString()), None, (),
                parse_cache, pod_cache)
    answers = []
    for r in range(6):
        for i in range(100):
            replica = f"{UUIDS[i % 8]}::{9000 + i}"
            pods[(r * 100 + i) * 7 % len(pods)] = pod(
                f"new-{r}-{i}", "churn", {"main": {"nvidia.com/gpu.shared": [replica]}})
        answers.append(list_response(pods).SerializeToString())
    turn = iter(range(10**9))

    def refresh() -> int:
        data = answers[next(turn) % len(answers)]
        return len(build_index(decoder.decode(data), None, (), parse_cache, pod_cache).assignments)

    cpu_median(refresh, 30, "refresh, 10k pods, 1% churn (decode + index)")
    benchmark(refresh)


@pytest.fixture
def kubelet_10k() -> Iterator[str]:
    """A fake kubelet in its own process serving 10,000 pods; yields the socket path."""
    directory = tempfile.mkdtemp(prefix="kbench-")
    socket = f"{directory}/kubelet.sock"
    script = textwrap.dedent(f"""
        import sys, threading
        sys.path.insert(0, {str(ROOT / "tests" / "kubernetes")!r})
        sys.path.insert(0, {str(ROOT / "bench")!r})
        from fake_kubelet import FakeKubelet
        from test_kube import big_list
        kubelet = FakeKubelet({socket!r})
        kubelet.set_pods(big_list())
        kubelet.start()
        sys.stdin.read()  # until the benchmark closes our stdin
        kubelet.stop()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not Path(socket).exists():
            assert proc.poll() is None, "fake kubelet exited"
            assert time.monotonic() < deadline, "fake kubelet did not start"
            time.sleep(0.05)
        yield socket
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_list_round_trip_10k_pods(benchmark: BenchmarkFixture, kubelet_10k: str) -> None:
    """One List over the unix socket (kubelet in another process) plus decode and index."""
    loop = asyncio.new_event_loop()
    client = PodResourcesClient(kubelet_10k, deadline=10.0, max_receive_bytes=64 << 20,
                                max_reconnect_backoff=1.0)
    parse_cache: dict[str, object] = {}
    pod_cache: PodCache = {}

    def refresh() -> int:
        pods = loop.run_until_complete(client.list_pods())
        return len(build_index(pods, None, (), parse_cache, pod_cache).assignments)  # type: ignore[arg-type]

    try:
        assert refresh() == 10_000
        median = cpu_median(refresh, 20, "List round trip + decode + index, 10k pods, steady")
        benchmark(refresh)
        target("List round trip + decode + index, 10k pods, steady", median * 1000, 50,
               "ms CPU")
    finally:
        loop.run_until_complete(client.close())
        loop.close()


def join_setup(*, virtual: bool) -> tuple[Attributor, object, Callable[[], object]]:
    pods = [
        pod(f"job-{i:03d}", f"team-{i % 7}",
            {"worker": {"nvidia.com/gpu.shared": [f"{UUIDS[i % 8]}::{i // 8}"]}})
        for i in range(110)
    ]
    index = build_index(ListDecoder().decode(list_response(pods).SerializeToString()), None)
    attributor = Attributor(KubernetesConfig(virtual_gpus=virtual))

    def cycle() -> object:
        # A new cycle: fresh samples and an equal (not identical) entity tuple, as the
        # sampler produces them.
        entities = tuple(Entity(e.gpu, e.uuid, e.pci_bus_id, e.model_name) for e in ENTITIES)
        samples = tuple(Sample(e, f, 42.0) for e in entities for f in FIELDS)
        return samples, entities

    return attributor, index, cycle


@pytest.mark.parametrize("virtual", [False, True], ids=["default", "virtual-gpus"])
def test_join_8_gpus_110_pods(benchmark: BenchmarkFixture, virtual: bool) -> None:  # noqa: FBT001
    attributor, index, make_cycle = join_setup(virtual=virtual)
    cycles = [make_cycle() for _ in range(200)]
    turn = iter(range(10**9))

    def join() -> int:
        samples, entities = cycles[next(turn) % len(cycles)]  # type: ignore[misc]
        joined, _natives = attributor.attribute(samples, entities, index)  # type: ignore[arg-type]
        return len(joined)

    # 110 pods on 8 GPUs: 6 GPUs shared by 14 containers, 2 by 13.
    assert join() == (25 * (6 * 14 + 2 * 13) if virtual else 200)

    def hundred() -> None:
        for _ in range(100):
            join()

    median = cpu_median(hundred, 20, f"join per cycle x100, 8 GPUs x 25 fields, 110 pods, "
                                     f"{'virtual GPUs' if virtual else 'default'}") / 100
    print(f"join per cycle: {median * 1000:.4f} ms")
    benchmark(join)
    if not virtual:
        target("join per cycle, 8 GPUs, 110 pods", median * 1000, 0.2, "ms CPU")


def test_rss_kubernetes_mode() -> None:
    """RSS of a process running the refresher against 110 pods and joining 1,000 cycles."""
    script = textwrap.dedent(f"""
        import asyncio, sys, tempfile
        sys.path.insert(0, {str(ROOT / "tests" / "kubernetes")!r})
        from fake_kubelet import FakeKubelet, pod
        from gpu_exporter.kubernetes.config import KubernetesConfig
        from gpu_exporter.kubernetes.refresher import running
        from gpu_exporter.model import Cycle, Entity, Sample

        def rss():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        uuids = [f"GPU-{{g:08x}}-0000-4000-8000-{{g:012x}}" for g in range(8)]
        before = rss()
        sock = tempfile.mkdtemp() + "/kubelet.sock"
        kubelet = FakeKubelet(sock)
        kubelet.set_pods([pod(f"job-{{i}}", "ns", {{"w": {{"nvidia.com/gpu.shared":
                          [f"{{uuids[i % 8]}}::{{i // 8}}"]}}}}) for i in range(110)])
        kubelet.start()

        async def main():
            async with running(KubernetesConfig(socket_path=sock, refresh_interval=0.01,
                                                max_stale=10.0)) as refresher:
                while not refresher.up:
                    await asyncio.sleep(0.01)
                for _ in range(1000):
                    ents = tuple(Entity(g, uuids[g], "0", "H100") for g in range(8))
                    cycle = Cycle(tuple(Sample(e, f, 1.0) for e in ents for f in range(25)),
                                  (), ents, 0.0, 0.0)
                    refresher.apply(cycle)
                    await asyncio.sleep(0)
                return refresher.refreshes
        refreshes = asyncio.run(main())
        kubelet.stop()
        print(f"RSS {{before:.1f}} MiB after imports, {{rss():.1f}} MiB after "
              f"{{refreshes}} refreshes and 1000 joins")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=True)
    print("\n" + out.stdout.strip())
    final = float(out.stdout.split("MiB after imports, ")[1].split()[0])
    target("RSS, refresher + 110 pods + 1,000 joins", final, 64.0, "MiB")


@pytest.mark.parametrize("kubernetes", [False, True], ids=["plain", "kubernetes"])
def test_exporter_rss(kubernetes: bool) -> None:  # noqa: FBT001
    """RSS of the real exporter on h100x8 after 200 scrapes, with and without -k (110 pods)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fake_kubelet import FakeKubelet
    from support.exporter import run_exporter

    from gpu_exporter import simulator

    work = Path(tempfile.mkdtemp(prefix="kube-rss-"))
    sim = simulator.prepare("h100x8", seed=1, state_dir=work / "sim")
    socket = work / "kubelet.sock"
    args = ["-c", "1000"]
    if kubernetes:
        args += ["-k", "--kubernetes-gpu-id-type", "device-name",
                 "--pod-resources-kubelet-socket", str(socket),
                 "--pod-resources-refresh-interval", "1000"]
    with FakeKubelet(socket) as kubelet:
        kubelet.set_pods([
            pod(f"job-{i}", f"ns-{i % 7}",
                {"w": {"nvidia.com/gpu": [f"nvidia{i % 8}/vgpu{i // 8}"]}})
            for i in range(110)
        ])
        kubelet.set_allocatable(
            {"nvidia.com/gpu": [f"nvidia{g}/vgpu{r}" for g in range(8) for r in range(14)]})
        with run_exporter(args, env=sim.env) as exporter:
            exporter.wait_for('pod="job-0"' if kubernetes else "DCGM_FI_DEV_GPU_TEMP{")
            for _ in range(20):
                for _ in range(10):
                    assert exporter.get("/metrics")[0] == 200
                time.sleep(0.5)  # let collection cycles and refreshes run
            status = Path(f"/proc/{exporter.process.pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines()
               if line.startswith("VmRSS:")) / 1024
    print(f"\nexporter RSS on h100x8, {'-k with 110 pods' if kubernetes else 'without -k'}: "
          f"{rss:.1f} MiB")
    if kubernetes:
        target("exporter RSS, -k with 110 pods", rss, 64.0, "MiB")
