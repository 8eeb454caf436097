"""Literal entities and samples for the Kubernetes tests (no NVML needed).

Two whole H100s (``nvidia0``, ``nvidia1``) and an A100 in MIG mode (``nvidia2``) with its
parent entity and two instances, as the ``a100-mig`` simulator profile enumerates them.
"""

from __future__ import annotations

from gpu_exporter.model import Entity, Sample

UUID0 = "GPU-0a1b2c3d-0000-4000-8000-000000000000"
UUID1 = "GPU-1a1b2c3d-1111-4111-8111-111111111111"
UUID2 = "GPU-2a1b2c3d-2222-4222-8222-222222222222"
MIG_A = "MIG-aa11bb22-3333-5333-9333-333333333333"
MIG_B = "MIG-bb11bb22-4444-5444-9444-444444444444"

GPU0 = Entity(0, UUID0, "00000000:18:00.0", "NVIDIA H100 80GB HBM3")
GPU1 = Entity(1, UUID1, "00000000:2A:00.0", "NVIDIA H100 80GB HBM3")
GPU2 = Entity(2, UUID2, "00000000:3B:00.0", "NVIDIA A100-SXM4-40GB")
MIG2_1 = Entity(2, UUID2, "00000000:3B:00.0", "NVIDIA A100-SXM4-40GB",
                gi_id=1, gi_profile="3g.20gb", mig_uuid=MIG_A, mig_index=0)
MIG2_9 = Entity(2, UUID2, "00000000:3B:00.0", "NVIDIA A100-SXM4-40GB",
                gi_id=9, gi_profile="1g.5gb", mig_uuid=MIG_B, mig_index=1)

ENTITIES = (GPU0, GPU1, GPU2, MIG2_1, MIG2_9)

GPU_UTIL = 203
FB_USED = 252


def samples(entities: tuple[Entity, ...] = ENTITIES) -> tuple[Sample, ...]:
    """Two fields per entity, the second with an extra label already set."""
    out: list[Sample] = []
    for entity in entities:
        out.append(Sample(entity, GPU_UTIL, 50.0))
        out.append(Sample(entity, FB_USED, 1024.0, (("DCGM_FI_DRIVER_VERSION", "570.1"),)))
    return tuple(out)


def pod_labels(sample: Sample) -> dict[str, str]:
    """The Kubernetes labels of one sample."""
    return {k: v for k, v in sample.labels
            if k in {"pod", "namespace", "container", "vgpu", "pod_uid"}}


def by_entity(joined: tuple[Sample, ...], entity: Entity, field: int = GPU_UTIL) -> list[Sample]:
    """The samples of one entity and field."""
    return [s for s in joined if s.entity == entity and s.field_id == field]
