"""Identity collector: static label fields, read once when a GPU is probed.

Series (as label values on every series of the entity, or as gauges for the numeric ones)::

    DCGM_FI_DEV_GPU_TEMP{gpu="0",...,DCGM_FI_DRIVER_VERSION="570.124.06"} 41
    DCGM_FI_DEV_NVML_INDEX{gpu="0",UUID="GPU-...",...} 0
    DCGM_FI_DEV_MIG_MODE{gpu="0",UUID="GPU-...",...} 1

String fields (driver and NVML versions, brand, serial, inforom and VBIOS versions, name, UUID,
bus id) are ``entity`` level: a MIG instance carries its parent GPU's values. The values never
change while the GPU stays probed, so the result is built once per probe and reused.
"""

from __future__ import annotations

from typing import ClassVar

from gpu_exporter.collectors.base import DeviceView, Readings, ResultBuilder, SimpleCollector
from gpu_exporter.model import CollectResult, Sample

NVML_INDEX = 52
MIG_MODE = 67


class IdentityCollector(SimpleCollector):
    """Label fields and static numbers of a GPU (no NVML call per cycle)."""

    name: ClassVar[str] = "identity"

    def __init__(self) -> None:
        self._cache: dict[int, tuple[DeviceView, frozenset[int], CollectResult]] = {}

    def collect(
        self, device: DeviceView, fields: frozenset[int], _readings: Readings, _now: float, /,
    ) -> CollectResult:
        """Return the (cached) static samples of one GPU."""
        key = device.entity.gpu
        cached = self._cache.get(key)
        if cached is not None and cached[0] is device and cached[1] == fields:
            return cached[2]
        result = self._build(device, fields)
        self._cache[key] = (device, fields, result)
        return result

    @staticmethod
    def _build(device: DeviceView, fields: frozenset[int]) -> CollectResult:
        out = ResultBuilder()
        strings = device.info.strings
        for target in device.targets["entity"]:
            for fid in sorted(fields):
                if fid in (NVML_INDEX, MIG_MODE):
                    continue
                text = strings.get(fid)
                if text is None:
                    out.add(target.entity, fid, None)
                else:
                    out.samples.append(Sample(target.entity, fid, text))
        for target in device.targets["device"]:
            if NVML_INDEX in fields:
                out.add(target.entity, NVML_INDEX, float(target.entity.gpu))
            if MIG_MODE in fields:
                out.add(target.entity, MIG_MODE, 1.0 if device.info.mig_enabled else 0.0)
        return out.result()
