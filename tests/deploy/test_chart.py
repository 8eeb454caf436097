"""The Helm chart: lint, render with several values files, validate every object strictly."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import bcrypt
import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from chart_render import (
    CHART,
    MONITORING_API,
    ROOT,
    by_kind,
    chart_defaults,
    documents,
    generated,
    render,
)
from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor

from gpu_exporter.cli import FLAGS, build_config, build_parser, resolve
from gpu_exporter.config import DcgmSettings
from gpu_exporter.configfile import parse_config_file
from gpu_exporter.webconfig import parse_web_config, ssl_context

VALUES_DIR = Path(__file__).parent / "values"
VALUES_FILES = sorted(VALUES_DIR.glob("*.yaml"))
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
# Oldest schema kubernetes-validate ships (the chart needs >= 1.22) and the newest.
K8S_VERSIONS = ("1.25", kubernetes_validate.utils.latest_version())
CRD_MODELS = {"ServiceMonitor": ServiceMonitor, "PrometheusRule": PrometheusRule}


def load_values(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    return loaded or {}


def daemonset(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (ds,) = by_kind(docs, "DaemonSet")
    return ds


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (c,) = daemonset(docs)["spec"]["template"]["spec"]["containers"]
    return c


def env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(docs)["env"]}


def validate_strictly(docs: list[dict[str, Any]]) -> None:
    """Built-in kinds against the Kubernetes schemas (strict), CRDs against their models."""
    assert docs
    for doc in docs:
        kind = doc["kind"]
        if kind in CRD_MODELS:
            CRD_MODELS[kind].model_validate(doc)
            continue
        for version in K8S_VERSIONS:
            # SchemaNotFoundError for a built-in kind fails the test too.
            kubernetes_validate.validate(doc, version, strict=True)


# --- every values file: lint, render, validate -------------------------------------------


@pytest.mark.parametrize("values_file", VALUES_FILES + EXAMPLES, ids=lambda p: p.name)
def test_lint_is_clean_in_strict_mode(values_file: Path) -> None:
    report = helm.lint(CHART, load_values(values_file), strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("values_file", VALUES_FILES + EXAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("api", [(), (MONITORING_API,)], ids=["no-monitoring-api", "with-api"])
def test_every_object_validates_strictly(values_file: Path, api: tuple[str, ...]) -> None:
    docs = documents(render(load_values(values_file), api_versions=api))
    validate_strictly(docs)
    kinds = {d["kind"] for d in docs}
    assert {"DaemonSet", "ConfigMap", "ServiceAccount", "Service"} <= kinds


def test_validation_catches_a_wrong_type() -> None:
    # The validator in use really rejects bad objects (guards against a silently lax check).
    docs = documents(render())
    ds = daemonset(docs)
    ds["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "9400"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_strictly([ds])
    ds["spec"]["template"]["spec"]["containers"][0]["ports"][0] = {"containerPort": 1, "x": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_strictly([ds])


# --- defaults -------------------------------------------------------------------------------


def test_daemonset_defaults() -> None:
    docs = documents(render())
    pod = daemonset(docs)["spec"]["template"]["spec"]
    c = container(docs)
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    tolerations = {(t["key"], t.get("effect")) for t in pod["tolerations"]}
    assert ("nvidia.com/gpu", "NoSchedule") in tolerations
    assert ("node-role.kubernetes.io/control-plane", "NoSchedule") in tolerations
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["automountServiceAccountToken"] is False
    # pod-resources: the directory, read-only, from the host.
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["pod-resources"]["hostPath"]["path"] == "/var/lib/kubelet/pod-resources"
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["pod-resources"] == {
        "name": "pod-resources", "mountPath": "/var/lib/kubelet/pod-resources", "readOnly": True
    }
    # Counters: a directory mount (no subPath), so ConfigMap edits reach the pod.
    assert mounts["config"]["mountPath"] == "/etc/dcgm-exporter"
    assert all("subPath" not in m for m in c["volumeMounts"])
    assert c["args"] == ["-f", "/etc/dcgm-exporter/default-counters.csv"]
    e = env(docs)
    assert e["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert e["DCGM_EXPORTER_KUBERNETES"] == "true"
    assert e["DCGM_EXPORTER_LISTEN"] == ":9400"
    assert e["DCGM_EXPORTER_INTERVAL"] == "30000"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["readinessProbe"]["initialDelaySeconds"] <= 5
    sc = c["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert c["resources"]["requests"]
    assert c["resources"]["limits"]


def test_node_selector_default_can_be_removed_with_null() -> None:
    values = {"nodeSelector": {"nvidia.com/gpu.present": None, "accelerator": "nvidia"}}
    pod = daemonset(documents(render(values)))["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"accelerator": "nvidia"}
    pod = daemonset(documents(render({"nodeSelector": None})))["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod


def test_node_selector_like_upstream_and_gpu_default_removable() -> None:
    # A user's nodeSelector chooses the nodes exactly, as with upstream's chart (not merged
    # with the GPU default, whose label a cluster without GPU feature discovery lacks).
    pod = daemonset(documents(render({"nodeSelector": {"node": "gpu"}})))["spec"]["template"]
    assert pod["spec"]["nodeSelector"] == {"node": "gpu"}
    # Upstream's "nodeSelector: {}" keeps the GPU default; gpuNodesOnly=false removes it.
    pod = daemonset(documents(render({"nodeSelector": {}})))["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    rendered = render({"nodeSelector": {}, "gpuNodesOnly": False})
    pod = daemonset(documents(rendered))["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod
    assert "gpuNodesOnly=false" in render()["dcgm-exporter/templates/NOTES.txt"]
    assert "gpuNodesOnly" not in rendered["dcgm-exporter/templates/NOTES.txt"]
    assert "gpuNodesOnly: true" in (CHART / "values.yaml").read_text()


def test_service_is_node_local_by_default_and_configurable() -> None:
    (svc,) = by_kind(documents(render()), "Service")
    assert svc["spec"]["internalTrafficPolicy"] == "Local"
    (svc,) = by_kind(
        documents(render({"service": {"internalTrafficPolicy": "Cluster"}})), "Service"
    )
    assert svc["spec"]["internalTrafficPolicy"] == "Cluster"


def test_servicemonitor_needs_its_api_or_force() -> None:
    assert by_kind(documents(render()), "ServiceMonitor") == []
    rendered = render()
    assert "does not serve monitoring.coreos.com/v1/ServiceMonitor" in rendered[
        "dcgm-exporter/templates/NOTES.txt"
    ]
    for docs in (
        documents(render(api_versions=(MONITORING_API,))),
        documents(render(api_versions=(f"{MONITORING_API}/ServiceMonitor",))),
        documents(render({"serviceMonitor": {"force": True}})),
    ):
        (sm,) = by_kind(docs, "ServiceMonitor")
        ServiceMonitor.model_validate(sm)


def test_servicemonitor_defaults() -> None:
    (sm,) = by_kind(documents(render(api_versions=(MONITORING_API,))), "ServiceMonitor")
    (ep,) = sm["spec"]["endpoints"]
    assert ep["honorLabels"] is True
    assert ep["interval"] == "30s"  # == the collect interval
    assert ep["port"] == "metrics"
    assert ep["path"] == "/metrics"
    actions = [(r.get("action"), r.get("regex"), r.get("targetLabel")) for r in ep["relabelings"]]
    assert ("replace", None, "node") in actions
    assert ("labeldrop", "pod|namespace|container", None) in actions


def test_servicemonitor_interval_shorter_than_collect_interval_warns() -> None:
    # Upstream allows it (e.g. -c 30000 with its default 15 s interval): warn, do not fail.
    values = {"arguments": ["-f", "/etc/dcgm-exporter/default-counters.csv", "-c", "30000"],
              "serviceMonitor": {"interval": "15s"}}
    rendered = render(values, api_versions=(MONITORING_API,))
    (sm,) = by_kind(documents(rendered), "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["interval"] == "15s"
    notes = rendered["dcgm-exporter/templates/NOTES.txt"]
    assert re.search(r"WARNING: serviceMonitor\.interval \(15s\) is shorter than the collect "
                     r"interval \(30000 ms, from arguments\)", notes)
    values = {"collectInterval": 20000, "serviceMonitor": {"interval": "15s"}}
    assert "from collectInterval" in render(values)["dcgm-exporter/templates/NOTES.txt"]
    assert "WARNING: serviceMonitor.interval" not in render()["dcgm-exporter/templates/NOTES.txt"]
    with pytest.raises(helm.HelmRenderError, match=r"DCGM_EXPORTER_INTERVAL"):
        render({"extraEnv": [{"name": "DCGM_EXPORTER_INTERVAL", "value": "abc"}]})
    with pytest.raises(helm.HelmValuesError, match=r"/serviceMonitor/interval"):
        render({"serviceMonitor": {"interval": "15 s"}})


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"service": {"port": "9400"}}, "/service/port"),
        ({"service": {"internalTrafficPolicy": "local"}}, "/service/internalTrafficPolicy"),
        ({"collectInterval": "30s"}, "/collectInterval"),
        ({"prometheusRule": {"xidCodes": ["79"]}}, "/prometheusRule/xidCodes/0"),
        ({"tlsServerConfig": {"clientAuthType": "mTLS"}}, "/tlsServerConfig/clientAuthType"),
        ({"extraEnv": [{"value": "x"}]}, "/extraEnv/0"),
    ],
)
def test_schema_rejects_bad_values_naming_the_key(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=where):
        render(values)


@pytest.mark.parametrize("key", ["networkPolicy", "createRuntimeClass", "serviceMonitr"])
def test_unknown_top_level_keys_are_refused_naming_them(key: str) -> None:
    # A key of a newer upstream chart (or a typo) fails instead of being silently ignored.
    with pytest.raises(helm.HelmValuesError, match=rf"additional properties '{key}' not allowed"):
        render({key: {"enabled": True}})


def test_listen_address_and_service_port_must_agree() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"address \(:9500\) listens on port 9500"):
        render({"service": {"address": ":9500"}})
    docs = documents(render({"service": {"address": "[::]:9500", "port": 9500}}))
    assert container(docs)["ports"][0]["containerPort"] == 9500
    assert env(docs)["DCGM_EXPORTER_LISTEN"] == "[::]:9500"


def test_packaged_chart_carries_the_linked_files(tmp_path: Path) -> None:
    # files/*.csv and dashboards/*.json are symbolic links into counters/ and dashboards/:
    # the packaged chart must hold their contents.
    with helm.Chart.load(CHART) as chart:
        archive = Path(chart.save(tmp_path))
    with helm.Chart.load_archive(archive.read_bytes()) as packaged:
        files = {f["name"]: f["data"] for f in packaged.files}
    for name in ("default-counters.csv", "dcp-metrics-included.csv",
                 "1.x-compatibility-metrics.csv"):
        assert files[f"files/{name}"] == (ROOT / "counters" / name).read_text()
    assert files["dashboards/gpu-exporter.json"] == (
        ROOT / "dashboards" / "gpu-exporter.json").read_text()
    assert not any(name.startswith("examples/") for name in files)


def test_scrape_timeout_longer_than_interval_fails() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"scrapeTimeout \(40s\) is longer"):
        render({"serviceMonitor": {"scrapeTimeout": "40s"}})


@pytest.mark.parametrize(
    ("values", "collect_env", "interval"),
    [
        ({}, "30000", "30s"),
        ({"collectInterval": 5000}, "5000", "5s"),
        ({"serviceMonitor": {"interval": "1m30s"}}, "90000", "1m30s"),
        ({"collectInterval": 1500, "serviceMonitor": {"interval": "2s"}}, "1500", "2s"),
        ({"arguments": ["-c", 10000]}, None, "10s"),
        ({"arguments": ["--collect-interval=2500"]}, None, "2500ms"),
        ({"extraEnv": [{"name": "DCGM_EXPORTER_INTERVAL", "value": "20000"}]}, "20000", "20s"),
    ],
)
def test_collect_and_scrape_intervals_agree(
    values: dict[str, Any], collect_env: str | None, interval: str
) -> None:
    docs = documents(render(values, api_versions=(MONITORING_API,)))
    assert env(docs).get("DCGM_EXPORTER_INTERVAL") == collect_env
    names = [e["name"] for e in container(docs)["env"]]
    assert len(names) == len(set(names)), "duplicate env entries"
    (sm,) = by_kind(docs, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["interval"] == interval


def test_counters_configmap_holds_repository_files_and_custom_metrics() -> None:
    (cm,) = by_kind(documents(render()), "ConfigMap")
    for name in ("default-counters.csv", "dcp-metrics-included.csv",
                 "1.x-compatibility-metrics.csv"):
        assert cm["data"][name] == (ROOT / "counters" / name).read_text()
    assert cm["data"]["metrics"] == cm["data"]["default-counters.csv"]
    custom = load_values(VALUES_DIR / "custom-counters.yaml")
    (cm,) = by_kind(documents(render(custom)), "ConfigMap")
    assert cm["data"]["default-counters.csv"] == custom["customMetrics"]
    assert cm["data"]["dcp-metrics-included.csv"] == (
        ROOT / "counters" / "dcp-metrics-included.csv"
    ).read_text()


@pytest.mark.parametrize("name", ["default-counters.csv", "dcp-metrics-included.csv",
                                  "1.x-compatibility-metrics.csv"])
def test_chart_counters_files_equal_the_repository_ones(name: str) -> None:
    assert (CHART / "files" / name).read_bytes() == (ROOT / "counters" / name).read_bytes(), (
        f"copy counters/{name} to charts/dcgm-exporter/files/"
    )


def test_chart_dashboard_equals_the_repository_one() -> None:
    assert sorted(p.name for p in (CHART / "dashboards").glob("*.json")) == sorted(
        p.name for p in (ROOT / "dashboards").glob("*.json")
    )
    for src in (ROOT / "dashboards").glob("*.json"):
        assert (CHART / "dashboards" / src.name).read_bytes() == src.read_bytes(), (
            f"copy dashboards/{src.name} to charts/dcgm-exporter/dashboards/"
        )


def test_dashboard_configmap_for_the_grafana_sidecar() -> None:
    assert [d for d in by_kind(documents(render()), "ConfigMap") if "dashboards" in
            d["metadata"]["name"]] == []
    values = {"dashboards": {"enabled": True, "namespace": "grafana",
                             "annotations": {"grafana_folder": "GPUs"}}}
    (cm,) = [d for d in by_kind(documents(render(values)), "ConfigMap")
             if d["metadata"]["name"].endswith("-dashboards")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "grafana"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "GPUs"}
    source = json.loads((CHART / "dashboards" / "gpu-exporter.json").read_text())
    assert json.loads(cm["data"]["gpu-exporter.json"]) == source


def test_tls_values() -> None:
    values = load_values(VALUES_DIR / "tls.yaml")
    docs = documents(render(values, api_versions=(MONITORING_API,)))
    secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
    web = yaml.safe_load(secrets["dcgm-exporter-web-config"]["stringData"]["web-config.yaml"])
    assert web == {"tls_server_config": {
        "cert_file": "/etc/dcgm-exporter/tls/tls.crt",
        "key_file": "/etc/dcgm-exporter/tls/tls.key",
        "client_auth_type": "RequireAndVerifyClientCert",
        "client_ca_file": "/etc/dcgm-exporter/tls/ca.crt",
    }}
    # the chart also signs a client certificate for its ServiceMonitor (mutual TLS)
    assert set(secrets["dcgm-exporter-tls"]["data"]) == {
        "tls.crt", "tls.key", "ca.crt", "scrape-client.crt", "scrape-client.key"}
    e = env(docs)
    assert e["DCGM_EXPORTER_WEB_CONFIG_FILE"] == "/etc/dcgm-exporter/web-config.yaml"
    # the kubelet has no client certificate: probes go to the plain-HTTP probe listener
    assert e["GPU_EXPORTER_WEB_PROBE_ADDRESS"] == ":9401"
    c = container(docs)
    for kind, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        assert c[kind]["httpGet"] == {"path": path, "port": 9401, "scheme": "HTTP"}
    assert 9401 not in {p["containerPort"] for p in c["ports"]}  # never behind the Service
    pod = daemonset(docs)["spec"]["template"]["spec"]
    (config,) = [v for v in pod["volumes"] if v["name"] == "config"]
    paths = {i["path"] for s in config["projected"]["sources"] for i in
             next(iter(s.values()))["items"]}
    assert {"web-config.yaml", "tls/tls.crt", "tls/tls.key", "tls/ca.crt"} <= paths
    (sm,) = by_kind(docs, "ServiceMonitor")
    ep = sm["spec"]["endpoints"][0]
    assert ep["scheme"] == "https"
    assert ep["tlsConfig"] == values["serviceMonitor"]["tlsConfig"]


def test_exporter_accepts_the_rendered_web_config_and_certificate(tmp_path: Path) -> None:
    # The web config the chart writes parses with the exporter's own parser, and the
    # auto-generated certificate, key and CA load into a TLS context.
    docs = documents(render(load_values(VALUES_DIR / "tls.yaml")))
    secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
    text = secrets["dcgm-exporter-web-config"]["stringData"]["web-config.yaml"]
    web = parse_web_config(text, source="web-config.yaml", base=Path("/etc/dcgm-exporter"))
    assert web.tls is not None
    assert web.tls.client_auth_type == "RequireAndVerifyClientCert"
    for key, value in secrets["dcgm-exporter-tls"]["data"].items():
        (tmp_path / key).write_bytes(base64.b64decode(value))
    local = dataclasses.replace(
        web.tls,
        cert_file=tmp_path / web.tls.cert_file.name,
        key_file=tmp_path / web.tls.key_file.name,
        client_ca_file=tmp_path / "ca.crt",
    )
    assert ssl_context(local) is not None


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, name: str) -> bool:
    """A TLS handshake over a socket pair; True when both sides complete it."""
    left, right = socket.socketpair()
    results: list[bool] = []

    def serve() -> None:
        try:
            with server.wrap_socket(left, server_side=True) as tls:
                tls.recv(1)
            results.append(True)
        except (ssl.SSLError, OSError):
            results.append(False)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(right, server_hostname=name) as tls:
            tls.sendall(b"x")
        ok = True
    except (ssl.SSLError, OSError):
        ok = False
    finally:
        right.close()
        thread.join(timeout=30)
    return ok and results == [True]


def test_servicemonitor_tls_settings_complete_a_mutual_tls_handshake(tmp_path: Path) -> None:
    # What Prometheus gets from the rendered ServiceMonitor (CA, server name, client
    # certificate) against what the exporter gets from the rendered web config.
    values = {"tlsServerConfig": {"enabled": True, "clientAuthType": "RequireAndVerifyClientCert"}}
    docs = documents(render(values, api_versions=(MONITORING_API,)))
    secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
    text = secrets["dcgm-exporter-web-config"]["stringData"]["web-config.yaml"]
    web = parse_web_config(text, source="web-config.yaml", base=Path("/etc/dcgm-exporter"))
    assert web.tls is not None
    assert web.tls.cert_file is not None
    assert web.tls.key_file is not None
    assert web.tls.client_ca_file is not None
    files = secrets["dcgm-exporter-tls"]["data"]
    for key, value in files.items():
        (tmp_path / key).write_bytes(base64.b64decode(value))
    server = ssl_context(dataclasses.replace(
        web.tls, cert_file=tmp_path / web.tls.cert_file.name,
        key_file=tmp_path / web.tls.key_file.name,
        client_ca_file=tmp_path / web.tls.client_ca_file.name))
    tls = by_kind(docs, "ServiceMonitor")[0]["spec"]["endpoints"][0]["tlsConfig"]
    prometheus = ssl.create_default_context(cafile=str(tmp_path / tls["ca"]["secret"]["key"]))
    prometheus.load_cert_chain(str(tmp_path / tls["cert"]["secret"]["key"]),
                               str(tmp_path / tls["keySecret"]["key"]))
    assert _handshake(server, prometheus, tls["serverName"])
    anonymous = ssl.create_default_context(cafile=str(tmp_path / tls["ca"]["secret"]["key"]))
    assert not _handshake(server, anonymous, tls["serverName"])


def test_tls_with_existing_secret_verifies_with_its_ca() -> None:
    values = load_values(VALUES_DIR / "tls-existing-secret.yaml")
    docs = documents(render(values, api_versions=(MONITORING_API,)))
    assert by_kind(docs, "Secret")[0]["metadata"]["name"] == "dcgm-exporter-web-config"
    assert len(by_kind(docs, "Secret")) == 1  # the user's certificate Secret is not created
    (sm,) = by_kind(docs, "ServiceMonitor")
    tls = sm["spec"]["endpoints"][0]["tlsConfig"]
    assert tls["ca"]["secret"] == {"name": "gpu-exporter-cert", "key": "ca.crt"}


def test_yaml_config_file_is_mounted_and_read_by_the_exporter() -> None:
    # dcgm-exporter 4.6+'s config.* keys: the chart's ConfigMap, mounted beside the counters
    # files, passed with DCGM_EXPORTER_CONFIG_FILE; its interval drives the ServiceMonitor.
    data = {"version": 1, "metrics": {"file": "/etc/dcgm-exporter/dcp-metrics-included.csv"},
            "collection": {"interval": "10s"}}
    values = {"config": {"enabled": True, "data": data}, "arguments": []}
    docs = documents(render(values, api_versions=(MONITORING_API,)))
    validate_strictly(docs)
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-config")]
    settings = parse_config_file(cm["data"]["config.yaml"])
    assert settings.counters_file == "/etc/dcgm-exporter/dcp-metrics-included.csv"
    assert settings.interval_ms == 10000
    e = env(docs)
    assert e["DCGM_EXPORTER_CONFIG_FILE"] == "/etc/dcgm-exporter/config.yaml"
    assert "DCGM_EXPORTER_INTERVAL" not in e  # the file sets it; env would win over it
    pod = daemonset(docs)["spec"]["template"]["spec"]
    (config,) = [v for v in pod["volumes"] if v["name"] == "config"]
    assert {"configMap": {"name": cm["metadata"]["name"], "items": [
        {"key": "config.yaml", "path": "config.yaml"}]}} in config["projected"]["sources"]
    (sm,) = by_kind(docs, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["interval"] == "10s"
    # An existing ConfigMap mounted elsewhere: its own volume, by subPath.
    values = {"config": {"enabled": True, "create": False, "name": "mine",
                         "key": "dcgm.yaml", "mountPath": "/opt/dcgm/config.yaml"}}
    docs = documents(render(values))
    c = container(docs)
    assert {"name": "config-file", "mountPath": "/opt/dcgm/config.yaml",
            "subPath": "dcgm.yaml", "readOnly": True} in c["volumeMounts"]
    assert env(docs)["DCGM_EXPORTER_CONFIG_FILE"] == "/opt/dcgm/config.yaml"
    assert not [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == "mine"]
    assert nested_mounts(c) == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"config": {"enabled": True}}, r"^config\.data: empty"),
        ({"config": {"enabled": True, "create": False}}, r"^config\.name: required"),
        ({"config": {"enabled": True, "data": "version: [1"}}, r"^config\.data: not a YAML map"),
        ({"config": {"enabled": True, "data": {"version": 1, "metrics": {"file": "/x.csv"}}}},
         r"^config\.data: metrics is overridden by -f in arguments"),
        ({"config": {"enabled": True, "data": {"collection": {"interval": "5s"}}},
          "collectInterval": 1000},
         r"^config\.data: collection\.interval is overridden by the collect interval from "
         r"collectInterval"),
    ],
)
def test_yaml_config_file_that_cannot_work_is_refused(values: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(helm.HelmRenderError) as info:
        render(values)
    assert re.search(message, str(info.value).split("): ", 1)[1]), str(info.value)


def test_basic_auth_renders_bcrypt_users_probe_listener_and_scrape_credentials() -> None:
    users = {"zed": "z-pass", "alice": "Pa$$w0rd"}
    docs = documents(render({"basicAuth": {"users": users}}, api_versions=(MONITORING_API,)))
    secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
    text = secrets["dcgm-exporter-web-config"]["stringData"]["web-config.yaml"]
    web = parse_web_config(text, source="web-config.yaml", base=Path("/etc/dcgm-exporter"))
    hashes = dict(web.basic_auth_users)
    assert set(hashes) == set(users)
    for user, password in users.items():  # upstream's htpasswd hashes verify with bcrypt
        assert bcrypt.checkpw(password.encode(), hashes[user].encode())
        assert password not in text
    e = env(docs)
    assert e["GPU_EXPORTER_WEB_PROBE_ADDRESS"] == ":9401"
    assert container(docs)["livenessProbe"]["httpGet"]["port"] == 9401
    (sm,) = by_kind(docs, "ServiceMonitor")
    auth = sm["spec"]["endpoints"][0]["basicAuth"]
    scrape = secrets[auth["username"]["name"]]["stringData"]
    assert auth["password"]["name"] == auth["username"]["name"] == "dcgm-exporter-scrape-auth"
    assert (scrape[auth["username"]["key"]], scrape[auth["password"]["key"]]) == (
        "alice", "Pa$$w0rd")
    own = {"username": {"name": "mine", "key": "u"}, "password": {"name": "mine", "key": "p"}}
    docs = documents(render({"basicAuth": {"users": users}, "serviceMonitor": {"basicAuth": own}},
                            api_versions=(MONITORING_API,)))
    assert by_kind(docs, "ServiceMonitor")[0]["spec"]["endpoints"][0]["basicAuth"] == own
    assert "dcgm-exporter-scrape-auth" not in {s["metadata"]["name"]
                                               for s in by_kind(docs, "Secret")}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"tlsServerConfig": {"enabled": True, "clientAuthType": "RequireAnyClientCert",
                              "autoGenerated": True}},
         r"tlsServerConfig\.clientAuthType: RequireAnyClientCert accepts client certificates"),
        ({"basicAuth": {"users": {"a:b": "x"}}}, r"basicAuth\.users: user \"a:b\""),
        ({"tlsServerConfig": {"enabled": True, "autoGenerated": False,
                              "existingSecret": "mine",
                              "clientAuthType": "RequireAndVerifyClientCert"}},
         r"serviceMonitor\.tlsConfig: .*client certificate"),
    ],
)
def test_web_settings_that_would_not_work_are_refused(values: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render(values, api_versions=(MONITORING_API,))


def test_probes_and_timeouts_in_every_web_combination() -> None:
    plain = container(documents(render({})))
    assert plain["livenessProbe"]["httpGet"]["scheme"] == "HTTP"
    tls = documents(render({"tlsServerConfig": {"enabled": True}}))
    assert container(tls)["livenessProbe"]["httpGet"] == {
        "path": "/health", "port": "metrics", "scheme": "HTTPS"}  # no client cert needed
    assert "GPU_EXPORTER_WEB_PROBE_ADDRESS" not in env(tls)
    e = env(documents(render({"service": {"webReadTimeout": "5s", "webWriteTimeout": "1m"},
                              "tlsServerConfig": {"enabled": True,
                                                  "clientAuthType": "VerifyClientCertIfGiven"}})))
    assert (e["DCGM_EXPORTER_WEB_READ_TIMEOUT"], e["DCGM_EXPORTER_WEB_WRITE_TIMEOUT"]) == (
        "5s", "1m")
    assert "GPU_EXPORTER_WEB_PROBE_ADDRESS" not in e  # a client without a certificate is served
    both = documents(render({"service": {"probePort": 9555}, "basicAuth": {"users": {"a": "b"}},
                             "tlsServerConfig": {"enabled": True,
                                                 "clientAuthType": "RequireAndVerifyClientCert"}}))
    assert env(both)["GPU_EXPORTER_WEB_PROBE_ADDRESS"] == ":9555"
    assert container(both)["readinessProbe"]["httpGet"]["port"] == 9555


def test_upstream_values_file_keeps_working() -> None:
    values = load_values(VALUES_DIR / "upstream.yaml")
    docs = documents(render(values, api_versions=(MONITORING_API,)))
    c = container(docs)
    assert c["image"] == "nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3-4.8.2-distroless"
    pod = daemonset(docs)["spec"]["template"]["spec"]
    # Upstream's subPath mount of its hard-coded ConfigMap is replaced by the chart's own.
    assert "exporter-metrics-volume" not in {v["name"] for v in pod["volumes"]}
    assert all("subPath" not in m for m in c["volumeMounts"])
    assert {"name": "host-binaries", "hostPath": {"path": "/opt/bin"}} in pod["volumes"]
    assert {"name": "host-binaries", "mountPath": "/opt/bin", "readOnly": True} in c[
        "volumeMounts"]
    assert c["securityContext"]["capabilities"]["add"] == ["SYS_ADMIN"]
    assert c["livenessProbe"]["initialDelaySeconds"] == 45
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}  # gpuNodesOnly
    e = env(docs)
    assert e["DCGM_EXPORTER_INTERVAL"] == "15000"  # derived from serviceMonitor.interval
    assert e["KUBERNETES_VIRTUAL_GPUS"] == "false"
    assert by_kind(docs, "ClusterRole") == []
    assert pod["automountServiceAccountToken"] is False
    (svc,) = by_kind(docs, "Service")
    assert svc["spec"]["internalTrafficPolicy"] == "Cluster"
    (sm,) = by_kind(docs, "ServiceMonitor")
    ep = sm["spec"]["endpoints"][0]
    assert ep["honorLabels"] is False
    assert ep["interval"] == "15s"
    # honorLabels false keeps upstream's exported_pod behaviour: no target labels dropped.
    assert ep["relabelings"] == values["serviceMonitor"]["relabelings"]
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    notes = render(values)["dcgm-exporter/templates/NOTES.txt"]
    assert '"exporter-metrics-volume"' in notes


def nested_mounts(c: dict[str, Any]) -> list[tuple[str, str]]:
    """Mounts whose path lies inside another mount: the kubelet cannot create their mount
    point inside a read-only volume, so such a container fails to start."""
    paths = [m["mountPath"].rstrip("/") for m in c["volumeMounts"]]
    return [(a, b) for a in paths for b in paths if b.startswith(a + "/")]


@pytest.mark.parametrize("values_file", VALUES_FILES + EXAMPLES, ids=lambda p: p.name)
def test_no_mount_nests_inside_another(values_file: Path) -> None:
    assert nested_mounts(container(documents(render(load_values(values_file))))) == []


def test_subpath_counters_pattern_mounts_beside_the_chart_files() -> None:
    values = load_values(VALUES_DIR / "subpath-counters.yaml")
    rendered = render(values)
    c = container(documents(rendered))
    assert nested_mounts(c) == []
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/etc/dcgm-exporter/custom-counters.csv"] == values["extraVolumeMounts"][0]
    for name in ("default-counters.csv", "dcp-metrics-included.csv",
                 "1.x-compatibility-metrics.csv"):
        assert mounts[f"/etc/dcgm-exporter/{name}"] == {
            "name": "config", "mountPath": f"/etc/dcgm-exporter/{name}", "subPath": name,
            "readOnly": True}
    assert "/etc/dcgm-exporter" not in mounts
    assert c["args"] == ["-f", "/etc/dcgm-exporter/custom-counters.csv"]
    pod = daemonset(documents(rendered))["spec"]["template"]["spec"]
    assert values["extraConfigMapVolumes"][0] in pod["volumes"]
    assert "custom-counters.csv under /etc/dcgm-exporter" in rendered[
        "dcgm-exporter/templates/NOTES.txt"]


def test_upstream_counters_volume_pointing_elsewhere_is_honoured() -> None:
    # Upstream's volume name with one's own ConfigMap: not the chart's file, so it is kept.
    values = {
        "extraConfigMapVolumes": [{"name": "exporter-metrics-volume", "configMap": {
            "name": "my-metrics", "items": [{"key": "metrics", "path": "default-counters.csv"}]}}],
        "extraVolumeMounts": [{"name": "exporter-metrics-volume",
                               "mountPath": "/etc/dcgm-exporter/default-counters.csv",
                               "subPath": "default-counters.csv"}],
    }
    c = container(documents(render(values)))
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/etc/dcgm-exporter/default-counters.csv"] == "exporter-metrics-volume"
    assert mounts["/etc/dcgm-exporter/dcp-metrics-included.csv"] == "config"
    assert nested_mounts(c) == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"extraVolumeMounts": [{"name": "x", "mountPath": "/etc/dcgm-exporter/"}]},
         r"extraVolumeMounts\[0\]: mountPath /etc/dcgm-exporter would hide"),
        ({"tlsServerConfig": {"enabled": True},
          "extraVolumeMounts": [{"name": "x", "mountPath": "/etc/dcgm-exporter/tls"}]},
         r"extraVolumeMounts\[0\]: /etc/dcgm-exporter/tls is where the chart mounts its web"),
        ({"upstreamConfigMapNames": False,
          "extraConfigMapVolumes": [{"name": "m", "configMap": {
              "name": "exporter-metrics-config-map"}}],
          "extraVolumeMounts": [{"name": "m", "mountPath": "/etc/dcgm-exporter/x.csv",
                                 "subPath": "metrics"}]},
         r"extraConfigMapVolumes\[0\]: ConfigMap exporter-metrics-config-map does not exist"),
    ],
)
def test_mounts_that_cannot_work_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render(values)


def test_extra_env_overrides_chart_env_without_duplicates() -> None:
    values = {"extraEnv": [{"name": "DCGM_EXPORTER_KUBERNETES", "value": "false"},
                           {"name": "NVIDIA_VISIBLE_DEVICES", "value": "0,1"}]}
    docs = documents(render(values))
    names = [e["name"] for e in container(docs)["env"]]
    assert len(names) == len(set(names))
    assert env(docs)["DCGM_EXPORTER_KUBERNETES"] == "false"
    assert env(docs)["NVIDIA_VISIBLE_DEVICES"] == "0,1"


def test_configmap_role_has_upstreams_names() -> None:
    # Upstream's chart always creates them, with these names (tests/migration compares).
    docs = documents(render())
    (role,) = by_kind(docs, "Role")
    assert role["metadata"]["name"] == "dcgm-exporter-read-cm"
    assert role["rules"][0]["resourceNames"] == ["exporter-metrics-config-map"]
    (binding,) = by_kind(docs, "RoleBinding")
    assert binding["metadata"]["name"] == "dcgm-exporter"
    assert binding["roleRef"]["name"] == "dcgm-exporter-read-cm"
    # Per-release names for several releases in one namespace.
    docs = documents(render({"upstreamConfigMapNames": False}, name="gpu"))
    (role,) = by_kind(docs, "Role")
    assert role["metadata"]["name"] == "gpu-dcgm-exporter-read-cm"
    assert role["rules"][0]["resourceNames"] == ["gpu-dcgm-exporter-metrics"]
    (cm,) = by_kind(docs, "ConfigMap")
    assert cm["metadata"]["name"] == "gpu-dcgm-exporter-metrics"
    (pod_cm,) = [v for v in daemonset(docs)["spec"]["template"]["spec"]["volumes"]
                 if v["name"] == "config"]
    assert pod_cm["projected"]["sources"][0]["configMap"]["name"] == "gpu-dcgm-exporter-metrics"


def test_examples_installed_side_by_side_do_not_clash() -> None:
    # examples/README.md installs the three per-node releases in one namespace.
    seen: dict[tuple[str, str], str] = {}
    releases = {"per-node-default": "gpu-exporter", "per-node-mig": "gpu-exporter-mig",
                "per-node-time-sliced": "gpu-exporter-shared"}
    for path in EXAMPLES:
        for doc in documents(render(load_values(path), name=releases[path.stem])):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in seen, f"{key} in both {seen.get(key)} and {path.name}"
            seen[key] = path.name


def test_unsupported_flags_list_matches_the_exporter() -> None:
    listed = yaml.safe_load((CHART / "files" / "unsupported-flags.yaml").read_text())["flags"]
    later = [{"names": list(f.names), "env": f.env, "default": f.default, "kind": f.kind}
             for f in FLAGS if f.status == "later"]
    assert listed == later, (
        "charts/dcgm-exporter/files/unsupported-flags.yaml must list exactly the flags "
        "src/gpu_exporter/cli.py refuses (status 'later')"
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"debugDump": {"enabled": True}}, r"^debugDump\.enabled: not supported"),
        ({"arguments": ["-m", "gpu-monitoring:exporter-metrics-config-map"]},
         r"^arguments: -m is not supported"),
        ({"arguments": ["--cpu-devices", "g"]}, r"^arguments: --cpu-devices is not supported"),
        ({"arguments": ["--switch-devices=s"]}, r"^arguments: --switch-devices=s is not"),
        ({"extraEnv": [{"name": "DCGM_EXPORTER_CONFIGMAP_DATA", "value": "ns:cm"}]},
         r"^extraEnv: DCGM_EXPORTER_CONFIGMAP_DATA is not supported"),
    ],
)
def test_values_the_exporter_refuses_fail_the_render(values: dict[str, Any], message: str) -> None:
    # Never a pod that exits 2 at start and crash-loops: the render fails naming the key.
    with pytest.raises(helm.HelmRenderError) as info:
        render(values)
    assert re.search(message, str(info.value).split("): ", 1)[1]), str(info.value)


@pytest.mark.parametrize(
    "values",
    [
        {"arguments": ["-s", "f", "--kubernetes-enable-pod-uid=false"]},
        {"extraEnv": [{"name": "DCGM_EXPORTER_KUBERNETES_ENABLE_POD_LABELS", "value": "false"}]},
        {"kubernetes": {"enablePodLabels": False, "podLabelAllowlistRegex": []}},
    ],
)
def test_defaults_of_refused_flags_are_accepted(values: dict[str, Any]) -> None:
    assert daemonset(documents(render(values)))


# Every key of the upstream chart's values.yaml (4.5.3-4.8.2, plus 4.8.3's image.digest,
# serviceAccount.automountServiceAccountToken, service.web*Timeout and config).
UPSTREAM_KEYS = (
    "image.repository", "image.pullPolicy", "image.tag", "image.digest", "arguments",
    "imagePullSecrets", "nameOverride", "fullnameOverride", "namespaceOverride", "hostPID",
    "runtimeClassName", "priorityClassName", "hostNetwork", "serviceAccount.create",
    "serviceAccount.annotations", "serviceAccount.name",
    "serviceAccount.automountServiceAccountToken", "rollingUpdate.maxUnavailable",
    "rollingUpdate.maxSurge", "podLabels", "podAnnotations", "podSecurityContext",
    "securityContext", "service.enable", "service.type", "service.internalTrafficPolicy",
    "service.clusterIP", "service.port", "service.address", "service.webReadTimeout",
    "service.webWriteTimeout", "service.annotations", "resources", "serviceMonitor.apiVersion",
    "serviceMonitor.enabled", "serviceMonitor.interval", "serviceMonitor.scrapeTimeout",
    "serviceMonitor.honorLabels", "serviceMonitor.additionalLabels", "serviceMonitor.relabelings",
    "serviceMonitor.metricRelabelings", "nodeSelector", "tolerations", "affinity",
    "extraHostVolumes", "extraConfigMapVolumes", "extraVolumeMounts", "extraEnv", "kubeletPath",
    "tlsServerConfig.enabled", "tlsServerConfig.autoGenerated", "tlsServerConfig.existingSecret",
    "tlsServerConfig.certFilename", "tlsServerConfig.keyFilename", "tlsServerConfig.caFilename",
    "tlsServerConfig.clientAuthType", "tlsServerConfig.key", "tlsServerConfig.cert",
    "tlsServerConfig.ca", "basicAuth.users", "kubernetes.enablePodLabels",
    "kubernetes.enablePodUID", "kubernetes.podLabelAllowlistRegex", "kubernetes.rbac.create",
    "kubernetesDRA.enabled", "debugDump.enabled", "debugDump.directory", "debugDump.retention",
    "debugDump.compression", "livenessProbe", "readinessProbe", "initContainers",
    "config.enabled",
)


@pytest.mark.parametrize("key", UPSTREAM_KEYS)
def test_every_upstream_key_is_in_values_yaml(key: str) -> None:
    node: Any = chart_defaults()
    for part in key.split("."):
        assert isinstance(node, dict)
        assert part in node, f"values.yaml lacks upstream key {key}"
        node = node[part]


def test_custom_metrics_key_is_documented() -> None:
    # customMetrics is unset by default upstream too; values.yaml shows it commented out.
    assert "# customMetrics: |" in (CHART / "values.yaml").read_text()


def test_mig_examples_select_nodes_by_device_plugin_config() -> None:
    assert EXAMPLES, "charts/dcgm-exporter/examples/ holds the MIG examples"
    seen = set()
    for path in EXAMPLES:
        docs = documents(render(load_values(path), name=path.stem))
        pod = daemonset(docs)["spec"]["template"]["spec"]
        terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"]
        for term in terms:
            for expr in term["matchExpressions"]:
                if expr["key"] == "nvidia.com/device-plugin.config":
                    seen.add(expr["operator"])
    assert {"In", "NotIn"} <= seen


def test_generated_files_are_up_to_date() -> None:
    for path, text in generated().items():
        assert path.exists(), f"{path} missing: run python tests/deploy/chart_render.py --write"
        assert path.read_text() == text, (
            f"{path.relative_to(ROOT)} is out of date: run python tests/deploy/chart_render.py "
            "--write"
        )


def test_plain_manifests_validate() -> None:
    text = (ROOT / "deploy" / "manifests" / "gpu-exporter.yaml").read_text()
    docs = [d for d in yaml.safe_load_all(text) if d]
    validate_strictly(docs)
    assert {d["kind"] for d in docs} >= {"DaemonSet", "Service", "ConfigMap", "ServiceAccount"}


def test_web_config_changes_do_not_restart_pods_needlessly() -> None:
    # bcrypt salts differ on every render; the exporter reloads the web config by itself, so
    # the pod template changes only when TLS is switched on or off (which needs a restart).
    def annotations(values: dict[str, Any]) -> dict[str, str]:
        result: dict[str, str] = daemonset(documents(render(values)))["spec"]["template"][
            "metadata"]["annotations"]
        return result

    users = {"basicAuth": {"users": {"prom": "secret"}}}
    assert annotations(users) == annotations(users)
    assert annotations(users) != annotations({**users, "tlsServerConfig": {"enabled": True}})


def _rules(docs: list[dict[str, Any]]) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    roles = by_kind(docs, "ClusterRole")
    return [(group, tuple(rule["resources"]), tuple(rule["verbs"]))
            for role in roles for rule in role["rules"] for group in rule["apiGroups"]]


@pytest.mark.parametrize(
    ("values", "expected_env", "rules"),
    [
        ({"kubernetes": {"enablePodLabels": True}},
         {"DCGM_EXPORTER_KUBERNETES_ENABLE_POD_LABELS": "true"},
         [("", ("pods",), ("get", "list", "watch"))]),
        ({"kubernetes": {"enablePodUID": True}},
         {"DCGM_EXPORTER_KUBERNETES_ENABLE_POD_UID": "true"},
         [("", ("pods",), ("get", "list", "watch"))]),
        ({"kubernetes": {"enablePodLabels": True, "podLabelAllowlistRegex": ["^app$", "team"]}},
         {"DCGM_EXPORTER_KUBERNETES_ENABLE_POD_LABELS": "true",
          "DCGM_EXPORTER_KUBERNETES_POD_LABEL_ALLOWLIST_REGEX": "^app$,team"},
         [("", ("pods",), ("get", "list", "watch"))]),
        ({"kubernetesDRA": {"enabled": True}}, {"KUBERNETES_ENABLE_DRA": "true"},
         [("", ("pods",), ("get", "list", "watch")),
          ("resource.k8s.io", ("resourceslices",), ("get", "list", "watch"))]),
        ({}, {}, []),
        ({"kubernetes": {"podLabelAllowlistRegex": ["^app$"]}},
         {"DCGM_EXPORTER_KUBERNETES_POD_LABEL_ALLOWLIST_REGEX": "^app$"}, []),
    ],
)
def test_api_keys_render_their_env_and_minimal_rbac(
    values: dict[str, Any], expected_env: dict[str, str],
    rules: list[tuple[str, tuple[str, ...], tuple[str, ...]]],
) -> None:
    """Pod labels/UID and DRA render the exporter's env and only the RBAC they need."""
    docs = documents(render(values))
    validate_strictly(docs)
    e = env(docs)
    for key in ("DCGM_EXPORTER_KUBERNETES_ENABLE_POD_LABELS",
                "DCGM_EXPORTER_KUBERNETES_ENABLE_POD_UID",
                "DCGM_EXPORTER_KUBERNETES_POD_LABEL_ALLOWLIST_REGEX", "KUBERNETES_ENABLE_DRA"):
        assert e.get(key) == expected_env.get(key), key
    assert "NODE_NAME" in e  # the node-scoped watch's fieldSelector
    assert _rules(docs) == rules
    bindings = by_kind(docs, "ClusterRoleBinding")
    assert len(bindings) == (1 if rules else 0)
    pod = daemonset(docs)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is bool(rules)


def test_a_dcgm_host_engine_is_named_through_upstreams_keys() -> None:
    """No chart key of our own: extraEnv (as the GPU Operator sets it) or -r in arguments."""
    values = {"extraEnv": [{"name": "DCGM_REMOTE_HOSTENGINE_INFO",
                            "value": "nvidia-dcgm:5555"}]}
    docs = documents(render(values))
    validate_strictly(docs)
    rendered = env(docs)
    assert rendered["DCGM_REMOTE_HOSTENGINE_INFO"] == "nvidia-dcgm:5555"
    # what the exporter makes of the container's environment and arguments
    environ = {k: v for k, v in rendered.items() if isinstance(v, str)}
    args = container(docs).get("args", [])
    config = build_config(resolve(build_parser().parse_args(args), environ), environ)
    assert config.dcgm == DcgmSettings("nvidia-dcgm:5555")
    docs = documents(render({"arguments": ["-f", "/etc/dcgm-exporter/default-counters.csv",
                                           "--dcgm-local"], "hostNetwork": True}))
    assert "--dcgm-local" in container(docs)["args"]
    assert daemonset(docs)["spec"]["template"]["spec"]["hostNetwork"] is True
