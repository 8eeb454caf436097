"""End to end with the chart's defaults: the dashboard as a user sees it after ``helm install``.

The exporters run with exactly the chart's default counters file (no opt-in row enabled) and
Kubernetes attribution on (the chart sets ``DCGM_EXPORTER_KUBERNETES=true``), each with a fake
kubelet (a real gRPC server on a unix socket), scraped every second by a real Prometheus:

* node ``gpu-node-c``: 8x H100 (``h100x8``); pods on GPUs 0 and 1 and on idle GPU 7;
* node ``gpu-node-d``: 4x T4 (``t4x4``): Turing, PCIe only, so no NVLink and no GPM profiling;
  pods on GPU 1 and on idle GPU 3.

No XID is injected: panels about XIDs must show a true 0, not nothing.

Checked: every query of every panel of dashboards/gpu-exporter.json, all variables at "All",
returns data, except the per-workload panels, which need ``--workload-metrics`` (off in the
chart's defaults) and must then be empty; restricted to the T4 node, the panels without data
are exactly those whose description says they need Hopper (GPM), NVLink or that flag.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
for _helpers in (ROOT / "tests", ROOT / "tests" / "kubernetes"):
    if str(_helpers) not in sys.path:
        sys.path.insert(0, str(_helpers))

import dashboard as dash  # noqa: E402 - tests/e2e
from fake_kubelet import FakeKubelet, pod  # noqa: E402 - tests/kubernetes
from prometheus import Prometheus, run_prometheus  # noqa: E402 - tests/e2e
from support.exporter import Exporter, run_exporter  # noqa: E402 - tests/support

pytestmark = pytest.mark.slow

CHART_COUNTERS = ROOT / "charts" / "dcgm-exporter" / "files" / "default-counters.csv"
NODE_H100 = "gpu-node-c"
NODE_T4 = "gpu-node-d"
T4_LACKS = ("Needs Hopper", "Needs NVLink")
"""Description sentences of panels that cannot have data on a T4 (Turing, PCIe only)."""
NEEDS_WORKLOADS = "Needs --workload-metrics"
"""Description sentence of the panels that stay empty with the chart's defaults."""

DASHBOARD = dash.load()
PANEL_QUERIES = dash.queries(DASHBOARD)
DATA_PANELS = [panel for panel in dash.all_panels(DASHBOARD) if panel.get("targets")]
WORKLOAD_PANELS = {panel["id"] for panel in DATA_PANELS
                   if NEEDS_WORKLOADS in panel.get("description", "")}
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Stack:
    """The two default-configured exporters and the Prometheus scraping them."""

    prometheus: Prometheus
    h100: Exporter
    t4: Exporter


def _uuids(exporter: Exporter, count: int) -> dict[str, str]:
    """gpu index -> UUID, from the exporter's temperature series."""
    text = exporter.wait_for("DCGM_FI_DEV_GPU_TEMP{")
    found = {}
    for line in text.splitlines():
        if line.startswith("DCGM_FI_DEV_GPU_TEMP{"):
            labels = dict(_LABEL.findall(line))
            found[labels["gpu"]] = labels["UUID"]
    assert len(found) == count, found
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from gpu_exporter import simulator  # importing it loads no library

    assert CHART_COUNTERS.is_file(), CHART_COUNTERS
    work = tmp_path_factory.mktemp("e2e-defaults")
    sim_h100 = simulator.prepare("h100x8", seed=2, state_dir=work / "sim-h100")
    sim_t4 = simulator.prepare("t4x4", seed=2, state_dir=work / "sim-t4")
    sockets = Path(tempfile.mkdtemp(prefix="e2e-defaults-"))  # unix socket paths are short
    common = ["-f", str(CHART_COUNTERS), "-c", "1000", "-k",
              "--pod-resources-refresh-interval", "1000"]
    gpu = "nvidia.com/gpu"
    try:
        with ExitStack() as stack:
            kubelet_h100 = stack.enter_context(FakeKubelet(sockets / "c.sock"))
            kubelet_t4 = stack.enter_context(FakeKubelet(sockets / "d.sock"))
            h100 = stack.enter_context(run_exporter(
                [*common, "--pod-resources-kubelet-socket", kubelet_h100.socket_path],
                env={**sim_h100.env, "NODE_NAME": NODE_H100}))
            t4 = stack.enter_context(run_exporter(
                [*common, "--pod-resources-kubelet-socket", kubelet_t4.socket_path],
                env={**sim_t4.env, "NODE_NAME": NODE_T4}))
            uuids = _uuids(h100, 8)
            kubelet_h100.set_allocatable({gpu: sorted(uuids.values())})
            kubelet_h100.set_pods([
                pod("train-0", "ml", {"trainer": {gpu: [uuids["0"], uuids["1"]]}}),
                pod("notebook-0", "research", {"jupyter": {gpu: [uuids["7"]]}}),
            ])
            t4_uuids = _uuids(t4, 4)
            kubelet_t4.set_allocatable({gpu: sorted(t4_uuids.values())})
            kubelet_t4.set_pods([
                pod("infer-0", "serving", {"server": {gpu: [t4_uuids["1"]]}}),
                pod("notebook-1", "research", {"jupyter": {gpu: [t4_uuids["3"]]}}),  # idle
            ])
            h100.wait_for('pod="notebook-0"')
            t4.wait_for('pod="infer-0"')
            prometheus = stack.enter_context(run_prometheus(
                [_target(h100), _target(t4)], work / "prometheus"))
            # Enough samples for rate() and increase() over the dashboards' windows.
            prometheus.wait_for("count_over_time(gpu_exporter_collections_total[1m]) >= 4",
                                count=2, timeout=60)
            yield Stack(prometheus, h100, t4)
    finally:
        shutil.rmtree(sockets, ignore_errors=True)


def _target(exporter: Exporter) -> str:
    return exporter.url.removeprefix("http://").removeprefix("https://")


def _has_data(prometheus: Prometheus, panel: dict[str, Any], values: dict[str, str]) -> bool:
    return any(prometheus.query(dash.substitute(target["expr"], values))
               for target in panel["targets"])


@pytest.mark.parametrize("query", PANEL_QUERIES, ids=[query.name for query in PANEL_QUERIES])
def test_every_panel_query_has_data_on_the_defaults(stack: Stack, query: dash.Query) -> None:
    expr = dash.substitute(query.expr, dash.all_selected(DASHBOARD))
    if query.panel_id in WORKLOAD_PANELS:
        # workloadMetrics is off by default: its panels (a collapsed row) have nothing to show.
        assert not stack.prometheus.query(expr), f"data without --workload-metrics: {expr}"
        return
    assert stack.prometheus.query(expr), f"no data with the chart's default counters: {expr}"


def test_on_a_t4_only_the_documented_panels_are_empty(stack: Stack) -> None:
    values = dash.all_selected(DASHBOARD) | {"node": NODE_T4}
    empty = {panel["title"] for panel in DATA_PANELS
             if not _has_data(stack.prometheus, panel, values)}
    documented = {panel["title"] for panel in DATA_PANELS
                  if any(needs in panel.get("description", "")
                         for needs in (*T4_LACKS, NEEDS_WORKLOADS))}
    assert empty == documented


def test_xid_totals_show_a_true_zero_before_the_first_xid(stack: Stack) -> None:
    panel = next(p for p in DATA_PANELS if p["title"] == "XID errors since exporter start")
    expr = dash.substitute(panel["targets"][0]["expr"], dash.all_selected(DASHBOARD))
    rows = stack.prometheus.query(expr)
    assert {(row["metric"]["gpu"], row["metric"]["xid"], row["value"][1]) for row in rows
            if row["metric"]["instance"] == _target(stack.h100)} == {
        (str(gpu), "none", "0") for gpu in range(8)}
