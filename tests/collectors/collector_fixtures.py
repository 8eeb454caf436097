"""Literal GPUs and readings for collector tests that need no NVML."""

from __future__ import annotations

from gpu_exporter.collectors.base import DeviceView, make_view
from gpu_exporter.model import Entity
from gpu_exporter.nvml import FieldReading, GpuInfo, Handle, MigDevice

GPU = Entity(gpu=0, uuid="GPU-aaaa", pci_bus_id="00000000:18:00.0", model_name="Model X")


def mig(gi_id: int, index: int) -> Entity:
    """A MIG instance of GPU 0."""
    return Entity(gpu=0, uuid="GPU-aaaa", pci_bus_id="00000000:18:00.0", model_name="Model X",
                  gi_id=gi_id, gi_profile="1g.10gb", mig_uuid=f"MIG-{gi_id}", mig_index=index)


def view(*, mig_ids: tuple[int, ...] = (), instances: bool = True, device: bool = True,
         gpm: bool = True, once: bool = False) -> DeviceView:
    """A probed GPU without NVML behind it (handles are placeholders).

    ``once``: ``--mig-device-fields-once`` (device-level fields on the GPU, not its instances).
    """
    info = GpuInfo(
        entity=GPU, handle=Handle("h0"), mig_enabled=bool(mig_ids),
        instances=tuple(MigDevice(mig(g, i), Handle(f"m{g}")) for i, g in enumerate(mig_ids)),
        gpm_supported=gpm, strings={1: "570.1", 53: "1650"},
    )
    return make_view(None, info, instances=instances, device=device,  # type: ignore[arg-type]
                     device_fields_once=once)


def reading(field_id: int, value: float | None, *, scope: int = 0, code: int = 0,
            stamp_us: int = 1_000_000) -> tuple[tuple[int, int], FieldReading]:
    """One readings-map entry."""
    return (field_id, scope), FieldReading(field_id, scope, value, code, stamp_us)
