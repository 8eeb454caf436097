"""Record the objects NVIDIA's released dcgm-exporter chart renders, as fixtures for the tests.

Not a test: run it by hand (it needs a local clone of NVIDIA/dcgm-exporter; the tests read only
the JSON files it writes, so CI needs no network)::

    .venv/bin/python tests/migration/record_upstream_chart.py --repo /path/to/dcgm-exporter.git

It renders the released chart archive (``helm-charts/dcgm-exporter-<version>.tgz`` on the
``gh-pages`` branch, the file ``helm repo add`` users install) with helm-python-sdk for the
chart's defaults and for each set of example values upstream publishes, and writes the facts a
``helm upgrade`` from that release depends on (kinds, names, selector and pod-template labels,
Service ports, ServiceMonitor endpoints, RBAC rules, ConfigMap keys, the container's env, mounts
and probes) to ``tests/migration/fixtures/upstream-chart/<case>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from helm_python import _native

HERE = Path(__file__).resolve().parent
OUT = HERE / "fixtures" / "upstream-chart"
UPSTREAM = "https://github.com/NVIDIA/dcgm-exporter"
TAG = "4.5.3-4.8.2"
CHART_VERSION = "4.8.2"
ARCHIVE = f"helm-charts/dcgm-exporter-{CHART_VERSION}.tgz"
NAMESPACE = "gpu-monitoring"
MONITORING_API = "monitoring.coreos.com/v1"

# upstream tests/e2e/e2e_actions_test.go getDefaultHelmValues() (the --set list, as a map).
E2E_DEFAULTS: dict[str, Any] = {
    "serviceMonitor": {"enabled": False},
    "resources": {"requests": {"cpu": "1000m", "memory": "1024Mi"},
                  "limits": {"cpu": "1000m", "memory": "1024Mi"}},
    "image": {"pullPolicy": "IfNotPresent"},
    "readinessProbe": {"initialDelaySeconds": 45},
    "livenessProbe": {"initialDelaySeconds": 45},
}

# (case, release name, values, where upstream publishes those values)
CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("default", "dcgm-exporter", {},
     "deployment/values.yaml defaults (README: helm install gpu-helm-charts/dcgm-exporter)"),
    ("default-release-prefix", "gpu-metrics", {},
     "deployment/values.yaml defaults, a release name without the chart name"),
    ("readme-debug-dump", "dcgm-exporter",
     {"debugDump": {"enabled": True, "directory": "/var/log/dcgm-exporter-debug",
                    "retention": 48, "compression": True}},
     "deployment/README.md, 'my-debug-values.yaml'"),
    ("e2e-default", "dcgm-exporter", E2E_DEFAULTS,
     "tests/e2e/e2e_actions_test.go getDefaultHelmValues()"),
    ("e2e-basic-auth", "dcgm-exporter",
     {**E2E_DEFAULTS, "basicAuth": {"users": {"alice": "Pa$$w0rd"}}},
     "tests/e2e/e2e_verify_http_basic_auth_test.go (default values + basicAuth.users)"),
    ("e2e-tls", "dcgm-exporter", {**E2E_DEFAULTS, "tlsServerConfig": {"enabled": True}},
     "tests/e2e/e2e_verify_tls_test.go (default values + tlsServerConfig.enabled=true)"),
    ("values-pod-labels", "dcgm-exporter",
     {"kubernetes": {"enablePodLabels": True, "enablePodUID": True,
                     "podLabelAllowlistRegex": ["^app$", "^app\\.kubernetes\\.io/.*"]}},
     "deployment/values.yaml comments under kubernetes: (podLabelAllowlistRegex examples)"),
    ("values-dra", "dcgm-exporter", {"kubernetesDRA": {"enabled": True}},
     "deployment/values.yaml kubernetesDRA.enabled"),
    ("values-custom-metrics", "dcgm-exporter",
     {"customMetrics": "DCGM_FI_DEV_SM_CLOCK,  gauge, SM clock frequency (in MHz).\n"
                       "DCGM_FI_DEV_GPU_TEMP,    gauge, GPU temperature (in C).\n"},
     "deployment/values.yaml comments under customMetrics"),
    ("values-remote-hostengine", "dcgm-exporter",
     {"arguments": ["-r", "host123:5555"]},
     "deployment/values.yaml comments under arguments ('Example arguments: [\"-r\", ...]')"),
]


def git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo), *args], check=True,
                          capture_output=True).stdout


def render(archive: bytes, values: dict[str, Any], release: str) -> list[dict[str, Any]]:
    opts = {"name": release, "namespace": NAMESPACE, "is_install": True,
            "api_versions": [MONITORING_API]}
    with helm.Chart.load_archive(archive) as chart:
        out = json.loads(_native.call_string(
            "helm_render", chart._raw(), json.dumps(values), json.dumps(opts)))
    docs: list[dict[str, Any]] = []
    for template in sorted(out):
        if template.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(out[template]) if d)
    return docs


def facts(doc: dict[str, Any]) -> dict[str, Any]:
    """What a helm upgrade from this object depends on (no generated secrets)."""
    meta = doc["metadata"]
    kind = doc["kind"]
    fact: dict[str, Any] = {
        "kind": kind, "apiVersion": doc["apiVersion"], "name": meta["name"],
        "namespace": meta.get("namespace"), "labels": meta.get("labels", {}),
    }
    spec = doc.get("spec", {})
    if kind == "DaemonSet":
        pod = spec["template"]["spec"]
        (c,) = pod["containers"]
        fact.update({
            "selector": spec["selector"]["matchLabels"],
            "templateLabels": spec["template"]["metadata"].get("labels", {}),
            "serviceAccountName": pod.get("serviceAccountName"),
            "automountServiceAccountToken": pod.get("automountServiceAccountToken"),
            "container": {
                "name": c["name"], "image": c["image"], "args": c.get("args"),
                "env": c.get("env", []), "ports": c.get("ports", []),
                "volumeMounts": c.get("volumeMounts", []),
                "livenessProbe": c.get("livenessProbe"),
                "readinessProbe": c.get("readinessProbe"),
            },
            "volumes": pod.get("volumes", []),
        })
    elif kind == "Service":
        fact.update({"selector": spec["selector"], "ports": spec["ports"],
                     "type": spec.get("type")})
    elif kind == "ServiceMonitor":
        fact.update({"selector": spec["selector"], "namespaceSelector":
                     spec.get("namespaceSelector"), "endpoints": spec["endpoints"]})
    elif kind in ("Role", "ClusterRole"):
        fact["rules"] = doc.get("rules", [])
    elif kind in ("RoleBinding", "ClusterRoleBinding"):
        fact.update({"roleRef": doc["roleRef"], "subjects": doc["subjects"]})
    elif kind in ("ConfigMap", "Secret"):
        fact["dataKeys"] = sorted({**doc.get("data", {}), **doc.get("stringData", {})})
    elif kind == "ServiceAccount":
        fact["automountServiceAccountToken"] = doc.get("automountServiceAccountToken")
    return fact


def key_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of a values tree; a map is descended into unless it is empty."""
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            paths += key_paths(value, f"{path}.")
        else:
            paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, required=True,
                        help="a git clone (or mirror) of NVIDIA/dcgm-exporter")
    args = parser.parse_args(argv)
    archive = git(args.repo, "show", f"gh-pages:{ARCHIVE}")
    pages = git(args.repo, "rev-parse", "gh-pages").decode().strip()
    commit = git(args.repo, "rev-parse", f"{TAG}^{{commit}}").decode().strip()
    OUT.mkdir(parents=True, exist_ok=True)
    with helm.Chart.load_archive(archive) as chart:
        defaults = chart.values
    keys = {
        "source": {"repository": UPSTREAM, "release_tag": TAG, "release_commit": commit,
                   "chart": f"{ARCHIVE} on branch gh-pages at {pages}",
                   "values_from": "the chart's values.yaml (every key, dotted; plus "
                                  "customMetrics, which it documents commented out)",
                   "recorded": datetime.date.today().isoformat(),
                   "recorder": "tests/migration/record_upstream_chart.py"},
        "keys": sorted([*key_paths(defaults), "customMetrics"]),
    }
    text = json.dumps(keys, indent=1, sort_keys=True) + "\n"
    (OUT.parent / "upstream-chart-keys.json").write_text(text)
    for case, release, values, origin in CASES:
        fixture = {
            "source": {
                "repository": UPSTREAM,
                "release_tag": TAG,
                "release_commit": commit,
                "chart": f"{ARCHIVE} on branch gh-pages at {pages}",
                "chart_version": CHART_VERSION,
                "values_from": origin,
                "rendered_with": f"helm-python-sdk (Helm {helm.helm_sdk_version()}), "
                                 f"api_versions [{MONITORING_API}]",
                "recorded": datetime.date.today().isoformat(),
                "recorder": "tests/migration/record_upstream_chart.py",
            },
            "release": {"name": release, "namespace": NAMESPACE},
            "values": values,
            "objects": [facts(d) for d in render(archive, values, release)],
        }
        path = OUT / f"{case}.json"
        path.write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")
        print(f"wrote {path.relative_to(HERE.parents[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
