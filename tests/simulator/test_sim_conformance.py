"""Conformance: unmodified third-party NVML clients from PyPI against every profile.

Each client is loaded the way a user (and the exporter's ``--simulate``) loads the simulator:
the environment ``gpu-sim env PROFILE`` prints (``LD_LIBRARY_PATH`` + ``GPU_SIM_DIR``). The
clients: nvitop 1.7.2 (``nvitop -1`` and a sweep over every no-argument method of its
``Device`` and ``MigDevice``), gpustat 1.1.1 (``gpustat --json`` and its Python query),
py3nvml 0.2.7 (its ``XmlDeviceQuery`` and every one-argument device query; its legacy
``nvmlDeviceGetPciInfo_v2`` call used to corrupt the heap), and the upstream pynvml project's
own tests (12.0.0) ported as data (tests/data/simulator/pynvml_upstream_cases.yaml).
nvitop-exporter is in test_sim_nvitop_exporter.py. Every NOT_SUPPORTED a client meets must be
listed with its reason in tests/data/simulator/expected_not_supported.yaml.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpu_exporter.simulator import library_path, list_profiles
from gpu_exporter.simulator.profiles import load_profile, resolve

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "simulator"
CASES = DATA / "pynvml_upstream_cases.yaml"
EXPECTED = yaml.safe_load((DATA / "expected_not_supported.yaml").read_text())
MODES = ("nvitop-api", "gpustat", "py3nvml", "pynvml-upstream")
# return codes a client meets in normal operation: SUCCESS, NOT_SUPPORTED (checked against the
# list), NOT_FOUND (end of the dense MIG index, no newer process samples), INSUFFICIENT_SIZE
# (the size query of a two-call protocol)
ROUTINE = {"0", "3", "6", "7"}


def _exe(name: str) -> str:
    exe = shutil.which(name, path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail(f"{name} is a test dependency (pip install -e '.[test]')")
    return exe


def user_env(profile: str, state: Path) -> dict[str, str]:
    """The environment after ``eval "$(gpu-sim env PROFILE --state-dir STATE)"``."""
    out = subprocess.run([_exe("gpu-sim"), "env", profile, "--state-dir", str(state)],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    env = {k: v for k, v in os.environ.items()
           if k not in {"GPU_SIM_DIR", "LD_LIBRARY_PATH", "GPU_SIM_FROZEN_TIME"}}
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.strip("'")
    return env


def _profile(profile: str) -> list[dict[str, Any]]:
    return resolve(load_profile(profile)).devices


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {}
    for profile in list_profiles():
        env = user_env(profile, tmp_path_factory.mktemp(f"conf-{profile}") / "s")
        for mode in MODES:
            cmd = [sys.executable, str(HERE / "conformance_driver.py"), mode, str(CASES)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                                  check=False)
            assert proc.returncode == 0, f"{profile} {mode}: crashed ({proc.returncode}):\n" \
                                         f"{proc.stderr[-3000:]}"
            out[profile, mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.slow
def test_clients_load_the_simulator_as_the_exporter_does(reports: dict[Any, Any]) -> None:
    for (profile, mode), r in reports.items():
        assert r["library"] == [str(library_path())], (profile, mode)


@pytest.mark.slow
def test_clients_raise_nothing_unexpected(reports: dict[Any, Any]) -> None:
    unexpected = {}
    for (profile, mode), r in reports.items():
        allowed = [re.compile(e["pattern"]) for e in EXPECTED["client_errors"].get(profile, [])]
        bad = [e for e in r["errors"] if not any(p.match(e) for p in allowed)]
        if bad:
            unexpected[profile, mode] = bad
    assert unexpected == {}


@pytest.mark.slow
def test_not_supported_answers_are_exactly_the_expected_ones(reports: dict[Any, Any]) -> None:
    for profile in list_profiles():
        seen: dict[str, list[str]] = {}
        for mode in MODES:
            for fn, codes in reports[profile, mode]["codes"].items():
                if "3" in codes:
                    seen.setdefault(fn, []).append(mode)
        expected = {**EXPECTED["common"], **EXPECTED["profiles"][profile]}
        new = {fn: modes for fn, modes in seen.items() if fn not in expected}
        stale = sorted(set(expected) - set(seen))
        assert new == {}, f"{profile}: NOT_SUPPORTED not in expected_not_supported.yaml"
        assert stale == [], f"{profile}: listed as NOT_SUPPORTED but no client met it"
        assert all(isinstance(why, str) and len(why) > 10 for why in expected.values())


@pytest.mark.slow
def test_clients_meet_no_other_error_codes(reports: dict[Any, Any]) -> None:
    odd = {(p, m, fn): codes for (p, m), r in reports.items() if m != "pynvml-upstream"
           for fn, codes in r["codes"].items() if set(codes) - ROUTINE}
    assert odd == {}


@pytest.mark.slow
def test_nvitop_api_sweep_over_every_device_and_mig_device(reports: dict[Any, Any]) -> None:
    for profile in list_profiles():
        r = reports[profile, "nvitop-api"]
        devices = _profile(profile)
        assert r["names"] == [d["name"] for d in devices]
        assert r["memory_total"] == [d["memory"]["total_mib"] << 20 for d in devices]
        assert r["calls"] >= 90 * len(devices)  # ~100 public no-argument methods each
    mig = reports["a100-mig", "nvitop-api"]["mig"]
    assert [m[2].split()[-1] for m in mig] == (["1g.10gb"] * 7 + ["3g.40gb", "2g.20gb", "1g.10gb",
                                                                 "4g.40gb", "2g.20gb", "1g.10gb"])


@pytest.mark.slow
def test_gpustat_query(reports: dict[Any, Any]) -> None:
    for profile in list_profiles():
        gpus = reports[profile, "gpustat"]["gpus"]
        devices = _profile(profile)
        assert [(g["index"], g["name"], g["memory.total"]) for g in gpus] == [
            (i, d["name"], d["memory"]["total_mib"]) for i, d in enumerate(devices)]
        assert all(g["power.draw"] > 0 and g["temperature.gpu"] > 0 for g in gpus)


@pytest.mark.slow
@pytest.mark.parametrize("profile", list_profiles())
def test_nvitop_once_and_gpustat_json_commands(profile: str, tmp_path: Path) -> None:
    env = user_env(profile, tmp_path / "s")
    devices = _profile(profile)
    once = subprocess.run([_exe("nvitop"), "-1"], env=env, capture_output=True, text=True,
                          timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert once.returncode == 0, once.stderr
    driver = resolve(load_profile(profile)).system["driver_version"]
    assert f"Driver Version: {driver}" in once.stdout
    table = once.stdout.split("Processes:")[0]  # the device table, not the process list
    rows = re.findall(r"^│\s+(\d+)\s+\S", table, re.MULTILINE)
    assert rows == [str(i) for i in range(len(devices))]
    gs = subprocess.run([_exe("gpustat"), "--json"], env=env, capture_output=True, text=True,
                        timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert gs.returncode == 0, gs.stderr
    data = json.loads(gs.stdout)
    assert [(g["name"], g["memory.total"]) for g in data["gpus"]] == [
        (d["name"], d["memory"]["total_mib"]) for d in devices]


@pytest.mark.slow
def test_py3nvml_device_query(reports: dict[Any, Any]) -> None:
    for profile in list_profiles():
        r = reports[profile, "py3nvml"]
        n = len(_profile(profile))
        assert r["xml_error"] == EXPECTED["py3nvml_xml_error"][profile]
        if not r["xml_error"]:
            assert r["xml_gpus"] == n  # the whole query ran, one <gpu> element per GPU
        # legacy nvmlDeviceGetPciInfo_v2: busId[16] in the upper-case legacy format
        assert all(re.fullmatch(r"[0-9A-F]{4}:[0-9A-F]{2}:00\.0", b) for b in r["pci"])
        assert len(r["pci"]) == n
        assert r["queried"] >= 50 * n


@pytest.mark.slow
def test_pynvml_upstream_cases(reports: dict[Any, Any]) -> None:
    spec = yaml.safe_load(CASES.read_text())
    assert spec["source"].startswith("gpuopenanalytics/pynvml 12.0.0")
    for profile in list_profiles():
        results = reports[profile, "pynvml-upstream"]["results"]
        assert set(results) == {c["id"] for c in spec["cases"]}
        for case in spec["cases"]:
            r = results[case["id"]]
            expect = (case.get("expect") or {}).get(profile) or (case.get("expect") or {}).get("*")
            where = f"{profile} {case['id']}: {r}"
            if r["outcome"] == "skipped":  # upstream's xfail, or upstream's own skip
                assert ("skip_if_driver_above" in case
                        or (r["why"] == "nothing to run it on"
                            and case["over"] in {"mig_devices", "device_pairs"})), where
            elif expect is None:
                assert r["outcome"] == "passed", where
            else:  # the documented error, and only that one
                assert r["outcome"] == "failed", where
                assert set(r["failures"]) == {expect["error"]}, where
    ran = {c for p in list_profiles()
           for c, r in reports[p, "pynvml-upstream"]["results"].items()
           if r["outcome"] != "skipped"}
    assert len(ran) >= 15
