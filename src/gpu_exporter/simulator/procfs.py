"""A fake procfs tree: ``/proc/<pid>/cgroup``, ``stat`` and ``status`` as hosts write them.

The exporter maps a GPU process (a host PID from NVML) to its workload by reading
``<procfs-root>/<pid>/cgroup``. Tests need those files in every form real hosts produce, so
:func:`cgroup_text` builds the file's text for one *form* (container runtime, cgroup driver,
scheduler) and cgroup version, and :func:`write_tree` writes a directory that stands in for
``/proc``. Both are pure apart from :func:`write_tree`'s writes under the root it is given.

Forms (``FORMS``), with the cgroup path each gives (``version=2`` writes ``0::<path>``,
``version=1`` one ``<hierarchy>:<controllers>:<path>`` line per v1 hierarchy):

- ``kubepods-containerd-systemd``: ``/kubepods.slice/kubepods-<qos>.slice/``
  ``kubepods-<qos>-pod<uid_>.slice/cri-containerd-<id>.scope``
- ``kubepods-containerd-cgroupfs``: ``/kubepods/<qos>/pod<uid>/<id>``
- ``kubepods-containerd-systemd-v1-colon`` (v1 only): ``/system.slice/containerd.service/``
  ``kubepods-<qos>-pod<uid_>.slice:cri-containerd:<id>`` (containerd's systemd cgroups path
  taken literally by an older runc; some hierarchies without the ``containerd.service`` part)
- ``kubepods-crio-systemd``: ``…/kubepods-<qos>-pod<uid_>.slice/crio-<id>.scope``
- ``kubepods-crio-cgroupfs``: ``/kubepods/<qos>/pod<uid>/crio-<id>``
- ``kubepods-docker-systemd``: ``…/kubepods-<qos>-pod<uid_>.slice/docker-<id>.scope``
- ``kubepods-docker-cgroupfs``: ``/kubepods/<qos>/pod<uid>/<id>``
- ``docker-systemd``: ``/system.slice/docker-<id>.scope``
- ``docker-cgroupfs``: ``/docker/<id>``
- ``podman`` (rootful): ``/machine.slice/libpod-<id>.scope[/<subgroup>]``
- ``podman-cgroupfs`` (rootful, podman's cgroupfs manager, as on hosts without systemd):
  ``/libpod_parent/libpod-<id>[/<subgroup>]``
- ``podman-rootless`` (v2 only): ``/user.slice/user-<uid>.slice/user@<uid>.service/<slice>/``
  ``libpod-<id>.scope[/<subgroup>]`` (``slice`` default ``user.slice``)
- ``slurm``: v1 ``/slurm/uid_<uid>/job_<job>/step_<step>/task_<task>`` (freezer at step
  level, hierarchies Slurm does not manage at ``/system.slice/slurmd.service``); v2
  ``/system.slice/slurmstepd.scope/job_<job>/step_<step>/user/task_<task>``
- ``systemd-service``: ``/system.slice/<unit>.service``
- ``user-session``: ``/user.slice/user-<uid>.slice/session-<session>.scope``
- ``root``: ``/`` (a host process in the root cgroup)

``qos`` is ``guaranteed`` (no QoS level in the path, as the kubelet does), ``burstable`` or
``besteffort``; ``<uid_>`` is the pod UID with its dashes turned into underscores (the
kubelet's systemd driver escapes them), ``<uid>`` the UID as is.
"""

from __future__ import annotations

import os
import re
import shutil
import stat as stat_mod
from collections.abc import Mapping
from pathlib import Path

from gpu_exporter.simulator.profiles import SimulatorError

__all__ = ["FORMS", "V1_CONTROLLERS", "cgroup_text", "write_tree"]

FORMS: tuple[str, ...] = (
    "kubepods-containerd-systemd",
    "kubepods-containerd-cgroupfs",
    "kubepods-containerd-systemd-v1-colon",
    "kubepods-crio-systemd",
    "kubepods-crio-cgroupfs",
    "kubepods-docker-systemd",
    "kubepods-docker-cgroupfs",
    "docker-systemd",
    "docker-cgroupfs",
    "podman",
    "podman-cgroupfs",
    "podman-rootless",
    "slurm",
    "systemd-service",
    "user-session",
    "root",
)

# The hierarchy ids and controllers of a typical cgroup v1 host (systemd's named hierarchy is 1).
V1_CONTROLLERS: tuple[tuple[int, str], ...] = (
    (12, "pids"),
    (11, "memory"),
    (10, "blkio"),
    (9, "devices"),
    (8, "freezer"),
    (7, "rdma"),
    (6, "hugetlb"),
    (5, "cpu,cpuacct"),
    (4, "net_cls,net_prio"),
    (3, "cpuset"),
    (2, "perf_event"),
    (1, "name=systemd"),
)

# Slurm's task/cgroup (v1) creates its tree only in the controllers it manages; processes of a
# task sit at task level there, freezer (proctrack/cgroup) holds them at step level, and every
# other hierarchy keeps slurmd's own cgroup.
_SLURM_TASK_LEVEL = frozenset({"memory", "devices", "cpuset", "cpu,cpuacct"})
_SLURM_STEP_LEVEL = frozenset({"freezer"})
_SLURMD_CGROUP = "/system.slice/slurmd.service"

_COLON_UNDER_SERVICE = frozenset({"pids", "cpu,cpuacct", "devices", "memory", "blkio",
                                  "name=systemd"})
_QOS = ("guaranteed", "burstable", "besteffort")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_CONTAINER_ID = re.compile(r"^[0-9a-f]{64}$")
_UNIT = re.compile(r"^[A-Za-z0-9:_.\\@-]+$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_STEP = re.compile(r"^(\d+|batch|extern|interactive)$")

_IDS: dict[str, tuple[str, ...]] = {
    "kubepods-containerd-systemd": ("pod_uid", "container_id", "qos"),
    "kubepods-containerd-cgroupfs": ("pod_uid", "container_id", "qos"),
    "kubepods-containerd-systemd-v1-colon": ("pod_uid", "container_id", "qos"),
    "kubepods-crio-systemd": ("pod_uid", "container_id", "qos"),
    "kubepods-crio-cgroupfs": ("pod_uid", "container_id", "qos"),
    "kubepods-docker-systemd": ("pod_uid", "container_id", "qos"),
    "kubepods-docker-cgroupfs": ("pod_uid", "container_id", "qos"),
    "docker-systemd": ("container_id",),
    "docker-cgroupfs": ("container_id",),
    "podman": ("container_id", "subgroup"),
    "podman-cgroupfs": ("container_id", "subgroup"),
    "podman-rootless": ("container_id", "uid", "slice", "subgroup"),
    "slurm": ("job", "uid", "step", "task"),
    "systemd-service": ("unit",),
    "user-session": ("uid", "session"),
    "root": (),
}
_DEFAULTS: dict[str, object] = {"qos": "burstable", "step": 0, "task": 0, "subgroup": "",
                                 "slice": "user.slice"}
_SYSTEMD_SCOPE = {
    "kubepods-containerd-systemd": "cri-containerd",
    "kubepods-crio-systemd": "crio",
    "kubepods-docker-systemd": "docker",
}


def cgroup_text(form: str, *, version: int = 2, **ids: object) -> str:
    """The text of ``/proc/<pid>/cgroup`` for a process of ``form`` (see the module docstring).

    ``version=2`` gives the unified hierarchy's single ``0::<path>`` line; ``version=1`` the
    legacy multi-line file, one ``<id>:<controllers>:<path>`` line per hierarchy. Ids:
    ``pod_uid`` (UUID), ``container_id`` (64 hex digits), ``qos`` (default ``burstable``),
    ``job``, ``uid``, ``step`` (number or ``batch``/``extern``/``interactive``, default 0),
    ``task`` (default 0), ``unit`` (``name`` or ``name.service``), ``session``. A missing,
    unknown or malformed id raises :class:`SimulatorError` naming it.
    """
    if form not in _IDS:
        raise SimulatorError(f"procfs: unknown cgroup form {form!r}; one of: {', '.join(FORMS)}")
    if version not in (1, 2):
        raise SimulatorError(f"procfs: cgroup version must be 1 or 2, got {version!r}")
    wanted = _IDS[form]
    unknown = sorted(set(ids) - set(wanted))
    if unknown:
        raise SimulatorError(f"procfs: form {form!r} takes no id {unknown[0]!r} "
                             f"(it takes: {', '.join(wanted) or 'none'})")
    values = {key: ids.get(key, _DEFAULTS.get(key)) for key in wanted}
    missing = [key for key, value in values.items() if value is None]
    if missing:
        raise SimulatorError(f"procfs: form {form!r} needs the id {missing[0]!r}")
    v = {key: _check(key, value) for key, value in values.items()}
    if form == "podman-rootless" and version == 1:
        raise SimulatorError("procfs: rootless podman creates no cgroups on cgroup v1 hosts")
    if form == "slurm":
        return _slurm(v, version)
    if form == "kubepods-containerd-systemd-v1-colon":
        return _containerd_colon(v, version)
    path = _path(form, v)
    if version == 2:
        return f"0::{path}\n"
    return "".join(f"{hid}:{ctl}:{path}\n" for hid, ctl in V1_CONTROLLERS)


def _check(key: str, value: object) -> str:
    text = str(value)
    ok = {
        "pod_uid": _UUID.match(text) is not None,
        "container_id": _CONTAINER_ID.match(text) is not None,
        "qos": text in _QOS,
        "step": _STEP.match(text) is not None,
        "unit": _UNIT.match(text) is not None and "/" not in text,
        "subgroup": text == "" or _NAME.match(text) is not None,
        "slice": text.endswith(".slice") and _NAME.match(text) is not None,
    }.get(key, isinstance(value, int) and not isinstance(value, bool) and value >= 0)
    if not ok:
        raise SimulatorError(f"procfs: bad {key} {value!r}")
    return text


def _pod_path(form: str, v: Mapping[str, str]) -> str:
    qos = v["qos"]
    if form in _SYSTEMD_SCOPE:
        uid_ = v["pod_uid"].replace("-", "_")
        if qos == "guaranteed":
            pod = f"/kubepods.slice/kubepods-pod{uid_}.slice"
        else:
            pod = f"/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{uid_}.slice"
        return f"{pod}/{_SYSTEMD_SCOPE[form]}-{v['container_id']}.scope"
    level = "" if qos == "guaranteed" else f"/{qos}"
    leaf = f"crio-{v['container_id']}" if form == "kubepods-crio-cgroupfs" else v["container_id"]
    return f"/kubepods{level}/pod{v['pod_uid']}/{leaf}"


def _path(form: str, v: Mapping[str, str]) -> str:
    if form.startswith("kubepods-"):
        return _pod_path(form, v)
    sub = f"/{v['subgroup']}" if v.get("subgroup") else ""
    cid, uid = v.get("container_id", ""), v.get("uid", "")
    unit = v.get("unit", "")
    paths = {
        "docker-systemd": f"/system.slice/docker-{cid}.scope",
        "docker-cgroupfs": f"/docker/{cid}",
        "podman": f"/machine.slice/libpod-{cid}.scope{sub}",
        "podman-cgroupfs": f"/libpod_parent/libpod-{cid}{sub}",
        "podman-rootless": (f"/user.slice/user-{uid}.slice/user@{uid}.service/"
                            f"{v.get('slice', '')}/libpod-{cid}.scope{sub}"),
        "systemd-service": "/system.slice/"
                           + (unit if unit.endswith(".service") else f"{unit}.service"),
        "user-session": f"/user.slice/user-{uid}.slice/session-{v.get('session', '')}.scope",
    }
    return paths.get(form, "/")


def _containerd_colon(v: Mapping[str, str], version: int) -> str:
    # containerd with SystemdCgroup on a cgroup v1 host whose runc treats the systemd-style
    # cgroupsPath "<slice>:cri-containerd:<id>" as a plain name: the literal string becomes
    # the cgroup, below containerd.service in the hierarchies systemd already placed it in.
    if version != 1:
        raise SimulatorError("procfs: the ':cri-containerd:' form exists on cgroup v1 hosts only")
    qos = v["qos"]
    uid_ = v["pod_uid"].replace("-", "_")
    pod = f"kubepods-pod{uid_}" if qos == "guaranteed" else f"kubepods-{qos}-pod{uid_}"
    name = f"{pod}.slice:cri-containerd:{v['container_id']}"
    lines = []
    for hid, ctl in V1_CONTROLLERS:
        under = ctl in _COLON_UNDER_SERVICE
        lines.append(f"{hid}:{ctl}:{'/system.slice/containerd.service' if under else ''}/{name}\n")
    return "".join(lines)


def _slurm(v: Mapping[str, str], version: int) -> str:
    step = f"step_{v['step']}"
    task = f"task_{v['task']}"
    if version == 2:
        return f"0::/system.slice/slurmstepd.scope/job_{v['job']}/{step}/user/{task}\n"
    job = f"/slurm/uid_{v['uid']}/job_{v['job']}"
    lines = []
    for hid, ctl in V1_CONTROLLERS:
        if ctl in _SLURM_TASK_LEVEL:
            path = f"{job}/{step}/{task}"
        elif ctl in _SLURM_STEP_LEVEL:
            path = f"{job}/{step}"
        else:
            path = _SLURMD_CGROUP
        lines.append(f"{hid}:{ctl}:{path}\n")
    return "".join(lines)


# ---------------------------------------------------------------------------- the tree

_DEFAULT_START = 100_000  # clock ticks after boot of a PID first written without a start time


def write_tree(root: Path, cgroups: Mapping[int, str | None], *,
               start_times: Mapping[int, int] | None = None,
               names: Mapping[int, str] | None = None,
               uids: Mapping[int, int] | None = None,
               prune: bool = False) -> None:
    """Write ``<root>/<pid>/{cgroup,stat,status}`` for every PID of ``cgroups``.

    ``cgroups[pid]`` is the cgroup file's text (from :func:`cgroup_text` or any string), or
    ``None`` for a PID whose cgroup file cannot be read: the file has mode 000, and when this
    runs as root (whom mode bits do not stop) it is a mode-000 directory instead, so reading it
    fails with an :class:`OSError` either way. ``stat`` carries the start time (field 22, clock
    ticks after boot) from ``start_times``; without one a PID keeps the start time already on
    disk when its cgroup text is unchanged and gets a later one when the text changed (PID
    reuse), and a new PID gets ``100000``. ``names`` sets ``comm``/``Name`` (default
    ``python3``), ``uids`` the ``Uid:`` line (default 0). ``prune`` removes the numeric
    directories of PIDs not in ``cgroups`` (processes that exited).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for pid, text in cgroups.items():
        if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid < 2**22:
            raise SimulatorError(f"procfs: bad pid {pid!r}")
        pdir = root / str(pid)
        cg = pdir / "cgroup"
        start = _start_time(pdir, text, (start_times or {}).get(pid))
        pdir.mkdir(exist_ok=True)
        _remove(cg)
        if text is None:
            if os.geteuid() == 0:
                cg.mkdir(mode=0)
                cg.chmod(0)
            else:
                cg.write_text("")
                cg.chmod(0)
        else:
            _atomic_write(cg, text)
        name = (names or {}).get(pid, "python3")
        _atomic_write(pdir / "stat", _stat_line(pid, name, start))
        _atomic_write(pdir / "status", _status_text(pid, name, (uids or {}).get(pid, 0)))
    if prune:
        for entry in root.iterdir():
            if entry.name.isdigit() and int(entry.name) not in cgroups:
                _remove_pid_dir(entry)


def _start_time(pdir: Path, text: str | None, given: int | None) -> int:
    if given is not None:
        return int(given)
    old_text, old_start = _read_old(pdir)
    if old_start is None:
        return _DEFAULT_START
    return old_start if old_text == text else old_start + 1


def _read_old(pdir: Path) -> tuple[str | None, int | None]:
    try:
        fields = (pdir / "stat").read_text().rsplit(")", 1)[1].split()
        start: int | None = int(fields[19])
    except (OSError, IndexError, ValueError):
        return None, None
    cg = pdir / "cgroup"
    try:
        text: str | None = None if _unreadable(cg) else cg.read_text()
    except OSError:
        text = None
    return text, start


def _unreadable(path: Path) -> bool:
    mode = path.lstat().st_mode
    return stat_mod.S_ISDIR(mode) or stat_mod.S_IMODE(mode) == 0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        path.chmod(0o700)
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _remove_pid_dir(pdir: Path) -> None:
    cg = pdir / "cgroup"
    if cg.exists():
        _remove(cg)
    shutil.rmtree(pdir)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _stat_line(pid: int, name: str, start: int) -> str:
    # proc(5): pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    # cmajflt utime stime cutime cstime priority nice num_threads itrealvalue starttime ...
    # (52 fields; starttime is field 22). comm may hold spaces and ')', as the kernel's does.
    rest = ["S", "1", str(pid), str(pid), "0", "-1", "4194560", "1200", "0", "0", "0",
            "350", "40", "0", "0", "20", "0", "4", "0", str(start), "2147483648", "40960"]
    rest += ["0"] * (52 - 2 - len(rest))
    return f"{pid} ({name[:15]}) {' '.join(rest)}\n"


def _status_text(pid: int, name: str, uid: int) -> str:
    return (f"Name:\t{name[:15]}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{pid}\nNgid:\t0\n"
            f"Pid:\t{pid}\nPPid:\t1\nTracerPid:\t0\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
            f"Gid:\t{uid}\t{uid}\t{uid}\t{uid}\nFDSize:\t64\nGroups:\t\nNStgid:\t{pid}\n"
            f"NSpid:\t{pid}\nNSpgid:\t{pid}\nNSsid:\t{pid}\nThreads:\t4\n")
