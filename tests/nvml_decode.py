"""NVML's raw process lists and samples decoded into rows and columns (test support).

The exporter reads the ``nvmlProcessInfo_t`` lists and the ``nvmlProcessUtilizationSample_t``
samples as bytes (``Nvml.running_processes_raw``, ``Nvml.process_utilization_raw``) and
hands them to compiled code as they are; the tests read them through these decoders.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from gpu_exporter.nvml import (
    NO_SCOPE_ID,
    PROCESS_INFO,
    VALUE_NOT_AVAILABLE,
    Handle,
    Nvml,
    ProcessKind,
)


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """One process using a GPU (or a MIG device).

    Attributes:
        pid: host PID.
        used_bytes: GPU memory it uses, ``None`` when NVML cannot tell.
        gi_id: GPU instance id (MIG), else ``None``.
        ci_id: compute instance id (MIG), else ``None``.
    """

    pid: int
    used_bytes: int | None
    gi_id: int | None
    ci_id: int | None


class ProcessSamples(NamedTuple):
    """Process-utilisation samples as columns, oldest first (sample ``i``: ``pids[i]``, ...).

    Attributes:
        pids: host PIDs.
        stamps: CPU timestamps of the samples in microseconds.
        sm: SM utilisation in percent over the sample period.
        mem: memory (frame buffer) utilisation in percent.
        enc: encoder utilisation in percent.
        dec: decoder utilisation in percent.
    """

    pids: list[int]
    stamps: list[int]
    sm: list[int]
    mem: list[int]
    enc: list[int]
    dec: list[int]

    @classmethod
    def of(cls, rows: Iterable[tuple[int, int, int, int, int, int]]) -> ProcessSamples:
        """Columns from (pid, timestamp, sm, mem, enc, dec) rows."""
        columns: list[list[int]] = [[], [], [], [], [], []]
        for row in rows:
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        return cls(*columns)


def running_processes(nvml: Nvml, handle: Handle, kind: ProcessKind) -> list[ProcessInfo] | None:
    """``nvml.running_processes_raw`` as rows; ``None`` when NOT_SUPPORTED.

    Memory NVML cannot tell (``NVML_VALUE_NOT_AVAILABLE``) and ids outside MIG are ``None``.
    """
    raw = nvml.running_processes_raw(handle, kind)
    if raw is None:
        return None
    return [ProcessInfo(pid, None if used == VALUE_NOT_AVAILABLE else used,
                        None if gi == NO_SCOPE_ID else gi, None if ci == NO_SCOPE_ID else ci)
            for pid, used, gi, ci in PROCESS_INFO.iter_unpack(raw)]


def process_utilization(nvml: Nvml, handle: Handle, last_seen_us: int) -> ProcessSamples | None:
    """``nvml.process_utilization_raw`` as columns; ``None`` when NOT_SUPPORTED."""
    raw = nvml.process_utilization_raw(handle, last_seen_us)
    if raw is None:
        return None
    view = memoryview(raw)
    words = view.cast("I")  # 8 words per sample: pid, pad, timestamp (2), sm, mem, enc, dec
    return ProcessSamples(words[0::8].tolist(), view.cast("Q")[1::4].tolist(),
                          words[4::8].tolist(), words[5::8].tolist(),
                          words[6::8].tolist(), words[7::8].tolist())
