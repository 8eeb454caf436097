"""dcgm-exporter 4.6+'s YAML configuration file: pure parsing, precedence, the real exporter."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.exporter import run_exporter

from gpu_exporter.cli import apply_config_file, build_config, build_parser, explicit, main, resolve
from gpu_exporter.configfile import (
    ConfigFileError,
    FileSettings,
    load_config_file,
    parse_config_file,
    parse_duration_ms,
)
from gpu_exporter.counters import parse_counters


@pytest.mark.parametrize(
    ("text", "ms"),
    [("30s", 30000), ("500ms", 500), ("1m30s", 90000), ("1.5s", 1500), ("2h", 7_200_000),
     ("1000000us", 1000), ("0.001s", 1)],
)
def test_go_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "30", "0s", "-1s", "1.5ms", "10 s", "1d", "s", "500us"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):  # the message is checked through the CLI
        parse_duration_ms(text)


def test_file_interval_and_counters_file() -> None:
    settings = parse_config_file(
        "version: 1\nmetrics:\n  file: /etc/dcgm-exporter/dcp-metrics-included.csv\n"
        "collection:\n  interval: 10s\n")
    assert settings == FileSettings("/etc/dcgm-exporter/dcp-metrics-included.csv", None, 10000)


def test_version_2_all_fields_collection_sets_the_interval() -> None:
    settings = parse_config_file(
        "version: 2\n"
        "metrics: {file: /etc/dcgm-exporter/default-counters.csv, enableExporterMetrics: true}\n"
        "collections:\n"
        "  - name: all\n"
        "    every: 15s\n"
        "    metrics: {include: ['*']}\n"
        "    sources: {dcgm: {watch: {maxKeepAge: 5m}}}\n"
        "sources: {dcgm: {watch: {maxKeepAge: 0s, maxKeepSamples: 100},"
        " detectBindUnbind: {enabled: true, pollInterval: 1s}}}\n"
        "server: {maxConcurrentScrapes: 8}\n")
    assert settings == FileSettings(
        "/etc/dcgm-exporter/default-counters.csv", None, 15000,
        ("metrics.enableExporterMetrics", "sources.dcgm.detectBindUnbind", "sources.dcgm.watch",
         "server.maxConcurrentScrapes", "collections[0].sources.dcgm.watch"))


def test_version_1_dcgm_only_keys_are_validated_without_effect() -> None:
    settings = parse_config_file(
        "version: 1\n"
        "collection: {interval: 2s, retention: {maxAge: 10m, maxSamples: 0}}\n"
        "server: {maxConcurrentScrapes: 16}\n")
    assert settings == FileSettings(None, None, 2000,
                                    ("server.maxConcurrentScrapes", "collection.retention"))


def test_inline_fields_become_counters_rows() -> None:
    settings = parse_config_file(
        "version: 1\nmetrics:\n  fields:\n"
        "    - {name: DCGM_FI_DEV_GPU_TEMP, prometheusType: gauge, help: 'Temperature, in C.'}\n"
        "    - name: DCGM_FI_DRIVER_VERSION\n      prometheusType: label\n      help: Driver\n")
    assert settings.counters_csv is not None
    specs = parse_counters(settings.counters_csv, source="inline")
    assert [(s.name, s.prom_type, s.help) for s in specs] == [
        ("DCGM_FI_DEV_GPU_TEMP", "gauge", "Temperature, in C."),
        ("DCGM_FI_DRIVER_VERSION", "label", "Driver"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 3\n", "version: must be 1 or 2, got 3"),
        ("metrics: {file: a.csv}\n", "version: must be 1 or 2, got None"),
        ("version: true\n", "version: must be 1 or 2, got True"),
        ("version: 2\ncollection: {interval: 5s}\n", "(top level).collection: unknown key"),
        ("version: 1\ncollections: []\n", "(top level).collections: unknown key"),
        ("version: 2\ncollections:\n  - {name: a, every: 5s, metrics: {include: [DCGM_FI_*]}}\n",
         "collections[0].metrics.include: only the all-fields collection"),
        ("version: 2\ncollections:\n  - {name: a, every: 0s, metrics: {include: ['*']}}\n",
         "collections[0].every: '0s': must be greater than 0"),
        ("version: 2\nsources: {dcgm: {watch: {maxKeepSamples: -1}}}\n",
         "sources.dcgm.watch.maxKeepSamples: expected an integer of at least 0"),
        ("version: 1\nsources: {dcgm: {watch: {}}}\n", "sources.dcgm.watch: unknown key"),
        ("version: 1\nserver: {maxConcurrentScrapes: 0}\n",
         "server.maxConcurrentScrapes: expected an integer of at least 1"),
        ("version: 1\ncollection: {retention: {maxAge: soon}}\n",
         "collection.retention.maxAge: 'soon' is not a duration"),
        ("version: 1\nmetrics: {enableExporterMetrics: yes please}\n",
         "metrics.enableExporterMetrics: expected true or false"),
        ("version: 1\nintervall: 5s\n", "(top level).intervall: unknown key"),
        ("version: 1\nmetrics: {file: a.csv, fields: []}\n", "exactly one of 'file' or 'fields'"),
        ("version: 1\nmetrics: {}\n", "give 'file', 'fields' or 'enableExporterMetrics'"),
        ("version: 1\nmetrics:\n  fields:\n    - {name: A, prometheusType: gauge}\n",
         "metrics.fields[0].help: expected a non-empty string"),
        ("version: 1\nmetrics:\n  fields:\n    - {name: A, prometheusType: gauge, help: h, x: 1}\n",
         "metrics.fields[0].x: unknown key"),
        ("version: 1\nmetrics:\n  fields:\n    - {name: A, prometheusType: gauge, help: h}\n"
         "    - {name: A, prometheusType: gauge, help: h}\n",
         "metrics.fields[1].name: 'A' repeats metrics.fields[0]"),
        ("version: 1\ncollection: {interval: fast}\n", "collection.interval: 'fast' is not"),
        ("version: 1\ncollection:\n  watchGroups:\n"
         "    - {name: slow, interval: 60s, fields: [X]}\n",
         "collection.watchGroups: per-field collection intervals are not supported yet"),
        ("version: 1\nversion: 1\n", "line 2: duplicate key 'version' (first at line 1)"),
        ("version: 1\n---\nversion: 1\n", "exactly one YAML document"),
        ("version: [1\n", "not valid YAML"),
        ("- 1\n", "(top level): expected a mapping, got list"),
    ],
)
def test_bad_files_are_refused_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigFileError) as info:
        parse_config_file(text)
    assert message in str(info.value)


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    with pytest.raises(ConfigFileError, match=f"{path}: cannot read"):
        load_config_file(path)
    path.write_text("version: 3\n")
    with pytest.raises(ConfigFileError, match=f"{path}: version: must be 1"):
        load_config_file(path)


def _config_with_file(argv: list[str], env: dict[str, str], settings: FileSettings
                      ) -> tuple[float, Path, str | None]:
    namespace = build_parser().parse_args(argv)
    values, inline = apply_config_file(resolve(namespace, env), explicit(namespace, env),
                                       settings)
    config = build_config(values, env, inline_counters=inline)
    return config.collect_interval, config.counters_path, config.counters_inline


def test_explicit_flags_and_env_vars_win_over_the_file() -> None:
    settings = FileSettings("/from/file.csv", None, 10000)
    base = ["--config-file", "/etc/c.yaml"]
    assert _config_with_file(base, {}, settings) == (10.0, Path("/from/file.csv"), None)
    assert _config_with_file([*base, "-c", "2000"], {}, settings)[0] == 2.0
    assert _config_with_file(base, {"DCGM_EXPORTER_INTERVAL": "3000"}, settings)[0] == 3.0
    assert _config_with_file([*base, "-f", "/x.csv"], {}, settings)[1] == Path("/x.csv")
    inline = FileSettings(None, "DCGM_FI_DEV_GPU_TEMP,gauge,t\n", None)
    assert _config_with_file(base, {}, inline) == (
        30.0, Path("/etc/c.yaml"), "DCGM_FI_DEV_GPU_TEMP,gauge,t\n")
    # -f given explicitly replaces the inline rows, as it replaces metrics.file
    assert _config_with_file([*base, "-f", "/x.csv"], {}, inline)[1:] == (Path("/x.csv"), None)


def test_a_bad_file_exits_2_naming_flag_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("DCGM_EXPORTER_CONFIG_FILE", raising=False)
    path = tmp_path / "config.yaml"
    path.write_text("version: 1\ncollection:\n  interval: 0s\n")
    with pytest.raises(SystemExit) as info:
        main(["--config-file", str(path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"--config-file: {path}: collection.interval: '0s': must be greater than 0" in err
    assert "Traceback" not in err


def test_exporter_runs_from_a_config_file_with_inline_fields(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "version: 1\n"
        "metrics:\n"
        "  fields:\n"
        "    - {name: DCGM_FI_DEV_GPU_TEMP, prometheusType: gauge, help: GPU temperature.}\n"
        "    - {name: DCGM_FI_DEV_POWER_USAGE, prometheusType: gauge, help: Power draw.}\n"
        "collection:\n"
        "  interval: 250ms\n")
    with run_exporter(["--simulate", "t4x4"],
                      env={"GPU_SIM_DIR": str(tmp_path / "sim"),
                           "DCGM_EXPORTER_CONFIG_FILE": str(config)}) as exporter:
        text = exporter.metrics()
        assert "# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature." in text
        assert "DCGM_FI_DEV_POWER_USAGE{" in text
        assert "DCGM_FI_DEV_SM_CLOCK{" not in text  # only the inline rows
        assert "gpu_exporter_collect_interval_seconds 0.25" in text
        assert "reloaded" not in exporter.log


def test_exporter_runs_from_a_version_2_file_and_says_what_has_no_effect(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "version: 2\n"
        "collections:\n"
        "  - {name: all, every: 250ms, metrics: {include: ['*']}}\n"
        "server: {maxConcurrentScrapes: 4}\n")
    with run_exporter(["--simulate", "t4x4", "--config-file", str(config)],
                      env={"GPU_SIM_DIR": str(tmp_path / "sim")}) as exporter:
        text = exporter.metrics()
        assert "gpu_exporter_collect_interval_seconds 0.25" in text
        assert "DCGM_FI_DEV_GPU_TEMP{" in text  # the default counters file
        assert "--config-file: server.maxConcurrentScrapes accepted for compatibility" in (
            exporter.log)


# --- property tests: user input gives settings or one clear error, never a traceback -------

YAML_PIECES = st.sampled_from([
    "version: 1\n", "version: 2\n", "version: 3\n", "metrics:\n", "  file: a.csv\n",
    "  fields:\n", "    - {name: DCGM_FI_DEV_GPU_TEMP, prometheusType: gauge, help: t}\n",
    "  enableExporterMetrics: true\n", "collection:\n", "  interval: 5s\n", "  interval: x\n",
    "collections:\n", "  - {name: a, every: 1s, metrics: {include: ['*']}}\n",
    "server: {maxConcurrentScrapes: 2}\n", "sources: {dcgm: {watch: {maxKeepAge: 0s}}}\n",
    "- item\n", ": :\n", "[\n", "\t", "&a b: *a\n", "!!python/object:os.system x\n",
])


@given(st.text())
def test_any_text_gives_settings_or_a_config_file_error(text: str) -> None:
    _settings_or_error(text)


@given(st.lists(YAML_PIECES, max_size=12).map("".join))
def test_yaml_like_text_gives_settings_or_a_config_file_error(text: str) -> None:
    _settings_or_error(text)


@given(st.text(alphabet="0123456789.hmsunµ-+ ", max_size=12))
def test_any_duration_text_gives_milliseconds_or_a_value_error(text: str) -> None:
    try:
        ms = parse_duration_ms(text, allow_zero=True)
    except ValueError:
        return
    assert ms >= 0


def _settings_or_error(text: str) -> None:
    try:
        settings = parse_config_file(text)
    except ConfigFileError as exc:
        error: ConfigFileError | None = exc
    else:
        error = None
    if error is not None:
        assert str(error)
        assert "\n" not in str(error)
        return
    assert isinstance(settings, FileSettings)
    if settings.counters_csv is not None:
        assert parse_counters(settings.counters_csv, source="inline")
