"""The prometheus-adapter rules of deploy/prometheus-adapter/values.yaml, filled in for a pod.

prometheus-adapter turns each rule's ``metricsQuery`` template into PromQL by substituting
``<<.Series>>`` (the series name), ``<<.LabelMatchers>>`` (the namespace and pod selectors,
using the label names of ``resources.overrides``) and ``<<.GroupBy>>`` (the pod label). This
module does the same for one pod, so tests can check each query parses and, against a live
Prometheus, returns that pod's series. Pure functions; the only I/O is reading the file.

Other test modules can load it by path (it needs no package)::

    spec = importlib.util.spec_from_file_location("adapter_rules", ROOT / "tests/deploy/adapter.py")
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ADAPTER_VALUES = ROOT / "deploy" / "prometheus-adapter" / "values.yaml"

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*")


@dataclass(frozen=True)
class AdapterRule:
    """One custom-metrics rule: the metric name it exposes and its query template."""

    name: str
    series: str
    namespace_label: str
    pod_label: str
    metrics_query: str


def load_rules(path: Path = ADAPTER_VALUES) -> list[AdapterRule]:
    """The custom rules of an adapter values file."""
    values: dict[str, Any] = yaml.safe_load(path.read_text())
    return [parse_rule(rule) for rule in values["rules"]["custom"]]


def parse_rule(rule: dict[str, Any]) -> AdapterRule:
    """One rule of ``rules.custom``; raises ValueError naming what is missing."""
    match = _METRIC_NAME.match(str(rule.get("seriesQuery", "")).strip())
    if match is None:
        raise ValueError(f"rule {rule!r}: seriesQuery must start with a metric name")
    series = match.group(0)
    labels = {
        str(spec.get("resource")): label
        for label, spec in rule.get("resources", {}).get("overrides", {}).items()
    }
    if "namespace" not in labels or "pod" not in labels:
        raise ValueError(f"rule for {series}: resources.overrides must map namespace and pod")
    name_spec = rule.get("name", {})
    # The adapter's "as" uses Go's $1 / ${1} for capture groups.
    replacement = re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", name_spec.get("as", series))
    name = re.sub(name_spec.get("matches", "^$"), replacement, series)
    return AdapterRule(
        name=name,
        series=series,
        namespace_label=labels["namespace"],
        pod_label=labels["pod"],
        metrics_query=str(rule["metricsQuery"]),
    )


def fill(rule: AdapterRule, namespace: str, pod: str) -> str:
    """The PromQL the adapter sends for one pod of ``namespace``."""
    matchers = f'{rule.namespace_label}="{namespace}",{rule.pod_label}="{pod}"'
    query = (
        rule.metrics_query.replace("<<.Series>>", rule.series)
        .replace("<<.LabelMatchers>>", matchers)
        .replace("<<.GroupBy>>", rule.pod_label)
    )
    if "<<" in query:
        raise ValueError(f"rule {rule.name}: unsupported template field left in {query!r}")
    return query


def rendered_queries(namespace: str, pod: str, path: Path = ADAPTER_VALUES) -> dict[str, str]:
    """Custom metric name -> the PromQL the adapter runs for ``namespace``/``pod``."""
    return {rule.name: fill(rule, namespace, pod) for rule in load_rules(path)}
