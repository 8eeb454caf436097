"""The field catalog: coverage of upstream's counters rows, conversions, levels (pure)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpu_exporter import catalog, dcgm_fields
from gpu_exporter.catalog import CATALOG, lookup
from gpu_exporter.collectors.registry import COLLECTORS

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CSV = ROOT / "counters" / "default-counters.csv"
_ROW = re.compile(r"^#?\s*((?:DCGM_FI|DCGM_EXP)_[A-Z0-9_]+)\s*,")


def _rows(path: Path, *, commented: bool) -> list[str]:
    """Column-1 names of active rows, or of commented-out rows."""
    names = []
    for line in path.read_text().splitlines():
        if line.startswith("#") != commented:
            continue
        match = _ROW.match(line)
        if match:
            names.append(match.group(1))
    return names


def test_default_file_has_active_and_commented_rows() -> None:
    active = len(_rows(DEFAULT_CSV, commented=False))
    commented = len(_rows(DEFAULT_CSV, commented=True))
    # 14 of upstream's commented rows are active here (tests/test_counters.py pins which)
    assert active >= 39
    assert commented >= 20
    assert active + commented >= 55


@pytest.mark.parametrize("commented", [False, True], ids=["active", "opt-in"])
def test_every_default_row_has_a_source(commented: bool) -> None:
    missing = []
    for name in _rows(DEFAULT_CSV, commented=commented):
        fid = dcgm_fields.field_id(name)
        assert fid is not None, name
        if fid not in CATALOG:
            missing.append(name)
    assert missing == []


def test_fields_without_an_nvml_source() -> None:
    # process accounting (205) and C2C bandwidth (1629) have no NVML path here
    assert catalog.unsourced([155, 9003, 9004, 526, 1004, 205, 1629]) == frozenset({205, 1629})
    assert catalog.has_source(155)
    assert not catalog.has_source(205)
    assert lookup(205) is None


def test_catalog_names_resolve_to_their_ids() -> None:
    for fid, spec in CATALOG.items():
        assert dcgm_fields.field_id(spec.name) == fid, spec.name


def test_extras_beyond_the_default_file() -> None:
    for fid in (250, 113, 114, 235, 236, 237, 238, *range(1001, 1017)):
        assert fid in CATALOG, fid


@pytest.mark.parametrize(
    ("fid", "level"),
    [
        (155, "device"), (156, "device"), (150, "device"), (100, "device"), (203, "device"),
        (310, "device"), (449, "device"), (252, "instance"), (250, "instance"),
        (1001, "instance"), (1009, "instance"), (1, "entity"), (230, "entity"),
    ],
)
def test_levels(fid: int, level: str) -> None:
    spec = lookup(fid)
    assert spec is not None
    assert spec.level == level


def test_batched_fields_name_their_nvml_field() -> None:
    expected = {140: 82, 156: 83, 202: 94, 310: 3, 311: 4, 312: 5, 313: 6, 390: 29, 391: 30,
                392: 31, 393: 143, 394: 142, 395: 145, 409: 38, 419: 45, 429: 52, 439: 59,
                240: 74, 245: 79}
    for fid, nvml_field in expected.items():
        spec = CATALOG[fid]
        assert spec.nvml_field == nvml_field
        assert spec.collector == "field_values"


def test_profiling_fields_map_to_gpm_metrics() -> None:
    expected = {1001: 1, 1002: 2, 1003: 3, 1004: 5, 1005: 10, 1006: 11, 1007: 12, 1008: 13,
                1009: 20, 1010: 21, 1011: 61, 1012: 60, 1013: 9, 1014: 7, 1015: 6, 1016: 4}
    assert {fid: CATALOG[fid].gpm_metric for fid in expected} == expected


@pytest.mark.parametrize(
    ("fid", "raw", "value"),
    [
        (252, 52418 * 1048576 + 1048575, 52418.0),  # MiB, truncated
        (250, 85520809984, 81559.0),
        (155, 553914, 553.914),  # mW -> W
        (156, 121941675151, 121941675151),  # mJ as is
        (1001, 87.5, 0.875),  # % -> ratio
        (1009, 2.5, 2.5 * 1048576),  # MiB/s -> B/s
        (150, 58, 58),
        (150, 255, None),  # garbage temperature dropped
        (140, 201, None),
        (203, 4294967295, None),  # utilisation spike dropped
        (203, 100, 100),
        (240, 123456789, 123456789),  # ns as is
    ],
)
def test_conversions(fid: int, raw: float, value: float | None) -> None:
    converted = CATALOG[fid].convert(raw)
    if value is None:
        assert converted is None
    else:
        assert converted == pytest.approx(value)


def test_field_name_fallbacks() -> None:
    assert catalog.field_name(155) == "DCGM_FI_DEV_POWER_USAGE"
    assert catalog.field_name(9004) == "DCGM_EXP_P2P_STATUS"
    assert catalog.field_name(205) == dcgm_fields.field_name(205)


def test_registry_and_catalog_agree() -> None:
    produced = set()
    for info in COLLECTORS.values():
        assert info.fields, info.name
        assert not produced & info.fields, info.name
        produced |= info.fields
    assert produced == set(CATALOG)


def test_base_unit_fields_of_dcgm_exporter_4_9() -> None:
    for fid, derived in catalog.DERIVED.items():
        assert dcgm_fields.field_id(derived.name) == fid, derived.name
        assert derived.base in CATALOG
        assert catalog.has_source(fid)
        assert catalog.base_of(fid) == derived.base
        assert catalog.field_name(fid) == derived.name
    assert catalog.DERIVED[1613].factor == 0.01  # GPU_UTIL_RATIO from GPU_UTIL %
    assert catalog.DERIVED[1603].factor == 1e6  # SM clock MHz -> Hz
    assert catalog.DERIVED[1627].base == 252  # FB_USED_BYTES from FB_USED (MiB)
    assert catalog.unsourced([1613, 1629]) == frozenset({1629})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(0.0, 0.0), (55.0, 55.0), (100.0, 100.0), (130.0, 130.0), (2.0**31 - 1, 2.0**31 - 1),
     (2.0**31, None), (4294967295.0, None), (-1.0, None)],
)
def test_fan_speed_may_exceed_100_percent(raw: float, expected: float | None) -> None:
    # nvml.h: the reported speed may exceed 100 %; only an unsigned error sentinel is garbage
    assert CATALOG[191].convert(raw) == expected


def test_nvlink_base_unit_fields_are_kib_times_1024() -> None:
    from gpu_exporter.collectors.nvlink import kib_rate_to_reported

    kib_per_s = 500_000.0
    for derived in (1648, *range(1630, 1636)):
        spec = catalog.DERIVED[derived]
        assert spec.unit == "B/s"
        assert kib_rate_to_reported(kib_per_s) * spec.factor == pytest.approx(kib_per_s * 1024)
