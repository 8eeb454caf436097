"""Field-values collector: everything read through one batched ``nvmlDeviceGetFieldValues``.

Each cycle the sampler makes ONE ``nvmlDeviceGetFieldValues`` call per GPU with every NVML field
id any enabled collector needs (:func:`field_requests`); this collector decodes the plain
device-level ones (each entry by its own ``valueType`` and ``nvmlReturn``). NVLink and PCIe rates
read the same batch in their own collectors.

Series (device level, once per physical GPU)::

    DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",UUID="GPU-...",...,Hostname="node-a"} 1234567890
    DCGM_FI_DEV_MEMORY_TEMP{gpu="0",...} 45
    DCGM_FI_DEV_PCIE_REPLAY_COUNTER{gpu="0",...} 0
    DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{gpu="0",...} 0
    DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS{gpu="0",...} 0
    DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL{gpu="0",...} 0
    DCGM_FI_DEV_POWER_VIOLATION{gpu="0",...} 0

An entry that says NOT_SUPPORTED (ECC on a consumer card, memory temperature on GDDR) makes the
field unsupported on that GPU: no sample from here (for memory temperature the sampler adds
dcgm-exporter's placeholder 0 unless ``--omit-unsupported-zeros``). An entry that failed otherwise
(UNKNOWN, NO_PERMISSION, ...) gives no sample either and marks the field with reason ``error``
for this cycle (the failure itself is counted once per (function, code) by the NVML module).

With the fast-path library built, the sampler makes these calls in the GPU's one compiled
read (:mod:`gpu_exporter.fastread`): the same calls, samples and marks, decoded only where a
value changed; this class is then the fallback (and the reference the tests compare with).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from gpu_exporter.catalog import CATALOG, EXTRA_REQUESTS
from gpu_exporter.collectors.base import (
    ERROR,
    DeviceView,
    Readings,
    ResultBuilder,
    SimpleCollector,
)
from gpu_exporter.nvml import NOT_SUPPORTED, SUCCESS

NVLINK_TX, NVLINK_RX = 138, 139


def field_requests(field_ids: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """The (NVML field id, scope) pairs the batched call needs for ``field_ids``, sorted.

    NVLink bandwidth fields need both the TX and RX data counters of their link scope.
    """
    wanted: set[tuple[int, int]] = set()
    for fid in field_ids:
        wanted.update(EXTRA_REQUESTS.get(fid, ()))
        spec = CATALOG.get(fid)
        if spec is None or spec.nvml_field is None:
            continue
        if spec.collector == "nvlink":
            wanted.add((NVLINK_TX, spec.scope))
            wanted.add((NVLINK_RX, spec.scope))
        else:
            wanted.add((spec.nvml_field, spec.scope))
    return tuple(sorted(wanted))


class FieldValuesCollector(SimpleCollector):
    """Decodes the plain device-level entries of the GPU's batched field values."""

    name: ClassVar[str] = "field_values"

    def __init__(self) -> None:
        # wanted fields -> (DCGM field id, its batch entry's key) in field order
        self._plans: dict[frozenset[int], tuple[tuple[int, tuple[int, int]], ...]] = {}

    def _plan(self, fields: frozenset[int]) -> tuple[tuple[int, tuple[int, int]], ...]:
        plan = self._plans.get(fields)
        if plan is None:
            plan = self._plans[fields] = tuple(
                (fid, (CATALOG[fid].nvml_field or 0, CATALOG[fid].scope)) for fid in sorted(fields))
        return plan

    def collect_into(
        self, device: DeviceView, fields: frozenset[int], readings: Readings, _now: float,
        out: ResultBuilder, /,
    ) -> None:
        """Turn this cycle's batch into samples (or unsupported marks)."""
        plan = self._plan(fields)
        for target in device.targets["device"]:
            entity = target.entity
            values: list[tuple[int, float | None]] = []
            for fid, key in plan:
                reading = readings.get(key)
                if reading is None:
                    values.append((fid, None))
                    continue
                code = reading.code
                if code == SUCCESS:
                    values.append((fid, reading.value))
                elif code == NOT_SUPPORTED:
                    values.append((fid, None))
                else:  # counted as an NVML error already: no sample, and said so
                    out.add_all(entity, values)
                    values = []
                    out.mark(entity, fid, ERROR)
            out.add_all(entity, values)
