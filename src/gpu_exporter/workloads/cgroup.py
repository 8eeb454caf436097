"""``/proc/<pid>/cgroup`` text -> the workload a GPU process belongs to (pure).

A process's cgroup path names its workload in the forms container runtimes, cgroup drivers
and schedulers write (cgroup v2's single ``0::<path>`` line or v1's one line per hierarchy):

- Kubernetes pods: ``kubepods`` paths with the pod UID (``pod<uid>`` under the cgroupfs
  driver, ``-pod<uid_with_underscores>.slice`` under the systemd driver, QoS level or none),
  and the container as ``cri-containerd-<id>.scope``, ``crio-<id>.scope``,
  ``docker-<id>.scope``, ``crio-<id>``, ``<id>`` or containerd's literal
  ``<slice>:cri-containerd:<id>`` -> kind ``pod`` with ``pod_uid``, ``container_id``,
  ``runtime``;
- Docker (``docker-<id>.scope``, ``/docker/<id>``) and Podman (``libpod-<id>.scope``, rootful
  or rootless, under systemd; ``/libpod_parent/libpod-<id>`` with podman's cgroupfs manager)
  containers -> kind ``container``;
- Slurm (v1 ``/slurm/uid_<uid>/job_<job>/...``, v2 ``.../slurmstepd.scope/job_<job>/...``)
  -> kind ``slurm_job`` with ``job_id`` and ``uid`` (v1 only; v2 paths carry no user);
- a systemd service (``/system.slice/<unit>.service``) -> kind ``systemd_unit``;
- anything else (user sessions, the root cgroup) -> ``None``: the process stays unattributed,
  it is never guessed.

v1 files are read hierarchy by hierarchy, most specific first (a Slurm task's ``memory``
hierarchy holds the job while others keep slurmd's own cgroup); the first that names a
workload wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["WorkloadKind", "WorkloadRef", "parse_cgroup", "parse_cgroup_path"]

WorkloadKind = Literal["pod", "container", "slurm_job", "systemd_unit", "process"]


@dataclass(frozen=True, slots=True)
class WorkloadRef:
    """What a cgroup path says about the workload of a process.

    Attributes:
        kind: ``pod``, ``container``, ``slurm_job``, ``systemd_unit`` or ``process``.
        pod_uid: the Kubernetes pod UID with dashes (kind ``pod``), else ``""``.
        container_id: 64 hex digits (kinds ``pod`` and ``container``) or ``""``.
        runtime: ``containerd``, ``cri-o``, ``docker`` or ``podman``, or ``""`` where the path
            does not say (a cgroupfs-driver pod's bare ``<id>``).
        job_id: the Slurm job id, else ``""``.
        uid: the Slurm job's user id from a v1 path, else ``""``.
        unit: the systemd unit (``name.service``), else ``""``.
    """

    kind: WorkloadKind
    pod_uid: str = ""
    container_id: str = ""
    runtime: str = ""
    job_id: str = ""
    uid: str = ""
    unit: str = ""


_HEX64 = r"[0-9a-f]{64}"
_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
_POD = re.compile(rf"(?:^|/)kubepods(?:[-./].*?)?[-/]pod({_UID})(?:\.slice)?(?:/|:|$)")
_POD_CONTAINER = (
    (re.compile(rf"cri-containerd[-:]({_HEX64})(?:\.scope)?$"), "containerd"),
    (re.compile(rf"/crio-({_HEX64})(?:\.scope)?$"), "cri-o"),
    (re.compile(rf"/docker-({_HEX64})\.scope$"), "docker"),
    (re.compile(rf"/({_HEX64})$"), ""),
)
_CONTAINER = (
    (re.compile(rf"/docker-({_HEX64})\.scope(?:/|$)"), "docker"),
    (re.compile(rf"^/docker/({_HEX64})(?:/|$)"), "docker"),
    (re.compile(rf"/libpod-({_HEX64})(?:\.scope)?(?:/|$)"), "podman"),
)
_SLURM_V1 = re.compile(r"^/slurm/uid_(\d+)/job_(\d+)(?:/|$)")
_SLURM_V2 = re.compile(r"/slurmstepd\.scope/job_(\d+)(?:/|$)")
_UNIT = re.compile(r"^/system\.slice/([A-Za-z0-9:_.\\@-]+\.service)$")
# v1 hierarchies in the order they are asked: those a job's or container's processes are placed
# in by every manager first, systemd's own named hierarchy last.
_V1_ORDER = ("memory", "devices", "cpu,cpuacct", "cpuacct,cpu", "cpuset", "pids", "freezer",
             "name=systemd")


def parse_cgroup_path(path: str) -> WorkloadRef | None:
    """The workload one cgroup path names, or ``None`` when it names none (see the module)."""
    pod = _POD.search(path)
    if pod is not None:
        for pattern, runtime in _POD_CONTAINER:
            found = pattern.search(path)
            if found is not None:
                return WorkloadRef("pod", pod_uid=pod.group(1).replace("_", "-"),
                                   container_id=found.group(1), runtime=runtime)
        return None  # the pod's own (sandbox-level) cgroup: no container, never guessed
    for pattern, runtime in _CONTAINER:
        found = pattern.search(path)
        if found is not None:
            return WorkloadRef("container", container_id=found.group(1), runtime=runtime)
    return _host_ref(path)


def _host_ref(path: str) -> WorkloadRef | None:
    # Workloads outside containers: a Slurm job (v1 path with its user, v2 without) or a
    # systemd service.
    slurm = _SLURM_V1.search(path)
    if slurm is not None:
        return WorkloadRef("slurm_job", job_id=slurm.group(2), uid=slurm.group(1))
    slurm = _SLURM_V2.search(path)
    if slurm is not None:
        return WorkloadRef("slurm_job", job_id=slurm.group(1))
    unit = _UNIT.match(path)
    return None if unit is None else WorkloadRef("systemd_unit", unit=unit.group(1))


def parse_cgroup(text: str) -> WorkloadRef | None:
    """The workload a ``/proc/<pid>/cgroup`` file names, or ``None`` (unattributed).

    Lines that are not ``<id>:<controllers>:<path>`` are ignored; the v2 line (``0::``) is
    asked first, then the v1 hierarchies in a fixed order, then any other hierarchy.
    """
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[0].isdigit() or not parts[2].startswith("/"):
            continue
        key = "" if parts[0] == "0" and parts[1] == "" else parts[1]
        paths.setdefault(key, parts[2])
    order = ["", *_V1_ORDER, *sorted(k for k in paths if k and k not in _V1_ORDER)]
    for key in order:
        path = paths.get(key)
        if path is None:
            continue
        ref = parse_cgroup_path(path)
        if ref is not None:
            return ref
    return None
