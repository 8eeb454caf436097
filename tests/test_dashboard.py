"""Structure of dashboards/gpu-exporter.json, checked without Grafana.

What a Grafana server would reject or render badly: panel ids, grid positions, overlapping
panels, deprecated panel types, the datasource variable that makes both the UI import and
sidecar provisioning work, and queries that are empty or do not parse. Whether each query
returns data is proven against a real Prometheus in tests/e2e/test_e2e.py.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from e2e import dashboard as dash

DASHBOARD = dash.load()
PANELS = list(dash.all_panels(DASHBOARD))
DATA_PANELS = [panel for panel in PANELS if panel["type"] != "row"]
VARIABLES = dash.variables(DASHBOARD)
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def test_current_schema_and_identity() -> None:
    assert DASHBOARD["schemaVersion"] >= 39
    assert DASHBOARD["title"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", DASHBOARD["uid"])
    assert DASHBOARD["id"] is None  # importable into any Grafana


def test_panel_types_are_current() -> None:
    assert {panel["type"] for panel in PANELS} <= {"row", "timeseries", "stat", "table"}
    assert any(panel["type"] == "timeseries" for panel in PANELS)


def test_panel_ids_are_unique_integers() -> None:
    ids = [panel["id"] for panel in PANELS]
    assert all(isinstance(panel_id, int) and not isinstance(panel_id, bool) for panel_id in ids)
    assert len(ids) == len(set(ids))


def test_grid_positions_are_integers_inside_the_grid() -> None:
    for panel in PANELS:
        pos = panel["gridPos"]
        assert set(pos) == {"x", "y", "w", "h"}, panel["title"]
        assert all(isinstance(pos[key], int) for key in "xywh"), panel["title"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["y"] >= 0, panel["title"]
        assert pos["w"] >= 1, panel["title"]
        assert pos["h"] >= 1, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]


def _overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def test_no_panels_overlap() -> None:
    top_level = DASHBOARD["panels"]
    for first, second in itertools.combinations(top_level, 2):
        assert not _overlap(first["gridPos"], second["gridPos"]), (
            f"{first['title']!r} overlaps {second['title']!r}"
        )


def test_overlap_check_detects_overlap() -> None:
    # The check above must be able to fail: the upstream dashboard's defect, two panels at 0,24.
    assert _overlap({"x": 0, "y": 24, "w": 12, "h": 8}, {"x": 0, "y": 24, "w": 6, "h": 4})
    assert not _overlap({"x": 0, "y": 0, "w": 12, "h": 8}, {"x": 12, "y": 0, "w": 12, "h": 8})


def test_datasource_variable_serves_ui_import_and_sidecar_provisioning() -> None:
    var = VARIABLES["datasource"]
    assert var["type"] == "datasource"
    assert var["query"] == "prometheus"
    inputs = DASHBOARD["__inputs"]
    assert [item["pluginId"] for item in inputs if item["type"] == "datasource"] == ["prometheus"]
    # Panels name the variable, never a provisioning-time placeholder such as ${DS_PROMETHEUS},
    # which the sidecar would leave unresolved.
    for panel in DATA_PANELS:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
    for var in VARIABLES.values():
        if var["type"] == "query":
            assert var["datasource"] == DATASOURCE, var["name"]


def test_filter_variables_exist_with_all_option() -> None:
    for name in ("node", "gpu", "namespace", "pod", "mig_profile", "mig_instance"):
        var = VARIABLES[name]
        assert var["type"] == "query", name
        assert var["includeAll"] is True, name
        assert var["allValue"] == ".*", name


def test_every_data_panel_has_queries_with_expressions() -> None:
    for panel in DATA_PANELS:
        targets = panel.get("targets", [])
        assert targets, panel["title"]
        ref_ids = [target["refId"] for target in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in targets:
            assert target.get("expr", "").strip(), f"{panel['title']} {target['refId']}"


def test_queries_use_only_defined_variables() -> None:
    values = dash.all_selected(DASHBOARD)
    for query in dash.queries(DASHBOARD):
        assert "$" not in dash.substitute(query.expr, values), query.name
    for var in VARIABLES.values():
        if var["type"] == "query":
            assert "$" not in dash.substitute(dash.variable_query(var), values), var["name"]


def test_substitute_rejects_unknown_variables() -> None:
    with pytest.raises(KeyError):
        dash.substitute('up{job=~"$nope"}', {"gpu": ".*"})
    assert dash.substitute('a{x=~"${gpu}", y=~"[[gpu]]", z=~"$gpu"}', {"gpu": ".*"}) == (
        'a{x=~".*", y=~".*", z=~".*"}'
    )


def test_every_query_parses(tmp_path: Path) -> None:
    """Every panel and variable query, variables filled in, parses as PromQL (promtool)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: apt-get install prometheus")
    values = dash.all_selected(DASHBOARD)
    exprs = [dash.substitute(query.expr, values) for query in dash.queries(DASHBOARD)]
    for var in VARIABLES.values():
        if var["type"] != "query":
            continue
        text = dash.substitute(dash.variable_query(var), values)
        label_values = dash.label_values_query(text)
        query_result = dash.query_result_query(text)
        assert label_values or query_result, f"unsupported variable query form: {text}"
        exprs.append(label_values[0] if label_values else str(query_result))
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{index}", "expr": expr} for index, expr in enumerate(exprs)
    ]}]}
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_panels_not_marked_opt_in_need_only_default_counters() -> None:
    """With the shipped default counters file, every panel not marked opt-in has its data."""
    counters = dash.ROOT / "counters" / "default-counters.csv"
    default_rows = {line.split(",", 1)[0].strip()
                    for line in counters.read_text(encoding="utf-8").splitlines()
                    if line.startswith("DCGM_")}
    for panel in DATA_PANELS:
        if "opt-in" in panel.get("description", ""):
            continue
        for target in panel["targets"]:
            metrics = set(re.findall(r"\b(DCGM_(?:FI|EXP)_\w+)", target["expr"]))
            assert metrics <= default_rows, f"{panel['title']}: {metrics - default_rows}"


def test_panels_that_need_a_gpu_feature_say_so() -> None:
    """A panel that is empty on some GPUs names what it needs (the e2e checks this on a T4)."""
    for panel in DATA_PANELS:
        exprs = " ".join(target["expr"] for target in panel["targets"])
        metrics = set(re.findall(r"\b(DCGM_(?:FI|EXP)_\w+)", exprs))
        description = panel.get("description", "")
        if metrics and all(m.startswith("DCGM_FI_PROF_") for m in metrics):
            assert "Needs Hopper or newer (NVML GPM)" in description, panel["title"]
        if metrics and all(m.startswith("DCGM_FI_DEV_NVLINK_") for m in metrics):
            assert "Needs NVLink" in description, panel["title"]
        assert "opt-in" not in description, panel["title"]  # every row is a default row


def test_queries_reference_only_families_that_exist() -> None:
    """Every metric a panel or variable names is one the exporter can export."""
    from gpu_exporter.catalog import CATALOG
    from gpu_exporter.native import NATIVE_METRICS

    known = {spec.name for spec in CATALOG.values()} | set(NATIVE_METRICS)
    texts = [query.expr for query in dash.queries(DASHBOARD)]
    texts += [dash.variable_query(var) for var in VARIABLES.values() if var["type"] == "query"]
    for text in texts:
        for name in re.findall(r"\b((?:DCGM|gpu_exporter)_\w+)", text):
            assert name in known, f"{name} is no family of the exporter: {text}"


WORKLOAD_ROW = "Shared GPUs: per-workload use"


def test_workload_row_shows_utilisation_and_energy_per_workload() -> None:
    (row,) = [panel for panel in DASHBOARD["panels"] if panel.get("title") == WORKLOAD_ROW]
    assert row["type"] == "row"
    # Collapsed: Grafana queries its panels only when opened, so clusters without
    # --workload-metrics neither see empty panels nor pay for their queries.
    assert row["collapsed"] is True
    inner = row["panels"]
    families: set[str] = set()
    for panel in inner:
        assert "Needs --workload-metrics" in panel["description"], panel["title"]
        assert panel["gridPos"]["y"] > row["gridPos"]["y"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\b((?:DCGM|gpu_exporter)_\w+)", target["expr"]))
            assert names, panel["title"]
            assert all(name.startswith("gpu_exporter_workload_") for name in names)
            # Per workload: grouped by the workload labels, never summed across workloads.
            assert "workload" in target["expr"], panel["title"]
            families |= names
    assert {"gpu_exporter_workload_sm_utilization_ratio",
            "gpu_exporter_workload_energy_joules_total"} <= families
    for first, second in itertools.combinations(inner, 2):
        assert not _overlap(first["gridPos"], second["gridPos"]), (
            f"{first['title']!r} overlaps {second['title']!r}")
    # Only this row needs the flag.
    outside = [panel for panel in PANELS if panel not in inner]
    assert not any("Needs --workload-metrics" in panel.get("description", "")
                   for panel in outside)
