"""The GPU Operator's dcgm-exporter DaemonSet environment, as recorded from NVIDIA/gpu-operator.

The operator runs whatever image ClusterPolicy's dcgmExporter.repository/image/version names,
with no command or arguments: everything comes from the environment below. These checks run the
exporter's own flag resolution on exactly that environment (tests/image runs the built image
with it). fixtures/gpu-operator/dcgm-exporter-daemonset.json states its source.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpu_exporter import cli

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).parent / "fixtures" / "gpu-operator" / "dcgm-exporter-daemonset.json"
NODE = "gpu-node-7"


def recorded() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(FIXTURE.read_text())
    return loaded


def environment(*variants: str) -> dict[str, str]:
    """The container's environment: the DaemonSet's, plus the controller's additions."""
    facts = recorded()
    entries = list(facts["daemonset"]["container"]["env"])
    for variant in variants:
        entries += facts["controller_env"][variant]
    env = {}
    for entry in entries:
        field = entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        env[entry["name"]] = NODE if field == "spec.nodeName" else entry["value"]
    return env


def test_fixture_states_its_source() -> None:
    source = recorded()["source"]
    assert source["repository"] == "https://github.com/NVIDIA/gpu-operator"
    assert source["release_tag"]
    assert len(source["release_commit"]) == 40
    assert source["files"]
    assert source["recorded"]
    container = recorded()["daemonset"]["container"]
    assert container["command"] is None
    assert container["args"] is None
    assert container["livenessProbe"]["httpGet"] == {"port": 9400, "path": "/health"}
    assert container["livenessProbe"]["initialDelaySeconds"] == 45


@pytest.mark.parametrize(
    "variants",
    [(), ("standalone_dcgm",), ("dra_node",), ("dra_node", "dra_node_standalone_dcgm")],
    ids=["embedded", "standalone-dcgm", "dra-node", "dra-node-standalone-dcgm"],
)
def test_operator_environment_is_accepted(variants: tuple[str, ...]) -> None:
    env = environment(*variants)
    values = cli.resolve(cli.build_parser().parse_args([]), env)
    cli._check_unsupported(values)  # raises UsageError (exit 2) for a refused variable
    config = cli.build_config(values, env)
    assert config.address.port == 9400
    assert config.kube.enabled is True
    assert config.hostname == NODE
    # The operator's counters file, which the image ships at that path.
    assert config.counters_path == Path("/etc/dcgm-exporter/dcp-metrics-included.csv")
    assert (ROOT / "counters" / config.counters_path.name).is_file()


def test_no_flag_the_operator_sets_is_unknown() -> None:
    known = {f.env for f in cli.FLAGS} | {"NODE_NAME"}
    facts = recorded()
    names = {e["name"] for e in facts["daemonset"]["container"]["env"]}
    for extra in facts["controller_env"].values():
        names |= {e["name"] for e in extra}
    assert names <= known, names - known


def test_custom_counters_configmap_path_is_used_as_given() -> None:
    # ClusterPolicy dcgmExporter.config.name: a ConfigMap file mounted by subPath into the
    # image's /etc/dcgm-exporter (not a volume here, so the mount point can be created).
    custom = recorded()["controller_metrics_config"]
    env = {**environment(), **{e["name"]: e["value"] for e in custom["env"]}}
    config = cli.build_config(cli.resolve(cli.build_parser().parse_args([]), env), env)
    assert config.counters_path == Path(custom["volumeMount"]["mountPath"])
