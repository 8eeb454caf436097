import dataclasses

import pytest

from gpu_exporter.model import (
    CollectResult,
    Entity,
    Native,
    Sample,
    Unsupported,
    new_collect_result,
    new_native,
    new_sample,
)


def test_device_label_and_mig_flag() -> None:
    whole = Entity(gpu=3, uuid="GPU-x", pci_bus_id="00000000:18:00.0", model_name="NVIDIA H100")
    mig = Entity(
        gpu=3, uuid="GPU-x", pci_bus_id="00000000:18:00.0", model_name="NVIDIA H100",
        gi_id=7, gi_profile="1g.10gb",
    )
    assert whole.device == "nvidia3"
    assert not whole.is_mig
    assert mig.is_mig


def test_hot_path_builders_make_the_same_frozen_objects() -> None:
    entity = Entity(gpu=1, uuid="GPU-1", pci_bus_id="00000000:18:00.0", model_name="H100")
    fast = new_sample(entity, 150, 41.0, (("a", "b"),))
    slow = Sample(entity, 150, 41.0, (("a", "b"),))
    assert fast == slow
    assert hash(fast) == hash(slow)
    assert type(fast) is Sample
    assert new_sample(entity, 150, 41.0).labels == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.value = 1.0  # type: ignore[misc]
    unsupported = (Unsupported(entity, 155, "not_supported"),)
    assert new_collect_result((fast,), unsupported) == CollectResult((slow,), unsupported)
    native = new_native("gpu_exporter_gpu_up", 1.0, (("a", "b"),), entity)
    assert native == Native("gpu_exporter_gpu_up", 1.0, (("a", "b"),), entity)
    assert hash(native) == hash(Native("gpu_exporter_gpu_up", 1.0, (("a", "b"),), entity))
    assert type(native) is Native
    assert new_native("x", 2.0) == Native("x", 2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        native.value = 0.0  # type: ignore[misc]
