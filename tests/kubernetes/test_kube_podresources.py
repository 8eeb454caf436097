"""Decoding kubelet answers: framing, per-pod reuse, malformed bytes."""

from __future__ import annotations

import contextlib
import random

import pytest
from fake_kubelet import list_response, pod
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st
from kube_fixtures import UUID0, UUID1

from gpu_exporter.kubernetes.podindex import PodCache, build_index
from gpu_exporter.kubernetes.podresources import (
    Container,
    Devices,
    ListDecoder,
    Pod,
    split_repeated,
)

PODS = [
    pod("a", "ns", {"main": {"nvidia.com/gpu": [UUID0]}, "sidecar": {}}),
    pod("b", "ns", {"main": {}}),
    pod("c", "other", {"x": {"nvidia.com/gpu": [UUID1], "example.com/nic": ["eth1"]}}),
    pod("d", "ns", {}),
]


def encode(pods: list[object]) -> bytes:
    return list_response(pods).SerializeToString()  # type: ignore[no-any-return]


def test_decode_keeps_device_holding_containers_only() -> None:
    assert ListDecoder().decode(encode(PODS)) == (
        Pod("a", "ns", (Container("main", (Devices("nvidia.com/gpu", (UUID0,)),)),)),
        Pod("c", "other", (Container("x", (
            Devices("nvidia.com/gpu", (UUID1,)), Devices("example.com/nic", ("eth1",)))),)),
    )


def test_unchanged_pods_are_reused_whatever_the_order() -> None:
    decoder = ListDecoder()
    first = decoder.decode(encode(PODS))
    shuffled = PODS[::-1]
    second = decoder.decode(encode(shuffled))
    assert {id(p) for p in first} == {id(p) for p in second}
    changed = [pod("a", "ns", {"main": {"nvidia.com/gpu": [UUID1]}}), *PODS[1:]]
    third = decoder.decode(encode(changed))
    assert third[0] is not first[0]
    assert third[0].containers[0].devices[0].device_ids == (UUID1,)
    assert third[1] is first[1]


def test_index_is_order_independent_and_reuses_pod_walks() -> None:
    decoder = ListDecoder()
    pod_cache: PodCache = {}
    many = [pod(f"p{i}", f"ns{i % 3}", {"c": {"nvidia.com/gpu": [UUID0]}}) for i in range(20)]
    first = build_index(decoder.decode(encode(many)), None, pod_cache=pod_cache)
    rng = random.Random(7)  # noqa: S311 (a shuffle, not a secret)
    for _ in range(3):
        rng.shuffle(many)
        again = build_index(decoder.decode(encode(many)), None, pod_cache=pod_cache)
        assert again == first
        # Reused walks: the very same Assignment objects.
        assert all(x is y for x, y in zip(again.assignments, first.assignments, strict=True))
    assert len(pod_cache) == 20


def test_unknown_top_level_fields_are_skipped() -> None:
    data = encode(PODS[:1])
    extra = b"\x10\x05" + b"\x1a\x02hi" + b"\x25\x00\x00\x00\x00" + b"\x29" + bytes(8)
    assert ListDecoder().decode(extra + data + extra) == ListDecoder().decode(data)


def test_long_pods_use_multibyte_lengths() -> None:
    big = pod("big", "ns", {"c": {"nvidia.com/gpu": [f"{UUID0}::{i}" for i in range(400)]}})
    (decoded,) = ListDecoder().decode(encode([big]))
    assert len(decoded.containers[0].devices[0].device_ids) == 400


@pytest.mark.parametrize("data", [
    b"\x0a\xff\xff\xff",          # length varint truncated
    b"\x0a\x05abc",               # entry runs past the end
    b"\x08",                      # varint value missing
    b"\x0b",                      # wire type 3 (groups) is not used here
    b"\x00\x00",                  # field number 0
    b"\x29\x00\x00",              # fixed64 truncated
    b"\x0a" + b"\xff" * 11,       # varint too long
])
def test_broken_framing(data: bytes) -> None:
    with pytest.raises(ValueError):
        split_repeated(data, 1)


def test_broken_pod_bytes() -> None:
    with pytest.raises(DecodeError):
        ListDecoder().decode(b"\x0a\x03\x0a\x05a")


@given(st.binary(max_size=64))
def test_decoder_raises_only_decode_errors(data: bytes) -> None:
    with contextlib.suppress(ValueError, DecodeError):
        assert isinstance(ListDecoder().decode(data), tuple)
