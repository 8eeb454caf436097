"""The fake procfs: every cgroup form against a real host's text, and the tree on disk.

Each example below is a line (or lines) of a real ``/proc/<pid>/cgroup`` published in public
material; the source is named next to it. The builder, given the ids in that example, must
produce exactly those lines, so a parser tested against the simulator is tested against what
hosts really write.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_exporter.simulator import SimulatorError
from gpu_exporter.simulator.procfs import FORMS, cgroup_text, write_tree

# (form, version, ids, lines that must appear verbatim, source)
EXAMPLES: list[tuple[str, int, dict[str, object], list[str], str]] = [
    (
        "kubepods-containerd-systemd", 1,
        {"pod_uid": "2fc932ce-fdcc-454b-97bd-aadfdeb4c340",
         "container_id": "aaefb9d8feed2d453b543f6d928cede7a4dbefa6a0ae7c9b990dd234c56e93b9"},
        ["1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
         "2fc932ce_fdcc_454b_97bd_aadfdeb4c340.slice/cri-containerd-"
         "aaefb9d8feed2d453b543f6d928cede7a4dbefa6a0ae7c9b990dd234c56e93b9.scope"],
        # kubernetes/kubernetes issue #106514 (path under /sys/fs/cgroup/systemd, containerd
        # with the systemd driver)
        "kubernetes/kubernetes#106514",
    ),
    (
        "kubepods-containerd-systemd", 2,
        {"pod_uid": "1e597579-417e-482f-bf65-5fe170c3aebd", "qos": "besteffort",
         "container_id": "a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1eb1019f388396e"},
        # containerd/nri PR #227 (kind node, cgroup v2): the same pod slice and scope below
        # kind's kubelet.slice prefix, which a host kubelet does not add
        ["0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
         "1e597579_417e_482f_bf65_5fe170c3aebd.slice/cri-containerd-"
         "a09bc17f5aa29b0dbdec9ede5f46cf1396d2405917ab02e6f1eb1019f388396e.scope"],
        "containerd/nri#227",
    ),
    (
        "kubepods-containerd-cgroupfs", 1,
        {"pod_uid": "a36d0c1d-0b26-4451-8d80-9c195e004afa", "qos": "besteffort",
         "container_id": "5dd96d5394ca930a854a390ea46f7515a8bc930123eb3251ba20f2708a38fc61"},
        ["9:memory:/kubepods/besteffort/poda36d0c1d-0b26-4451-8d80-9c195e004afa/"
         "5dd96d5394ca930a854a390ea46f7515a8bc930123eb3251ba20f2708a38fc61",
         "1:name=systemd:/kubepods/besteffort/poda36d0c1d-0b26-4451-8d80-9c195e004afa/"
         "5dd96d5394ca930a854a390ea46f7515a8bc930123eb3251ba20f2708a38fc61"],
        # neuvector/neuvector share/system/cgroup_test.go TestK8sContainerd_v1_2_13
        # (containerd 1.2.13, cgroupfs driver)
        "neuvector/neuvector share/system/cgroup_test.go",
    ),
    (
        "kubepods-containerd-systemd-v1-colon", 1,
        {"pod_uid": "2105e389-7471-476e-a50f-6074cef29bbd", "qos": "besteffort",
         "container_id": "d3d8ccf5cca91931c6285c1d7472c413dd5a7700fddc0aa9f89a9ac7008b003e"},
        ["1:name=systemd:/system.slice/containerd.service/kubepods-besteffort-pod"
         "2105e389_7471_476e_a50f_6074cef29bbd.slice:cri-containerd:"
         "d3d8ccf5cca91931c6285c1d7472c413dd5a7700fddc0aa9f89a9ac7008b003e",
         "7:cpuset:/kubepods-besteffort-pod2105e389_7471_476e_a50f_6074cef29bbd.slice:"
         "cri-containerd:d3d8ccf5cca91931c6285c1d7472c413dd5a7700fddc0aa9f89a9ac7008b003e"],
        # neuvector/neuvector share/system/cgroup_test.go TestK8sContainerd_v1_4_4
        # (containerd 1.4.4); also duckdb/duckdb PR #16608, kubernetes/kubernetes#106514
        "neuvector/neuvector share/system/cgroup_test.go",
    ),
    (
        "kubepods-crio-systemd", 1,
        {"pod_uid": "8ca306fa-3c03-47fa-97dd-19979c345572", "qos": "besteffort",
         "container_id": "d6d725b909f37c3e232aadfbafa950a58bfe7baa579ba8c47a12be88bb921607"},
        ["1:name=systemd:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
         "8ca306fa_3c03_47fa_97dd_19979c345572.slice/crio-"
         "d6d725b909f37c3e232aadfbafa950a58bfe7baa579ba8c47a12be88bb921607.scope"],
        # neuvector/neuvector share/system/cgroup_test.go TestK8sCrio_v1_19 (CRI-O 1.19,
        # OpenShift 4.6); also opencontainers/runc#4620
        "neuvector/neuvector share/system/cgroup_test.go",
    ),
    (
        "kubepods-crio-cgroupfs", 1,
        {"pod_uid": "44e2e33e-776b-4284-a647-4bd959899c91",
         "container_id": "dc4b5f11a034ac50f4bf7a0f2396fce881f58dcb5b2fa5f0f74d5c2ad924c083"},
        ["4:cpu:/kubepods/burstable/pod44e2e33e-776b-4284-a647-4bd959899c91/"
         "crio-dc4b5f11a034ac50f4bf7a0f2396fce881f58dcb5b2fa5f0f74d5c2ad924c083"],
        # cri-o/cri-o PR #5511 (cgroup_manager = "cgroupfs"): the container's directory under
        # /sys/fs/cgroup/cpu, i.e. its path in the cpu hierarchy (hierarchy number ours)
        "cri-o/cri-o#5511",
    ),
    (
        "kubepods-docker-systemd", 1,
        {"pod_uid": "7d4424e6-bb13-42f4-a47a-45a4828bf54d",
         "container_id": "d0b3604b67ac7930dd34ba3a796627e3e4717d12309e90a4afe3f38b6816ac98"},
        ["11:freezer:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
         "7d4424e6_bb13_42f4_a47a_45a4828bf54d.slice/docker-"
         "d0b3604b67ac7930dd34ba3a796627e3e4717d12309e90a4afe3f38b6816ac98.scope"],
        # lxc/lxc#3890 (Kubernetes with Docker, systemd driver)
        "lxc/lxc#3890",
    ),
    (
        "kubepods-docker-cgroupfs", 1,
        {"pod_uid": "9a18ffb8-8513-11e7-b26e-7e29fbe2a5a3", "qos": "besteffort",
         "container_id": "d28e0087cf8f3f0429f755d60b0de415b20fcf76736ded7bab6e30e7b739ee36"},
        ["2:cpu:/kubepods/besteffort/pod9a18ffb8-8513-11e7-b26e-7e29fbe2a5a3/"
         "d28e0087cf8f3f0429f755d60b0de415b20fcf76736ded7bab6e30e7b739ee36"],
        # moby/moby#34584 (Docker under Kubernetes, cgroupfs; there the cpu hierarchy alone)
        "moby/moby#34584",
    ),
    (
        "docker-systemd", 1,
        {"container_id": "9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d"},
        ["8:memory:/system.slice/docker-"
         "9ec39b91f3d70e1beff50a308f77067065ea6be0d91a3378375056cd4422cf3d.scope"],
        # neuvector/neuvector share/system/cgroup_test.go TestDockerIDCentOS; also moby/moby#9902
        "neuvector/neuvector share/system/cgroup_test.go",
    ),
    (
        "docker-cgroupfs", 1,
        {"container_id": "a2ffe0e97ac22657a2a023ad628e9df837c38a03b1ebc904d3f6d644eb1a1a81"},
        ["1:name=systemd:/docker/a2ffe0e97ac22657a2a023ad628e9df837c38a03b1ebc904d3f6d644eb1a1a81",
         "9:memory:/docker/a2ffe0e97ac22657a2a023ad628e9df837c38a03b1ebc904d3f6d644eb1a1a81"],
        # docker/for-linux#1293 (Debian 10 / Ubuntu 20.04 hosts, cgroupfs driver)
        "docker/for-linux#1293",
    ),
    (
        "podman", 1,
        {"container_id": "2521e906f0a0c758c3a7dc4fd68c197e32e96abb4b36807d0b0ede6d014a7c24"},
        ["12:pids:/machine.slice/libpod-"
         "2521e906f0a0c758c3a7dc4fd68c197e32e96abb4b36807d0b0ede6d014a7c24.scope",
         "11:memory:/machine.slice/libpod-"
         "2521e906f0a0c758c3a7dc4fd68c197e32e96abb4b36807d0b0ede6d014a7c24.scope"],
        # containers/podman#10602 (rootful podman, cgroup v1, Ubuntu 20.04)
        "containers/podman#10602",
    ),
    (
        "podman-cgroupfs", 2,
        {"container_id": "d69d687e5479fb4454ceff0b4136e86d645d622782f8c885186733aa68c03112"},
        ["0::/libpod_parent/libpod-"
         "d69d687e5479fb4454ceff0b4136e86d645d622782f8c885186733aa68c03112"],
        # this project's CI host: podman 4.3.1 (Debian 12) without systemd, cgroupfs manager
        # (tests/workloads/test_workload_podman.py reads it from a running container)
        "podman 4.3.1 cgroupfs manager, Debian 12",
    ),
    (
        "podman-cgroupfs", 1,
        {"container_id": "d69d687e5479fb4454ceff0b4136e86d645d622782f8c885186733aa68c03112"},
        ["4:memory:/libpod_parent/libpod-"
         "d69d687e5479fb4454ceff0b4136e86d645d622782f8c885186733aa68c03112",
         "5:devices:/libpod_parent/libpod-"
         "d69d687e5479fb4454ceff0b4136e86d645d622782f8c885186733aa68c03112"],
        # the same host's hybrid hierarchy (v1 controllers beside the 0:: line)
        "podman 4.3.1 cgroupfs manager, Debian 12",
    ),
    (
        "podman-rootless", 2,
        {"container_id": "cf21d19260ace8544fe8b769fc2638bf2c0873dfbfff0b6253f0569b26a1d5eb",
         "uid": 0, "slice": "machine.slice", "subgroup": "container"},
        ["0::/user.slice/user-0.slice/user@0.service/machine.slice/libpod-"
         "cf21d19260ace8544fe8b769fc2638bf2c0873dfbfff0b6253f0569b26a1d5eb.scope/container"],
        # containers/podman#20423 (podman in a systemd user session, Fedora 38, cgroup v2)
        "containers/podman#20423",
    ),
    (
        "slurm", 1,
        {"uid": 2101171, "job": 280678, "step": "interactive", "task": 0},
        ["10:devices:/slurm/uid_2101171/job_280678/step_interactive/task_0"],
        # NordicHPC/sonar src/linux/slurm_test.rs ("some older data")
        "NordicHPC/sonar src/linux/slurm_test.rs",
    ),
    (
        "slurm", 1,
        {"uid": 7319, "job": 748468, "step": 0},
        ["13:freezer:/slurm/uid_7319/job_748468/step_0",
         "4:pids:/system.slice/slurmd.service"],
        # NordicHPC/sonar src/linux/slurm_test.rs (eX3, Slurm 21: freezer at step level,
        # unmanaged hierarchies at slurmd's own cgroup)
        "NordicHPC/sonar src/linux/slurm_test.rs",
    ),
    (
        "slurm", 2,
        {"uid": 1000, "job": 1392969, "step": 0, "task": 0},
        ["0::/system.slice/slurmstepd.scope/job_1392969/step_0/user/task_0"],
        # NordicHPC/sonar src/linux/slurm_test.rs (Fox compute node, 2025); the layout is the
        # one https://slurm.schedmd.com/cgroup_v2.html describes
        "NordicHPC/sonar src/linux/slurm_test.rs",
    ),
    (
        "systemd-service", 2, {"unit": "containerd"},
        ["0::/system.slice/containerd.service"],
        # docker/for-linux#1293 (the 0:: line of a hybrid host)
        "docker/for-linux#1293",
    ),
    (
        "user-session", 1, {"uid": 1000, "session": 3},
        ["1:name=systemd:/user.slice/user-1000.slice/session-3.scope"],
        # systemd's login session layout (systemd.special(7): user-UID.slice,
        # session-N.scope), as in the 1:name=systemd line of any logged-in shell
        "systemd.special(7)",
    ),
    (
        "root", 2, {}, ["0::/"],
        # cgroup_namespaces(7): a process in the root cgroup (or a cgroup namespace's root)
        "cgroup_namespaces(7)",
    ),
]


def _key(line: str) -> tuple[str, str]:
    _hid, ctl, path = line.split(":", 2)
    return ctl, path


def _has(text: str, example: str) -> bool:
    """Whether ``text`` holds ``example``'s path for its controllers.

    Hierarchy numbers and which controllers are co-mounted (``cpu`` alone or ``cpu,cpuacct``)
    differ from host to host; the controller and the path are what a parser reads.
    """
    ctl, path = _key(example)
    want = set(ctl.split(","))
    return any(set(c.split(",")) & want and p == path for c, p in map(_key, text.splitlines()))


@pytest.mark.parametrize(("form", "version", "ids", "lines", "source"), EXAMPLES,
                         ids=[f"{e[0]}-v{e[1]}-{e[4]}" for e in EXAMPLES])
def test_builder_reproduces_a_real_host_line(form: str, version: int, ids: dict[str, object],
                                             lines: list[str], source: str) -> None:
    del source  # named in the test id
    text = cgroup_text(form, version=version, **ids)
    assert text.endswith("\n")
    for line in lines:
        assert _has(text, line), f"{line!r} not in\n{text}"
    if version == 2:
        assert text == lines[0] + "\n"
    else:
        # a v1 file names every hierarchy once, as the kernel writes it
        ctls = [_key(line)[0] for line in text.splitlines()]
        assert len(ctls) == len(set(ctls)) >= 10


def test_every_form_has_a_sourced_example() -> None:
    assert {e[0] for e in EXAMPLES} == set(FORMS)


def test_v2_form_is_the_v1_path_on_one_line() -> None:
    ids = {"pod_uid": "8ca306fa-3c03-47fa-97dd-19979c345572", "qos": "guaranteed",
           "container_id": "ab" * 32}
    v2 = cgroup_text("kubepods-crio-systemd", **ids)
    v1 = cgroup_text("kubepods-crio-systemd", version=1, **ids)
    path = v2.removeprefix("0::").rstrip("\n")
    # guaranteed pods have no QoS level in the path
    assert path == ("/kubepods.slice/kubepods-pod8ca306fa_3c03_47fa_97dd_19979c345572.slice/"
                    f"crio-{'ab' * 32}.scope")
    assert {_key(line)[1] for line in v1.splitlines()} == {path}
    assert cgroup_text("kubepods-crio-cgroupfs", **ids) == (
        f"0::/kubepods/pod8ca306fa-3c03-47fa-97dd-19979c345572/crio-{'ab' * 32}\n")


@pytest.mark.parametrize(("form", "ids", "message"), [
    ("nope", {}, "unknown cgroup form 'nope'"),
    ("docker-systemd", {}, "needs the id 'container_id'"),
    ("docker-systemd", {"container_id": "xyz"}, "bad container_id 'xyz'"),
    ("docker-systemd", {"container_id": "ab" * 32, "pod_uid": "x"}, "takes no id 'pod_uid'"),
    ("kubepods-docker-systemd", {"container_id": "ab" * 32, "pod_uid": "not-a-uuid"},
     "bad pod_uid"),
    ("kubepods-docker-systemd", {"container_id": "ab" * 32, "qos": "gold",
                                 "pod_uid": "8ca306fa-3c03-47fa-97dd-19979c345572"}, "bad qos"),
    ("slurm", {"uid": 1, "job": -4}, "bad job -4"),
    ("systemd-service", {"unit": "../etc"}, "bad unit"),
])
def test_bad_ids_are_named(form: str, ids: dict[str, object], message: str) -> None:
    with pytest.raises(SimulatorError, match=message.replace("(", r"\(")):
        cgroup_text(form, **ids)


def test_version_only_forms() -> None:
    with pytest.raises(SimulatorError, match="cgroup v1 hosts only"):
        cgroup_text("kubepods-containerd-systemd-v1-colon", version=2,
                    pod_uid="8ca306fa-3c03-47fa-97dd-19979c345572", container_id="ab" * 32)
    with pytest.raises(SimulatorError, match="rootless podman"):
        cgroup_text("podman-rootless", version=1, container_id="ab" * 32, uid=1000)
    with pytest.raises(SimulatorError, match="version must be 1 or 2"):
        cgroup_text("root", version=3)


# ------------------------------------------------------------------------------ the tree

def _starttime(stat_text: str) -> int:
    # proc(5): comm may contain spaces and ')'; the fields after the last ')' start at 3
    return int(stat_text.rsplit(")", 1)[1].split()[22 - 3])


def test_write_tree_writes_cgroup_stat_status(tmp_path: Path) -> None:
    text = cgroup_text("docker-systemd", container_id="ab" * 32)
    write_tree(tmp_path, {4242: text, 77: None}, names={4242: "train (gpu) x"},
               uids={4242: 1000})
    assert (tmp_path / "4242" / "cgroup").read_text() == text
    stat_text = (tmp_path / "4242" / "stat").read_text()
    assert stat_text.startswith("4242 (train (gpu) x) S 1 ")
    assert len(stat_text.rsplit(")", 1)[1].split()) == 50  # 52 fields in all
    assert _starttime(stat_text) == 100_000
    status = (tmp_path / "4242" / "status").read_text()
    assert "Name:\ttrain (gpu) x\n" in status
    assert "Pid:\t4242\n" in status
    assert "Uid:\t1000\t1000\t1000\t1000\n" in status
    # the unreadable one: the directory and stat exist, reading cgroup fails with an OSError
    assert (tmp_path / "77" / "stat").is_file()
    with pytest.raises(OSError, match="77"):  # PermissionError, or IsADirectoryError as root
        (tmp_path / "77" / "cgroup").read_text()


def test_start_time_marks_pid_reuse(tmp_path: Path) -> None:
    a = cgroup_text("slurm", uid=1000, job=5)
    b = cgroup_text("slurm", uid=1001, job=6)
    write_tree(tmp_path, {10: a})
    first = _starttime((tmp_path / "10" / "stat").read_text())
    write_tree(tmp_path, {10: a})   # same process, written again
    assert _starttime((tmp_path / "10" / "stat").read_text()) == first
    write_tree(tmp_path, {10: b})   # PID reused by another job
    assert _starttime((tmp_path / "10" / "stat").read_text()) > first
    assert (tmp_path / "10" / "cgroup").read_text() == b
    write_tree(tmp_path, {10: b}, start_times={10: 5})
    assert _starttime((tmp_path / "10" / "stat").read_text()) == 5


def test_unreadable_then_readable_and_prune(tmp_path: Path) -> None:
    write_tree(tmp_path, {10: None, 11: "0::/\n"})
    write_tree(tmp_path, {10: "0::/system.slice/x.service\n"}, prune=True)
    assert (tmp_path / "10" / "cgroup").read_text() == "0::/system.slice/x.service\n"
    assert not (tmp_path / "11").exists()
    (tmp_path / "self").mkdir()           # non-PID entries are never pruned
    write_tree(tmp_path, {}, prune=True)
    assert [p.name for p in tmp_path.iterdir()] == ["self"]


@pytest.mark.parametrize("pid", [0, -1, True, 2**22])
def test_bad_pid(tmp_path: Path, pid: int) -> None:
    with pytest.raises(SimulatorError, match="bad pid"):
        write_tree(tmp_path, {pid: "0::/\n"})
