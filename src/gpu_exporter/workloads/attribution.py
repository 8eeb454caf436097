"""GPU processes -> per-workload values that add up to the device's (pure functions).

Per GPU (or MIG instance) and cycle the collector hands over the running processes, the
process-utilisation samples read since the last cycle, the device's own values and the
workload each PID belongs to; this module turns them into one row per workload plus the
``unattributed`` row, such that for every family the rows sum to the device value:

- **Utilisation** (SM, memory, encoder, decoder): each process's sample of the newest sample
  period (the window of NVML's device utilisation), summed per workload; ``unattributed`` is
  what the processes do not explain. When the processes' sum is higher than the device value
  (a process that ended within the period, or the driver's process and device sampling
  disagreeing), every row is scaled by device / sum, keeping their shares.
- **Energy shares**: every sample of the read, averaged over the window it covers (from the
  newest sample of the previous read to the newest of this one: a process that ran in part
  of it gets its share of time), so nothing that ran between two cycles is lost.
- **Memory**: each process's used memory summed per workload; ``unattributed`` is the
  device's used memory not held by a listed process (driver contexts, processes NVML cannot
  size), scaled the same way when the processes report more than the device.
- **Processes**: the count per workload; unattributed processes count as ``unattributed``.
- **Energy**: see :func:`split_energy`.

A process whose workload is unknown (its cgroup unreadable or naming none) is unattributed,
never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from gpu_exporter.model import Labels
from gpu_exporter.nvml import ProcessSamples
from gpu_exporter.workloads.cgroup import WorkloadRef

__all__ = [
    "DEFAULT_PERIOD_US",
    "UNATTRIBUTED",
    "UtilWindow",
    "WorkloadKey",
    "average_utilization",
    "reconcile",
    "reconcile_rows",
    "sample_period",
    "sample_sums",
    "split_energy",
    "split_energy_rows",
    "window_scale",
    "workload_key",
]

DEFAULT_PERIOD_US = 166_667
"""NVML's shortest process-sample period (1/6 s), used until a GPU's own period is seen."""

MPS_SERVER_COMM = "nvidia-cuda-mps"
"""``comm`` of the MPS server (``nvidia-cuda-mps-server``, cut to 15 characters by Linux)."""


class WorkloadKey(NamedTuple):
    """One row of the workload families.

    Attributes:
        kind: ``pod``, ``container``, ``slurm_job``, ``systemd_unit`` or ``unattributed``.
        workload: its id: the short (12 digit) container id for pods and containers, the
            Slurm job id, the systemd unit, or ``unattributed``.
        labels: ``namespace``/``pod``/``container`` pairs where known, ``uid`` (the user
            id) of a Slurm job whose cgroup path names it; sorted by name.
        pid: the process with ``--workload-pid-labels``, else ``None``.
    """

    kind: str
    workload: str
    labels: Labels = ()
    pid: int | None = None

    def order(self) -> tuple[str, str, Labels, int]:
        """Sort key: by kind, workload, labels, then pid (the row without one first)."""
        return (self.kind, self.workload, self.labels, -1 if self.pid is None else self.pid)

    def label_pairs(self) -> Labels:
        """The series' own labels, after the GPU labels."""
        pairs: Labels = (("workload_kind", self.kind), ("workload", self.workload), *self.labels)
        if self.pid is not None:
            pairs += (("pid", str(self.pid)),)
        return pairs


UNATTRIBUTED = WorkloadKey("unattributed", "unattributed")
"""The remainder row of every family (and the row of unattributed processes)."""


def workload_key(
    ref: WorkloadRef | None, pid: int, *, pid_labels: bool = False, labels: Labels = (),
) -> WorkloadKey:
    """The row a process belongs to (pure).

    Args:
        ref: what its cgroup names, ``None`` when unknown.
        pid: the process.
        pid_labels: one row per process (``--workload-pid-labels``).
        labels: ``namespace``/``pod``/``container`` pairs known for the workload.
    """
    own = pid if pid_labels else None
    if ref is None or ref.kind == "process":
        return WorkloadKey("unattributed", "unattributed", (), own)
    if ref.kind in {"pod", "container"}:
        name = ref.container_id[:12]
    elif ref.kind == "slurm_job":
        name = ref.job_id
        if ref.uid:  # the job's user, from a cgroup v1 path (v2 paths do not carry it)
            labels = (*labels, ("uid", ref.uid))
    else:
        name = ref.unit
    return WorkloadKey(ref.kind, name, tuple(sorted(labels)), own)


@dataclass(frozen=True, slots=True)
class UtilWindow:
    """Per-process utilisation of one read (fractions, 0..1).

    Attributes:
        busy: pid -> its SM utilisation averaged over the read's window (every sample
            counted: what the energy split uses).
        latest: pid -> the same over the newest sample period only (a process without a
            sample in it is absent): the same window as NVML's device utilisation.
        newest_us: newest sample timestamp (the next read's ``lastSeenTimeStamp``).
        period_us: sample period seen so far on this GPU.
    """

    busy: dict[int, float]
    newest_us: int
    period_us: int
    latest: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)


def average_utilization(
    samples: ProcessSamples, last_seen_us: int, period_us: int | None,
) -> UtilWindow:
    """Average each process's samples over the window this read covers (pure).

    The window runs from ``last_seen_us`` (exclusive; the newest sample of the previous read)
    to the newest sample of this read; on the first read (``last_seen_us`` 0) from one period
    before the oldest sample. Each sample is a process's utilisation over one sample period;
    a process's average is the sum of its samples times the period over the window, so a
    process that ran for part of the window gets that part. The period is the smallest gap
    between two samples of one process (NVML keeps at most one per process and period),
    remembered per GPU (``period_us``), :data:`DEFAULT_PERIOD_US` before one is seen. Each
    average is capped at 1.
    """
    if not samples.pids:
        return UtilWindow({}, last_seen_us, period_us or DEFAULT_PERIOD_US)
    sums, gap, oldest, newest, last = sample_sums(samples)
    period, scale = window_scale(gap, oldest, newest, last_seen_us, period_us)
    busy = {pid: min(total * scale, 1.0) for pid, total in sums.items()}
    recent = newest - period
    latest = {pid: (_ratio(sm), _ratio(mem), _ratio(enc), _ratio(dec))
              for pid, (stamp, sm, mem, enc, dec) in last.items() if stamp > recent}
    return UtilWindow(busy, max(newest, last_seen_us), period, latest)


def sample_sums(samples: ProcessSamples) -> Found:
    """:data:`Found` of a non-empty read (pure): per-process SM sums, the gap, the stamps."""
    columns = (samples.sm, samples.mem, samples.enc, samples.dec)
    found = _periodic_sums(samples.pids, samples.stamps, columns)
    return found if found is not None else _sums(samples.pids, samples.stamps, columns)


def sample_period(gap: int, period_us: int | None) -> int:
    """The sample period: the smaller of ``gap`` and ``period_us``.

    Either may be unknown (0, ``None``); neither known: :data:`DEFAULT_PERIOD_US`.
    """
    if period_us and (not gap or period_us < gap):
        gap = period_us
    return gap or DEFAULT_PERIOD_US


def window_scale(
    gap: int, oldest: int, newest: int, last_seen_us: int, period_us: int | None,
) -> tuple[int, float]:
    """The sample period and the factor from a process's SM sum (percent) to its average.

    See :func:`average_utilization`: the period is the smallest ``gap`` between two samples
    of one process, or the GPU's ``period_us`` when smaller (or no gap was seen), else
    :data:`DEFAULT_PERIOD_US`; the average is ``sum x period / window / 100``.

    A read in which no process has two samples (``gap`` 0) is what nvml.h describes and real
    drivers return: one sample per process, its newest period, however long ago the last
    read was. Such a sample stands for the process's use over the whole window (held since
    the last read): the factor is ``1 / 100``. (A driver that keeps every period's sample
    gives a gap as soon as a window spans two periods; a window of one period gives the same
    factor either way.)
    """
    period = sample_period(gap, period_us)
    if not gap:
        return period, 0.01
    start = last_seen_us if last_seen_us else oldest - period
    window = max(newest - start, period)
    return period, period / window / 100.0


def _ratio(percent: int) -> float:
    return percent / 100.0 if percent <= 100 else 1.0


Columns = tuple[list[int], list[int], list[int], list[int]]


Found = tuple[dict[int, int], int, int, int, dict[int, tuple[int, int, int, int, int]]]
"""Per-process SM sums, the smallest gap between two samples of one process, oldest, newest,
and each process's newest sample (timestamp, sm, mem, enc, dec)."""


def _periodic_sums(pids: list[int], stamps: list[int], columns: Columns) -> Found | None:
    """:data:`Found` for the common layout, with C-level slices.

    The layout: the same processes, in the same order, in every period (blocks), blocks
    oldest first. ``None`` when the samples are not laid out so.
    """
    n = len(pids)
    try:
        k = pids.index(pids[0], 1)  # where the first process's next sample starts a block
    except ValueError:
        k = n
    first = pids[:k]
    starts = stamps[::k]
    if n % k or pids[k:] != pids[:-k] or len(set(first)) != k or starts != sorted(starts):
        return None
    gap = stamps[k] - stamps[0] if n > k and stamps[k] > stamps[0] else 0
    sm, mem, enc, dec = columns
    sums = {pid: sum(sm[i::k]) for i, pid in enumerate(first)}
    base = n - k
    last = {pid: (stamps[base + i], sm[base + i], mem[base + i], enc[base + i], dec[base + i])
            for i, pid in enumerate(first)}
    return sums, gap, min(stamps[:k]), max(stamps[-k:]), last


def _sums(pids: list[int], stamps: list[int], columns: Columns) -> Found:
    """:data:`Found`, one sample at a time (any order)."""
    sums: dict[int, int] = {}
    last_of: dict[int, int] = {}
    last: dict[int, tuple[int, int, int, int, int]] = {}
    gap = 0
    for pid, stamp, sm, mem, enc, dec in zip(pids, stamps, *columns, strict=True):
        newest = last.get(pid)
        if newest is None or stamp >= newest[0]:
            last[pid] = (stamp, sm, mem, enc, dec)
        sums[pid] = sums.get(pid, 0) + sm
        previous = last_of.get(pid)
        if previous is not None and stamp > previous and (not gap or stamp - previous < gap):
            gap = stamp - previous
        last_of[pid] = stamp
    return sums, gap, min(stamps), max(stamps), last


def reconcile(parts: Mapping[WorkloadKey, float], device: float) -> dict[WorkloadKey, float]:
    """Rows that sum to ``device``: ``parts`` plus the remainder on :data:`UNATTRIBUTED`.

    When the parts add up to more than ``device`` each is scaled by ``device / sum`` (their
    shares kept) and the remainder is 0. The :data:`UNATTRIBUTED` row is always present.
    See :func:`reconcile_rows`.
    """
    keys = list(parts)
    if UNATTRIBUTED not in parts:
        keys.append(UNATTRIBUTED)
    values = reconcile_rows([parts.get(key, 0.0) for key in keys], device,
                            keys.index(UNATTRIBUTED))
    return dict(zip(keys, values, strict=True))


def plain_sum(values: Iterable[float]) -> float:
    """The left-to-right sum of ``values`` (pure).

    Not :func:`sum`, which compensates rounding on Python 3.12 and later: the rules here are
    also computed by the fast-path C library (``gpu_exporter/_fast/rows.c``), with plain
    sums, and both must agree to the bit.
    """
    total = 0.0
    for value in values:
        total += value
    return total


def reconcile_rows(parts: list[float], device: float, rest: int) -> list[float]:
    """:func:`reconcile` on rows in a list, the remainder going to row ``rest`` (pure).

    In the fast-path C library's order of operations (``reconcile`` in rows.c).
    """
    device = max(device, 0.0)
    total = plain_sum(parts)
    if total > device and total > 0:
        factor = device / total
        out = [value * factor for value in parts]
        total = plain_sum(out)
    else:
        out = parts.copy()
    remainder = device - total
    out[rest] += remainder if remainder > 0.0 else 0.0
    return out


def split_energy(
    joules: float, sm: Mapping[WorkloadKey, float], memory: Mapping[WorkloadKey, float],
) -> dict[WorkloadKey, float]:
    """Split one interval's device energy between the rows (pure).

    The rule: the interval's energy is shared in two parts.

    - **Busy share**: each row gets ``joules x`` its SM utilisation over the interval (the
      fraction of time its kernels ran; when the rows add up to more than 1 they are scaled
      to sum to 1).
    - **Idle share**: the rest (``joules x (1 - sum of SM utilisation)``: time no kernel ran,
      when the GPU draws its idle and memory power) is split between the rows that hold
      GPU memory, in proportion to the memory they hold (holding memory keeps the GPU in use
      for them: other work cannot have it). When no row holds memory, it is unattributed.

    The result sums to ``joules``; every value is >= 0 (energy only grows). See
    :func:`split_energy_rows`.
    """
    keys = list(dict.fromkeys([*memory, *sm, UNATTRIBUTED]))
    values = split_energy_rows(joules, [sm.get(key, 0.0) for key in keys],
                               [memory.get(key, 0.0) for key in keys], keys.index(UNATTRIBUTED))
    return dict(zip(keys, values, strict=True))


_positive = (0.0).__lt__


def split_energy_rows(joules: float, sm: list[float], memory: list[float], rest: int,
                      ) -> list[float]:
    """:func:`split_energy` on rows in lists (``rest``: the unattributed row) (pure).

    In the fast-path C library's order of operations (``gx_rows`` in rows.c): each idle part
    is ``idle x (held / total)``, which keeps its precision for tiny (denormal) sizes.
    """
    joules = max(joules, 0.0)
    shares = [value if value > 0.0 else 0.0 for value in sm]
    if plain_sum(shares) > 1.0:
        factor = 1.0 / plain_sum(shares)
        shares = [share * factor for share in shares]
    out = [joules * share for share in shares]
    idle_part = 1.0 - plain_sum(shares)
    idle = joules * (idle_part if idle_part > 0.0 else 0.0)
    held_total = plain_sum(filter(_positive, memory))
    if held_total > 0:
        return [value + idle * (held / held_total) if held > 0 else value
                for value, held in zip(out, memory, strict=True)]
    out[rest] += idle
    return out
