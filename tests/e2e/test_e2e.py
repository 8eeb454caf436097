"""End to end: simulated GPUs -> exporter -> real Prometheus -> dashboards, alerts, adapter.

One Prometheus scrapes two exporters every second, both on the simulated NVML and both
attributing GPUs to pods through a fake kubelet (a real gRPC server on a unix socket):

* node ``gpu-node-a``: 8x H100 (``h100x8``), label ``Hostname`` (dcgm-exporter <= 4.5 and our
  default). Pods: ``ml/train-0`` on GPUs 0 and 1, ``ml/train-1`` on GPU 6, and
  ``research/notebook-0`` on GPU 7, which the profile keeps idle. With ``--workload-metrics``
  on a fake procfs tree: GPU 6 runs a process of ``train-1``'s container (70 % SM) and one of a
  Slurm job (20 %), scripted in the simulator with those PIDs.
* node ``gpu-node-b``: A100s with MIG (``a100-mig``), label ``hostname`` (dcgm-exporter 4.6+,
  ``--hostname-label hostname``). Pods hold MIG instances by GKE-style ids (``nvidia0/gi1``).

The exporters run with every opt-in row of the shipped counters file enabled, so every
dashboard panel has its data. They load the simulated libnvidia-ml.so.1 the way
an unmodified NVML program finds the driver's library (``LD_LIBRARY_PATH``), which also gives
this test the simulator's state directory for injecting an XID.

Then: every panel query of dashboards/gpu-exporter.json with all variables at "All" returns
data; the variables resolve (both generations of the hostname label); the eight queries of the
upstream dashboard (grafana.com 12239) return data; MIG-aware sums do not over-count; every
prometheus-adapter rule filled in for a pod returns that pod's series; deploy/rules.yml loads
and evaluates without errors on real series, and an injected XID fires its alert.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
for _helpers in (ROOT / "tests", ROOT / "tests" / "kubernetes", ROOT / "tests" / "deploy"):
    if str(_helpers) not in sys.path:
        sys.path.insert(0, str(_helpers))

import dashboard as dash  # noqa: E402 - tests/e2e
from adapter import rendered_queries  # noqa: E402 - tests/deploy
from fake_kubelet import FakeKubelet, pod  # noqa: E402 - tests/kubernetes
from prometheus import Prometheus, run_prometheus  # noqa: E402 - tests/e2e
from support.exporter import Exporter, run_exporter  # noqa: E402 - tests/support

from gpu_exporter.simulator.procfs import cgroup_text, write_tree  # noqa: E402

pytestmark = pytest.mark.slow

COUNTERS = ROOT / "counters" / "default-counters.csv"
RULES = ROOT / "deploy" / "rules.yml"
NODE_A = "gpu-node-a"
NODE_B = "gpu-node-b"
XID_GPU, XID_CODE = 3, 94  # 94: contained ECC error, one of the codes that need action
IDLE_GPU = 7  # the h100x8 profile keeps GPU 7 idle
SHARED_GPU = 6  # train-1's GPU, shared with a Slurm job's process (--workload-metrics)
TRAIN_1_UID = "5d1c0b9a-8e7f-4a6b-9c5d-4e3f2a1b0c9d"
TRAIN_1_CONTAINER = "7e" * 32
POD_PID, SLURM_PID = 31001, 31002

# The eight panel queries of NVIDIA's dashboard (grafana.com 12239), variables at "All".
UPSTREAM_F = '{instance=~".*", gpu=~".*"}'
UPSTREAM_QUERIES = {
    "GPU Temperature": f"DCGM_FI_DEV_GPU_TEMP{UPSTREAM_F}",
    "GPU Avg. Temp": f"avg(DCGM_FI_DEV_GPU_TEMP{UPSTREAM_F})",
    "GPU Power Usage": f"DCGM_FI_DEV_POWER_USAGE{UPSTREAM_F}",
    "GPU Power Total": f"sum(DCGM_FI_DEV_POWER_USAGE{UPSTREAM_F})",
    "GPU SM Clocks": f"DCGM_FI_DEV_SM_CLOCK{UPSTREAM_F} * 1000000",
    "GPU Utilization": f"DCGM_FI_DEV_GPU_UTIL{UPSTREAM_F}",
    "GPU Framebuffer Mem Used": f"DCGM_FI_DEV_FB_USED{UPSTREAM_F}",
    "Tensor Core Utilization": f"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{UPSTREAM_F}",
}
UPSTREAM_VARIABLES = {
    "instance": "label_values(DCGM_FI_DEV_GPU_TEMP, instance)",
    "gpu": "label_values(DCGM_FI_DEV_GPU_TEMP, gpu)",
}

DASHBOARD = dash.load()
PANEL_QUERIES = dash.queries(DASHBOARD)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Stack:
    """The running exporters, their kubelets' pods and the Prometheus scraping them."""

    prometheus: Prometheus
    exporter_a: Exporter
    exporter_b: Exporter
    mig_pods: dict[str, tuple[str, str]]  # pod name -> (gpu, GPU_I_ID)


def _all_rows_counters(directory: Path) -> Path:
    """The shipped default counters with every commented field row enabled, once each.

    Label rows stay commented: they only add labels.
    """
    lines = COUNTERS.read_text(encoding="utf-8").splitlines()
    active = {line.split(",", 1)[0].strip() for line in lines if line.startswith("DCGM_")}
    out = []
    for line in lines:
        body = line.lstrip("#").strip()
        columns = [column.strip() for column in body.split(",", 2)]
        if (line.startswith("#") and body.startswith("DCGM_") and len(columns) == 3
                and columns[1] != "label" and columns[0] not in active):
            active.add(columns[0])
            out.append(body)
        else:
            out.append(line)
    path = directory / "all-counters.csv"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of ``name`` in an exposition."""
    found = []
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels_text, _, value = line[len(name) + 1:].rpartition("} ")
            found.append((dict(_LABEL.findall(labels_text)), float(value.split()[0])))
    return found


def _target(exporter: Exporter) -> str:
    return exporter.url.removeprefix("http://").removeprefix("https://")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from gpu_exporter import simulator  # importing it loads no library

    work = tmp_path_factory.mktemp("e2e")
    counters = _all_rows_counters(work)
    sim_a = simulator.prepare("h100x8", seed=1, state_dir=work / "sim-a")
    sim_b = simulator.prepare("a100-mig", seed=1, state_dir=work / "sim-b")
    sockets = Path(tempfile.mkdtemp(prefix="e2e-kubelet-"))  # unix socket paths are short
    common = ["-f", str(counters), "-c", "1000", "-k",
              "--pod-resources-refresh-interval", "1000"]
    try:
        with ExitStack() as stack:
            kubelet_a = stack.enter_context(FakeKubelet(sockets / "a.sock"))
            kubelet_b = stack.enter_context(FakeKubelet(sockets / "b.sock"))
            procfs = work / "procfs"
            procfs.mkdir()
            write_tree(procfs, {
                POD_PID: cgroup_text("kubepods-containerd-systemd", pod_uid=TRAIN_1_UID,
                                     container_id=TRAIN_1_CONTAINER),
                SLURM_PID: cgroup_text("slurm", version=1, uid=1000, job=4242),
            })
            exporter_a = stack.enter_context(run_exporter(
                [*common, "--pod-resources-kubelet-socket", kubelet_a.socket_path,
                 "--workload-metrics", "--procfs-root", str(procfs)],
                env={**sim_a.env, "NODE_NAME": NODE_A}))
            exporter_b = stack.enter_context(run_exporter(
                [*common, "--pod-resources-kubelet-socket", kubelet_b.socket_path,
                 "--hostname-label", "hostname"],
                env={**sim_b.env, "NODE_NAME": NODE_B}))

            # Node A: whole GPUs by UUID, as NVIDIA's device plugin names them.
            uuids = {labels["gpu"]: labels["UUID"] for labels, _ in
                     _samples(exporter_a.wait_for("DCGM_FI_DEV_GPU_TEMP{"), "DCGM_FI_DEV_GPU_TEMP")}
            assert len(uuids) == 8, uuids
            gpu = "nvidia.com/gpu"
            kubelet_a.set_allocatable({gpu: sorted(uuids.values())})
            kubelet_a.set_pods([
                pod("train-0", "ml", {"trainer": {gpu: [uuids["0"], uuids["1"]]}}),
                pod("train-1", "ml", {"trainer": {gpu: [uuids["6"]]}}),
                pod("notebook-0", "research", {"jupyter": {gpu: [uuids[str(IDLE_GPU)]]}}),
            ])

            # Node B: MIG instances by GKE-style ids nvidia<gpu>/gi<GPU_I_ID>.
            instances = sorted(
                {(labels["gpu"], labels["GPU_I_ID"], labels["GPU_I_PROFILE"]) for labels, _ in
                 _samples(exporter_b.wait_for("GPU_I_ID="), "DCGM_FI_DEV_FB_USED")
                 if "GPU_I_ID" in labels},
                key=lambda item: (int(item[0]), int(item[1])),
            )
            assert len(instances) >= 2, instances
            chosen = instances[:2]
            mig_pods = {f"infer-{i}": (gpu_index, gi) for i, (gpu_index, gi, _) in
                        enumerate(chosen)}
            kubelet_b.set_allocatable({
                f"nvidia.com/mig-{profile}": [f"nvidia{g}/gi{i}" for g, i, p in instances
                                              if p == profile]
                for profile in {p for _, _, p in instances}})
            kubelet_b.set_pods([
                pod(name, "serving",
                    {"server": {f"nvidia.com/mig-{profile}": [f"nvidia{g}/gi{i}"]}})
                for name, (g, i, profile) in zip(mig_pods, chosen, strict=True)
            ])
            exporter_a.wait_for('pod="notebook-0"')
            faults_a = simulator.FaultInjector(sim_a.state_dir)
            faults_a.add_process(POD_PID, SHARED_GPU, sm=70, mem_mib=4096)
            faults_a.add_process(SLURM_PID, SHARED_GPU, sm=20, mem_mib=1024)
            exporter_a.wait_for('workload_kind="slurm_job"')
            exporter_b.wait_for('pod="infer-1"')

            prometheus = stack.enter_context(run_prometheus(
                [_target(exporter_a), _target(exporter_b)], work / "prometheus",
                rule_files=[RULES]))
            simulator.FaultInjector(sim_a.state_dir).xid(XID_GPU, XID_CODE)
            prometheus.wait_for(f'gpu_exporter_xid_errors_total{{xid="{XID_CODE}"}}')
            # Enough samples for rate() and increase() over the dashboards' windows.
            prometheus.wait_for("count_over_time(gpu_exporter_collections_total[1m]) >= 4",
                                count=2)
            yield Stack(prometheus, exporter_a, exporter_b, mig_pods)
    finally:
        shutil.rmtree(sockets, ignore_errors=True)


# ---------------------------------------------------------------- our dashboard

@pytest.mark.parametrize("query", PANEL_QUERIES, ids=[query.name for query in PANEL_QUERIES])
def test_dashboard_panel_query_returns_data(stack: Stack, query: dash.Query) -> None:
    expr = dash.substitute(query.expr, dash.all_selected(DASHBOARD))
    result = stack.prometheus.query(expr)
    assert result, f"no data: {expr}"


def _variable_values(prometheus: Prometheus, var: dict[str, Any],
                     values: dict[str, str]) -> set[str]:
    """The options Grafana would offer for a query variable."""
    text = dash.substitute(dash.variable_query(var), values)
    label_values = dash.label_values_query(text)
    if label_values is not None:
        selector, label = label_values
        return {series["metric"][label] for series in prometheus.query(selector)
                if series["metric"].get(label)}
    expr = dash.query_result_query(text)
    assert expr is not None, text
    lines = []
    for series in prometheus.query(expr):  # formatted as Grafana formats query_result rows
        labels = ", ".join(f'{key}="{value}"' for key, value in series["metric"].items())
        lines.append(f"{{{labels}}} {series['value'][1]} {series['value'][0]}")
    regex = var.get("regex", "").strip("/")
    found = set()
    for line in lines:
        match = re.search(regex, line) if regex else None
        found.add(match.group(1) if match else line)
    return found


def test_dashboard_variables_resolve(stack: Stack) -> None:
    values = dash.all_selected(DASHBOARD)
    variables = dash.variables(DASHBOARD)
    options = {name: _variable_values(stack.prometheus, var, values)
               for name, var in variables.items() if var["type"] == "query"}
    assert options["node"] == {NODE_A, NODE_B}  # `Hostname` and `hostname` exporters alike
    assert {str(i) for i in range(8)} <= options["gpu"]
    assert options["namespace"] == {"ml", "research", "serving"}
    assert options["pod"] == {"train-0", "train-1", "notebook-0", *stack.mig_pods}
    assert options["mig_profile"]
    assert {gi for _, gi in stack.mig_pods.values()} <= options["mig_instance"]


def _panel(title: str) -> dict[str, Any]:
    return next(panel for panel in dash.all_panels(DASHBOARD) if panel.get("title") == title)


def test_dashboard_filters_select_one_node_and_one_pod(stack: Stack) -> None:
    values = dash.all_selected(DASHBOARD) | {"node": NODE_B}
    temps = stack.prometheus.query(
        dash.substitute(_panel("GPU and memory temperature")["targets"][0]["expr"], values))
    assert temps
    assert {series["metric"].get("hostname") for series in temps} == {NODE_B}

    values = dash.all_selected(DASHBOARD) | {"namespace": "ml", "pod": "train-0"}
    rows = stack.prometheus.query(
        dash.substitute(_panel("GPU usage per pod")["targets"][0]["expr"], values))
    assert {(row["metric"]["pod"], row["metric"]["gpu"]) for row in rows} == {
        ("train-0", "0"), ("train-0", "1")}


def test_allocated_but_idle_lists_only_the_idle_pod(stack: Stack) -> None:
    expr = _panel("Allocated but idle GPUs")["targets"][0]["expr"]
    rows = stack.prometheus.query(dash.substitute(expr, dash.all_selected(DASHBOARD)))
    whole_gpu_rows = {(row["metric"]["pod"], row["metric"]["gpu"]) for row in rows
                      if row["metric"].get("Hostname") == NODE_A}
    assert whole_gpu_rows == {("notebook-0", str(IDLE_GPU))}


def test_mig_aware_sums_count_each_gpu_once(stack: Stack) -> None:
    prometheus = stack.prometheus
    at = time.time() - 1  # one evaluation time for every query compared below
    values = dash.all_selected(DASHBOARD) | {"node": NODE_B}
    # dcgm-exporter's layout (the default): device-level fields of a MIG-enabled GPU repeat on
    # each of its instances, so a plain sum() over-counts; the panel counts each GPU once.
    repeated = prometheus.query(
        f'count by (gpu) (DCGM_FI_DEV_POWER_USAGE{{hostname="{NODE_B}", GPU_I_ID!=""}}) > 1',
        at=at)
    assert repeated
    physical = {series["metric"]["gpu"] for series in prometheus.query(
        f'gpu_exporter_gpu_up{{hostname="{NODE_B}", GPU_I_ID=""}}', at=at)}
    power = prometheus.query(
        dash.substitute(_panel("Power draw")["targets"][0]["expr"], values), at=at)
    per_gpu_power = prometheus.query(
        f'max by (gpu) (DCGM_FI_DEV_POWER_USAGE{{hostname="{NODE_B}"}})', at=at)
    assert {series["metric"]["gpu"] for series in per_gpu_power} == physical
    assert float(power[0]["value"][1]) == pytest.approx(
        sum(float(series["value"][1]) for series in per_gpu_power))
    naive = prometheus.query(f'sum(DCGM_FI_DEV_POWER_USAGE{{hostname="{NODE_B}"}})', at=at)
    assert float(naive[0]["value"][1]) > float(power[0]["value"][1])
    # Framebuffer per physical GPU: the sum over its instances when it has any, else its own.
    per_gpu_expr = _panel("Framebuffer used per GPU")["targets"][0]["expr"]
    numerator = per_gpu_expr.split(" / ")[0].removeprefix("100 * ")
    per_gpu = {series["metric"]["gpu"]: float(series["value"][1]) for series in
               prometheus.query(dash.substitute(numerator, values), at=at)}
    assert set(per_gpu) == physical
    mig_gpu = next(iter(stack.mig_pods.values()))[0]
    instances = prometheus.query(
        f'sum(DCGM_FI_DEV_FB_USED{{hostname="{NODE_B}", gpu="{mig_gpu}", GPU_I_ID!=""}})', at=at)
    assert per_gpu[mig_gpu] == pytest.approx(float(instances[0]["value"][1]))


def test_workload_row_shows_each_workload_of_a_shared_gpu(stack: Stack) -> None:
    values = dash.all_selected(DASHBOARD) | {"node": NODE_A, "gpu": str(SHARED_GPU)}
    rows = stack.prometheus.query(
        dash.substitute(_panel("SM utilization per workload")["targets"][0]["expr"], values))
    by_kind = {row["metric"]["workload_kind"]: float(row["value"][1]) for row in rows}
    assert by_kind["pod"] == pytest.approx(0.7, abs=0.02)
    assert by_kind["slurm_job"] == pytest.approx(0.2, abs=0.02)
    assert {row["metric"]["workload"] for row in rows} == {
        TRAIN_1_CONTAINER[:12], "4242", "unattributed"}
    energy = stack.prometheus.query(dash.substitute(
        _panel("Power per workload")["targets"][0]["expr"], values))
    assert {row["metric"]["workload_kind"] for row in energy} >= {"pod", "slurm_job"}
    assert all(float(row["value"][1]) >= 0 for row in energy)


# ---------------------------------------------------------------- upstream dashboard 12239

@pytest.mark.parametrize("title", UPSTREAM_QUERIES)
def test_upstream_dashboard_query_returns_data(stack: Stack, title: str) -> None:
    result = stack.prometheus.query(UPSTREAM_QUERIES[title])
    assert result, title


def test_upstream_dashboard_variables_resolve(stack: Stack) -> None:
    for name, text in UPSTREAM_VARIABLES.items():
        label_values = dash.label_values_query(text)
        assert label_values is not None
        selector, label = label_values
        found = {series["metric"].get(label) for series in stack.prometheus.query(selector)}
        assert found - {None}, name
    instances = {series["metric"]["instance"] for series in
                 stack.prometheus.query("DCGM_FI_DEV_GPU_TEMP")}
    assert instances == {_target(stack.exporter_a), _target(stack.exporter_b)}


def test_upstream_dashboard_needs_only_default_counters() -> None:
    default_rows = {line.split(",", 1)[0].strip()
                    for line in COUNTERS.read_text(encoding="utf-8").splitlines()
                    if line.startswith("DCGM_")}
    for title, expr in UPSTREAM_QUERIES.items():
        metric = re.match(r"(?:\w+\()?(DCGM_\w+)", expr)
        assert metric is not None
        assert metric.group(1) in default_rows, title


# ---------------------------------------------------------------- prometheus-adapter

def test_adapter_rules_return_series_of_the_pod(stack: Stack) -> None:
    queries = rendered_queries("ml", "train-0")
    assert queries
    for name, expr in queries.items():
        result = stack.prometheus.query(expr)
        assert result, f"{name}: no data for ml/train-0: {expr}"
        assert {series["metric"].get("pod") for series in result} == {"train-0"}, name


def test_adapter_memory_rules_work_for_a_mig_pod(stack: Stack) -> None:
    name = next(iter(stack.mig_pods))
    queries = {metric: expr for metric, expr in rendered_queries("serving", name).items()
               if "memory" in metric}
    assert queries
    for metric, expr in queries.items():
        result = stack.prometheus.query(expr)
        assert result, f"{metric}: no data for serving/{name}: {expr}"
        assert {series["metric"].get("pod") for series in result} == {name}, metric


# ---------------------------------------------------------------- alert rules

def test_promtool_check_rules_is_clean() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool not found: apt-get install prometheus"
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_evaluate_without_errors_on_real_series(stack: Stack) -> None:
    # Errors such as many-to-many matches only show with real label sets.
    deadline = time.monotonic() + 10
    while True:
        rules = [rule for group in stack.prometheus.api("rules")["groups"]
                 for rule in group["rules"]]
        if all(rule["health"] != "unknown" for rule in rules) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(rules) >= 10
    assert all(rule["health"] == "ok" for rule in rules), [
        (rule["name"], rule["health"], rule.get("lastError")) for rule in rules
        if rule["health"] != "ok"]


def test_injected_xid_fires_its_alert_for_that_gpu_only(stack: Stack) -> None:
    firing = stack.prometheus.wait_for(
        'ALERTS{alertname="GpuXidErrorNeedsAction", alertstate="firing"}', timeout=15)
    assert {(alert["metric"]["gpu"], alert["metric"]["xid"]) for alert in firing} == {
        (str(XID_GPU), str(XID_CODE))}
    assert {alert["metric"].get("Hostname") for alert in firing} == {NODE_A}

