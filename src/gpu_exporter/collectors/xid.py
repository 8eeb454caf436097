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
per GPU, only when ``DCGM_EXP_CLOCK_EVENTS_COUNT`` is wanted). See :mod:`gpu_exporter.events`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from gpu_exporter.collectors.base import DeviceView, IntoCollector, Readings, ResultBuilder
from gpu_exporter.events import CLOCK_EVENTS_COUNT, XID_ERRORS, XID_ERRORS_COUNT, EventLog

_XID_FIELDS = frozenset({XID_ERRORS, XID_ERRORS_COUNT})


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

    def collect_into(
        self, device: DeviceView, fields: frozenset[int], _readings: Readings, now: float,
        out: ResultBuilder, /,
    ) -> None:
        """Windowed samples of one GPU and its MIG instances at time ``now`` (monotonic)."""
        xid_fields = fields & _XID_FIELDS
        if xid_fields:
            supported = self._xid_supported(device.entity.gpu)
            for target in device.targets["entity"]:
                if supported:
                    out.samples.extend(self._log.xid_samples(
                        target.entity, xid_fields, now, with_device=device.repeat_device))
                else:
                    out.unsupported_all(target.entity, xid_fields, "not_supported")
        if CLOCK_EVENTS_COUNT in fields:
            for target in device.targets["device"]:
                mask = device.nvml.clocks_event_reasons(target.handle)
                if mask is None:
                    out.add(target.entity, CLOCK_EVENTS_COUNT, None)
                    continue
                out.samples.extend(self._log.clock_samples(target.entity, now, int(mask)))

    def reset(self, gpu: int) -> None:
        """A lost GPU's last clock mask is forgotten; its windows keep counting."""
        self._log.forget_clock_state(gpu)

    def close(self) -> None:
        """The event thread is owned by the sampler."""
