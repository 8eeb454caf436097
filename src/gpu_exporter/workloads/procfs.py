"""Bounded reads of ``<procfs-root>/<pid>/{stat,cgroup}`` and the per-PID workload cache.

GPU processes come from NVML as host PIDs; their workload is named by their cgroup file
(:mod:`.cgroup`). :class:`PidCache` resolves each PID once: when a PID first appears in NVML's
lists it reads the process's start time (``stat`` field 22) and its cgroup file, and keeps the
result keyed by ``(pid, starttime)``; while the PID stays in NVML's lists the cached result is
used without any read (a process whose ``stat`` could not be read, gone or racing a PID
reuse, is read again next cycle), and a PID that left the lists is evicted, so a reused PID (a new
process, a new start time) is read afresh. A process whose files cannot be read (gone,
permission, a hidepid mount, not a regular file, larger than the bound) is unattributed
(``None``), never guessed. No read blocks: files are opened with ``O_NONBLOCK`` and read up to
a fixed size.

Limit: a PID that exits and is reused by another GPU process between two consecutive cycles
(well under a second apart) keeps its first process's workload until it leaves the lists.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gpu_exporter.inputfile import InputFileError, read_regular_file
from gpu_exporter.workloads.cgroup import WorkloadRef, parse_cgroup

__all__ = ["MAX_PROC_FILE_BYTES", "PidCache", "Resolved", "command_name", "read_proc_file",
           "start_time"]

MAX_PROC_FILE_BYTES = 64 * 1024
"""Largest ``stat``/``cgroup`` file read (a v1 cgroup file with long paths is a few KiB)."""


def read_proc_file(path: str, *, limit: int = MAX_PROC_FILE_BYTES) -> str | None:
    """The text of a regular file of at most ``limit`` bytes, or ``None`` when unreadable.

    :func:`~gpu_exporter.inputfile.read_regular_file` does the bounded, non-blocking read; any
    reason it refuses the file (gone, permission, not a regular file, too large) is ``None``.
    """
    try:
        return read_regular_file(path, limit=limit).decode("utf-8", "replace")
    except InputFileError:
        return None


def start_time(stat_text: str) -> int | None:
    """Field 22 (``starttime``) of a ``/proc/<pid>/stat`` line, or ``None`` if malformed.

    The command name (field 2) may hold spaces and parentheses, so fields are counted after
    the last ``)``.
    """
    _, sep, rest = stat_text.rpartition(")")
    fields = rest.split()
    if not sep or len(fields) < 20 or not fields[19].isdigit():  # field 22
        return None
    return int(fields[19])


def command_name(stat_text: str) -> str | None:
    """Field 2 (``comm``, without its parentheses) of a ``/proc/<pid>/stat`` line."""
    head, sep, _ = stat_text.rpartition(")")
    _, open_, name = head.partition("(")
    return name if sep and open_ else None


@dataclass(frozen=True, slots=True)
class Resolved:
    """One PID's cached identity: start time, the workload its cgroup names, its ``comm``."""

    start: int | None
    ref: WorkloadRef | None
    name: str | None = None


class PidCache:
    """PID -> workload for the PIDs in NVML's lists, read once per process (see the module)."""

    def __init__(self, procfs_root: str) -> None:
        self._root = procfs_root.rstrip("/") or "/"
        self._cache: dict[int, Resolved] = {}
        self._gone: dict[int, Resolved] = {}  # evicted last cycle (for transient PIDs)

    def __len__(self) -> int:
        return len(self._cache)

    def resolve(
        self, pids: Iterable[int], transient: Iterable[int] = (),
    ) -> dict[int, WorkloadRef | None]:
        """The workload of every PID of this cycle; PIDs no longer listed are evicted.

        ``transient``: PIDs seen only in utilisation samples (a process that exited, or one
        too short-lived to be listed): answered from the entry it had while listed (kept one
        cycle after its eviction), else read once without being cached.
        """
        current = set(pids)
        cache = self._cache
        gone = {p: cache.pop(p) for p in [p for p in cache if p not in current]}
        out: dict[int, WorkloadRef | None] = {}
        for pid in current:
            entry = cache.get(pid)
            if entry is None:
                entry = self._read(pid)
                if entry.start is not None:
                    cache[pid] = entry  # else gone or racing: read again next cycle
            out[pid] = entry.ref
        for pid in transient:
            if pid not in out:
                entry = gone.get(pid) or self._gone.get(pid) or self._read(pid)
                out[pid] = entry.ref
        self._gone = gone
        return out

    def settled(self, pids: Iterable[int]) -> bool:
        """Whether every one of ``pids`` is cached (a later :meth:`resolve` reads none)."""
        cache = self._cache
        return all(pid in cache for pid in pids)

    def unchanged(self) -> None:
        """Note a cycle whose PIDs are exactly the last one's, not resolved again.

        Nothing to read or evict; the PIDs evicted by the last :meth:`resolve` are no longer
        recent (a transient PID is not answered from them).
        """
        if self._gone:
            self._gone = {}

    def name(self, pid: int) -> str | None:
        """The ``comm`` of a PID resolved this cycle, ``None`` when unknown."""
        entry = self._cache.get(pid)
        return None if entry is None else entry.name

    def _read(self, pid: int) -> Resolved:
        base = f"{self._root}/{pid}"
        stat_text = read_proc_file(f"{base}/stat")
        start = None if stat_text is None else start_time(stat_text)
        cgroup = read_proc_file(f"{base}/cgroup")
        if start is None or cgroup is None:
            return Resolved(start, None, None if stat_text is None else command_name(stat_text))
        after = read_proc_file(f"{base}/stat")
        # The process may have exited and its PID been reused while we read: then the cgroup
        # file may be the new process's; unattributed rather than guessed.
        if after is None or start_time(after) != start:
            return Resolved(None, None)
        return Resolved(start, parse_cgroup(cgroup), command_name(after))
