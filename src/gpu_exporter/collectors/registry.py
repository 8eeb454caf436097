"""The one table of collectors: name -> factory, the DCGM field ids it produces, default state.

Enable/disable flags and docs derive from :data:`COLLECTORS`. A collector runs only when the
counters file asks for at least one of its fields, so "default on" matters only for flags that
turn collectors off. The field ids come from the catalog (each catalog row names its collector),
so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gpu_exporter.catalog import ids_of
from gpu_exporter.collectors.base import Collector, DcgmFeed
from gpu_exporter.collectors.clocks import ClocksCollector
from gpu_exporter.collectors.field_values import FieldValuesCollector
from gpu_exporter.collectors.health import HealthCollector
from gpu_exporter.collectors.identity import IdentityCollector
from gpu_exporter.collectors.memory import MemoryCollector
from gpu_exporter.collectors.nvlink import NvlinkCollector
from gpu_exporter.collectors.p2p import P2pCollector
from gpu_exporter.collectors.pcie import PcieCollector
from gpu_exporter.collectors.power import PowerCollector
from gpu_exporter.collectors.profiling import ProfilingCollector
from gpu_exporter.collectors.temperature import TemperatureCollector
from gpu_exporter.collectors.utilization import UtilizationCollector
from gpu_exporter.collectors.vgpu import VgpuCollector
from gpu_exporter.collectors.xid import XidCollector
from gpu_exporter.events import EventLog
from gpu_exporter.nvml import Handle


@dataclass(frozen=True, slots=True)
class Deps:
    """What factories may need from the sampler."""

    event_log: EventLog
    xid_supported: Callable[[int], bool]
    peers: Callable[[], Sequence[tuple[int, Handle]]] = tuple
    dcgm: DcgmFeed | None = None


@dataclass(frozen=True, slots=True)
class CollectorInfo:
    """One row of the collector table.

    Attributes:
        name: collector name (``gpu_exporter_collector_*{collector=...}``).
        factory: builds the collector.
        fields: DCGM field ids it produces.
        default_enabled: on unless turned off.
        help: one line for flags and docs.
    """

    name: str
    factory: Callable[[Deps], Collector]
    fields: frozenset[int]
    default_enabled: bool
    help: str


def _row(name: str, factory: Callable[[Deps], Collector], help_: str,
         *, default_enabled: bool = True) -> CollectorInfo:
    return CollectorInfo(name, factory, ids_of(name), default_enabled, help_)


COLLECTORS: dict[str, CollectorInfo] = {
    row.name: row
    for row in (
        _row("identity", lambda _: IdentityCollector(),
             "static label fields: driver/NVML version, serial, VBIOS, inforom, brand"),
        _row("field_values", lambda _: FieldValuesCollector(),
             "one batched nvmlDeviceGetFieldValues: energy, memory temp, ECC, retired pages, "
             "remapped rows, violations, NVLink errors, PCIe replays"),
        _row("clocks", lambda _: ClocksCollector(), "SM/memory/video clocks, max clocks"),
        _row("temperature", lambda _: TemperatureCollector(), "GPU temperature, fan speed"),
        _row("power", lambda _: PowerCollector(), "power draw and limits"),
        _row("utilization", lambda _: UtilizationCollector(),
             "GPU, memory copy, encoder and decoder utilisation"),
        _row("memory", lambda _: MemoryCollector(),
             "framebuffer (per MIG instance) and BAR1 memory"),
        _row("pcie", lambda _: PcieCollector(), "PCIe link generation/width and throughput"),
        _row("nvlink", lambda _: NvlinkCollector(), "NVLink bandwidth (rates)"),
        _row("profiling", lambda deps: ProfilingCollector(deps.dcgm),
             "DCGM_FI_PROF_* through GPM (Hopper and newer), or from a DCGM host engine on "
             "older GPUs (-r / --dcgm-local)"),
        _row("xid", lambda deps: XidCollector(deps.event_log, deps.xid_supported),
             "XID errors (event thread) and clock event counts over their windows"),
        _row("health", lambda deps: HealthCollector(deps.event_log),
             "DCGM_EXP_GPU_HEALTH_STATUS derived from NVML (ECC, row remap, clock events, XIDs)"),
        _row("p2p", lambda deps: P2pCollector(deps.peers),
             "DCGM_EXP_P2P_STATUS: NVLink peer-to-peer status towards each other GPU"),
        _row("vgpu", lambda _: VgpuCollector(), "vGPU licence status (vGPU guests only)"),
    )
}
"""Every collector, in the order the sampler runs them."""


def collector_for(field_id: int) -> str | None:
    """Name of the collector that produces a DCGM field, if any."""
    for info in COLLECTORS.values():
        if field_id in info.fields:
            return info.name
    return None
