"""Health collector: ``DCGM_EXP_GPU_HEALTH_STATUS`` per subsystem, derived from NVML.

dcgm-exporter asks DCGM's health engine; without DCGM the verdicts come from what NVML reports,
with these rules (0 pass, 10 warning, 20 failure; ``health_error_code`` is the DCGM_FR_* name):

=========  ==========================================================================
watch      failure (20) / warning (10)
=========  ==========================================================================
MEM        fail: volatile double-bit ECC errors (DCGM_FR_VOLATILE_DBE_DETECTED), row
           remapping failed (DCGM_FR_ROW_REMAP_FAILURE), XID 48 / 94 in the window
           (DCGM_FR_XID_ERROR), XID 95 (DCGM_FR_UNCONTAINED_ERROR); warn: row remap
           pending (DCGM_FR_PENDING_ROW_REMAP), pages pending retirement
           (DCGM_FR_PENDING_PAGE_RETIREMENTS)
NVLINK     fail: XID 74 in the window (DCGM_FR_NVLINK_ERROR_CRITICAL)
THERMAL    warn: thermal slowdown clock event reason active (DCGM_FR_CLOCK_THROTTLE_THERMAL)
POWER      warn: hardware power brake active (DCGM_FR_CLOCK_THROTTLE_POWER)
INFOROM    warn: nvmlDeviceValidateInforom reports corruption (DCGM_FR_CORRUPT_INFOROM)
PCIE, PMU, MCU, SM, DRIVER   pass (no NVML signal mapped yet)
ALL        the worst of the above; fail on XID 79 (DCGM_FR_XID_ERROR) or 95 in the window
=========  ==========================================================================

Series (device level, 11 per GPU)::

    DCGM_EXP_GPU_HEALTH_STATUS{gpu="0",...,health_error_code="DCGM_FR_OK",health_watch="PCIE"} 0
    DCGM_EXP_GPU_HEALTH_STATUS{gpu="0",...,health_error_code="DCGM_FR_XID_ERROR",
                               health_watch="ALL"} 20

The XID window is the one of ``-x``. The inforom check reads flash, so it runs once per probe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from gpu_exporter.catalog import EXP_GPU_HEALTH_STATUS
from gpu_exporter.collectors.base import DeviceView, IntoCollector, Readings, ResultBuilder
from gpu_exporter.events import EventLog
from gpu_exporter.model import Entity, Sample
from gpu_exporter.nvml import SUCCESS

PASS, WARN, FAIL = 0, 10, 20
OK = "DCGM_FR_OK"
WATCHES = ("PCIE", "NVLINK", "PMU", "MCU", "MEM", "SM", "INFOROM", "THERMAL", "POWER",
           "DRIVER", "ALL")
_THERMAL_BITS = 0x20 | 0x40  # software and hardware thermal slowdown
_POWER_BRAKE = 0x80


@dataclass(frozen=True, slots=True)
class HealthInputs:
    """What the verdicts are computed from (``None``: not available on this GPU)."""

    dbe_volatile: float | None = None
    retired_pending: float | None = None
    remap_pending: float | None = None
    remap_failure: float | None = None
    clock_reasons: int | None = None
    inforom_valid: bool | None = None
    xids: tuple[int, ...] = ()


def assess(inputs: HealthInputs) -> dict[str, tuple[int, str]]:
    """Pure: (value, DCGM_FR_* code) per health watch, ``ALL`` included."""
    verdict = dict.fromkeys(WATCHES, (PASS, OK))

    def worse(watch: str, value: int, code: str) -> None:
        if value > verdict[watch][0]:
            verdict[watch] = (value, code)

    xids = set(inputs.xids)
    for value, code in _memory(inputs, xids):
        worse("MEM", value, code)
    if 74 in xids:
        worse("NVLINK", FAIL, "DCGM_FR_NVLINK_ERROR_CRITICAL")
    reasons = inputs.clock_reasons or 0
    if reasons & _THERMAL_BITS:
        worse("THERMAL", WARN, "DCGM_FR_CLOCK_THROTTLE_THERMAL")
    if reasons & _POWER_BRAKE:
        worse("POWER", WARN, "DCGM_FR_CLOCK_THROTTLE_POWER")
    if inputs.inforom_valid is False:
        worse("INFOROM", WARN, "DCGM_FR_CORRUPT_INFOROM")
    for watch in WATCHES[:-1]:
        worse("ALL", *verdict[watch])
    if 79 in xids:
        worse("ALL", FAIL, "DCGM_FR_XID_ERROR")
    if 95 in xids:
        worse("ALL", FAIL, "DCGM_FR_UNCONTAINED_ERROR")
    return verdict


def _memory(inputs: HealthInputs, xids: set[int]) -> list[tuple[int, str]]:
    findings = []
    if inputs.remap_pending:
        findings.append((WARN, "DCGM_FR_PENDING_ROW_REMAP"))
    if inputs.retired_pending:
        findings.append((WARN, "DCGM_FR_PENDING_PAGE_RETIREMENTS"))
    if inputs.dbe_volatile:
        findings.append((FAIL, "DCGM_FR_VOLATILE_DBE_DETECTED"))
    if inputs.remap_failure:
        findings.append((FAIL, "DCGM_FR_ROW_REMAP_FAILURE"))
    if xids & {48, 94}:
        findings.append((FAIL, "DCGM_FR_XID_ERROR"))
    if 95 in xids:
        findings.append((FAIL, "DCGM_FR_UNCONTAINED_ERROR"))
    return findings


def _value(readings: Readings, field_id: int) -> float | None:
    reading = readings.get((field_id, 0))
    if reading is None or reading.code != SUCCESS:
        return None
    return reading.value


class HealthCollector(IntoCollector):
    """NVML-derived health verdicts of one GPU.

    Args:
        event_log: the XID log (for XIDs within the window).
    """

    name: ClassVar[str] = "health"

    def __init__(self, event_log: EventLog) -> None:
        self._log = event_log
        self._inforom: dict[int, tuple[object, bool | None]] = {}

    def collect_into(
        self, device: DeviceView, fields: frozenset[int], readings: Readings, now: float,
        out: ResultBuilder, /,
    ) -> None:
        """Eleven samples per GPU, one per health watch."""
        if EXP_GPU_HEALTH_STATUS not in fields:
            return
        for target in device.targets["device"]:
            gpu = target.entity.gpu
            cached = self._inforom.get(gpu)
            if cached is None or cached[0] is not device:
                cached = self._inforom[gpu] = (device, device.nvml.inforom_valid(target.handle))
            inputs = HealthInputs(
                dbe_volatile=_value(readings, 4),
                retired_pending=_value(readings, 31),
                remap_pending=_value(readings, 144),
                remap_failure=_value(readings, 145),
                clock_reasons=device.nvml.clocks_event_reasons(target.handle),
                inforom_valid=cached[1],
                xids=tuple(self._log.recent_xids(gpu, now)),
            )
            out.samples.extend(_samples(target.entity, assess(inputs).items()))

    def reset(self, gpu: int) -> None:
        """Re-check the inforom after a re-probe."""
        self._inforom.pop(gpu, None)

    def close(self) -> None:
        """Nothing held outside Python."""


def _samples(entity: Entity, verdicts: Iterable[tuple[str, tuple[int, str]]]) -> list[Sample]:
    return [
        Sample(entity, EXP_GPU_HEALTH_STATUS, float(value),
               (("health_watch", watch), ("health_error_code", code)))
        for watch, (value, code) in verdicts
    ]
