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
from deploy.chart_render import MONITORING_API, chart_defaults, documents, render

FIXTURES = Path(__file__).parent / "fixtures" / "upstream-chart"
CASES = sorted(FIXTURES.glob("*.json"))

# Value keys the chart refuses at render until the exporter supports them (the exporter would
# exit 2 at start). When one becomes supported, drop it here: its case is then compared in full.
REFUSED_KEYS = (
    "debugDump.enabled",
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
    if handler == "tcpSocket" and "httpGet" in c["livenessProbe"]:
        # With basic auth upstream only checks that the port accepts connections; here the
        # probes ask /health on the plain-HTTP probe listener (docs/security.md#probes).
        assert c["livenessProbe"]["httpGet"] == {
            "path": "/health", "port": chart_defaults()["service"]["probePort"], "scheme": "HTTP"}
        assert mine_env["GPU_EXPORTER_WEB_PROBE_ADDRESS"] == (
            f":{chart_defaults()['service']['probePort']}")
        handler = ""
    mine_probe = c["livenessProbe"].get(handler, {})
    if handler:
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


# --- every value key of upstream's newest chart: honoured or refused, never ignored ----------

KEYS = json.loads((FIXTURES.parent / "upstream-chart-keys.json").read_text())

_TLS = {"tlsServerConfig": {"enabled": True}}
_TLS_PEM = {"tlsServerConfig": {"enabled": True, "autoGenerated": False, "cert": "CERT",
                                "key": "KEY"}}
_RULE = [{"action": "keep", "regex": "x", "sourceLabels": ["a"]}]

# key -> (context values, value for the key). The context switches on what the key depends on
# (as in upstream's templates); the test compares the render with and without the key's value.
PROBES: dict[str, tuple[dict[str, Any], Any]] = {
    "affinity": ({}, {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "gpu", "operator": "Exists"}]}]}}}),
    "arguments": ({}, ["-f", "/etc/dcgm-exporter/dcp-metrics-included.csv"]),
    "basicAuth.users": ({}, {"prom": "secret"}),
    "customMetrics": ({}, "DCGM_FI_DEV_GPU_TEMP, gauge, GPU temperature (in C).\n"),
    "debugDump.compression": ({"debugDump": {"enabled": True}}, False),
    "debugDump.directory": ({"debugDump": {"enabled": True}}, "/var/log/dump"),
    "debugDump.enabled": ({}, True),
    "debugDump.retention": ({"debugDump": {"enabled": True}}, 48),
    "extraConfigMapVolumes": ({}, [{"name": "v", "configMap": {"name": "c"}}]),
    "extraEnv": ({}, [{"name": "KUBERNETES_VIRTUAL_GPUS", "value": "true"}]),
    "extraHostVolumes": ({}, [{"name": "h", "hostPath": "/opt/bin"}]),
    "extraVolumeMounts": ({"extraHostVolumes": [{"name": "h", "hostPath": "/opt/bin"}]},
                          [{"name": "h", "mountPath": "/opt/bin"}]),
    "fullnameOverride": ({}, "gpu-metrics"),
    "image.pullPolicy": ({}, "Always"),
    "image.repository": ({}, "registry.example.com/gpu-exporter"),
    "image.tag": ({}, "9.9.9"),
    "imagePullSecrets": ({}, [{"name": "pull"}]),
    "kubeletPath": ({}, "/data/kubelet/pod-resources"),
    "kubernetes.enablePodLabels": ({}, True),
    "kubernetes.enablePodUID": ({}, True),
    "kubernetes.podLabelAllowlistRegex": ({}, ["^app$"]),
    "kubernetes.rbac.create": ({"kubernetes": {"enablePodLabels": True}}, False),
    "kubernetesDRA.enabled": ({}, True),
    "nameOverride": ({}, "gpu"),
    "namespaceOverride": ({}, "monitoring"),
    "nodeSelector": ({}, {"node": "gpu"}),
    "podAnnotations": ({}, {"a": "b"}),
    "podLabels": ({}, {"team": "ml"}),
    "podSecurityContext": ({}, {"fsGroup": 2000}),
    "priorityClassName": ({}, "gpu-monitoring"),
    "runtimeClassName": ({}, "nvidia"),
    "securityContext.capabilities.add": ({}, ["SYS_ADMIN"]),
    "securityContext.capabilities.drop": ({}, ["NET_RAW"]),
    "service.address": ({}, ":9500"),
    "service.annotations": ({}, {"a": "b"}),
    "service.clusterIP": ({}, "None"),
    "service.internalTrafficPolicy": ({}, "Cluster"),
    "service.port": ({}, 9500),
    "service.type": ({}, "NodePort"),
    "serviceAccount.annotations": ({}, {"a": "b"}),
    "serviceAccount.name": ({}, "gpu-sa"),
    "serviceMonitor.additionalLabels": ({}, {"release": "prometheus"}),
    "serviceMonitor.apiVersion": ({}, "monitoring.example.com/v1"),
    "serviceMonitor.interval": ({}, "45s"),
    "serviceMonitor.metricRelabelings": ({}, _RULE),
    "serviceMonitor.relabelings": ({}, _RULE),
    "serviceMonitor.scrapeTimeout": ({}, "5s"),
    "tlsServerConfig.autoGenerated": (_TLS_PEM, True),
    "tlsServerConfig.ca": (_TLS_PEM, "CA"),
    "tlsServerConfig.caFilename": ({"tlsServerConfig": {
        "enabled": True, "clientAuthType": "RequireAndVerifyClientCert"}}, "client-ca.crt"),
    "tlsServerConfig.cert": (_TLS_PEM, "OTHER CERT"),
    "tlsServerConfig.certFilename": (_TLS, "server.crt"),
    "tlsServerConfig.clientAuthType": (_TLS, "RequireAndVerifyClientCert"),
    "tlsServerConfig.enabled": ({}, True),
    "tlsServerConfig.existingSecret": (_TLS, "my-cert"),
    "tlsServerConfig.key": (_TLS_PEM, "OTHER KEY"),
    "tlsServerConfig.keyFilename": (_TLS, "server.key"),
    "tolerations": ({}, [{"key": "dedicated", "operator": "Exists"}]),
}


def _nest(path: str, value: Any) -> dict[str, Any]:
    for part in reversed(path.split(".")):
        value = {part: value}
    return value  # type: ignore[no-any-return]


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)  # type: ignore[assignment]
    else:
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat |= _flat(value, f"{prefix}/{key}")
    return flat


def _rendered(values: dict[str, Any]) -> dict[str, Any]:
    out = render(values, api_versions=(MONITORING_API,))
    flat: dict[str, Any] = {}
    for template, text in out.items():
        if template.endswith("NOTES.txt"):
            flat[template] = text
        else:
            flat |= _flat(documents({template: text}), template)
    return flat


def _probe(key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(context, context with the key set to a value other than this chart's default)."""
    if key in PROBES:
        context, value = PROBES[key]
        return context, _merge(context, _nest(key, value))
    node: Any = chart_defaults()
    for part in key.split("."):
        node = node[part]
    if isinstance(node, bool):
        value = not node
    elif isinstance(node, int):
        value = node + 7
    elif isinstance(node, str) and node.endswith(("m", "Mi")):  # resources
        value = "7" + node[-2:] if node.endswith("Mi") else "7m"
    else:
        raise AssertionError(f"add a probe value for {key} ({node!r})")
    return {}, _nest(key, value)


def test_every_upstream_key_has_a_probe_and_the_list_is_upstreams() -> None:
    assert KEYS["source"]["release_tag"]
    assert len(KEYS["keys"]) >= 70
    for key in KEYS["keys"]:
        _probe(key)  # raises for a key the test cannot set


@pytest.mark.parametrize("key", KEYS["keys"])
def test_every_upstream_key_is_honoured_or_refused_naming_it(key: str) -> None:
    context, probed = _probe(key)
    section = key.split(".", maxsplit=1)[0]
    try:
        # A key that only matters once its feature is on (debugDump.directory, ...) is refused
        # with that feature when the feature is.
        base = _rendered(context)
        noise = {p for p, v in _rendered(context).items() if base.get(p) != v}  # random certs
        result = _rendered(probed)
    except (helm.HelmRenderError, helm.HelmValuesError) as err:
        message = str(err)
        assert key in message or f"{section}." in message or f"/{section}" in message, message
        return
    changed = {p for p in base.keys() | result.keys()
               if p not in noise and base.get(p) != result.get(p)}
    assert changed, f"{key}: setting it changes nothing in the rendered chart (ignored)"
