"""Counters CSV grammar: files laid out like dcgm-exporter's, and every way they go wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpu_exporter import dcgm_fields
from gpu_exporter.counters import (
    PROM_TYPES,
    CountersError,
    CounterSpec,
    CountersReadError,
    load_counters,
    parse_counters,
)

DATA = Path(__file__).parent / "data" / "counters"
SHIPPED = Path(__file__).parents[1] / "counters"


def error_of(text: str, source: str = "test.csv") -> CountersError:
    with pytest.raises(CountersError) as info:
        parse_counters(text, source=source)
    return info.value


# --- files laid out like upstream's -------------------------------------------------------


def test_upstream_layout_padding_stray_space_comments_and_labels() -> None:
    specs = load_counters(DATA / "upstream_layout.csv")
    assert [(s.name, s.field_id, s.prom_type, s.line) for s in specs] == [
        ("DCGM_FI_DEV_SM_CLOCK", 100, "gauge", 6),
        ("DCGM_FI_DEV_MEM_CLOCK", 101, "gauge", 7),
        ("DCGM_FI_DEV_GPU_UTIL", 203, "gauge", 10),
        ("DCGM_FI_DEV_DEC_UTIL", 207, "gauge", 11),
        ("DCGM_FI_DEV_XID_ERRORS", 230, "gauge", 14),
        ("DCGM_FI_DRIVER_VERSION", 1, "label", 20),
        ("DCGM_FI_DEV_VBIOS_VERSION", 85, "label", 22),
        ("DCGM_EXP_XID_ERRORS_COUNT", 9001, "counter", 25),
    ]
    # Column padding is trimmed on both sides; the help text is otherwise verbatim.
    assert specs[0].help == "SM clock in MHz."
    assert specs[3].help == "Decoder busy share in percent."
    assert specs[5].help == "Driver version"
    assert [s.is_label for s in specs] == [False] * 5 + [True, True, False]


def test_quoted_help_with_commas_quotes_and_line_breaks() -> None:
    specs = load_counters(DATA / "quoted_help.csv")
    assert [(s.name, s.help, s.line) for s in specs] == [
        ("DCGM_FI_DEV_POWER_USAGE", "Board power, in watts.", 2),
        ("DCGM_FI_DEV_GPU_TEMP", 'Core temperature, "hot spot" excluded.', 3),
        ("DCGM_FI_DEV_FB_USED", "Used memory, MiB", 4),
        ("DCGM_FI_DEV_FB_FREE", "Free memory,\nspread over two lines", 5),
        ("DCGM_FI_DEV_FB_TOTAL", "", 7),
    ]


def test_four_fields_names_the_line_and_what_was_expected() -> None:
    with pytest.raises(CountersError) as info:
        load_counters(DATA / "four_fields.csv")
    err = info.value
    assert err.line == 5
    assert err.source == str(DATA / "four_fields.csv")
    assert str(err) == (
        f"{DATA / 'four_fields.csv'}:5: expected 3 comma-separated fields "
        "<field>, <type>, <help>; got 4 (put the help text in double quotes if it "
        "contains a comma)"
    )


def test_unknown_field_suggests_the_close_match() -> None:
    with pytest.raises(CountersError) as info:
        load_counters(DATA / "unknown_field.csv")
    assert info.value.line == 3
    assert info.value.problem == (
        "unknown DCGM field 'DCGM_FI_DEV_GPU_UTILL' (did you mean 'DCGM_FI_DEV_GPU_UTIL'?)"
    )


def test_unknown_field_far_from_anything_has_no_suggestion() -> None:
    err = error_of("NOT_A_FIELD_AT_ALL_XYZ, gauge, x\n")
    assert err.problem == "unknown DCGM field 'NOT_A_FIELD_AT_ALL_XYZ'"


def test_legacy_1x_names() -> None:
    specs = load_counters(DATA / "legacy_1x.csv")
    assert [(s.name, s.field_id) for s in specs] == [
        ("dcgm_sm_clock", 100),
        ("dcgm_gpu_temp", 150),
        ("dcgm_gpu_utilization", 203),
        ("dcgm_xid_errors", 230),
        ("dcgm_nvlink_bandwidth_total", 449),
        ("dcgm_fi_prof_pcie_tx_bytes", 1009),
    ]


def test_dcgm_4_9_names() -> None:
    specs = load_counters(DATA / "dcgm_4_9_names.csv")
    assert {s.name: s.field_id for s in specs} == {
        "DCGM_FI_DEV_SM_CLOCK_HERTZ": 1603,
        "DCGM_FI_DEV_GPU_TEMP_CELSIUS": 150,
        "DCGM_FI_DEV_BOARD_POWER_WATTS": 155,
        "DCGM_FI_DEV_GPU_ENERGY_JOULES_TOTAL": 1611,
        "DCGM_FI_DEV_GPU_UTIL_RATIO": 1613,
        "DCGM_FI_DEV_FB_USED_BYTES": 1627,
        "DCGM_FI_DEV_FB_CAPACITY_BYTES": 1625,
        "DCGM_FI_DEV_XID_ERROR": 230,
        "DCGM_FI_DEV_NVLINK_THROUGHPUT_TOTAL": 449,
        "DCGM_FI_PROF_SM_UTIL_RATIO": 1002,
        "DCGM_FI_SYSTEM_DRIVER_VERSION": 1,
    }
    assert specs[-1].prom_type == "label"


def test_indented_hash_is_data_and_the_message_says_so() -> None:
    with pytest.raises(CountersError) as info:
        load_counters(DATA / "indented_comment.csv")
    assert info.value.line == 2
    assert info.value.problem == (
        "'#' after white space does not start a comment; a comment needs '#' as the very "
        "first character of the line"
    )


def test_same_field_under_another_name_loads_once_with_a_warning_naming_both_lines() -> None:
    warnings: list[str] = []
    specs = load_counters(DATA / "duplicate_field.csv", warn=warnings.append)
    assert [(s.name, s.field_id, s.line) for s in specs] == [
        ("DCGM_FI_DEV_POWER_USAGE", 155, 1), ("DCGM_FI_DEV_GPU_TEMP", 150, 2),
    ]
    assert warnings == [
        f"{DATA / 'duplicate_field.csv'}:3: field 'DCGM_FI_DEV_BOARD_POWER_WATTS' (DCGM field "
        "155, the same as 'DCGM_FI_DEV_POWER_USAGE') is already configured on line 1; line 3 "
        "is ignored and the field is exported once, as line 1 says (as dcgm-exporter does)",
    ]


def test_same_name_twice_keeps_the_first_row_and_warns() -> None:
    warnings: list[str] = []
    specs = parse_counters("dcgm_sm_clock, gauge, a\n\ndcgm_sm_clock, counter, b\n",
                           source="x.csv", warn=warnings.append)
    assert [(s.name, s.prom_type, s.help, s.line) for s in specs] == [
        ("dcgm_sm_clock", "gauge", "a", 1)]
    assert warnings == [
        "x.csv:3: field 'dcgm_sm_clock' is already configured on line 1; line 3 is ignored "
        "and the field is exported once, as line 1 says (as dcgm-exporter does)"]


def test_duplicate_warning_goes_to_the_log_by_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="gpu_exporter.counters"):
        specs = parse_counters("DCGM_FI_DEV_GPU_TEMP,gauge,a\nDCGM_FI_DEV_GPU_TEMP,gauge,b\n",
                               source="y.csv")
    assert len(specs) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "y.csv:2: field 'DCGM_FI_DEV_GPU_TEMP' is already configured on line 1; line 2 is "
        "ignored and the field is exported once, as line 1 says (as dcgm-exporter does)"]


def test_crlf_line_ends_and_byte_order_mark() -> None:
    text = (
        "\ufeffDCGM_FI_DEV_SM_CLOCK, gauge, SM clock.\r\n# comment\r\n\r\n"
        'DCGM_FI_DEV_MEM_CLOCK, gauge, "Memory\r\nclock."\r\n'
    )
    specs = parse_counters(text, source="crlf.csv")
    assert [(s.name, s.help, s.line) for s in specs] == [
        ("DCGM_FI_DEV_SM_CLOCK", "SM clock.", 1),
        ("DCGM_FI_DEV_MEM_CLOCK", "Memory\nclock.", 4),
    ]


def test_blank_and_whitespace_only_lines_are_skipped() -> None:
    specs = parse_counters("\n   \n\t\nDCGM_FI_DEV_GPU_TEMP,gauge,t\n\n", source="x")
    assert [(s.name, s.line) for s in specs] == [("DCGM_FI_DEV_GPU_TEMP", 4)]


def test_empty_text_has_no_rows() -> None:
    assert parse_counters("", source="x") == ()
    assert parse_counters("# only comments\n\n", source="x") == ()


def test_empty_help_is_allowed() -> None:
    (spec,) = parse_counters("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS,gauge,\n", source="x")
    assert (spec.field_id, spec.help) == (112, "")


def test_every_type_is_accepted() -> None:
    names = ["DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK", "DCGM_FI_DEV_GPU_TEMP",
             "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SERIAL"]
    text = "".join(f"{n}, {t}, h\n" for n, t in zip(names, PROM_TYPES, strict=True))
    assert [s.prom_type for s in parse_counters(text, source="x")] == list(PROM_TYPES)


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("DCGM_FI_DEV_GPU_UTIL, Gauge, x\n", 1,
         "unknown Prometheus type 'Gauge'; expected one of gauge, counter, histogram, "
         "summary, label (did you mean 'gauge'?)"),
        ("DCGM_FI_DEV_GPU_UTIL, gague, x\n", 1,
         "unknown Prometheus type 'gague'; expected one of gauge, counter, histogram, "
         "summary, label"),
        ("# c\nDCGM_FI_DEV_GPU_UTIL\n", 2,
         "expected 3 comma-separated fields <field>, <type>, <help>; got 1"),
        ("DCGM_FI_DEV_GPU_UTIL, gauge\n", 1,
         "expected 3 comma-separated fields <field>, <type>, <help>; got 2"),
        (" , gauge, x\n", 1,
         "empty DCGM field name; expected 3 comma-separated fields <field>, <type>, <help>"),
        ('DCGM_FI_DEV_GPU_UTIL, gauge, "never closed\n\n', 1,
         'a quoted field is never closed (missing closing ")'),
        ('DCGM_FI_DEV_GPU_UTIL, gauge, say "hi"\n', 1,
         'a double quote inside an unquoted field; quote the whole field ("...") and write '
         'a quote inside it as ""'),
        ('DCGM_FI_DEV_GPU_UTIL, gauge, "a" b\n', 1,
         "unexpected 'b' after a closing quote; a quoted field must be followed by a comma "
         "or the end of the line"),
        ("dcgm_fi_dev_gpu_util, gauge, x\n", 1,
         "unknown DCGM field 'dcgm_fi_dev_gpu_util' (did you mean 'DCGM_FI_DEV_GPU_UTIL'?)"),
    ],
)
def test_malformed_rows(text: str, line: int, problem: str) -> None:
    err = error_of(text)
    assert (err.line, err.problem) == (line, problem)
    assert str(err) == f"test.csv:{line}: {problem}"


def test_the_first_error_wins_and_later_lines_are_not_read() -> None:
    err = error_of("DCGM_FI_DEV_SM_CLOCK, gauge, ok\nBAD_ONE, gauge, x\nBAD_TWO, gauge, y\n")
    assert err.line == 2


def test_more_than_128_rows() -> None:
    names = sorted(dcgm_fields.FIELDS, key=dcgm_fields.FIELDS.__getitem__)[:300]
    text = "".join(f"{name}, gauge, row {i}\n" for i, name in enumerate(names))
    specs = parse_counters(text, source="big.csv")
    assert len(specs) == 300
    assert [s.line for s in specs] == list(range(1, 301))
    assert specs[299].help == "row 299"


def test_counter_spec_is_frozen() -> None:
    spec = CounterSpec("DCGM_FI_DEV_GPU_TEMP", 150, "gauge", "t", 1)
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]


# --- loading files ------------------------------------------------------------------------


def test_missing_file_is_a_read_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(CountersReadError) as info:
        load_counters(path)
    assert info.value.line is None
    assert str(info.value) == f"{path}: cannot read the counters file: No such file or directory"


def test_directory_is_a_read_error(tmp_path: Path) -> None:
    with pytest.raises(CountersReadError):
        load_counters(tmp_path)


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"DCGM_FI_DEV_GPU_TEMP, gauge, ok\nDCGM_FI_DEV_SM_CLOCK, gauge, 50\xb0\n")
    with pytest.raises(CountersError) as info:
        load_counters(path)
    assert not isinstance(info.value, CountersReadError)
    assert (info.value.line, info.value.problem) == (2, "the counters file is not UTF-8 text")


# --- the shipped files --------------------------------------------------------------------

SHIPPED_FILES = sorted(SHIPPED.glob("*.csv"))
UPSTREAM_DEFAULT_ROWS = [
    ("DCGM_FI_DEV_SM_CLOCK", "gauge"),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge"),
    ("DCGM_FI_DEV_MEMORY_TEMP", "gauge"),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge"),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge"),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter"),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter"),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge"),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge"),
    ("DCGM_FI_DEV_ENC_UTIL", "gauge"),
    ("DCGM_FI_DEV_DEC_UTIL", "gauge"),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge"),
    ("DCGM_FI_DEV_FB_FREE", "gauge"),
    ("DCGM_FI_DEV_FB_USED", "gauge"),
    ("DCGM_FI_DEV_FB_RESERVED", "gauge"),
    ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "counter"),
    ("DCGM_FI_DEV_VGPU_LICENSE_STATUS", "gauge"),
    ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter"),
    ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter"),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge"),
    ("DCGM_FI_DRIVER_VERSION", "label"),
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge"),
    ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge"),
    ("DCGM_FI_PROF_DRAM_ACTIVE", "gauge"),
    ("DCGM_FI_PROF_PCIE_TX_BYTES", "gauge"),
    ("DCGM_FI_PROF_PCIE_RX_BYTES", "gauge"),
]


def test_the_three_shipped_files_are_there() -> None:
    assert [p.name for p in SHIPPED_FILES] == [
        "1.x-compatibility-metrics.csv", "dcp-metrics-included.csv", "default-counters.csv",
    ]


@pytest.mark.parametrize("path", SHIPPED_FILES, ids=lambda p: p.name)
def test_shipped_file_parses(path: Path) -> None:
    assert load_counters(path)


@pytest.mark.parametrize("path", SHIPPED_FILES, ids=lambda p: p.name)
def test_every_commented_row_of_a_shipped_file_parses(path: Path) -> None:
    rows = [
        (number, line[1:].strip())
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if re.match(r"#\s*(DCGM_|dcgm_)", line)
    ]
    assert rows, "each shipped file offers commented rows to enable"
    for number, row in rows:
        (spec,) = parse_counters(row + "\n", source=f"{path.name}:{number}")
        assert spec.name == row.split(",")[0].strip()


# --- upstream's own files, recorded unchanged (tests/data/upstream/<release>/SOURCE.md) -------

UPSTREAM = Path(__file__).parent / "data" / "upstream" / "4.5.3-4.8.2"
UPSTREAM_FILES = sorted(UPSTREAM.glob("*.csv"))


def _rows(path: Path) -> list[str]:
    """Every row line of a counters file, active or commented out, as written."""
    return [line for line in path.read_text().splitlines()
            if re.match(r"#?\s*(DCGM_|dcgm_)", line)]


def test_upstream_files_are_recorded() -> None:
    assert [p.name for p in UPSTREAM_FILES] == [p.name for p in SHIPPED_FILES]


@pytest.mark.parametrize("path", UPSTREAM_FILES, ids=lambda p: p.name)
def test_upstream_file_loads_unchanged(path: Path) -> None:
    warnings: list[str] = []
    specs = load_counters(path, warn=warnings.append)
    assert specs
    if path.name == "1.x-compatibility-metrics.csv":  # upstream lists two fields twice
        assert [w.split(": ", 1)[1].split(";")[0] for w in warnings] == [
            "field 'dcgm_fi_prof_pcie_tx_bytes' is already configured on line 18",
            "field 'dcgm_fi_prof_pcie_rx_bytes' is already configured on line 19",
        ]
        assert [w.split(": ", 1)[0] for w in warnings] == [f"{path}:65", f"{path}:66"]
        assert [(s.name, s.prom_type, s.line) for s in specs if s.field_id in {1009, 1010}] == [
            ("dcgm_fi_prof_pcie_tx_bytes", "counter", 18),
            ("dcgm_fi_prof_pcie_rx_bytes", "counter", 19),
        ]
    else:
        assert warnings == []


@pytest.mark.parametrize("name", ["dcp-metrics-included.csv", "1.x-compatibility-metrics.csv"])
def test_packaged_upstream_file_is_upstream_s_after_our_header(name: str) -> None:
    ours = (SHIPPED / name).read_text()
    upstream = (UPSTREAM / name).read_text()
    assert ours.endswith("\n\n" + upstream)
    header = ours[: -len(upstream)]
    assert all(line.startswith("#") or not line for line in header.splitlines())
    assert _rows(SHIPPED / name) == _rows(UPSTREAM / name)


# Our additions to upstream's default rows, each needed by a shipped alert rule
# (memory ratio; power against its limit). They go in default-counters.csv only.
OUR_DEFAULT_ADDITIONS = [
    "DCGM_FI_DEV_POWER_MGMT_LIMIT,         gauge,   Power management limit (W).",
    "DCGM_FI_DEV_FB_TOTAL,    gauge, Total framebuffer memory (MiB).",
]


# Rows upstream ships commented out that our default file enables: each must be listed here,
# its text unchanged but for the leading '#'. Cheap here (batched NVML fields, the same GPM
# sample pair, the event thread); the dashboard's panels use them (tests/e2e/test_e2e_defaults.py).
OUR_ENABLED_UPSTREAM_ROWS: list[str] = [
    "DCGM_FI_DEV_POWER_VIOLATION,       counter, "
    "Throttling duration due to power constraints (in ns).",
    "DCGM_FI_DEV_THERMAL_VIOLATION,     counter, "
    "Throttling duration due to thermal constraints (in ns).",
    "DCGM_EXP_CLOCK_EVENTS_COUNT, counter, reported clock events",
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL, counter, Total number of single-bit volatile ECC errors.",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL, counter, Total number of double-bit volatile ECC errors.",
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL, counter, "
    "Total number of NVLink flow-control CRC errors.",
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL, counter, "
    "Total number of NVLink data CRC errors.",
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL,   counter, Total number of NVLink retries.",
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL, counter, "
    "Total number of NVLink recovery errors.",
    "DCGM_FI_PROF_SM_ACTIVE,          gauge, "
    "The ratio of cycles an SM has at least 1 warp assigned.",
    "DCGM_FI_PROF_SM_OCCUPANCY,       gauge, The ratio of number of warps resident on an SM.",
    "DCGM_FI_PROF_PIPE_FP64_ACTIVE,   gauge, Ratio of cycles the fp64 pipes are active.",
    "DCGM_FI_PROF_PIPE_FP32_ACTIVE,   gauge, Ratio of cycles the fp32 pipes are active.",
    "DCGM_FI_PROF_PIPE_FP16_ACTIVE,   gauge, Ratio of cycles the fp16 pipes are active.",
]


def _uncommented(row: str) -> str:
    return row.removeprefix("#").lstrip()


def test_default_file_keeps_every_upstream_row_exactly_and_pins_our_additions() -> None:
    rows = _rows(SHIPPED / "default-counters.csv")
    for added in OUR_DEFAULT_ADDITIONS:
        assert added in rows
        rows.remove(added)
    upstream = _rows(UPSTREAM / "default-counters.csv")
    assert [_uncommented(r) for r in rows] == [_uncommented(r) for r in upstream]
    enabled = [_uncommented(ours) for ours, theirs in zip(rows, upstream, strict=True)
               if ours != theirs]
    assert enabled == OUR_ENABLED_UPSTREAM_ROWS
    assert all(ours.startswith("#") == theirs.startswith("#") or not ours.startswith("#")
               for ours, theirs in zip(rows, upstream, strict=True))
    specs = load_counters(SHIPPED / "default-counters.csv")
    ours_only = OUR_DEFAULT_ADDITIONS + OUR_ENABLED_UPSTREAM_ROWS
    assert [(s.name, s.prom_type) for s in specs if not any(
        a.startswith(s.name + ",") for a in ours_only)] == UPSTREAM_DEFAULT_ROWS


def test_default_file_supports_a_memory_ratio_alert() -> None:
    ids = {s.field_id for s in load_counters(SHIPPED / "default-counters.csv")}
    assert {dcgm_fields.FB_USED, dcgm_fields.FB_TOTAL} <= ids


def test_dcp_file_has_upstream_s_active_rows_which_are_the_default_ones() -> None:
    # Upstream's dcp-metrics-included.csv enables the same rows as its default file; the
    # other profiling rows are there commented out.
    dcp = [(s.name, s.prom_type) for s in load_counters(SHIPPED / "dcp-metrics-included.csv")]
    assert dcp == UPSTREAM_DEFAULT_ROWS


def test_compatibility_file_uses_only_1x_names() -> None:
    specs = load_counters(SHIPPED / "1.x-compatibility-metrics.csv", warn=lambda _: None)
    assert all(s.name in dcgm_fields.LEGACY_1X for s in specs)


# --- property tests -----------------------------------------------------------------------

CSV_ALPHABET = st.sampled_from(
    [",", '"', "#", " ", "\t", "\n", "\r", "\ufeff", "a", "Z", "_", "é", "\x00",
     "DCGM_FI_DEV_GPU_TEMP", "dcgm_sm_clock", "DCGM_EXP_P2P_STATUS", "gauge", "label"],
)


@given(st.text())
def test_any_text_gives_rows_or_a_counters_error(text: str) -> None:
    _rows_or_error(text)


@given(st.lists(CSV_ALPHABET, max_size=60).map("".join))
def test_csv_like_text_gives_rows_or_a_counters_error(text: str) -> None:
    _rows_or_error(text)


def _rows_or_error(text: str) -> None:
    try:
        specs = parse_counters(text, source="fuzz.csv")
    except CountersError as exc:
        error: CountersError | None = exc
    else:
        error = None
    if error is not None:
        assert error.line is not None
        assert error.line >= 1
        assert str(error).startswith(f"fuzz.csv:{error.line}: ")
        assert "\n" not in str(error)
        return
    assert isinstance(specs, tuple)
    assert len({s.field_id for s in specs}) == len(specs)
    assert all(dcgm_fields.field_id(s.name) == s.field_id for s in specs)


HELP = st.text(st.characters(blacklist_characters="\r", blacklist_categories=("Cs",)))


@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(dcgm_fields.FIELDS)), st.sampled_from(PROM_TYPES), HELP),
        max_size=20,
        unique_by=lambda row: dcgm_fields.FIELDS[row[0]],
    ),
)
def test_quoted_rows_round_trip(rows: list[tuple[str, str, str]]) -> None:
    text = "".join(
        f'{name}, {kind}, "{help_text.replace(chr(34), chr(34) * 2)}"\n'
        for name, kind, help_text in rows
    )
    specs = parse_counters(text, source="rt.csv")
    assert [(s.name, s.prom_type, s.help) for s in specs] == [
        (name, kind, help_text.strip()) for name, kind, help_text in rows
    ]
