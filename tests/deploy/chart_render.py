"""Render the Helm chart offline and derive the generated deploy/ files from it.

Used by the tests in this folder, and as a script that regenerates (or checks) the files under
deploy/ that come from the chart::

    .venv/bin/python tests/deploy/chart_render.py --write   # after changing the chart
    .venv/bin/python tests/deploy/chart_render.py --check   # exit 1 when out of date

Generated: ``deploy/rules.yml`` (charts/dcgm-exporter/files/rules.yml with the default
prometheusRule values filled in) and ``deploy/manifests/gpu-exporter.yaml`` (the chart
rendered with ``deploy/manifests/values.yaml``, for clusters without Helm).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from helm_python import _native  # render options beyond the wrapper (api_versions)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "dcgm-exporter"
RULES_SOURCE = CHART / "files" / "rules.yml"
RULES_FILE = ROOT / "deploy" / "rules.yml"
MANIFESTS_DIR = ROOT / "deploy" / "manifests"
MANIFESTS_VALUES = MANIFESTS_DIR / "values.yaml"
MANIFESTS_FILE = MANIFESTS_DIR / "gpu-exporter.yaml"
MANIFESTS_RELEASE = "gpu-exporter"
MANIFESTS_NAMESPACE = "gpu-monitoring"

MONITORING_API = "monitoring.coreos.com/v1"


def render(
    values: dict[str, Any] | None = None,
    *,
    api_versions: tuple[str, ...] = (),
    name: str = "dcgm-exporter",
    namespace: str = "gpu-monitoring",
    kube_version: str | None = None,
) -> dict[str, str]:
    """Render the chart as ``helm template`` would; ``api_versions`` as ``--api-versions``,
    ``kube_version`` as ``--kube-version`` (Helm's own default otherwise, 1.30 or newer)."""
    opts: dict[str, Any] = {"name": name, "namespace": namespace, "is_install": True}
    if api_versions:
        opts["api_versions"] = list(api_versions)
    if kube_version is not None:
        opts["kube_version"] = kube_version
    with helm.Chart.load(CHART) as chart:
        out = _native.call_string(
            "helm_render", chart._raw(), json.dumps(values or {}), json.dumps(opts)
        )
    rendered: dict[str, str] = json.loads(out)
    return rendered


def documents(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """All Kubernetes objects in a render, in template-name order (NOTES.txt excluded)."""
    docs: list[dict[str, Any]] = []
    for template in sorted(rendered):
        if template.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(rendered[template]) if d)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The objects of one kind."""
    return [d for d in docs if d.get("kind") == kind]


def chart_defaults() -> dict[str, Any]:
    """The chart's values.yaml."""
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


def fill_rules(text: str, *, job_regex: str, xid_codes: list[int], stale_seconds: int,
               runbook_url: str) -> str:
    """The rules source with its ${...} placeholders filled in, as the chart does."""
    return (
        text.replace("${JOB_REGEX}", job_regex)
        .replace("${XID_CODES}", "|".join(str(c) for c in xid_codes))
        .replace("${STALE_SECONDS}", str(stale_seconds))
        .replace("${RUNBOOK_URL}", runbook_url)
    )


def default_rules_text() -> str:
    """deploy/rules.yml as it should be: the source filled with the chart's default values."""
    prom = chart_defaults()["prometheusRule"]
    stale_seconds = 90  # 3 x the default 30 s collect interval (= the default scrape interval)
    source = RULES_SOURCE.read_text()
    header = (
        "# Alert and recording rules for gpu-exporter, for a Prometheus without\n"
        "# prometheus-operator:\n"
        "#   rule_files: [rules.yml]\n"
        "# GENERATED from charts/dcgm-exporter/files/rules.yml with the chart's default\n"
        "# values "
        "(python tests/deploy/chart_render.py --write); edit the source, not this file.\n"
        f"# Exporter job regex: {prom['jobRegex']}; stale after {stale_seconds} s\n"
        "# (3 x the default 30 s collect interval; raise it when -c is longer).\n"
        "# The GPU alerts use dcgm-exporter metric names and labels only, except GpuDown,\n"
        "# GpuMissing and the XID alert, which read gpu-exporter's own gpu_exporter_* metrics,\n"
        "# and the workload rules (gpu_exporter_workload_*, needs --workload-metrics).\n"
    )
    return header + fill_rules(
        source[source.index("groups:"):],
        job_regex=prom["jobRegex"],
        xid_codes=prom["xidCodes"],
        stale_seconds=stale_seconds,
        runbook_url=prom["runbookBaseUrl"],
    )


def manifests_text() -> str:
    """deploy/manifests/gpu-exporter.yaml as it should be."""
    values = yaml.safe_load(MANIFESTS_VALUES.read_text()) or {}
    rendered = render(values, name=MANIFESTS_RELEASE, namespace=MANIFESTS_NAMESPACE)
    parts = [
        "# GENERATED by rendering charts/dcgm-exporter with deploy/manifests/values.yaml\n"
        "# (python tests/deploy/chart_render.py --write). Namespace: "
        f"{MANIFESTS_NAMESPACE}; create it first.\n"
    ]
    for template in sorted(rendered):
        body = rendered[template].strip()
        if template.endswith("NOTES.txt") or not body:
            continue
        parts.append(f"---\n# Source: {template}\n{body}\n")
    return "".join(parts)


def generated() -> dict[Path, str]:
    """Every generated file and its expected content."""
    return {RULES_FILE: default_rules_text(), MANIFESTS_FILE: manifests_text()}


def main(argv: list[str] | None = None) -> int:
    """Write or check the generated files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the generated files")
    mode.add_argument("--check", action="store_true", help="exit 1 when a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
        else:
            stale.append(str(path.relative_to(ROOT)))
    if stale:
        print("out of date (run tests/deploy/chart_render.py --write): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
