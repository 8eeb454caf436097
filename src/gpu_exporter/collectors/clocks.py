"""Clocks collector: current, applications and maximum clocks, clock event reasons, P-state.

Series::

    DCGM_FI_DEV_SM_CLOCK{gpu="0",UUID="GPU-...",...,Hostname="node-a"} 1980
    DCGM_FI_DEV_MEM_CLOCK{gpu="0",...} 2619
    DCGM_FI_DEV_MAX_SM_CLOCK{gpu="0",...} 1980
    DCGM_FI_DEV_CLOCK_THROTTLE_REASONS{gpu="0",...} 1

Device level: once per physical GPU, never per MIG instance. MHz as NVML reports them.

With the fast-path library built, the sampler makes these calls in the GPU's one compiled
read (:mod:`gpu_exporter.fastread`): the same calls, samples and marks, decoded only where a
value changed; this class is then the fallback (and the reference the tests compare with).
"""

from __future__ import annotations

from typing import ClassVar

from gpu_exporter.collectors.base import DeviceView, Readings, ResultBuilder, SimpleCollector

GRAPHICS, SM, MEM, VIDEO = 0, 1, 2, 3

_CURRENT = {100: SM, 101: MEM, 102: VIDEO}
_APPLICATIONS = {110: SM, 111: MEM}
_MAXIMUM = {113: SM, 114: MEM, 115: VIDEO}
REASONS = 112
PSTATE = 190


class ClocksCollector(SimpleCollector):
    """Clock speeds and clock event reasons of one GPU."""

    name: ClassVar[str] = "clocks"

    def collect_into(
        self, device: DeviceView, fields: frozenset[int], _readings: Readings, _now: float,
        out: ResultBuilder, /,
    ) -> None:
        """Read the wanted clock fields of one GPU."""
        nvml = device.nvml
        for target in device.targets["device"]:
            handle, entity = target.handle, target.entity
            for fid, clock_type in _CURRENT.items():
                if fid in fields:
                    out.add(entity, fid, nvml.clock(handle, clock_type))
            for fid, clock_type in _APPLICATIONS.items():
                if fid in fields:
                    out.add(entity, fid, nvml.applications_clock(handle, clock_type))
            for fid, clock_type in _MAXIMUM.items():
                if fid in fields:
                    out.add(entity, fid, nvml.max_clock(handle, clock_type))
            if REASONS in fields:
                out.add(entity, REASONS, nvml.clocks_event_reasons(handle))
            if PSTATE in fields:
                out.add(entity, PSTATE, nvml.performance_state(handle))
