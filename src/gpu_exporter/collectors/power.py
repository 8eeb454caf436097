"""Power collector: board power draw and power limits, in watts.

Series::

    DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-...",...,Hostname="node-a"} 312.456
    DCGM_FI_DEV_POWER_MGMT_LIMIT{gpu="0",...} 700
    DCGM_FI_DEV_ENFORCED_POWER_LIMIT{gpu="0",...} 700

Device level: once per physical GPU, never per MIG instance (so ``sum()`` does not over-count).
NVML reports mW; DCGM reports W as a float. Total energy (mJ) comes through the batched field
values (``field_values`` collector).

With the fast-path library built, the sampler makes these calls in the GPU's one compiled
read (:mod:`gpu_exporter.fastread`): the same calls, samples and marks, decoded only where a
value changed; this class is then the fallback (and the reference the tests compare with).
"""

from __future__ import annotations

from typing import ClassVar

from gpu_exporter.collectors.base import DeviceView, Readings, ResultBuilder, SimpleCollector

POWER_USAGE = 155
LIMIT = 160
LIMIT_MIN = 161
LIMIT_MAX = 162
LIMIT_DEFAULT = 163
ENFORCED = 164


class PowerCollector(SimpleCollector):
    """Power draw and limits of one GPU."""

    name: ClassVar[str] = "power"

    def collect_into(
        self, device: DeviceView, fields: frozenset[int], _readings: Readings, _now: float,
        out: ResultBuilder, /,
    ) -> None:
        """Read the wanted power fields of one GPU."""
        nvml = device.nvml
        for target in device.targets["device"]:
            handle, entity = target.handle, target.entity
            if POWER_USAGE in fields:
                out.add(entity, POWER_USAGE, nvml.power_usage(handle))
            if LIMIT in fields:
                out.add(entity, LIMIT, nvml.power_limit(handle))
            if LIMIT_MIN in fields or LIMIT_MAX in fields:
                bounds = nvml.power_limit_constraints(handle)
                if LIMIT_MIN in fields:
                    out.add(entity, LIMIT_MIN, None if bounds is None else bounds[0])
                if LIMIT_MAX in fields:
                    out.add(entity, LIMIT_MAX, None if bounds is None else bounds[1])
            if LIMIT_DEFAULT in fields:
                out.add(entity, LIMIT_DEFAULT, nvml.power_limit_default(handle))
            if ENFORCED in fields:
                out.add(entity, ENFORCED, nvml.enforced_power_limit(handle))
