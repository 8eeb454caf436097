"""The gpu-sim command: list, env, fault, calls, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gpu_exporter.simulator import cli


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpu_exporter.simulator.cli", *args],
                          capture_output=True, text=True, env=env, check=False, timeout=60)


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["a100-mig", "h100x8", "l4x2", "rtx4090", "t4x4"]
    assert "H100" in lines[1]


def test_env_output_makes_an_unmodified_program_see_the_profile(tmp_path: Path) -> None:
    proc = _run("env", "t4x4", "--seed", "2", "--state-dir", str(tmp_path / "s"))
    assert proc.returncode == 0, proc.stderr
    script = (f"eval \"$({sys.executable} -m gpu_exporter.simulator.cli env t4x4 --seed 2 "
              f"--state-dir {tmp_path / 's'})\"\n"
              f"{sys.executable} -c 'import pynvml as N; N.nvmlInit(); "
              "h = N.nvmlDeviceGetHandleByIndex(0); "
              "print(N.nvmlDeviceGetCount(), N.nvmlDeviceGetName(h))'")
    env = {k: v for k, v in os.environ.items() if k not in {"GPU_SIM_DIR", "LD_LIBRARY_PATH"}}
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                         check=True, timeout=60).stdout
    assert out.strip() == "4 Tesla T4"
    assert proc.stdout.splitlines()[1] == f"export GPU_SIM_DIR={tmp_path / 's'}"


@pytest.mark.parametrize(("args", "message"), [
    (["env", "h200"], "unknown profile 'h200'; available profiles: a100-mig, h100x8"),
    (["env", "t4x4", "--seed", "x"], "invalid non-negative integer 'x'"),
    (["fault", "xid", "0", "79"], "--state-dir is required"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_errors_are_one_line_with_exit_code_2(args: list[str], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GPU_SIM_DIR"}
    proc = _run(*args, env=env)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_profile_file_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: l4x2\ndevice_defaults:\n  power: {idle_w: lots}\n")
    proc = _run("env", str(bad))
    assert proc.returncode == 2
    assert f"{bad}:3: key 'device_defaults.power.idle_w': expected number" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_fault_commands_write_the_faults_file(tmp_path: Path, sim: Any) -> None:
    state = sim("a100-mig").session.state_dir
    commands = [
        ["lose", "1"], ["restore", "1"], ["lose", "2"],
        ["xid", "0", "79", "--gi", "7", "--ci", "0"],
        ["ecc", "3", "--sbe", "2"], ["unsupported", "all", "field:82"],
        ["latency", "nvmlDeviceGetName", "0.25", "--index", "4"], ["hang", "nvmlDeviceGetUUID"],
        ["mig", "5", "3g.40gb", "3g.40gb"], ["mig", "0"],
        ["error", "999", "nvmlDeviceGetSerial", "--index", "6"], ["error", "4", "field:138"],
    ]
    for c in commands:
        proc = _run("fault", c[0], "--state-dir", str(state), *c[1:])
        assert proc.returncode == 0, (c, proc.stderr)
    faults = (state / "faults").read_text().splitlines()
    assert "lost 2" in faults
    assert "lost 1" not in faults
    assert "xid 0 79 7 0 1" in faults
    assert "ecc 3 2 0" in faults
    assert "unsupported -1 field:82" in faults
    assert "latency 4 nvmlDeviceGetName 0.25" in faults
    assert "hang -1 nvmlDeviceGetUUID" in faults
    assert "mig 5 1" in faults
    assert "mig 0 0" in faults
    assert "error 6 999 nvmlDeviceGetSerial" in faults
    assert "error -1 4 field:138" in faults
    assert sum(line.startswith("migdev 5 3g.40gb") for line in faults) == 2
    bad = _run("fault", "mig", "5", "8g.80gb", "--state-dir", str(state))
    assert bad.returncode == 2
    assert "unknown MIG profile '8g.80gb'" in bad.stderr
    assert _run("fault", "clear", "--state-dir", str(state)).returncode == 0
    assert (state / "faults").read_text().strip() == ""


def test_calls(sim: Any) -> None:
    runner = sim("l4x2")
    runner.run("N.nvmlInit(); [N.nvmlDeviceGetCount() for _ in range(3)]; out(0)")
    proc = _run("calls", "--json", "--state-dir", str(runner.session.state_dir))
    counts = json.loads(proc.stdout)
    assert counts["nvmlDeviceGetCount_v2"] == 3
    text = _run("calls", "--state-dir", str(runner.session.state_dir)).stdout
    assert "         3 nvmlDeviceGetCount_v2" in text.splitlines()


def test_fault_with_an_unknown_function_exits_2_naming_the_closest(tmp_path: Path) -> None:
    state = tmp_path / "s"
    assert _run("env", "h100x8", "--state-dir", str(state)).returncode == 0
    for args in (["unsupported", "0", "nvmlDeviceGetPowerUsag"],
                 ["error", "999", "nvmlDeviceGetPowerUsag"],
                 ["latency", "nvmlDeviceGetPowerUsag", "0.1"],
                 ["hang", "nvmlDeviceGetPowerUsag"]):
        proc = _run("fault", *args, "--state-dir", str(state))
        assert proc.returncode == 2, args
        assert len(proc.stderr.strip().splitlines()) == 1
        assert "'nvmlDeviceGetPowerUsag' is not an NVML function" in proc.stderr
        assert "closest: nvmlDeviceGetPowerUsage" in proc.stderr
    assert not (state / "faults").exists()  # nothing was injected
    ok = _run("fault", "latency", "nvmlDeviceGetPowerUsage", "0.1", "--state-dir", str(state))
    assert ok.returncode == 0, ok.stderr
    assert _run("fault", "latency", "*", "0.1", "--state-dir", str(state)).returncode == 0


def test_env_without_state_dir_reuses_one_directory(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if k != "GPU_SIM_DIR"}, "TMPDIR": str(tmp_path)}
    first = _run("env", "t4x4", "--seed", "3", env=env)
    second = _run("env", "t4x4", "--seed", "3", env=env)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout
    state = Path(first.stdout.splitlines()[1].split("=", 1)[1])
    assert state == tmp_path / f"gpu-sim-{os.getuid()}" / "t4x4-seed3"
    assert (state.parent.stat().st_mode & 0o777) == 0o700
    other = _run("env", "l4x2", env=env)
    assert other.returncode == 0, other.stderr
    assert sorted(p.name for p in state.parent.iterdir()) == ["l4x2-seed0", "t4x4-seed3"]
    assert [p.name for p in tmp_path.iterdir()] == [f"gpu-sim-{os.getuid()}"]


def test_another_profiles_state_is_refused_not_rewritten(tmp_path: Path) -> None:
    state = tmp_path / "s"
    assert _run("env", "a100-mig", "--state-dir", str(state)).returncode == 0
    before = (state / "config").read_text()
    for args in (["h100x8"], ["a100-mig", "--seed", "1"]):
        proc = _run("env", *args, "--state-dir", str(state))
        assert proc.returncode == 2
        assert "holds the simulator state of profile 'a100-mig' (seed 0)" in proc.stderr
        assert (state / "config").read_text() == before
    assert _run("env", "a100-mig", "--state-dir", str(state)).returncode == 0  # same: reused
    # the exporter's --simulate refuses the same way (exit 2, one line)
    env = {**os.environ, "GPU_SIM_DIR": str(state)}
    proc = subprocess.run([sys.executable, "-m", "gpu_exporter.cli", "--simulate", "h100x8",
                           "-a", "127.0.0.1:0"], capture_output=True, text=True, env=env,
                          check=False, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "refusing to replace it with 'h100x8'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (state / "config").read_text() == before
