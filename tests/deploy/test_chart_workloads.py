"""The chart's workloadMetrics value: off by default, and when on exactly what it needs.

What it needs (docs/kubernetes.md, Shared GPUs): NVML reports host PIDs whatever the caller's
PID namespace, so the exporter reads the host's ``/proc/<pid>/cgroup`` through a read-only
hostPath mount of the host's /proc with ``GPU_EXPORTER_PROCFS_ROOT`` pointing at it. No hostPID,
no capability, no privilege escalation, no RBAC.
"""

from __future__ import annotations

import copy
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
from chart_render import CHART, by_kind, chart_defaults, documents, render

from gpu_exporter.cli import FLAGS

ENABLED = {"workloadMetrics": {"enabled": True}}
MOUNT = "/host/proc"
ADDED_ENV = {"GPU_EXPORTER_WORKLOAD_METRICS": "true", "GPU_EXPORTER_PROCFS_ROOT": MOUNT}


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (ds,) = by_kind(docs, "DaemonSet")
    spec: dict[str, Any] = ds["spec"]["template"]["spec"]
    return spec


def without_workload_parts(spec: dict[str, Any]) -> dict[str, Any]:
    """The pod spec less the host-proc volume, its mount and the two env vars."""
    spec = copy.deepcopy(spec)
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "host-proc"]
    (c,) = spec["containers"]
    c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] != "host-proc"]
    c["env"] = [e for e in c["env"] if e["name"] not in ADDED_ENV]
    return spec


def test_off_by_default_and_the_default_render_is_unchanged() -> None:
    assert chart_defaults()["workloadMetrics"]["enabled"] is False
    default = render()
    # The disabled value renders nothing, whatever its other keys say.
    disabled = {"workloadMetrics": {"enabled": False, "hostProcPath": "/elsewhere",
                                    "recursiveReadOnly": "Disabled"}}
    assert render(disabled) == default
    spec = pod_spec(documents(default))
    assert "hostPID" not in spec
    assert {v["name"] for v in spec["volumes"]} == {"pod-resources", "config", "tmp"}
    assert all(v.get("hostPath", {}).get("path") != "/proc" for v in spec["volumes"])
    (c,) = spec["containers"]
    assert {m["name"] for m in c["volumeMounts"]} == {"pod-resources", "config", "tmp"}
    names = {e["name"] for e in c["env"]}
    assert not names & set(ADDED_ENV)
    assert without_workload_parts(spec) == spec


def test_enabled_adds_exactly_a_read_only_host_proc_mount_and_two_env_vars() -> None:
    default_docs = documents(render())
    docs = documents(render(ENABLED))
    spec = pod_spec(docs)
    # The volume: the host's /proc, which must exist as a directory.
    (volume,) = [v for v in spec["volumes"] if v["name"] == "host-proc"]
    assert volume == {"name": "host-proc", "hostPath": {"path": "/proc", "type": "Directory"}}
    (c,) = spec["containers"]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "host-proc"]
    assert mount == {"name": "host-proc", "mountPath": MOUNT, "readOnly": True,
                     "recursiveReadOnly": "Enabled"}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert {name: env[name] for name in ADDED_ENV} == ADDED_ENV
    # Nothing else changes: no hostPID, the same security context (all capabilities dropped,
    # no privilege escalation, read-only root), the same objects (no new RBAC).
    assert "hostPID" not in spec
    assert "hostNetwork" not in spec
    assert c["securityContext"] == chart_defaults()["securityContext"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert without_workload_parts(spec) == pod_spec(default_docs)
    others = [d for d in docs if d["kind"] != "DaemonSet"]
    assert others == [d for d in default_docs if d["kind"] != "DaemonSet"]
    assert by_kind(docs, "ClusterRole") == []
    assert spec["automountServiceAccountToken"] is False


def test_the_exporter_knows_every_env_var_the_value_sets() -> None:
    # A chart value must not set variables the exporter ignores: each one is a flag's env var,
    # and the mount path is what the exporter is told to read.
    known = {flag.env: flag for flag in FLAGS if flag.env}
    for name in ADDED_ENV:
        assert name in known, f"{name}: not an env var of src/gpu_exporter/cli.py"
        assert known[name].status != "later", f"{name}: refused by the exporter"
    assert "--procfs-root" in known["GPU_EXPORTER_PROCFS_ROOT"].names
    assert "--workload-metrics" in known["GPU_EXPORTER_WORKLOAD_METRICS"].names


@pytest.mark.parametrize(("setting", "expected"),
                         [("IfPossible", "IfPossible"), ("Disabled", None)])
def test_recursive_read_only_setting(setting: str, expected: str | None) -> None:
    values = {"workloadMetrics": {"enabled": True, "recursiveReadOnly": setting,
                                  "hostProcPath": "/host-root/proc"}}
    spec = pod_spec(documents(render(values)))
    (c,) = spec["containers"]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "host-proc"]
    assert mount["readOnly"] is True
    assert mount.get("recursiveReadOnly") == expected
    (volume,) = [v for v in spec["volumes"] if v["name"] == "host-proc"]
    assert volume["hostPath"]["path"] == "/host-root/proc"


def test_enabled_render_validates_strictly_and_lints_clean() -> None:
    latest = kubernetes_validate.utils.latest_version()
    for doc in documents(render(ENABLED)):
        if doc["kind"] in {"ServiceMonitor", "PrometheusRule"}:
            continue
        kubernetes_validate.validate(doc, latest, strict=True)
    # recursiveReadOnly is a 1.30 field: with Disabled the render is valid for 1.25 too.
    values = {"workloadMetrics": {"enabled": True, "recursiveReadOnly": "Disabled"}}
    for doc in documents(render(values)):
        kubernetes_validate.validate(doc, "1.25", strict=True)
    report = helm.lint(CHART, ENABLED, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_the_strict_validator_knows_recursive_read_only() -> None:
    # Guards the check above: the old schema really rejects the field the new one accepts.
    (ds,) = by_kind(documents(render(ENABLED)), "DaemonSet")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, "1.25", strict=True)


def test_user_env_wins_without_duplicates() -> None:
    values = {**ENABLED, "extraEnv": [{"name": "GPU_EXPORTER_PROCFS_ROOT", "value": "/p"}]}
    (c,) = pod_spec(documents(render(values)))["containers"]
    names = [e["name"] for e in c["env"]]
    assert len(names) == len(set(names))
    assert {e["name"]: e.get("value") for e in c["env"]}["GPU_EXPORTER_PROCFS_ROOT"] == "/p"


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"workloadMetrics": {"enabled": "yes"}}, "/workloadMetrics/enabled"),
        ({"workloadMetrics": {"hostProcPath": "proc"}}, "/workloadMetrics/hostProcPath"),
        ({"workloadMetrics": {"recursiveReadOnly": "true"}}, "/workloadMetrics/recursiveReadOnly"),
        ({"workloadMetrics": {"hostPID": True}}, "/workloadMetrics"),
    ],
)
def test_schema_rejects_bad_values_naming_the_key(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=where):
        render(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"extraHostVolumes": [{"name": "host-proc", "hostPath": "/proc"}]},
         r"extraHostVolumes\[0\]: the volume name host-proc is taken by workloadMetrics"),
        ({"extraConfigMapVolumes": [{"name": "x"}, {"name": "host-proc",
                                                    "configMap": {"name": "c"}}]},
         r"extraConfigMapVolumes\[1\]: the volume name host-proc is taken"),
        ({"extraVolumeMounts": [{"name": "m", "mountPath": "/host/proc/"}]},
         r"extraVolumeMounts\[0\]: /host/proc is where workloadMetrics mounts"),
        ({"extraVolumeMounts": [{"name": "m", "mountPath": "/host/proc/1"}]},
         r"extraVolumeMounts\[0\]: /host/proc/1 is where workloadMetrics mounts"),
    ],
)
def test_clashing_volumes_are_refused_naming_the_key(values: dict[str, Any],
                                                     message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render({**ENABLED, **values})
    # The same values are fine while workloadMetrics is off.
    assert by_kind(documents(render(values)), "DaemonSet")
