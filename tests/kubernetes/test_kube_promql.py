"""The PromQL of docs/kubernetes.md, run by promtool against series shaped like ours."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

DOC = Path(__file__).resolve().parents[2] / "docs" / "kubernetes.md"
GPU = 'gpu="{g}",UUID="GPU-{g}",pci_bus_id="00000000:1{g}:00.0",device="nvidia{g}",' \
      'modelName="NVIDIA H100 80GB HBM3",Hostname="node-a"'
MIG = 'gpu="4",UUID="GPU-4",pci_bus_id="00000000:14:00.0",device="nvidia4",' \
      'modelName="NVIDIA A100-SXM4-40GB",GPU_I_PROFILE="1g.5gb",GPU_I_ID="9",Hostname="node-a"'


def documented_queries() -> dict[str, str]:
    """``# test: <name>`` PromQL blocks of the doc, by name."""
    blocks = re.findall(r"```promql\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    queries = {}
    for block in blocks:
        first, _, rest = block.partition("\n")
        if first.startswith("# test: "):
            queries[first.removeprefix("# test: ").strip()] = rest.strip()
    return queries


def owner(namespace: str, pod: str, container: str = "c") -> str:
    return f'container="{container}",namespace="{namespace}",pod="{pod}"'


def series() -> list[dict[str, str]]:
    util = "DCGM_FI_DEV_GPU_UTIL"
    alloc = "gpu_exporter_gpu_allocated"
    gpu = "nvidia.com/gpu"
    shared = "nvidia.com/gpu.shared"
    rows = [
        # GPU 0: held by ml/train-0, idle for the whole hour.
        (f'{alloc}{{{GPU.format(g=0)},resource="{gpu}",{owner("ml", "train-0")}}}', "1x70"),
        (f'{util}{{{GPU.format(g=0)},{owner("ml", "train-0")}}}', "0x70"),
        # GPU 1: held by ml/train-1, busy once in the hour.
        (f'{alloc}{{{GPU.format(g=1)},resource="{gpu}",{owner("ml", "train-1")}}}', "1x70"),
        (f'{util}{{{GPU.format(g=1)},{owner("ml", "train-1")}}}', "0x30 40 0x39"),
        # GPU 2: shared by two containers of team (virtual GPUs: one series each), idle.
        (f'{alloc}{{{GPU.format(g=2)},resource="{shared}",{owner("team", "a")}}}', "1x70"),
        (f'{alloc}{{{GPU.format(g=2)},resource="{shared}",{owner("team", "b")}}}', "1x70"),
        (f'{util}{{{GPU.format(g=2)},{owner("team", "a")},vgpu="0"}}', "0x70"),
        (f'{util}{{{GPU.format(g=2)},{owner("team", "b")},vgpu="1"}}', "0x70"),
        # GPU 3: nobody holds it, idle: allocatable but unallocated, not "allocated idle".
        (f'gpu_exporter_gpu_allocatable{{{GPU.format(g=3)},resource="{gpu}"}}', "1x70"),
        (f'{util}{{{GPU.format(g=3)}}}', "0x70"),
        # A MIG instance held by mig/small: no GPU_UTIL exists for it.
        (f'{alloc}{{{MIG},resource="nvidia.com/mig-1g.5gb",{owner("mig", "small")}}}', "1x70"),
        ('gpu_exporter_gpu_allocatable{' + MIG + ',resource="nvidia.com/mig-1g.5gb"}', "1x70"),
    ]
    rows += [
        (f'gpu_exporter_gpu_allocatable{{{GPU.format(g=g)},resource="{res}"}}', "1x70")
        for g, res in ((0, gpu), (1, gpu), (2, shared))
    ]
    return [{"series": s, "values": v} for s, v in rows]


def test_documented_queries_answer_as_documented(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (apt-get install prometheus; .ci/run installs it)"
    queries = documented_queries()
    assert set(queries) == {"allocated-idle-per-namespace", "allocatable-unallocated"}
    tests = {
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series(),
            "promql_expr_test": [
                {
                    "expr": queries["allocated-idle-per-namespace"],
                    "eval_time": "65m",
                    "exp_samples": [
                        {"labels": '{namespace="ml"}', "value": 1},
                        {"labels": '{namespace="team"}', "value": 1},
                    ],
                },
                {
                    "expr": queries["allocatable-unallocated"],
                    "eval_time": "65m",
                    "exp_samples": [{
                        "labels": 'gpu_exporter_gpu_allocatable{'
                                  + GPU.format(g=3) + ',resource="nvidia.com/gpu"}',
                        "value": 1,
                    }],
                },
            ],
        }],
    }
    path = tmp_path / "kube_test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
