"""The exporter as a user runs it: the console script on the simulated NVML, over HTTP."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.exporter import EXPORTER, Exporter, run_exporter

from gpu_exporter.simulator import FaultInjector

ROOT = Path(__file__).resolve().parents[1]


def _series(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def test_serves_dcgm_families_and_self_metrics(tmp_path: Path) -> None:
    with run_exporter(["--simulate", "h100x8", "-c", "500"],
                      env={"GPU_SIM_DIR": str(tmp_path)}) as exporter:
        text = exporter.metrics()
        assert len(_series(text, "DCGM_FI_DEV_GPU_TEMP")) == 8
        assert len(_series(text, "DCGM_FI_DEV_FB_TOTAL")) == 8
        assert 'Hostname="test-node"' in text
        assert 'gpu_exporter_build_info{version="' in text
        assert "process_resident_memory_bytes " in text
        stamp = float(text.split("\ngpu_exporter_snapshot_timestamp_seconds ")[1].split()[0])
        assert abs(time.time() - stamp) < 30
        status, body, headers = exporter.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0",
                                 "Accept-Encoding": "gzip"})
        assert status == 200
        assert headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(body).endswith(b"# EOF\n")


def test_scrapes_make_no_nvml_calls(tmp_path: Path) -> None:
    faults = FaultInjector(tmp_path)
    # A collection interval far longer than the test: after the second snapshot (the start-up
    # one follows the first within a second), only the event thread may call NVML
    # (nvmlEventSetWait); scrapes must not, even the first one of a cycle, which renders.
    with run_exporter(["--simulate", "h100x8", "-c", "3600000"],
                      env={"GPU_SIM_DIR": str(tmp_path)}) as exporter:
        exporter.wait_for("\ngpu_exporter_collections_total 2\n", timeout=60)
        time.sleep(0.3)  # let the simulator publish its counters (it flushes every ~100 ms)
        before = {k: v for k, v in faults.call_counts().items() if "EventSetWait" not in k}
        assert sum(before.values()) > 0, "the simulator counted no calls at all"
        for _ in range(100):
            exporter.get("/metrics")
        time.sleep(0.3)
        after = {k: v for k, v in faults.call_counts().items() if "EventSetWait" not in k}
        assert after == before


def test_lost_gpu_leaves_the_others_exporting(tmp_path: Path) -> None:
    faults = FaultInjector(tmp_path)
    with run_exporter(["--simulate", "h100x8", "-c", "200"],
                      env={"GPU_SIM_DIR": str(tmp_path)}) as exporter:
        faults.lose_gpu(3)
        text = exporter.wait_for('gpu_exporter_gpu_up{gpu="3"')
        deadline = time.monotonic() + 10
        while not any(line.startswith('gpu_exporter_gpu_up{gpu="3"') and line.endswith(" 0")
                      for line in text.splitlines()):
            assert time.monotonic() < deadline, text[-2000:]
            time.sleep(0.1)
            text = exporter.metrics()
        temps = _series(text, "DCGM_FI_DEV_GPU_TEMP")
        assert len(temps) == 7
        assert not any('gpu="3"' in line for line in temps)
        faults.restore_gpu(3)
        deadline = time.monotonic() + 10
        while len(_series(exporter.metrics(), "DCGM_FI_DEV_GPU_TEMP")) != 8:
            assert time.monotonic() < deadline, "GPU 3 was not re-probed after it came back"
            time.sleep(0.1)


def test_malformed_counters_file_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("# comment\nDCGM_FI_DEV_GPU_TEMP, gauge, temp\nDCGM_FI_DEV_GPU_TMP, gauge, x\n")
    result = subprocess.run(
        [str(EXPORTER), "--simulate", "h100x8", "-f", str(csv)],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 2
    assert f"{csv}:3" in result.stderr
    assert "DCGM_FI_DEV_GPU_TEMP" in result.stderr  # the close match
    assert "Traceback" not in result.stderr


def test_unknown_profile_exits_2_listing_profiles() -> None:
    result = subprocess.run(
        [str(EXPORTER), "--simulate", "h100x9"], capture_output=True, text=True, timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "h100x8" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_nvml_library_exits_1_and_names_simulate() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPU_", "DCGM_"))}
    env["LD_LIBRARY_PATH"] = "/nonexistent"
    result = subprocess.run(
        [str(EXPORTER), "-a", "127.0.0.1:0"], capture_output=True, text=True, timeout=30,
        env=env, check=False,
    )
    assert result.returncode == 1
    assert "libnvidia-ml.so.1" in result.stderr
    assert "--simulate" in result.stderr
    assert "Traceback" not in result.stderr


def test_counters_file_hot_reload_keeps_last_good(tmp_path: Path) -> None:
    csv = tmp_path / "counters.csv"
    csv.write_text("DCGM_FI_DEV_GPU_TEMP, gauge, temperature\n")
    with run_exporter(["--simulate", "t4x4", "-c", "200", "-f", str(csv)],
                      env={"GPU_SIM_DIR": str(tmp_path / "sim")}) as exporter:
        assert not _series(exporter.metrics(), "DCGM_FI_DEV_POWER_USAGE")
        csv.write_text("DCGM_FI_DEV_GPU_TEMP, gauge, temperature\n"
                       "DCGM_FI_DEV_POWER_USAGE, gauge, power\n")
        text = exporter.wait_for("DCGM_FI_DEV_POWER_USAGE{")
        assert len(_series(text, "DCGM_FI_DEV_POWER_USAGE")) == 4
        csv.write_text("DCGM_FI_DEV_GPU_TEMP, gauge\n")  # malformed: 2 columns
        deadline = time.monotonic() + 10
        while "counters file not reloaded" not in exporter.log:
            assert time.monotonic() < deadline, exporter.log
            time.sleep(0.05)
        assert f"{csv}:1" in exporter.log
        text = exporter.metrics()
        assert _series(text, "DCGM_FI_DEV_POWER_USAGE")
        assert _value(text, "gpu_exporter_counters_last_reload_successful") == 0.0
        csv.write_text("DCGM_FI_DEV_GPU_TEMP, gauge, temperature\n")
        text = _poll(exporter, lambda t: not _series(t, "DCGM_FI_DEV_POWER_USAGE")
                     and _value(t, "gpu_exporter_counters_last_reload_successful") == 1.0,
                     "a good edit was not picked up")
        csv.write_bytes(b"")  # truncated while running: not "0 rows"
        deadline = time.monotonic() + 10
        while "lists no fields now" not in exporter.log:
            assert time.monotonic() < deadline, exporter.log
            time.sleep(0.05)
        text = _poll(exporter,
                     lambda t: _value(t, "gpu_exporter_counters_last_reload_successful") == 0.0,
                     "the refused edit is not in the metric")
        assert len(_series(text, "DCGM_FI_DEV_GPU_TEMP")) == 4


@pytest.mark.parametrize(
    "how", [["--mig-device-fields-once"], ["GPU_EXPORTER_MIG_DEVICE_FIELDS_ONCE"]])
def test_mig_device_fields_once_per_gpu_memory_per_instance(
    how: list[str], tmp_path: Path,
) -> None:
    env = {"GPU_SIM_DIR": str(tmp_path)}
    args = ["--simulate", "a100-mig", "-c", "500"]
    if how[0].startswith("--"):
        args += how
    else:
        env[how[0]] = "true"
    with run_exporter(args, env=env) as exporter:
        text = exporter.metrics()
    power = _series(text, "DCGM_FI_DEV_POWER_USAGE")
    assert power
    assert not any("GPU_I_ID" in line for line in power)
    gpus = {line.split('gpu="')[1].split('"')[0] for line in power}
    assert len(gpus) == len(power)  # once per physical GPU
    fb = _series(text, "DCGM_FI_DEV_FB_USED")
    assert any('GPU_I_PROFILE="1g.10gb"' in line for line in fb)


def test_mig_default_repeats_device_fields_per_instance_like_dcgm_exporter(
    tmp_path: Path,
) -> None:
    with run_exporter(["--simulate", "a100-mig", "-c", "500"],
                      env={"GPU_SIM_DIR": str(tmp_path)}) as exporter:
        text = exporter.metrics()
    power = _series(text, "DCGM_FI_DEV_POWER_USAGE")
    gpu0 = [line for line in power if 'gpu="0"' in line]
    # GPU 0 of a100-mig is seven 1g.10gb instances: seven series, one per GPU_I_ID, same value
    assert len(gpu0) == 7
    assert all('GPU_I_PROFILE="1g.10gb",GPU_I_ID="' in line for line in gpu0)
    assert len({line.rsplit(" ", 1)[1] for line in gpu0}) == 1
    whole = [line for line in power if "GPU_I_ID" not in line]
    assert {line.split('gpu="')[1].split('"')[0] for line in whole} == {"3", "4", "5", "6", "7"}
    fb = _series(text, "DCGM_FI_DEV_FB_USED")
    assert [line.split("{", 1)[1].split(",Hostname")[0] for line in fb if 'gpu="0"' in line] == [
        line.split("{", 1)[1].split(",Hostname")[0] for line in gpu0]


def test_remote_hostengine_sets_the_hostname_label_and_names_the_engine(tmp_path: Path) -> None:
    # nothing answers at dcgm-host.example: every NVML series is there, DCGM is reported down
    with run_exporter(["--simulate", "t4x4", "-c", "500", "-r", "dcgm-host.example:5555"],
                      env={"GPU_SIM_DIR": str(tmp_path), "NODE_NAME": "node-a"}) as exporter:
        text = exporter.wait_for("gpu_exporter_dcgm_up 0")
        log = exporter.log
    temp = _series(text, "DCGM_FI_DEV_GPU_TEMP")
    assert len(temp) == 4
    assert all('Hostname="dcgm-host.example"' in line for line in temp)
    notes = [line for line in log.splitlines() if "-r dcgm-host.example:5555: DCGM host" in line]
    assert len(notes) == 1
    assert "profiling fields of GPUs without GPM" in notes[0]
    with run_exporter(["--simulate", "t4x4", "-c", "500", "-k", "--pod-resources-kubelet-socket",
                       str(tmp_path / "none.sock")],
                      env={"GPU_SIM_DIR": str(tmp_path), "NODE_NAME": "node-a",
                           "DCGM_REMOTE_HOSTENGINE_INFO": "svc:5555"}) as exporter:
        temp = _series(exporter.wait_for("gpu_exporter_dcgm_up 0"), "DCGM_FI_DEV_GPU_TEMP")
        log = exporter.log
    assert all('Hostname="node-a"' in line for line in temp)  # Kubernetes: the node
    assert sum("-r svc:5555: DCGM host engine" in line for line in log.splitlines()) == 1


def _value(text: str, name: str, gpu: int | None = None) -> float | None:
    """The value of series ``name`` (of GPU ``gpu``), or None when it is absent."""
    for line in text.splitlines():
        if gpu is None and line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
        if gpu is not None and line.startswith(name + "{") and f'gpu="{gpu}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def _poll(exporter: Exporter, ok: Callable[[str], bool], what: str, timeout: float = 20) -> str:
    """Poll /metrics until ``ok(text)``; fails naming ``what``."""
    deadline = time.monotonic() + timeout
    text = exporter.metrics()
    while not ok(text):
        assert time.monotonic() < deadline, f"{what}:\n{exporter.log[-3000:]}\n{text[-2000:]}"
        time.sleep(0.1)
        text = exporter.metrics()
    return text


def test_hung_gpu_leaves_the_others_exporting_and_comes_back(tmp_path: Path) -> None:
    # the review's scenario: one NVML call on GPU 5 never returns
    faults = FaultInjector(tmp_path)
    with run_exporter(["--simulate", "h100x8", "-c", "200"],
                      env={"GPU_SIM_DIR": str(tmp_path)}) as exporter:
        try:
            faults.hang("nvmlDeviceGetPowerUsage", index=5)
            # slow first (its last values, marked), then down once the call is 10 s old
            _poll(exporter, lambda t: _value(t, "gpu_exporter_gpu_slow", 5) == 1.0,
                  "GPU 5 never marked slow", timeout=60)
            text = _poll(exporter, lambda t: _value(t, "gpu_exporter_gpu_up", 5) == 0.0,
                         "GPU 5 never reported down", timeout=60)
            cycles = _value(text, "gpu_exporter_collections_total") or 0.0
            text = _poll(exporter,
                         lambda t: (_value(t, "gpu_exporter_collections_total") or 0) >= cycles + 3,
                         "collections stopped while GPU 5 hangs")
            temps = _series(text, "DCGM_FI_DEV_GPU_TEMP")
            assert len(temps) == 7
            assert not any('gpu="5"' in line for line in temps)
            assert [_value(text, "gpu_exporter_gpu_up", i) for i in range(8)] == \
                [1.0] * 5 + [0.0] + [1.0] * 2
            assert exporter.get("/ready")[0] == 200
            assert "GPU 5: NVML answers slower than 1s" in exporter.log
            assert "GPU 5: NVML call not answered within 10s" in exporter.log
        finally:
            faults.clear()
        _poll(exporter, lambda t: len(_series(t, "DCGM_FI_DEV_GPU_TEMP")) == 8
              and _value(t, "gpu_exporter_gpu_up", 5) == 1.0,
              "GPU 5 did not come back once its call returned")
        assert "GPU 5: the stuck NVML call returned" in exporter.log


def test_sigterm_stops_the_exporter_while_an_nvml_call_hangs(tmp_path: Path) -> None:
    faults = FaultInjector(tmp_path)
    with run_exporter(["--simulate", "h100x8", "-c", "200"],
                      env={"GPU_SIM_DIR": str(tmp_path)}) as exporter:
        try:
            faults.hang("nvmlDeviceGetPowerUsage", index=5)
            _poll(exporter, lambda t: _value(t, "gpu_exporter_gpu_up", 5) == 0.0,
                  "GPU 5 never reported down", timeout=60)
            exporter.process.send_signal(signal.SIGTERM)
            try:
                code = exporter.process.wait(timeout=10)  # the hang is still in place
            except subprocess.TimeoutExpired:
                pytest.fail(f"SIGTERM did not stop the exporter:\n{exporter.log[-3000:]}")
            assert code == 0
            # NVML is not shut down under the thread still stuck inside it
            assert "not calling nvmlShutdown" in exporter.log
        finally:
            faults.clear()


def test_private_simulator_state_is_removed_at_exit(tmp_path: Path) -> None:
    # Without GPU_SIM_DIR the exporter makes its own state directory under TMPDIR ...
    with run_exporter(["--simulate", "t4x4", "-c", "500"], env={"TMPDIR": str(tmp_path)}):
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith("gpu-exporter-sim-")]
    # ... and removes it when it stops.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("gpu-exporter-sim-")]


RATE_FAMILIES = (  # default counters file rows that need two samples
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "DCGM_FI_PROF_DRAM_ACTIVE",
    "DCGM_FI_PROF_PCIE_TX_BYTES", "DCGM_FI_PROF_PCIE_RX_BYTES",
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
)


@pytest.mark.parametrize("interval_ms", ["30000", "3600000"])
def test_rate_families_follow_the_first_snapshot_at_once(interval_ms: str, tmp_path: Path) -> None:
    # GPM profiling and NVLink bandwidth need two samples. The interval is long (the 30 s
    # default, and one hour so that waiting for the second regular cycle cannot pass): the
    # second cycle must come soon after the first, not one interval later.
    with run_exporter(["--simulate", "h100x8", "-c", interval_ms],
                      env={"GPU_SIM_DIR": str(tmp_path)}) as exporter:
        text = _poll(exporter,
                     lambda t: all(len(_series(t, name)) == 8 for name in RATE_FAMILIES),
                     "rate families missing after the first snapshot", timeout=60)
        assert (_value(text, "gpu_exporter_collections_total") or 0) >= 2
        for name in RATE_FAMILIES:
            supported = [line for line in _series(text, "gpu_exporter_field_supported")
                         if f'field="{name}"' in line]
            # supported on every GPU from the start: no news, so no field_supported row
            assert supported == [], supported


@pytest.mark.parametrize("interval_ms", ["1", "50", "1000", "30000"])
def test_ready_at_every_accepted_interval(interval_ms: str, tmp_path: Path) -> None:
    # -c 1 (1 ms) is shorter than any cycle: /ready must turn ready and stay ready, probe
    # after probe, not only when a probe happens to land just after a publish
    with run_exporter(["--simulate", "h100x8", "-c", interval_ms],
                      env={"GPU_SIM_DIR": str(tmp_path)}, ready_timeout=60) as exporter:
        cycles = _value(exporter.metrics(), "gpu_exporter_collections_total") or 0.0
        answers = []
        for _ in range(20):
            status, body, _ = exporter.get("/ready")
            answers.append((status, body.decode().strip()))
            time.sleep(0.05)
        assert all(status == 200 for status, _ in answers), answers
        assert exporter.get("/health")[0] == 200
        if interval_ms in {"1", "50"}:  # the loop keeps collecting at short intervals
            _poll(exporter,
                  lambda t: (_value(t, "gpu_exporter_collections_total") or 0) >= cycles + 3,
                  "collections stopped", timeout=60)


def test_every_gpu_hung_is_reported_down_together_within_one_deadline(tmp_path: Path) -> None:
    # the review's scenario: every GPU's power call hangs at -c 10000
    faults = FaultInjector(tmp_path)
    with run_exporter(["--simulate", "h100x8", "-c", "10000"],
                      env={"GPU_SIM_DIR": str(tmp_path)}) as exporter:
        _poll(exporter, lambda t: (_value(t, "gpu_exporter_collections_total") or 0) >= 2,
              "no second cycle", timeout=60)
        try:
            faults.hang("nvmlDeviceGetPowerUsage")
            text = _poll(exporter, lambda t: 0.0 in [_value(t, "gpu_exporter_gpu_up", i)
                                                      for i in range(8)],
                         "no GPU reported down", timeout=90)
            # not one per cycle: the first snapshot with a GPU down has all eight down
            assert [_value(text, "gpu_exporter_gpu_up", i) for i in range(8)] == [0.0] * 8
            assert not _series(text, "DCGM_FI_DEV_GPU_TEMP")
            assert _value(text, "gpu_exporter_snapshot_stale") == 0.0
            assert exporter.log.count("NVML call not answered within 10s") == 8
        finally:
            faults.clear()
        _poll(exporter, lambda t: len(_series(t, "DCGM_FI_DEV_GPU_TEMP")) == 8,
              "the GPUs did not come back once their calls returned", timeout=90)


def test_a_slow_gpu_is_marked_slow_not_flapping(tmp_path: Path) -> None:
    # a 2 s call at -c 500: slow is not lost
    faults = FaultInjector(tmp_path)
    with run_exporter(["--simulate", "t4x4", "-c", "500"],
                      env={"GPU_SIM_DIR": str(tmp_path)}) as exporter:
        try:
            faults.latency("nvmlDeviceGetPowerUsage", 2.0, index=2)
            _poll(exporter, lambda t: _value(t, "gpu_exporter_gpu_slow", 2) == 1.0,
                  "GPU 2 never marked slow", timeout=60)
            cycles = _value(exporter.metrics(), "gpu_exporter_collections_total") or 0.0
            seen = []
            while len(seen) < 40 or (
                    _value(seen[-1], "gpu_exporter_collections_total") or 0) < cycles + 6:
                seen.append(exporter.metrics())
                time.sleep(0.1)
            for text in seen:  # every scrape: up, with its values, marked slow
                assert _value(text, "gpu_exporter_gpu_up", 2) == 1.0
                assert _value(text, "gpu_exporter_gpu_slow", 2) == 1.0
                assert len(_series(text, "DCGM_FI_DEV_POWER_USAGE")) == 4
                assert _value(text, "gpu_exporter_gpu_slow", 0) == 0.0
            assert any((_value(t, "gpu_exporter_gpu_data_age_seconds", 2) or 0) > 0
                       for t in seen)
            assert exporter.log.count("GPU 2: NVML answers slower than 1s") == 1
            assert "not answered" not in exporter.log
        finally:
            faults.clear()
        _poll(exporter, lambda t: _value(t, "gpu_exporter_gpu_slow", 2) == 0.0,
              "GPU 2 still slow once its calls are fast again", timeout=60)
        assert exporter.log.count("GPU 2: NVML answers within 1s again") == 1


def test_a_stuck_collection_loop_marks_the_snapshot_stale(tmp_path: Path) -> None:
    # Adding XID rows to the counters file starts the NVML event thread from the collection
    # loop; with nvmlEventSetCreate hanging, no cycle completes: /metrics must say so.
    csv = tmp_path / "counters.csv"
    csv.write_text("DCGM_FI_DEV_GPU_TEMP, gauge, temperature\n")
    faults = FaultInjector(tmp_path / "sim")
    with run_exporter(["--simulate", "t4x4", "-c", "200", "-f", str(csv)],
                      env={"GPU_SIM_DIR": str(tmp_path / "sim")}) as exporter:
        text = exporter.metrics()
        assert _value(text, "gpu_exporter_snapshot_stale") == 0.0
        try:
            faults.hang("nvmlEventSetCreate")
            csv.write_text("DCGM_FI_DEV_GPU_TEMP, gauge, temperature\n"
                           "DCGM_FI_DEV_XID_ERRORS, gauge, xid\n")
            text = _poll(exporter, lambda t: _value(t, "gpu_exporter_snapshot_stale") == 1.0,
                         "the stale snapshot is not marked", timeout=120)
            assert len(_series(text, "DCGM_FI_DEV_GPU_TEMP")) == 4  # the last values, marked
            assert exporter.get("/ready")[0] == 503
            assert exporter.log.count("serving the last snapshot with "
                                      "gpu_exporter_snapshot_stale 1") == 1
        finally:
            faults.clear()
        _poll(exporter, lambda t: _value(t, "gpu_exporter_snapshot_stale") == 0.0
              and bool(_series(t, "DCGM_FI_DEV_XID_ERRORS")),
              "collection did not resume", timeout=60)
