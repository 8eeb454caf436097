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

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial

from gpu_exporter.collectors.base import DeviceView, Readings, Target
from gpu_exporter.config import WorkloadSettings
from gpu_exporter.model import Entity, Labels, Native, Sample
from gpu_exporter.nvml import SUCCESS, FieldReading, Handle, Nvml, ProcessInfo, ProcessSamples
from gpu_exporter.workloads.attribution import (
    MPS_SERVER_COMM,
    UNATTRIBUTED,
    WorkloadKey,
    average_utilization,
    reconcile,
    split_energy,
    workload_key,
)
from gpu_exporter.workloads.cgroup import WorkloadRef
from gpu_exporter.workloads.engine import ContainerNames
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


_Keyed = tuple["WorkloadRef | None", bool, object, Entity, WorkloadKey]
"""A process's row and what it was made from (see ``WorkloadCollector._key``)."""


@dataclass(slots=True)
class _GpuState:
    """What one GPU carries between cycles (touched only by that GPU's worker thread)."""

    pids: PidCache
    last_seen_us: int = 0
    period_us: int | None = None
    energy_mj: int | None = None
    energy: dict[WorkloadKey, list[float]] = field(default_factory=dict)  # [joules, seen]
    latest: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)
    keys: dict[int, _Keyed] = field(default_factory=dict)  # pid -> its row, while valid


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
        self._names = (ContainerNames(settings.engine_socket)
                       if settings.engine_socket is not None else None)
        self._state: dict[int, _GpuState] = {}

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
             entity: Entity, pid: int, *, sole: bool) -> WorkloadKey:
        """The row of a process on ``entity``.

        Kept in ``cache`` (per GPU, across cycles) while what it was made from is the same:
        the process's workload, whether it is alone on the entity, the pod directory; an
        engine-named container's name is looked up again until the engine names it.
        """
        ref = refs.get(pid)
        pods = self._pods.current if self._pods is not None else None
        cached = cache.get(pid)
        if cached is not None and cached[0] is ref and cached[1] == sole \
                and cached[2] is pods and cached[3] is entity:
            return cached[4]
        key = workload_key(ref, pid, pid_labels=self._settings.pid_labels,
                           labels=self._labels(ref, entity, sole=sole))
        if ref is None or ref.kind != "container" or self._names is None or key.labels:
            cache[pid] = (ref, sole, pods, entity, key)
        return key

    def collect(
        self, device: DeviceView, readings: Readings, samples: Iterable[Sample] = (),
    ) -> list[Native]:
        """Read one GPU's processes and return its workload series.

        ``readings`` and ``samples``: what the DCGM collectors read of this GPU this cycle;
        the device's energy (NVML field 83) and utilisations (``DCGM_FI_DEV_GPU_UTIL``,
        ``MEM_COPY_UTIL``, ``ENC_UTIL``, ``DEC_UTIL``) are taken from them when there, so
        the rows add up to exactly what the DCGM series show (and NVML is not asked twice).
        """
        known = {s.field_id: float(s.value) for s in samples
                 if s.field_id in _DEVICE_FIELDS and s.entity == device.entity
                 and not isinstance(s.value, str)}
        energy = readings.get((_NVML_ENERGY, 0))
        state = self._state.get(device.entity.gpu)
        if state is None:
            state = self._state[device.entity.gpu] = _GpuState(
                PidCache(self._settings.procfs_root))
        nvml = device.nvml
        reads = [_read_target(nvml, target, state, whole=not device.info.mig_enabled,
                              known=known if target.entity == device.entity else {},
                              energy=energy if target.entity == device.entity else None)
                 for target in device.targets["instance"]]
        pids = {info.pid for read in reads for info, _ in read.processes}
        sampled = {pid for read in reads if read.samples is not None for pid in read.samples.pids}
        refs = state.pids.resolve(pids, sampled)
        if len(state.keys) > 2 * len(refs) + 64:  # forget PIDs long gone
            state.keys = {pid: keyed for pid, keyed in state.keys.items() if pid in refs}
        out: list[Native] = []
        for read in reads:
            # the kubelet-only pod join needs one pod container alone on the entity
            here = {info.pid for info, _ in read.processes}
            if read.samples is not None:
                here.update(read.samples.pids)
            pods_here = {(ref.pod_uid, ref.container_id) for pid in here
                         if (ref := refs.get(pid)) is not None and ref.kind == "pod"}
            sole = len(pods_here) == 1
            key_of = partial(self._key, refs, state.keys, read.entity, sole=sole)
            processes = _without_mps_server(read, state.pids)
            out.extend(_rows(read, processes, key_of, state))
        return out


@dataclass(slots=True)
class _Read:
    """What was read of one GPU or MIG instance this cycle."""

    entity: Entity
    mig: bool
    processes: list[tuple[ProcessInfo, str]]
    mps_clients: bool
    samples: ProcessSamples | None  # None: no per-process utilisation here
    device_util: tuple[float | None, float | None, float | None, float | None]
    memory_used: int | None
    energy_mj: int | None


def _read_target(
    nvml: Nvml, target: Target, state: _GpuState, *, whole: bool, known: Mapping[int, float],
    energy: FieldReading | None,
) -> _Read:
    """The NVML reads of one GPU or MIG instance (lists, samples, device values).

    Device values already read this cycle (``known`` DCGM samples, the ``energy`` field
    reading) are used as they are; the others are read here.
    """
    handle = target.handle
    processes: list[tuple[ProcessInfo, str]] = []
    seen: set[int] = set()
    mps = nvml.running_processes(handle, "mps") or []
    for kind, listed in (("mps", mps), ("compute", nvml.running_processes(handle, "compute")),
                         ("graphics", nvml.running_processes(handle, "graphics"))):
        for info in listed or ():
            if info.pid not in seen:  # an MPS client listed as compute too: counted once
                seen.add(info.pid)
                processes.append((info, kind))
    memory = nvml.memory_info(handle)
    mig = target.entity.is_mig or not whole
    samples: ProcessSamples | None = None
    util: tuple[float | None, float | None, float | None, float | None] = (None,) * 4
    energy_mj: int | None = None
    if not mig:
        samples = nvml.process_utilization(handle, state.last_seen_us)
        if samples is not None:
            util = _device_util(nvml, handle, known)
            energy_mj = (int(energy.value) if energy is not None and energy.code == SUCCESS
                         and energy.value is not None else nvml.total_energy(handle))
    return _Read(target.entity, mig, processes, bool(mps), samples, util,
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


def _by_key(item: tuple[WorkloadKey, float]) -> tuple[str, str, Labels, int]:
    return item[0].order()


def _float(value: int | None) -> float | None:
    return None if value is None else float(value)


def _without_mps_server(read: _Read, pids: PidCache) -> list[tuple[ProcessInfo, str]]:
    """The processes, less the MPS server when MPS clients are listed (their memory is its)."""
    if not read.mps_clients:
        return read.processes
    return [(info, kind) for info, kind in read.processes
            if kind != "compute" or not (pids.name(info.pid) or "").startswith(MPS_SERVER_COMM)]


def _rows(
    read: _Read, processes: list[tuple[ProcessInfo, str]], key_of: Callable[[int], WorkloadKey],
    state: _GpuState,
) -> Iterable[Native]:
    """The series of one GPU or MIG instance."""
    entity = read.entity
    counts: dict[WorkloadKey, float] = {UNATTRIBUTED: 0.0}
    memory_parts: dict[WorkloadKey, float] = {UNATTRIBUTED: 0.0}
    keys: dict[int, WorkloadKey] = {}
    for info, _ in processes:
        key = keys[info.pid] = key_of(info.pid)
        counts[key] = counts.get(key, 0.0) + 1.0
        memory_parts[key] = memory_parts.get(key, 0.0) + float(info.used_bytes or 0)
    device_memory = (float(read.memory_used) if read.memory_used is not None
                     else sum(memory_parts.values()))
    window = None
    if read.samples is not None:
        window = average_utilization(read.samples, state.last_seen_us, state.period_us)
        state.last_seen_us = window.newest_us
        state.period_us = window.period_us
        if read.samples.pids:
            state.latest = window.latest
        else:  # nothing newer yet (cycles faster than the sample period): the last period's
            # values of the processes still listed
            window = dataclasses.replace(window, latest={
                pid: values for pid, values in state.latest.items() if pid in keys})
        for pid in window.busy:
            if pid not in keys:  # a process seen only in samples: 0 listed
                key = keys[pid] = key_of(pid)
                counts.setdefault(key, 0.0)
    ordered = sorted(counts, key=WorkloadKey.order)
    labels = {key: key.label_pairs() for key in ordered}
    rows = [Native(PROCESSES, counts[key], labels[key], entity) for key in ordered]
    memory = reconcile(memory_parts, device_memory)
    rows.extend(Native(MEMORY_USED, memory.get(key, 0.0), labels[key], entity)
                for key in ordered)
    if window is None:
        rows.append(Native(AVAILABLE, 0.0, (("reason", "mig" if read.mig else "not_supported"),),
                           entity))
        return rows
    util_parts: tuple[dict[WorkloadKey, float], ...] = tuple(
        dict.fromkeys(ordered, 0.0) for _ in UTIL_FAMILIES)
    sm_parts, mem_parts, enc_parts, dec_parts = util_parts
    for pid, (sm, mem, enc, dec) in window.latest.items():
        key = keys[pid]
        sm_parts[key] += sm
        mem_parts[key] += mem
        enc_parts[key] += enc
        dec_parts[key] += dec
    for family, parts, device in zip(UTIL_FAMILIES, util_parts, read.device_util, strict=True):
        if device is not None:
            shares = reconcile(parts, device / 100.0)
            rows.extend(Native(family, shares[key], labels[key], entity) for key in ordered)
    busy = dict.fromkeys(ordered, 0.0)
    for pid, value in window.busy.items():
        busy[keys[pid]] += value
    rows.extend(_energy(read, state, busy, memory_parts, labels))
    return rows


def _energy(
    read: _Read, state: _GpuState, sm_parts: dict[WorkloadKey, float],
    memory_parts: dict[WorkloadKey, float], labels: Mapping[WorkloadKey, Labels],
) -> list[Native]:
    """Add this interval's energy to the counters.

    A workload gone from the GPU keeps its (no longer growing) counter for
    :data:`ENERGY_KEEP_S`, so that its last increase is scraped.
    """
    if read.energy_mj is None:
        state.energy_mj = None
        state.energy.clear()
        return []
    previous, state.energy_mj = state.energy_mj, read.energy_mj
    joules = 0.0 if previous is None or read.energy_mj < previous else \
        (read.energy_mj - previous) / 1000.0
    now = time.monotonic()
    counters = state.energy
    for key in labels:
        counters.setdefault(key, [0.0, now])[1] = now
    for key, value in split_energy(joules, sm_parts, memory_parts).items():
        counters[key][0] += value
    for key in [k for k, (_, seen) in counters.items() if now - seen > ENERGY_KEEP_S]:
        del counters[key]
    return [Native(ENERGY, value, labels[key] if key in labels else key.label_pairs(),
                   read.entity)
            for key, (value, _) in sorted(counters.items(), key=lambda kv: kv[0].order())]
