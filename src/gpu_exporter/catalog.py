"""The field catalog: every DCGM field we can source, where from, and in which unit.

One declarative table, :data:`CATALOG`: DCGM field id -> :class:`FieldSpec` (DCGM name, level,
collector, NVML source, unit conversion as dcgm-exporter reports it). Conversions are small pure
functions (:func:`bytes_to_mib`, :func:`mw_to_w`, ...).

Levels decide where a field goes on MIG-enabled GPUs:

* ``device``: once per physical GPU (power, energy, temperature, clocks, PCIe, NVLink, ECC, ...),
  never repeated per MIG instance;
* ``instance``: per MIG instance when MIG is on (framebuffer memory, profiling), else per GPU;
* ``entity``: on every entity, GPU and MIG instance alike (label fields such as the driver
  version, and the XID fields, which attach to the instance a MIG-scoped XID names).

A DCGM field known to the counters file but absent here has no NVML source: :func:`lookup`
returns ``None`` and :func:`unsourced` lists such ids, so the CLI can warn once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

Level = Literal["device", "instance", "entity"]
Convert = Callable[[float], float | None]

NO_NVML_SOURCE = "no_nvml_source"

# Pseudo-field ids (agreed with the counters parser).
EXP_XID_ERRORS_COUNT = 9001
EXP_CLOCK_EVENTS_COUNT = 9002
EXP_GPU_HEALTH_STATUS = 9003
EXP_P2P_STATUS = 9004

ALL_LINKS = 0xFFFFFFFF
"""Field-value scope id meaning "summed over every NVLink"."""

MIB = 1048576

NVLINK_REPORTED_TO_BYTES = 1000.0 * 1024.0
"""NVLink bandwidth is reported as KiB/s / 1000 (as dcgm-exporter does); times this = B/s."""


def as_is(value: float) -> float | None:
    """No conversion (MHz, °C, counts, mJ, ns, percent as DCGM reports them)."""
    return value


def bytes_to_mib(value: float) -> float | None:
    """Bytes -> MiB, truncated like DCGM's framebuffer fields."""
    return float(int(value) // MIB)


def mw_to_w(value: float) -> float | None:
    """Milliwatts -> watts (float)."""
    return value / 1000.0


def percent_to_ratio(value: float) -> float | None:
    """0-100 % -> 0-1 ratio (DCGM profiling fields)."""
    return value / 100.0


def mib_per_s_to_bytes(value: float) -> float | None:
    """MiB/s -> bytes/s (GPM PCIe / NVLink throughput)."""
    return value * MIB


def temperature(value: float) -> float | None:
    """°C as is; readings above 200 °C are sensor garbage and dropped (as DCGM does)."""
    return None if value > 200 else value


def percent(value: float) -> float | None:
    """Utilisation in percent; out-of-range values (e.g. 4294967295 spikes) are dropped."""
    return value if 0 <= value <= 100 else None


def fan_percent(value: float) -> float | None:
    """Fan speed in percent of the nominal maximum; nvml.h allows more than 100 %.

    Only garbage (negative, or 2**31 and above: an unsigned error sentinel) is dropped.
    """
    return value if 0 <= value < 2**31 else None


def finite(value: float) -> float | None:
    """Any finite number."""
    return value if math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one DCGM field is sourced.

    Attributes:
        field_id: DCGM field id.
        name: canonical DCGM name (the default metric name).
        level: ``device``, ``instance`` or ``entity`` (see the module docstring).
        collector: name of the collector that produces it (see ``collectors.registry``).
        source: the NVML source, for humans and docs.
        convert: NVML value -> the unit dcgm-exporter reports; ``None`` drops the value.
        nvml_field: NVML field id when it is read through the batched
            ``nvmlDeviceGetFieldValues`` call.
        scope: field-value scope id (NVLink link, or :data:`ALL_LINKS`).
        gpm_metric: GPM metric id for ``DCGM_FI_PROF_*`` fields.
        unit: unit of the exported value.
    """

    field_id: int
    name: str
    level: Level
    collector: str
    source: str
    convert: Convert = as_is
    nvml_field: int | None = None
    scope: int = 0
    gpm_metric: int | None = None
    unit: str = ""


def _f(  # noqa: PLR0917 - table rows read best positionally
    fid: int, name: str, level: Level, collector: str, source: str, convert: Convert = as_is,
       *, nvml_field: int | None = None, scope: int = 0, gpm: int | None = None,
       unit: str = "") -> FieldSpec:
    return FieldSpec(fid, name, level, collector, source, convert, nvml_field, scope, gpm, unit)


def _fv(  # noqa: PLR0917 - table rows read best positionally
    fid: int, name: str, nvml_field: int, nvml_name: str, convert: Convert = as_is,
        unit: str = "") -> FieldSpec:
    """A device-level field read through the batched field-values call."""
    return _f(fid, name, "device", "field_values", f"field {nvml_name} ({nvml_field})",
              convert, nvml_field=nvml_field, unit=unit)


def _prof(fid: int, name: str, gpm: int, gpm_name: str, convert: Convert) -> FieldSpec:
    unit = "B/s" if convert is mib_per_s_to_bytes else "ratio"
    return _f(fid, name, "instance", "profiling", f"GPM {gpm_name} ({gpm})", convert,
              gpm=gpm, unit=unit)


_SPECS: tuple[FieldSpec, ...] = (
    # --- identity: static strings (CSV type "label") and numbers read once per GPU
    _f(1, "DCGM_FI_DRIVER_VERSION", "entity", "identity", "nvmlSystemGetDriverVersion"),
    _f(2, "DCGM_FI_NVML_VERSION", "entity", "identity", "nvmlSystemGetNVMLVersion"),
    _f(4, "DCGM_FI_DEV_COUNT", "entity", "identity", "nvmlDeviceGetCount"),
    # DCGM passes NVML's value through: its own test helpers decode minor = (v % 1000) / 10,
    # whatever the dcgm_fields.h comment (CUDA 11.1 = 11100) says.
    _f(5, "DCGM_FI_CUDA_DRIVER_VERSION", "entity", "identity",
       "nvmlSystemGetCudaDriverVersion as is (major * 1000 + minor * 10: 12.4 = 12040)"),
    _f(50, "DCGM_FI_DEV_NAME", "entity", "identity", "nvmlDeviceGetName"),
    _f(51, "DCGM_FI_DEV_BRAND", "entity", "identity", "nvmlDeviceGetBrand (name)"),
    _f(52, "DCGM_FI_DEV_NVML_INDEX", "entity", "identity", "nvmlDeviceGetIndex"),
    _f(53, "DCGM_FI_DEV_SERIAL", "entity", "identity", "nvmlDeviceGetSerial"),
    _f(54, "DCGM_FI_DEV_UUID", "entity", "identity", "nvmlDeviceGetUUID"),
    _f(55, "DCGM_FI_DEV_MINOR_NUMBER", "device", "identity", "nvmlDeviceGetMinorNumber"),
    _f(56, "DCGM_FI_DEV_OEM_INFOROM_VER", "entity", "identity",
       "nvmlDeviceGetInforomVersion(OEM)"),
    _f(57, "DCGM_FI_DEV_PCI_BUSID", "entity", "identity", "nvmlDeviceGetPciInfo_v3().busId"),
    _f(67, "DCGM_FI_DEV_MIG_MODE", "device", "identity", "nvmlDeviceGetMigMode (current)"),
    _f(80, "DCGM_FI_DEV_ECC_INFOROM_VER", "entity", "identity",
       "nvmlDeviceGetInforomVersion(ECC)"),
    _f(81, "DCGM_FI_DEV_POWER_INFOROM_VER", "entity", "identity",
       "nvmlDeviceGetInforomVersion(POWER)"),
    _f(82, "DCGM_FI_DEV_INFOROM_IMAGE_VER", "entity", "identity",
       "nvmlDeviceGetInforomImageVersion"),
    _f(85, "DCGM_FI_DEV_VBIOS_VERSION", "entity", "identity", "nvmlDeviceGetVbiosVersion"),
    # --- memory (per MIG instance when MIG is on)
    _f(90, "DCGM_FI_DEV_BAR1_TOTAL", "device", "memory",
       "nvmlDeviceGetBAR1MemoryInfo().bar1Total", bytes_to_mib, unit="MiB"),
    _f(92, "DCGM_FI_DEV_BAR1_USED", "device", "memory",
       "nvmlDeviceGetBAR1MemoryInfo().bar1Used", bytes_to_mib, unit="MiB"),
    _f(93, "DCGM_FI_DEV_BAR1_FREE", "device", "memory",
       "nvmlDeviceGetBAR1MemoryInfo().bar1Free", bytes_to_mib, unit="MiB"),
    _f(250, "DCGM_FI_DEV_FB_TOTAL", "instance", "memory",
       "nvmlDeviceGetMemoryInfo_v2().total", bytes_to_mib, unit="MiB"),
    _f(251, "DCGM_FI_DEV_FB_FREE", "instance", "memory",
       "nvmlDeviceGetMemoryInfo_v2().free", bytes_to_mib, unit="MiB"),
    _f(252, "DCGM_FI_DEV_FB_USED", "instance", "memory",
       "nvmlDeviceGetMemoryInfo_v2().used", bytes_to_mib, unit="MiB"),
    _f(253, "DCGM_FI_DEV_FB_RESERVED", "instance", "memory",
       "nvmlDeviceGetMemoryInfo_v2().reserved (absent with the v1 struct)", bytes_to_mib,
       unit="MiB"),
    _f(254, "DCGM_FI_DEV_FB_USED_PERCENT", "instance", "memory",
       "nvmlDeviceGetMemoryInfo_v2(): used / (total - reserved)", finite, unit="ratio"),
    # --- clocks
    _f(100, "DCGM_FI_DEV_SM_CLOCK", "device", "clocks", "nvmlDeviceGetClockInfo(SM)",
       unit="MHz"),
    _f(101, "DCGM_FI_DEV_MEM_CLOCK", "device", "clocks", "nvmlDeviceGetClockInfo(MEM)",
       unit="MHz"),
    _f(102, "DCGM_FI_DEV_VIDEO_CLOCK", "device", "clocks", "nvmlDeviceGetClockInfo(VIDEO)",
       unit="MHz"),
    _f(110, "DCGM_FI_DEV_APP_SM_CLOCK", "device", "clocks",
       "nvmlDeviceGetApplicationsClock(SM)", unit="MHz"),
    _f(111, "DCGM_FI_DEV_APP_MEM_CLOCK", "device", "clocks",
       "nvmlDeviceGetApplicationsClock(MEM)", unit="MHz"),
    _f(112, "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "device", "clocks",
       "nvmlDeviceGetCurrentClocksEventReasons (bitmask)"),
    _f(113, "DCGM_FI_DEV_MAX_SM_CLOCK", "device", "clocks", "nvmlDeviceGetMaxClockInfo(SM)",
       unit="MHz"),
    _f(114, "DCGM_FI_DEV_MAX_MEM_CLOCK", "device", "clocks", "nvmlDeviceGetMaxClockInfo(MEM)",
       unit="MHz"),
    _f(115, "DCGM_FI_DEV_MAX_VIDEO_CLOCK", "device", "clocks",
       "nvmlDeviceGetMaxClockInfo(VIDEO)", unit="MHz"),
    _f(190, "DCGM_FI_DEV_PSTATE", "device", "clocks", "nvmlDeviceGetPerformanceState"),
    # --- temperature and cooling
    _fv(140, "DCGM_FI_DEV_MEMORY_TEMP", 82, "NVML_FI_DEV_MEMORY_TEMP", temperature, "°C"),
    _f(150, "DCGM_FI_DEV_GPU_TEMP", "device", "temperature",
       "nvmlDeviceGetTemperatureV(GPU), else nvmlDeviceGetTemperature", temperature,
       unit="°C"),
    _fv(151, "DCGM_FI_DEV_MEM_MAX_OP_TEMP", 195, "NVML_FI_DEV_TEMPERATURE_MEM_MAX_TLIMIT",
        unit="°C"),
    _fv(152, "DCGM_FI_DEV_GPU_MAX_OP_TEMP", 196, "NVML_FI_DEV_TEMPERATURE_GPU_MAX_TLIMIT",
        unit="°C"),
    _fv(158, "DCGM_FI_DEV_SLOWDOWN_TEMP", 194, "NVML_FI_DEV_TEMPERATURE_SLOWDOWN_TLIMIT",
        unit="°C"),
    _fv(159, "DCGM_FI_DEV_SHUTDOWN_TEMP", 193, "NVML_FI_DEV_TEMPERATURE_SHUTDOWN_TLIMIT",
        unit="°C"),
    _f(191, "DCGM_FI_DEV_FAN_SPEED", "device", "temperature", "nvmlDeviceGetFanSpeed",
       fan_percent, unit="%"),
    # --- power and energy
    _f(155, "DCGM_FI_DEV_POWER_USAGE", "device", "power", "nvmlDeviceGetPowerUsage (mW)",
       mw_to_w, unit="W"),
    _fv(156, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 83,
        "NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION", unit="mJ"),
    _f(160, "DCGM_FI_DEV_POWER_MGMT_LIMIT", "device", "power",
       "nvmlDeviceGetPowerManagementLimit (mW)", mw_to_w, unit="W"),
    _f(161, "DCGM_FI_DEV_POWER_MGMT_LIMIT_MIN", "device", "power",
       "nvmlDeviceGetPowerManagementLimitConstraints()[0] (mW)", mw_to_w, unit="W"),
    _f(162, "DCGM_FI_DEV_POWER_MGMT_LIMIT_MAX", "device", "power",
       "nvmlDeviceGetPowerManagementLimitConstraints()[1] (mW)", mw_to_w, unit="W"),
    _f(163, "DCGM_FI_DEV_POWER_MGMT_LIMIT_DEF", "device", "power",
       "nvmlDeviceGetPowerManagementDefaultLimit (mW)", mw_to_w, unit="W"),
    _f(164, "DCGM_FI_DEV_ENFORCED_POWER_LIMIT", "device", "power",
       "nvmlDeviceGetEnforcedPowerLimit (mW)", mw_to_w, unit="W"),
    # --- PCIe
    _f(200, "DCGM_FI_DEV_PCIE_TX_THROUGHPUT", "device", "pcie",
       "rate of field NVML_FI_DEV_PCIE_COUNT_TX_BYTES (197) over its timestamps",
       nvml_field=197, unit="KB/s"),
    _f(201, "DCGM_FI_DEV_PCIE_RX_THROUGHPUT", "device", "pcie",
       "rate of field NVML_FI_DEV_PCIE_COUNT_RX_BYTES (198) over its timestamps",
       nvml_field=198, unit="KB/s"),
    _fv(202, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 94, "NVML_FI_DEV_PCIE_REPLAY_COUNTER"),
    _f(235, "DCGM_FI_DEV_PCIE_MAX_LINK_GEN", "device", "pcie",
       "nvmlDeviceGetMaxPcieLinkGeneration"),
    _f(236, "DCGM_FI_DEV_PCIE_MAX_LINK_WIDTH", "device", "pcie",
       "nvmlDeviceGetMaxPcieLinkWidth"),
    _f(237, "DCGM_FI_DEV_PCIE_LINK_GEN", "device", "pcie",
       "nvmlDeviceGetCurrPcieLinkGeneration"),
    _f(238, "DCGM_FI_DEV_PCIE_LINK_WIDTH", "device", "pcie", "nvmlDeviceGetCurrPcieLinkWidth"),
    # --- utilisation (NOT_SUPPORTED on MIG handles, hence device level)
    _f(203, "DCGM_FI_DEV_GPU_UTIL", "device", "utilization",
       "nvmlDeviceGetUtilizationRates().gpu", percent, unit="%"),
    _f(204, "DCGM_FI_DEV_MEM_COPY_UTIL", "device", "utilization",
       "nvmlDeviceGetUtilizationRates().memory", percent, unit="%"),
    _f(206, "DCGM_FI_DEV_ENC_UTIL", "device", "utilization",
       "nvmlDeviceGetEncoderUtilization()[0]", percent, unit="%"),
    _f(207, "DCGM_FI_DEV_DEC_UTIL", "device", "utilization",
       "nvmlDeviceGetDecoderUtilization()[0]", percent, unit="%"),
    # --- XID and clock events (event watcher)
    _f(230, "DCGM_FI_DEV_XID_ERRORS", "entity", "xid",
       "nvmlEventSetWait_v2 XidCriticalError events: last XID in the window"),
    _f(EXP_XID_ERRORS_COUNT, "DCGM_EXP_XID_ERRORS_COUNT", "entity", "xid",
       "nvmlEventSetWait_v2 XidCriticalError events counted per XID over the window"),
    _f(EXP_CLOCK_EVENTS_COUNT, "DCGM_EXP_CLOCK_EVENTS_COUNT", "device", "xid",
       "nvmlDeviceGetCurrentClocksEventReasons transitions counted per reason over the window"),
    # --- violations (ns, cumulative)
    _fv(240, "DCGM_FI_DEV_POWER_VIOLATION", 74, "NVML_FI_DEV_PERF_POLICY_POWER", unit="ns"),
    _fv(241, "DCGM_FI_DEV_THERMAL_VIOLATION", 75, "NVML_FI_DEV_PERF_POLICY_THERMAL",
        unit="ns"),
    _fv(242, "DCGM_FI_DEV_SYNC_BOOST_VIOLATION", 76, "NVML_FI_DEV_PERF_POLICY_SYNC_BOOST",
        unit="ns"),
    _fv(243, "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION", 77, "NVML_FI_DEV_PERF_POLICY_BOARD_LIMIT",
        unit="ns"),
    _fv(244, "DCGM_FI_DEV_LOW_UTIL_VIOLATION", 78, "NVML_FI_DEV_PERF_POLICY_LOW_UTILIZATION",
        unit="ns"),
    _fv(245, "DCGM_FI_DEV_RELIABILITY_VIOLATION", 79, "NVML_FI_DEV_PERF_POLICY_RELIABILITY",
        unit="ns"),
    _fv(246, "DCGM_FI_DEV_TOTAL_APP_CLOCKS_VIOLATION", 80,
        "NVML_FI_DEV_PERF_POLICY_TOTAL_APP_CLOCKS", unit="ns"),
    _fv(247, "DCGM_FI_DEV_TOTAL_BASE_CLOCKS_VIOLATION", 81,
        "NVML_FI_DEV_PERF_POLICY_TOTAL_BASE_CLOCKS", unit="ns"),
    # --- ECC
    _fv(300, "DCGM_FI_DEV_ECC_CURRENT", 1, "NVML_FI_DEV_ECC_CURRENT"),
    _fv(301, "DCGM_FI_DEV_ECC_PENDING", 2, "NVML_FI_DEV_ECC_PENDING"),
    _fv(310, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", 3, "NVML_FI_DEV_ECC_SBE_VOL_TOTAL"),
    _fv(311, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", 4, "NVML_FI_DEV_ECC_DBE_VOL_TOTAL"),
    _fv(312, "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", 5, "NVML_FI_DEV_ECC_SBE_AGG_TOTAL"),
    _fv(313, "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", 6, "NVML_FI_DEV_ECC_DBE_AGG_TOTAL"),
    # --- retired pages and remapped rows
    _fv(390, "DCGM_FI_DEV_RETIRED_SBE", 29, "NVML_FI_DEV_RETIRED_SBE"),
    _fv(391, "DCGM_FI_DEV_RETIRED_DBE", 30, "NVML_FI_DEV_RETIRED_DBE"),
    _fv(392, "DCGM_FI_DEV_RETIRED_PENDING", 31, "NVML_FI_DEV_RETIRED_PENDING"),
    _fv(393, "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", 143, "NVML_FI_DEV_REMAPPED_UNC"),
    _fv(394, "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", 142, "NVML_FI_DEV_REMAPPED_COR"),
    _fv(395, "DCGM_FI_DEV_ROW_REMAP_FAILURE", 145, "NVML_FI_DEV_REMAPPED_FAILURE"),
    _fv(396, "DCGM_FI_DEV_ROW_REMAP_PENDING", 144, "NVML_FI_DEV_REMAPPED_PENDING"),
    # --- NVLink errors (totals over all links) and bandwidth (rates)
    _fv(409, "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", 38,
        "NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"),
    _fv(419, "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", 45,
        "NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL"),
    _fv(429, "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", 52,
        "NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL"),
    _fv(439, "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", 59,
        "NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL"),
    *(
        _f(440 + link, f"DCGM_FI_DEV_NVLINK_BANDWIDTH_L{link}", "device", "nvlink",
           f"rate of fields NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX/RX (138+139), link {link}",
           nvml_field=138, scope=link, unit="MB/s")
        for link in range(6)
    ),
    _f(449, "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "device", "nvlink",
       "rate of fields NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX/RX (138+139), all links",
       nvml_field=138, scope=ALL_LINKS, unit="MB/s"),
    # --- exporter-computed fields and vGPU
    _f(EXP_GPU_HEALTH_STATUS, "DCGM_EXP_GPU_HEALTH_STATUS", "device", "health",
       "NVML-derived health per subsystem: ECC/row-remap fields, clock event reasons, "
       "XIDs in the window, nvmlDeviceValidateInforom"),
    _f(EXP_P2P_STATUS, "DCGM_EXP_P2P_STATUS", "device", "p2p",
       "nvmlDeviceGetP2PStatus(NVLINK) towards each other GPU"),
    _f(526, "DCGM_FI_DEV_VGPU_LICENSE_STATUS", "device", "vgpu",
       "nvmlDeviceGetGridLicensableFeatures_v4 featureState (vGPU guests only)"),
    # --- profiling through GPM (Hopper and newer; per MIG instance)
    _prof(1001, "DCGM_FI_PROF_GR_ENGINE_ACTIVE", 1, "GRAPHICS_UTIL", percent_to_ratio),
    _prof(1002, "DCGM_FI_PROF_SM_ACTIVE", 2, "SM_UTIL", percent_to_ratio),
    _prof(1003, "DCGM_FI_PROF_SM_OCCUPANCY", 3, "SM_OCCUPANCY", percent_to_ratio),
    _prof(1004, "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 5, "ANY_TENSOR_UTIL", percent_to_ratio),
    _prof(1005, "DCGM_FI_PROF_DRAM_ACTIVE", 10, "DRAM_BW_UTIL", percent_to_ratio),
    _prof(1006, "DCGM_FI_PROF_PIPE_FP64_ACTIVE", 11, "FP64_UTIL", percent_to_ratio),
    _prof(1007, "DCGM_FI_PROF_PIPE_FP32_ACTIVE", 12, "FP32_UTIL", percent_to_ratio),
    _prof(1008, "DCGM_FI_PROF_PIPE_FP16_ACTIVE", 13, "FP16_UTIL", percent_to_ratio),
    _prof(1009, "DCGM_FI_PROF_PCIE_TX_BYTES", 20, "PCIE_TX_PER_SEC", mib_per_s_to_bytes),
    _prof(1010, "DCGM_FI_PROF_PCIE_RX_BYTES", 21, "PCIE_RX_PER_SEC", mib_per_s_to_bytes),
    _prof(1011, "DCGM_FI_PROF_NVLINK_TX_BYTES", 61, "NVLINK_TOTAL_TX_PER_SEC",
          mib_per_s_to_bytes),
    _prof(1012, "DCGM_FI_PROF_NVLINK_RX_BYTES", 60, "NVLINK_TOTAL_RX_PER_SEC",
          mib_per_s_to_bytes),
    _prof(1013, "DCGM_FI_PROF_PIPE_TENSOR_IMMA_ACTIVE", 9, "IMMA_TENSOR_UTIL",
          percent_to_ratio),
    _prof(1014, "DCGM_FI_PROF_PIPE_TENSOR_HMMA_ACTIVE", 7, "HMMA_TENSOR_UTIL",
          percent_to_ratio),
    _prof(1015, "DCGM_FI_PROF_PIPE_TENSOR_DFMA_ACTIVE", 6, "DFMA_TENSOR_UTIL",
          percent_to_ratio),
    _prof(1016, "DCGM_FI_PROF_PIPE_INT_ACTIVE", 4, "INTEGER_UTIL", percent_to_ratio),
)

CATALOG: dict[int, FieldSpec] = {spec.field_id: spec for spec in _SPECS}
"""DCGM field id -> how we source it."""

@dataclass(frozen=True, slots=True)
class DerivedSpec:
    """A DCGM 4.7+ base-unit field computed from a classic field (4.9 counters files).

    Attributes:
        field_id: DCGM id of the base-unit field.
        name: its DCGM name.
        base: the classic field it is computed from (same level, same support).
        factor: multiplier from the classic field's unit to the base unit.
        unit: unit of the exported value.
    """

    field_id: int
    name: str
    base: int
    factor: float
    unit: str


def _d(fid: int, name: str, base: int, factor: float, unit: str) -> DerivedSpec:
    return DerivedSpec(fid, name, base, factor, unit)


DERIVED: dict[int, DerivedSpec] = {
    d.field_id: d
    for d in (
        _d(1600, "DCGM_FI_DEV_BAR1_CAPACITY_BYTES", 90, MIB, "B"),
        _d(1601, "DCGM_FI_DEV_BAR1_USED_BYTES", 92, MIB, "B"),
        _d(1602, "DCGM_FI_DEV_BAR1_FREE_BYTES", 93, MIB, "B"),
        _d(1603, "DCGM_FI_DEV_SM_CLOCK_HERTZ", 100, 1e6, "Hz"),
        _d(1604, "DCGM_FI_DEV_MEMORY_CLOCK_HERTZ", 101, 1e6, "Hz"),
        _d(1605, "DCGM_FI_DEV_VIDEO_CLOCK_HERTZ", 102, 1e6, "Hz"),
        _d(1606, "DCGM_FI_DEV_SM_APP_CLOCK_HERTZ", 110, 1e6, "Hz"),
        _d(1607, "DCGM_FI_DEV_MEMORY_APP_CLOCK_HERTZ", 111, 1e6, "Hz"),
        _d(1608, "DCGM_FI_DEV_SM_MAX_CLOCK_HERTZ", 113, 1e6, "Hz"),
        _d(1609, "DCGM_FI_DEV_MEMORY_MAX_CLOCK_HERTZ", 114, 1e6, "Hz"),
        _d(1610, "DCGM_FI_DEV_VIDEO_MAX_CLOCK_HERTZ", 115, 1e6, "Hz"),
        _d(1611, "DCGM_FI_DEV_GPU_ENERGY_JOULES_TOTAL", 156, 1e-3, "J"),
        _d(1612, "DCGM_FI_DEV_FAN_SPEED_RATIO", 191, 0.01, "ratio"),
        _d(1613, "DCGM_FI_DEV_GPU_UTIL_RATIO", 203, 0.01, "ratio"),
        _d(1614, "DCGM_FI_DEV_MEMORY_UTIL_RATIO", 204, 0.01, "ratio"),
        _d(1615, "DCGM_FI_DEV_ENC_UTIL_RATIO", 206, 0.01, "ratio"),
        _d(1616, "DCGM_FI_DEV_DEC_UTIL_RATIO", 207, 0.01, "ratio"),
        _d(1617, "DCGM_FI_DEV_GPU_POWER_THROTTLE_SECONDS_TOTAL", 240, 1e-9, "s"),
        _d(1625, "DCGM_FI_DEV_FB_CAPACITY_BYTES", 250, MIB, "B"),
        _d(1626, "DCGM_FI_DEV_FB_FREE_BYTES", 251, MIB, "B"),
        _d(1627, "DCGM_FI_DEV_FB_USED_BYTES", 252, MIB, "B"),
        _d(1628, "DCGM_FI_DEV_FB_RESERVED_BYTES", 253, MIB, "B"),
        *(_d(1630 + link, f"DCGM_FI_DEV_NVLINK_THROUGHPUT_L{link}_BYTES_PER_SECOND",
             440 + link, NVLINK_REPORTED_TO_BYTES, "B/s") for link in range(6)),
        _d(1648, "DCGM_FI_DEV_NVLINK_THROUGHPUT_BYTES_PER_SECOND", 449,
           NVLINK_REPORTED_TO_BYTES, "B/s"),
    )
}
"""Base-unit fields (DCGM 4.7 names used by dcgm-exporter 4.9) -> the classic field they scale.

Framebuffer and BAR1 bytes are MiB-granular (the classic field is MiB, truncated)."""


PLACEHOLDER_ZERO: frozenset[int] = frozenset({140, 526})
"""Fields dcgm-exporter exports as 0 where the GPU cannot provide them, and we do too (unless
``--omit-unsupported-zeros``): ``DCGM_FI_DEV_MEMORY_TEMP`` (140) on GPUs without a memory
sensor (DCGM ignores NVML's per-field NOT_SUPPORTED and stores the undefined value, 0: NVIDIA/DCGM
pull request #311, dcgm-exporter issue #460) and ``DCGM_FI_DEV_VGPU_LICENSE_STATUS`` (526)
outside a vGPU guest (DCGM reports 0, "not licensed": the A30 sample of dcgm-exporter issue #317,
recorded in tests/migration/data/metrics_a30_mig.prom)."""


EXTRA_REQUESTS: dict[int, tuple[tuple[int, int], ...]] = {
    EXP_GPU_HEALTH_STATUS: ((4, 0), (31, 0), (144, 0), (145, 0)),
}
"""Batched field values a computed field needs: health reads volatile DBEs (NVML field 4),
pending page retirements (31) and row-remap pending / failure (144, 145)."""


def lookup(field_id: int) -> FieldSpec | None:
    """The catalog entry of a DCGM field, or ``None`` when it has no NVML source."""
    return CATALOG.get(field_id)


def base_of(field_id: int) -> int:
    """The field a derived base-unit field is computed from, else the field itself."""
    derived = DERIVED.get(field_id)
    return field_id if derived is None else derived.base


def has_source(field_id: int) -> bool:
    """True when the field can be sourced from NVML (directly or derived)."""
    return base_of(field_id) in CATALOG


def unsourced(field_ids: Iterable[int]) -> frozenset[int]:
    """The ids among ``field_ids`` that have no NVML source (for a one-time CLI warning)."""
    return frozenset(fid for fid in field_ids if not has_source(fid))


def field_name(field_id: int) -> str:
    """DCGM name of a field: from the catalog, else the DCGM field table, else ``field_<id>``."""
    spec = CATALOG.get(field_id)
    if spec is not None:
        return spec.name
    if field_id in DERIVED:
        return DERIVED[field_id].name
    try:
        from gpu_exporter import dcgm_fields  # noqa: PLC0415 - owned by the counters parser

        return str(dcgm_fields.field_name(field_id))
    except (ImportError, KeyError, ValueError, AttributeError):
        return f"field_{field_id}"


def ids_of(collector: str) -> frozenset[int]:
    """Every field id a collector produces according to the catalog."""
    return frozenset(s.field_id for s in _SPECS if s.collector == collector)
