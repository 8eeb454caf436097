"""The DCGM field table: names of every generation resolve, ids are consistent."""

from __future__ import annotations

from collections import Counter

import pytest

from gpu_exporter import dcgm_fields as f


@pytest.mark.parametrize(
    ("name", "fid"),
    [
        # Names used by dcgm-exporter's shipped counters files (DCGM <= 4.6 spelling).
        ("DCGM_FI_DRIVER_VERSION", 1),
        ("DCGM_FI_NVML_VERSION", 2),
        ("DCGM_FI_DEV_BRAND", 51),
        ("DCGM_FI_DEV_SERIAL", 53),
        ("DCGM_FI_DEV_OEM_INFOROM_VER", 56),
        ("DCGM_FI_DEV_ECC_INFOROM_VER", 80),
        ("DCGM_FI_DEV_POWER_INFOROM_VER", 81),
        ("DCGM_FI_DEV_INFOROM_IMAGE_VER", 82),
        ("DCGM_FI_DEV_VBIOS_VERSION", 85),
        ("DCGM_FI_DEV_SM_CLOCK", 100),
        ("DCGM_FI_DEV_MEM_CLOCK", 101),
        ("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", 112),
        ("DCGM_FI_DEV_CLOCKS_EVENT_REASONS", 112),
        ("DCGM_FI_DEV_MEMORY_TEMP", 140),
        ("DCGM_FI_DEV_GPU_TEMP", 150),
        ("DCGM_FI_DEV_POWER_USAGE", 155),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 156),
        ("DCGM_FI_DEV_PCIE_TX_THROUGHPUT", 200),
        ("DCGM_FI_DEV_PCIE_RX_THROUGHPUT", 201),
        ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 202),
        ("DCGM_FI_DEV_GPU_UTIL", 203),
        ("DCGM_FI_DEV_MEM_COPY_UTIL", 204),
        ("DCGM_FI_DEV_ENC_UTIL", 206),
        ("DCGM_FI_DEV_DEC_UTIL", 207),
        ("DCGM_FI_DEV_XID_ERRORS", 230),
        ("DCGM_FI_DEV_POWER_VIOLATION", 240),
        ("DCGM_FI_DEV_RELIABILITY_VIOLATION", 245),
        ("DCGM_FI_DEV_FB_TOTAL", 250),
        ("DCGM_FI_DEV_FB_FREE", 251),
        ("DCGM_FI_DEV_FB_USED", 252),
        ("DCGM_FI_DEV_FB_RESERVED", 253),
        ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", 310),
        ("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", 313),
        ("DCGM_FI_DEV_RETIRED_SBE", 390),
        ("DCGM_FI_DEV_RETIRED_DBE", 391),
        ("DCGM_FI_DEV_RETIRED_PENDING", 392),
        ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", 393),
        ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", 394),
        ("DCGM_FI_DEV_ROW_REMAP_FAILURE", 395),
        ("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", 409),
        ("DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", 419),
        ("DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", 429),
        ("DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", 439),
        ("DCGM_FI_DEV_NVLINK_BANDWIDTH_L0", 440),
        ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", 449),
        ("DCGM_FI_DEV_VGPU_LICENSE_STATUS", 526),
        ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 1001),
        ("DCGM_FI_PROF_SM_ACTIVE", 1002),
        ("DCGM_FI_PROF_SM_OCCUPANCY", 1003),
        ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 1004),
        ("DCGM_FI_PROF_DRAM_ACTIVE", 1005),
        ("DCGM_FI_PROF_PIPE_FP64_ACTIVE", 1006),
        ("DCGM_FI_PROF_PIPE_FP32_ACTIVE", 1007),
        ("DCGM_FI_PROF_PIPE_FP16_ACTIVE", 1008),
        ("DCGM_FI_PROF_PCIE_TX_BYTES", 1009),
        ("DCGM_FI_PROF_PCIE_RX_BYTES", 1010),
        # DCGM 4.7 names of the same ids.
        ("DCGM_FI_SYSTEM_DRIVER_VERSION", 1),
        ("DCGM_FI_DEV_GPU_TEMP_CELSIUS", 150),
        ("DCGM_FI_DEV_BOARD_POWER_WATTS", 155),
        ("DCGM_FI_DEV_PCIE_REPLAY_TOTAL", 202),
        ("DCGM_FI_DEV_XID_ERROR", 230),
        ("DCGM_FI_DEV_NVLINK_THROUGHPUT_TOTAL", 449),
        ("DCGM_FI_DEV_ROW_REMAP_FAILED", 395),
        ("DCGM_FI_PROF_SM_UTIL_RATIO", 1002),
        ("DCGM_FI_PROF_TENSOR_UTIL_RATIO", 1004),
        # DCGM 4.7 base-unit fields: new ids, because the unit differs.
        ("DCGM_FI_DEV_SM_CLOCK_HERTZ", 1603),
        ("DCGM_FI_DEV_GPU_ENERGY_JOULES_TOTAL", 1611),
        ("DCGM_FI_DEV_GPU_UTIL_RATIO", 1613),
        ("DCGM_FI_DEV_FB_CAPACITY_BYTES", 1625),
        ("DCGM_FI_DEV_FB_USED_BYTES", 1627),
        ("DCGM_FI_DEV_NVLINK_THROUGHPUT_BYTES_PER_SECOND", 1648),
        # Per-lane series with their irregular numbering.
        ("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_L12", 406),
        ("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_L17_TOTAL", 483),
        ("DCGM_FI_DEV_NVLINK_BANDWIDTH_L6", 475),
        ("DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_L15", 491),
        ("DCGM_FI_DEV_NVSWITCH_LINK_CRC_ERRORS_LANE4", 817),
        ("DCGM_FI_DEV_NVSWITCH_LINK_ECC_ERROR_L7_TOTAL", 824),
        ("DCGM_FI_PROF_NVLINK_L17_RX_BYTES", 1075),
        ("DCGM_FI_DEV_ECC_DBE_AGG_SRM", 345),
        # Exporter pseudo-fields and 1.x names.
        ("DCGM_EXP_XID_ERRORS_COUNT", 9001),
        ("DCGM_EXP_CLOCK_EVENTS_COUNT", 9002),
        ("DCGM_EXP_GPU_HEALTH_STATUS", 9003),
        ("DCGM_EXP_P2P_STATUS", 9004),
        ("dcgm_sm_clock", 100),
        ("dcgm_pcie_replay_counter", 202),
        ("dcgm_nvlink_recovery_error_count_total", 439),
        ("dcgm_fi_prof_pcie_rx_bytes", 1010),
    ],
)
def test_name_resolves(name: str, fid: int) -> None:
    assert f.field_id(name) == fid


@pytest.mark.parametrize(
    "name",
    ["", "DCGM_FI_DEV_GPU_UTILL", "dcgm_fi_dev_gpu_util", "DCGM_FI_UNKNOWN",
     "DCGM_FI_MAX_FIELDS", "DCGM_FI_FIRST_NVSWITCH_FIELD_ID", " DCGM_FI_DEV_GPU_UTIL",
     "DCGM_EXP_XID_ERRORS_TOTAL"],
)
def test_unknown_names(name: str) -> None:
    assert f.field_id(name) is None


def test_legacy_1x_table_matches_the_compatibility_reference() -> None:
    expected = {
        "dcgm_sm_clock": 100, "dcgm_memory_clock": 101, "dcgm_memory_temp": 140,
        "dcgm_gpu_temp": 150, "dcgm_power_usage": 155, "dcgm_total_energy_consumption": 156,
        "dcgm_pcie_tx_throughput": 200, "dcgm_pcie_rx_throughput": 201,
        "dcgm_pcie_replay_counter": 202, "dcgm_gpu_utilization": 203,
        "dcgm_mem_copy_utilization": 204, "dcgm_enc_utilization": 206,
        "dcgm_dec_utilization": 207, "dcgm_xid_errors": 230,
        "dcgm_power_violation": 240, "dcgm_thermal_violation": 241,
        "dcgm_sync_boost_violation": 242, "dcgm_board_limit_violation": 243,
        "dcgm_low_util_violation": 244, "dcgm_reliability_violation": 245,
        "dcgm_fb_free": 251, "dcgm_fb_used": 252,
        "dcgm_ecc_sbe_volatile_total": 310, "dcgm_ecc_dbe_volatile_total": 311,
        "dcgm_ecc_sbe_aggregate_total": 312, "dcgm_ecc_dbe_aggregate_total": 313,
        "dcgm_retired_pages_sbe": 390, "dcgm_retired_pages_dbe": 391,
        "dcgm_retired_pages_pending": 392,
        "dcgm_nvlink_flit_crc_error_count_total": 409,
        "dcgm_nvlink_data_crc_error_count_total": 419,
        "dcgm_nvlink_replay_error_count_total": 429,
        "dcgm_nvlink_recovery_error_count_total": 439,
        "dcgm_nvlink_bandwidth_total": 449,
        "dcgm_fi_prof_gr_engine_active": 1001, "dcgm_fi_prof_sm_active": 1002,
        "dcgm_fi_prof_sm_occupancy": 1003, "dcgm_fi_prof_pipe_tensor_active": 1004,
        "dcgm_fi_prof_dram_active": 1005, "dcgm_fi_prof_pcie_tx_bytes": 1009,
        "dcgm_fi_prof_pcie_rx_bytes": 1010,
    }
    assert dict(f.LEGACY_1X) == expected


def test_pseudo_field_ids_are_fixed() -> None:
    assert dict(f.PSEUDO_FIELDS) == {
        "DCGM_EXP_XID_ERRORS_COUNT": 9001,
        "DCGM_EXP_CLOCK_EVENTS_COUNT": 9002,
        "DCGM_EXP_GPU_HEALTH_STATUS": 9003,
        "DCGM_EXP_P2P_STATUS": 9004,
    }
    assert all(f.is_pseudo(fid) for fid in (9001, 9002, 9003, 9004))
    assert not f.is_pseudo(230)


def test_current_names_are_one_per_id() -> None:
    counts = Counter(f.FIELDS.values())
    assert [fid for fid, n in counts.items() if n > 1] == []


def test_every_alias_and_legacy_name_points_at_a_known_field() -> None:
    known = set(f.FIELDS.values())
    assert set(f.ALIASES.values()) <= known
    assert set(f.LEGACY_1X.values()) <= known
    assert not set(f.ALIASES) & set(f.FIELDS)


def test_table_covers_the_header_ranges() -> None:
    ids = set(f.FIELDS.values())
    assert len(ids) > 650
    assert set(range(100, 103)) | set(range(310, 346)) | set(range(400, 490)) <= ids | {490}
    assert set(range(1040, 1076)) <= ids
    assert set(range(1630, 1649)) <= ids


def test_all_names_follow_the_dcgm_pattern() -> None:
    for name in f.FIELDS.keys() | f.ALIASES.keys():
        assert name.startswith("DCGM_FI_"), name
        assert name == name.upper(), name


def test_field_name_gives_the_current_name() -> None:
    assert f.field_name(150) == "DCGM_FI_DEV_GPU_TEMP_CELSIUS"
    assert f.field_name(203) == "DCGM_FI_DEV_GPU_UTIL"
    assert f.field_name(f.XID_ERRORS) == "DCGM_FI_DEV_XID_ERROR"
    assert f.field_name(9001) == "DCGM_EXP_XID_ERRORS_COUNT"
    assert f.field_name(65535) == "field 65535"
    for name, fid in f.FIELDS.items():
        assert f.field_name(fid) == name


def test_constants_match_the_table() -> None:
    assert f.field_id("DCGM_FI_DEV_XID_ERRORS") == f.XID_ERRORS == 230
    assert f.field_id("DCGM_FI_DEV_FB_TOTAL") == f.FB_TOTAL
    assert f.field_id("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS") == f.CLOCKS_EVENT_REASONS
    assert f.field_id("DCGM_FI_PROF_PCIE_RX_BYTES") == f.PROF_PCIE_RX_BYTES
    assert f.field_id("DCGM_FI_DEV_GPU_UTIL_RATIO") == f.GPU_UTIL_RATIO
    assert f.field_id("DCGM_EXP_P2P_STATUS") == f.EXP_P2P_STATUS


@pytest.mark.parametrize(
    ("typo", "hint"),
    [
        ("DCGM_FI_DEV_GPU_UTILL", "DCGM_FI_DEV_GPU_UTIL"),
        ("DCGM_FI_DEV_GPU_TMP", "DCGM_FI_DEV_GPU_TEMP"),
        ("dcgm_fi_dev_fb_used", "DCGM_FI_DEV_FB_USED"),
        ("DCGM_SM_CLOCK", "dcgm_sm_clock"),
        ("DCGM_EXP_XID_ERROR_COUNT", "DCGM_EXP_XID_ERRORS_COUNT"),
    ],
)
def test_suggest(typo: str, hint: str) -> None:
    assert f.suggest(typo) == hint


def test_suggest_gives_nothing_for_nonsense() -> None:
    assert f.suggest("") is None
    assert f.suggest("completely unrelated words") is None


def test_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        f.FIELDS["X"] = 1  # type: ignore[index]


def test_names_lists_everything_field_id_accepts() -> None:
    all_names = set(f.names())
    assert {"DCGM_FI_DEV_GPU_TEMP", "dcgm_gpu_temp", "DCGM_EXP_P2P_STATUS"} <= all_names
    assert all(f.field_id(name) is not None for name in all_names)
