"""Helpers of the cold refresh: slot setters and the paused cycle collector."""

from __future__ import annotations

import gc
from dataclasses import dataclass

import pytest
from kube_fixtures import UUID0

from gpu_exporter.kubernetes._hot import gc_paused, slot_setters
from gpu_exporter.kubernetes.podindex import Owner, build_index
from gpu_exporter.kubernetes.podresources import Container, Devices, Pod


@dataclass(frozen=True)
class Unslotted:
    name: str


def test_slot_setters_match_the_declared_fields() -> None:
    set_namespace, set_pod, set_container = slot_setters(Owner, "namespace", "pod", "container")
    owner = object.__new__(Owner)
    set_namespace(owner, "ns")
    set_pod(owner, "p")
    set_container(owner, "c")
    assert owner == Owner("ns", "p", "c")
    assert hash(owner) == hash(Owner("ns", "p", "c"))


@pytest.mark.parametrize(("cls", "names"), [
    (Owner, ("namespace", "pod")),               # a field left out
    (Owner, ("pod", "namespace", "container")),  # another order
    (Unslotted, ("name",)),                      # no slots
])
def test_slot_setters_refuse_a_mismatch(cls: type, names: tuple[str, ...]) -> None:
    with pytest.raises(TypeError, match=cls.__name__):
        slot_setters(cls, *names)


def test_gc_paused_restores_the_collector() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError
    assert gc.isenabled()


def test_gc_paused_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    try:
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_build_index_leaves_the_collector_enabled() -> None:
    pod = Pod("p", "ns", (Container("c", (Devices("nvidia.com/gpu", (UUID0, "odd")),)),))
    index = build_index([pod], None)
    assert gc.isenabled()
    assert [a.owner for a in index.assignments] == [Owner("ns", "p", "c")]
    assert index.unparsed == ("odd",)
