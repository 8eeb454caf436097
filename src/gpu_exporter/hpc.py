"""HPC job attribution (``--hpc-job-mapping-dir``), as dcgm-exporter does it.

A workload manager writes one file per GPU into the directory: named ``<gpu>`` for a whole
GPU or ``<gpu>.<GPU_I_ID>`` for a MIG instance, holding one job id per line. Every series of
that GPU or instance is then exported once per job, with an ``hpc_job`` label. Reading the
directory (:func:`read_job_map`) happens once per collection cycle in the worker thread;
:func:`attach_jobs` is pure.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from gpu_exporter.model import Sample

log = logging.getLogger(__name__)

JobKey = tuple[int, int | None]
"""``(gpu index, GPU_I_ID or None)``."""

_NAME = re.compile(r"^(\d+)(?:\.(\d+))?$")


def parse_job_file(name: str, text: str) -> tuple[JobKey, tuple[str, ...]] | None:
    """The key and job ids of one mapping file; ``None`` when the name is not a GPU's."""
    match = _NAME.match(name)
    if match is None:
        return None
    gpu = int(match.group(1))
    gi = int(match.group(2)) if match.group(2) is not None else None
    jobs = tuple(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
    return (gpu, gi), jobs


def read_job_map(directory: Path) -> dict[JobKey, tuple[str, ...]]:
    """Read every mapping file; unreadable files are skipped (they change under us)."""
    result: dict[JobKey, tuple[str, ...]] = {}
    try:
        entries = sorted(directory.iterdir())
    except OSError as exc:
        log.debug("HPC job mapping directory %s unreadable: %s", directory, exc.strerror)
        return result
    for entry in entries:
        try:
            if not entry.is_file():
                continue
            parsed = parse_job_file(entry.name, entry.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        if parsed is not None and parsed[1]:
            result[parsed[0]] = parsed[1]
    return result


def attach_jobs(
    samples: Sequence[Sample], jobs: Mapping[JobKey, tuple[str, ...]]
) -> tuple[Sample, ...]:
    """One copy of each sample per job of its GPU or MIG instance, labelled ``hpc_job``."""
    if not jobs:
        return tuple(samples)
    out: list[Sample] = []
    for sample in samples:
        ids = jobs.get((sample.entity.gpu, sample.entity.gi_id))
        if not ids:
            out.append(sample)
            continue
        out.extend(replace(sample, labels=(*sample.labels, ("hpc_job", job))) for job in ids)
    return tuple(out)
