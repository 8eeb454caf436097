"""prometheus-adapter rules and the example HPA."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from adapter import ADAPTER_VALUES, AdapterRule, fill, load_rules, parse_rule, rendered_queries

ROOT = Path(__file__).resolve().parents[2]
HPA = ROOT / "deploy" / "hpa-example.yaml"


def test_rules_expose_per_pod_gpu_utilization_and_memory() -> None:
    rules = load_rules()
    names = {r.name for r in rules}
    assert {"gpu_utilization", "gpu_memory_used_bytes", "gpu_memory_used_ratio"} <= names
    for rule in rules:
        assert (rule.namespace_label, rule.pod_label) == ("namespace", "pod")
        for field in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
            assert field in rule.metrics_query, f"{rule.name}: {field} missing"
    raw = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    for spec in raw:
        assert 'namespace!=""' in spec["seriesQuery"]
        assert 'pod!=""' in spec["seriesQuery"]


def test_rendered_queries_for_a_pod() -> None:
    queries = rendered_queries("ml", "train-0")
    assert queries["gpu_utilization"] == (
        'avg by (pod) (DCGM_FI_DEV_GPU_UTIL{namespace="ml",pod="train-0"})'
    )
    assert queries["gpu_memory_used_ratio"] == (
        'sum by (pod) (DCGM_FI_DEV_FB_USED{namespace="ml",pod="train-0"})'
        ' / sum by (pod) (DCGM_FI_DEV_FB_TOTAL{namespace="ml",pod="train-0"})'
    )
    for query in queries.values():
        assert "<<" not in query


def test_fill_uses_the_override_label_names() -> None:
    rule = parse_rule({
        "seriesQuery": 'DCGM_FI_DEV_GPU_UTIL{exported_pod!=""}',
        "resources": {"overrides": {"exported_namespace": {"resource": "namespace"},
                                    "exported_pod": {"resource": "pod"}}},
        "name": {"matches": "^DCGM_FI_DEV_(.*)$", "as": "dcgm_${1}"},
        "metricsQuery": "max by (<<.GroupBy>>) (<<.Series>>{<<.LabelMatchers>>})",
    })
    assert rule == AdapterRule(
        "dcgm_GPU_UTIL", "DCGM_FI_DEV_GPU_UTIL", "exported_namespace", "exported_pod",
        "max by (<<.GroupBy>>) (<<.Series>>{<<.LabelMatchers>>})",
    )
    assert fill(rule, "a", "b") == (
        'max by (exported_pod) (DCGM_FI_DEV_GPU_UTIL{exported_namespace="a",exported_pod="b"})'
    )
    with pytest.raises(ValueError, match="unsupported template field"):
        fill(AdapterRule("x", "m", "namespace", "pod", "<<.Resource>>"), "a", "b")


def test_rendered_queries_parse_with_promtool(tmp_path: Path) -> None:
    exe = shutil.which("promtool")
    assert exe, "promtool not found: apt-get install --no-install-recommends prometheus"
    queries = rendered_queries("ml", "train-0")
    rules = {"groups": [{"name": "adapter", "rules": [
        {"record": f"adapter:{name}", "expr": query} for name, query in queries.items()
    ]}]}
    path = tmp_path / "adapter-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([exe, "check", "rules", str(path)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout
    # And a broken query is caught by the same check.
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "x", "expr": "sum by (pod (x)"}]}]}))
    assert subprocess.run([exe, "check", "rules", str(path)], capture_output=True,
                          timeout=60, check=False).returncode != 0


def test_hpa_example_validates_and_uses_adapter_metrics() -> None:
    docs = [d for d in yaml.safe_load_all(HPA.read_text()) if d]
    (hpa,) = docs
    for version in ("1.25", kubernetes_validate.utils.latest_version()):
        kubernetes_validate.validate(hpa, version, strict=True)
    assert hpa["apiVersion"] == "autoscaling/v2"
    exposed = {r.name for r in load_rules()}
    used = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert used
    assert used <= exposed
