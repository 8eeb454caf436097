"""vGPU collector: ``DCGM_FI_DEV_VGPU_LICENSE_STATUS`` inside a vGPU guest.

Series (device level, vGPU guests only)::

    DCGM_FI_DEV_VGPU_LICENSE_STATUS{gpu="0",UUID="GPU-...",...} 1

1 when a licensable vGPU feature is licensed (``nvmlDeviceGetGridLicensableFeatures_v4``,
``featureState``), 0 when not. On bare metal and passthrough GPUs
(``nvmlDeviceGetVirtualizationMode`` is not "vGPU guest") the field is unsupported: absent, never 0.
"""

from __future__ import annotations

from typing import ClassVar

from gpu_exporter.collectors.base import DeviceView, Readings, ResultBuilder, SimpleCollector
from gpu_exporter.model import CollectResult

LICENSE_STATUS = 526
VGPU_GUEST = 2


class VgpuCollector(SimpleCollector):
    """vGPU licence state of one GPU (guest side)."""

    name: ClassVar[str] = "vgpu"

    def collect(
        self, device: DeviceView, fields: frozenset[int], _readings: Readings, _now: float, /,
    ) -> CollectResult:
        """Read the licence state, or mark it unsupported outside a vGPU guest."""
        out = ResultBuilder()
        if LICENSE_STATUS not in fields:
            return out.result()
        for target in device.targets["device"]:
            if device.nvml.virtualization_mode(target.handle) != VGPU_GUEST:
                out.add(target.entity, LICENSE_STATUS, None)
                continue
            licensed = device.nvml.vgpu_licensed(target.handle)
            out.add(target.entity, LICENSE_STATUS, None if licensed is None else float(licensed))
        return out.result()
