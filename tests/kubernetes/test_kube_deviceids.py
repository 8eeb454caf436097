"""The device-ID matrix: every kubelet id form, parsed and joined to the right entity."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kube_fixtures import ENTITIES, MIG_A, MIG_B, UUID0, UUID1, UUID2

from gpu_exporter.kubernetes.deviceids import (
    DeviceRef,
    EntityLookup,
    parse_device_id,
    resolve,
)

LOOKUP = EntityLookup.build(ENTITIES)

# id, id type, expected entity key, expected vgpu
MATRIX = [
    # GPU UUID (NVIDIA plugin, uuid strategy): joins with id type uid only.
    (UUID0, "uid", (0, None), None),
    (UUID0, "device-name", None, None),
    (UUID0.upper().replace("GPU-", "GPU-"), "uid", (0, None), None),
    # nvidiaN (GKE plugin / index strategy): joins with id type device-name only.
    ("nvidia1", "device-name", (1, None), None),
    ("nvidia1", "uid", None, None),
    # Time-slicing / MPS replica GPU-uuid::N.
    (f"{UUID1}::3", "uid", (1, None), "3"),
    (f"{UUID1}::12", "uid", (1, None), "12"),
    (f"{UUID1}::3", "device-name", None, "3"),
    # GKE time-sharing nvidiaN/vgpuM.
    ("nvidia0/vgpu2", "device-name", (0, None), "2"),
    ("nvidia0/vgpu2", "uid", None, "2"),
    # MIG-uuid (R470+), any id type.
    (MIG_A, "uid", (2, 1), None),
    (MIG_B, "device-name", (2, 9), None),
    # MIG-uuid::N (EKS MIG + sharing).
    (f"{MIG_B}::4", "uid", (2, 9), "4"),
    # Old drivers: MIG-GPU-uuid/gi/ci.
    (f"MIG-{UUID2}/1/0", "uid", (2, 1), None),
    (f"MIG-{UUID2}/9/0", "device-name", (2, 9), None),
    # GKE MIG nvidiaN/giG and nvidiaN/giG/vgpuM, any id type.
    ("nvidia2/gi9", "device-name", (2, 9), None),
    ("nvidia2/gi1", "uid", (2, 1), None),
    ("nvidia2/gi9/vgpu1", "device-name", (2, 9), "1"),
    # Well-formed ids naming nothing on this node.
    ("GPU-ffffffff-0000-0000-0000-000000000000", "uid", None, None),
    ("nvidia7", "device-name", None, None),
    ("MIG-ffffffff-0000-0000-0000-000000000000", "uid", None, None),
    (f"MIG-{UUID2}/5/0", "uid", None, None),  # no such instance
    (f"MIG-{UUID0}/1/0", "uid", None, None),  # GPU 0 is not in MIG mode
    ("nvidia2/gi4", "device-name", None, None),
]


@pytest.mark.parametrize(("device_id", "id_type", "key", "vgpu"), MATRIX)
def test_matrix(device_id: str, id_type: str, key: tuple[int, int | None] | None,
                vgpu: str | None) -> None:
    ref = parse_device_id(device_id)
    assert ref is not None, device_id
    assert ref.vgpu == vgpu
    assert resolve(ref, LOOKUP, id_type) == key


@pytest.mark.parametrize(("device_id", "expected"), [
    (f"{UUID0}::7", DeviceRef("gpu-uuid", uuid=UUID0, vgpu="7")),
    ("nvidia3/vgpu0", DeviceRef("gpu-index", index=3, vgpu="0")),
    (f"{MIG_A}::2", DeviceRef("mig-uuid", uuid=MIG_A, vgpu="2")),
    (f"MIG-{UUID2}/3/1", DeviceRef("mig-parent", uuid=UUID2, gi=3)),
    ("nvidia4/gi13/vgpu5", DeviceRef("mig-index", index=4, gi=13, vgpu="5")),
])
def test_normalised_refs(device_id: str, expected: DeviceRef) -> None:
    assert parse_device_id(device_id) == expected


@pytest.mark.parametrize("device_id", [
    "", "GPU-", "gpu-0a1b", "nvidia", "nvidiaX", "nvidia0/vgpu", "nvidia0/gi", "nvidia0/gi1/ci0",
    f"{UUID0}::", f"{UUID0}::x", f"{UUID0}/1", "MIG-", f"MIG-{UUID2}/1", "MIG-a/b",
    "0", "/dev/nvidia0", "example.com/thing-1",
])
def test_unknown_forms(device_id: str) -> None:
    assert parse_device_id(device_id) is None


def test_lookup_finds_parent_of_mig_only_gpu() -> None:
    # With -d f a MIG-enabled GPU may be enumerated as its instances only: old-form ids
    # still find the parent through the instances' UUID label.
    lookup = EntityLookup.build(e for e in ENTITIES if e.gi_id is not None or e.gpu != 2)
    ref = parse_device_id(f"MIG-{UUID2}/9/0")
    assert ref is not None
    assert resolve(ref, lookup, "uid") == (2, 9)
    whole = parse_device_id(UUID2)
    assert whole is not None
    assert resolve(whole, lookup, "uid") is None  # no whole-GPU series to attach to


@given(st.text(max_size=80))
def test_parse_never_raises(text: str) -> None:
    ref = parse_device_id(text)
    if ref is not None:
        assert ref.kind in {"gpu-uuid", "gpu-index", "mig-uuid", "mig-parent", "mig-index"}


@given(st.uuids(), st.integers(min_value=0, max_value=10_000))
def test_replica_suffix_is_stripped(uuid: object, replica: int) -> None:
    ref = parse_device_id(f"GPU-{uuid}::{replica}")
    assert ref == DeviceRef("gpu-uuid", uuid=f"GPU-{uuid}", vgpu=str(replica))
