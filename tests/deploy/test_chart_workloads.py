"""The chart's workloadMetrics value: off by default, and when on exactly what it needs.

What it needs (docs/kubernetes.md, Shared GPUs): NVML reports host PIDs whatever the caller's
PID namespace, so the exporter reads the host's ``/proc/<pid>/cgroup`` through a read-only
hostPath mount of the host's /proc with ``GPU_EXPORTER_PROCFS_ROOT`` pointing at it; and, to name
the pod of a process on a time-sliced GPU, it watches its node's pods (``--workload-metrics``
with ``-k`` starts that watch), so read access to pods and the service-account token. No
hostPID, no capability, no privilege escalation, nothing else.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
from chart_render import CHART, ROOT, by_kind, chart_defaults, documents, render

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


POD_READER = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]


def test_enabled_adds_exactly_a_read_only_host_proc_mount_two_env_vars_and_pod_reads() -> None:
    default_docs = documents(render())
    docs = documents(render(ENABLED))
    spec = pod_spec(docs)
    # The volume: the host's /proc, which must exist as a directory.
    (volume,) = [v for v in spec["volumes"] if v["name"] == "host-proc"]
    assert volume == {"name": "host-proc", "hostPath": {"path": "/proc", "type": "Directory"}}
    (c,) = spec["containers"]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "host-proc"]
    assert mount == {"name": "host-proc", "mountPath": MOUNT, "readOnly": True,
                     "recursiveReadOnly": "IfPossible"}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert {name: env[name] for name in ADDED_ENV} == ADDED_ENV
    # Reading the node's pods: get/list/watch on pods and nothing else, with the token.
    (role,) = by_kind(docs, "ClusterRole")
    assert role["rules"] == POD_READER
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert spec["automountServiceAccountToken"] is True
    # Nothing else changes: no hostPID, the same security context (all capabilities dropped,
    # no privilege escalation, read-only root), the same other objects.
    assert "hostPID" not in spec
    assert "hostNetwork" not in spec
    assert c["securityContext"] == chart_defaults()["securityContext"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    spec["automountServiceAccountToken"] = False
    assert without_workload_parts(spec) == pod_spec(default_docs)
    rbac = {"ClusterRole", "ClusterRoleBinding"}
    others = [d for d in docs if d["kind"] not in {"DaemonSet", "ServiceAccount", *rbac}]
    assert others == [d for d in default_docs if d["kind"] not in {"DaemonSet", "ServiceAccount"}]
    (account,) = by_kind(docs, "ServiceAccount")
    assert account["automountServiceAccountToken"] is True


def test_without_rbac_creation_no_role_and_no_token() -> None:
    docs = documents(render({**ENABLED, "kubernetes": {"rbac": {"create": False}}}))
    assert by_kind(docs, "ClusterRole") == []
    assert by_kind(docs, "ClusterRoleBinding") == []
    assert pod_spec(docs)["automountServiceAccountToken"] is False


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
                         [("Enabled", "Enabled"), ("IfPossible", "IfPossible"), ("Disabled", None)])
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
    # recursiveReadOnly is a 1.30 field: rendered for an older cluster, or with Disabled, the
    # default render is valid for 1.25 too.
    values = {"workloadMetrics": {"enabled": True, "recursiveReadOnly": "Disabled"}}
    for rendered in (render(values), render(ENABLED, kube_version="1.25.16")):
        for doc in documents(rendered):
            if doc["kind"] not in {"ServiceMonitor", "PrometheusRule"}:
                kubernetes_validate.validate(doc, "1.25", strict=True)
    report = helm.lint(CHART, ENABLED, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("kube_version", ["1.25.16", "1.29.5"])
def test_before_1_30_if_possible_leaves_the_field_out_and_enabled_is_refused(
    kube_version: str,
) -> None:
    # The default (IfPossible) must start the pod on any cluster the chart supports: before
    # 1.30 the API server does not know the field (strict validation would reject it), so it
    # is left out and the mount is plain read-only. Enabled is a requirement the cluster
    # cannot meet: refused at render time, naming the key, not a pod that never starts.
    spec = pod_spec(documents(render(ENABLED, kube_version=kube_version)))
    (c,) = spec["containers"]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "host-proc"]
    assert mount == {"name": "host-proc", "mountPath": MOUNT, "readOnly": True}
    strict = {"workloadMetrics": {"enabled": True, "recursiveReadOnly": "Enabled"}}
    with pytest.raises(helm.HelmRenderError,
                       match=rf"workloadMetrics.recursiveReadOnly: Enabled needs Kubernetes "
                             rf"1.30 or newer \(this cluster: v{kube_version}\)"):
        render(strict, kube_version=kube_version)
    # From 1.30 on, the same values render the field as asked.
    (c,) = pod_spec(documents(render(strict, kube_version="1.30.0")))["containers"]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "host-proc"]
    assert mount["recursiveReadOnly"] == "Enabled"


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


def test_the_exporter_accepts_the_rendered_settings(tmp_path: Path) -> None:
    # The container's arguments and env as rendered, through the exporter's own flag parsing
    # (the host's /proc stands in at a temporary directory: the chart's path is a mount point).
    from gpu_exporter.cli import build_config, build_parser, resolve

    (c,) = pod_spec(documents(render(ENABLED)))["containers"]
    environ = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    assert environ["GPU_EXPORTER_PROCFS_ROOT"] == MOUNT
    environ["GPU_EXPORTER_PROCFS_ROOT"] = str(tmp_path)
    environ["NODE_NAME"] = "gpu-node-1"  # the chart's downward-API value
    counters = tmp_path / "counters.csv"
    counters.write_text((ROOT / "counters" / "default-counters.csv").read_text())
    args = [str(counters) if a.startswith("/etc/dcgm-exporter/") else a for a in c["args"]]
    config = build_config(resolve(build_parser().parse_args(args), environ), environ)
    assert config.workloads is not None
    assert config.workloads.procfs_root == str(tmp_path)
    assert config.workloads.engine_socket is None  # no engine is contacted in a cluster
    assert config.kube.enabled
    assert config.kube.needs_api  # hence the pod reads above
