"""P2P collector: ``DCGM_EXP_P2P_STATUS``, NVLink peer-to-peer status towards every other GPU.

Series (device level; one per ordered pair of GPUs)::

    DCGM_EXP_P2P_STATUS{gpu="0",UUID="GPU-...",...,link_status="OK",peer_gpu="1"} 0
    DCGM_EXP_P2P_STATUS{gpu="0",...,link_status="NotSupported",peer_gpu="2"} 5

The value is NVML's ``nvmlGpuP2PStatus_t`` for the NVLink capability
(``nvmlDeviceGetP2PStatus(gpu, peer, NVML_P2P_CAPS_INDEX_NVLINK)``): 0 OK, 1 chipset not
supported, 2 GPU not supported, 3 topology not supported, 4 disabled by registry key, 5 not
supported, 6 unknown; ``link_status`` names it as dcgm-exporter does. The status of a pair does not
change while both GPUs stay probed, so it is read once per pair and kept until either GPU is
re-probed. A pair whose peer answers GPU_IS_LOST is skipped (and not kept): the lost peer is not
the GPU being collected, which is only reported lost when a call on it alone says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from gpu_exporter.catalog import EXP_P2P_STATUS
from gpu_exporter.collectors.base import DeviceView, IntoCollector, Readings, ResultBuilder
from gpu_exporter.model import Sample
from gpu_exporter.nvml import GpuLostError, Handle

LINK_STATUS = (
    "OK", "ChipsetNotSupported", "GPUNotSupported", "TopologyNotSupported",
    "DisabledByRegKey", "NotSupported", "Unknown",
)
NVLINK_CAPABILITY = 2


def link_status(code: int) -> str:
    """dcgm-exporter's ``link_status`` label for an NVML P2P status code."""
    return LINK_STATUS[code] if 0 <= code < len(LINK_STATUS) else "Unknown"


class P2pCollector(IntoCollector):
    """NVLink P2P status of one GPU towards each other probed GPU.

    Args:
        peers: the currently probed GPUs as (index, handle).
    """

    name: ClassVar[str] = "p2p"

    def __init__(self, peers: Callable[[], Sequence[tuple[int, Handle]]]) -> None:
        self._peers = peers
        self._status: dict[tuple[int, int], int | None] = {}

    def collect_into(
        self, device: DeviceView, fields: frozenset[int], _readings: Readings, _now: float,
        out: ResultBuilder, /,
    ) -> None:
        """One sample per peer GPU (cached per pair)."""
        if EXP_P2P_STATUS not in fields:
            return
        for target in device.targets["device"]:
            gpu = target.entity.gpu
            supported = False
            for peer, peer_handle in self._peers():
                if peer == gpu:
                    continue
                key = (gpu, peer)
                if key not in self._status:
                    try:
                        status = device.nvml.p2p_status(
                            target.handle, peer_handle, NVLINK_CAPABILITY)
                    except GpuLostError:
                        # either GPU of the pair may be the lost one: a call on this GPU
                        # alone raises again if it is this one; else skip the pair for now
                        device.nvml.performance_state(target.handle)
                        continue
                    self._status[key] = status
                code = self._status[key]
                if code is None:
                    continue
                supported = True
                out.samples.append(Sample(target.entity, EXP_P2P_STATUS, float(code), (
                    ("peer_gpu", str(peer)), ("link_status", link_status(code)))))
            if not supported:
                out.add(target.entity, EXP_P2P_STATUS, None)

    def reset(self, gpu: int) -> None:
        """Forget every pair involving a re-probed or lost GPU."""
        for key in [k for k in list(self._status) if gpu in k]:  # copy: read concurrently
            self._status.pop(key, None)

    def close(self) -> None:
        """Nothing held outside Python."""
