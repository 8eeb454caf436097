"""Bounded procfs reads and the (pid, starttime) cache, on trees the simulator's builder writes."""

from __future__ import annotations

import os
from pathlib import Path

from gpu_exporter.simulator.procfs import cgroup_text, write_tree
from gpu_exporter.workloads.cgroup import WorkloadRef
from gpu_exporter.workloads.procfs import (
    MAX_PROC_FILE_BYTES,
    PidCache,
    read_proc_file,
    start_time,
)

UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
CID_A = "a1" * 32
CID_B = "b2" * 32
POD_A = WorkloadRef("pod", pod_uid=UID, container_id=CID_A, runtime="containerd")


def _pod(cid: str) -> str:
    return cgroup_text("kubepods-containerd-systemd", pod_uid=UID, container_id=cid)


def test_resolves_a_mixed_tree(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        101: _pod(CID_A),
        102: cgroup_text("docker-cgroupfs", version=1, container_id=CID_B),
        103: cgroup_text("slurm", version=1, job=77, uid=1001),
        104: cgroup_text("systemd-service", unit="triton"),
        105: cgroup_text("user-session", uid=1000, session=2),
        106: None,  # cgroup file that cannot be read
    })
    got = PidCache(str(tmp_path)).resolve([101, 102, 103, 104, 105, 106, 107])
    assert got == {
        101: POD_A,
        102: WorkloadRef("container", container_id=CID_B, runtime="docker"),
        103: WorkloadRef("slurm_job", job_id="77", uid="1001"),
        104: WorkloadRef("systemd_unit", unit="triton.service"),
        105: None,
        106: None,
        107: None,  # no such process directory
    }


def test_cached_while_listed_evicted_when_gone_and_pid_reuse_reads_again(tmp_path: Path) -> None:
    write_tree(tmp_path, {200: _pod(CID_A)})
    cache = PidCache(str(tmp_path))
    assert cache.resolve([200]) == {200: POD_A}
    # While the PID stays listed its files are not read again: remove them to prove it.
    (tmp_path / "200" / "cgroup").unlink()
    (tmp_path / "200" / "stat").unlink()
    assert cache.resolve([200]) == {200: POD_A}
    # The PID leaves NVML's lists: evicted.
    assert cache.resolve([]) == {}
    assert len(cache) == 0
    # The PID is reused by another process (a new start time, another container).
    write_tree(tmp_path, {200: cgroup_text("docker-systemd", container_id=CID_B)})
    assert cache.resolve([200]) == {
        200: WorkloadRef("container", container_id=CID_B, runtime="docker")}


def test_vanished_process_is_read_again_next_cycle(tmp_path: Path) -> None:
    cache = PidCache(str(tmp_path))
    assert cache.resolve([300]) == {300: None}
    assert len(cache) == 0  # not cached: its files did not exist yet
    write_tree(tmp_path, {300: _pod(CID_A)})
    assert cache.resolve([300]) == {300: POD_A}
    assert len(cache) == 1


def test_unreadable_cgroup_is_cached_as_unattributed(tmp_path: Path) -> None:
    write_tree(tmp_path, {400: None})
    cache = PidCache(str(tmp_path))
    assert cache.resolve([400]) == {400: None}
    assert len(cache) == 1


def test_start_time_with_parentheses_in_the_command(tmp_path: Path) -> None:
    write_tree(tmp_path, {500: _pod(CID_A)}, start_times={500: 987654},
               names={500: "a) b (c"})
    text = read_proc_file(str(tmp_path / "500" / "stat"))
    assert text is not None
    assert start_time(text) == 987654
    assert start_time("garbage") is None
    assert start_time("1 (x) S 1") is None


def test_reads_are_bounded_and_never_block(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_text("x" * (MAX_PROC_FILE_BYTES + 1))
    assert read_proc_file(str(big)) is None
    exact = tmp_path / "exact"
    exact.write_text("y" * MAX_PROC_FILE_BYTES)
    assert read_proc_file(str(exact)) == "y" * MAX_PROC_FILE_BYTES
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert read_proc_file(str(fifo)) is None  # opened non-blocking, refused: not regular
    assert read_proc_file(str(tmp_path)) is None  # a directory
    assert read_proc_file(str(tmp_path / "missing")) is None


def test_real_proc_of_this_process() -> None:
    # The host's own /proc: this test process resolves without error (its cgroup may or may
    # not name a workload here), and is cached because its stat is readable.
    cache = PidCache("/proc")
    cache.resolve([os.getpid()])
    assert len(cache) == 1


def test_transient_pids_use_their_last_listed_entry_then_a_read_never_cached(
    tmp_path: Path,
) -> None:
    write_tree(tmp_path, {300: _pod(CID_A), 301: cgroup_text("docker-systemd", container_id=CID_B)})
    cache = PidCache(str(tmp_path))
    assert cache.resolve([300]) == {300: POD_A}
    # 300 exited (left the lists) and its PID was reused at once; its last samples still come
    # in: they are the old process's, answered from the entry it had while listed
    write_tree(tmp_path, {300: cgroup_text("docker-systemd", container_id=CID_B)})
    assert cache.resolve([], transient=[300]) == {300: POD_A}
    assert len(cache) == 0
    # a process only ever seen in samples (too short-lived to be listed): read, not cached
    assert cache.resolve([], transient=[301]) == {
        301: WorkloadRef("container", container_id=CID_B, runtime="docker")}
    assert len(cache) == 0
    # a PID listed in this cycle is answered from the list's entry, not as transient
    assert cache.resolve([301], transient=[301]) == {
        301: WorkloadRef("container", container_id=CID_B, runtime="docker")}
    assert len(cache) == 1


def test_command_name_of_the_mps_server(tmp_path: Path) -> None:
    write_tree(tmp_path, {900: cgroup_text("systemd-service", unit="nvidia-mps")},
               names={900: "nvidia-cuda-mps-server"})
    cache = PidCache(str(tmp_path))
    cache.resolve([900])
    assert cache.name(900) == "nvidia-cuda-mps"  # comm: 15 characters, as Linux keeps it
    assert cache.name(901) is None
