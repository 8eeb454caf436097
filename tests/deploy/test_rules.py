"""Alert rules: promtool check/test on deploy/rules.yml and on the chart's PrometheusRule."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_render import MONITORING_API, RULES_FILE, by_kind, documents, render
from cloudcoil.models.prometheus_operator.v1 import PrometheusRule

from gpu_exporter.xid import ACTION_XIDS

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
RULES_TEST = HERE / "rules_test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
SEVERITIES = {"critical", "warning", "info"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool not found: apt-get install --no-install-recommends prometheus"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, check=False)


def rules_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return groups


def alerts() -> list[dict[str, Any]]:
    return [r for g in rules_groups() for r in g["rules"] if "alert" in r]


def records() -> list[dict[str, Any]]:
    return [r for g in rules_groups() for r in g["rules"] if "record" in r]


def chart_rule(values: dict[str, Any] | None = None) -> dict[str, Any]:
    values = {"prometheusRule": {"enabled": True}, **(values or {})}
    (rule,) = by_kind(documents(render(values, api_versions=(MONITORING_API,))), "PrometheusRule")
    return rule


def test_promtool_check_rules_file() -> None:
    result = promtool("check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts()) + len(records())} rules found" in result.stdout


def test_chart_prometheusrule_renders_the_same_groups(tmp_path: Path) -> None:
    rule = chart_rule()
    PrometheusRule.model_validate(rule)
    assert rule["spec"]["groups"] == rules_groups()
    extracted = tmp_path / "chart-rules.yml"
    extracted.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = promtool("check", "rules", str(extracted))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheusrule_only_when_enabled_and_api_served() -> None:
    assert by_kind(documents(render(api_versions=(MONITORING_API,))), "PrometheusRule") == []
    assert by_kind(documents(render({"prometheusRule": {"enabled": True}})), "PrometheusRule") == []
    forced = documents(render({"prometheusRule": {"enabled": True, "force": True}}))
    assert len(by_kind(forced, "PrometheusRule")) == 1


def test_chart_values_reach_the_rules(tmp_path: Path) -> None:
    rule = chart_rule({
        "arguments": ["-c", "60000"],
        "prometheusRule": {"enabled": True, "jobRegex": "gpu-mon", "xidCodes": [79, 48],
                           "runbookBaseUrl": "https://wiki.example/gpu-runbook",
                           "additionalLabels": {"release": "prom"}},
    })
    assert rule["metadata"]["labels"]["release"] == "prom"
    by_name = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]
               if "alert" in r}
    assert by_name["GpuExporterStale"]["expr"].endswith("> 180")  # 3 x 60 s
    assert 'up{job=~"gpu-mon"}' in by_name["GpuExporterDown"]["expr"]
    assert 'xid=~"79|48"' in by_name["GpuXidErrorNeedsAction"]["expr"]
    assert by_name["GpuDown"]["annotations"]["runbook_url"] == (
        "https://wiki.example/gpu-runbook#gpudown"
    )
    extracted = tmp_path / "rules.yml"
    extracted.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    assert promtool("check", "rules", str(extracted)).returncode == 0


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases: dict[str, list[bool]] = {}
    for test in yaml.safe_load(RULES_TEST.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], []).append(bool(case.get("exp_alerts")))
    for alert in alerts():
        name = alert["alert"]
        assert True in cases.get(name, []), f"{name}: no case where it fires"
        assert False in cases.get(name, []), f"{name}: no case where it stays silent"


def _promtool_with_rule_disabled(
    kind: str, name: str, tmp_path: Path,
) -> subprocess.CompletedProcess[str]:
    """``promtool test rules`` on a copy of the rules where rule ``name`` (an ``alert`` or a
    ``record``) can never produce a sample."""
    doc = {"groups": rules_groups()}
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get(kind) == name:
                rule["expr"] = "vector(1) == 0"
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "rules.yml").write_text(yaml.safe_dump(doc))
    (tmp_path / "tests" / "deploy").mkdir(parents=True)
    mutated_test = tmp_path / "tests" / "deploy" / "rules_test.yml"
    mutated_test.write_text(RULES_TEST.read_text())
    return promtool("test", "rules", str(mutated_test))


@pytest.mark.parametrize("name", [a["alert"] for a in alerts()])
def test_each_firing_case_depends_on_its_rule(name: str, tmp_path: Path) -> None:
    # Mutation check: with the alert's expression made impossible, promtool must fail.
    result = _promtool_with_rule_disabled("alert", name, tmp_path)
    assert result.returncode != 0, f"the tests still pass with {name} unable to fire"


@pytest.mark.parametrize("name", [r["record"] for r in records()])
def test_each_recording_rule_is_checked_by_the_unit_tests(name: str, tmp_path: Path) -> None:
    # Mutation check: with the rule recording nothing, promtool must fail.
    result = _promtool_with_rule_disabled("record", name, tmp_path)
    assert result.returncode != 0, f"the tests still pass with {name} recording nothing"


def test_workload_accounting_rules() -> None:
    # Issue 10: GPU-hours and kWh per namespace per day, and "idle but allocated", over the
    # gpu_exporter_workload_* families (values checked by promtool in rules_test.yml).
    by_record = {r["record"]: r["expr"] for r in records()}
    gpu_seconds = by_record["namespace:gpu_exporter_workload_gpu_seconds:sum1d"]
    assert "namespace:gpu_exporter_workload_sm_utilization_ratio:sum[1d:1m]" in gpu_seconds
    joules = by_record["namespace:gpu_exporter_workload_energy_joules:sum1d"]
    assert "namespace:gpu_exporter_workload_energy_joules:rate5m[1d:1m]" in joules
    for name in ("namespace:gpu_exporter_workload_sm_utilization_ratio:sum",
                 "namespace:gpu_exporter_workload_energy_joules:rate5m"):
        assert by_record[name].startswith("sum by (namespace) (gpu_exporter_workload_") or (
            by_record[name].startswith("sum by (namespace) (rate(gpu_exporter_workload_"))
    # Every group runs at the global evaluation interval (an hourly group would stay
    # unevaluated for up to an hour after Prometheus starts).
    assert all("interval" not in g for g in rules_groups())
    idle = next(a["expr"] for a in alerts() if a["alert"] == "GpuAllocatedButIdle")
    assert "gpu_exporter_gpu_allocated" in idle
    assert "gpu_exporter_workload_sm_utilization_ratio" in idle


def test_documented_workload_queries_are_the_tested_ones() -> None:
    # Every PromQL block of docs/kubernetes.md's accounting section is checked, verbatim, by
    # a promql_expr_test with expected values in rules_test.yml.
    doc = (ROOT / "docs" / "kubernetes.md").read_text()
    start = doc.index("## Accounting: GPU-hours and kWh per namespace")
    section = doc[start:doc.index("\n## ", start + 1)]
    documented = [b.strip() for b in re.findall(r"```promql\n(.*?)```", section, re.DOTALL)]
    assert len(documented) == 4
    tested = {case["expr"].strip() for test in yaml.safe_load(RULES_TEST.read_text())["tests"]
              for case in test.get("promql_expr_test", []) if case.get("exp_samples")}
    for query in documented:
        assert query in tested, f"docs/kubernetes.md query not tested: {query}"
    recorded = {r["record"] for r in records()}
    for name in re.findall(r"`(namespace:gpu_exporter_workload_\w+:\w+)`", section):
        assert name in recorded, name


def runbook_anchors() -> set[str]:
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if m:
            title = re.sub(r"[^\w\- ]", "", m.group(1).lower())
            anchors.add(title.replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: a["alert"])
def test_alert_metadata(alert: dict[str, Any]) -> None:
    assert alert["labels"]["severity"] in SEVERITIES
    annotations = alert["annotations"]
    assert annotations["summary"]
    assert annotations["description"]
    url, _, anchor = annotations["runbook_url"].partition("#")
    assert url == "docs/runbook.md"
    assert anchor == alert["alert"].lower()
    assert anchor in runbook_anchors(), f"docs/runbook.md has no section for {alert['alert']}"


def test_xid_codes_are_the_exporters_action_catalogue() -> None:
    from chart_render import chart_defaults

    assert chart_defaults()["prometheusRule"]["xidCodes"] == sorted(ACTION_XIDS)
    expr = next(a["expr"] for a in alerts() if a["alert"] == "GpuXidErrorNeedsAction")
    assert f'xid=~"{"|".join(str(c) for c in sorted(ACTION_XIDS))}"' in expr


def test_required_alerts_exist() -> None:
    exprs = {a["alert"]: a["expr"] for a in alerts()}
    assert "DCGM_FI_DEV_GPU_UTIL > 90" in exprs["GpuHighUtilization"]
    assert "DCGM_FI_DEV_FB_USED / DCGM_FI_DEV_FB_TOTAL > 0.95" in exprs["GpuFramebufferMemoryHigh"]
    assert "DCGM_FI_DEV_GPU_TEMP > 85" in exprs["GpuTemperatureHigh"]
    assert "/ DCGM_FI_DEV_POWER_MGMT_LIMIT > 0.9" in exprs["GpuPowerNearLimit"]
    for xid in ("79", "48", "63", "64", "94", "95"):
        assert re.search(rf'xid=~"[^"]*\b{xid}\b', exprs["GpuXidErrorNeedsAction"])
    assert "DCGM_FI_DEV_ROW_REMAP_FAILURE" in exprs["GpuRowRemapFailure"]
    assert "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL" in exprs["GpuDoubleBitEccErrors"]
    assert "gpu_exporter_gpu_up == 0" in exprs["GpuDown"]
    assert "gpu_exporter_gpu_up" in exprs["GpuMissing"]
    assert exprs["GpuExporterDown"].startswith("up{")
    assert "gpu_exporter_snapshot_timestamp_seconds" in exprs["GpuExporterStale"]
