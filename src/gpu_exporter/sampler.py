"""The sampler: one blocking collection cycle over every selected GPU, returned as data.

The server's collector thread calls :meth:`Sampler.collect_once` at the collect interval
and publishes the :class:`~gpu_exporter.model.Cycle`; a scrape never reaches here.

Per cycle and GPU: one batched ``nvmlDeviceGetFieldValues`` (every wanted NVML field id), then
each active collector in registry order. Static identity is read once per probe, handles are
cached, and only lost GPUs are re-probed (every cycle), so a cycle costs a handful of NVML calls
per GPU. With the fast-path library built, the batched call and the plain device calls of the
field-values, clocks, temperature, power, utilisation, memory and (GPM) profiling collectors
are made in one compiled call per GPU (:mod:`gpu_exporter.fastread`, a plan built once per
GPU view and field set); those collectors then hand out, in their turn, last cycle's samples
for the values that did not change and new ones for those that did (the same samples and
marks as their Python reads).

Isolation: ``GPU_IS_LOST`` (or an unexpected failure while probing) on one GPU marks it
``gpu_exporter_gpu_up 0`` and drops its partial samples; the other GPUs keep exporting. A
collector failing on a GPU sets ``gpu_exporter_collector_success{collector} 0`` and marks its
fields ``error``; the rest of that GPU's fields are still exported. The GPUs are read one
after another in one worker thread; once one of them is late (``LATE_S``), the GPUs after it
are read in their own threads, all at once (:class:`_Runner`). A GPU still answering when the
cycle stops waiting (``slow_s``) is slow: its last complete read is exported again with
``gpu_exporter_gpu_slow 1``. A read outstanding for the deadline (``deadline_s``) makes the GPU
hung: ``gpu_exporter_gpu_up 0``, left out until the stuck call returns, then probed again; the
deadlines of all GPUs run concurrently. Shutdown never waits on a stuck call for longer than
its time limit.

Field support: each (entity, wanted field) has a reason, and ``gpu_exporter_field_supported``
exports only the news: a row for every field that is not available (0 with the reason), and a
row ``reason="supported"`` (1) for a field that was unavailable earlier in this run and is
supported again (so a recovery reads as a change). A requested field without a row is supported
(``mig_instance``/``mig_parent`` are no news either: the field is read once at the other MIG
level). The reasons: ``supported`` (1), or 0 with ``not_supported`` (NVML says so), ``no_gpm``
(profiling on a GPU without GPM, no DCGM engine asked for; with one, the DCGM source's
reasons: :data:`gpu_exporter.dcgmsource.REASON_TEXT`), ``no_nvml_source`` (a DCGM field we
cannot source), ``error`` (the read failed this cycle), ``mig_instance`` (with
``--mig-device-fields-once``, a device-level field: reported once on the physical GPU, not per
MIG instance), ``mig_parent`` (an
instance-level field: reported per MIG instance, not on the MIG-enabled GPU) or
``no_mig_instances`` (an instance-level field on a MIG-enabled GPU that has no instance). Each
GPU's unavailable fields are logged once in one summary line (again only if the set changes).

MIG layout: by default a MIG-enabled GPU with instances is exported as dcgm-exporter does, as its
instances only: device-level values (clocks, power, temperature, ...) are read once from the GPU
and repeated on every instance, with ``GPU_I_PROFILE`` and ``GPU_I_ID`` (so ``sum()`` over
instances counts the GPU once per instance). ``--mig-device-fields-once`` exports them once on
the GPU instead, without the MIG labels.
"""

from __future__ import annotations

import dataclasses
import logging
import operator
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from gpu_exporter.catalog import (
    DERIVED,
    EXP_GPU_HEALTH_STATUS,
    PLACEHOLDER_ZERO,
    DerivedSpec,
    base_of,
    lookup,
)
from gpu_exporter.catalog import field_name as catalog_field_name
from gpu_exporter.collectors.base import (
    Collector,
    DcgmFeed,
    DeviceView,
    ResultBuilder,
    make_view,
)
from gpu_exporter.collectors.field_values import field_requests
from gpu_exporter.collectors.registry import COLLECTORS, Deps
from gpu_exporter.devices import ALL, DeviceSelector, parse_device_selector
from gpu_exporter.events import XID_ERRORS, XID_ERRORS_COUNT, EventLog, EventWatcher
from gpu_exporter.fastread import DeviceRead
from gpu_exporter.fastread import load as load_reads
from gpu_exporter.model import (
    Cycle,
    Entity,
    Native,
    NativeRows,
    Natives,
    Sample,
    Unsupported,
    new_native,
    new_sample,
)
from gpu_exporter.nvml import (
    INVALID_ARGUMENT,
    NOT_FOUND,
    FieldReading,
    GpuInfo,
    GpuLostError,
    Handle,
    Nvml,
    NvmlError,
)

if TYPE_CHECKING:  # loaded only with --workload-metrics (backend.open_backend)
    from gpu_exporter.collectors.workload import WorkloadCollector

log = logging.getLogger(__name__)

R = TypeVar("R")

SUPPORTED = "supported"
NO_NVML_SOURCE = "no_nvml_source"
MIG_INSTANCE = "mig_instance"
MIG_PARENT = "mig_parent"
NO_MIG_INSTANCES = "no_mig_instances"
ERROR = "error"
_UNAVAILABLE_REASONS = frozenset({
    "not_supported", "no_gpm", NO_NVML_SOURCE, NO_MIG_INSTANCES,
    # the DCGM source's lasting ones (dcgmsource.REASON_TEXT); not its per-cycle ones
    "dcgm_no_library", "dcgm_no_gpu", "profiling_not_supported", "profiling_module_not_loaded",
    "profiling_multi_pass",
})
EVENT_STOP_GRACE_S = 0.01
"""How long :meth:`Sampler.close` waits for the event thread to leave its NVML wait."""

_NOT_NEWS = frozenset({SUPPORTED, MIG_INSTANCE, MIG_PARENT})
"""Reasons not exported: the field is read here, or exactly once at the other MIG level."""
_NEEDS_READINGS = frozenset({"field_values", "nvlink", "pcie", "health"})
MIG_CHECK_EVERY = 10
"""Every this many cycles, MIG-capable GPUs get the full MIG layout check (new instances).

Every cycle, a MIG-enabled GPU gets a cheap one: MIG mode and the GPU instance id behind each
known MIG device handle. A ``MigConfigChange`` event triggers a re-probe at once.
"""
DEFAULT_DEADLINE_S = 10.0
"""How long one GPU's read may take before the GPU is reported hung."""
LATE_S = 0.05
"""A GPU read in the shared sequence is late after this long (or a quarter of the time a cycle
waits, if shorter): the GPUs behind it are then handed to their own threads (see _Runner)."""
EVENT_WAIT_STUCK_S = 5.0
"""An NVML event wait this far past its own timeout is stuck."""


@dataclass(slots=True)
class _Gpu:
    """Book-keeping of one selected physical GPU."""

    index: int
    entity: Entity
    view: DeviceView | None = None
    logged_unavailable: frozenset[tuple[int, str]] | None = None
    # per entity: its reasons, their natives, and the marks they came from (a cycle with the
    # same marks reuses them without looking at each field)
    support_cache: dict[Entity, tuple[tuple[str, ...], tuple[Native, ...], dict[int, str]]] = (
        field(default_factory=dict))
    static_reasons: dict[Entity, tuple[str | None, ...]] | None = None
    # fields that were news on an entity at some point (kept across re-probes): they stay
    # exported, 1 once supported again, so a recovery is seen as a change, not a vanished row
    flagged: dict[Entity, frozenset[int]] = field(default_factory=dict)
    layout: tuple[bool, tuple[tuple[int, int], ...]] = (False, ())
    reprobe: bool = False
    down_logged: bool = False
    hung_since: float | None = None  # set while its worker is stuck in a call past the deadline
    task: _Task[_Accumulator] | None = None  # its read in progress (or done, not yet taken)
    last: _Accumulator | None = None  # its last complete read (exported again while slow)
    slow: bool = False  # its last read took longer than the cycle waits (or still does)
    register_events: bool = False  # register the probed GPU with the event watcher
    # its last read's samples and marks, in order (reused where a value is unchanged)
    reuse: tuple[Sequence[Sample], Sequence[Unsupported]] = ((), ())
    # its own natives of the last cycle by name, reused while unchanged (see _unchanged);
    # ``up`` is written by its read, the others by the collector thread
    up: Native | None = None
    natives: dict[str, Native] = field(default_factory=dict)
    # what its worker is doing (for the hung-GPU log line; see _stage)
    stage: str | Callable[[], str] = ""
    fast: DeviceRead | None = None  # its compiled read (plan and kept values), if any


@dataclass(slots=True)
class _Accumulator:
    """What one GPU's read gathers as it goes (``now``: the cycle's clock when it began).

    ``durations``: seconds per timed step, in the order of :attr:`Sampler._timed` (a list:
    the cycle adds the GPUs' up in one pass each).
    """

    durations: list[float]
    failed: set[str] = field(default_factory=set)
    samples: list[Sample] = field(default_factory=list)
    natives: list[Native] = field(default_factory=list)
    blocks: list[NativeRows] = field(default_factory=list)  # the workload collector's rows
    entities: list[Entity] = field(default_factory=list)
    now: float = 0.0
    generation: int = 0  # the field set it was read for (see Sampler.set_wanted)
    up: bool = False  # the GPU was read (gpu_exporter_gpu_up 1)
    readings: Mapping[tuple[int, int], FieldReading] | None = None  # for the workload collector


@dataclass(frozen=True, slots=True)
class _Active:
    """A collector that runs this configuration, with the wanted fields it produces."""

    name: str
    collector: Collector
    fields: frozenset[int]
    stage: str


class Sampler:
    """Collects every selected GPU once per call; owns the collectors and the event thread.

    Args:
        nvml: an initialised :class:`~gpu_exporter.nvml.Nvml`.
        fields: wanted DCGM field ids (from the parsed counters file).
        devices: ``-d`` selector (parsed or text).
        xid_window_s: window of the XID fields (``-x`` in seconds).
        clock_events_window_s: window of ``DCGM_EXP_CLOCK_EVENTS_COUNT`` (seconds).
        names: field id -> metric name for the ``field`` label (defaults to DCGM names).
        disabled: collector names turned off.
        events: start the NVML event thread when XID fields are wanted.
        clock: monotonic time source (windows, rates).
        wall: wall-clock time source (``Cycle.started``).
        deadline_s: how long one GPU's read (or its probe) may take; a GPU that overruns it
            is reported hung (down) and left out until its stuck call returns.
        slow_s: how long a cycle waits for the GPUs (at most ``deadline_s``, the default); a
            GPU still answering then is slow: its last values are exported again, marked.
        mig_device_fields_once: export device-level fields of a MIG-enabled GPU once on the
            GPU instead of on every MIG instance (``--mig-device-fields-once``).
        placeholder_zeros: export 0 for the fields dcgm-exporter reports as 0 where the GPU
            cannot provide them (:data:`~gpu_exporter.catalog.PLACEHOLDER_ZERO`); False with
            ``--omit-unsupported-zeros``.
        workloads: the per-workload collector (``--workload-metrics``), run after the DCGM
            collectors in each GPU's worker; ``None`` (the default): no per-process NVML call.
        dcgm: a DCGM host engine for the profiling fields of GPUs without GPM (``-r`` /
            ``--dcgm-local``); asked for its values at the start of each cycle. Its owner
            closes it.
        compiled_reads: read each GPU's plain device values (batched field values, clocks,
            temperature, power, utilisation, memory, GPM) in one compiled call per GPU
            (:mod:`gpu_exporter.fastread`) when the fast-path library is built; False: the
            collectors' own Python reads (the same samples and marks).

    The GPUs are collected one after another in a daemon worker thread, watched by the
    caller; a GPU that is late leaves the others to their own threads (see :class:`_Runner`),
    so a hung NVML call costs one GPU, not the cycle, and the deadlines of hung GPUs run
    concurrently.

    Raises:
        ValueError: the device selector names GPUs or instances that do not exist.
    """

    def __init__(
        self,
        *,
        nvml: Nvml,
        fields: frozenset[int],
        devices: DeviceSelector | str = ALL,
        xid_window_s: float = 300.0,
        clock_events_window_s: float = 300.0,
        names: Mapping[int, str] | None = None,
        disabled: frozenset[str] = frozenset(),
        events: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        deadline_s: float = DEFAULT_DEADLINE_S,
        slow_s: float | None = None,
        mig_device_fields_once: bool = False,
        placeholder_zeros: bool = True,
        workloads: WorkloadCollector | None = None,
        dcgm: DcgmFeed | None = None,
        compiled_reads: bool = True,
    ) -> None:
        self._nvml = nvml
        self._reads = load_reads() if compiled_reads else None
        self._workloads = workloads
        self._dcgm = dcgm
        self._dcgm_fields: frozenset[int] = frozenset()
        self._device_fields_once = mig_device_fields_once
        self._placeholder_zeros = placeholder_zeros
        self._zeros: tuple[int, ...] = ()  # sorted
        self._selector = parse_device_selector(devices) if isinstance(devices, str) else devices
        self._clock = clock
        self._wall = wall
        self._names = dict(names or {})
        self._disabled = disabled
        self._events_enabled = events
        self.event_log = EventLog(xid_window_s=xid_window_s,
                                  clock_window_s=clock_events_window_s)
        self._watcher: EventWatcher | None = None
        deps = Deps(self.event_log, self._xid_supported, self._peers, dcgm)
        self._collectors: dict[str, Collector] = {
            name: info.factory(deps) for name, info in COLLECTORS.items()
            if name not in disabled
        }
        self._collections = 0
        self._closed = False
        self._idle = True
        self._wanted: frozenset[int] = frozenset()
        self._derive: dict[int, list[DerivedSpec]] = {}
        self._hidden: frozenset[int] = frozenset()
        self._wanted_sorted: tuple[int, ...] = ()
        self._active: tuple[_Active, ...] = ()
        # per active collector: name, its collect_into, fields, stage, needs the readings,
        # its place in _timed
        self._plan: tuple[tuple[str, _Into, frozenset[int], str, bool, int], ...] = ()
        # the names of gpu_exporter_collector_duration_seconds, in _Accumulator.durations order:
        # the active collectors, then field_values (if read) and workload (if asked for)
        self._timed: tuple[str, ...] = ()
        self._fv_timed = 0
        self._requests: tuple[tuple[int, int], ...] = ()
        self._instance_numbers: dict[tuple[int, int], int] = {}
        self._deadline = deadline_s
        self._slow = deadline_s if slow_s is None else min(slow_s, deadline_s)
        self._generation = 0
        self._events_stuck = False
        self._runner = _Runner(deadline_s, late_s=min(LATE_S, self._slow / 4))
        self._collector_labels: dict[str, tuple[tuple[str, str], ...]] = {}
        self._success: dict[str, Native] = {}  # gpu_exporter_collector_success by collector
        self._gpus: list[_Gpu] = []
        try:
            self._gpus = self._select_gpus()
            self.set_wanted(fields)
        except BaseException:
            self.close(timeout_s=1.0)
            raise

    # ------------------------------------------------------------------ configuration

    def _select_gpus(self) -> list[_Gpu]:
        count = self._nvml.device_count()
        selector = self._selector
        if selector.kind == "g" and selector.ids is not None:
            first = selector.first_missing(count)
            if first is not None:
                raise ValueError(
                    f"-d/--devices: GPU {first} does not exist "
                    f"(this host has {count} GPU{'s' if count != 1 else ''}: 0-{count - 1})")
        gpus = [
            _Gpu(i, Entity(gpu=i, uuid="", pci_bus_id="", model_name=""))
            for i in range(count) if selector.kind != "g" or selector.selects(i)
        ]
        probed = self._runner.run(gpus, self._probe_info)
        infos = {index: info for index, info in probed.items() if info is not None}
        if selector.kind == "i":
            number = 0
            for index in sorted(infos):
                for mig in infos[index].instances:
                    self._instance_numbers[(index, mig.entity.gi_id or 0)] = number
                    number += 1
            if selector.ids is not None:
                first = selector.first_missing(number)
                if first is not None:
                    raise ValueError(
                        f"-d/--devices: GPU instance {first} does not "
                        f"exist (found {number} MIG instance{'s' if number != 1 else ''})")
        for gpu in gpus:
            if gpu.index in infos:
                self._install(gpu, infos[gpu.index])
        return gpus

    def set_wanted(
        self, fields: frozenset[int], names: Mapping[int, str] | None = None,
    ) -> None:
        """Switch to a new set of wanted DCGM field ids (counters file reload).

        Args:
            fields: wanted DCGM field ids.
            names: field id -> metric name for the ``field`` label (kept when ``None``).
        """
        if names is not None:
            self._names = dict(names)
        self._wanted = frozenset(fields)
        self._derive = {}
        for fid in self._wanted:
            derived = DERIVED.get(fid)
            if derived is not None:
                self._derive.setdefault(derived.base, []).append(derived)
        self._hidden = frozenset(self._derive) - self._wanted
        collect = self._wanted | self._hidden
        active = []
        for name, collector in self._collectors.items():
            produced = COLLECTORS[name].fields & collect
            if produced:
                active.append(_Active(name, collector, produced, f"collector {name}"))
        self._active = tuple(active)
        self._plan = tuple((a.name, a.collector.collect_into, a.fields, a.stage,
                            a.name in _NEEDS_READINGS, at) for at, a in enumerate(active))
        self._dcgm_fields = next((a.fields for a in active if a.name == "profiling"),
                                 frozenset())
        self._requests = field_requests(
            f for a in self._active if a.name in _NEEDS_READINGS for f in a.fields)
        self._fv_timed = len(active)  # field_values: after the collectors
        self._timed = (*(a.name for a in active), *(("field_values",) if self._requests else ()),
                       *(("workload",) if self._workloads is not None else ()))
        self._wanted_sorted = tuple(sorted(self._wanted))
        self._generation += 1  # reads still in progress were for the old fields
        self._zeros = tuple(sorted(self._wanted & PLACEHOLDER_ZERO)) \
            if self._placeholder_zeros else ()
        for gpu in self._gpus:
            gpu.logged_unavailable = None
            gpu.support_cache.clear()
            gpu.static_reasons = None
            gpu.last = None
        wants_events = bool(self._wanted & {XID_ERRORS, XID_ERRORS_COUNT, EXP_GPU_HEALTH_STATUS})
        if wants_events and self._events_enabled and self._watcher is None:
            self._start_watcher()

    def _start_watcher(self) -> None:
        watcher = EventWatcher(self._nvml, self.event_log)
        if not watcher.start():
            return
        self._watcher = watcher
        for gpu in self._gpus:  # registered by their workers, at the start of the next cycle
            gpu.register_events = True

    def _peers(self) -> list[tuple[int, Handle]]:
        # a hung GPU is no peer: a P2P query touching it could hang the GPU asking
        return [(gpu.index, gpu.view.handle) for gpu in self._gpus
                if gpu.view is not None and gpu.hung_since is None]

    def _xid_supported(self, gpu: int) -> bool:
        return self._watcher is not None and self._watcher.xid_supported(gpu)

    # ------------------------------------------------------------------ probing

    def _probe_info(self, gpu: _Gpu) -> GpuInfo | None:
        """Probe a GPU; failures are logged once until it comes back."""
        level = logging.DEBUG if gpu.down_logged else logging.WARNING
        gpu.stage = "probing"
        try:
            info = self._nvml.probe(gpu.index, with_instances=self._selector.kind != "g")
        except NvmlError as exc:
            log.log(level, "GPU %d unavailable: %s", gpu.index, exc)
        except Exception:
            log.log(level, "GPU %d: probing failed", gpu.index, exc_info=True)
        else:
            gpu.down_logged = False
            return info
        gpu.down_logged = True
        return None

    def _install(self, gpu: _Gpu, info: GpuInfo) -> None:
        selector = self._selector
        gpu.layout = (info.mig_enabled, tuple(
            (m.entity.mig_index or 0, m.entity.gi_id or 0) for m in info.instances))
        if selector.kind == "i":
            instances = tuple(
                m for m in info.instances
                if selector.selects(self._instance_numbers.get(
                    (gpu.index, m.entity.gi_id or 0), -1)))
            info = dataclasses.replace(info, instances=instances)
        gpu.view = make_view(self._nvml, info, instances=selector.kind != "g",
                             device=selector.kind != "i",
                             device_fields_once=self._device_fields_once)
        gpu.entity = info.entity
        gpu.support_cache.clear()
        gpu.static_reasons = None
        self.event_log.set_instances(
            gpu.index, [m.entity.gi_id for m in info.instances if m.entity.gi_id is not None])
        self._reset_collectors(gpu.index)
        gpu.register_events = self._watcher is not None

    def _mig_changed(self, gpu: _Gpu, view: DeviceView, *, full: bool) -> bool:
        """Whether a MIG-capable GPU's mode or instances differ from the probed ones.

        ``full``: compare the whole layout (finds new instances too); otherwise only check,
        on a MIG-enabled GPU, that MIG is still on and that each known MIG device handle still
        belongs to the same GPU instance (one call per instance).
        """
        info = view.info
        if not info.mig_capable or self._selector.kind == "g":
            return False
        nvml = self._nvml
        gpu.stage = "checking the MIG layout"
        try:
            if full:
                return nvml.mig_layout(view.handle) != gpu.layout
            if not info.mig_enabled:
                return False
            if not nvml.mig_enabled(view.handle):
                return True
            return any(nvml.gpu_instance_id(m.handle) != m.entity.gi_id
                       for m in info.instances)
        except NvmlError:
            return True

    def _reprobe(self, gpu: _Gpu) -> None:
        gpu.reprobe = False
        gpu.view = None
        info = self._probe_info(gpu)
        if info is not None:
            log.info("GPU %d probed again (%s, MIG %s, %d instance(s))", gpu.index,
                     info.entity.model_name, "on" if info.mig_enabled else "off",
                     len(info.instances))
            self._install(gpu, info)

    # ------------------------------------------------------------------ the cycle

    def collect_once(self) -> Cycle:
        """Run one collection cycle over every selected GPU (blocking; call from a thread).

        The GPUs are read in turn by one worker, each in its own once one is late
        (:class:`_Runner`); the per-GPU step is :meth:`_cycle_gpu`. The cycle waits at most
        ``slow_s`` for them: a GPU still answering then is *slow*: its values of the last
        complete read are exported again (``gpu_exporter_gpu_slow 1``, with their age in
        ``gpu_exporter_gpu_data_age_seconds``) and its read goes on into the next cycle. A read
        outstanding for ``deadline_s`` makes the GPU *hung* (``gpu_exporter_gpu_up 0``, its
        values dropped) until the stuck call returns. After :meth:`close`, every GPU reads as
        down and NVML is not called.
        """
        started = self._wall()
        t_start = time.perf_counter()
        now = self._clock()
        changed = self._watcher.take_mig_changes() if self._watcher is not None else set()
        full_mig = self._collections % MIG_CHECK_EVERY == MIG_CHECK_EVERY - 1
        generation = self._generation
        names = self._timed
        zeros = [0.0] * len(names)

        def one(gpu: _Gpu) -> _Accumulator:
            acc = _Accumulator(zeros[:], now=now, generation=generation)
            self._cycle_gpu(gpu, now, acc, changed=gpu.index in changed, full_mig=full_mig)
            return acc

        runner = self._runner
        if not self._closed:
            self._hand_out(one, changed)
            runner.wait([g.task for g in self._gpus if g.task is not None],
                        runner.now() + self._slow)
        durations = zeros[:]
        failed: set[str] = set()
        samples: list[Sample] = []
        natives: list[Native] = []
        blocks: list[NativeRows] = []
        entities: list[Entity] = []
        for gpu in self._gpus:
            acc = None
            if not self._closed:
                task = gpu.task
                if task is not None and task.done:
                    acc = self._take_done(gpu, task, durations, failed)
                elif task is not None:
                    acc = self._take_pending(gpu, task, runner.now(), now)
            if acc is None:  # hung, failed unexpectedly, or shutting down
                entities.append(gpu.entity)
                natives.append(Native("gpu_exporter_gpu_up", 0.0, (), gpu.entity))
                continue
            samples.extend(acc.samples)
            natives.extend(acc.natives)
            blocks.extend(acc.blocks)
            entities.extend(acc.entities)
            cached = gpu.natives
            natives.append(_unchanged(cached, "gpu_exporter_gpu_slow",
                                      1.0 if gpu.slow else 0.0, (), gpu.entity))
            natives.append(_unchanged(cached, "gpu_exporter_gpu_data_age_seconds",
                                      now - acc.now, (), gpu.entity))
        self._collections += 1
        duration = time.perf_counter() - t_start
        natives.extend(self._self_metrics(dict(zip(names, durations, strict=True)), failed,
                                          duration))
        if self._dcgm is not None:
            natives.extend(self._dcgm.natives())
        natives.extend(self.event_log.totals(entities))
        return Cycle(samples=tuple(samples),
                     natives=Natives(tuple(natives), tuple(blocks)) if blocks else tuple(natives),
                     entities=tuple(entities),
                     started=started, duration=duration)

    def _hand_out(self, one: Callable[[_Gpu], _Accumulator], changed: set[int]) -> None:
        """Give this cycle's read of every GPU not still busy to the runner (see _Runner).

        DCGM is asked for this cycle's values first; it answers on its own thread.
        """
        if self._dcgm is not None:
            self._dcgm.begin_cycle([g.view for g in self._gpus if g.view is not None],
                                   self._dcgm_fields)
        ready = []
        for gpu in self._gpus:
            if gpu.index in changed:  # also for a GPU still in a read: its next one
                gpu.reprobe = True
            if gpu.hung_since is None and gpu.task is None:
                if gpu.slow:  # known to keep a thread waiting: its own from the start
                    gpu.task = self._runner.submit(gpu, one)
                else:
                    ready.append(gpu)
        for gpu, task in zip(ready, self._runner.submit_all(ready, one), strict=False):
            gpu.task = task

    def _take_done(
        self, gpu: _Gpu, task: _Task[_Accumulator], durations: list[float], failed: set[str],
    ) -> _Accumulator | None:
        """A GPU's finished read: exported (its time counted), or None (failed: down)."""
        gpu.task = None
        acc = task.result
        if not task.ok or acc is None or acc.generation != self._generation:
            gpu.last = None  # an unexpected failure, or read for the fields before a reload
            return None
        durations[:] = map(operator.add, durations, acc.durations)  # same fields: same order
        if acc.failed:
            failed.update(acc.failed)
        gpu.last = acc if acc.up else None
        self._set_slow(gpu, slow=acc.up and task.done_at - task.started > self._slow,
                       took=task.done_at - task.started)
        return acc

    def _take_pending(
        self, gpu: _Gpu, task: _Task[_Accumulator], at: float, now: float,
    ) -> _Accumulator | None:
        """A GPU whose read is still running: slow (its last values) or hung (None: down)."""
        outstanding = at - task.started
        if outstanding >= self._deadline:
            gpu.task = gpu.last = None
            gpu.slow = False
            self._runner.mark_hung(task)
            return None
        if outstanding > self._slow:
            self._set_slow(gpu, slow=True, took=outstanding)
        last = gpu.last
        if last is not None and last.generation == self._generation:
            return last
        # slow before its first complete read: no values to keep yet
        return _Accumulator([], entities=[gpu.entity], now=now, up=True,
                            natives=[Native("gpu_exporter_gpu_up", 1.0, (), gpu.entity)])

    def _set_slow(self, gpu: _Gpu, *, slow: bool, took: float) -> None:
        """Track a GPU's slow episode; one log line when it starts and one when it ends."""
        if slow and not gpu.slow:
            log.warning(
                "GPU %d: NVML answers slower than %gs (%.1fs so far, %s): exporting its last "
                "values with gpu_exporter_gpu_slow 1 until it answers in time; reported down "
                "if a call takes %gs", gpu.index, self._slow, took, _stage(gpu) or "reading",
                self._deadline)
        elif not slow and gpu.slow:
            log.info("GPU %d: NVML answers within %gs again (%.2fs)", gpu.index, self._slow,
                     took)
        gpu.slow = slow

    def _cycle_gpu(
        self, gpu: _Gpu, now: float, acc: _Accumulator, *, changed: bool, full_mig: bool,
    ) -> None:
        """One GPU's part of a cycle (in a worker thread): re-probe if needed, collect."""
        view = gpu.view
        if (view is not None and not gpu.reprobe and not changed
                and self._mig_changed(gpu, view, full=full_mig)):
            gpu.reprobe = True
        if view is None or gpu.reprobe or changed:
            self._reprobe(gpu)
            view = gpu.view
        watcher = self._watcher
        if gpu.register_events and view is not None and watcher is not None:
            gpu.register_events = False
            gpu.stage = "registering for events"
            watcher.add_gpu(gpu.index, view.handle)
        if view is None:
            acc.entities.append(gpu.entity)
            acc.natives.append(Native("gpu_exporter_gpu_up", 0.0, (), gpu.entity))
            return
        unsupported: dict[Entity, dict[int, str]] = {}
        out = self._collect_gpu(gpu, view, now, acc, unsupported)
        if out is None:
            acc.samples = []
            acc.entities.append(gpu.entity)
            acc.natives.append(Native("gpu_exporter_gpu_up", 0.0, (), gpu.entity))
            return
        if self._derive:
            self._derive_samples(acc.samples, 0, unsupported)
        if self._zeros:
            _placeholder_zeros(self._zeros, out, unsupported)
        gpu.reuse = (out.samples, out.unsupported)  # this read's, for the next (same thread)
        if view.repeat_device:
            _repeat_on_instances(view, acc.samples, unsupported)
        if view.entity not in view.entities:
            acc.entities.append(view.entity)
        acc.entities.extend(view.entities)
        up = gpu.up
        if up is None or up.entity is not view.entity:
            up = gpu.up = new_native("gpu_exporter_gpu_up", 1.0, (), view.entity)
        acc.natives.append(up)
        acc.natives.extend(self._support(gpu, view, unsupported))
        acc.up = True
        if self._workloads is not None:
            self._collect_workloads(gpu, view, acc, self._workloads)
        acc.readings = None  # freed now, while in cache, not by the next cycle

    @staticmethod
    def _collect_workloads(
        gpu: _Gpu, view: DeviceView, acc: _Accumulator, workloads: WorkloadCollector,
    ) -> None:
        """The per-workload series of one GPU (isolated: a failure costs only them)."""
        gpu.stage = "collector workload"
        t0 = time.perf_counter()
        try:
            acc.blocks.extend(workloads.collect(view, acc.readings or {}, acc.samples))
        except NvmlError as exc:
            acc.failed.add("workload")
            log.debug("GPU %d, collector workload: %s", gpu.index, exc)
        except Exception:
            acc.failed.add("workload")
            log.exception("GPU %d: collector workload failed", gpu.index)
        finally:
            acc.durations[-1] += time.perf_counter() - t0  # workload: the last timed step

    def _derive_samples(
        self, samples: list[Sample], mark: int, unsupported: dict[Entity, dict[int, str]],
    ) -> None:
        """Add base-unit samples computed from classic ones; drop classic ones not wanted."""
        derive, hidden = self._derive, self._hidden
        own = samples[mark:]
        del samples[mark:]
        for sample in own:
            targets = derive.get(sample.field_id)
            if targets is not None and isinstance(sample.value, float | int):
                samples.extend(new_sample(sample.entity, d.field_id, sample.value * d.factor,
                                      sample.labels) for d in targets)
            if sample.field_id not in hidden:
                samples.append(sample)
        for marks in unsupported.values():
            for base, targets in derive.items():
                reason = marks.get(base)
                if reason is not None:
                    for d in targets:
                        marks[d.field_id] = reason

    def _collect_gpu(
        self,
        gpu: _Gpu,
        view: DeviceView,
        now: float,
        acc: _Accumulator,
        unsupported: dict[Entity, dict[int, str]],
    ) -> ResultBuilder | None:
        """Collect one GPU into a builder; None when it is lost (its samples are dropped).

        Every collector writes into one builder per GPU read (a collector that fails has its
        partial output taken back); values equal to the same position of the GPU's last read
        reuse its samples (:class:`~gpu_exporter.collectors.base.ResultBuilder`). Each
        collector's time runs from the end of the one before it (one clock read each).
        """
        perf = time.perf_counter
        durations = acc.durations
        out = ResultBuilder(*gpu.reuse)
        samples = acc.samples = out.samples
        marks = out.unsupported
        try:
            fast = self._compiled(gpu, view)
            readings = acc.readings = self._readings(gpu, view, acc, fast)
            plan = self._plan if fast is None else fast.plan if readings is None else fast.turns
            given: Mapping[tuple[int, int], FieldReading] = readings or {}
            t0 = perf()
            for name, into, fields, stage, needs_readings, at_timed in plan:
                if readings is None and needs_readings:
                    acc.failed.add(name)
                    _mark_error(view, fields, unsupported)
                    continue
                gpu.stage = stage
                at = len(samples)
                seen = len(marks)
                try:
                    into(view, fields, given, now, out)
                except GpuLostError:
                    raise
                except Exception as exc:  # noqa: BLE001 - isolation: logged, counted, go on
                    del samples[at:]  # what it added before failing
                    del marks[seen:]
                    self._collector_failed(gpu, view, name, exc, acc)
                    _mark_error(view, fields, unsupported)
                else:
                    if len(marks) > seen:
                        for mark in marks[seen:]:
                            entity_marks = unsupported.get(mark.entity)
                            if entity_marks is None:
                                entity_marks = unsupported[mark.entity] = {}
                            entity_marks[mark.field_id] = mark.reason
                t1 = perf()
                durations[at_timed] += t1 - t0
                t0 = t1
        except GpuLostError as exc:
            log.warning("GPU %d lost (%s); re-probing every cycle", gpu.index, exc)
            gpu.down_logged = True
            gpu.view = None
            gpu.support_cache.clear()
            gpu.static_reasons = None
            gpu.reuse = ((), ())
            gpu.fast = None
            self._reset_collectors(gpu.index)
            return None
        return out

    def _compiled(self, gpu: _Gpu, view: DeviceView) -> DeviceRead | None:
        """The GPU's compiled read for its view and this field set (built when it changed)."""
        fast = gpu.fast
        if fast is not None and fast.valid(view, self._generation):
            return fast
        if fast is not None:
            fast.release()  # its GPM buffers' roles, back to the collector
            gpu.fast = None
        reads = self._reads
        if reads is None:
            return None
        fast = gpu.fast = reads.build(
            self._nvml, view, self._plan, collectors=self._collectors, requests=self._requests,
            fv_timed=self._fv_timed, n_timed=len(self._timed),
            keep_readings=self._workloads is not None, generation=self._generation)
        return fast

    def _readings(
        self, gpu: _Gpu, view: DeviceView, acc: _Accumulator, fast: DeviceRead | None,
    ) -> dict[tuple[int, int], FieldReading] | None:
        """This cycle's batched field values of one GPU; ``None`` when the call failed.

        With a compiled read, that read, which also makes the compiled collectors' calls
        (and times each call itself).
        """
        if fast is None and not self._requests:
            return {}
        t0 = time.perf_counter()
        try:
            if fast is not None:
                gpu.stage = fast.stage  # the collector whose call is under way
                return fast.read(acc.durations)
            gpu.stage = "reading field values"
            batch = self._nvml.field_values(view.handle, self._requests)
        except GpuLostError:
            raise
        except NvmlError as exc:
            acc.failed.add("field_values")
            log.debug("GPU %d: %s", gpu.index, exc)
            return None
        finally:
            if fast is None:
                acc.durations[self._fv_timed] += time.perf_counter() - t0
        # one reading per request, in order: keyed by the request's own tuple
        return dict(zip(self._requests, batch, strict=True)) if batch else {}

    @staticmethod
    def _collector_failed(
        gpu: _Gpu, view: DeviceView, name: str, exc: Exception, acc: _Accumulator,
    ) -> None:
        acc.failed.add(name)
        if isinstance(exc, NvmlError):
            log.debug("GPU %d, collector %s: %s", gpu.index, name, exc)
            if view.info.mig_enabled and exc.code in (INVALID_ARGUMENT, NOT_FOUND):
                gpu.reprobe = True  # a MIG handle went stale: the layout changed
        else:
            log.error("GPU %d: collector %s failed", gpu.index, name, exc_info=exc)

    def _reset_collectors(self, gpu: int) -> None:
        if self._workloads is not None:
            self._workloads.reset(gpu)
        for collector in self._collectors.values():
            reset = getattr(collector, "reset", None)
            if reset is not None:
                reset(gpu)

    # ------------------------------------------------------------------ natives

    def _static_reason(self, view: DeviceView, entity: Entity, fid: int) -> str | None:
        """The reason that does not depend on this cycle's readings (None: it does)."""
        spec = lookup(base_of(fid))
        if spec is None:
            return NO_NVML_SOURCE
        if spec.level == "device" and entity.is_mig and not view.repeat_device:
            return MIG_INSTANCE
        if spec.level == "instance" and not entity.is_mig and view.info.mig_enabled \
                and self._selector.kind != "g":
            # instance-level fields come from the MIG instances, never the MIG-enabled GPU
            return MIG_PARENT if view.targets["instance"] else NO_MIG_INSTANCES
        if spec.collector in self._disabled:
            return "collector_disabled"
        return None

    def _support(
        self, gpu: _Gpu, view: DeviceView, unsupported: Mapping[Entity, Mapping[int, str]],
    ) -> list[Native]:
        """``gpu_exporter_field_supported`` of a GPU's entities (cached while unchanged)."""
        wanted = self._wanted_sorted
        if gpu.static_reasons is None:
            gpu.static_reasons = {
                entity: tuple(self._static_reason(view, entity, fid) for fid in wanted)
                for entity in view.entities
            }
        out: list[Native] = []
        changed = False
        for entity, static in gpu.static_reasons.items():
            marks = unsupported.get(entity) or {}
            cached = gpu.support_cache.get(entity)
            if cached is not None and cached[2] == marks:
                out.extend(cached[1])
                continue
            if marks:
                reasons = tuple(
                    reason if reason is not None else marks.get(fid, SUPPORTED)
                    for fid, reason in zip(wanted, static, strict=True))
            else:
                reasons = tuple(SUPPORTED if r is None else r for r in static)
            if cached is None or cached[0] != reasons:
                changed = True
                news = frozenset(fid for fid, reason in zip(wanted, reasons, strict=True)
                                 if reason not in _NOT_NEWS)
                flagged = gpu.flagged[entity] = gpu.flagged.get(entity, frozenset()) | news
                built = tuple(
                    Native("gpu_exporter_field_supported", 1.0 if reason == SUPPORTED else 0.0,
                           (("field", self._field_label(fid)), ("reason", reason)), entity)
                    for fid, reason in zip(wanted, reasons, strict=True) if fid in flagged
                )
                cached = (reasons, built, dict(marks))
            else:
                cached = (reasons, cached[1], dict(marks))
            gpu.support_cache[entity] = cached
            out.extend(cached[1])
        if changed:
            for gone in gpu.flagged.keys() - gpu.static_reasons.keys():
                del gpu.flagged[gone]  # an instance that no longer exists
            self._log_unavailable(gpu, view)
        return out

    def _log_unavailable(self, gpu: _Gpu, view: DeviceView) -> None:
        """One summary line per GPU listing its unavailable fields (when the set changes)."""
        wanted = self._wanted_sorted
        unavailable = frozenset(
            (fid, reason)
            for reasons, _, _ in gpu.support_cache.values()
            for fid, reason in zip(wanted, reasons, strict=True)
            if reason in _UNAVAILABLE_REASONS)
        if unavailable == gpu.logged_unavailable:
            return
        gpu.logged_unavailable = unavailable
        if unavailable:
            listed = ", ".join(f"{self._field_label(fid)} ({reason})"
                               for fid, reason in sorted(unavailable))
            log.info("GPU %d (%s): %d of %d requested fields unavailable: %s", gpu.index,
                     view.entity.model_name, len({f for f, _ in unavailable}), len(wanted),
                     listed)

    def _field_label(self, fid: int) -> str:
        name = self._names.get(fid)
        return name if name is not None else catalog_field_name(fid)

    def _self_metrics(
        self, durations: Mapping[str, float], failed: Iterable[str], duration: float,
    ) -> list[Native]:
        failed_set = set(failed)
        out = []
        labels_of = self._collector_labels
        success = self._success
        for name in sorted(durations):
            labels = labels_of.get(name)
            if labels is None:
                labels = labels_of[name] = (("collector", name),)
            out.append(new_native("gpu_exporter_collector_duration_seconds", durations[name],
                                  labels))
            out.append(_unchanged(success, name, 0.0 if name in failed_set else 1.0, labels,
                                  None, name="gpu_exporter_collector_success"))
        out.append(new_native("gpu_exporter_collection_duration_seconds", duration))
        out.append(new_native("gpu_exporter_collections_total", float(self._collections)))
        if self._watcher is not None:
            out.append(Native("gpu_exporter_event_wait_stuck_seconds", self._event_wait_stuck()))
        for (function, code), count in sorted(self._nvml.error_counts().items()):
            out.append(Native("gpu_exporter_nvml_errors_total", float(count),
                              (("function", function), ("code", code))))
        return out

    def _event_wait_stuck(self) -> float:
        """Seconds the event wait has overrun its timeout, once past the stuck bound, else 0."""
        watcher = self._watcher
        blocked = watcher.blocked_for() if watcher is not None else 0.0
        stuck = blocked >= EVENT_WAIT_STUCK_S
        if stuck and not self._events_stuck:
            log.warning("NVML event wait (nvmlEventSetWait_v2) blocked for %.0fs: XID events are "
                        "not being received (gpu_exporter_event_wait_stuck_seconds)", blocked)
        elif not stuck and self._events_stuck:
            log.info("NVML event wait returned again: XID events are received")
        self._events_stuck = stuck
        return blocked if stuck else 0.0

    # ------------------------------------------------------------------ shutdown

    workers_idle = False
    """After :meth:`close`: True when no per-GPU NVML call was left in progress (the event
    thread's wait aside)."""

    def close(self, timeout_s: float = 5.0) -> bool:
        """Stop the workers and the event thread, release collector resources (idempotent).

        Waits up to ``timeout_s`` for NVML calls in progress. Returns True when none is left
        (NVML may be shut down), False when one is still stuck (a hung GPU): then the
        collectors' NVML resources are leaked rather than freed under it.
        """
        if self._closed:
            return self._idle
        self._closed = True
        deadline = time.monotonic() + timeout_s
        self._runner.stop()
        events_stopped = True
        if self._watcher is not None:
            # the event thread sits in a long NVML wait that nothing can interrupt: give it a
            # moment, then leave it (a daemon thread; the exit does not wait for it)
            self._watcher.stop(max(min(deadline - time.monotonic(), EVENT_STOP_GRACE_S), 0.0),
                               exiting=True)
            events_stopped = not self._watcher.running
            self._watcher = None
        idle = self._runner.wait_idle(max(deadline - time.monotonic(), 0.0))
        self.workers_idle = idle
        if idle:
            for collector in self._collectors.values():
                _close_quietly(collector)
        else:
            hung = ", ".join(str(g.index) for g in self._gpus if g.hung_since is not None)
            log.warning("NVML calls still in progress after %gs (hung GPU: %s); leaving "
                        "collector resources allocated", timeout_s, hung or "none marked yet")
        if self._workloads is not None:  # its container-name thread (no NVML there)
            self._workloads.close()
        self._idle = idle and events_stopped
        return self._idle


_Into = Callable[[DeviceView, frozenset[int], Mapping[tuple[int, int], FieldReading], float,
                  ResultBuilder], None]


def _unchanged(
    cache: dict[str, Native], key: str, value: float, labels: tuple[tuple[str, str], ...],
    entity: Entity | None, *, name: str | None = None,
) -> Native:
    """The native ``name`` (default ``key``) with ``value``: last cycle's object if the same."""
    last = cache.get(key)
    if last is not None and last.value == value and last.entity is entity \
            and last.labels is labels:
        return last
    native = cache[key] = new_native(name or key, value, labels, entity)
    return native


def _placeholder_zeros(
    zeros: Sequence[int], out: ResultBuilder, unsupported: Mapping[Entity, Mapping[int, str]],
) -> None:
    """A 0 sample for each of ``zeros`` (sorted) the GPU says it does not support.

    As dcgm-exporter has; the field stays marked ``not_supported`` in
    ``gpu_exporter_field_supported``.
    """
    for entity, marks in unsupported.items():
        for fid in zeros:
            if marks.get(fid) == "not_supported":
                out.put(entity, fid, 0.0)


def _repeat_on_instances(
    view: DeviceView, samples: list[Sample], unsupported: dict[Entity, dict[int, str]],
) -> None:
    """dcgm-exporter's MIG layout: move what was read on the GPU onto each of its instances.

    Every sample and unavailable mark of the physical GPU is replaced by one copy per MIG
    instance of ``view`` (the GPU itself then has no DCGM series).
    """
    parent = view.entity
    instances = view.entities
    out: list[Sample] = []
    for sample in samples:
        if sample.entity == parent:
            out.extend(new_sample(entity, sample.field_id, sample.value, sample.labels)
                       for entity in instances)
        else:
            out.append(sample)
    samples[:] = out
    marks = unsupported.pop(parent, None)
    if marks:
        for entity in instances:
            own = unsupported.setdefault(entity, {})
            for fid, reason in marks.items():
                own.setdefault(fid, reason)


def _mark_error(
    view: DeviceView, fields: frozenset[int], unsupported: dict[Entity, dict[int, str]],
) -> None:
    """Mark ``fields`` unsupported (``error``) on every entity of a GPU: none were read."""
    for entity in view.entities:
        marks = unsupported.setdefault(entity, {})
        for fid in fields:
            marks[fid] = ERROR


def _stage(gpu: _Gpu) -> str:
    """What a GPU's worker is doing: its stage, or what its compiled read says it is at."""
    stage = gpu.stage
    return stage if isinstance(stage, str) else stage()


def _close_quietly(collector: Collector) -> None:
    try:
        collector.close()
    except NvmlError as exc:
        log.debug("closing %s: %s", type(collector).__name__, exc)


# ---------------------------------------------------------------------- per-GPU watchdog


class _Task(Generic[R]):
    """One GPU's work handed to its worker: the result once ``done`` is set.

    ``started`` is when it was handed out (the runner's clock); ``cycle`` the collection cycle
    that handed it out (so a result that arrives after a reconfiguration can be told apart).
    """

    __slots__ = ("cycle", "done", "done_at", "fn", "gpu", "ok", "result", "started")

    def __init__(self, gpu: _Gpu, fn: Callable[[_Gpu], R], started: float, cycle: int) -> None:
        self.gpu = gpu
        self.fn = fn
        self.started = started
        self.cycle = cycle
        self.done = False  # set under the runner's lock, with done_at and the result
        self.done_at = started
        self.ok = False
        self.result: R | None = None


class _Chain:
    """Tasks of several GPUs that one worker runs one after another (see :class:`_Runner`).

    ``taken``: how many of them a thread has taken (the chain's worker, or the caller handing
    the rest to their GPUs' own workers); ``since``: when the task in progress was taken (or
    the chain handed out, before its first).
    """

    __slots__ = ("since", "taken", "tasks", "worker")

    def __init__(self, tasks: list[_Task[Any]], since: float, worker: _Worker) -> None:
        self.tasks = tasks
        self.taken = 0
        self.since = since
        self.worker = worker


class _Worker:
    """A daemon thread running tasks (or chains of tasks) one after another until stopped."""

    def __init__(self, runner: _Runner, name: str) -> None:
        self._runner = runner
        self._queue: queue.SimpleQueue[_Task[Any] | _Chain | None] = queue.SimpleQueue()
        self.busy = False  # a chain worker with a chain in hand (under the runner's lock)
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def submit(self, item: _Task[Any] | _Chain) -> None:
        """Queue a task or a chain."""
        self._queue.put(item)

    def stop(self) -> None:
        """Let the thread exit once its current task is done."""
        self._queue.put(None)

    def _run(self) -> None:
        runner = self._runner
        while (item := self._queue.get()) is not None:
            ok = runner.run_chain(item) if isinstance(item, _Chain) else runner.execute(item)
            if not ok:
                return


class _Runner:
    """Runs the GPUs' work one after another in one thread, each GPU alone once one is late.

    A caller hands out a cycle's tasks (:meth:`submit_all`, or :meth:`submit` for one GPU
    on its own) and waits for them together (:meth:`wait`). :meth:`submit_all` gives them,
    as one chain, to one worker thread, which runs them in turn: one thread hand-off per
    cycle, not one per GPU. While the caller waits, a chain whose task in progress has run
    for ``late_s`` is split: the GPUs not yet started are handed to their own workers (one
    per GPU, made when first needed), all at once, so a hung or slow GPU delays the others
    by ``late_s`` at most, and the deadlines of all GPUs still run concurrently: when every
    GPU hangs, all of them are found out within one deadline (counted, for every task, from
    when the cycle handed it out). A GPU's work runs in one thread at a time: a GPU whose
    task is still running is not handed another one (the caller checks), so one GPU never
    holds more than one thread. A task that overran the deadline marks its GPU hung
    (``_Gpu.hung_since``, set by the caller); the thread running it clears the mark when the
    stuck call returns and asks for a re-probe; the next chain goes to another chain worker.
    Worker threads are daemons: a call that never returns does not keep the process alive.

    Args:
        deadline_s: how long one GPU's work may take in :meth:`run`.
        clock: monotonic time source.
        late_s: how long a chain's task in progress may take before the rest is split off.
    """

    def __init__(self, deadline_s: float, clock: Callable[[], float] = time.monotonic,
                 *, late_s: float = LATE_S) -> None:
        self._deadline = deadline_s
        self._clock = clock
        self._late = late_s
        self._cond = threading.Condition()
        self._busy = 0  # tasks in progress (stuck ones included)
        self._stopping = False
        self._workers: dict[int, _Worker] = {}  # one per GPU, made when a GPU needs its own
        self._chain_workers: list[_Worker] = []
        self._chains: list[_Chain] = []  # chains with tasks not yet taken
        self._waiting: set[_Task[Any]] = set()  # the tasks wait() is waiting for
        # wait()'s wake: held while it sleeps, released by the task that ends its wait (or
        # stop). A lock, not the condition: a wake per cycle costs one acquire, not
        # Condition.wait's Python (see gpu_exporter.wake)
        self._wake: threading.Lock | None = None

    def now(self) -> float:
        """The runner's clock (``_Task.started`` is on it)."""
        return self._clock()

    def submit(self, gpu: _Gpu, fn: Callable[[_Gpu], R], cycle: int = 0) -> _Task[R] | None:
        """Hand ``fn(gpu)`` to the GPU's own worker; None once stopped."""
        task = _Task(gpu, fn, self._clock(), cycle)
        with self._cond:
            if self._stopping:
                return None
            self._busy += 1
            self._own_worker(gpu).submit(task)
        return task

    def submit_all(self, gpus: Sequence[_Gpu], fn: Callable[[_Gpu], R],
                   cycle: int = 0) -> list[_Task[R]]:
        """Hand ``fn(gpu)`` for every GPU, in order, to one chain worker; [] once stopped."""
        now = self._clock()
        tasks = [_Task(gpu, fn, now, cycle) for gpu in gpus]
        if not tasks:
            return tasks
        with self._cond:
            if self._stopping:
                return []
            worker = next((w for w in self._chain_workers if not w.busy), None)
            if worker is None:  # the others are each stuck in a hung GPU's call
                worker = _Worker(self, f"gpu-collect-{len(self._chain_workers)}")
                self._chain_workers.append(worker)
            worker.busy = True
            chain = _Chain(list(tasks), now, worker)
            self._chains.append(chain)
            worker.submit(chain)
        return tasks

    def _own_worker(self, gpu: _Gpu) -> _Worker:
        worker = self._workers.get(gpu.index)
        if worker is None:
            worker = self._workers[gpu.index] = _Worker(self, f"gpu-collect-gpu{gpu.index}")
        return worker

    def _split_late(self, now: float, *, everything: bool) -> float:
        """Hand the untaken tasks of late chains to their GPUs' own workers (under the lock).

        ``everything``: split every chain, late or not. Returns when the next chain becomes
        late (inf: none).
        """
        next_late = float("inf")
        keep = []
        for chain in self._chains:
            if chain.taken >= len(chain.tasks):
                continue
            late_at = chain.since + self._late
            if late_at > now and not everything:
                next_late = min(next_late, late_at)
                keep.append(chain)
                continue
            rest = chain.tasks[chain.taken:]
            chain.taken = len(chain.tasks)
            for task in rest:
                self._busy += 1
                self._own_worker(task.gpu).submit(task)
        self._chains = keep
        return next_late

    def wait(self, tasks: Iterable[_Task[Any]], until: float) -> None:
        """Wait until every task is done, ``until`` (the runner's clock) passes, or stop.

        Splits a late chain meanwhile; when it returns, every task has a thread (or is done).
        """
        wake = threading.Lock()
        wake.acquire()
        with self._cond:
            self._waiting = {t for t in tasks if not t.done}
            self._wake = wake
        try:
            while True:
                with self._cond:
                    if not self._waiting or self._stopping:
                        return
                    now = self._clock()
                    next_late = self._split_late(now, everything=now >= until)
                    if now >= until:
                        return
                # woken by the last task waited for, or stop; or when a chain gets late
                wake.acquire(timeout=min(until, next_late) - now)
        finally:
            with self._cond:
                self._waiting = set()
                self._wake = None

    def _end_wait(self) -> None:
        """Wake :meth:`wait` (under the lock); once per wake, whoever calls it first."""
        wake = self._wake
        if wake is not None and wake.locked():
            wake.release()

    def run(self, gpus: Sequence[_Gpu], fn: Callable[[_Gpu], R]) -> dict[int, R]:
        """``fn(gpu)`` for every GPU (one chain); results by GPU index (missing: hung/stopped).

        Waits at most about ``deadline_s`` in all; a GPU whose work overran it is marked hung
        (and logged). Returns soon after :meth:`stop`.
        """
        tasks = self.submit_all(gpus, fn)
        self.wait(tasks, self._clock() + self._deadline)
        results: dict[int, R] = {}
        for task in tasks:
            if task.done:
                if task.ok:
                    results[task.gpu.index] = task.result  # type: ignore[assignment]
            elif not self._stopping:
                self.mark_hung(task)
        return results

    def run_chain(self, chain: _Chain) -> bool:
        """Run a chain's tasks in turn (in its worker) until split off; False: must exit."""
        try:
            while True:
                with self._cond:
                    if self._stopping:
                        return False
                    if chain.taken >= len(chain.tasks):
                        return True
                    task = chain.tasks[chain.taken]
                    chain.taken += 1
                    chain.since = self._clock()
                    self._busy += 1
                if not self.execute(task):
                    return False
        finally:
            with self._cond:
                chain.worker.busy = False

    def mark_hung(self, task: _Task[Any]) -> None:
        """Record that ``task`` overran the deadline: its GPU is hung until the call returns."""
        gpu = task.gpu
        gpu.hung_since = task.started
        if task.done:  # it returned meanwhile: the worker did not see the mark
            gpu.hung_since = None
            gpu.reprobe = True
            return
        log.warning(
            "GPU %d: NVML call not answered within %gs (%s; the GPU is hung): reporting "
            "gpu_exporter_gpu_up 0 and collecting the other GPUs without it until the call "
            "returns", gpu.index, self._deadline, _stage(gpu))

    def execute(self, task: _Task[Any]) -> bool:
        """Run a task (in the GPU's worker thread); False when the worker must exit."""
        gpu = task.gpu
        try:
            if not self._stopping:
                try:
                    task.result = task.fn(gpu)
                    task.ok = True
                except Exception:
                    log.exception("GPU %d: unexpected failure; reporting it down", gpu.index)
                    gpu.reprobe = True
        finally:
            task.done_at = self._clock()
            with self._cond:
                task.done = True
                self._busy -= 1
                waiting = self._waiting
                waited = task in waiting
                waiting.discard(task)
                if self._stopping:
                    self._cond.notify_all()  # wait_idle
                if self._stopping or (waited and not waiting):
                    self._end_wait()  # the last task wait() waits for
        if gpu.hung_since is not None:
            log.warning("GPU %d: the stuck NVML call returned after %.1fs; probing it again",
                        gpu.index, self._clock() - gpu.hung_since)
            gpu.reprobe = True
            gpu.hung_since = None  # last: from here on the GPU is handed out again
        return not self._stopping

    def stop(self) -> None:
        """Hand out no more work; a thread waiting in :meth:`wait` or :meth:`run` returns."""
        with self._cond:
            self._stopping = True
            workers = [*self._workers.values(), *self._chain_workers]
            self._workers, self._chain_workers, self._chains = {}, [], []
            self._cond.notify_all()
            self._end_wait()
        for worker in workers:
            worker.stop()

    def wait_idle(self, timeout_s: float) -> bool:
        """After :meth:`stop`: wait for work in progress; False if some is still stuck."""
        deadline = self._clock() + timeout_s
        with self._cond:
            while self._busy:
                left = deadline - self._clock()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True
