"""NVLink collector: bandwidth over all links and per link, as rates.

``DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL`` (and ``_L0`` .. ``_L5``) is a rate even though upstream's
counters file declares it a counter: the TX + RX data counters (NVML fields 138 + 139, cumulative
KiB, scope "all links" or one link) are differenced over their own microsecond timestamps and
reported in MB/s (10^6 bytes per second). The first cycle after start (or after a GPU comes back)
has no value. NVLink error totals are plain fields (``field_values`` collector).

Series (device level)::

    DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL{gpu="0",UUID="GPU-...",...,Hostname="node-a"} 245760.5
    DCGM_FI_DEV_NVLINK_BANDWIDTH_L0{gpu="0",...} 13653.4
"""

from __future__ import annotations

from typing import ClassVar

from gpu_exporter.catalog import CATALOG
from gpu_exporter.collectors.base import DeviceView, Readings, ResultBuilder
from gpu_exporter.collectors.field_values import NVLINK_RX, NVLINK_TX
from gpu_exporter.collectors.rates import RateTracker
from gpu_exporter.model import CollectResult, Sample
from gpu_exporter.nvml import NOT_SUPPORTED, SUCCESS

KIB_PER_S_TO_MB_PER_S = 1024 / 1e6


class NvlinkCollector:
    """NVLink throughput rates from the batched field values."""

    name: ClassVar[str] = "nvlink"

    def __init__(self) -> None:
        self._rates = RateTracker()

    def collect(
        self, device: DeviceView, fields: frozenset[int], readings: Readings, now: float, /,
    ) -> CollectResult:
        """Turn this cycle's NVLink byte counters into rates."""
        out = ResultBuilder()
        for target in device.targets["device"]:
            for fid in sorted(fields):
                scope = CATALOG[fid].scope
                tx = readings.get((NVLINK_TX, scope))
                rx = readings.get((NVLINK_RX, scope))
                if tx is None or rx is None or NOT_SUPPORTED in (tx.code, rx.code):
                    out.add(target.entity, fid, None)
                    continue
                if tx.code != SUCCESS or rx.code != SUCCESS:
                    continue
                if tx.value is None or rx.value is None:
                    continue
                stamp_us = max(tx.timestamp_us, rx.timestamp_us)
                stamp = stamp_us / 1e6 if stamp_us > 0 else now
                rate = self._rates.update((target.entity.gpu, fid), stamp, tx.value + rx.value)
                if rate is not None:
                    out.samples.append(Sample(target.entity, fid, rate * KIB_PER_S_TO_MB_PER_S))
        return out.result()

    def reset(self, gpu: int) -> None:
        """Forget a GPU's previous counters (it was lost or re-probed)."""
        self._rates.forget_gpu(gpu)

    def close(self) -> None:
        """Nothing held outside Python."""
