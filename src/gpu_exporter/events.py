"""XID and clock events: a dedicated NVML event thread and windowed counts.

Two parts:

* :class:`EventLog` (pure, explicit ``now``): remembers XIDs and clock-event transitions and
  answers the windowed questions ``DCGM_FI_DEV_XID_ERRORS``, ``DCGM_EXP_XID_ERRORS_COUNT`` and
  ``DCGM_EXP_CLOCK_EVENTS_COUNT`` ask, plus the never-decreasing ``gpu_exporter_xid_errors_total``.
* :class:`EventWatcher`: a daemon thread looping on ``nvmlEventSetWait_v2`` with a long timeout
  (5 s by default: an idle exporter wakes rarely; shutdown does not wait for the wait, see
  :meth:`EventWatcher.stop`) for XidCriticalError (and
  MIG configuration changes, which make the sampler re-probe the GPU). It keeps counting while
  collection cycles fail. When the wait reports GPU_IS_LOST (a registered GPU fell off the bus,
  which makes the whole set unusable), the set is rebuilt with the GPUs that still register;
  a lost GPU comes back through :meth:`EventWatcher.add_gpu` when the sampler re-probes it.

Semantics (documented for users in the HELP texts and docs):

* ``DCGM_FI_DEV_XID_ERRORS`` is the last XID seen within the XID window (``-x``, default 300 s)
  with labels ``err_code`` (the code) and ``err_msg`` (its description); with no XID in the window
  it is ``0`` with ``err_code="0"`` and ``err_msg`` = the description of code 0. So it is never
  absent and never sticky forever: it falls back to 0 once the window has passed.
* ``DCGM_EXP_XID_ERRORS_COUNT`` has one series per XID code seen in the window
  (labels ``window_size_in_ms``, ``xid``); with none, one ``0`` without an ``xid`` label.
* ``DCGM_EXP_CLOCK_EVENTS_COUNT`` counts, per reason, how often a clock event reason became
  active within its window (labels ``window_size_in_ms``, ``clock_event``). NVML's clock event
  (``nvmlEventTypeClock``) carries no reason, so the reasons bitmask
  (``nvmlDeviceGetCurrentClocksEventReasons``) is sampled once per collection cycle and each
  reason bit that turns on counts as one event (a reason already active at the first sample
  counts once). Short episodes between two cycles are missed; that is the documented cost of not
  having DCGM. With no event in the window: one ``0`` without a ``clock_event`` label.
* A MIG-scoped XID (GPU/compute instance ids set) attaches to that MIG instance when it is
  exported, else to its GPU.
"""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from gpu_exporter.model import Entity, Native, Sample, new_sample

if TYPE_CHECKING:
    from gpu_exporter.nvml import EventSet, Handle, Nvml

log = logging.getLogger(__name__)

XID_ERRORS = 230
XID_ERRORS_COUNT = 9001
CLOCK_EVENTS_COUNT = 9002
XID_TOTAL = "gpu_exporter_xid_errors_total"

CLOCK_EVENT_NAMES: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "clocks_setting",
    0x4: "power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
    0x100: "display_clocks",
}
"""Clock event reason bit -> dcgm-exporter ``clock_event`` label value."""

_MAX_REMEMBERED = 10_000  # per entity: a storm of events must not grow memory without bound

EntityKey = tuple[int, int | None]
"""(GPU index, GPU instance id or None)."""


def describe_xid(code: int) -> str:
    """Human description of an XID code (from :mod:`gpu_exporter.xid` when present)."""
    try:
        from gpu_exporter import xid  # noqa: PLC0415 - owned by another module, optional here
    except ImportError:
        return "No error" if code == 0 else "Unknown XID"
    return str(xid.describe(code))


def key_of(entity: Entity) -> EntityKey:
    """The event-log key of an entity."""
    return (entity.gpu, entity.gi_id)


class EventLog:
    """XIDs and clock-event transitions with windowed views (thread-safe, explicit clock).

    Args:
        xid_window_s: window of ``DCGM_FI_DEV_XID_ERRORS`` and ``DCGM_EXP_XID_ERRORS_COUNT``.
        clock_window_s: window of ``DCGM_EXP_CLOCK_EVENTS_COUNT``.
        describe: XID code -> description (``err_msg``).
    """

    def __init__(
        self,
        *,
        xid_window_s: float = 300.0,
        clock_window_s: float = 300.0,
        describe: Callable[[int], str] = describe_xid,
    ) -> None:
        self.xid_window_s = xid_window_s
        self.clock_window_s = clock_window_s
        self._describe = describe
        self._lock = threading.Lock()
        self._xids: dict[EntityKey, deque[tuple[float, int]]] = {}
        self._totals: dict[EntityKey, dict[int, int]] = {}
        self._instances: dict[int, frozenset[int]] = {}
        self._clock: dict[int, deque[tuple[float, int]]] = {}
        self._last_mask: dict[int, int] = {}
        self._messages: dict[int, str] = {}
        # the samples of an entity with nothing in its window (the usual case), built once:
        # (entity, fields, window) they were built for, and the samples
        self._quiet_xid: dict[EntityKey, tuple[Entity, frozenset[int], float, list[Sample]]] = {}
        self._quiet_clock: dict[int, tuple[Entity, float, list[Sample]]] = {}
        self._recorded = 0  # XIDs and clock events recorded so far (all GPUs)
        # what totals() last built: from how many recorded events, for which entities
        self._last_totals: tuple[int, tuple[Entity, ...], list[Native]] | None = None

    # ------------------------------------------------------------------ writers

    def set_instances(self, gpu: int, gi_ids: Iterable[int]) -> None:
        """Declare which GPU instances of ``gpu`` are exported (for MIG-scoped XIDs)."""
        with self._lock:
            self._instances[gpu] = frozenset(gi_ids)

    def record_xid(self, gpu: int, code: int, now: float, gi_id: int | None = None) -> None:
        """Remember one XID of ``gpu`` (MIG-scoped when ``gi_id`` names an exported instance)."""
        with self._lock:
            if gi_id is not None and gi_id not in self._instances.get(gpu, frozenset()):
                gi_id = None
            key = (gpu, gi_id)
            events = self._xids.get(key)
            if events is None:
                events = self._xids[key] = deque(maxlen=_MAX_REMEMBERED)
            events.append((now, code))
            self._recorded += 1
            totals = self._totals.setdefault(key, {})
            totals[code] = totals.get(code, 0) + 1

    def observe_clock_reasons(self, gpu: int, mask: int, now: float) -> int:
        """Feed one sample of a GPU's clock event reasons bitmask; new bits count as events.

        Returns :attr:`recorded` after it.
        """
        with self._lock:
            self._observe_locked(gpu, mask, now)
            return self._recorded

    @property
    def recorded(self) -> int:
        """How many XIDs and clock events were recorded so far (all GPUs; only grows).

        While it stays the same, a view with nothing in its window stays the same.
        """
        with self._lock:
            return self._recorded

    def _observe_locked(self, gpu: int, mask: int, now: float) -> None:
        previous = self._last_mask.get(gpu, 0)
        self._last_mask[gpu] = mask
        rising = mask & ~previous
        if not rising:
            return
        events = self._clock.get(gpu)
        if events is None:
            events = self._clock[gpu] = deque(maxlen=_MAX_REMEMBERED)
        for bit in CLOCK_EVENT_NAMES:
            if rising & bit:
                events.append((now, bit))
                self._recorded += 1

    def forget_clock_state(self, gpu: int) -> None:
        """Forget the last bitmask of a GPU (it was lost); its counted events stay."""
        with self._lock:
            self._last_mask.pop(gpu, None)

    # ------------------------------------------------------------------ readers

    @staticmethod
    def _recent(events: deque[tuple[float, int]] | None, since: float) -> list[int]:
        if not events:
            return []
        while events and events[0][0] < since:
            events.popleft()
        return [value for _, value in events]

    def _message(self, code: int) -> str:
        text = self._messages.get(code)
        if text is None:
            text = self._messages[code] = self._describe(code)
        return text

    def xid_samples(
        self, entity: Entity, fields: frozenset[int], now: float, *, with_device: bool = False,
    ) -> list[Sample]:
        """``DCGM_FI_DEV_XID_ERRORS`` and ``DCGM_EXP_XID_ERRORS_COUNT`` samples of an entity.

        ``with_device``: a MIG instance's samples also count the XIDs of its GPU that are not
        scoped to an instance (dcgm-exporter's MIG layout, where the GPU has no series).
        """
        window = self.xid_window_s
        since = now - window
        key = key_of(entity)
        with self._lock:
            codes = self._recent(self._xids.get(key), since)
            if with_device and entity.is_mig:
                own = self._xids.get(key)
                device = self._xids.get((entity.gpu, None))
                self._recent(device, since)
                codes = [code for _, code in sorted(
                    [*(own or ()), *(device or ())], key=lambda event: event[0])]
        if not codes:  # nothing in the window: the same samples as last time, if built
            quiet = self._quiet_xid.get(key)
            if (quiet is not None and quiet[0] is entity and quiet[1] == fields
                    and quiet[2] == window):
                return list(quiet[3])
        out = self._xid_samples(entity, fields, codes, str(round(window * 1000)))
        if not codes:
            self._quiet_xid[key] = (entity, fields, window, out[:])
        return out

    def _xid_samples(
        self, entity: Entity, fields: frozenset[int], codes: list[int], window_ms: str,
    ) -> list[Sample]:
        out: list[Sample] = []
        if XID_ERRORS in fields:
            last = codes[-1] if codes else 0
            out.append(new_sample(entity, XID_ERRORS, float(last),
                              (("err_code", str(last)), ("err_msg", self._message(last)))))
        if XID_ERRORS_COUNT in fields:
            if not codes:
                out.append(new_sample(entity, XID_ERRORS_COUNT, 0.0,
                                  (("window_size_in_ms", window_ms),)))
            out.extend(
                new_sample(entity, XID_ERRORS_COUNT, float(codes.count(code)),
                       (("window_size_in_ms", window_ms), ("xid", str(code))))
                for code in sorted(set(codes))
            )
        return out

    def recent_xids(self, gpu: int, now: float) -> list[int]:
        """XID codes of a GPU and its MIG instances within the XID window, oldest first."""
        since = now - self.xid_window_s
        with self._lock:
            found = [(t, code) for (g, _), events in self._xids.items() if g == gpu
                     for t, code in events if t >= since]
        return [code for _, code in sorted(found)]

    def clock_samples(self, entity: Entity, now: float, mask: int | None = None,
                      ) -> list[Sample]:
        """``DCGM_EXP_CLOCK_EVENTS_COUNT`` samples of a physical GPU.

        ``mask``: first feed this bitmask (:meth:`observe_clock_reasons`, under the same lock).
        """
        window = self.clock_window_s
        gpu = entity.gpu
        with self._lock:
            if mask is not None:
                self._observe_locked(gpu, mask, now)
            bits = self._recent(self._clock.get(gpu), now - window)
        if not bits:  # nothing in the window: the same sample as last time, if built
            quiet = self._quiet_clock.get(gpu)
            if quiet is None or quiet[0] is not entity or quiet[1] != window:
                quiet = self._quiet_clock[gpu] = (entity, window, [new_sample(
                    entity, CLOCK_EVENTS_COUNT, 0.0,
                    (("window_size_in_ms", str(round(window * 1000))),))])
            return list(quiet[2])
        window_ms = str(round(window * 1000))
        return [
            new_sample(entity, CLOCK_EVENTS_COUNT, float(bits.count(bit)),
                   (("window_size_in_ms", window_ms), ("clock_event", name)))
            for bit, name in CLOCK_EVENT_NAMES.items() if bit in bits
        ]

    def totals(self, entities: Iterable[Entity]) -> list[Native]:
        """``gpu_exporter_xid_errors_total{xid}`` of the given entities (codes seen only).

        Called once per cycle: last call's samples while no XID was recorded since.
        """
        wanted = tuple(entities)
        with self._lock:
            recorded = self._recorded
            last = self._last_totals
            if (last is not None and last[0] == recorded and len(last[1]) == len(wanted)
                    and all(map(operator.is_, last[1], wanted))):
                return list(last[2])
            snapshot = {key: dict(codes) for key, codes in self._totals.items()}
        out = self._totals_of(wanted, snapshot)
        with self._lock:
            self._last_totals = (recorded, wanted, out)
        return list(out)

    @staticmethod
    def _totals_of(entities: tuple[Entity, ...], snapshot: dict[EntityKey, dict[int, int]],
                   ) -> list[Native]:
        out: list[Native] = []
        for entity in entities:
            codes = snapshot.get(key_of(entity))
            if not codes:
                continue
            out.extend(
                Native(XID_TOTAL, float(count), (("xid", str(code)),), entity)
                for code, count in sorted(codes.items())
            )
        return out


_BACKOFF_S = 0.25
"""Pause after a failed wait before the next one."""

EVENT_WAIT_MS = 30_000
"""How long one ``nvmlEventSetWait_v2`` blocks. The driver returns at once when an event
arrives, so this only sets how often an idle event thread wakes (each wake costs about as
much CPU as a tenth of a collection cycle) and how soon a wait that overran it counts as stuck
(``gpu_exporter_event_wait_stuck_seconds``)."""


class EventWatcher:
    """The thread that waits on NVML events and feeds an :class:`EventLog`.

    Args:
        nvml: the NVML wrapper.
        log: where XIDs go.
        timeout_ms: how long one ``nvmlEventSetWait_v2`` blocks (default
            :data:`EVENT_WAIT_MS`); the driver returns at once when an event arrives.
        clock: time source for event timestamps (monotonic seconds).
    """

    def __init__(
        self,
        nvml: Nvml,
        event_log: EventLog,
        *,
        timeout_ms: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nvml = nvml
        self.log = event_log
        self._timeout_ms = EVENT_WAIT_MS if timeout_ms is None else timeout_ms
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._set: EventSet | None = None
        self._lock = threading.Lock()
        self._registering = threading.Lock()  # add_gpu against an event-set rebuild
        self._handles: dict[int, Handle] = {}
        self._gpus_by_address: dict[int, int] = {}
        self._xid_gpus: set[int] = set()
        self._mig_changed: set[int] = set()
        self._wait_since: float | None = None  # when the wait in progress began
        self.events_seen = 0

    @property
    def running(self) -> bool:
        """True while the wait thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def blocked_for(self) -> float:
        """Seconds the wait in progress has run past its own timeout (0 otherwise)."""
        since = self._wait_since
        if since is None:
            return 0.0
        return max(self._clock() - since - self._timeout_ms / 1000, 0.0)

    def start(self) -> bool:
        """Create the event set and start the thread; False when events are not available."""
        from gpu_exporter.nvml import NvmlError  # noqa: PLC0415 - keep import-time light

        try:
            self._set = self._nvml.event_set_create()
        except NvmlError as exc:
            log.warning("NVML events unavailable (%s): XID fields will be unsupported", exc)
            return False
        self._thread = threading.Thread(target=self._run, name="nvml-events", daemon=True)
        self._thread.start()
        return True

    def add_gpu(self, gpu: int, handle: Handle) -> bool:
        """Register a (re-)probed GPU for XID and MIG-change events; True if XIDs will arrive."""
        from gpu_exporter.nvml import NvmlError  # noqa: PLC0415

        with self._registering:
            if self._set is None:
                return False
            with self._lock:  # known before registering: an event may arrive right away
                self._gpus_by_address[self._nvml.handle_address(handle)] = gpu
            self._handles[gpu] = handle
            try:
                xids = self._register(handle, self._set)
            except NvmlError as exc:
                log.warning("GPU %d: cannot register for NVML events (%s)", gpu, exc)
                xids = False
            self._mark_xids(gpu, supported=xids)
        return xids

    def _register(self, handle: Handle, event_set: EventSet) -> bool:
        """Register XID and MIG-change events of one GPU in ``event_set``; True for XIDs."""
        from gpu_exporter.nvml import EVENT_MIG_CONFIG_CHANGE, EVENT_XID  # noqa: PLC0415

        mask = self._nvml.supported_event_types(handle) & (EVENT_XID | EVENT_MIG_CONFIG_CHANGE)
        ok = bool(mask) and self._nvml.register_events(handle, mask, event_set)
        return ok and bool(mask & EVENT_XID)

    def _mark_xids(self, gpu: int, *, supported: bool) -> None:
        with self._lock:
            if supported:
                self._xid_gpus.add(gpu)
            else:
                self._xid_gpus.discard(gpu)

    def _rebuild(self) -> bool:
        """Replace the event set by one holding only the GPUs that still register.

        Returns:
            True when a GPU was left out (so the next wait can succeed); False when nothing
            changed or no new set could be created (the caller backs off).
        """
        from gpu_exporter.nvml import GpuLostError, NvmlError  # noqa: PLC0415

        with self._registering:
            old = self._set
            if old is None:
                return False
            try:
                new = self._nvml.event_set_create()
            except NvmlError as exc:
                log.warning("NVML events: cannot create a new event set (%s)", exc)
                return False
            dropped: list[int] = []
            for gpu, handle in list(self._handles.items()):
                try:
                    xids = self._register(handle, new)
                except GpuLostError:
                    del self._handles[gpu]
                    dropped.append(gpu)
                    xids = False
                except NvmlError as exc:
                    log.warning("GPU %d: cannot register for NVML events (%s)", gpu, exc)
                    xids = False
                self._mark_xids(gpu, supported=xids)
            self._set = new
        try:
            self._nvml.event_set_free(old)
        except NvmlError as exc:
            log.debug("nvmlEventSetFree: %s", exc)
        if dropped:
            log.warning("NVML events: GPU %s lost; event set rebuilt without it (it is added "
                        "back when it is probed again)", ", ".join(map(str, dropped)))
        return bool(dropped)

    def xid_supported(self, gpu: int) -> bool:
        """True when XID events of ``gpu`` are registered."""
        with self._lock:
            return gpu in self._xid_gpus

    def take_mig_changes(self) -> set[int]:
        """GPUs whose MIG layout changed since the last call."""
        with self._lock:
            changed, self._mig_changed = self._mig_changed, set()
        return changed

    def _run(self) -> None:
        from gpu_exporter.nvml import (  # noqa: PLC0415
            EVENT_MIG_CONFIG_CHANGE,
            EVENT_XID,
            GpuLostError,
            NvmlError,
        )

        while not self._stop.is_set():
            self._wait_since = None
            event_set = self._set  # replaced only by this thread (_rebuild)
            if event_set is None:
                return
            try:
                # the live map (not a copy): a GPU registered while this wait blocks is known
                # by the time the wait returns; writers replace entries under the lock
                self._wait_since = self._clock()
                event = self._nvml.event_wait(event_set, self._timeout_ms, self._gpus_by_address)
            except GpuLostError as exc:  # the set is unusable while it holds a lost GPU
                log.debug("nvmlEventSetWait_v2: %s", exc)
                if not self._rebuild():
                    self._stop.wait(_BACKOFF_S)
                continue
            except NvmlError as exc:  # another failure: counted, back off, go on
                log.debug("nvmlEventSetWait_v2: %s", exc)
                self._stop.wait(_BACKOFF_S)
                continue
            except Exception:  # the thread must never die silently
                log.exception("event thread: unexpected failure; continuing")
                self._stop.wait(_BACKOFF_S)
                continue
            if event is None or event.gpu is None:
                continue
            self.events_seen += 1
            if event.event_type & EVENT_XID:
                self.log.record_xid(event.gpu, event.data, self._clock(), event.gi_id)
            if event.event_type & EVENT_MIG_CONFIG_CHANGE:
                with self._lock:
                    self._mig_changed.add(event.gpu)

    def stop(self, timeout_s: float = 5.0, *, exiting: bool = False) -> None:
        """Stop the thread and free the event set once the thread has returned.

        The set is freed only once the thread has really exited: a thread still blocked in
        NVML after ``timeout_s`` keeps its set (leaked) rather than waiting on freed memory.
        ``exiting``: the process is about to exit, so a thread still in its (long) wait is
        expected and left there (NVML has no way to interrupt a wait): logged at debug level,
        not as a warning.
        """
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                if exiting:
                    log.debug("NVML event thread left in its wait; its event set is left "
                              "allocated (the process is exiting)")
                else:
                    log.warning("NVML event thread still blocked after %.1f s; its event set "
                                "is left allocated", timeout_s)
                return
            self._thread = None
        with self._registering:
            if self._set is not None:
                from gpu_exporter.nvml import NvmlError  # noqa: PLC0415

                try:
                    self._nvml.event_set_free(self._set)
                except NvmlError as exc:
                    log.debug("nvmlEventSetFree: %s", exc)
                self._set = None
