"""The pure pod join of workload rows: API names, the kubelet fallback, pods' own values."""

from __future__ import annotations

from gpu_exporter.kubernetes.apiserver import reduce_pod
from gpu_exporter.kubernetes.attribution import Holder, join
from gpu_exporter.kubernetes.podindex import Owner
from gpu_exporter.model import Entity, Native, Sample
from gpu_exporter.workloads.cgroup import WorkloadRef
from gpu_exporter.workloads.podjoin import PodDirectory, PodEntry, own_values, pod_labels

UID = "0a0a0a0a-1111-4222-8333-444455556666"
CID = "a1" * 32
REF = WorkloadRef("pod", pod_uid=UID, container_id=CID, runtime="containerd")
GPU0 = Entity(0, "GPU-0", "00000000:18:00.0", "H100")


def test_the_api_names_pod_and_container() -> None:
    directory = PodDirectory({UID: PodEntry("ml", "train-0", {CID: "trainer"})})
    assert pod_labels(directory, REF, (0, None), sole=False) == (
        ("container", "trainer"), ("namespace", "ml"), ("pod", "train-0"))
    # a container the API has no runtime id for yet: pod and namespace only
    other = WorkloadRef("pod", pod_uid=UID, container_id="b2" * 32)
    assert pod_labels(directory, other, (0, None), sole=True) == (
        ("namespace", "ml"), ("pod", "train-0"))


def test_the_kubelet_names_only_a_sole_container_on_a_sole_holder() -> None:
    directory = PodDirectory(holders={(1, None): ("ml", "solo", "main")})
    assert pod_labels(directory, REF, (1, None), sole=True) == (
        ("container", "main"), ("namespace", "ml"), ("pod", "solo"))
    assert pod_labels(directory, REF, (1, None), sole=False) == ()  # two pods' processes
    assert pod_labels(directory, REF, (2, None), sole=True) == ()  # shared or not allocated
    # with the API watched, a UID it does not know is not guessed from the kubelet
    api = PodDirectory({"x": PodEntry("ml", "x")}, {(1, None): ("ml", "solo", "main")})
    assert pod_labels(api, REF, (1, None), sole=True) == ()


def test_container_runtime_ids_from_the_pod_status() -> None:
    obj = {"metadata": {"name": "p", "namespace": "ml", "uid": UID},
           "status": {"phase": "Running",
                      "containerStatuses": [{"name": "main", "containerID": f"cri-o://{CID}"},
                                            {"name": "waiting"}],
                      "initContainerStatuses": [{"name": "init",
                                                 "containerID": "containerd://" + "c3" * 32}]}}
    _, meta = reduce_pod(obj)
    assert meta.containers == ((CID, "main"), ("c3" * 32, "init"))


def test_own_values_per_pod_from_named_workload_rows() -> None:
    named = (("workload_kind", "pod"), ("workload", CID[:12]), ("container", "a"),
             ("namespace", "ml"), ("pod", "p"))
    second = (("workload_kind", "pod"), ("workload", "b2" * 6), ("container", "b"),
              ("namespace", "ml"), ("pod", "p"))
    natives = [
        Native("gpu_exporter_workload_sm_utilization_ratio", 0.25, named, GPU0),
        Native("gpu_exporter_workload_sm_utilization_ratio", 0.10, second, GPU0),
        Native("gpu_exporter_workload_sm_utilization_ratio", 0.05,
               (("workload_kind", "unattributed"), ("workload", "unattributed")), GPU0),
        Native("gpu_exporter_workload_memory_used_bytes", 1.5 * (1 << 20), named, GPU0),
        Native("gpu_exporter_gpu_up", 1.0, (), GPU0),
    ]
    assert own_values(natives) == {((0, None), 203): {("ml", "p"): 35.0},
                                   ((0, None), 252): {("ml", "p"): 1.0}}


def test_join_with_own_values_keeps_the_device_series_and_zero_for_idle_pods() -> None:
    def holder(pod: str, vgpu: str) -> Holder:
        labels = (("container", "main"), ("namespace", "ml"), ("pod", pod))
        return Holder(Owner("ml", pod, "main"), ("nvidia.com/gpu",), (vgpu,), labels,
                      (*labels, ("vgpu", vgpu)))

    holders = {(0, None): (holder("a", "0"), holder("b", "1"))}
    samples = [Sample(GPU0, 203, 50.0), Sample(GPU0, 150, 40.0)]
    out = join(samples, holders, virtual_gpus=True,
               own={((0, None), 203): {("ml", "a"): 50.0}}, uids={("ml", "a"): UID})
    util = [(dict(s.labels).get("pod"), dict(s.labels).get("pod_uid"), s.value)
            for s in out if s.field_id == 203]
    assert util == [(None, None, 50.0), ("a", UID, 50.0), ("b", None, 0.0)]
    temps = [(dict(s.labels)["pod"], s.value) for s in out if s.field_id == 150]
    assert temps == [("a", 40.0), ("b", 40.0)]
