"""Golden /metrics for h100x8 with a fixed seed and frozen simulated time.

Pins metric names, label names and order, types, HELP texts and values of every DCGM family
and of the deterministic ``gpu_exporter_*`` families. Update only on purpose, and say why in
the commit: ``GOLDEN_UPDATE=1 .venv/bin/pytest tests/test_golden.py``.

The same output goes through ``promtool check metrics``: it must parse, and the only lint
findings allowed are the ones dcgm-exporter compatibility forces.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support.exporter import run_exporter

GOLDEN = Path(__file__).parent / "data" / "golden" / "h100x8.prom"

# Families whose values depend on the machine or the moment, not on the simulated GPUs.
_VOLATILE = re.compile(
    r"^(# (HELP|TYPE) )?(process_|python_|gpu_exporter_build_info|"
    r"gpu_exporter_collector_duration_seconds|gpu_exporter_collection_duration_seconds|"
    r"gpu_exporter_snapshot_timestamp_seconds|"
    # serving counters depend on the test's own connections (docs/security.md lists them)
    r"gpu_exporter_http_)"
)

# Findings promtool reports for names and labels that dcgm-exporter compatibility fixes.
_COMPAT_FINDINGS = {
    "counter metrics should have \"_total\" suffix",  # DCGM counters keep upstream names
    "label names should be written in 'snake_case' not 'camelCase'",  # modelName
    "metric name should not include type 'counter'",  # DCGM_FI_DEV_PCIE_REPLAY_COUNTER
}


def _exposition(tmp_path: Path) -> str:
    env = {"GPU_SIM_DIR": str(tmp_path), "GPU_SIM_FROZEN_TIME": "1000", "NODE_NAME": "golden"}
    args = ["--simulate", "h100x8", "--simulate-seed", "7", "-c", "3600000"]
    with run_exporter(args, env=env) as exporter:
        # the second cycle follows the first within a second (rate fields need two samples);
        # with a one-hour interval there is no third: the exposition after it is deterministic
        return exporter.wait_for("\ngpu_exporter_collections_total 2\n", timeout=60)


def _stable(text: str) -> str:
    return "".join(line + "\n" for line in text.splitlines() if not _VOLATILE.match(line))


def test_golden_exposition(tmp_path: Path) -> None:
    stable = _stable(_exposition(tmp_path))
    if os.environ.get("GOLDEN_UPDATE") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(stable)
    assert stable == GOLDEN.read_text(), (
        "/metrics changed; if on purpose, run GOLDEN_UPDATE=1 pytest tests/test_golden.py"
    )


def test_promtool_parses_and_lints_only_compat_findings(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required; .ci/run installs it"
    text = _exposition(tmp_path)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert result.returncode in {0, 3}, result.stderr  # 1 would be a parse error
    findings = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    by_family: dict[str, set[str]] = {}
    for line in findings:
        family, _, message = line.partition(" ")
        by_family.setdefault(family, set()).add(message)
    ours = {f: m for f, m in by_family.items() if not f.startswith("DCGM_")}
    assert ours == {}, f"our own families must lint clean: {ours}"
    for family, messages in by_family.items():
        assert messages <= _COMPAT_FINDINGS, (family, messages)
    # The compat findings really occur (the test would pass vacuously otherwise).
    assert "counter metrics should have \"_total\" suffix" in by_family[
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"]


@pytest.mark.parametrize("accept", ["application/openmetrics-text; version=1.0.0"])
def test_openmetrics_is_the_same_series(tmp_path: Path, accept: str) -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    env = {"GPU_SIM_DIR": str(tmp_path), "GPU_SIM_FROZEN_TIME": "1000"}
    with run_exporter(["--simulate", "h100x8", "-c", "3600000"], env=env) as exporter:
        text = exporter.metrics()
        status, body, _ = exporter.get("/metrics", headers={"Accept": accept})
    assert status == 200
    om = {s.name for f in text_string_to_metric_families(body.decode()) for s in f.samples}
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
             if line and not line.startswith("#")}
    assert names == om
