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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter

from gpu_exporter.collectors.base import DeviceView, Readings, Target
from gpu_exporter.config import WorkloadSettings
from gpu_exporter.fastpath import (
    FAMILIES,
    READ_CHANGED,
    READ_FAILED,
    SAMPLE_SIZE,
    CReads,
    CRows,
    ReadState,
    RowMap,
    RowValues,
    Totals,
    load_reads,
    load_rows,
)
from gpu_exporter.model import Entity, Labels, NativeRows, Sample, new_native_rows
from gpu_exporter.nvml import (
    CODER_CALL,
    PROCESS_INFO,
    READ_CALLS,
    SUCCESS,
    VALUE_NOT_AVAILABLE,
    FieldReading,
    Handle,
    Nvml,
    ProcessReader,
)
from gpu_exporter.workloads.attribution import (
    DEFAULT_PERIOD_US,
    MPS_SERVER_COMM,
    UNATTRIBUTED,
    WorkloadKey,
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
    rowmap: RowMap  # rowof, memory and energy counters for the fast path (fastpath)
    shape: _Shape | None = None  # the blocks' families and labels, for the families present


@dataclass(slots=True)
class _GpuState:
    """What one GPU carries between cycles (touched only by that GPU's worker thread)."""

    pids: PidCache
    last_seen_us: int = 0
    period_us: int | None = None
    energy_mj: int | None = None
    energy: dict[WorkloadKey, list[float]] = field(default_factory=dict)  # [joules, seen]
    energy_rows: _Layout | None = None  # the layout whose row map holds the live counters
    energy_seen: float = 0.0  # when energy_rows was last added to
    latest: RowMap | None = None  # the map of the last read with samples (its values kept)
    keys: dict[int, _Keyed] = field(default_factory=dict)  # pid -> its row, while valid
    layouts: dict[Entity, _Layout] = field(default_factory=dict)
    reader: ProcessReader | None = None  # its per-process reads (buffers of its own)
    compiled: ReadState | None = None  # the reader's reads in one compiled call (CReads)
    known_at: tuple[int, tuple[tuple[int, int], ...]] | None = None  # see _known


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
        self._values: RowValues = load_rows()
        self._reads: CReads | None = load_reads() if isinstance(self._values, CRows) else None

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
        state = self._state.get(entity.gpu)
        if state is None:
            state = self._state[entity.gpu] = _GpuState(PidCache(self._settings.procfs_root))
        nvml = device.nvml
        reader = state.reader
        if reader is None:
            reader = state.reader = nvml.process_reader()
        whole = not device.info.mig_enabled
        energy = readings.get((_NVML_ENERGY, 0))
        pods = self._pods.current if self._pods is not None else None
        names = self._names.snapshot() if self._names is not None else None
        targets = device.targets["instance"]
        if whole and self._reads is not None and len(targets) == 1 \
                and targets[0].entity is entity:  # the GPU's reads and rows in one call
            done = self._compiled(nvml, reader, targets[0], state, samples, energy, pods, names)
            if isinstance(done, NativeRows):
                state.pids.unchanged()
                return [done]
            reads = [done]
        else:
            reads = [_read_target(nvml, reader, target, state, whole=whole,
                                  samples=samples if own else (),
                                  energy=energy if own else None)
                     for target in targets
                     for own in (target.entity is entity or target.entity == entity,)]
        values = self._values
        out: list[NativeRows] = []
        for read in reads:  # the rows of the last cycle, while they hold
            layout = _reuse(state.layouts.get(read.entity), read, pods, names)
            if layout is None:
                break
            try:
                out.append(_rows(read, layout, state, values))
            except _NewPids:
                break
        else:
            state.pids.unchanged()  # the PIDs of the last cycle: nothing read, nothing evicted
            return out
        # new processes, or samples of a PID not in the rows: the rows again (the energy of
        # the reads already done was added to their counters, which the new rows take)
        made = self._layouts(reads, state, pods, names)
        return [_rows(read, layout, state, values, final=True, add_energy=at >= len(out))
                for at, (read, layout) in enumerate(zip(reads, made, strict=True))]

    def _compiled(  # noqa: PLR0917 (the collect's own values, passed on)
        self, nvml: Nvml, reader: ProcessReader, target: Target, state: _GpuState,
        samples: Iterable[Sample], energy: FieldReading | None, pods: object, names: object,
    ) -> NativeRows | _Read:
        """A whole GPU's reads in one compiled call, and its rows in the same call.

        The rows when the last cycle's still hold, or else the read (the rows made from it as
        from :func:`_read_target`'s). The calls are :class:`ProcessReader`'s, any answer other
        than the expected one carried on by its rules (:meth:`ProcessReader.complete`).
        """
        assert self._reads is not None  # noqa: S101 (called only with them)
        handle = target.handle
        entity = target.entity
        known = _known(samples, entity, state)
        coders = (_ENC_UTIL not in known, _DEC_UTIL not in known)  # read in the same call
        compiled = state.compiled
        if compiled is None or compiled.generation != reader.generation \
                or compiled.coders != coders:
            plan = reader.plan(handle, samples=True, coders=coders)
            if plan is None:  # some call did not answer last time: read by the reader
                return _read_target(nvml, reader, target, state, whole=True, samples=samples,
                                    energy=energy)
            compiled = state.compiled = ReadState(plan, reader.generation)
        sm, mem = _device_rates(nvml, handle, known)
        energy_mj = _energy_mj(nvml, handle, energy)
        layout = state.layouts.get(entity)
        rowmap: RowMap | None = None
        joules: float | None = None
        if layout is not None and layout.stable and layout.pods is pods \
                and (layout.names is None or layout.names is names) \
                and (energy_mj is None or state.energy_rows is layout):
            if layout.lists is not compiled.lists and layout.lists == compiled.lists:
                layout.lists = compiled.lists  # the same lists: compared by identity now
            if layout.lists is compiled.lists:
                rowmap = layout.rowmap
                joules = _joules(energy_mj, state, layout)
        enc = _NAN if coders[0] else known[_ENC_UTIL]  # NaN: the call's answer replaces it
        dec = _NAN if coders[1] else known[_DEC_UTIL]
        answer = self._reads(compiled, rowmap, state.last_seen_us, state.period_us or 0,
                             (_NAN if sm is None else sm, _NAN if mem is None else mem, enc, dec,
                              _NAN, _NAN if joules is None else joules))
        if coders[0] or coders[1]:  # the call's answers (None: not supported)
            util = (sm, mem, compiled.coder(0) if coders[0] else enc,
                    compiled.coder(1) if coders[1] else dec)
        else:
            util = (sm, mem, enc, dec)
        if not isinstance(answer, int):  # the rows: the read as _rows would have made them
            assert layout is not None  # noqa: S101 (rows only with a layout's map)
            found, values = answer
            if joules is not None:
                state.energy_mj = energy_mj  # added: the next interval starts here
            _advance(found, layout, state)
            return _block(entity, layout, state, values, util=util, energy_mj=energy_mj)
        return _compiled_read(reader, compiled, answer, handle, entity, state.last_seen_us,
                              util=util, energy_mj=energy_mj)

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
        held = [memory.get(key, 0.0) for key in keys]
        return _Layout(read.lists, extra, pods, None if final else names, stable, keys,
                       tuple(key.label_pairs() for key in keys), rowof, listed,
                       row[UNATTRIBUTED], [counts[key] for key in keys], held,
                       RowMap(rowof, len(keys), rest=row[UNATTRIBUTED], memory=held))


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


def _read_target(
    nvml: Nvml, reader: ProcessReader, target: Target, state: _GpuState, *, whole: bool,
    samples: Iterable[Sample], energy: FieldReading | None,
) -> _Read:
    """The NVML reads of one GPU or MIG instance (lists, samples, device values).

    Device values already read this cycle (the DCGM ``samples`` of the target's entity, the
    ``energy`` field reading) are used as they are; the others are read here.
    """
    handle = target.handle
    lists = reader.lists(handle)
    memory = reader.memory_used(handle)
    mig = target.entity.is_mig or not whole
    process_samples: memoryview | bytes | None = None
    util: tuple[float | None, float | None, float | None, float | None] = (None,) * 4
    energy_mj: int | None = None
    if not mig:  # a view of the reader's buffer (only a whole GPU's read has samples)
        process_samples = reader.samples(handle, state.last_seen_us)
        if process_samples is not None:
            util = _device_util(nvml, reader, handle, _known(samples, target.entity, state))
            energy_mj = _energy_mj(nvml, handle, energy)
    return _Read(target.entity, mig, lists, process_samples, util, memory, energy_mj)


def _compiled_read(  # noqa: PLR0917 (what the compiled read gave, passed on)
    reader: ProcessReader, compiled: ReadState, answer: int, handle: Handle, entity: Entity,
    last_seen: int, *, util: tuple[float | None, float | None, float | None, float | None],
    energy_mj: int | None,
) -> _Read:
    """The read a compiled call made without its rows (``answer``), as :func:`_read_target`'s.

    ``util``: the device's values, the coders' as the call answered them; when it stopped
    before their calls, they are read here after the rest, in :func:`_read_target`'s order.
    """
    if answer == READ_FAILED:  # carried on by the reader's rules (or raised)
        failed = compiled.failed
        lists, memory, view = reader.complete(handle, last_seen, failed, compiled.code,
                                              samples=True)
        if view is not None and failed < CODER_CALL and (compiled.coders[0]
                                                         or compiled.coders[1]):
            sm, mem, enc, dec = util
            util = (sm, mem,
                    _float(reader.coder_utilization(handle, decoder=False))
                    if compiled.coders[0] else enc,
                    _float(reader.coder_utilization(handle, decoder=True))
                    if compiled.coders[1] else dec)
    else:
        lists, memory, view = reader.complete(handle, last_seen, READ_CALLS, 0, samples=True)
        if answer == READ_CHANGED:
            compiled.keep(lists)
        else:  # the lists of the last read: the same objects
            lists = compiled.lists
    if view is None:  # no per-process utilisation now: as _read_target
        return _Read(entity, False, lists, None, (None,) * 4, memory, None)
    return _Read(entity, False, lists, view, util, memory, energy_mj)


def _energy_mj(nvml: Nvml, handle: Handle, energy: FieldReading | None) -> int | None:
    """The GPU's energy counter (mJ): this cycle's reading of it when there, else NVML's."""
    if energy is not None and energy.code == SUCCESS and energy.value is not None:
        return int(energy.value)
    return nvml.total_energy(handle)


def _known(samples: Iterable[Sample], entity: Entity, state: _GpuState) -> dict[int, float]:
    """The device utilisations among this cycle's DCGM ``samples`` of ``entity``, by field.

    Blank and NaN values are left out (NVML is asked instead). Where they lie in the cycle's
    list is kept (``state.known_at``): while the list has the same length and those places
    hold the same fields of the entity, they are read there (a field is absent or added only
    with a change of the counters, the GPU's support or its instances, which changes the
    list's length); else the list is searched.
    """
    if not isinstance(samples, list):
        samples = list(samples)
    count = len(samples)
    cached = state.known_at
    known: dict[int, float] = {}
    if cached is not None and cached[0] == count:
        for at, field_id in cached[1]:
            sample = samples[at]
            if sample.field_id != field_id or not (sample.entity is entity
                                                   or sample.entity == entity):
                break
            value = sample.value
            if not isinstance(value, str) and value == value:  # noqa: PLR0124 (not NaN)
                known[field_id] = float(value)
        else:
            return known
        known.clear()
    places = state.known_at = (count, tuple(
        (at, sample.field_id) for at, sample in enumerate(samples)
        if sample.field_id in _DEVICE_FIELDS
        and (sample.entity is entity or sample.entity == entity)))
    for at, field_id in places[1]:
        value = samples[at].value
        if not isinstance(value, str) and value == value:  # noqa: PLR0124 (not NaN)
            known[field_id] = float(value)
    return known


def _device_util(
    nvml: Nvml, reader: ProcessReader, handle: Handle, known: Mapping[int, float],
) -> tuple[float | None, float | None, float | None, float | None]:
    """SM, memory, encoder and decoder utilisation in percent.

    This cycle's DCGM samples, or NVML where the counters file does not ask for them.
    """
    sm, mem = _device_rates(nvml, handle, known)
    enc = known[_ENC_UTIL] if _ENC_UTIL in known else \
        _float(reader.coder_utilization(handle, decoder=False))
    dec = known[_DEC_UTIL] if _DEC_UTIL in known else \
        _float(reader.coder_utilization(handle, decoder=True))
    return sm, mem, enc, dec


def _device_rates(nvml: Nvml, handle: Handle, known: Mapping[int, float],
                  ) -> tuple[float | None, float | None]:
    """SM and memory utilisation in percent (as :func:`_device_util`)."""
    if _GPU_UTIL in known and _MEM_COPY_UTIL in known:
        return known[_GPU_UTIL], known[_MEM_COPY_UTIL]
    rates = nvml.utilization(handle)
    if rates is None:
        return None, None
    return float(rates[0]), float(rates[1])


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


_Window = tuple[float, "list[int] | None"]
"""What the rows need of one read of samples (see :func:`_window`)."""


def _window(found: Totals | None, layout: _Layout, state: _GpuState) -> _Window:
    """The rows' inputs from one read's sums; updates ``state``.

    The factor from a process's SM sum (percent) to its average over the read's window, and
    the rows' sums (``FAMILIES x n_rows``; ``None``: the read's own, kept in the layout's row
    map). ``found`` ``None`` (nothing newer: cycles faster than the sample period): no SM
    time, and the last read's newest-period values of the processes still listed.
    """
    if found is None:
        state.period_us = state.period_us or DEFAULT_PERIOD_US  # nothing newer: it stays
        n = len(layout.keys)
        sums = [0] * (FAMILIES * n)
        if state.latest is not None:
            rowof, listed = layout.rowof, layout.listed
            for pid, values in state.latest.latest().items():
                if pid in listed:
                    row = rowof[pid]
                    for at, value in enumerate(values, start=1):
                        sums[at * n + row] += value
        return 0.0, sums
    _, scale = window_scale(found.gap, found.oldest, found.newest, state.last_seen_us,
                            state.period_us)
    _advance(found, layout, state)
    return scale, None


def _advance(found: Totals, layout: _Layout, state: _GpuState) -> None:
    """Keep what the next read needs of this one (its newest sample, the period, its map)."""
    state.last_seen_us = max(found.newest, state.last_seen_us)
    state.period_us = found.period
    state.latest = layout.rowmap


# ---------------------------------------------------------------- rows

_NAN = float("nan")


class _NewPids(Exception):  # noqa: N818 - not an error: a signal to make the rows again
    """The samples name a PID the layout lacks (raised by :func:`_rows`, nothing changed)."""


def _rows(read: _Read, layout: _Layout, state: _GpuState, values_of: RowValues, *,
          final: bool = False, add_energy: bool = True) -> NativeRows:
    """The rows of one GPU or MIG instance (their floating-point part by ``values_of``).

    ``add_energy`` false: this cycle's energy was added already (to the counters the layout
    took over).

    Raises:
        _NewPids: the read has samples of a PID the layout lacks, and not ``final`` (nothing
            changed: the caller makes the layouts again and asks with ``final``).
    """
    labels = layout.labels
    n = len(layout.keys)
    memory_used = _NAN if read.memory_used is None else float(read.memory_used)
    rowmap = layout.rowmap
    if read.samples is None:
        out = values_of(rowmap, 0.0, (_NAN, _NAN, _NAN, _NAN, memory_used, _NAN))
        return NativeRows(read.entity, (PROCESSES, MEMORY_USED, AVAILABLE),
                          (labels, labels, ((("reason", "mig" if read.mig else
                                              "not_supported"),),)),
                          (layout.counts, out[5 * n:6 * n], (0.0,)))
    joules = _joules(read.energy_mj, state, layout) if add_energy else None
    sm, mem, enc, dec = read.device_util
    device = (_NAN if sm is None else sm, _NAN if mem is None else mem,
              _NAN if enc is None else enc, _NAN if dec is None else dec, memory_used,
              _NAN if joules is None else joules)
    raw = read.samples
    found: Totals | None = None
    values: list[float] | None = None
    if raw:
        found, values = values_of.cycle(raw, len(raw) // SAMPLE_SIZE, state.last_seen_us,
                                        state.period_us or 0, rows=rowmap, device=device)
        if values is not None:
            _advance(found, layout, state)
        elif found.unknown and not final:
            raise _NewPids
        elif not found.used and not found.unknown:
            found = None
    if values is None:  # nothing newer, or (after the rows were made again) an unknown PID
        scale, sums = _window(found, layout, state)
        values = values_of(rowmap, scale, device, sums)
    if joules is not None:
        state.energy_mj = read.energy_mj  # added: the next interval starts here
    return _block(read.entity, layout, state, values, util=read.device_util,
                  energy_mj=read.energy_mj)


def _block(entity: Entity, layout: _Layout, state: _GpuState, values: list[float], *,
           util: tuple[float | None, float | None, float | None, float | None],
           energy_mj: int | None) -> NativeRows:
    """A whole GPU's block of rows from the row values (the families of the values known)."""
    sm, mem, enc, dec = util
    present = (sm is not None, mem is not None, enc is not None, dec is not None,
               energy_mj is not None)
    shape = layout.shape
    if shape is None or shape[0] != present:
        shape = layout.shape = _shape(present, layout.labels)
    _, names, columns_of, label_rows = shape
    columns = columns_of(values)  # memory, the utilisations present, the energy counters
    if energy_mj is None:
        return new_native_rows(entity, names, label_rows, (layout.counts, *columns[:-1]))
    energy_labels, energy = _energy(state, layout, columns[-1])
    if energy_labels is not layout.labels:  # with the counters of workloads gone
        label_rows = (*label_rows[:-1], energy_labels)
    return new_native_rows(entity, names, label_rows, (layout.counts, *columns[:-1], energy))


_Shape = tuple[tuple[bool, ...], tuple[str, ...],
               Callable[[list[float]], tuple[list[float], ...]], tuple[tuple[Labels, ...], ...]]
"""Which device values a block had (sm, mem, enc, dec, energy), its family names, what takes
its columns from the row values (memory, the utilisation families present, the energy
counters), and its labels (:func:`_shape`)."""


def _shape(present: tuple[bool, ...], labels: tuple[Labels, ...]) -> _Shape:
    """The families of a whole GPU's block for the device values ``present``."""
    n = len(labels)
    families = tuple(at for at, known in enumerate(present[:4], start=1) if known)
    names = (PROCESSES, MEMORY_USED, *(UTIL_FAMILIES[at - 1] for at in families),
             *((ENERGY,) if present[4] else ()))
    columns = itemgetter(*(slice(at * n, (at + 1) * n) for at in (5, *families, 6)))
    return present, names, columns, (labels,) * len(names)


def _joules(energy_mj: int | None, state: _GpuState, layout: _Layout) -> float | None:
    """This interval's device energy (joules), the layout's counters made live for it.

    ``None`` (no energy reading): the counters are forgotten. The counters of the layout's
    rows live in its row map while the layout stays the same (the fast path adds to them);
    when the rows change, the last ones' counters are kept by workload, seen until the last
    cycle, and the new rows take theirs. The caller moves ``state.energy_mj`` on once it has
    added the interval.
    """
    if energy_mj is None:
        state.energy_mj = None
        state.energy.clear()
        state.energy_rows = None
        return None
    if state.energy_rows is not layout:
        _live(state, layout)
    previous = state.energy_mj
    return 0.0 if previous is None or energy_mj < previous else \
        (energy_mj - previous) / 1000.0


def _live(state: _GpuState, layout: _Layout) -> None:
    """Make the layout's row map hold the energy counters of its rows (see :func:`_joules`)."""
    live = state.energy_rows
    counters = state.energy  # the workloads not in the rows: [joules, last seen]
    if live is not None:
        for key, value in zip(live.keys, live.rowmap.energy, strict=False):
            counters[key] = [value, state.energy_seen]
    layout.rowmap.energy[:len(layout.keys)] = [counters.pop(key, (0.0,))[0]
                                               for key in layout.keys]
    state.energy_rows = layout


def _energy(state: _GpuState, layout: _Layout, values: list[float],
            ) -> tuple[tuple[Labels, ...], list[float]]:
    """The energy counters' labels and values (``values``: the rows'), this interval's added.

    A workload gone from the GPU keeps its (no longer growing) counter for
    :data:`ENERGY_KEEP_S`, so that its last increase is scraped.
    """
    now = time.monotonic()
    state.energy_seen = now
    counters = state.energy
    if counters:
        for key in [k for k, (_, seen) in counters.items() if now - seen > ENERGY_KEEP_S]:
            del counters[key]
    if not counters:
        return layout.labels, values
    merged = {key: value for key, (value, _) in counters.items()}
    merged.update(zip(layout.keys, values, strict=True))
    ordered = sorted(merged, key=WorkloadKey.order)
    return tuple(key.label_pairs() for key in ordered), [merged[key] for key in ordered]
