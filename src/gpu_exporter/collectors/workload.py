"""Workload collector: GPU use per container, pod, Slurm job or systemd service.

On with ``--workload-metrics`` (nothing here runs otherwise: no per-process NVML call). Once
per cycle per GPU, in that GPU's worker thread, after the DCGM collectors:

1. the running compute, graphics and MPS-client processes of the GPU, or of each MIG instance
   (raw ``_v3`` lists; the MPS server, which the compute list shows holding its clients'
   memory, is left out by its ``comm``), and on a whole GPU the process-utilisation samples
   newer than the last cycle's (``lastSeenTimeStamp``: none counted twice, none lost);
2. each PID's workload from ``<procfs-root>/<pid>/cgroup``, read once per process
   (:class:`~gpu_exporter.workloads.procfs.PidCache`); Docker/Podman container names from the
   engine's socket when ``--container-engine-socket`` is set;
3. per workload rows that, with the ``unattributed`` row, add up to the device's values
   (:mod:`gpu_exporter.workloads.attribution`): utilisation gauges over NVML's newest sample
   period (the window of ``DCGM_FI_DEV_GPU_UTIL``), and energy counters that split each
   cycle's device energy using every sample read.

Series (GPU labels as on every ``gpu_exporter_*`` family, MIG instances with ``GPU_I_PROFILE``
and ``GPU_I_ID``; ``namespace``/``pod``/``container`` where known; ``uid`` on Slurm jobs whose
cgroup path names the user; ``pid`` only with ``--workload-pid-labels``)::

    gpu_exporter_workload_sm_utilization_ratio{gpu="0",...,workload_kind="pod",
        workload="3f2a9c1b7d4e",container="trainer",namespace="ml",pod="trainer-0"} 0.42
    gpu_exporter_workload_sm_utilization_ratio{gpu="0",...,workload_kind="unattributed",
        workload="unattributed"} 0.03
    gpu_exporter_workload_memory_utilization_ratio{...} 0.18
    gpu_exporter_workload_encoder_utilization_ratio{...} 0
    gpu_exporter_workload_decoder_utilization_ratio{...} 0
    gpu_exporter_workload_memory_used_bytes{...,workload_kind="slurm_job",workload="4242",
        uid="1000"} 8.6e+09
    gpu_exporter_workload_energy_joules_total{...,workload_kind="systemd_unit",
        workload="render.service"} 1234.5
    gpu_exporter_workload_processes{...,workload_kind="container",workload="9d8c7b6a5f4e",
        container="web"} 2
    gpu_exporter_workload_utilization_available{gpu="0",...,GPU_I_PROFILE="1g.10gb",
        GPU_I_ID="7",reason="mig"} 0

Utilisation and energy are per whole GPU only: NVML has no per-process utilisation on MIG
instances (nor on a GPU in MIG mode), so there the utilisation and energy families are absent
and ``gpu_exporter_workload_utilization_available`` says why (``mig``, or ``not_supported``
on a GPU without per-process utilisation); memory and process counts are per instance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import add

from gpu_exporter.collectors.base import DeviceView, Readings, Target
from gpu_exporter.config import WorkloadSettings
from gpu_exporter.fastpath import FAMILIES, SAMPLE_SIZE, RowMap, SampleSums, Totals, load_sums
from gpu_exporter.model import Entity, Labels, NativeRows, Sample
from gpu_exporter.nvml import (
    PROCESS_INFO,
    SUCCESS,
    VALUE_NOT_AVAILABLE,
    FieldReading,
    Handle,
    Nvml,
)
from gpu_exporter.workloads.attribution import (
    DEFAULT_PERIOD_US,
    MPS_SERVER_COMM,
    UNATTRIBUTED,
    WorkloadKey,
    reconcile_rows,
    split_energy_rows,
    window_scale,
    workload_key,
)
from gpu_exporter.workloads.cgroup import WorkloadRef
from gpu_exporter.workloads.engine import BackgroundNames, ContainerNames
from gpu_exporter.workloads.podjoin import PodDirectoryHolder, pod_labels
from gpu_exporter.workloads.procfs import PidCache

log = logging.getLogger(__name__)

SM = "gpu_exporter_workload_sm_utilization_ratio"
MEMORY_UTIL = "gpu_exporter_workload_memory_utilization_ratio"
ENCODER = "gpu_exporter_workload_encoder_utilization_ratio"
DECODER = "gpu_exporter_workload_decoder_utilization_ratio"
MEMORY_USED = "gpu_exporter_workload_memory_used_bytes"
ENERGY = "gpu_exporter_workload_energy_joules_total"
PROCESSES = "gpu_exporter_workload_processes"
AVAILABLE = "gpu_exporter_workload_utilization_available"
_GPU_UTIL, _MEM_COPY_UTIL, _ENC_UTIL, _DEC_UTIL = 203, 204, 206, 207
_DEVICE_FIELDS = frozenset({_GPU_UTIL, _MEM_COPY_UTIL, _ENC_UTIL, _DEC_UTIL})
_NVML_ENERGY = 83
"""``NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (mJ), batched for the DCGM energy field."""
UTIL_FAMILIES = (SM, MEMORY_UTIL, ENCODER, DECODER)
ENERGY_KEEP_S = 300.0
"""How long the energy counter of a workload that left the GPU is still exported."""
_KINDS = ("mps", "compute", "graphics")
"""The process lists, in the order a PID listed twice is counted (an MPS client is one)."""


_Keyed = tuple["WorkloadRef | None", bool, object, Entity, WorkloadKey]
"""A process's row and what it was made from (see ``WorkloadCollector._key``)."""


@dataclass(slots=True)
class _Layout:
    """The rows of one GPU or MIG instance, kept while what they are made from is the same.

    That is the raw process lists (PIDs, memory), the PIDs seen only in samples, the pod
    directory, the engine's container list while it names not every container row; a
    layout some PID of which could not be resolved for good (``stable`` false) is made
    again each cycle.
    """

    lists: tuple[bytes | None, ...]
    extra: frozenset[int]
    pods: object
    names: object  # the engine's list, when a container row still lacks its name
    stable: bool
    keys: tuple[WorkloadKey, ...]  # the rows, in output order
    labels: tuple[Labels, ...]
    rowof: dict[int, int]  # pid -> row, listed and sample-only processes
    listed: frozenset[int]
    unattributed: int  # the row of UNATTRIBUTED
    counts: list[float]
    memory: list[float]  # what each row's processes hold (bytes)
    rowmap: RowMap  # rowof for the sample sums (fastpath)
    memory_rows: tuple[float, list[float]] | None = None  # device memory, reconciled rows


@dataclass(slots=True)
class _GpuState:
    """What one GPU carries between cycles (touched only by that GPU's worker thread)."""

    pids: PidCache
    last_seen_us: int = 0
    period_us: int | None = None
    energy_mj: int | None = None
    energy: dict[WorkloadKey, list[float]] = field(default_factory=dict)  # [joules, seen]
    energy_rows: tuple[tuple[WorkloadKey, ...], list[float]] | None = None  # a layout's
    energy_seen: float = 0.0  # when energy_rows was last added to
    latest: RowMap | None = None  # the map of the last read with samples (its values kept)
    keys: dict[int, _Keyed] = field(default_factory=dict)  # pid -> its row, while valid
    layouts: dict[Entity, _Layout] = field(default_factory=dict)


class WorkloadCollector:
    """Per-workload rows of one GPU per call (see the module).

    Args:
        settings: the workload flags.
        pods: the pod directory kept by the Kubernetes refresher (``-k``): ``namespace``,
            ``pod`` and ``container`` of pod processes; ``None`` outside Kubernetes.
    """

    name = "workload"

    def __init__(self, settings: WorkloadSettings, *,
                 pods: PodDirectoryHolder | None = None) -> None:
        self._settings = settings
        self._pods = pods
        self._names = (BackgroundNames(ContainerNames(settings.engine_socket))
                       if settings.engine_socket is not None else None)
        self._state: dict[int, _GpuState] = {}
        self._sums: SampleSums = load_sums()

    def close(self) -> None:
        """Stop the container-name thread (``--container-engine-socket``)."""
        if self._names is not None:
            self._names.close()

    def reset(self, gpu: int) -> None:
        """Forget a GPU's bookkeeping (re-probed: its handles and instances may differ)."""
        self._state.pop(gpu, None)

    def _labels(self, ref: WorkloadRef | None, entity: Entity, *, sole: bool) -> Labels:
        if ref is None:
            return ()
        if ref.kind == "pod" and self._pods is not None:
            return pod_labels(self._pods.current, ref, (entity.gpu, entity.gi_id), sole=sole)
        if ref.kind == "container" and self._names is not None:
            name = self._names.lookup(ref.container_id)
            return (("container", name),) if name is not None else ()
        return ()

    def _key(self, refs: Mapping[int, WorkloadRef | None], cache: dict[int, _Keyed],
             entity: Entity, pid: int, *, sole: bool) -> tuple[WorkloadKey, bool]:
        """The row of a process on ``entity``, and whether it is final.

        Kept in ``cache`` (per GPU, across cycles) while what it was made from is the same:
        the process's workload, whether it is alone on the entity, the pod directory; an
        engine-named container's name is looked up again until the engine names it (not
        final until then).
        """
        ref = refs.get(pid)
        pods = self._pods.current if self._pods is not None else None
        cached = cache.get(pid)
        if cached is not None and cached[0] is ref and cached[1] == sole \
                and cached[2] is pods and cached[3] is entity:
            return cached[4], True
        key = workload_key(ref, pid, pid_labels=self._settings.pid_labels,
                           labels=self._labels(ref, entity, sole=sole))
        if ref is None or ref.kind != "container" or self._names is None or key.labels:
            cache[pid] = (ref, sole, pods, entity, key)
            return key, True
        return key, False

    def collect(
        self, device: DeviceView, readings: Readings, samples: Iterable[Sample] = (),
    ) -> list[NativeRows]:
        """Read one GPU's processes and return its workload rows (one block per entity).

        ``readings`` and ``samples``: what the DCGM collectors read of this GPU this cycle;
        the device's energy (NVML field 83) and utilisations (``DCGM_FI_DEV_GPU_UTIL``,
        ``MEM_COPY_UTIL``, ``ENC_UTIL``, ``DEC_UTIL``) are taken from them when there, so
        the rows add up to exactly what the DCGM series show (and NVML is not asked twice).
        """
        entity = device.entity
        known = {s.field_id: float(s.value) for s in samples
                 if s.field_id in _DEVICE_FIELDS and (s.entity is entity or s.entity == entity)
                 and not isinstance(s.value, str)}
        energy = readings.get((_NVML_ENERGY, 0))
        state = self._state.get(entity.gpu)
        if state is None:
            state = self._state[entity.gpu] = _GpuState(PidCache(self._settings.procfs_root))
        nvml = device.nvml
        whole = not device.info.mig_enabled
        reads = [_read_target(nvml, target, state, whole=whole,
                              known=known if own else {}, energy=energy if own else None)
                 for target in device.targets["instance"]
                 for own in (target.entity is entity or target.entity == entity,)]
        pods = self._pods.current if self._pods is not None else None
        names = self._names.snapshot() if self._names is not None else None
        made: list[_Layout] = []
        for read in reads:
            layout = _reuse(state.layouts.get(read.entity), read, pods, names)
            if layout is None:
                break
            made.append(layout)
        sums = [self._sum(read, layout.rowmap, state)
                for read, layout in zip(reads, made, strict=True)] if len(made) == len(reads) \
            else None
        if sums is not None and not any(found is not None and found[0].unknown
                                         for found in sums):
            state.pids.unchanged()  # the PIDs of the last cycle: nothing read, nothing evicted
        else:  # new processes, or samples of a PID not in the rows: the rows again
            made = self._layouts(reads, state, pods, names)
            sums = [self._sum(read, layout.rowmap, state)
                    for read, layout in zip(reads, made, strict=True)]
        if any(read.samples is not None and found is None
               for read, found in zip(reads, sums, strict=True)):
            state.period_us = state.period_us or DEFAULT_PERIOD_US  # nothing newer: it stays
        return [_rows(read, _window(found, layout, state), layout, state)
                for read, found, layout in zip(reads, sums, made, strict=True)]

    def _sum(self, read: _Read, rowmap: RowMap, state: _GpuState,
             ) -> tuple[Totals, list[int]] | None:
        """The sample sums of one read (``None``: no samples newer than the last read)."""
        raw = read.samples
        if not raw:
            return None
        found = self._sums(raw, len(raw) // SAMPLE_SIZE, state.last_seen_us,
                           state.period_us or 0, rowmap)
        return found if found[0].used or found[0].unknown else None

    def _layouts(
        self, reads: list[_Read], state: _GpuState, pods: object, names: object,
    ) -> list[_Layout]:
        """Resolve every PID of the GPU (new ones read from ``/proc``) and make the layouts."""
        processes = [_processes(read) for read in reads]
        listed = {pid for per in processes for pid, _, _ in per}
        samples = [_sampled(read.samples, state.last_seen_us) for read in reads]
        sampled = {pid for pids in samples for pid in pids}
        refs = state.pids.resolve(listed, sampled)
        if len(state.keys) > 2 * len(refs) + 64:  # forget PIDs long gone
            state.keys = {pid: keyed for pid, keyed in state.keys.items() if pid in refs}
        layouts = []
        for read, pids, per in zip(reads, samples, processes, strict=True):
            layout = self._layout(read, pids, per, refs, state=state, pods=pods, names=names)
            state.layouts[read.entity] = layout
            layouts.append(layout)
        return layouts

    def _layout(
        self, read: _Read, sampled: frozenset[int], processes: list[tuple[int, int, int]],
        refs: Mapping[int, WorkloadRef | None], *, state: _GpuState, pods: object,
        names: object,
    ) -> _Layout:
        """The rows of one GPU or MIG instance for its processes and sampled PIDs."""
        here = {pid for pid, _, _ in processes}
        here.update(sampled)
        # the kubelet-only pod join needs one pod container alone on the entity
        pods_here = {(ref.pod_uid, ref.container_id) for pid in here
                     if (ref := refs.get(pid)) is not None and ref.kind == "pod"}
        sole = len(pods_here) == 1
        if read.lists[0]:  # MPS clients listed: the server's memory is theirs
            processes = [(pid, used, kind) for pid, used, kind in processes if kind != 1
                         or not (state.pids.name(pid) or "").startswith(MPS_SERVER_COMM)]
        final = True
        counts: dict[WorkloadKey, float] = {UNATTRIBUTED: 0.0}
        memory: dict[WorkloadKey, float] = {UNATTRIBUTED: 0.0}
        key_of: dict[int, WorkloadKey] = {}
        for pid, used, _ in processes:
            key, done = self._key(refs, state.keys, read.entity, pid, sole=sole)
            final = final and done
            key_of[pid] = key
            counts[key] = counts.get(key, 0.0) + 1.0
            memory[key] = memory.get(key, 0.0) + float(used)
        listed = frozenset(key_of)
        extra = sampled - listed
        for pid in extra:  # a process seen only in samples: 0 listed
            key, done = self._key(refs, state.keys, read.entity, pid, sole=sole)
            final = final and done
            key_of[pid] = key
            counts.setdefault(key, 0.0)
        keys = tuple(sorted(counts, key=WorkloadKey.order))
        row = {key: i for i, key in enumerate(keys)}
        stable = not extra and state.pids.settled(here)
        rowof = {pid: row[key] for pid, key in key_of.items()}
        return _Layout(read.lists, extra, pods, None if final else names, stable, keys,
                       tuple(key.label_pairs() for key in keys), rowof, listed,
                       row[UNATTRIBUTED], [counts[key] for key in keys],
                       [memory.get(key, 0.0) for key in keys], RowMap(rowof, len(keys)))


@dataclass(slots=True)
class _Read:
    """What was read of one GPU or MIG instance this cycle."""

    entity: Entity
    mig: bool
    lists: tuple[bytes | None, bytes | None, bytes | None]  # raw MPS, compute, graphics
    samples: memoryview | bytes | None  # None: no per-process utilisation; b"": none newer
    device_util: tuple[float | None, float | None, float | None, float | None]
    memory_used: int | None
    energy_mj: int | None


@dataclass(slots=True)
class _Window:
    """What the rows need of one read of samples, per row (see :func:`_window`).

    ``busy``: the SM utilisation of the row's processes averaged over the window the read
    covers (a fraction; each process's capped at 1). ``util``: the SM, memory, encoder and
    decoder percent of the row's processes in the newest sample period, summed (each
    process's capped at 100).
    """

    busy: list[float]
    util: tuple[list[int], list[int], list[int], list[int]]


def _read_target(
    nvml: Nvml, target: Target, state: _GpuState, *, whole: bool, known: Mapping[int, float],
    energy: FieldReading | None,
) -> _Read:
    """The NVML reads of one GPU or MIG instance (lists, samples, device values).

    Device values already read this cycle (``known`` DCGM samples, the ``energy`` field
    reading) are used as they are; the others are read here.
    """
    handle = target.handle
    lists = (nvml.running_processes_raw(handle, "mps"),
             nvml.running_processes_raw(handle, "compute"),
             nvml.running_processes_raw(handle, "graphics"))
    memory = nvml.memory_info(handle)
    mig = target.entity.is_mig or not whole
    samples: memoryview | bytes | None = None
    util: tuple[float | None, float | None, float | None, float | None] = (None,) * 4
    energy_mj: int | None = None
    if not mig:  # a view of NVML's buffer, read before the next call in this thread
        samples = nvml.process_utilization_view(handle, state.last_seen_us)
        if samples is not None:
            util = _device_util(nvml, handle, known)
            energy_mj = (int(energy.value) if energy is not None and energy.code == SUCCESS
                         and energy.value is not None else nvml.total_energy(handle))
    return _Read(target.entity, mig, lists, samples, util,
                 None if memory is None else memory.used, energy_mj)


def _device_util(
    nvml: Nvml, handle: Handle, known: Mapping[int, float],
) -> tuple[float | None, float | None, float | None, float | None]:
    """SM, memory, encoder and decoder utilisation in percent.

    This cycle's DCGM samples, or NVML where the counters file does not ask for them.
    """
    if _GPU_UTIL in known and _MEM_COPY_UTIL in known:
        sm: float | None = known[_GPU_UTIL]
        mem: float | None = known[_MEM_COPY_UTIL]
    else:
        rates = nvml.utilization(handle)
        sm = None if rates is None else float(rates[0])
        mem = None if rates is None else float(rates[1])
    enc = known[_ENC_UTIL] if _ENC_UTIL in known else _float(nvml.encoder_utilization(handle))
    dec = known[_DEC_UTIL] if _DEC_UTIL in known else _float(nvml.decoder_utilization(handle))
    return sm, mem, enc, dec


def _float(value: int | None) -> float | None:
    return None if value is None else float(value)


def _processes(read: _Read) -> list[tuple[int, int, int]]:
    """(pid, used bytes, list index) of each listed process, a PID listed twice once."""
    out: list[tuple[int, int, int]] = []
    seen: set[int] = set()
    for index, raw in enumerate(read.lists):
        for pid, used, _, _ in PROCESS_INFO.iter_unpack(raw or b""):
            if pid not in seen:  # an MPS client listed as compute too: counted once
                seen.add(pid)
                out.append((pid, 0 if used == VALUE_NOT_AVAILABLE else used, index))
    return out


def _reuse(layout: _Layout | None, read: _Read, pods: object, names: object) -> _Layout | None:
    """``layout`` when it still holds for this read (same lists, pods and names).

    Whether the samples name only its processes is for the sums to say (``unknown``).
    """
    if layout is None or not layout.stable or layout.pods is not pods \
            or layout.lists != read.lists \
            or (layout.names is not None and layout.names is not names):
        return None
    return layout


# ---------------------------------------------------------------- samples


def _sampled(samples: memoryview | bytes | None, last_seen_us: int) -> frozenset[int]:
    """The PIDs of the samples newer than ``last_seen_us`` (when the rows are made again)."""
    if not samples:
        return frozenset()
    view = memoryview(samples).cast("B")
    view = view[:len(view) // SAMPLE_SIZE * SAMPLE_SIZE]
    return frozenset(pid for pid, stamp in zip(view.cast("I")[0::8].tolist(),
                                               view.cast("Q")[1::4].tolist(), strict=True)
                     if stamp > last_seen_us)


def _window(found: tuple[Totals, list[int]] | None, layout: _Layout, state: _GpuState,
            ) -> _Window:
    """Per row, what one read's sums give (see :class:`_Window`); updates ``state``.

    ``found`` ``None`` (nothing newer: cycles faster than the sample period): the last read's
    newest-period values of the processes still listed, and no SM time.
    """
    n = len(layout.keys)
    if found is None:
        util = ([0] * n, [0] * n, [0] * n, [0] * n)
        if state.latest is not None:
            rowof, listed = layout.rowof, layout.listed
            for pid, values in state.latest.latest().items():
                if pid in listed:
                    row = rowof[pid]
                    for column, value in zip(util, values, strict=True):
                        column[row] += value
        return _Window([0.0] * n, util)
    totals, sums = found
    period, scale = window_scale(totals.gap, totals.oldest, totals.newest, state.last_seen_us,
                                 state.period_us)
    state.last_seen_us = max(totals.newest, state.last_seen_us)
    state.period_us = period
    state.latest = layout.rowmap
    if totals.max_busy * scale <= 1.0:
        busy = [value * scale for value in sums[:n]]
    else:  # an average is at most 1: each process's capped, then summed per row
        busy = [0.0] * n
        for row, values in zip(layout.rowmap.rows, layout.rowmap.slot_values(), strict=True):
            busy[row] += min(values[0] * scale, 1.0)
    return _Window(busy, (sums[n:2 * n], sums[2 * n:3 * n], sums[3 * n:4 * n],
                          sums[4 * n:FAMILIES * n]))


# ---------------------------------------------------------------- rows


def _rows(read: _Read, window: _Window, layout: _Layout, state: _GpuState) -> NativeRows:
    """The rows of one GPU or MIG instance."""
    labels = layout.labels
    rest = layout.unattributed
    device_memory = (float(read.memory_used) if read.memory_used is not None
                     else sum(layout.memory))
    names = [PROCESSES, MEMORY_USED]
    memory = layout.memory_rows
    if memory is None or memory[0] != device_memory:  # else the same inputs as last cycle
        memory = layout.memory_rows = (device_memory,
                                       reconcile_rows(layout.memory, device_memory, rest))
    values = [layout.counts, memory[1]]
    if read.samples is None:
        return NativeRows(read.entity, (*names, AVAILABLE),
                          (labels, labels, ((("reason", "mig" if read.mig else
                                              "not_supported"),),)),
                          (*values, (0.0,)))
    for column, family, percent in zip(window.util, UTIL_FAMILIES, read.device_util,
                                       strict=True):
        if percent is not None:
            names.append(family)
            parts = [v / 100.0 for v in column]
            total, device = sum(parts), percent / 100.0
            if 0.0 <= total <= device:  # reconcile_rows' common case, inline
                parts[rest] += device - total
            else:
                parts = reconcile_rows(parts, device, rest)
            values.append(parts)
    energy = _energy(read, state, layout, window.busy)
    if energy is not None:
        names.append(ENERGY)
        values.append(energy[1])
        return NativeRows(read.entity, tuple(names), (labels,) * (len(names) - 1) + (energy[0],),
                          tuple(values))
    return NativeRows(read.entity, tuple(names), (labels,) * len(names), tuple(values))


def _energy(
    read: _Read, state: _GpuState, layout: _Layout, busy: list[float],
) -> tuple[tuple[Labels, ...], list[float]] | None:
    """Add this interval's energy to the counters; their labels and values.

    The counters of the layout's rows live in a list while the layout stays the same; a
    workload gone from the GPU keeps its (no longer growing) counter for
    :data:`ENERGY_KEEP_S`, so that its last increase is scraped.
    """
    if read.energy_mj is None:
        state.energy_mj = None
        state.energy.clear()
        state.energy_rows = None
        return None
    previous, state.energy_mj = state.energy_mj, read.energy_mj
    joules = 0.0 if previous is None or read.energy_mj < previous else \
        (read.energy_mj - previous) / 1000.0
    now = time.monotonic()
    counters = state.energy  # the workloads not in the rows: [joules, last seen]
    live = state.energy_rows
    if live is not None and live[0] is layout.keys:
        values = live[1]
    else:  # other rows: the last ones' counters kept, seen until the last cycle
        if live is not None:
            for key, value in zip(*live, strict=True):
                counters[key] = [value, state.energy_seen]
        values = [counters.pop(key, (0.0,))[0] for key in layout.keys]
    values = list(map(add, values, split_energy_rows(joules, busy, layout.memory,
                                                     layout.unattributed)))
    state.energy_rows = (layout.keys, values)
    state.energy_seen = now
    if counters:
        for key in [k for k, (_, seen) in counters.items() if now - seen > ENERGY_KEEP_S]:
            del counters[key]
    if not counters:
        return layout.labels, values
    merged = {key: value for key, (value, _) in counters.items()}
    merged.update(zip(layout.keys, values, strict=True))
    ordered = sorted(merged, key=WorkloadKey.order)
    return tuple(key.label_pairs() for key in ordered), [merged[key] for key in ordered]
