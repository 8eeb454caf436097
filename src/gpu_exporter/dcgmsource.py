"""A running DCGM host engine as the profiling collector's source on GPUs without GPM.

Used only when asked for (``-r``/``DCGM_REMOTE_HOSTENGINE_INFO`` or ``--dcgm-local``), and only
for what NVML cannot give: the ``DCGM_FI_PROF_*`` fields of the counters file on GPUs before
Hopper. Hopper and later keep GPM (never both). The exporter connects to an engine that is
already running; it never starts one (one profiler per machine).

Shape:

* one daemon thread owns the DCGM connection and makes every DCGM call; it is woken once per
  collection cycle (:meth:`DcgmSource.begin_cycle`), (re)connects with backoff, (re)plans its
  watches when the wanted fields or the GPUs change, and reads the latest values of every
  watched field into an immutable :class:`Readout`;
* each GPU's worker, in the profiling collector, waits for this cycle's readout at most
  ``wait_s`` (bounded by the GPU's own cycle deadline) and turns its part into samples and
  reasons (:func:`merge`, pure): a lost or slow engine costs a bounded wait, never the NVML
  metrics or a scrape.

Watches: one DCGM group per GPU (its GPU instances when MIG is on, else the GPU itself) with the
wanted fields its metric groups offer (``dcgmProfGetSupportedMetricGroups``, per GPU), and a
second group on the GPU for the fields DCGM reads only per GPU (PCIe and NVLink bytes). When
the engine says ``PROFILING_MULTI_PASS``, metric groups are dropped from the last one until the
watch fits. GPUs are matched by UUID (``DCGM_FI_DEV_UUID``), MIG instances through the MIG
hierarchy (NVML GPU instance ids).

Values are DCGM's own units (ratios, bytes per second). Blank values and failed statuses are
never exported as 0: the field is absent and ``gpu_exporter_field_supported`` says why
(:data:`REASON_TEXT`).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gpu_exporter.collectors.base import DeviceView, ResultBuilder
from gpu_exporter.config import DcgmSettings
from gpu_exporter.dcgm import (
    FE_GPU,
    FE_GPU_I,
    FIELD_UUID,
    ST_CONNECTION_NOT_VALID,
    ST_OK,
    ST_PROFILING_MULTI_PASS,
    Dcgm,
    DcgmError,
    DcgmLibraryNotFound,
    FieldValue,
    Handle,
    MetricGroup,
    MigEntity,
    load_library,
)
from gpu_exporter.model import CollectResult, Entity, Native, Sample

log = logging.getLogger(__name__)

DCGM_DOWN = "dcgm_down"
DCGM_NO_LIBRARY = "dcgm_no_library"
DCGM_SLOW = "dcgm_slow"
DCGM_NO_GPU = "dcgm_no_gpu"
PROFILING_NOT_SUPPORTED = "profiling_not_supported"
PROFILING_MODULE_NOT_LOADED = "profiling_module_not_loaded"
PROFILING_LIBRARY_ERROR = "profiling_library_error"
PROFILING_MULTI_PASS = "profiling_multi_pass"  # noqa: S105 - a reason, not a password
NOT_PERMISSIONED = "not_permissioned"
NOT_FOUND = "not_found"
NOT_SUPPORTED = "not_supported"
BLANK = "blank"
PAUSED = "paused"
ERROR = "error"
MIG_INSTANCE = "mig_instance"

REASON_TEXT: dict[str, str] = {
    DCGM_DOWN: "no connection to the DCGM host engine (refused, lost, or reconnecting)",
    DCGM_NO_LIBRARY: "DCGM was asked for but libdcgm.so.4/.so.3 is not installed",
    DCGM_SLOW: "the host engine did not answer within this cycle's wait",
    DCGM_NO_GPU: "the host engine does not list this GPU or MIG instance",
    PROFILING_NOT_SUPPORTED: "DCGM cannot profile this GPU, or not this field on it",
    PROFILING_MODULE_NOT_LOADED: "the engine's profiling module is not loaded "
                                 "(datacenter-gpu-manager-4-proprietary missing?)",
    PROFILING_LIBRARY_ERROR: "the profiling library failed (often: another profiler, such as "
                             "a second engine or Nsight, owns the counters)",
    PROFILING_MULTI_PASS: "the field's metric group does not fit in one pass beside the others "
                          "asked for: remove some profiling rows from the counters file",
    NOT_PERMISSIONED: "the host engine may not read it (not running as root?)",
    NOT_FOUND: "DCGM's value says not found",
    NOT_SUPPORTED: "DCGM's value says not supported",
    BLANK: "DCGM holds no value: profiling paused (e.g. while a diagnostic or Nsight runs) or "
           "no sample yet",
    PAUSED: "the host engine is paused",
    ERROR: "the read failed this cycle (logged at debug level)",
}
"""The reasons this source puts in ``gpu_exporter_field_supported``, for docs and logs."""

_STATUS_REASONS: dict[int, str] = {
    -6: NOT_SUPPORTED,
    -14: BLANK,  # NO_DATA
    -17: NOT_PERMISSIONED,  # NO_PERMISSION
    -29: NOT_PERMISSIONED,  # REQUIRES_ROOT
    -33: PROFILING_MODULE_NOT_LOADED,
    -36: PROFILING_NOT_SUPPORTED,
    -37: PROFILING_LIBRARY_ERROR,
    -38: PROFILING_MULTI_PASS,
    -54: PAUSED,
}

GPU_ONLY_FIELDS = frozenset({1009, 1010, 1011, 1012})
"""Profiling fields DCGM reads per GPU only (PCIe and NVLink bytes), never per MIG instance."""

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
CONNECT_TIMEOUT_MS = 3000
MIN_UPDATE_US = 100_000
"""DCGM's shortest profiling sample period (100 ms)."""
IDENTITY_UPDATE_US = 3_600_000_000
"""The UUID watch: it never changes while connected, so once an hour is plenty."""
REPROBE_S = 60.0
"""How often a GPU whose profiling the engine refused (module not loaded, library error, ...)
is probed and watched again."""


def status_reason(code: int) -> str:
    """The ``gpu_exporter_field_supported`` reason for a DCGM return code (pure)."""
    return _STATUS_REASONS.get(code, ERROR)


def backoff(previous: float | None) -> float:
    """The next reconnect delay: 1 s, doubling, at most 60 s (pure)."""
    return BACKOFF_FIRST_S if previous is None else min(previous * 2, BACKOFF_MAX_S)


def wait_bound(slow_s: float) -> float:
    """How long a GPU's worker waits for the engine's readout: half its cycle wait, 0.1-2 s."""
    return min(max(slow_s / 2, 0.1), 2.0)


# ---------------------------------------------------------------------------- planning (pure)


@dataclass(frozen=True, slots=True)
class GpuDemand:
    """One GPU that needs DCGM: its UUID and the NVML GPU instance ids read per instance."""

    uuid: str
    instances: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Demand:
    """What the cycle asks of DCGM: the wanted profiling fields on these GPUs."""

    fields: tuple[int, ...] = ()
    gpus: tuple[GpuDemand, ...] = ()


def demand_of(views: Iterable[DeviceView], fields: Iterable[int]) -> Demand:
    """The GPUs without GPM among ``views``, with the MIG instances they report (pure)."""
    wanted = tuple(sorted(fields))
    if not wanted:
        return Demand()
    gpus = tuple(
        GpuDemand(view.entity.uuid, tuple(sorted(
            t.gi_id for t in view.targets.get("instance", ()) if t.gi_id is not None)))
        for view in views if not view.info.gpm_supported
    )
    return Demand(wanted, gpus) if gpus else Demand()


def choose_groups(
    fields: Sequence[int], groups: Sequence[MetricGroup],
) -> tuple[tuple[tuple[int, tuple[int, ...]], ...], dict[int, str]]:
    """The wanted fields per metric group as ``(major, fields)``, and the fields no group has.

    A field is taken from the first group that lists it. Groups are ordered by the lowest
    wanted field they hold (most wanted first), so that giving groups up from the end
    (multi-pass, :func:`drop_for_multi_pass`) keeps ``GR_ENGINE_ACTIVE`` longest (pure).
    """
    wanted = set(fields)
    taken: set[int] = set()
    chosen: list[tuple[int, tuple[int, ...]]] = []
    for group in groups:
        own = tuple(sorted(f for f in set(group.field_ids) & wanted if f not in taken))
        if own:
            chosen.append((group.major, own))
            taken.update(own)
    chosen.sort(key=lambda group: min(group[1]))
    missing = {f: PROFILING_NOT_SUPPORTED for f in fields if f not in taken}
    return tuple(chosen), missing


def drop_for_multi_pass(chosen: Sequence[tuple[int, tuple[int, ...]]]) -> int:
    """Which chosen group to give up when the engine says ``PROFILING_MULTI_PASS`` (pure).

    Groups of one major need one hardware pass each, so the least wanted group that shares
    its major with a more wanted one goes first; when every major is alone, the least wanted.
    """
    seen: set[int] = set()
    shared = -1
    for index, (major, _fields) in enumerate(chosen):
        if major in seen:
            shared = index
        seen.add(major)
    return shared if shared >= 0 else len(chosen) - 1


@dataclass(frozen=True, slots=True)
class Unit:
    """One watch: these DCGM entities times these fields; ``keys``: each entity's GI id or None."""

    entities: tuple[tuple[int, int], ...]
    keys: tuple[int | None, ...]
    fields: tuple[int, ...]

    def restricted(self, allowed: frozenset[int]) -> Unit | None:
        """The same watch with only ``allowed`` fields; None when none is left."""
        kept = tuple(f for f in self.fields if f in allowed)
        return Unit(self.entities, self.keys, kept) if kept and self.entities else None


def plan_units(
    gpu_id: int, demand: GpuDemand, fields: Sequence[int], instances: Mapping[int, int],
) -> tuple[tuple[Unit, ...], dict[tuple[int | None, int], str]]:
    """The watches of one GPU, and the (GI id, field) pairs the engine cannot have (pure).

    Args:
        gpu_id: DCGM's id of the GPU.
        demand: the GPU and the MIG instances it reports.
        fields: the wanted fields its metric groups offer.
        instances: NVML GPU instance id -> DCGM ``GPU_I`` entity id, for this GPU.
    """
    if not demand.instances:
        return (Unit(((FE_GPU, gpu_id),), (None,), tuple(fields)),), {}
    per_instance = tuple(f for f in fields if f not in GPU_ONLY_FIELDS)
    per_gpu = tuple(f for f in fields if f in GPU_ONLY_FIELDS)
    known = [gi for gi in demand.instances if gi in instances]
    missing: dict[tuple[int | None, int], str] = {
        (gi, f): DCGM_NO_GPU for gi in demand.instances if gi not in instances
        for f in per_instance}
    units = []
    if per_instance and known:
        units.append(Unit(tuple((FE_GPU_I, instances[gi]) for gi in known), tuple(known),
                          per_instance))
    if per_gpu:
        units.append(Unit(((FE_GPU, gpu_id),), (None,), per_gpu))
    return tuple(units), missing


# ---------------------------------------------------------------------------- readouts


@dataclass(frozen=True, slots=True)
class GpuReadout:
    """One GPU's part of a readout.

    Attributes:
        values: (GI id or None for the GPU, field id) -> value in DCGM's unit.
        reasons: (GI id or None, field id) -> why there is no value.
        field_reasons: field id -> why the field is not read on this GPU at all.
        reason: why nothing is read on this GPU (overrides the rest), else None.
    """

    values: Mapping[tuple[int | None, int], float] = field(default_factory=dict)
    reasons: Mapping[tuple[int | None, int], str] = field(default_factory=dict)
    field_reasons: Mapping[int, str] = field(default_factory=dict)
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Readout:
    """What the engine said in one cycle (``seq``); ``reason`` set when it said nothing."""

    seq: int
    reason: str | None
    gpus: Mapping[str, GpuReadout] = field(default_factory=dict)


def decode_values(
    values: Iterable[FieldValue], keys: Mapping[tuple[int, int], int | None],
    out_values: dict[tuple[int | None, int], float], out_reasons: dict[tuple[int | None, int], str],
) -> None:
    """Sort one ``dcgmEntitiesGetLatestValues`` answer into values and reasons (pure).

    ``keys``: (entity group, entity id) -> GI id or None. A value of another entity is ignored.
    """
    for value in values:
        entity = (value.entity_group, value.entity_id)
        if entity not in keys:
            continue
        key = (keys[entity], value.field_id)
        if value.status != ST_OK:
            out_reasons[key] = status_reason(value.status)
        elif value.blank is not None:
            out_reasons[key] = value.blank
        elif isinstance(value.value, float) and math.isfinite(value.value):
            out_values[key] = value.value
        else:
            out_reasons[key] = ERROR


def merge(
    view: DeviceView, fields: frozenset[int], readout: Readout | None, *, late: str = DCGM_SLOW,
) -> CollectResult:
    """One GPU's samples and reasons from a readout, in the profiling collector's layout (pure).

    Instance-level fields go on each MIG instance (or the GPU without MIG); fields DCGM reads
    only per GPU go on the GPU, repeated on the instances by the sampler in dcgm-exporter's
    layout, and marked ``mig_instance`` on the instances with ``--mig-device-fields-once``.

    Args:
        view: the GPU.
        fields: the wanted profiling fields.
        readout: this cycle's readout, ``None`` when it did not come in time.
        late: the reason when ``readout`` is None.
    """
    out = ResultBuilder()
    targets = view.targets.get("instance", ())
    ordered = sorted(fields)
    whole: str | None = late if readout is None else readout.reason
    gpu = None
    if whole is None and readout is not None:
        gpu = readout.gpus.get(view.entity.uuid)
        whole = DCGM_NO_GPU if gpu is None else gpu.reason
    if whole is not None or gpu is None:
        for target in targets:
            for fid in ordered:
                out.mark(target.entity, fid, whole or DCGM_NO_GPU)
        return out.result()
    split = any(t.gi_id is not None for t in targets)
    parent_exported = view.repeat_device or view.entity in view.entities
    for fid in ordered:
        if split and fid in GPU_ONLY_FIELDS:
            if parent_exported:
                _put(out, gpu, view.entity, (None, fid))
            if not view.repeat_device:
                for target in targets:
                    out.mark(target.entity, fid, MIG_INSTANCE)
            continue
        for target in targets:
            _put(out, gpu, target.entity, (target.gi_id, fid))
    return out.result()


def _put(out: ResultBuilder, gpu: GpuReadout, entity: Entity, key: tuple[int | None, int]) -> None:
    """A sample in DCGM's unit (no catalog conversion: DCGM gives ratios and B/s), or a mark."""
    fid = key[1]
    reason = gpu.field_reasons.get(fid)
    if reason is not None:
        out.mark(entity, fid, reason)
        return
    value = gpu.values.get(key)
    if value is not None:
        out.samples.append(Sample(entity, fid, value))
        return
    out.mark(entity, fid, gpu.reasons.get(key, DCGM_NO_GPU))


# ---------------------------------------------------------------------------- the engine side


def open_library(path: str | None) -> Dcgm:
    """Load and initialise libdcgm (``path``, else the sonames); raises DcgmLibraryNotFound."""
    return Dcgm(load_library(path))


@dataclass(slots=True)
class _Watch:
    unit: Unit
    group: int
    field_group: int


@dataclass(slots=True)
class _GpuPlan:
    watches: list[_Watch] = field(default_factory=list)
    field_reasons: dict[int, str] = field(default_factory=dict)
    reasons: dict[tuple[int | None, int], str] = field(default_factory=dict)
    reason: str | None = None
    retry: bool = False
    """The engine refused profiling on this GPU (module not loaded, library error, ...):
    asked again every :data:`REPROBE_S`, as the engine's state can change."""


def _quietly(what: str, step: Callable[[], None]) -> None:
    """Run a clean-up step; only a lost connection is raised (the rest is logged)."""
    try:
        step()
    except DcgmError as exc:
        if exc.code == ST_CONNECTION_NOT_VALID:
            raise
        log.debug("DCGM: removing a %s: %s", what, exc)


def _outcome(plan: _GpuPlan) -> tuple[object, ...]:
    """What a GPU's plan amounts to, for logging only changes."""
    watched = tuple(sorted({f for w in plan.watches for f in w.unit.fields}))
    return plan.reason, tuple(sorted(plan.field_reasons.items())), watched


def _instances(hierarchy: Iterable[MigEntity], uuid: str) -> dict[int, int]:
    """NVML GPU instance id -> DCGM ``GPU_I`` entity id, for the GPU ``uuid`` (pure)."""
    return {m.instance_id: m.entity_id for m in hierarchy
            if m.entity_group == FE_GPU_I and m.gpu_uuid == uuid}


class DcgmSource:
    """The DCGM connection, its thread, and this cycle's readout for the GPUs' workers.

    Args:
        settings: where the engine is, and the watch retention.
        update_us: how often the engine samples the watched fields (the collect interval).
        wait_s: how long a GPU's worker waits for a cycle's readout (:func:`wait_bound`).
        library: path of the DCGM library (the simulator's stub); ``None``: the sonames.
        opener: loads the library (a fake in unit tests).
        clock: monotonic time.
    """

    def __init__(
        self, settings: DcgmSettings, *, update_us: int, wait_s: float,
        library: str | None = None, opener: Callable[[str | None], Dcgm] = open_library,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._update_us = max(int(update_us), MIN_UPDATE_US)
        self._wait_s = wait_s
        self._library = library
        self._opener = opener
        self._clock = clock
        self._cond = threading.Condition()
        self._seq = 0
        self._demand = Demand()
        self._requested_at = clock()
        self._busy_since: float | None = None
        self._stuck = False
        self._stopping = False
        self._readout = Readout(0, DCGM_DOWN)
        self.up = False
        # owned by the thread
        self._api: Dcgm | None = None
        self._handle: Handle | None = None
        self._planned: Demand | None = None
        self._plans: dict[str, _GpuPlan] = {}
        self._uuids: dict[str, int] = {}
        self._identity: _Watch | None = None
        self._reprobe_at: float | None = None
        self._next_attempt = 0.0
        self._delay: float | None = None
        self._outage_since: float | None = None
        self._names = 0
        self._thread = threading.Thread(target=self._run, name="dcgm", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ the sampler's side

    def begin_cycle(self, views: Sequence[DeviceView], fields: frozenset[int]) -> None:
        """Ask the thread for this cycle's readout (does not wait)."""
        demand = demand_of(views, fields)
        with self._cond:
            now = self._clock()
            busy = self._busy_since
            self._stuck = busy is not None and now - busy > self._wait_s
            self._seq += 1
            self._demand = demand
            self._requested_at = now
            self._cond.notify_all()

    def collect(self, device: DeviceView, fields: frozenset[int]) -> CollectResult:
        """One GPU's DCGM samples and reasons for this cycle (waits at most ``wait_s``)."""
        readout = self._await()
        return merge(device, fields, readout, late=DCGM_SLOW if self.up else DCGM_DOWN)

    def _await(self) -> Readout | None:
        with self._cond:
            seq = self._seq
            if self._stuck:
                return None
            deadline = self._requested_at + self._wait_s
            while self._readout.seq < seq and not self._stopping:
                left = deadline - self._clock()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self._readout if self._readout.seq >= seq else None

    def natives(self) -> list[Native]:
        """``gpu_exporter_dcgm_up``."""
        return [Native("gpu_exporter_dcgm_up", 1.0 if self.up else 0.0)]

    def close(self, timeout_s: float = 3.0) -> bool:
        """Stop the thread (it unwatches, disconnects, shuts DCGM down); False if it is stuck."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        where = self._where()
        try:
            self._api = self._opener(self._library)
        except DcgmLibraryNotFound as exc:
            log.warning("DCGM asked for (%s) but not usable: %s. Profiling fields of GPUs "
                        "without GPM stay absent (reason %s), gpu_exporter_dcgm_up 0; "
                        "everything else is unaffected", where, exc, DCGM_NO_LIBRARY)
        except DcgmError as exc:
            log.warning("DCGM asked for (%s) but dcgmInit failed: %s; gpu_exporter_dcgm_up 0",
                        where, exc)
        seq = 0
        while True:
            with self._cond:
                while self._seq == seq and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    break
                seq, demand = self._seq, self._demand
                self._busy_since = self._clock()
            try:
                readout = self._work(seq, demand)
            except Exception:  # the thread must survive anything: logged, reconnects
                log.exception("DCGM: unexpected failure; reconnecting")
                self._drop()
                readout = Readout(seq, DCGM_DOWN)
            with self._cond:
                self._busy_since = None
                self._readout = readout
                self._cond.notify_all()
        self._finish()

    def _where(self) -> str:
        settings = self._settings
        kind = "unix socket " if settings.unix_socket else ""
        return f"{settings.flag} {kind}{settings.address}"

    def _work(self, seq: int, demand: Demand) -> Readout:
        api = self._api
        if api is None:
            return Readout(seq, DCGM_NO_LIBRARY)
        if self._handle is None and not self._connect(api):
            return Readout(seq, DCGM_DOWN)
        try:
            if demand != self._planned:
                self._plan(demand)
            elif self._reprobe_at is not None and self._clock() >= self._reprobe_at:
                self._reprobe()
            return self._poll(seq)
        except DcgmError as exc:
            self._lost(exc)
            return Readout(seq, DCGM_DOWN)

    def _connect(self, api: Dcgm) -> bool:
        now = self._clock()
        if now < self._next_attempt:
            return False
        settings = self._settings
        try:
            self._handle = api.connect(settings.address, unix_socket=settings.unix_socket,
                                       timeout_ms=CONNECT_TIMEOUT_MS)
        except DcgmError as exc:
            self._failed(exc)
            return False
        if self._outage_since is not None:
            log.info("DCGM host engine (%s) connected again after %.0fs", self._where(),
                     self._clock() - self._outage_since)
        else:
            log.info("DCGM host engine (%s) connected: profiling fields of GPUs without GPM "
                     "come from it", self._where())
        self._outage_since = None
        self._delay = None
        self.up = True
        return True

    def _failed(self, exc: DcgmError) -> None:
        """A connection attempt failed: back off; one warning per outage."""
        self._delay = backoff(self._delay)
        self._next_attempt = self._clock() + self._delay
        self.up = False
        if self._outage_since is None:
            self._outage_since = self._clock()
            log.warning("DCGM host engine (%s) unreachable: %s. Profiling fields of GPUs without "
                        "GPM are absent (reason %s) and gpu_exporter_dcgm_up is 0 until it "
                        "answers; retrying with backoff (at most every %.0fs)", self._where(),
                        exc.text or exc, DCGM_DOWN, BACKOFF_MAX_S)
        else:
            log.debug("DCGM host engine (%s) still unreachable: %s; next try in %.0fs",
                      self._where(), exc, self._delay)

    def _lost(self, exc: DcgmError) -> None:
        """A call on the connection failed: drop it, reconnect later (one warning per outage)."""
        if exc.code != ST_CONNECTION_NOT_VALID:
            log.warning("DCGM: %s; dropping the connection and reconnecting", exc)
        self._drop()
        self._failed(exc)

    def _drop(self) -> None:
        handle, self._handle = self._handle, None
        self.up = False
        self._planned = None
        self._plans = {}
        self._uuids = {}
        self._identity = None
        self._reprobe_at = None
        if handle is not None and self._api is not None:
            try:
                self._api.disconnect(handle)
            except DcgmError as exc:
                log.debug("DCGM: disconnect: %s", exc)

    def _connection(self) -> tuple[Dcgm, Handle]:
        api, handle = self._api, self._handle
        if api is None or handle is None:
            raise RuntimeError("DCGM call without a connection")
        return api, handle

    def _name(self, what: str) -> str:
        self._names += 1
        return f"gpu-exporter-{os.getpid()}-{what}-{self._names}"

    def _watch(self, unit: Unit, update_us: int) -> _Watch:
        """Create a group and a field group for ``unit`` and watch them (undone on failure)."""
        api, handle = self._connection()
        settings = self._settings
        group = api.group_create(handle, self._name("group"))
        field_group = None
        try:
            for entity_group, entity_id in unit.entities:
                api.group_add_entity(handle, group, entity_group, entity_id)
            field_group = api.field_group_create(handle, unit.fields, self._name("fields"))
            api.watch(handle, group, field_group, update_us, settings.max_keep_age,
                      settings.max_keep_samples)
        except DcgmError:
            self._destroy(_Watch(unit, group, field_group if field_group is not None else -1),
                          watched=False)
            raise
        return _Watch(unit, group, field_group)

    def _destroy(self, watch: _Watch, *, watched: bool = True) -> None:
        api, handle = self._api, self._handle
        if api is None or handle is None:
            return
        steps: list[tuple[str, Callable[[], None]]] = []
        if watched:
            steps.append(("unwatch", lambda: api.unwatch(handle, watch.group, watch.field_group)))
        if watch.field_group >= 0:
            steps.append(("field group",
                          lambda: api.field_group_destroy(handle, watch.field_group)))
        steps.append(("group", lambda: api.group_destroy(handle, watch.group)))
        for what, step in steps:
            _quietly(what, step)

    def _teardown(self) -> None:
        for plan in self._plans.values():
            for watch in plan.watches:
                self._destroy(watch)
        self._plans = {}
        self._planned = None

    def _identify(self) -> None:
        """DCGM GPU id per GPU UUID, from a watch of ``DCGM_FI_DEV_UUID`` on every GPU."""
        api, handle = self._connection()
        if self._identity is not None:
            self._destroy(self._identity)
            self._identity = None
        ids = api.supported_devices(handle)
        self._uuids = {}
        if not ids:
            return
        unit = Unit(tuple((FE_GPU, i) for i in ids), tuple(ids), (FIELD_UUID,))
        self._identity = self._watch(unit, IDENTITY_UPDATE_US)
        api.update_all(handle, wait=True)
        for value in api.latest_values(handle, unit.entities, unit.fields):
            if value.status == ST_OK and isinstance(value.value, str) and value.blank is None:
                self._uuids[value.value.strip()] = value.entity_id

    def _plan(self, demand: Demand) -> None:
        """Watch the demanded fields (replacing earlier watches)."""
        api, handle = self._connection()
        self._teardown()
        if demand.gpus and any(g.uuid not in self._uuids for g in demand.gpus):
            self._identify()
        hierarchy: tuple[MigEntity, ...] = ()
        if any(g.instances for g in demand.gpus):
            hierarchy = api.mig_hierarchy(handle)
        plans: dict[str, _GpuPlan] = {}
        for gpu in demand.gpus:
            gpu_id = self._uuids.get(gpu.uuid)
            if gpu_id is None:
                plans[gpu.uuid] = _GpuPlan(reason=DCGM_NO_GPU)
                continue
            plans[gpu.uuid] = self._plan_gpu(gpu_id, gpu, demand.fields,
                                             _instances(hierarchy, gpu.uuid))
        if any(plan.watches for plan in plans.values()):
            api.update_all(handle, wait=True)
        self._plans = plans
        self._planned = demand
        self._schedule_reprobe()
        self._log_plan(plans)

    def _schedule_reprobe(self) -> None:
        retry = any(plan.retry for plan in self._plans.values())
        self._reprobe_at = self._clock() + REPROBE_S if retry else None

    def _reprobe(self) -> None:
        """Probe and watch again the GPUs whose profiling the engine refused."""
        api, handle = self._connection()
        demand = self._planned or Demand()
        hierarchy: tuple[MigEntity, ...] = ()
        if any(g.instances for g in demand.gpus):
            hierarchy = api.mig_hierarchy(handle)
        again: dict[str, _GpuPlan] = {}
        changed: dict[str, _GpuPlan] = {}
        for gpu in demand.gpus:
            plan = self._plans.get(gpu.uuid)
            gpu_id = self._uuids.get(gpu.uuid)
            if plan is None or not plan.retry or gpu_id is None:
                continue
            for watch in plan.watches:
                self._destroy(watch)
            plan.watches = []
            again[gpu.uuid] = self._plan_gpu(gpu_id, gpu, demand.fields,
                                             _instances(hierarchy, gpu.uuid))
            if _outcome(again[gpu.uuid]) != _outcome(plan):
                changed[gpu.uuid] = again[gpu.uuid]
            self._plans[gpu.uuid] = again[gpu.uuid]
        if any(plan.watches for plan in again.values()):
            api.update_all(handle, wait=True)
        self._schedule_reprobe()
        self._log_plan(changed)  # a GPU refused again is not logged again

    def _plan_gpu(
        self, gpu_id: int, gpu: GpuDemand, fields: Sequence[int], instances: Mapping[int, int],
    ) -> _GpuPlan:
        api, handle = self._connection()
        try:
            groups = api.metric_groups(handle, gpu_id)
        except DcgmError as exc:
            if exc.code == ST_CONNECTION_NOT_VALID:
                raise
            return _GpuPlan(reason=status_reason(exc.code), retry=True)
        chosen, field_reasons = choose_groups(fields, groups)
        plan = _GpuPlan(field_reasons=field_reasons)
        active = list(chosen)
        while active:
            allowed = frozenset(f for _major, group in active for f in group)
            units, plan.reasons = plan_units(gpu_id, gpu, sorted(allowed), instances)
            try:
                for unit in units:
                    plan.watches.append(self._watch(unit, self._update_us))
            except DcgmError as exc:
                for watch in plan.watches:
                    self._destroy(watch)
                plan.watches = []
                if exc.code == ST_CONNECTION_NOT_VALID:
                    raise
                if exc.code == ST_PROFILING_MULTI_PASS and len(active) > 1:
                    _major, dropped = active.pop(drop_for_multi_pass(active))
                    for f in dropped:
                        plan.field_reasons[f] = PROFILING_MULTI_PASS
                    continue
                reason = status_reason(exc.code)
                for f in allowed:
                    plan.field_reasons[f] = reason
                plan.retry = exc.code != ST_PROFILING_MULTI_PASS
            break
        return plan

    def _log_plan(self, plans: Mapping[str, _GpuPlan]) -> None:
        for uuid, plan in plans.items():
            watched = sorted({f for w in plan.watches for f in w.unit.fields})
            problems = sorted({*plan.field_reasons.items()})
            if plan.reason is not None:
                log.info("DCGM: GPU %s: no profiling fields (%s)", uuid, plan.reason)
            elif problems:
                log.info("DCGM: GPU %s: watching fields %s; not available: %s", uuid,
                         watched, ", ".join(f"{f} ({r})" for f, r in problems))
            else:
                log.debug("DCGM: GPU %s: watching fields %s", uuid, watched)

    def _poll(self, seq: int) -> Readout:
        api, handle = self._connection()
        gpus: dict[str, GpuReadout] = {}
        for uuid, plan in self._plans.items():
            values: dict[tuple[int | None, int], float] = {}
            reasons = dict(plan.reasons)
            for watch in plan.watches:
                unit = watch.unit
                try:
                    answer = api.latest_values(handle, unit.entities, unit.fields)
                except DcgmError as exc:
                    if exc.code == ST_CONNECTION_NOT_VALID:
                        raise
                    log.debug("DCGM: GPU %s: %s", uuid, exc)
                    for key in unit.keys:
                        for fid in unit.fields:
                            reasons[(key, fid)] = ERROR
                    continue
                decode_values(answer, dict(zip(unit.entities, unit.keys, strict=True)),
                              values, reasons)
            gpus[uuid] = GpuReadout(values, reasons, dict(plan.field_reasons), plan.reason)
        return Readout(seq, None, gpus)

    def _finish(self) -> None:
        """At stop: remove the watches, disconnect, shut the library down (errors ignored)."""
        api = self._api
        if api is None:
            return
        try:
            if self._handle is not None:
                self._teardown()
                if self._identity is not None:
                    self._destroy(self._identity)
        except DcgmError as exc:
            log.debug("DCGM: cleanup: %s", exc)
        self._drop()
        try:
            api.shutdown()
        except DcgmError as exc:
            log.debug("DCGM: dcgmShutdown: %s", exc)
