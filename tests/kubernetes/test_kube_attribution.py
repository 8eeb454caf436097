"""The pod join: labels, MIG, both shared-GPU modes, allocation series, caching."""

from __future__ import annotations

import itertools
import logging

import pytest
from kube_fixtures import (
    ENTITIES,
    FB_USED,
    GPU0,
    GPU1,
    GPU2,
    MIG2_1,
    MIG2_9,
    MIG_A,
    MIG_B,
    UUID0,
    UUID1,
    by_entity,
    pod_labels,
    samples,
)

from gpu_exporter.kubernetes.attribution import Attributor, join, resolve_index
from gpu_exporter.kubernetes.config import KubernetesConfig
from gpu_exporter.kubernetes.deviceids import EntityLookup
from gpu_exporter.kubernetes.podindex import EMPTY_INDEX, PodIndex, build_index
from gpu_exporter.kubernetes.podresources import Container, Devices, Pod
from gpu_exporter.model import Cycle, Native

LOOKUP = EntityLookup.build(ENTITIES)


def pod(name: str, namespace: str, container: str, resource: str, *ids: str) -> Pod:
    return Pod(name, namespace, (Container(container, (Devices(resource, ids),)),))


def cycle() -> Cycle:
    return Cycle(samples(), (), ENTITIES, 1000.0, 0.1)


def index(*pods: Pod, allocatable: list[Devices] | None = None) -> PodIndex:
    return build_index(pods, allocatable)


def joined(idx: PodIndex, *, virtual: bool = False, id_type: str = "uid") -> Cycle:
    config = KubernetesConfig(virtual_gpus=virtual, gpu_id_type=id_type)  # type: ignore[arg-type]
    return Attributor(config).apply(cycle(), idx)


def test_owned_gpu_gets_pod_labels_unowned_gets_none() -> None:
    out = joined(index(pod("train-0", "ml", "trainer", "nvidia.com/gpu", UUID0)))
    assert len(out.samples) == len(samples())
    (s,) = by_entity(out.samples, GPU0)
    assert pod_labels(s) == {"pod": "train-0", "namespace": "ml", "container": "trainer"}
    (fb,) = by_entity(out.samples, GPU0, FB_USED)
    assert fb.labels[0] == ("DCGM_FI_DRIVER_VERSION", "570.1")  # existing labels kept
    assert pod_labels(fb) == pod_labels(s)
    for entity in (GPU1, GPU2, MIG2_1, MIG2_9):
        assert all(pod_labels(x) == {} for x in by_entity(out.samples, entity))


def test_no_index_leaves_the_cycle_alone() -> None:
    c = cycle()
    assert Attributor(KubernetesConfig()).apply(c, EMPTY_INDEX) is c


def test_mig_instance_is_attributed_on_its_own_series() -> None:
    out = joined(index(
        pod("small", "team-a", "c", "nvidia.com/mig-1g.5gb", MIG_B),
        pod("old", "team-b", "c", "nvidia.com/mig-3g.20gb", f"MIG-{GPU2.uuid}/1/0"),
    ))
    assert pod_labels(by_entity(out.samples, MIG2_9)[0])["pod"] == "small"
    assert pod_labels(by_entity(out.samples, MIG2_1)[0])["pod"] == "old"
    assert pod_labels(by_entity(out.samples, GPU2)[0]) == {}  # the parent is nobody's


@pytest.mark.parametrize(("device_id", "id_type", "owned"), [
    (UUID1, "uid", True),
    (UUID1, "device-name", False),
    ("nvidia1", "device-name", True),
    ("nvidia1", "uid", False),
    ("nvidia1/vgpu3", "device-name", True),
])
def test_gpu_id_type(device_id: str, id_type: str, owned: bool) -> None:
    out = joined(index(pod("p", "ns", "c", "nvidia.com/gpu", device_id)), id_type=id_type)
    assert bool(pod_labels(by_entity(out.samples, GPU1)[0])) is owned


SHARING = [
    pod("zeta", "ns-b", "c", "nvidia.com/gpu.shared", f"{UUID1}::0"),
    pod("alpha", "ns-b", "w", "nvidia.com/gpu.shared", f"{UUID1}::1", f"{UUID1}::4"),
    pod("alpha", "ns-b", "a", "nvidia.com/gpu.shared", f"{UUID1}::2"),
    pod("omega", "ns-a", "c", "nvidia.com/gpu.shared", f"{UUID1}::3"),
]


def test_shared_gpu_owner_is_stable_whatever_the_list_order() -> None:
    owners = set()
    for order in itertools.permutations(SHARING):
        (s,) = by_entity(joined(index(*order)).samples, GPU1)
        owners.add(tuple(sorted(pod_labels(s).items())))
    # The smallest (namespace, pod, container) wins, in every order; no vgpu without the flag.
    assert owners == {(("container", "c"), ("namespace", "ns-a"), ("pod", "omega"))}


def test_virtual_gpus_one_series_per_sharing_container() -> None:
    out = joined(index(*SHARING), virtual=True)
    got = sorted(
        (lab["namespace"], lab["pod"], lab["container"], lab.get("vgpu"))
        for lab in map(pod_labels, by_entity(out.samples, GPU1))
    )
    assert got == [
        ("ns-a", "omega", "c", "3"),
        ("ns-b", "alpha", "a", "2"),
        ("ns-b", "alpha", "w", "1,4"),
        ("ns-b", "zeta", "c", "0"),
    ]
    # Values are copied, and unshared entities keep exactly one unlabelled sample.
    assert {s.value for s in by_entity(out.samples, GPU1)} == {50.0}
    assert [pod_labels(s) for s in by_entity(out.samples, GPU0)] == [{}]


def test_virtual_gpus_without_replicas_has_no_vgpu_label() -> None:
    out = joined(index(pod("p", "ns", "c", "nvidia.com/gpu", UUID0)), virtual=True)
    assert pod_labels(by_entity(out.samples, GPU0)[0]) == {
        "pod": "p", "namespace": "ns", "container": "c"}


def test_same_device_twice_in_one_container_is_one_holder() -> None:
    p = Pod("p", "ns", (Container("c", (
        Devices("nvidia.com/gpu", (UUID0,)), Devices("example.com/alias", (UUID0,)),
        Devices("nvidia.com/gpu", (UUID0,)))),))
    out = Attributor(KubernetesConfig(virtual_gpus=True)).apply(
        cycle(), build_index([p], None, ["example.com/alias"]))
    assert len(by_entity(out.samples, GPU0)) == 1
    allocated = [n for n in out.natives if n.name == "gpu_exporter_gpu_allocated"]
    assert sorted(dict(n.labels)["resource"] for n in allocated) == [
        "example.com/alias", "nvidia.com/gpu"]


def natives_of(out: Cycle, name: str) -> list[Native]:
    return [n for n in out.natives if n.name == name]


def test_allocation_view() -> None:
    idx = index(
        pod("train-0", "ml", "trainer", "nvidia.com/gpu", UUID0),
        pod("small", "team-a", "c", "nvidia.com/mig-1g.5gb", MIG_B),
        *SHARING,
        allocatable=[
            Devices("nvidia.com/gpu", (UUID0,)),
            Devices("nvidia.com/gpu.shared", tuple(f"{UUID1}::{i}" for i in range(8))),
            Devices("nvidia.com/mig-1g.5gb", (MIG_B,)),
            Devices("nvidia.com/mig-3g.20gb", (MIG_A,)),
            Devices("nvidia.com/gpu", ("GPU-not-here",)),
        ],
    )
    out = joined(idx)
    allocatable = [(n.entity, dict(n.labels)["resource"], n.value)
                   for n in natives_of(out, "gpu_exporter_gpu_allocatable")]
    # One series per (entity, resource): eight replicas of GPU 1 collapse into one.
    assert allocatable == [
        (GPU0, "nvidia.com/gpu", 1.0),
        (GPU1, "nvidia.com/gpu.shared", 1.0),
        (MIG2_1, "nvidia.com/mig-3g.20gb", 1.0),
        (MIG2_9, "nvidia.com/mig-1g.5gb", 1.0),
    ]
    allocated = [(n.entity, dict(n.labels)) for n in natives_of(out, "gpu_exporter_gpu_allocated")]
    assert allocated[0] == (GPU0, {"resource": "nvidia.com/gpu", "namespace": "ml",
                                   "pod": "train-0", "container": "trainer"})
    # Every sharing container is listed, whatever the attribution mode.
    assert sorted(lab["pod"] for e, lab in allocated if e == GPU1) == [
        "alpha", "alpha", "omega", "zeta"]
    assert [lab["pod"] for e, lab in allocated if e == MIG2_9] == ["small"]
    assert [lab["pod"] for e, lab in allocated if e == MIG2_1] == []
    for n in natives_of(out, "gpu_exporter_gpu_allocated"):
        assert [k for k, _ in n.labels] == ["resource", "namespace", "pod", "container"]


def test_join_is_pure_and_cached_per_index(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gpu_exporter.kubernetes")
    attributor = Attributor(KubernetesConfig())
    idx = index(pod("p", "ns", "c", "nvidia.com/gpu", UUID0, "GPU-gone", f"MIG-{UUID0}/1/0"))
    first = attributor.resolution(ENTITIES, idx)
    for _ in range(5):
        assert attributor.resolution(ENTITIES, idx) is first
        attributor.apply(cycle(), idx)
    assert first.unresolved == ("GPU-gone", f"MIG-{UUID0}/1/0")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "GPU-gone" in warnings[0].getMessage()
    # New entities (a GPU appeared) re-resolve: the negative cache does not outlive them.
    extra = (*ENTITIES, GPU0.__class__(3, "GPU-gone", "00000000:4C:00.0", "NVIDIA H100"))
    again = attributor.resolution(extra, idx)
    assert again is not first
    assert again.unresolved == (f"MIG-{UUID0}/1/0",)


def test_mig_uuid_lookups_are_cached_including_failures() -> None:
    cache: dict[str, tuple[int, int | None] | None] = {}
    idx = index(pod("p", "ns", "c", "nvidia.com/mig-1g.5gb", MIG_A, "MIG-unknown"))
    resolve_index(idx, LOOKUP, "uid", cache)
    assert cache == {MIG_A: (2, 1), "MIG-unknown": None}
    # Cached answers are used as they are: no new lookup for known ids.
    cache[MIG_A] = (2, 9)
    res = resolve_index(idx, LOOKUP, "uid", cache)
    assert set(res.holders) == {(2, 9)}


def test_join_without_holders_returns_samples_unchanged() -> None:
    s = samples()
    assert join(s, {}, virtual_gpus=False) == s
