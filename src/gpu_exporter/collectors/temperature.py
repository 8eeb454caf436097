"""Temperature collector: GPU core temperature and fan speed.

Series::

    DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-...",...,Hostname="node-a"} 41
    DCGM_FI_DEV_FAN_SPEED{gpu="0",...} 30

Device level. Readings above 200 °C are dropped, as DCGM does. Memory temperature and the
temperature limits come through the batched field values (``field_values`` collector).

With the fast-path library built, the sampler makes these calls in the GPU's one compiled
read (:mod:`gpu_exporter.fastread`): the same calls, samples and marks, decoded only where a
value changed; this class is then the fallback (and the reference the tests compare with).
"""

from __future__ import annotations

from typing import ClassVar

from gpu_exporter.collectors.base import DeviceView, Readings, ResultBuilder, SimpleCollector

GPU_TEMP = 150
FAN_SPEED = 191


class TemperatureCollector(SimpleCollector):
    """GPU temperature (TemperatureV, else the deprecated call) and fan speed."""

    name: ClassVar[str] = "temperature"

    def collect_into(
        self, device: DeviceView, fields: frozenset[int], _readings: Readings, _now: float,
        out: ResultBuilder, /,
    ) -> None:
        """Read the wanted temperature fields of one GPU."""
        for target in device.targets["device"]:
            if GPU_TEMP in fields:
                out.add(target.entity, GPU_TEMP, device.nvml.temperature(target.handle))
            if FAN_SPEED in fields:
                out.add(target.entity, FAN_SPEED, device.nvml.fan_speed(target.handle))
