"""Identity collector: static label fields, read once when a GPU is probed.

Series (as label values on every series of the entity, or as gauges for the numeric ones)::

    DCGM_FI_DEV_GPU_TEMP{gpu="0",...,DCGM_FI_DRIVER_VERSION="570.124.06"} 41
    DCGM_FI_DEV_NVML_INDEX{gpu="0",UUID="GPU-...",...} 0
    DCGM_FI_DEV_MIG_MODE{gpu="0",UUID="GPU-...",...} 1
    DCGM_FI_DEV_MINOR_NUMBER{gpu="0",UUID="GPU-...",...} 0
    DCGM_FI_DEV_COUNT{gpu="0",UUID="GPU-...",...} 8
    DCGM_FI_CUDA_DRIVER_VERSION{gpu="0",UUID="GPU-...",...} 12040

String fields (driver and NVML versions, brand, serial, inforom and VBIOS versions, name, UUID,
bus id) are ``entity`` level: a MIG instance carries its parent GPU's values, and so do the
system-wide numbers (GPU count, CUDA driver version as NVML and DCGM give it: 12.4 = 12040). The
``/dev/nvidiaN`` minor number is device level. The values never change while the GPU stays probed,
so the result is built once per probe and reused.
"""

from __future__ import annotations

from typing import ClassVar

from gpu_exporter.collectors.base import DeviceView, Readings, ResultBuilder, SimpleCollector
from gpu_exporter.model import CollectResult, new_sample

NVML_INDEX = 52
MIG_MODE = 67
DEV_COUNT = 4
CUDA_DRIVER_VERSION = 5
MINOR_NUMBER = 55
_NUMBERS = frozenset({NVML_INDEX, MIG_MODE, DEV_COUNT, CUDA_DRIVER_VERSION, MINOR_NUMBER})


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

    def collect_into(
        self, device: DeviceView, fields: frozenset[int], readings: Readings, now: float,
        out: ResultBuilder, /,
    ) -> None:
        """Add the (cached) static samples of one GPU to ``out``."""
        out.extend(self.collect(device, fields, readings, now))

    @staticmethod
    def _build(device: DeviceView, fields: frozenset[int]) -> CollectResult:
        out = ResultBuilder()
        strings = device.info.strings
        nvml = device.nvml
        system: dict[int, float | None] = {}
        if DEV_COUNT in fields:
            system[DEV_COUNT] = float(nvml.device_count())
        if CUDA_DRIVER_VERSION in fields:
            cuda = nvml.cuda_driver_version()
            system[CUDA_DRIVER_VERSION] = None if cuda is None else float(cuda)
        for target in device.targets["entity"]:
            for fid in sorted(fields):
                if fid in system:
                    out.add(target.entity, fid, system[fid])
                if fid in _NUMBERS:
                    continue
                text = strings.get(fid)
                if text is None:
                    out.add(target.entity, fid, None)
                else:
                    out.samples.append(new_sample(target.entity, fid, text))
        for target in device.targets["device"]:
            if NVML_INDEX in fields:
                out.add(target.entity, NVML_INDEX, float(target.entity.gpu))
            if MIG_MODE in fields:
                out.add(target.entity, MIG_MODE, 1.0 if device.info.mig_enabled else 0.0)
            if MINOR_NUMBER in fields:
                minor = nvml.minor_number(target.handle)
                out.add(target.entity, MINOR_NUMBER, None if minor is None else float(minor))
        return out.result()
