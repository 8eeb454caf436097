"""Our /metrics against recorded real dcgm-exporter samples, on the matching simulated profile.

The samples live in ``tests/migration/data/metrics_*.prom``; each file's header names its public
source (issue and comment), the dcgm-exporter version and what was kept. For every recorded
family we must export the family, with the recorded TYPE (and HELP, where recorded), and each of
our series must carry the recorded label names in the recorded order. Values are not compared
(other GPUs, another moment).

The counters file is built from the sample (its families with their type and help text, and a
``label`` row for each ``DCGM_FI_*`` label it shows), as the migrating node had it. Differences
that remain are listed below with their reason, and in docs/migration.md.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.exporter import run_exporter

from gpu_exporter import simulator

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(ROOT / "tests" / "kubernetes"))
from fake_kubelet import FakeKubelet, pod  # noqa: E402 - the shared fake kubelet

LATER_UPSTREAM_LABELS: dict[str, str] = {
    "pci_bus_id": "added by dcgm-exporter 3.3.7-3.5.0 (#326), after the T4 and A30 samples",
    "err_code": "added to DCGM_FI_DEV_XID_ERRORS by dcgm-exporter 3.3.6-3.4.2 (#309)",
    "err_msg": "added to DCGM_FI_DEV_XID_ERRORS by dcgm-exporter 3.3.6-3.4.2 (#309)",
}
"""Labels the parity baseline (4.5.3-4.8.2) has and an older recorded sample lacks: ours carry
them where the baseline does, so they are left out of the comparison only when the sample lacks
them. ``pci_bus_id`` must then follow ``UUID`` as in the baseline."""

DIFFERENCES_BY_DESIGN: dict[str, str] = {
    "values": "not compared: other GPUs, another moment, %f vs shortest float formatting",
    "GPU_I_PROFILE value": "from the MIG device name (1g.12gb); dcgm-exporter 4.2.3 derived "
                           "1g.11gb from the memory size (#544): label names are the same",
    "Hostname value": "the node name (NODE_NAME) or -r's host part, as upstream; samples show "
                      "their own hosts",
}
"""What is deliberately not compared, and why (listed in docs/migration.md too)."""

_SERIES = re.compile(r"^([A-Za-z_:][\w:]*)\{(.*)\} (\S+)$")
_LABEL = re.compile(r'([A-Za-z_]\w*)="((?:[^"\\]|\\.)*)"')


@dataclass
class Family:
    """One family of an exposition: type, help and its series' label pairs."""

    type: str = ""
    help: str | None = None
    series: list[list[tuple[str, str]]] = field(default_factory=list)


def parse(text: str) -> dict[str, Family]:
    """Families of a text exposition (comments other than HELP/TYPE ignored)."""
    families: dict[str, Family] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            families.setdefault(name, Family()).help = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            families.setdefault(name, Family()).type = kind
        elif (match := _SERIES.match(line)) is not None:
            families.setdefault(match.group(1), Family()).series.append(
                _LABEL.findall(match.group(2)))
    return families


def recorded(name: str) -> dict[str, Family]:
    """A recorded sample's families."""
    families = parse((DATA / name).read_text())
    assert families, name
    for family_name, family in families.items():
        assert family.series, f"{name}: {family_name} has no series"
    return families


def counters_for(sample: dict[str, Family]) -> str:
    """The counters file of the node the sample came from: its families and label fields."""
    rows = [f'{name}, {family.type}, "{family.help or ""}"' for name, family in sample.items()]
    label_fields = sorted({label for family in sample.values() for series in family.series
                           for label, _ in series if label.startswith("DCGM_FI_")})
    rows += [f"{label}, label, " for label in label_fields]
    return "\n".join(rows) + "\n"


def names(series: list[tuple[str, str]]) -> list[str]:
    """Label names of one series, in order."""
    return [label for label, _ in series]


def compare(sample: dict[str, Family], ours: dict[str, Family],
            pick: dict[str, list[list[tuple[str, str]]]]) -> None:
    """Same families, TYPE, HELP (when recorded) and label names in order, per series."""
    assert set(sample) <= set(ours), f"families we lack: {sorted(set(sample) - set(ours))}"
    for name, family in sample.items():
        assert ours[name].type == family.type, name
        if family.help is not None:
            assert ours[name].help == family.help, name
        want = {tuple(names(series)) for series in family.series}
        assert len(want) == 1, f"{name}: the sample's series disagree on their labels"
        (expected,) = want
        later = [label for label in LATER_UPSTREAM_LABELS if label not in expected]
        chosen = pick[name]
        assert chosen, f"{name}: no series of ours to compare"
        for series in chosen:
            got = names(series)
            if "pci_bus_id" in later:
                assert got[got.index("UUID") + 1] == "pci_bus_id", got  # baseline position
            assert [label for label in got if label not in later] == list(expected), (
                f"{name}: {got} vs recorded {list(expected)}")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A fresh directory with a short path (unix socket paths are limited to 107 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="parity-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_t4_with_pod_attribution_matches_the_recorded_t4(tmp_path: Path, short_dir: Path) -> None:
    sample = recorded("metrics_t4_k8s.prom")
    csv = tmp_path / "counters.csv"
    csv.write_text(counters_for(sample))
    sim = simulator.prepare("t4x4", seed=1, state_dir=tmp_path / "sim")
    socket = short_dir / "kubelet.sock"
    with FakeKubelet(socket) as kubelet:
        kubelet.set_pods([pod("dcgmproftester", "default",
                              {"dcgmproftester11": {"nvidia.com/gpu": ["nvidia0"]}})])
        kubelet.set_allocatable({"nvidia.com/gpu": [f"nvidia{g}" for g in range(4)]})
        args = ["-f", str(csv), "-c", "500", "-k", "--kubernetes-gpu-id-type", "device-name",
                "--pod-resources-kubelet-socket", str(socket)]
        with run_exporter(args, env={**sim.env, "NODE_NAME": "t4-node"}) as exporter:
            text = exporter.wait_for('pod="dcgmproftester"')
    ours = parse(text)
    # the recorded series are GPU 0, held by the pod: compare with ours for GPU 0
    pick = {name: [s for s in ours[name].series if ("gpu", "0") in s]
            for name in sample if name in ours}
    compare(sample, ours, pick)
    xid = next(s for s in ours["DCGM_FI_DEV_XID_ERRORS"].series if ("gpu", "0") in s)
    assert names(xid)[-5:] == ["container", "err_code", "err_msg", "namespace", "pod"]


MIG_NODES = [
    # recorded sample, simulated profile, MIG instances per MIG-enabled GPU
    ("metrics_h100_nvl_mig.prom", str(DATA / "h100-nvl-mig.yaml"), {"0": 7}),
    ("metrics_a30_mig.prom", "a100-mig", {"0": 7, "1": 3, "2": 3}),  # GPUs 3-7 whole
]


@pytest.mark.parametrize(("name", "profile", "layout"), MIG_NODES,
                         ids=[node[0] for node in MIG_NODES])
def test_mig_layout_matches_the_recorded_mig_node(
    name: str, profile: str, layout: dict[str, int], tmp_path: Path,
) -> None:
    sample = recorded(name)
    csv = tmp_path / "counters.csv"
    csv.write_text(counters_for(sample))
    sim = simulator.prepare(profile, seed=1, state_dir=tmp_path / "sim")
    with run_exporter(["-f", str(csv), "-c", "500"],
                      env={**sim.env, "NODE_NAME": "mig-node"}) as exporter:
        text = exporter.metrics()
    ours = parse(text)
    pick = {family: [s for s in ours[family].series if dict(s)["gpu"] in layout]
            for family in sample if family in ours}
    compare(sample, ours, pick)
    # The layout: every series of a MIG-enabled GPU is an instance's, one per GPU instance,
    # the device-level families (temperatures, vGPU licence) included; no GPU-level series.
    instances = {(dict(s)["gpu"], dict(s)["GPU_I_ID"]) for s in pick[next(iter(pick))]}
    assert len(instances) == sum(layout.values())
    for family, chosen in pick.items():
        assert all("GPU_I_ID" in dict(s) for s in chosen), family
        assert sorted((dict(s)["gpu"], dict(s)["GPU_I_ID"]) for s in chosen) == sorted(
            instances), family
    if "DCGM_FI_DEV_VGPU_LICENSE_STATUS" in ours:
        assert {s for s in text.splitlines()
                if s.startswith("DCGM_FI_DEV_VGPU_LICENSE_STATUS{")
                and not s.endswith(" 0")} == set()  # bare metal: 0, as recorded


UPSTREAM_DEFAULT = ROOT / "tests" / "data" / "upstream" / "4.5.3-4.8.2" / "default-counters.csv"

_PROF_DEFAULT = ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
                 "DCGM_FI_PROF_DRAM_ACTIVE", "DCGM_FI_PROF_PCIE_TX_BYTES",
                 "DCGM_FI_PROF_PCIE_RX_BYTES")
ABSENT_WITH_UPSTREAM_DEFAULTS: dict[str, dict[str, str]] = {
    "t4x4": {
        **dict.fromkeys(_PROF_DEFAULT, "by design: profiling needs GPM (Hopper+); DCGM exports "
                                       "it on a T4 from its own profiling module"),
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": "no NVLink on a T4: NOT_SUPPORTED, which DCGM "
                                              "reports as blank and dcgm-exporter drops too",
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": "no row remapping before Ampere (blank in "
                                                   "DCGM, dropped upstream too)",
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": "no row remapping before Ampere (as above)",
        "DCGM_FI_DEV_ROW_REMAP_FAILURE": "no row remapping before Ampere (as above)",
    },
    "a100-mig": {
        **dict.fromkeys(_PROF_DEFAULT, "by design: profiling needs GPM (Hopper+); DCGM exports "
                                       "it on an A100 from its own profiling module"),
        "DCGM_FI_DEV_ENC_UTIL": "the simulated A100 has no video encoder (NVML NOT_SUPPORTED)",
    },
    "h100x8": {
        "DCGM_FI_DEV_ENC_UTIL": "the simulated H100 has no video encoder (NVML NOT_SUPPORTED)",
    },
}
"""Families of upstream's default-counters.csv that we do not export on a simulated profile,
each with its reason. Every other row of upstream's file is exported as it is."""


def _collections(text: str) -> float:
    match = re.search(r"^gpu_exporter_collections_total (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize("profile", sorted(ABSENT_WITH_UPSTREAM_DEFAULTS))
def test_upstream_default_counters_file_families_on_each_profile(
    profile: str, tmp_path: Path,
) -> None:
    sim = simulator.prepare(profile, seed=1, state_dir=tmp_path / "sim")
    with run_exporter(["-f", str(UPSTREAM_DEFAULT), "-c", "300"],
                      env={**sim.env, "NODE_NAME": "node"}) as exporter:
        text = exporter.metrics()
        deadline = time.monotonic() + 30  # rates (NVLink, GPM) need a second sample
        while _collections(text) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
            text = exporter.metrics()
    assert _collections(text) >= 3, text[-2000:]
    ours = parse(text)
    rows = [line.split(",") for line in UPSTREAM_DEFAULT.read_text().splitlines()
            if line.startswith("DCGM_")]
    families = [row[0].strip() for row in rows if row[1].strip() != "label"]
    absent = sorted(name for name in families if name not in ours)
    assert absent == sorted(ABSENT_WITH_UPSTREAM_DEFAULTS[profile])
    label_rows = [row[0].strip() for row in rows if row[1].strip() == "label"]
    for name in families:
        for series in ours.get(name, Family()).series:
            assert [label for label in names(series) if label in label_rows] == label_rows, name
