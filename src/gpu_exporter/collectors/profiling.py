"""Profiling collector: ``DCGM_FI_PROF_*`` through GPM (Hopper and newer).

Each cycle takes one GPM sample per GPU, or per MIG instance when MIG is on
(``nvmlGpmMigSampleGet``), and computes the wanted metrics over it and the previous one, so the
first cycle has no value. The previous sample per GPU/instance is the state kept on purpose; two
sample buffers per target are allocated once and swapped.

On a GPU without GPM (Volta, Turing, Ampere, Ada) the values come from a DCGM host engine when
one was asked for (``-r`` / ``--dcgm-local``: :mod:`gpu_exporter.dcgmsource`, in DCGM's units,
with its own reasons); otherwise every profiling field is unsupported with reason ``no_gpm``.
Either way, never exported as 0.

Series (per MIG instance when MIG is on, else per GPU)::

    DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="0",UUID="GPU-...",...,Hostname="node-a"} 0.874
    DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{gpu="0",...} 0.437
    DCGM_FI_PROF_PCIE_TX_BYTES{gpu="0",...} 1.2582912e+09

Utilisations are reported as ratios (GPM % / 100), throughputs in bytes/s (GPM MiB/s * 2^20).

With the fast-path library built, the sampler takes the GPM samples and metrics of a GPU with
GPM in the GPU's one compiled read (:mod:`gpu_exporter.fastread`), on this collector's
buffers: the same calls, samples and marks; this class is then the fallback (and the reference
the tests compare with). The DCGM and ``no_gpm`` cases are read here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from gpu_exporter.catalog import CATALOG
from gpu_exporter.collectors.base import (
    DcgmFeed,
    DeviceView,
    IntoCollector,
    Readings,
    ResultBuilder,
    Target,
)
from gpu_exporter.nvml import GpmRequest, GpmSample, Nvml, NvmlError

log = logging.getLogger(__name__)

NO_GPM = "no_gpm"


@dataclass(slots=True)
class _Buffers:
    """Two sample buffers of one GPU or MIG instance; ``primed`` once ``previous`` is valid."""

    nvml: Nvml
    previous: GpmSample
    current: GpmSample
    primed: bool = False

    def free(self) -> None:
        self.nvml.gpm_sample_free(self.previous)
        self.nvml.gpm_sample_free(self.current)


class ProfilingCollector(IntoCollector):
    """Profiling metrics of one GPU or its MIG instances: GPM, else DCGM when asked for."""

    name: ClassVar[str] = "profiling"

    def __init__(self, dcgm: DcgmFeed | None = None) -> None:
        self._dcgm = dcgm
        self._buffers: dict[tuple[int, int | None], _Buffers] = {}
        # one request struct per GPU: the GPUs are read concurrently, one thread each
        self._requests: dict[tuple[int, tuple[int, ...]], GpmRequest] = {}
        # (GPU, wanted fields) -> its request and (DCGM field, GPM metric) in field order
        self._plans: dict[tuple[int, frozenset[int]],
                          tuple[GpmRequest, tuple[tuple[int, int], ...]]] = {}

    def _request(self, gpu: int, fields: frozenset[int]) -> GpmRequest:
        metric_ids = tuple(sorted({CATALOG[f].gpm_metric or 0 for f in fields}))
        request = self._requests.get((gpu, metric_ids))
        if request is None:
            request = self._requests[(gpu, metric_ids)] = GpmRequest(metric_ids)
        return request

    def collect_into(
        self, device: DeviceView, fields: frozenset[int], _readings: Readings, _now: float,
        out: ResultBuilder, /,
    ) -> None:
        """Sample GPM and compute the wanted metrics over the last two samples."""
        targets = device.targets["instance"]
        if not device.info.gpm_supported:
            if self._dcgm is not None:
                out.extend(self._dcgm.collect(device, fields))
                return
            for target in targets:
                out.unsupported_all(target.entity, fields, NO_GPM)
            return
        nvml = device.nvml
        request, ordered, reads = self.gpm_plan(device, fields)
        for target, buffers in reads:
            if not nvml.gpm_sample(device.handle, buffers.current, target.gi_id):
                out.unsupported_all(target.entity, fields, "not_supported")
                continue
            if buffers.primed:
                values = nvml.gpm_metrics(request, buffers.previous, buffers.current)
                # a metric absent: failed (counted); None: not supported here (PCIe on MIG)
                out.add_all(target.entity, [(fid, values[metric]) for fid, metric in ordered
                                            if metric in values])
            buffers.previous, buffers.current = buffers.current, buffers.previous
            buffers.primed = True

    def gpm_plan(
        self, device: DeviceView, fields: frozenset[int],
    ) -> tuple[GpmRequest, tuple[tuple[int, int], ...], list[tuple[Target, _Buffers]]]:
        """What a GPM read of ``device`` uses, its buffers allocated on first use.

        The request, (DCGM field, GPM metric) in field order, and each target with its two
        sample buffers. The compiled read (:mod:`gpu_exporter.fastread`) makes the same calls
        on the same buffers, and hands their roles back when its plan is dropped.
        """
        nvml = device.nvml
        gpu = device.entity.gpu
        plan = self._plans.get((gpu, fields))
        if plan is None:  # (DCGM field, its GPM metric) in field order, once per field set
            plan = self._plans[(gpu, fields)] = (self._request(gpu, fields), tuple(
                (fid, CATALOG[fid].gpm_metric or 0) for fid in sorted(fields)))
        targets = []
        for target in device.targets["instance"]:
            key = (target.entity.gpu, target.gi_id)
            buffers = self._buffers.get(key)
            if buffers is None:
                buffers = _Buffers(nvml, nvml.gpm_sample_alloc(), nvml.gpm_sample_alloc())
                self._buffers[key] = buffers
            targets.append((target, buffers))
        return plan[0], plan[1], targets

    def reset(self, gpu: int) -> None:
        """Drop (and free) the samples of a GPU that was lost or re-probed."""
        for key in [k for k in list(self._buffers) if k[0] == gpu]:  # copy: read concurrently
            buffers = self._buffers.pop(key)
            try:
                buffers.free()
            except NvmlError as exc:  # a lost GPU may refuse; the buffers are the library's
                log.debug("GPU %d: freeing GPM samples: %s", gpu, exc)

    def close(self) -> None:
        """Free every GPM sample buffer."""
        for gpu in {k[0] for k in self._buffers}:
            self.reset(gpu)
