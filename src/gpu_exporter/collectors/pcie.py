"""PCIe collector: link generation and width, and TX/RX throughput as rates.

Series (device level)::

    DCGM_FI_DEV_PCIE_LINK_GEN{gpu="0",UUID="GPU-...",...,Hostname="node-a"} 5
    DCGM_FI_DEV_PCIE_LINK_WIDTH{gpu="0",...} 16
    DCGM_FI_DEV_PCIE_TX_THROUGHPUT{gpu="0",...} 1843.2

Throughput is not read with ``nvmlDeviceGetPcieThroughput`` (it blocks 20 ms per call): the byte
counters NVML fields 197/198 from the batched call are differenced over their timestamps and
reported in KB/s (1024 bytes), like that call. The first cycle has no value. The replay counter is
a plain field (``field_values`` collector).
"""

from __future__ import annotations

from typing import ClassVar

from gpu_exporter.collectors.base import DeviceView, IntoCollector, Readings, ResultBuilder
from gpu_exporter.collectors.rates import RateTracker
from gpu_exporter.model import new_sample

TX_THROUGHPUT, RX_THROUGHPUT = 200, 201
_COUNTER = {TX_THROUGHPUT: 197, RX_THROUGHPUT: 198}
_LINK = (235, 236, 237, 238)  # max gen, max width, current gen, current width


class PcieCollector(IntoCollector):
    """PCIe link state and throughput of one GPU."""

    name: ClassVar[str] = "pcie"

    def __init__(self) -> None:
        self._rates = RateTracker()

    def collect_into(
        self, device: DeviceView, fields: frozenset[int], readings: Readings, now: float,
        out: ResultBuilder, /,
    ) -> None:
        """Read the wanted PCIe fields of one GPU."""
        for target in device.targets["device"]:
            entity = target.entity
            if any(fid in fields for fid in _LINK):
                values = device.nvml.pcie_link(target.handle)
                for fid, value in zip(_LINK, values, strict=True):
                    if fid in fields:
                        out.add(entity, fid, value)
            for fid, nvml_field in _COUNTER.items():
                if fid not in fields:
                    continue
                rate = out.counter_rate(self._rates, entity, fid,
                                        (readings.get((nvml_field, 0)),), now)
                if rate is not None:
                    out.samples.append(new_sample(entity, fid, rate / 1024))

    def reset(self, gpu: int) -> None:
        """Forget a GPU's previous counters."""
        self._rates.forget_gpu(gpu)

    def close(self) -> None:
        """Nothing held outside Python."""
