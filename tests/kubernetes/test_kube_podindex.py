"""Building the pod index from kubelet data: resource filtering and parsing."""

from __future__ import annotations

import pytest
from kube_fixtures import MIG_A, UUID0, UUID1

from gpu_exporter.kubernetes.deviceids import DeviceRef
from gpu_exporter.kubernetes.podindex import (
    EMPTY_INDEX,
    Owner,
    build_index,
    is_gpu_resource,
)
from gpu_exporter.kubernetes.podresources import Container, Devices, Pod


def one_pod(resource: str, *ids: str, name: str = "p", container: str = "c") -> Pod:
    return Pod(name, "ns", (Container(container, (Devices(resource, ids),)),))


@pytest.mark.parametrize(("name", "extra", "wanted"), [
    ("nvidia.com/gpu", (), True),
    ("nvidia.com/gpu.shared", (), True),
    ("nvidia.com/mig-1g.10gb", (), True),
    ("nvidia.com/mig-3g.40gb.shared", (), True),
    ("nvidia.com/gpu-custom", (), False),
    ("example.com/gpu", (), False),
    ("example.com/gpu", ("example.com/gpu",), True),
    ("cpu", (), False),
    ("nvidia.com/mig", (), False),
])
def test_resource_names(name: str, extra: tuple[str, ...], wanted: bool) -> None:
    assert is_gpu_resource(name, frozenset(extra)) is wanted


def test_only_gpu_resources_are_indexed() -> None:
    pods = [
        one_pod("nvidia.com/gpu", UUID0, name="a"),
        one_pod("example.com/fpga", "fpga0", name="b"),
        one_pod("nvidia.com/mig-1g.10gb", MIG_A, name="c"),
        one_pod("example.com/vgpu", f"{UUID1}::1", name="d"),
    ]
    index = build_index(pods, None)
    assert [a.owner.pod for a in index.assignments] == ["a", "c"]
    index = build_index(pods, None, ["example.com/vgpu"])
    assert [a.owner.pod for a in index.assignments] == ["a", "c", "d"]
    assert index.assignments[2].ref == DeviceRef("gpu-uuid", uuid=UUID1, vgpu="1")
    assert index.assignments[0].owner == Owner("ns", "a", "c")
    assert index.allocatable is None
    assert index.unparsed == ()


def test_unparsed_ids_are_reported_not_indexed() -> None:
    index = build_index([one_pod("nvidia.com/gpu", "weird-id", UUID0, "")], None)
    assert [a.device_id for a in index.assignments] == [UUID0]
    assert index.unparsed == ("", "weird-id")


def test_allocatable() -> None:
    allocatable = [
        Devices("nvidia.com/gpu", (UUID0, UUID1)),
        Devices("example.com/fpga", ("fpga0",)),
        Devices("nvidia.com/gpu.shared", (f"{UUID1}::0", f"{UUID1}::1")),
    ]
    index = build_index([], allocatable)
    assert index.allocatable is not None
    assert [(a.resource, a.device_id) for a in index.allocatable] == [
        ("nvidia.com/gpu", UUID0), ("nvidia.com/gpu", UUID1),
        ("nvidia.com/gpu.shared", f"{UUID1}::0"), ("nvidia.com/gpu.shared", f"{UUID1}::1"),
    ]


def test_parse_cache_is_used() -> None:
    cache: dict[str, DeviceRef | None] = {}
    build_index([one_pod("nvidia.com/gpu", UUID0, "bad")], None, parse_cache=cache)
    assert cache[UUID0] == DeviceRef("gpu-uuid", uuid=UUID0)
    assert cache["bad"] is None  # failures are cached too
    # A poisoned entry proves the cache is consulted rather than the id parsed again.
    cache[UUID0] = DeviceRef("gpu-index", index=5)
    index = build_index([one_pod("nvidia.com/gpu", UUID0)], None, parse_cache=cache)
    assert index.assignments[0].ref == DeviceRef("gpu-index", index=5)


def test_equal_answers_give_equal_indexes() -> None:
    pods = [one_pod("nvidia.com/gpu", UUID0)]
    assert build_index(pods, None) == build_index(list(pods), None)
    assert build_index([], None) == EMPTY_INDEX
