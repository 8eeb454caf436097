"""The cgroup parser against every form the simulator's procfs builder writes, both versions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpu_exporter.simulator.procfs import FORMS, cgroup_text
from gpu_exporter.workloads.cgroup import WorkloadRef, parse_cgroup, parse_cgroup_path

UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
CID = "ab" * 32

POD_FORMS = {
    "kubepods-containerd-systemd": "containerd",
    "kubepods-containerd-cgroupfs": "",
    "kubepods-containerd-systemd-v1-colon": "containerd",
    "kubepods-crio-systemd": "cri-o",
    "kubepods-crio-cgroupfs": "cri-o",
    "kubepods-docker-systemd": "docker",
    "kubepods-docker-cgroupfs": "",
}
V2_ONLY = {"podman-rootless"}
V1_ONLY = {"kubepods-containerd-systemd-v1-colon"}


def _versions(form: str) -> list[int]:
    return [2] if form in V2_ONLY else [1] if form in V1_ONLY else [1, 2]


@pytest.mark.parametrize("qos", ["guaranteed", "burstable", "besteffort"])
@pytest.mark.parametrize("form", sorted(POD_FORMS))
def test_pod_forms(form: str, qos: str) -> None:
    for version in _versions(form):
        text = cgroup_text(form, version=version, pod_uid=UID, container_id=CID, qos=qos)
        assert parse_cgroup(text) == WorkloadRef(
            "pod", pod_uid=UID, container_id=CID, runtime=POD_FORMS[form]), (form, version)


@pytest.mark.parametrize(("form", "runtime", "ids"), [
    ("docker-systemd", "docker", {}),
    ("docker-cgroupfs", "docker", {}),
    ("podman", "podman", {}),
    ("podman", "podman", {"subgroup": "container"}),
    ("podman-cgroupfs", "podman", {}),
    ("podman-cgroupfs", "podman", {"subgroup": "container"}),
    ("podman-rootless", "podman", {"uid": 1000}),
    ("podman-rootless", "podman", {"uid": 1000, "subgroup": "container"}),
])
def test_container_forms(form: str, runtime: str, ids: dict[str, object]) -> None:
    for version in _versions(form):
        text = cgroup_text(form, version=version, container_id=CID, **ids)
        assert parse_cgroup(text) == WorkloadRef("container", container_id=CID, runtime=runtime)


@pytest.mark.parametrize("step", [0, 3, "batch", "extern", "interactive"])
def test_slurm(step: object) -> None:
    v1 = cgroup_text("slurm", version=1, job=4242, uid=1001, step=step, task=2)
    assert parse_cgroup(v1) == WorkloadRef("slurm_job", job_id="4242", uid="1001")
    v2 = cgroup_text("slurm", version=2, job=4242, uid=1001, step=step, task=2)
    assert parse_cgroup(v2) == WorkloadRef("slurm_job", job_id="4242")


@pytest.mark.parametrize("unit", ["inference", "inference.service", "vllm@0.service"])
def test_systemd_unit(unit: str) -> None:
    want = unit if unit.endswith(".service") else f"{unit}.service"
    for version in (1, 2):
        text = cgroup_text("systemd-service", version=version, unit=unit)
        assert parse_cgroup(text) == WorkloadRef("systemd_unit", unit=want)


def test_unattributed_forms_are_never_guessed() -> None:
    for version in (1, 2):
        assert parse_cgroup(cgroup_text("user-session", version=version, uid=1000,
                                        session=3)) is None
        assert parse_cgroup(cgroup_text("root", version=version)) is None
    # A pod's own (sandbox-level) cgroup names no container.
    assert parse_cgroup_path(f"/kubepods/burstable/pod{UID}") is None
    # Empty, garbage and truncated files.
    for text in ("", "\n", "garbage", "0::", "0::relative/path", "12:memory"):
        assert parse_cgroup(text) is None, text
    # A service that is not a .service (a scope or slice) is not a unit workload.
    assert parse_cgroup("0::/system.slice/foo.scope\n") is None
    assert parse_cgroup("0::/init.scope\n") is None


def test_every_builder_form_is_covered() -> None:
    covered = set(POD_FORMS) | {"docker-systemd", "docker-cgroupfs", "podman", "podman-cgroupfs",
                                "podman-rootless", "slurm", "systemd-service",
                                "user-session", "root"}
    assert covered == set(FORMS)


def test_v1_specific_hierarchy_wins_over_systemd_named() -> None:
    # A Slurm task on v1: only memory/devices/cpuset/cpu hold the job; name=systemd holds
    # slurmd's service. The job must win, not slurmd.service.
    text = ("1:name=systemd:/system.slice/slurmd.service\n"
            "11:memory:/slurm/uid_7/job_9/step_0/task_0\n")
    assert parse_cgroup(text) == WorkloadRef("slurm_job", job_id="9", uid="7")


def test_real_host_lines() -> None:
    # As read on a containerd + systemd-driver cgroup v2 node (k8s 1.29) and a Docker 24 host.
    node = ("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
            f"{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope\n")
    assert parse_cgroup(node) == WorkloadRef("pod", pod_uid=UID, container_id=CID,
                                             runtime="containerd")
    assert parse_cgroup(f"0::/system.slice/docker-{CID}.scope\n") == WorkloadRef(
        "container", container_id=CID, runtime="docker")


@given(st.text(max_size=300))
def test_parser_never_raises(text: str) -> None:
    ref = parse_cgroup(text)
    assert ref is None or isinstance(ref, WorkloadRef)


@given(st.sampled_from(sorted(POD_FORMS)), st.uuids(), st.binary(min_size=32, max_size=32),
       st.sampled_from(["guaranteed", "burstable", "besteffort"]))
def test_pod_ids_round_trip(form: str, uid: object, raw: bytes, qos: str) -> None:
    cid = raw.hex()
    for version in _versions(form):
        ref = parse_cgroup(cgroup_text(form, version=version, pod_uid=str(uid),
                                       container_id=cid, qos=qos))
        assert ref is not None
        assert (ref.pod_uid, ref.container_id) == (str(uid), cid)
