"""XID collector: the event watcher's windowed XID and clock-event views, per GPU.

Series::

    DCGM_FI_DEV_XID_ERRORS{gpu="0",...,err_code="79",err_msg="GPU has fallen off the bus"} 79
    DCGM_FI_DEV_XID_ERRORS{gpu="1",...,err_code="0",err_msg="No error"} 0
    DCGM_EXP_XID_ERRORS_COUNT{gpu="0",...,window_size_in_ms="300000",xid="79"} 1
    DCGM_EXP_XID_ERRORS_COUNT{gpu="1",...,window_size_in_ms="300000"} 0
    DCGM_EXP_CLOCK_EVENTS_COUNT{gpu="0",...,clock_event="power_cap",window_size_in_ms="300000"} 2

XID fields are on every entity (a MIG-scoped XID shows on its instance; in dcgm-exporter's MIG
layout, the default, an instance also shows the XIDs of its GPU); the clock-event count is
device level. Each cycle this collector also samples the clock event reasons bitmask (one NVML call
per GPU, only when ``DCGM_EXP_CLOCK_EVENTS_COUNT`` is wanted; made in the GPU's compiled read,
:mod:`gpu_exporter.fastread`, when the library is built). See :mod:`gpu_exporter.events`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from gpu_exporter.collectors.base import (
    DeviceView,
    IntoCollector,
    Readings,
    ResultBuilder,
    Target,
)
from gpu_exporter.events import CLOCK_EVENTS_COUNT, XID_ERRORS, XID_ERRORS_COUNT, EventLog
from gpu_exporter.model import Sample

_XID_FIELDS = frozenset({XID_ERRORS, XID_ERRORS_COUNT})
Masks = Sequence[tuple[Target, int | None]]
"""Each device target's clock event reasons bitmask of this cycle (None: not supported)."""


class XidCollector(IntoCollector):
    """Windowed XID and clock-event samples from the shared :class:`EventLog`.

    Args:
        event_log: the log the event thread feeds.
        xid_supported: GPU index -> whether its XID events are registered.
    """

    name: ClassVar[str] = "xid"

    def __init__(self, event_log: EventLog, xid_supported: Callable[[int], bool]) -> None:
        self._log = event_log
        self._xid_supported = xid_supported
        # per GPU: its last samples when all were zero, and what they were built from
        # (view, fields, XIDs supported, windows, events recorded): the same while those are
        self._quiet: dict[int, tuple[DeviceView, frozenset[int], bool, tuple[float, float], int,
                                     list[Sample]]] = {}

    def collect_into(
        self, device: DeviceView, fields: frozenset[int], _readings: Readings, now: float,
        out: ResultBuilder, /,
    ) -> None:
        """Windowed samples of one GPU and its MIG instances at time ``now`` (monotonic)."""
        masks, recorded = self._masks(device, now) if CLOCK_EVENTS_COUNT in fields else ([], None)
        self._collect(device, fields, masks, now, out, recorded=recorded)

    def collect_read(
        self, device: DeviceView, fields: frozenset[int], masks: Masks, now: float,
        out: ResultBuilder, /,
    ) -> None:
        """:meth:`collect_into` with this cycle's clock event reasons already read.

        ``masks``: each device target's bitmask (None: not supported), as :meth:`_masks` reads
        them (``gpu_exporter.fastread`` reads them in its compiled call); fed to the log here.
        """
        recorded: int | None = None
        for target, mask in masks:
            if mask is not None:
                recorded = self._log.observe_clock_reasons(target.entity.gpu, mask, now)
        self._collect(device, fields, masks, now, out, recorded=recorded)

    def _collect(
        self, device: DeviceView, fields: frozenset[int], masks: Masks, now: float,
        out: ResultBuilder, *, recorded: int | None,
    ) -> None:
        log = self._log
        gpu = device.entity.gpu
        xid_fields = fields & _XID_FIELDS
        supported = bool(xid_fields) and self._xid_supported(gpu)
        if recorded is None:
            recorded = log.recorded
        windows = (log.xid_window_s, log.clock_window_s)
        every_mask = True  # every device target's clock event reasons were read
        for _, mask in masks:
            if mask is None:
                every_mask = False
        quiet = self._quiet.get(gpu)
        if (quiet is not None and quiet[0] is device and quiet[4] == recorded
                and quiet[1] == fields and quiet[2] is supported and quiet[3] == windows
                and every_mask):
            # nothing recorded since these were all zero: nothing entered any window
            out.samples.extend(quiet[5])
            return
        start = len(out.samples)
        if xid_fields:
            for target in device.targets["entity"]:
                if supported:
                    out.samples.extend(log.xid_samples(
                        target.entity, xid_fields, now, with_device=device.repeat_device))
                else:
                    out.unsupported_all(target.entity, xid_fields, "not_supported")
        for target, mask in masks:
            if mask is None:
                out.add(target.entity, CLOCK_EVENTS_COUNT, None)
                continue
            out.samples.extend(log.clock_samples(target.entity, now))
        built = out.samples[start:]
        if ((supported or not xid_fields) and every_mask
                and all(sample.value == 0.0 for sample in built)):
            self._quiet[gpu] = (device, fields, supported, windows, recorded, built)
        else:
            self._quiet.pop(gpu, None)

    def _masks(self, device: DeviceView, now: float,
               ) -> tuple[list[tuple[Target, int | None]], int | None]:
        """Each device target's clock event reasons, fed to the log (None: not read).

        Also the log's :attr:`~EventLog.recorded` after them (None if none was read).
        """
        recorded: int | None = None
        masks: list[tuple[Target, int | None]] = []
        for target in device.targets["device"]:
            mask = device.nvml.clocks_event_reasons(target.handle)
            if mask is not None:
                mask = int(mask)
                recorded = self._log.observe_clock_reasons(target.entity.gpu, mask, now)
            masks.append((target, mask))
        return masks, recorded

    def reset(self, gpu: int) -> None:
        """A lost GPU's last clock mask is forgotten; its windows keep counting."""
        self._quiet.pop(gpu, None)
        self._log.forget_clock_state(gpu)

    def close(self) -> None:
        """The event thread is owned by the sampler."""
