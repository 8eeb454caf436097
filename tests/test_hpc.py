"""HPC job attribution: file names, parsing, the join, and the exporter end to end."""

from __future__ import annotations

import time
from pathlib import Path

from support.exporter import run_exporter

from gpu_exporter.hpc import attach_jobs, parse_job_file, read_job_map
from gpu_exporter.model import Entity, Sample

GPU0 = Entity(0, "GPU-a", "00000000:18:00.0", "H100")
GPU1 = Entity(1, "GPU-b", "00000000:2A:00.0", "A100")
MIG1 = Entity(1, "GPU-b", "00000000:2A:00.0", "A100", gi_id=7, gi_profile="1g.10gb")


def test_parse_job_file_names_and_lines() -> None:
    assert parse_job_file("3", "job-1\n\n job-2 \njob-1\n") == ((3, None), ("job-1", "job-2"))
    assert parse_job_file("1.7", "j") == ((1, 7), ("j",))
    assert parse_job_file("README", "x") is None
    assert parse_job_file("1.x", "x") is None


def test_attach_jobs_copies_per_job_and_leaves_others() -> None:
    samples = [Sample(GPU0, 150, 40.0), Sample(GPU1, 150, 41.0), Sample(MIG1, 252, 10.0)]
    out = attach_jobs(samples, {(0, None): ("a", "b"), (1, 7): ("m",)})
    labels = [(s.entity.gpu, s.entity.gi_id, s.labels) for s in out]
    assert labels == [
        (0, None, (("hpc_job", "a"),)),
        (0, None, (("hpc_job", "b"),)),
        (1, None, ()),
        (1, 7, (("hpc_job", "m"),)),
    ]
    assert attach_jobs(samples, {}) == tuple(samples)


def test_read_job_map_skips_junk(tmp_path: Path) -> None:
    (tmp_path / "0").write_text("job-9\n")
    (tmp_path / "1.7").write_text("\n")  # empty: no jobs
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "2").mkdir()
    assert read_job_map(tmp_path) == {(0, None): ("job-9",)}
    assert read_job_map(tmp_path / "missing") == {}


def test_exporter_labels_series_with_jobs(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "2").write_text("slurm-41\nslurm-42\n")
    with run_exporter(["--simulate", "h100x8", "-c", "200", "--hpc-job-mapping-dir", str(jobs)],
                      env={"GPU_SIM_DIR": str(tmp_path / "sim")}) as exporter:
        text = exporter.wait_for('hpc_job="slurm-42"')
        temps = [line for line in text.splitlines() if line.startswith("DCGM_FI_DEV_GPU_TEMP{")]
        assert sum('gpu="2"' in line for line in temps) == 2
        assert len(temps) == 9
        (jobs / "2").unlink()
        deadline = time.monotonic() + 10
        while "hpc_job=" in exporter.metrics():
            assert time.monotonic() < deadline, "job labels stayed after the file was removed"
            time.sleep(0.05)
