"""On a host with a running DCGM host engine: the exporter against the real driver and engine.

Deselected by default (``-m "not gpu and not dcgm"`` in pytest's addopts); run with
``pytest -m dcgm tests/test_dcgm_host.py`` on a machine with an NVIDIA GPU and driver, DCGM 4
(or 3) installed (the client library ``libdcgm.so.4`` on the loader's path) and its host engine
running (``nv-hostengine``, or the ``nvidia-dcgm`` service). ``GPU_EXPORTER_TEST_DCGM`` names
the engine as ``-r`` takes it (default ``127.0.0.1:5555``). Nothing here loads the simulator.

What it checks: the exporter connects (``gpu_exporter_dcgm_up 1``) through the host's own
``libdcgm`` (mapped in the process, not the simulator's stub); on every GPU without GPM (before
Hopper, asked of the driver through pynvml) each profiling row of the counters file is either a
value in its range or absent with a DCGM reason in ``gpu_exporter_field_supported`` (e.g.
``profiling_module_not_loaded`` when the proprietary profiling package is missing), never a gap
without a reason; GPUs with GPM keep their GPM values.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pynvml
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.exporter import run_exporter

from gpu_exporter.dcgm import Dcgm, load_library

pytestmark = pytest.mark.dcgm

ENGINE = os.environ.get("GPU_EXPORTER_TEST_DCGM", "127.0.0.1:5555")
RATIOS = ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_SM_ACTIVE",
          "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "DCGM_FI_PROF_DRAM_ACTIVE")
DCGM_REASONS = {"profiling_not_supported", "profiling_module_not_loaded",
                "profiling_library_error", "profiling_multi_pass", "not_permissioned",
                "not_found", "not_supported", "blank", "paused", "dcgm_no_gpu", "error"}


def _gpus_without_gpm() -> set[str]:
    """NVML indexes (as the gpu label) of the GPUs without GPM, from the driver."""
    pynvml.nvmlInit()
    try:
        out = set()
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            try:
                gpm = bool(pynvml.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice)
            except pynvml.NVMLError:
                gpm = False
            if not gpm:
                out.add(str(i))
        return out
    finally:
        pynvml.nvmlShutdown()


Parsed = tuple[set[str], dict[tuple[str, str], float], dict[tuple[str, str], str]]


def _parse(text: str) -> Parsed:
    """GPUs, profiling values and unavailable-field reasons of one scrape."""
    values: dict[tuple[str, str], float] = {}
    reasons: dict[tuple[str, str], str] = {}
    gpus = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "DCGM_FI_DEV_GPU_TEMP":
                gpus.add(labels["gpu"])
            elif sample.name in RATIOS:
                values[(labels["gpu"], sample.name)] = sample.value
            elif sample.name == "gpu_exporter_field_supported" and sample.value == 0:
                reasons[(labels["gpu"], labels["field"])] = labels["reason"]
    return gpus, values, reasons


def _settled(text: str, pre_hopper: set[str]) -> bool:
    """Connected, and every pre-Hopper GPU's fields have a value or a lasting reason."""
    if "gpu_exporter_dcgm_up 1" not in text:
        return False
    _, values, reasons = _parse(text)
    return all((gpu, name) in values or reasons.get((gpu, name)) in DCGM_REASONS
               for gpu in pre_hopper for name in RATIOS)


def test_profiling_fields_from_the_hosts_dcgm_engine(tmp_path: Path) -> None:
    Dcgm(load_library())  # the host's client library loads and initialises (else: no DCGM)
    counters = tmp_path / "counters.csv"
    counters.write_text("DCGM_FI_DEV_GPU_TEMP, gauge, temperature\n" + "".join(
        f"{name}, gauge, profiling\n" for name in RATIOS))
    pre_hopper = _gpus_without_gpm()
    with run_exporter(["-c", "1000", "-f", str(counters), "-r", ENGINE]) as exporter:
        deadline = time.monotonic() + 60
        text = exporter.metrics()
        while time.monotonic() < deadline and not _settled(text, pre_hopper):
            time.sleep(0.5)
            text = exporter.metrics()
        maps = Path(f"/proc/{exporter.process.pid}/maps").read_text()
        log = exporter.log
    assert "gpu_exporter_dcgm_up 1" in text, log
    assert "simulated" not in log
    dcgm_libs = {line.split()[-1] for line in maps.splitlines() if "libdcgm.so" in line}
    assert dcgm_libs
    assert not [p for p in dcgm_libs if "simulator" in p]  # the host's, not our stub
    gpus, values, reasons = _parse(text)
    assert gpus
    assert pre_hopper <= gpus
    for gpu in gpus:
        for name in RATIOS:
            key = (gpu, name)
            if key in values:
                assert -1e-6 <= values[key] <= 1.5, (key, values[key])  # ratios (DCGM#152)
            elif gpu in pre_hopper:
                assert reasons.get(key) in DCGM_REASONS, (key, reasons.get(key), log)
            else:
                pytest.fail(f"{key}: a GPU with GPM has no value ({reasons.get(key)})")
