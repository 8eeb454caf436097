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
- **Energy**: see :func:`split_energy_rows`.

A process whose workload is unknown (its cgroup unreadable or naming none) is unattributed,
never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from gpu_exporter.model import Labels
from gpu_exporter.workloads.cgroup import WorkloadRef

__all__ = [
    "DEFAULT_PERIOD_US",
    "UNATTRIBUTED",
    "WorkloadKey",
    "plain_sum",
    "reconcile_rows",
    "sample_period",
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

    A process's average over the window a read covers is the sum of its samples (each its
    utilisation over one sample period) times the period over the window, so a process that
    ran for part of the window gets that part. The window runs from ``last_seen_us``
    (exclusive; the newest sample of the previous read) to the read's ``newest`` sample; on
    the first read (``last_seen_us`` 0) from one period before the ``oldest``. The period is
    the smallest ``gap`` between two samples of one process (NVML keeps at most one per
    process and period), or the GPU's ``period_us`` when smaller (or no gap was seen), else
    :data:`DEFAULT_PERIOD_US`; the factor is ``period / window / 100``.

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
    """Rows that sum to ``device``: ``parts``, the remainder added to row ``rest`` (pure).

    When the parts add up to more than ``device`` each is scaled by ``device / sum`` (their
    shares kept) and the remainder is 0. In the fast-path C library's order of operations
    (``reconcile`` in rows.c).
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


_positive = (0.0).__lt__


def split_energy_rows(joules: float, sm: list[float], memory: list[float], rest: int,
                      ) -> list[float]:
    """Split one interval's device energy (``joules``) between the rows (pure).

    ``sm``: each row's SM utilisation over the interval (0..1); ``memory``: the memory each
    row holds; ``rest``: the unattributed row. The interval's energy is shared in two parts.

    - **Busy share**: each row gets ``joules x`` its SM utilisation over the interval (the
      fraction of time its kernels ran; when the rows add up to more than 1 they are scaled
      to sum to 1).
    - **Idle share**: the rest (``joules x (1 - sum of SM utilisation)``: time no kernel ran,
      when the GPU draws its idle and memory power) is split between the rows that hold
      GPU memory, in proportion to the memory they hold (holding memory keeps the GPU in use
      for them: other work cannot have it). When no row holds memory, it goes to ``rest``.

    The result sums to ``joules``; every value is >= 0 (energy only grows). In the fast-path
    C library's order of operations (``gx_rows`` in rows.c): each idle part is
    ``idle x (held / total)``, which keeps its precision for tiny (denormal) sizes.
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
