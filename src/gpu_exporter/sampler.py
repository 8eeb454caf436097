"""The sampler: one blocking collection cycle over every selected GPU, returned as data.

The server calls :meth:`Sampler.collect_once` through ``asyncio.to_thread`` at the collect
interval and renders the :class:`~gpu_exporter.model.Cycle`; a scrape never reaches here.

Per cycle and GPU: one batched ``nvmlDeviceGetFieldValues`` (every wanted NVML field id), then
each active collector in registry order. Static identity is read once per probe, handles are
cached, and only lost GPUs are re-probed (every cycle), so a cycle costs a handful of NVML calls
per GPU.

Isolation: ``GPU_IS_LOST`` (or an unexpected failure while probing) on one GPU marks it
``gpu_exporter_gpu_up 0`` and drops its partial samples; the other GPUs keep exporting. A
collector failing on a GPU sets ``gpu_exporter_collector_success{collector} 0`` and the rest of
that GPU's fields are still exported.

Field support: every (entity, wanted field) gets ``gpu_exporter_field_supported`` with a reason:
``supported`` (1), or 0 with ``not_supported`` (NVML says so), ``no_gpm`` (profiling on a GPU
without GPM), ``no_nvml_source`` (a DCGM field we cannot source), ``mig_instance`` (a
device-level field: reported once on the physical GPU, not per MIG instance) or ``mig_parent``
(an instance-level field: reported per MIG instance, not on the MIG-enabled GPU). Each GPU's
unavailable fields are logged once in one summary line (again only if the set changes).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from gpu_exporter.catalog import DERIVED, EXP_GPU_HEALTH_STATUS, DerivedSpec, base_of, lookup
from gpu_exporter.catalog import field_name as catalog_field_name
from gpu_exporter.collectors.base import Collector, DeviceView, make_view
from gpu_exporter.collectors.field_values import field_requests
from gpu_exporter.collectors.registry import COLLECTORS, Deps
from gpu_exporter.devices import ALL, DeviceSelector, parse_device_selector
from gpu_exporter.events import XID_ERRORS, XID_ERRORS_COUNT, EventLog, EventWatcher
from gpu_exporter.model import Cycle, Entity, Native, Sample
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

log = logging.getLogger(__name__)

SUPPORTED = "supported"
NO_NVML_SOURCE = "no_nvml_source"
MIG_INSTANCE = "mig_instance"
MIG_PARENT = "mig_parent"
_UNAVAILABLE_REASONS = frozenset({"not_supported", "no_gpm", NO_NVML_SOURCE})
_NEEDS_READINGS = frozenset({"field_values", "nvlink", "pcie", "health"})
MIG_CHECK_EVERY = 10
"""Every this many cycles, MIG-capable GPUs are checked for a changed MIG layout."""


@dataclass(slots=True)
class _Gpu:
    """Book-keeping of one selected physical GPU."""

    index: int
    entity: Entity
    view: DeviceView | None = None
    logged_unavailable: frozenset[tuple[int, str]] | None = None
    support_cache: dict[Entity, tuple[tuple[str, ...], tuple[Native, ...]]] = field(
        default_factory=dict)
    static_reasons: dict[Entity, tuple[str | None, ...]] | None = None
    layout: tuple[bool, tuple[tuple[int, int], ...]] = (False, ())
    reprobe: bool = False
    down_logged: bool = False


@dataclass(slots=True)
class _Accumulator:
    """What one cycle gathers as it goes."""

    durations: dict[str, float]
    failed: set[str] = field(default_factory=set)
    samples: list[Sample] = field(default_factory=list)
    natives: list[Native] = field(default_factory=list)
    entities: list[Entity] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Active:
    """A collector that runs this configuration, with the wanted fields it produces."""

    name: str
    collector: Collector
    fields: frozenset[int]


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
    ) -> None:
        self._nvml = nvml
        self._selector = parse_device_selector(devices) if isinstance(devices, str) else devices
        self._clock = clock
        self._wall = wall
        self._names = dict(names or {})
        self._disabled = disabled
        self._events_enabled = events
        self.event_log = EventLog(xid_window_s=xid_window_s,
                                  clock_window_s=clock_events_window_s)
        self._watcher: EventWatcher | None = None
        deps = Deps(self.event_log, self._xid_supported, self._peers)
        self._collectors: dict[str, Collector] = {
            name: info.factory(deps) for name, info in COLLECTORS.items()
            if name not in disabled
        }
        self._collections = 0
        self._closed = False
        self._wanted: frozenset[int] = frozenset()
        self._derive: dict[int, list[DerivedSpec]] = {}
        self._hidden: frozenset[int] = frozenset()
        self._wanted_sorted: tuple[int, ...] = ()
        self._active: tuple[_Active, ...] = ()
        self._requests: tuple[tuple[int, int], ...] = ()
        self._instance_numbers: dict[tuple[int, int], int] = {}
        self._gpus = self._select_gpus()
        self.set_wanted(fields)

    # ------------------------------------------------------------------ configuration

    def _select_gpus(self) -> list[_Gpu]:
        count = self._nvml.device_count()
        selector = self._selector
        if selector.kind == "g" and selector.ids is not None:
            missing = sorted(i for i in selector.ids if i >= count)
            if missing:
                raise ValueError(
                    f"-d/--devices: GPU {', '.join(map(str, missing))} does not exist "
                    f"(this host has {count} GPU{'s' if count != 1 else ''}: 0-{count - 1})")
        gpus = [
            _Gpu(i, Entity(gpu=i, uuid="", pci_bus_id="", model_name=""))
            for i in range(count) if selector.kind != "g" or selector.selects(i)
        ]
        infos: dict[int, GpuInfo] = {}
        for gpu in gpus:
            info = self._probe_info(gpu)
            if info is not None:
                infos[gpu.index] = info
        if selector.kind == "i":
            number = 0
            for index in sorted(infos):
                for mig in infos[index].instances:
                    self._instance_numbers[(index, mig.entity.gi_id or 0)] = number
                    number += 1
            if selector.ids is not None:
                missing = sorted(i for i in selector.ids if i >= number)
                if missing:
                    raise ValueError(
                        f"-d/--devices: GPU instance {', '.join(map(str, missing))} does not "
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
                active.append(_Active(name, collector, produced))
        self._active = tuple(active)
        self._requests = field_requests(
            f for a in self._active if a.name in _NEEDS_READINGS for f in a.fields)
        self._wanted_sorted = tuple(sorted(self._wanted))
        for gpu in self._gpus:
            gpu.logged_unavailable = None
            gpu.support_cache.clear()
            gpu.static_reasons = None
        wants_events = bool(self._wanted & {XID_ERRORS, XID_ERRORS_COUNT, EXP_GPU_HEALTH_STATUS})
        if wants_events and self._events_enabled and self._watcher is None:
            self._start_watcher()

    def _start_watcher(self) -> None:
        watcher = EventWatcher(self._nvml, self.event_log)
        if not watcher.start():
            return
        self._watcher = watcher
        for gpu in self._gpus:
            if gpu.view is not None:
                watcher.add_gpu(gpu.index, gpu.view.handle)

    def _peers(self) -> list[tuple[int, Handle]]:
        return [(gpu.index, gpu.view.handle) for gpu in self._gpus if gpu.view is not None]

    def _xid_supported(self, gpu: int) -> bool:
        return self._watcher is not None and self._watcher.xid_supported(gpu)

    # ------------------------------------------------------------------ probing

    def _probe_info(self, gpu: _Gpu) -> GpuInfo | None:
        """Probe a GPU; failures are logged once until it comes back."""
        level = logging.DEBUG if gpu.down_logged else logging.WARNING
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
        if selector.kind == "i":
            instances = tuple(
                m for m in info.instances
                if selector.selects(self._instance_numbers.get(
                    (gpu.index, m.entity.gi_id or 0), -1)))
            info = GpuInfo(info.entity, info.handle, info.mig_enabled, instances,
                           info.gpm_supported, info.strings)
        gpu.layout = (info.mig_enabled, tuple(
            (m.entity.mig_index or 0, m.entity.gi_id or 0) for m in info.instances))
        gpu.view = make_view(self._nvml, info, instances=selector.kind != "g",
                             device=selector.kind != "i")
        gpu.entity = info.entity
        gpu.support_cache.clear()
        gpu.static_reasons = None
        self.event_log.set_instances(
            gpu.index, [m.entity.gi_id for m in info.instances if m.entity.gi_id is not None])
        self._reset_collectors(gpu.index)
        if self._watcher is not None:
            self._watcher.add_gpu(gpu.index, info.handle)

    def _mig_changed(self, gpu: _Gpu, view: DeviceView) -> bool:
        """Whether a MIG-capable GPU's mode or instance set differs from the probed one."""
        if not view.info.mig_capable or self._selector.kind == "g":
            return False
        try:
            return self._nvml.mig_layout(view.handle) != gpu.layout
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
        """Run one collection cycle over every selected GPU (blocking; call from a thread)."""
        started = self._wall()
        t_start = time.perf_counter()
        now = self._clock()
        changed = self._watcher.take_mig_changes() if self._watcher is not None else set()
        acc = _Accumulator(durations=dict.fromkeys((a.name for a in self._active), 0.0))
        if self._requests:
            acc.durations.setdefault("field_values", 0.0)
        samples, natives, entities = acc.samples, acc.natives, acc.entities
        check_mig = self._collections % MIG_CHECK_EVERY == MIG_CHECK_EVERY - 1
        for gpu in self._gpus:
            if gpu.view is not None and check_mig and self._mig_changed(gpu, gpu.view):
                gpu.reprobe = True
            if gpu.view is None or gpu.reprobe or gpu.index in changed:
                self._reprobe(gpu)
            view = gpu.view
            if view is None:
                entities.append(gpu.entity)
                natives.append(Native("gpu_exporter_gpu_up", 0.0, (), gpu.entity))
                continue
            mark = len(samples)
            unsupported: dict[Entity, dict[int, str]] = {}
            up = self._collect_gpu(gpu, view, now, acc, unsupported)
            if not up:
                del samples[mark:]
                entities.append(gpu.entity)
                natives.append(Native("gpu_exporter_gpu_up", 0.0, (), gpu.entity))
                continue
            if self._derive:
                self._derive_samples(samples, mark, unsupported)
            if view.entity not in view.entities:
                entities.append(view.entity)
            entities.extend(view.entities)
            natives.append(Native("gpu_exporter_gpu_up", 1.0, (), view.entity))
            natives.extend(self._support(gpu, view, unsupported))
        self._collections += 1
        duration = time.perf_counter() - t_start
        natives.extend(self._self_metrics(acc.durations, acc.failed, duration))
        natives.extend(self.event_log.totals(entities))
        return Cycle(samples=tuple(samples), natives=tuple(natives), entities=tuple(entities),
                     started=started, duration=duration)

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
                samples.extend(Sample(sample.entity, d.field_id, sample.value * d.factor,
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
    ) -> bool:
        """Collect one GPU; False when it is lost (the caller drops its samples)."""
        perf = time.perf_counter
        durations = acc.durations
        samples = acc.samples
        try:
            readings = self._readings(gpu, view, acc)
            for active in self._active:
                if readings is None and active.name in _NEEDS_READINGS:
                    acc.failed.add(active.name)
                    continue
                t0 = perf()
                try:
                    result = active.collector.collect(view, active.fields, readings or {}, now)
                except GpuLostError:
                    raise
                except Exception as exc:  # noqa: BLE001 - isolation: logged, counted, go on
                    self._collector_failed(gpu, view, active.name, exc, acc)
                    continue
                finally:
                    durations[active.name] += perf() - t0
                samples.extend(result.samples)
                for mark in result.unsupported:
                    marks = unsupported.get(mark.entity)
                    if marks is None:
                        marks = unsupported[mark.entity] = {}
                    marks[mark.field_id] = mark.reason
        except GpuLostError as exc:
            log.warning("GPU %d lost (%s); re-probing every cycle", gpu.index, exc)
            gpu.down_logged = True
            gpu.view = None
            gpu.support_cache.clear()
            gpu.static_reasons = None
            self._reset_collectors(gpu.index)
            return False
        return True

    def _readings(
        self, gpu: _Gpu, view: DeviceView, acc: _Accumulator,
    ) -> dict[tuple[int, int], FieldReading] | None:
        """This cycle's batched field values of one GPU; ``None`` when the call failed."""
        readings: dict[tuple[int, int], FieldReading] = {}
        if not self._requests:
            return readings
        t0 = time.perf_counter()
        try:
            batch = self._nvml.field_values(view.handle, self._requests)
        except GpuLostError:
            raise
        except NvmlError as exc:
            acc.failed.add("field_values")
            log.debug("GPU %d: %s", gpu.index, exc)
            return None
        finally:
            acc.durations["field_values"] += time.perf_counter() - t0
        for reading in batch or ():
            readings[(reading.field_id, reading.scope_id)] = reading
        return readings

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
        split = bool(view.targets["instance"]) and view.targets["instance"][0].gi_id is not None
        if spec.level == "device" and entity.is_mig:
            return MIG_INSTANCE
        if spec.level == "instance" and split and not entity.is_mig:
            return MIG_PARENT
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
            marks = unsupported.get(entity)
            if marks:
                reasons = tuple(
                    reason if reason is not None else marks.get(fid, SUPPORTED)
                    for fid, reason in zip(wanted, static, strict=True))
            else:
                reasons = tuple(SUPPORTED if r is None else r for r in static)
            cached = gpu.support_cache.get(entity)
            if cached is None or cached[0] != reasons:
                changed = True
                built = tuple(
                    Native("gpu_exporter_field_supported", 1.0 if reason == SUPPORTED else 0.0,
                           (("field", self._field_label(fid)), ("reason", reason)), entity)
                    for fid, reason in zip(wanted, reasons, strict=True)
                )
                cached = gpu.support_cache[entity] = (reasons, built)
            out.extend(cached[1])
        if changed:
            self._log_unavailable(gpu, view)
        return out

    def _log_unavailable(self, gpu: _Gpu, view: DeviceView) -> None:
        """One summary line per GPU listing its unavailable fields (when the set changes)."""
        wanted = self._wanted_sorted
        unavailable = frozenset(
            (fid, reason)
            for reasons, _ in gpu.support_cache.values()
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
        for name in sorted(durations):
            labels = (("collector", name),)
            out.append(Native("gpu_exporter_collector_duration_seconds", durations[name],
                              labels))
            out.append(Native("gpu_exporter_collector_success",
                              0.0 if name in failed_set else 1.0, labels))
        out.append(Native("gpu_exporter_collection_duration_seconds", duration))
        out.append(Native("gpu_exporter_collections_total", float(self._collections)))
        for (function, code), count in sorted(self._nvml.error_counts().items()):
            out.append(Native("gpu_exporter_nvml_errors_total", float(count),
                              (("function", function), ("code", code))))
        return out

    # ------------------------------------------------------------------ shutdown

    def close(self) -> None:
        """Stop the event thread and release collector resources (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        for collector in self._collectors.values():
            _close_quietly(collector)


def _close_quietly(collector: Collector) -> None:
    try:
        collector.close()
    except NvmlError as exc:
        log.debug("closing %s: %s", type(collector).__name__, exc)
