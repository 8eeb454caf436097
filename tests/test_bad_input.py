"""Bad input on the command line, in the environment and in the files it names.

Every case ends in exit 2 with one message naming the flag, variable, file or key: never a
traceback, never a hang. The property tests run the real command-line parsing in-process
(:func:`gpu_exporter.cli.parse_command_line` and :func:`gpu_exporter.server.read_counters`,
the first things ``gpu-exporter`` does); a few cases run the console script itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpu_exporter import cli
from gpu_exporter.errors import BadInputError
from gpu_exporter.inputfile import MAX_INPUT_BYTES, InputFileError, read_regular_file
from gpu_exporter.server import COUNTERS_CHECK_S, Runtime, maybe_reload, read_counters
from gpu_exporter.simulator.profiles import SimulatorError, load_profile

EXPORTER = [str(Path(sys.executable).with_name("gpu-exporter"))]
ROW = "DCGM_FI_DEV_GPU_TEMP, gauge, temperature\n"


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def _parse(argv: list[str], env: dict[str, str] | None = None) -> str | None:
    """Run the CLI's parsing in-process; the error message, or None when accepted."""
    done: list[str | None] = []
    exits: list[SystemExit] = []

    def work() -> None:
        try:
            cli.parse_command_line(argv, env or {"NODE_NAME": "n"})
        except cli.UsageError as exc:
            done.append(str(exc))
        except SystemExit as exc:  # argparse's own usage error: raised again in the caller
            exits.append(exc)
        else:
            done.append(None)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), f"parsing {argv} hangs"
    if exits:
        raise exits[0]
    return done[0]


def _counters(path: Path) -> str | None:
    """``read_counters`` as the exporter runs it first; the message, or None when accepted."""
    done: list[str | None] = []

    def work() -> None:
        try:
            read_counters(path)
        except BadInputError as exc:
            done.append(str(exc))
        else:
            done.append(None)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), f"reading {path} hangs"
    return done[0]


# --- special files ----------------------------------------------------------------------------


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/urandom", "fifo"])
def test_special_files_are_refused_without_blocking(special: str, fifo: Path) -> None:
    path = fifo if special == "fifo" else Path(special)
    kind = "a FIFO" if special == "fifo" else "a character device"
    assert _counters(path) == f"{path}: cannot read the counters file: not a regular file ({kind})"
    assert _parse(["--config-file", str(path)]) == (
        f"--config-file: {path}: cannot read: not a regular file ({kind})")
    with pytest.raises(SimulatorError, match=f"^{path}: cannot read profile: not a regular"):
        load_profile(path)


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    big.write_bytes(b"#" * (MAX_INPUT_BYTES + 1))
    assert _counters(big) == (
        f"{big}: cannot read the counters file: larger than {MAX_INPUT_BYTES} bytes")
    with pytest.raises(InputFileError):
        read_regular_file(big)
    big.write_bytes(b"#" * MAX_INPUT_BYTES)
    assert _counters(big) is None  # the limit itself is fine


def test_cr_only_line_endings_are_refused_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "mac.csv"
    path.write_bytes(b"# comment\r" + ROW.encode().replace(b"\n", b"\r"))
    assert _counters(path) == (
        f"{path}:1: carriage return without a line feed (CR-only line endings?); save the "
        "file with LF or CRLF line endings")
    path.write_bytes(b"# comment\r\n" + ROW.encode().replace(b"\n", b"\r\n"))
    assert _counters(path) is None  # CRLF reads as upstream does


@pytest.mark.parametrize("kind", ["config", "profile"])
def test_deeply_nested_yaml_is_refused_naming_the_line(kind: str, tmp_path: Path) -> None:
    deep = "[" * 20_000 + "]" * 20_000
    path = tmp_path / "deep.yaml"
    if kind == "config":
        path.write_text(f"version: 1\nmetrics:\n  fields: {deep}\n")
        assert _parse(["--config-file", str(path)]) == (
            f"--config-file: {path}: line 3: nested deeper than 64 levels")
    else:
        path.write_text(f"base: h100x8\ndevices: {deep}\n")
        with pytest.raises(SimulatorError, match=f"^{path}:2: nested deeper than 64 levels$"):
            load_profile(path)


def test_profile_strings_with_control_characters_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "nl.yaml"
    path.write_text('base: h100x8\ndevices:\n  - name: "NVIDIA\\nH100"\n')
    with pytest.raises(SimulatorError, match=r"nl.yaml:3: key 'devices\[0\].name': control"):
        load_profile(path)


# --- flags ------------------------------------------------------------------------------------

INT_FLAGS = [f.names[0] for f in cli.FLAGS if f.kind == "int"]


@pytest.mark.parametrize("flag", INT_FLAGS)
def test_every_integer_flag_is_bounded_naming_it(flag: str) -> None:
    for value in ("9" * 400, "9" * 20, "-" + "9" * 30, "1e5", "0x10", "+-1", "1_000"):
        message = _parse([flag, value])
        if flag in {"--dump-retention"}:  # 'later' flags: any value away from the default
            assert message is not None
            assert message.startswith(f"{flag}: not supported yet")
            continue
        assert message is not None, (flag, value)
        assert message.startswith(f"{flag}: "), message
        assert len(message) < 200, message


def test_collect_interval_has_a_documented_maximum() -> None:
    assert _parse(["-c", str(cli.MAX_COLLECT_INTERVAL_MS)]) is None
    assert _parse(["-c", str(cli.MAX_COLLECT_INTERVAL_MS + 1)]) == (
        f"--collect-interval: must be at most {cli.MAX_COLLECT_INTERVAL_MS}, "
        f"got {cli.MAX_COLLECT_INTERVAL_MS + 1}")
    assert "at most 3600000" in (_parse(["-c", "9" * 20]) or "")


def test_non_utf8_node_name_is_refused_naming_it() -> None:
    node = os.fsdecode(b"node-\xff")
    message = _parse([], {"NODE_NAME": node})
    assert message is not None
    assert message.startswith("NODE_NAME: not valid UTF-8 text")


def test_non_utf8_flag_values_are_refused_naming_the_flag() -> None:
    bad = os.fsdecode(b"\xfe\xff")
    assert (_parse(["-d", bad]) or "").startswith("--devices (or DCGM_EXPORTER_DEVICES_STR): "
                                                  "not valid UTF-8 text")
    assert (_parse([], {"NODE_NAME": "n", "DCGM_EXPORTER_INTERVAL": bad}) or "").startswith(
        "--collect-interval (or DCGM_EXPORTER_INTERVAL): not valid UTF-8 text")


@pytest.mark.parametrize("flag", ["--config-file", "--web-config-file"])
def test_a_path_with_control_characters_is_named_on_one_line(flag: str) -> None:
    # Found by the property test below: the message echoed the newline of the path.
    message = _parse([flag, "a\nb\t\x1b"])
    assert message is not None
    assert message.startswith(f"{flag}: ")
    assert "a\\nb\\t\\x1b: cannot read" in message
    assert message.isprintable()


def test_the_cli_prints_every_error_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--config-file", "x\ny"])
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("gpu-exporter: --config-file: x\\ny: cannot read")


FLAG_VALUES = st.one_of(
    st.text(max_size=30),
    st.binary(max_size=30).map(os.fsdecode),
    st.integers().map(str),
    st.integers(min_value=0, max_value=400).map(lambda n: "9" * n),
    st.sampled_from(["/dev/zero", "/dev/urandom", "FIFO", "true", "false", "-1", "1e9",
                     ":0", "[::]:1", "g:0,99", "i", "5s", "99999999999h"]),
)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flag=st.sampled_from([f for f in cli.FLAGS if f.names[0] != "--simulate"]),
       value=FLAG_VALUES, via_env=st.booleans())
def test_any_flag_value_is_accepted_or_refused_naming_the_flag(
    flag: cli.Flag, value: str, via_env: bool, fifo: Path,
) -> None:
    value = str(fifo) if value == "FIFO" else value
    if "\x00" in value:  # neither argv nor environ can hold NUL
        value = value.replace("\x00", "")
    env = {"NODE_NAME": "n"}
    argv: list[str] = []
    if via_env and flag.env:
        env[flag.env] = value
    else:
        argv = [flag.names[0], value]
    try:
        message = _parse(argv, env)
    except SystemExit as exc:  # argparse: a value that looks like a flag (usage on stderr)
        code = exc.code
        message = "argparse"
    else:
        code = 2
    assert code == 2
    if message in {None, "argparse"}:
        return
    assert message is not None
    # the flag itself, or the one it is checked against (--pod-resources-max-stale must be
    # at least --pod-resources-refresh-interval)
    names = {f.names[0] for f in cli.FLAGS} | {f"{f.names[0]} (or {f.env})" for f in cli.FLAGS}
    assert message.split(": ", 1)[0] in names, message
    assert "\n" not in message
    assert "Traceback" not in message


# --- counters files ---------------------------------------------------------------------------

COUNTERS_BYTES = st.one_of(
    st.binary(max_size=200),
    st.lists(st.sampled_from([ROW.encode(), b"\r", b"\n", b"\r\n", b"\xff", b"\xc3", b"#",
                              b",", b'"', b"\x00", b"\xef\xbb\xbf", b"gauge", b" "]),
             max_size=30).map(b"".join),
)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=COUNTERS_BYTES)
def test_any_counters_file_is_read_or_refused_naming_it(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    message = _counters(path)
    if message is not None:
        assert message.startswith(f"{path}"), message
        assert "\n" not in message


# --- running: the counters file changes under the exporter ------------------------------------


def _runtime(path: Path) -> Runtime:
    return Runtime(counters=read_counters(path))


@pytest.mark.parametrize("edit", [b"", b"# all rows gone\n", b"# c\r" + ROW.encode()[:-1] + b"\r",
                                  b"\xff\xfe", "fifo"])
def test_a_bad_edit_keeps_the_last_good_file_and_says_why(
    edit: bytes | str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "counters.csv"
    path.write_text(ROW)
    runtime = _runtime(path)
    if edit == "fifo":
        path.unlink()
        os.mkfifo(path)
    else:
        assert isinstance(edit, bytes)
        path.write_bytes(edit)
        os.utime(path, ns=(1, 1))  # a new stamp even on a coarse clock
    assert maybe_reload(runtime) is False
    assert [s.name for s in runtime.counters.specs] == ["DCGM_FI_DEV_GPU_TEMP"]
    assert runtime.failed_stamp is not None  # gpu_exporter_counters_last_reload_successful 0
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"counters file not reloaded, keeping the last good one: {path}")
    assert maybe_reload(runtime) is False  # said once per bad edit, not once per cycle
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1
    if edit == "fifo":
        path.unlink()
    path.write_text(ROW + "DCGM_FI_DEV_POWER_USAGE, gauge, power\n")
    assert maybe_reload(runtime) is True
    assert runtime.failed_stamp is None
    assert len(runtime.counters.specs) == 2


def test_a_file_empty_from_the_start_still_loads_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "counters.csv"
    path.write_text("")
    runtime = _runtime(path)
    assert runtime.counters.specs == ()
    path.write_text(ROW)
    assert maybe_reload(runtime) is True


def test_the_loop_looks_at_the_file_at_most_every_few_seconds_or_on_sighup(
    tmp_path: Path,
) -> None:
    path = tmp_path / "counters.csv"
    path.write_text(ROW)
    runtime = _runtime(path)
    assert maybe_reload(runtime, 100.0) is False  # looked: unchanged
    path.write_text(ROW + "DCGM_FI_DEV_POWER_USAGE, gauge, power\n")
    os.utime(path, ns=(1, 1))
    assert maybe_reload(runtime, 100.0 + COUNTERS_CHECK_S - 0.1) is False  # not looked at
    assert len(runtime.counters.specs) == 1
    assert maybe_reload(runtime, 100.0 + COUNTERS_CHECK_S) is True
    assert len(runtime.counters.specs) == 2
    path.write_text(ROW)
    os.utime(path, ns=(2, 2))
    runtime.reload_requested = True  # SIGHUP: at once, whenever the last look was
    assert maybe_reload(runtime, 100.0 + COUNTERS_CHECK_S + 0.1) is True
    assert len(runtime.counters.specs) == 1


# --- the console script -----------------------------------------------------------------------


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DCGM_", "GPU_"))}
    environment["NODE_NAME"] = "n"
    environment.update(env or {})
    return subprocess.run([*EXPORTER, "--simulate", "t4x4", "-a", "127.0.0.1:0", *args],
                          capture_output=True, text=True, timeout=60, env=environment,
                          check=False)


@pytest.mark.parametrize("case", ["fifo", "zero", "non-utf8", "digits", "node"])
def test_the_console_script_exits_2_with_one_line(case: str, fifo: Path, tmp_path: Path) -> None:
    env: dict[str, str] = {}
    if case == "fifo":
        args, expect = ["-f", str(fifo)], f"{fifo}: cannot read the counters file: not a regular"
    elif case == "zero":
        args, expect = ["-f", "/dev/zero"], "/dev/zero: cannot read the counters file"
    elif case == "non-utf8":
        bad = tmp_path / "latin1.csv"
        bad.write_bytes(ROW.encode() + b"DCGM_FI_DEV_SM_CLOCK, gauge, 50\xb0\n")
        args, expect = ["-f", str(bad)], f"{bad}:2: the counters file is not UTF-8 text"
    elif case == "digits":
        args = ["--clock-events-count-window-size", "9" * 400]
        expect = "--clock-events-count-window-size: expected an integer of at most"
    else:
        args, expect = [], "NODE_NAME: not valid UTF-8 text"
        env = {"NODE_NAME": os.fsdecode(b"node-\xff")}
    result = _run(args, env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gpu-exporter: " + expect), result.stderr
