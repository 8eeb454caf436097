"""helm upgrade in place from NVIDIA's dcgm-exporter chart: same selectors, names and wiring.

The facts of upstream's released chart are recorded in fixtures/upstream-chart/*.json (each
states its source; tests/migration/record_upstream_chart.py wrote them). Every case renders this
chart with the same release name, namespace and values and compares: the DaemonSet selector is
immutable, so it must be identical in keys and values, and every object upstream creates must
exist here under the same kind and name (else "helm upgrade" would delete it and whatever refers
to it by name would break). Values this exporter cannot honour yet must fail the render naming
the key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
from deploy.chart_render import MONITORING_API, documents, render

FIXTURES = Path(__file__).parent / "fixtures" / "upstream-chart"
CASES = sorted(FIXTURES.glob("*.json"))

# Value keys the chart refuses at render until the exporter supports them (the exporter would
# exit 2 at start). When one becomes supported, drop it here: its case is then compared in full.
REFUSED_KEYS = (
    "kubernetes.enablePodLabels",
    "kubernetes.enablePodUID",
    "kubernetes.podLabelAllowlistRegex",
    "kubernetesDRA.enabled",
    "debugDump.enabled",
    "basicAuth.users",
)

# Objects of upstream's that exist here under another kind or name, and why.
#   (upstream kind, name suffix after the full name) -> (our kind, our name suffix)
RENAMED = {
    # The web configuration can carry basic-auth password hashes: a Secret here, not a
    # ConfigMap. Nothing outside the chart refers to it.
    ("ConfigMap", "-web-config.yml"): ("Secret", "-web-config"),
}


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def set_keys(values: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted paths of the values that are set to something other than empty/false."""
    keys = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in REFUSED_KEYS:
            keys |= set_keys(value, f"{path}.")
        elif value:
            keys.add(path)
    return keys


def fullname(release: str) -> str:
    return release if "dcgm-exporter" in release else f"{release}-dcgm-exporter"


def ours_for(case: dict[str, Any]) -> list[dict[str, Any]]:
    rel = case["release"]
    return documents(render(case["values"], api_versions=(MONITORING_API,),
                            name=rel["name"], namespace=rel["namespace"]))


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    return next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name), None)


def env_map(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in entries}


def test_fixtures_state_their_source() -> None:
    assert len(CASES) >= 8
    for path in CASES:
        source = load(path)["source"]
        assert source["repository"] == "https://github.com/NVIDIA/dcgm-exporter"
        assert source["release_tag"]
        assert len(source["release_commit"]) == 40
        assert source["chart"].startswith("helm-charts/dcgm-exporter-")
        assert source["values_from"]
        assert source["recorded"]


def test_fixtures_cover_defaults_and_every_published_example() -> None:
    names = {p.stem for p in CASES}
    assert {"default", "readme-debug-dump", "e2e-default", "e2e-basic-auth", "e2e-tls"} <= names
    # Upstream's selector labels, as recorded: the three keys, component = the chart name.
    (ds,) = [o for o in load(FIXTURES / "default.json")["objects"] if o["kind"] == "DaemonSet"]
    assert ds["selector"] == {
        "app.kubernetes.io/name": "dcgm-exporter",
        "app.kubernetes.io/instance": "dcgm-exporter",
        "app.kubernetes.io/component": "dcgm-exporter",
    }


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_refused_values_fail_the_render_naming_the_key(path: Path) -> None:
    case = load(path)
    refused = sorted(set_keys(case["values"]) & set(REFUSED_KEYS))
    if not refused:
        ours_for(case)  # renders
        return
    with pytest.raises(helm.HelmRenderError) as info:
        ours_for(case)
    assert any(key in str(info.value) for key in refused), str(info.value)


def comparable_cases() -> list[Path]:
    return [p for p in CASES if not set_keys(load(p)["values"]) & set(REFUSED_KEYS)]


@pytest.mark.parametrize("path", comparable_cases(), ids=lambda p: p.stem)
def test_every_upstream_object_exists_with_the_same_kind_and_name(path: Path) -> None:
    case = load(path)
    ours = ours_for(case)
    full = fullname(case["release"]["name"])
    for obj in case["objects"]:
        kind, name = obj["kind"], obj["name"]
        suffix = name[len(full):] if name.startswith(full) else None
        if (kind, suffix) in RENAMED:
            kind, new_suffix = RENAMED[(kind, suffix)]
            name = full + new_suffix
        mine = find(ours, kind, name)
        assert mine is not None, f"upstream creates {obj['kind']} {obj['name']}; ours does not"
        assert mine["metadata"].get("namespace") == obj["namespace"]


@pytest.mark.parametrize("path", comparable_cases(), ids=lambda p: p.stem)
def test_selectors_and_pod_labels_are_identical(path: Path) -> None:
    case = load(path)
    ours = ours_for(case)
    for obj in case["objects"]:
        mine = find(ours, obj["kind"], obj["name"])
        if obj["kind"] == "DaemonSet":
            assert mine is not None
            assert mine["spec"]["selector"]["matchLabels"] == obj["selector"]
            assert mine["spec"]["template"]["metadata"]["labels"] == obj["templateLabels"]
        elif obj["kind"] == "Service":
            assert mine is not None
            assert mine["spec"]["selector"] == obj["selector"]
        elif obj["kind"] == "ServiceMonitor":
            assert mine is not None
            assert mine["spec"]["selector"] == obj["selector"]
            assert mine["spec"]["namespaceSelector"] == obj["namespaceSelector"]
    # Every object's labels carry the selector labels (kubectl -l works as before).
    (ds,) = [o for o in case["objects"] if o["kind"] == "DaemonSet"]
    for doc in ours:
        labels = doc["metadata"]["labels"]
        if doc["kind"] in {o["kind"] for o in case["objects"]}:
            assert {k: labels.get(k) for k in ds["selector"]} == ds["selector"], doc["kind"]


@pytest.mark.parametrize("path", comparable_cases(), ids=lambda p: p.stem)
def test_service_rbac_and_configmap_wiring_match(path: Path) -> None:
    case = load(path)
    ours = ours_for(case)
    (ds_fact,) = [o for o in case["objects"] if o["kind"] == "DaemonSet"]
    ds = find(ours, "DaemonSet", ds_fact["name"])
    assert ds is not None
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {p["name"]: p["containerPort"] for p in ds_fact["container"]["ports"]}
    assert c["name"] == ds_fact["container"]["name"]
    assert c.get("args") == ds_fact["container"]["args"]
    assert ds["spec"]["template"]["spec"]["serviceAccountName"] == ds_fact["serviceAccountName"]
    # The environment upstream's chart sets is set here to the same values.
    mine_env = env_map(c["env"])
    for name, value in env_map(ds_fact["container"]["env"]).items():
        assert mine_env.get(name) == value, name
    # The liveness probe checks the same thing on the same port (HTTP path, or TCP port).
    theirs_probe = ds_fact["container"]["livenessProbe"]
    (handler,) = {"httpGet", "tcpSocket"} & set(theirs_probe)
    mine_probe = c["livenessProbe"][handler]
    assert ports.get(mine_probe["port"], mine_probe["port"]) == theirs_probe[handler]["port"]
    if handler == "httpGet":
        assert mine_probe["path"] == theirs_probe[handler]["path"]
    for obj in case["objects"]:
        mine = find(ours, obj["kind"], obj["name"])
        if obj["kind"] == "Service":
            assert mine is not None
            (theirs,) = obj["ports"]
            (port,) = mine["spec"]["ports"]
            assert (port["name"], port["port"], port["protocol"]) == (
                theirs["name"], theirs["port"], theirs["protocol"])
            target = port["targetPort"]
            assert ports.get(target, target) == theirs["targetPort"]
        elif obj["kind"] == "ServiceMonitor":
            assert mine is not None
            (ep,) = mine["spec"]["endpoints"]
            (theirs,) = obj["endpoints"]
            assert (ep["port"], ep["path"]) == (theirs["port"], theirs["path"])
        elif obj["kind"] in ("Role", "ClusterRole"):
            assert mine is not None
            if obj["kind"] == "Role":
                assert mine["rules"] == obj["rules"]
        elif obj["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            assert mine is not None
            assert mine["roleRef"] == obj["roleRef"]  # immutable, like the selector
            assert mine["subjects"] == obj["subjects"]
        elif obj["kind"] == "ConfigMap" and mine is not None:
            assert set(obj["dataKeys"]) <= set(mine["data"])


def test_custom_metrics_land_in_upstreams_configmap_key() -> None:
    case = load(FIXTURES / "values-custom-metrics.json")
    cm = find(ours_for(case), "ConfigMap", "exporter-metrics-config-map")
    assert cm is not None
    assert cm["data"]["metrics"] == case["values"]["customMetrics"]
    assert cm["data"]["default-counters.csv"] == case["values"]["customMetrics"]
