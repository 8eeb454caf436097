"""Memory collector: framebuffer (per MIG instance when MIG is on) and BAR1 (per GPU).

Series::

    DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-...",...,Hostname="node-a"} 30210
    DCGM_FI_DEV_FB_FREE{gpu="0",...} 50844
    DCGM_FI_DEV_FB_TOTAL{gpu="0",...} 81559
    DCGM_FI_DEV_FB_USED{gpu="1",...,GPU_I_PROFILE="1g.10gb",GPU_I_ID="7",...} 2048

Framebuffer values are MiB truncated (bytes // 1048576) from ``nvmlDeviceGetMemoryInfo_v2``
(``used`` excludes ``reserved``); with only the v1 struct, ``FB_RESERVED`` is unsupported.
``FB_USED_PERCENT`` is the ratio used / (total - reserved). BAR1 fields are device level.

With the fast-path library built, the sampler makes these calls in the GPU's one compiled
read (:mod:`gpu_exporter.fastread`): the same calls, samples and marks, decoded only where a
value changed; this class is then the fallback (and the reference the tests compare with).
"""

from __future__ import annotations

from typing import ClassVar

from gpu_exporter.collectors.base import DeviceView, Readings, ResultBuilder, SimpleCollector

BAR1_TOTAL, BAR1_USED, BAR1_FREE = 90, 92, 93
FB_TOTAL, FB_FREE, FB_USED, FB_RESERVED, FB_USED_PERCENT = 250, 251, 252, 253, 254
_FB = frozenset({FB_TOTAL, FB_FREE, FB_USED, FB_RESERVED, FB_USED_PERCENT})
_BAR1 = frozenset({BAR1_TOTAL, BAR1_USED, BAR1_FREE})


class MemoryCollector(SimpleCollector):
    """Framebuffer and BAR1 memory of one GPU and its MIG instances."""

    name: ClassVar[str] = "memory"

    def collect_into(
        self, device: DeviceView, fields: frozenset[int], _readings: Readings, _now: float,
        out: ResultBuilder, /,
    ) -> None:
        """Read the wanted memory fields."""
        if not _FB.isdisjoint(fields):
            self._framebuffer(device, fields, out)
        if not _BAR1.isdisjoint(fields):
            self._bar1(device, fields, out)

    @staticmethod
    def _framebuffer(device: DeviceView, fields: frozenset[int], out: ResultBuilder) -> None:
        for target in device.targets["instance"]:
            mem = device.nvml.memory_info(target.handle)
            entity = target.entity
            if mem is None:
                out.unsupported_all(entity, fields & _FB, "not_supported")
                continue
            if FB_TOTAL in fields:
                out.add(entity, FB_TOTAL, mem.total)
            if FB_FREE in fields:
                out.add(entity, FB_FREE, mem.free)
            if FB_USED in fields:
                out.add(entity, FB_USED, mem.used)
            if FB_RESERVED in fields:
                out.add(entity, FB_RESERVED, mem.reserved)
            if FB_USED_PERCENT in fields:
                usable = mem.total - (mem.reserved or 0)
                out.add(entity, FB_USED_PERCENT, mem.used / usable if usable > 0 else None)

    @staticmethod
    def _bar1(device: DeviceView, fields: frozenset[int], out: ResultBuilder) -> None:
        for target in device.targets["device"]:
            bar1 = device.nvml.bar1_memory(target.handle)
            if BAR1_TOTAL in fields:
                out.add(target.entity, BAR1_TOTAL, None if bar1 is None else bar1.total)
            if BAR1_USED in fields:
                out.add(target.entity, BAR1_USED, None if bar1 is None else bar1.used)
            if BAR1_FREE in fields:
                out.add(target.entity, BAR1_FREE, None if bar1 is None else bar1.free)
