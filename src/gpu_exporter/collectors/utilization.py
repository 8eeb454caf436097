"""Utilization collector: GPU, memory-copy, encoder and decoder busy percentages.

Series::

    DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-...",...,Hostname="node-a"} 87
    DCGM_FI_DEV_MEM_COPY_UTIL{gpu="0",...} 41
    DCGM_FI_DEV_ENC_UTIL{gpu="0",...} 0
    DCGM_FI_DEV_DEC_UTIL{gpu="0",...} 0

Device level: NVML does not report utilisation on MIG handles (per-instance activity comes from
the profiling fields). Values outside 0-100 (driver glitches such as 4294967295) are dropped.

With the fast-path library built, the sampler makes these calls in the GPU's one compiled
read (:mod:`gpu_exporter.fastread`): the same calls, samples and marks, decoded only where a
value changed; this class is then the fallback (and the reference the tests compare with).
"""

from __future__ import annotations

from typing import ClassVar

from gpu_exporter.collectors.base import DeviceView, Readings, ResultBuilder, SimpleCollector

GPU_UTIL = 203
MEM_COPY_UTIL = 204
ENC_UTIL = 206
DEC_UTIL = 207


class UtilizationCollector(SimpleCollector):
    """Utilisation rates of one GPU."""

    name: ClassVar[str] = "utilization"

    def collect_into(
        self, device: DeviceView, fields: frozenset[int], _readings: Readings, _now: float,
        out: ResultBuilder, /,
    ) -> None:
        """Read the wanted utilisation fields of one GPU."""
        nvml = device.nvml
        for target in device.targets["device"]:
            handle, entity = target.handle, target.entity
            if GPU_UTIL in fields or MEM_COPY_UTIL in fields:
                rates = nvml.utilization(handle)
                if GPU_UTIL in fields:
                    out.add(entity, GPU_UTIL, None if rates is None else rates[0])
                if MEM_COPY_UTIL in fields:
                    out.add(entity, MEM_COPY_UTIL, None if rates is None else rates[1])
            if ENC_UTIL in fields:
                out.add(entity, ENC_UTIL, nvml.encoder_utilization(handle))
            if DEC_UTIL in fields:
                out.add(entity, DEC_UTIL, nvml.decoder_utilization(handle))
