"""A reference of the attribution rules over mappings, written for reading (test support).

The exporter computes the rules of :mod:`gpu_exporter.workloads.attribution` on rows in lists,
in C (``gpu_exporter/_fast``) or in Python (``fastpath.PythonSums`` and ``PythonRows``). This
module states the same rules the plain way, per process and per workload key, and the tests
check the exporter's implementations against it: the window averages
(:func:`average_utilization`, :func:`sample_sums`), the reconciliation with the device's value
(:func:`reconcile`) and the energy split (:func:`split_energy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from nvml_decode import ProcessSamples

from gpu_exporter.workloads.attribution import (
    DEFAULT_PERIOD_US,
    UNATTRIBUTED,
    WorkloadKey,
    reconcile_rows,
    split_energy_rows,
    window_scale,
)


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
    """:func:`~gpu_exporter.workloads.attribution.reconcile_rows` per workload key.

    The remainder goes to :data:`UNATTRIBUTED`, which is always in the result.
    """
    keys = list(parts)
    if UNATTRIBUTED not in parts:
        keys.append(UNATTRIBUTED)
    values = reconcile_rows([parts.get(key, 0.0) for key in keys], device,
                            keys.index(UNATTRIBUTED))
    return dict(zip(keys, values, strict=True))


def split_energy(
    joules: float, sm: Mapping[WorkloadKey, float], memory: Mapping[WorkloadKey, float],
) -> dict[WorkloadKey, float]:
    """:func:`~gpu_exporter.workloads.attribution.split_energy_rows` per workload key.

    ``sm`` and ``memory`` by key; the :data:`UNATTRIBUTED` row is always in the result.
    """
    keys = list(dict.fromkeys([*memory, *sm, UNATTRIBUTED]))
    values = split_energy_rows(joules, [sm.get(key, 0.0) for key in keys],
                               [memory.get(key, 0.0) for key in keys], keys.index(UNATTRIBUTED))
    return dict(zip(keys, values, strict=True))


