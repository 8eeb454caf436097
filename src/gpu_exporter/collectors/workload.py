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
   (:mod:`gpu_exporter.workloads.attribution`), and the energy counters.

Series (GPU labels as on every ``gpu_exporter_*`` family, MIG instances with ``GPU_I_PROFILE``
and ``GPU_I_ID``; ``namespace``/``pod``/``container`` where known; ``pid`` only with
``--workload-pid-labels``)::

    gpu_exporter_workload_sm_utilization_ratio{gpu="0",...,workload_kind="pod",
        workload="3f2a9c1b7d4e",container="trainer",namespace="ml",pod="trainer-0"} 0.42
    gpu_exporter_workload_sm_utilization_ratio{gpu="0",...,workload_kind="unattributed",
        workload="unattributed"} 0.03
    gpu_exporter_workload_memory_utilization_ratio{...} 0.18
    gpu_exporter_workload_encoder_utilization_ratio{...} 0
    gpu_exporter_workload_decoder_utilization_ratio{...} 0
    gpu_exporter_workload_memory_used_bytes{...,workload_kind="slurm_job",workload="4242"} 8.6e+09
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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial

from gpu_exporter.collectors.base import DeviceView, Target
from gpu_exporter.config import WorkloadSettings
from gpu_exporter.model import Entity, Labels, Native
from gpu_exporter.nvml import Nvml, ProcessInfo, ProcessSample
from gpu_exporter.workloads.attribution import (
    MPS_SERVER_COMM,
    UNATTRIBUTED,
    WorkloadKey,
    average_utilization,
    reconcile,
    split_energy,
    sum_by_key,
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
UTIL_FAMILIES = (SM, MEMORY_UTIL, ENCODER, DECODER)


@dataclass(slots=True)
class _GpuState:
    """What one GPU carries between cycles (touched only by that GPU's worker thread)."""

    pids: PidCache
    last_seen_us: int = 0
    period_us: int | None = None
    energy_mj: int | None = None
    energy: dict[WorkloadKey, float] = field(default_factory=dict)


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

    def _key(self, refs: Mapping[int, WorkloadRef | None], cache: dict[int, WorkloadKey],
             entity: Entity, pid: int, *, sole: bool) -> WorkloadKey:
        """The row of a process on ``entity`` (memoised in ``cache`` for this entity)."""
        key = cache.get(pid)
        if key is None:
            ref = refs.get(pid)
            key = cache[pid] = workload_key(ref, pid, pid_labels=self._settings.pid_labels,
                                            labels=self._labels(ref, entity, sole=sole))
        return key

    def collect(self, device: DeviceView) -> list[Native]:
        """Read one GPU's processes and return its workload series."""
        state = self._state.get(device.entity.gpu)
        if state is None:
            state = self._state[device.entity.gpu] = _GpuState(
                PidCache(self._settings.procfs_root))
        nvml = device.nvml
        reads = [_read_target(nvml, target, state, whole=not device.info.mig_enabled)
                 for target in device.targets["instance"]]
        pids = {info.pid for read in reads for info, _ in read.processes}
        refs = state.pids.resolve(pids, {s.pid for read in reads for s in read.samples or ()})
        out: list[Native] = []
        for read in reads:
            # the kubelet-only pod join needs one pod container alone on the entity
            here = {info.pid for info, _ in read.processes}
            here.update(s.pid for s in read.samples or ())
            pods_here = {(ref.pod_uid, ref.container_id) for pid in here
                         if (ref := refs.get(pid)) is not None and ref.kind == "pod"}
            sole = len(pods_here) == 1
            key_of = partial(self._key, refs, {}, read.entity, sole=sole)
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
    samples: list[ProcessSample] | None  # None: no per-process utilisation here
    device_util: tuple[float | None, float | None, float | None, float | None]
    memory_used: int | None
    energy_mj: int | None


def _read_target(nvml: Nvml, target: Target, state: _GpuState, *, whole: bool) -> _Read:
    """The NVML reads of one GPU or MIG instance (lists, samples, device values)."""
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
    samples: list[ProcessSample] | None = None
    util: tuple[float | None, float | None, float | None, float | None] = (None,) * 4
    energy: int | None = None
    if not mig:
        samples = nvml.process_utilization(handle, state.last_seen_us)
        if samples is not None:
            rates = nvml.utilization(handle)
            util = (None if rates is None else float(rates[0]),
                    None if rates is None else float(rates[1]),
                    _float(nvml.encoder_utilization(handle)),
                    _float(nvml.decoder_utilization(handle)))
            energy = nvml.total_energy(handle)
    return _Read(target.entity, mig, processes, bool(mps), samples, util,
                 None if memory is None else memory.used, energy)


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
    counts = sum_by_key((key_of(info.pid), 1.0) for info, _ in processes)
    memory_parts = sum_by_key((key_of(info.pid), float(info.used_bytes or 0))
                              for info, _ in processes if info.used_bytes is not None)
    for key in counts:
        memory_parts.setdefault(key, 0.0)
    device_memory = (float(read.memory_used) if read.memory_used is not None
                     else sum(memory_parts.values()))
    rows: list[Native] = []
    add = rows.append
    counts.setdefault(UNATTRIBUTED, 0.0)
    for key, value in sorted(counts.items(), key=_by_key):
        add(Native(PROCESSES, value, key.label_pairs(), entity))
    for key, value in sorted(reconcile(memory_parts, device_memory).items(), key=_by_key):
        add(Native(MEMORY_USED, value, key.label_pairs(), entity))
    if read.samples is None:
        add(Native(AVAILABLE, 0.0, (("reason", "mig" if read.mig else "not_supported"),),
                   entity))
        return rows
    window = average_utilization(read.samples, state.last_seen_us, state.period_us)
    state.last_seen_us = window.newest_us
    state.period_us = window.period_us
    present = dict.fromkeys(counts, 0.0)
    sm_parts = present
    for index, family in enumerate(UTIL_FAMILIES):
        device = read.device_util[index]
        parts = dict(present)
        for pid, values in window.per_pid.items():
            key = key_of(pid)
            parts[key] = parts.get(key, 0.0) + values[index]
        if index == 0:
            sm_parts = parts
        if device is None:
            continue
        for key, value in sorted(reconcile(parts, device / 100.0).items(), key=_by_key):
            add(Native(family, value, key.label_pairs(), entity))
    rows.extend(_energy(read, state, sm_parts, memory_parts))
    return rows


def _energy(
    read: _Read, state: _GpuState, sm_parts: dict[WorkloadKey, float],
    memory_parts: dict[WorkloadKey, float],
) -> list[Native]:
    """Add this interval's energy to the counters; rows of workloads gone are dropped."""
    if read.energy_mj is None:
        state.energy_mj = None
        state.energy.clear()
        return []
    previous, state.energy_mj = state.energy_mj, read.energy_mj
    joules = 0.0 if previous is None or read.energy_mj < previous else \
        (read.energy_mj - previous) / 1000.0
    counters = {key: state.energy.get(key, 0.0) for key in (*sm_parts, UNATTRIBUTED)}
    for key, value in split_energy(joules, sm_parts, memory_parts).items():
        counters[key] = counters.get(key, 0.0) + value
    state.energy = counters
    return [Native(ENERGY, value, key.label_pairs(), read.entity)
            for key, value in sorted(counters.items(), key=_by_key)]
