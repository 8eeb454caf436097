"""vGPU collector: ``DCGM_FI_DEV_VGPU_LICENSE_STATUS`` inside a vGPU guest.

Series (device level, vGPU guests only)::

    DCGM_FI_DEV_VGPU_LICENSE_STATUS{gpu="0",UUID="GPU-...",...} 1

1 when a licensable vGPU feature is licensed (``nvmlDeviceGetGridLicensableFeatures_v4``,
``featureState``), 0 when not. On bare metal and passthrough GPUs
(``nvmlDeviceGetVirtualizationMode`` is not "vGPU guest") the field is unsupported; the sampler
then exports dcgm-exporter's 0 unless ``--omit-unsupported-zeros``
(:data:`~gpu_exporter.catalog.PLACEHOLDER_ZERO`). The virtualization mode is read once per probe
of the GPU.
"""

from __future__ import annotations

from typing import ClassVar

from gpu_exporter.collectors.base import DeviceView, IntoCollector, Readings, ResultBuilder

LICENSE_STATUS = 526
VGPU_GUEST = 2


class VgpuCollector(IntoCollector):
    """vGPU licence state of one GPU (guest side)."""

    name: ClassVar[str] = "vgpu"

    def __init__(self) -> None:
        self._mode: dict[int, tuple[DeviceView, int | None]] = {}

    def collect_into(
        self, device: DeviceView, fields: frozenset[int], _readings: Readings, _now: float,
        out: ResultBuilder, /,
    ) -> None:
        """Read the licence state, or mark it unsupported outside a vGPU guest."""
        if LICENSE_STATUS not in fields:
            return
        for target in device.targets["device"]:
            cached = self._mode.get(target.entity.gpu)
            if cached is None or cached[0] is not device:
                cached = (device, device.nvml.virtualization_mode(target.handle))
                self._mode[target.entity.gpu] = cached
            if cached[1] != VGPU_GUEST:
                out.add(target.entity, LICENSE_STATUS, None)
                continue
            licensed = device.nvml.vgpu_licensed(target.handle)
            out.add(target.entity, LICENSE_STATUS, None if licensed is None else float(licensed))

    def reset(self, gpu: int) -> None:
        """Read the mode again after a re-probe."""
        self._mode.pop(gpu, None)

    def close(self) -> None:
        """Nothing held outside Python."""
