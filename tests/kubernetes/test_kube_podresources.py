"""Decoding kubelet answers: framing, per-pod reuse, malformed bytes."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import random

import pytest
from fake_kubelet import list_response, pod
from google.protobuf.message import DecodeError
from hypothesis import assume, given
from hypothesis import strategies as st
from kube_fixtures import UUID0, UUID1

from gpu_exporter.kubernetes import podresources
from gpu_exporter.kubernetes._pb import api_pb2
from gpu_exporter.kubernetes.podindex import PodCache, build_index
from gpu_exporter.kubernetes.podresources import (
    Container,
    Devices,
    ListDecoder,
    Pod,
    convert_pod,
    decode_pod,
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


# --- The hand decoder (decode_pod) against the protobuf runtime ---------------------------
# Encodings are written by hand here so that they can hold what the runtime's own encoder
# never writes: fields out of order, repeated singular fields, unknown fields (groups too),
# known fields with another wire type, overlong varints.


def varint(value: int, overlong: int = 0) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    if overlong:  # the same value in `overlong` more bytes than needed
        out[-1] |= 0x80
        out += b"\x80" * (overlong - 1) + b"\x00"
    return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def delimited(number: int, payload: bytes, overlong: int = 0) -> bytes:
    return key(number, 2) + varint(len(payload), overlong) + payload


ASCII = st.text(st.characters(max_codepoint=0x7F), max_size=12)
TEXT = st.one_of(ASCII, ASCII, st.text(max_size=12), st.text(min_size=100, max_size=160),
                 st.sampled_from(["nvidia.com/gpu", "main", "sidecar", f"{UUID0}::3"]))


def string(number: int) -> st.SearchStrategy[bytes]:
    return st.builds(lambda text, overlong: delimited(number, text.encode(), overlong),
                     TEXT, st.sampled_from([0, 0, 0, 0, 0, 2]))


def scalar_field(number: int) -> st.SearchStrategy[bytes]:
    """A field of wire type 0, 1 or 5: unknown, or a known number with another wire type."""
    return st.one_of(
        st.builds(lambda v: key(number, 0) + varint(v), st.integers(0, 2**64 - 1)),
        st.builds(lambda b: key(number, 1) + b, st.binary(min_size=8, max_size=8)),
        st.builds(lambda b: key(number, 5) + b, st.binary(min_size=4, max_size=4)),
    )


UNKNOWN = st.one_of(
    st.integers(6, 3000).flatmap(scalar_field),
    st.builds(delimited, st.integers(6, 3000), st.binary(max_size=140)),
    st.builds(lambda n, v: key(n, 3) + key(1, 0) + varint(v) + key(n, 4),
              st.integers(6, 3000), st.integers(0, 300)),  # a group
)
CPU_IDS = st.one_of(
    st.builds(lambda ids: delimited(3, b"".join(varint(i) for i in ids)),
              st.lists(st.integers(0, 300), max_size=6)),  # packed
    st.builds(lambda i: key(3, 0) + varint(i), st.integers(0, 300)),  # unpacked
)
MEMORY = st.builds(lambda t, size: delimited(4, delimited(1, t.encode()) + key(2, 0)
                                             + varint(size)),
                   TEXT, st.integers(0, 2**40))
TOPOLOGY = st.builds(lambda nodes: delimited(3, b"".join(
    delimited(1, key(1, 0) + varint(n)) for n in nodes)), st.lists(st.integers(0, 3)))


def message(wanted: st.SearchStrategy[bytes], others: st.SearchStrategy[bytes],
            max_size: int) -> st.SearchStrategy[bytes]:
    """Some ``wanted`` fields and some ``others``, in any order."""
    fields = st.builds(lambda w, o: w + o, st.lists(wanted, max_size=max_size),
                       st.lists(others, max_size=max_size))
    return fields.flatmap(st.permutations).map(b"".join)


DEVICES = message(st.one_of(string(1), string(2), string(2)),
                  st.one_of(TOPOLOGY, UNKNOWN, scalar_field(1), scalar_field(2)), 3)
CONTAINER = message(st.one_of(string(1), st.builds(lambda d: delimited(2, d), DEVICES)),
                    st.one_of(CPU_IDS, MEMORY, UNKNOWN, scalar_field(2)), 3)
POD = message(st.one_of(string(1), string(2), st.builds(lambda c: delimited(3, c), CONTAINER)),
              st.one_of(UNKNOWN, scalar_field(1), scalar_field(3)), 4)


@given(POD)
def test_hand_decoder_reads_what_the_runtime_reads(data: bytes) -> None:
    try:
        message = api_pb2.PodResources.FromString(data)
    except DecodeError:
        assume(False)  # decode_pod only reads what the runtime accepted
    assert decode_pod(data) == convert_pod(message)


@pytest.mark.parametrize("data", [
    # ASCII; cpu id 18 is a 0x12 byte in a container without devices.
    delimited(1, b"p") + delimited(3, delimited(1, b"side") + delimited(3, b"\x12\x02")),
    # Non-ASCII names, a 200-byte device id (two-byte length), a group in the devices.
    delimited(1, "pöd".encode()) + delimited(2, "ñs".encode()) + delimited(3, delimited(
        1, b"c") + delimited(2, delimited(1, b"nvidia.com/gpu") + delimited(2, b"x" * 200)
        + key(9, 3) + key(9, 4))),
    # Name given twice (the last wins), a container before it, an unknown field.
    delimited(3, delimited(2, delimited(1, b"r") + delimited(2, b"d"))) + delimited(1, b"a")
    + key(7, 0) + b"\x05" + delimited(1, b"b"),
])
def test_hand_decoder_examples(data: bytes) -> None:
    assert decode_pod(data) == convert_pod(api_pb2.PodResources.FromString(data))


def test_decoded_objects_are_ordinary_frozen_dataclasses() -> None:
    (decoded,) = ListDecoder().decode(encode(PODS[:1]))
    built = Pod("a", "ns", (Container("main", (Devices("nvidia.com/gpu", (UUID0,)),)),))
    assert decoded == built
    assert hash(decoded) == hash(built)
    assert repr(decoded) == repr(built)
    assert type(decoded.containers[0].devices[0]) is Devices
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.name = "b"  # type: ignore[misc]


def test_many_new_pods_and_one_broken_give_the_pod_error() -> None:
    data = encode([pod(f"p{i}", "ns", {"c": {"nvidia.com/gpu": [UUID0]}}) for i in range(20)])
    broken = data + b"\x0a\x03\x0a\x05a"  # 21 pods, all new, the last unreadable
    with pytest.raises(DecodeError, match=r"'v1\.PodResources'"):
        ListDecoder().decode(broken)
    decoder = ListDecoder()
    decoder.decode(data)
    with pytest.raises(DecodeError, match=r"'v1\.PodResources'"):  # one new pod of 21
        decoder.decode(broken)


def test_decoding_leaves_the_collector_as_it_was() -> None:
    assert gc.isenabled()
    ListDecoder().decode(encode(PODS))
    assert gc.isenabled()
    with pytest.raises(DecodeError):
        ListDecoder().decode(b"\x0a\x03\x0a\x05a")
    assert gc.isenabled()
    gc.disable()
    try:
        ListDecoder().decode(encode(PODS))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_answers_over_the_whole_check_size_are_checked_pod_by_pod(
        monkeypatch: pytest.MonkeyPatch) -> None:
    many = [pod(f"p{i}", "ns", {"c": {"nvidia.com/gpu": [UUID0]}}) for i in range(20)]
    data = encode(many)
    expected = ListDecoder().decode(data)
    monkeypatch.setattr(podresources, "CHECK_WHOLE_BYTES", len(data) - 1)
    parsed: list[type] = []
    real = api_pb2.ListPodResourcesResponse.FromString

    def spy(raw: bytes) -> object:
        parsed.append(type(raw))
        return real(raw)

    monkeypatch.setattr(api_pb2.ListPodResourcesResponse, "FromString", spy)
    assert ListDecoder().decode(data) == expected
    with pytest.raises(DecodeError, match=r"'v1\.PodResources'"):
        ListDecoder().decode(data + b"\x0a\x03\x0a\x05a")
    assert parsed == []  # never the whole answer at once
    monkeypatch.setattr(podresources, "CHECK_WHOLE_BYTES", len(data) + 100)
    assert ListDecoder().decode(data) == expected
    assert parsed == [bytes]
