import dataclasses
import os
import pickle
import subprocess
import sys

import pytest

from gpu_exporter.model import (
    CollectResult,
    Entity,
    Native,
    NativeRows,
    Sample,
    Unsupported,
    new_collect_result,
    new_native,
    new_native_rows,
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
    labels = (((("workload", "a"),),), ((("workload", "b"),),))  # per family, per row
    rows = new_native_rows(entity, ("x", "y"), labels, ([1.0], (2.0,)))
    assert rows == NativeRows(entity, ("x", "y"), labels, ([1.0], (2.0,)))
    assert type(rows) is NativeRows
    assert rows.natives() == [Native("x", 1.0, labels[0][0], entity),
                              Native("y", 2.0, labels[1][0], entity)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rows.names = ()  # type: ignore[misc]


def test_an_entity_keeps_its_hash_and_is_compared_and_copied_by_its_fields() -> None:
    args = {"gpu": 2, "uuid": "GPU-2", "pci_bus_id": "00000000:3b:00.0", "model_name": "H100"}
    entity = Entity(**args, gi_id=3, gi_profile="1g.10gb", mig_uuid="MIG-x", mig_index=0)
    fields = tuple(getattr(entity, f) for f in (*args, "gi_id", "gi_profile", "mig_uuid",
                                                  "mig_index"))
    assert hash(entity) == hash(entity) == hash(fields)  # the dataclass's own hash, kept
    twin = Entity(**args, gi_id=3, gi_profile="1g.10gb", mig_uuid="MIG-x", mig_index=0)
    assert twin == entity
    assert {twin: 1}[entity] == 1
    other = dataclasses.replace(entity, gi_id=4)  # a copy computes its own
    assert other != entity
    assert hash(other) == hash((*fields[:4], 4, *fields[5:]))
    assert "_hash" not in repr(entity)
    assert entity.__getstate__()[-1] == 0  # pickled without it
    with pytest.raises(dataclasses.FrozenInstanceError):
        entity.gpu = 5  # type: ignore[misc]


def test_an_entity_pickled_in_a_process_with_other_string_hashes_finds_its_twin() -> None:
    code = ("import pickle, sys; from gpu_exporter.model import Entity; "
            "e = Entity(gpu=1, uuid='GPU-a', pci_bus_id='x', model_name='m'); hash(e); "
            "sys.stdout.buffer.write(pickle.dumps(e))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    raw = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                         env=env, timeout=60).stdout
    loaded = pickle.loads(raw)  # noqa: S301 - our own bytes
    twin = Entity(gpu=1, uuid="GPU-a", pci_bus_id="x", model_name="m")
    assert loaded == twin
    assert hash(loaded) == hash(twin)
    assert {twin: 1}.get(loaded) == 1
