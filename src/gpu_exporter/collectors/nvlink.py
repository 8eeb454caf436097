"""NVLink collector: bandwidth over all links and per link, as rates.

``DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL`` (and ``_L0`` .. ``_L5``) is a rate even though upstream's
counters file declares it a counter: the TX + RX data counters (NVML fields 138 + 139, cumulative
KiB, scope "all links" or one link) are differenced over their own microsecond timestamps and
reported as dcgm-exporter documents it: ΔKiB/Δs ÷ 1000 (about MB/s;
:func:`kib_rate_to_reported`). The base-unit ``*_BYTES_PER_SECOND`` fields scale that back to
KiB/s x 1024 (see ``catalog.DERIVED``). The first cycle after start (or after a GPU comes back)
has no value. A TX or RX entry that failed with a code other than NOT_SUPPORTED gives no value
and marks the field with reason ``error``. NVLink error totals are plain fields
(``field_values`` collector).

Series (device level)::

    DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL{gpu="0",UUID="GPU-...",...,Hostname="node-a"} 245760.5
    DCGM_FI_DEV_NVLINK_BANDWIDTH_L0{gpu="0",...} 13653.4
"""

from __future__ import annotations

from typing import ClassVar

from gpu_exporter.catalog import CATALOG
from gpu_exporter.collectors.base import DeviceView, IntoCollector, Readings, ResultBuilder
from gpu_exporter.collectors.field_values import NVLINK_RX, NVLINK_TX
from gpu_exporter.collectors.rates import RateTracker
from gpu_exporter.model import new_sample

KIB_RATE_DIVISOR = 1000.0
"""dcgm-exporter's NVLink bandwidth: KiB per second divided by 1000."""


def kib_rate_to_reported(kib_per_s: float) -> float:
    """The ``DCGM_FI_DEV_NVLINK_BANDWIDTH_*`` value for a rate of ``kib_per_s`` KiB/s."""
    return kib_per_s / KIB_RATE_DIVISOR


class NvlinkCollector(IntoCollector):
    """NVLink throughput rates from the batched field values."""

    name: ClassVar[str] = "nvlink"

    def __init__(self) -> None:
        self._rates = RateTracker()
        self._plans: dict[frozenset[int], tuple[tuple[int, tuple[int, int], tuple[int, int]],
                                                ...]] = {}

    def collect_into(
        self, device: DeviceView, fields: frozenset[int], readings: Readings, now: float,
        out: ResultBuilder, /,
    ) -> None:
        """Turn this cycle's NVLink byte counters into rates."""
        plan = self._plans.get(fields)
        if plan is None:  # (field, its TX key, its RX key) in field order, once per field set
            plan = self._plans[fields] = tuple(
                (fid, (NVLINK_TX, CATALOG[fid].scope), (NVLINK_RX, CATALOG[fid].scope))
                for fid in sorted(fields))
        for target in device.targets["device"]:
            for fid, tx, rx in plan:
                pair = (readings.get(tx), readings.get(rx))
                rate = out.counter_rate(self._rates, target.entity, fid, pair, now)
                if rate is not None:
                    out.samples.append(new_sample(target.entity, fid, kib_rate_to_reported(rate)))

    def reset(self, gpu: int) -> None:
        """Forget a GPU's previous counters (it was lost or re-probed)."""
        self._rates.forget_gpu(gpu)

    def close(self) -> None:
        """Nothing held outside Python."""
