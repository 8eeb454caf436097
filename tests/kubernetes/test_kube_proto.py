"""The pod-resources proto: committed stubs are current and the wire layout is the kubelet's."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpu_exporter.kubernetes._pb import api_pb2
from gpu_exporter.kubernetes.podresources import method_path

ROOT = Path(__file__).resolve().parents[2]
PB_DIR = ROOT / "src" / "gpu_exporter" / "kubernetes" / "_pb"
GENERATED = ("api_pb2.py",)


def test_committed_stubs_are_current(tmp_path: Path) -> None:
    script = ROOT / "tools" / "gen_proto.sh"
    if shutil.which("bash") is None:
        pytest.fail("bash is needed to run tools/gen_proto.sh")
    subprocess.run(
        ["bash", str(script), str(tmp_path)],
        check=True, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    fresh = tmp_path / "gpu_exporter" / "kubernetes" / "_pb"
    stale = [name for name in GENERATED if not filecmp.cmp(fresh / name, PB_DIR / name,
                                                           shallow=False)]
    assert not stale, f"{stale} differ from proto/podresources/v1/api.proto: run tools/gen_proto.sh"


def test_method_paths_are_the_kubelets() -> None:
    assert method_path("List") == "/v1.PodResourcesLister/List"
    assert method_path("GetAllocatableResources") == (
        "/v1.PodResourcesLister/GetAllocatableResources")
    assert method_path("Get") == "/v1.PodResourcesLister/Get"


# message -> {field name: (number, repeated)}; the kubelet's v1 numbering.
WIRE = {
    "ListPodResourcesResponse": {"pod_resources": (1, True)},
    "PodResources": {"name": (1, False), "namespace": (2, False), "containers": (3, True)},
    "ContainerResources": {"name": (1, False), "devices": (2, True), "cpu_ids": (3, True),
                           "memory": (4, True), "dynamic_resources": (5, True)},
    "ContainerDevices": {"resource_name": (1, False), "device_ids": (2, True),
                         "topology": (3, False)},
    "TopologyInfo": {"nodes": (1, True)},
    "NUMANode": {"ID": (1, False)},
    "ContainerMemory": {"memory_type": (1, False), "size": (2, False), "topology": (3, False)},
    "AllocatableResourcesResponse": {"devices": (1, True), "cpu_ids": (2, True),
                                     "memory": (3, True)},
    "GetPodResourcesRequest": {"pod_name": (1, False), "pod_namespace": (2, False)},
    "GetPodResourcesResponse": {"pod_resources": (1, False)},
    "DynamicResource": {"claim_name": (2, False), "claim_namespace": (3, False),
                        "claim_resources": (4, True)},
    "ClaimResource": {"cdi_devices": (1, True), "driver_name": (2, False),
                      "pool_name": (3, False), "device_name": (4, False)},
    "CDIDevice": {"name": (1, False)},
    "ListPodResourcesRequest": {},
    "AllocatableResourcesRequest": {},
}


def test_field_numbers() -> None:
    assert api_pb2.DESCRIPTOR.package == "v1"
    messages = api_pb2.DESCRIPTOR.message_types_by_name
    assert set(messages) == set(WIRE)
    for message, fields in WIRE.items():
        got = {
            f.name: (f.number, f.is_repeated)
            for f in messages[message].fields
        }
        assert got == fields, message


def test_kubelet_bytes_round_trip() -> None:
    # Bytes as a kubelet encodes them (hand-built: tag = number << 3 | wire type).
    ids = b"\x12\x05GPU-a"  # device_ids = 2
    devices = b"\x0a\x0envidia.com/gpu" + ids  # resource_name = 1
    container = b"\x0a\x01c" + b"\x12" + bytes([len(devices)]) + devices + b"\x18\x07"
    pod = b"\x0a\x01p\x12\x02ns\x1a" + bytes([len(container)]) + container
    data = b"\x0a" + bytes([len(pod)]) + pod
    response = api_pb2.ListPodResourcesResponse.FromString(data)
    (got,) = response.pod_resources
    assert (got.name, got.namespace) == ("p", "ns")
    (c,) = got.containers
    assert list(c.cpu_ids) == [7]
    assert [(d.resource_name, list(d.device_ids)) for d in c.devices] == [
        ("nvidia.com/gpu", ["GPU-a"])]
