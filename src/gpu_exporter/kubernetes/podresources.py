"""Client of the kubelet pod-resources API (v1) over its unix socket.

The only module that imports grpc. It keeps one long-lived ``grpc.aio`` channel, puts a
deadline on every call, bounds the answer size, and hands back plain frozen dataclasses
so nothing else sees protobuf or gRPC errors. gRPC re-dials the socket by itself when the
kubelet restarts (a new socket inode at the same path); its reconnect backoff is capped so
a returning kubelet is seen quickly. ``List`` answers are decoded pod by pod, and a pod whose
bytes did not change since the previous answer is not decoded again (:class:`ListDecoder`).
Retry pacing and logging belong to the refresher.

New pods are checked by the protobuf runtime (one parse of the whole answer when many are new)
and then read straight from their bytes by :func:`decode_pod`, which reads only names and
device assignments: the runtime's per-field Python objects cost several times as much.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from gpu_exporter.kubernetes._hot import Setter, gc_paused, slot_setters
from gpu_exporter.kubernetes._pb import api_pb2

if TYPE_CHECKING:
    from collections.abc import Iterable


OFFLOAD_BYTES = 256 * 1024
"""List answers larger than this are decoded in a worker thread, not on the event loop."""

CHECK_WHOLE_BYTES = 2 * 1024 * 1024
"""List answers up to this size may be checked in one parse (see :func:`_check_pods`).

That parse holds about five times the answer's size in memory while it lasts (10 MiB here);
larger answers (over about 17,000 pods) are checked pod by pod, slower but small.
"""


@dataclass(frozen=True, slots=True)
class Devices:
    """Device ids of one resource, as the kubelet lists them."""

    resource_name: str
    device_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClaimDevice:
    """One device of a DRA claim, as the kubelet lists it (``ClaimResource``).

    Attributes:
        claim_name, claim_namespace: the ResourceClaim.
        driver: DRA driver (``gpu.nvidia.com`` for NVIDIA GPUs).
        pool, device: the device's pool and name in the driver's ResourceSlices.
    """

    claim_name: str
    claim_namespace: str
    driver: str
    pool: str
    device: str


@dataclass(frozen=True, slots=True)
class Container:
    """One container, the devices assigned to it and (DRA) its claimed devices."""

    name: str
    devices: tuple[Devices, ...]
    claims: tuple[ClaimDevice, ...] = ()


@dataclass(frozen=True, slots=True)
class Pod:
    """One pod of the kubelet's List answer (only containers that hold devices are kept)."""

    name: str
    namespace: str
    containers: tuple[Container, ...]


class KubeletError(Exception):
    """A pod-resources call failed: kubelet gone, too slow, or an unreadable answer."""

    def __init__(self, method: str, code: str, detail: str) -> None:
        super().__init__(f"{method}: {code}: {detail}" if detail else f"{method}: {code}")
        self.method = method
        self.code = code
        self.detail = detail

    @property
    def unimplemented(self) -> bool:
        """True when the kubelet does not offer this method (old kubelet, feature gate off)."""
        return self.code == "UNIMPLEMENTED"


def _devices(items: Iterable[Any]) -> tuple[Devices, ...]:
    return tuple(Devices(d.resource_name, tuple(d.device_ids)) for d in items)


def _claims(container: Any) -> tuple[ClaimDevice, ...]:  # noqa: ANN401 (a protobuf message)
    return tuple(
        ClaimDevice(dr.claim_name, dr.claim_namespace, res.driver_name, res.pool_name,
                    res.device_name)
        for dr in container.dynamic_resources
        for res in dr.claim_resources
        if res.device_name
    )


def convert_pod(pod: Any, *, dra: bool = False) -> Pod | None:  # noqa: ANN401 (protobuf)
    """Turn one ``PodResources`` message into a :class:`Pod`; ``None`` when it holds no device.

    Containers without devices (nor, with ``dra``, claimed devices) are dropped: pod
    attribution only needs device assignments, and most containers of a node hold none.
    """
    containers = []
    for c in pod.containers:
        claims = _claims(c) if dra else ()
        if c.devices or claims:
            containers.append(Container(c.name, _devices(c.devices), claims))
    return Pod(pod.name, pod.namespace, tuple(containers)) if containers else None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def split_repeated(data: bytes, field: int) -> list[bytes]:  # noqa: PLR0912 (flat hot loop)
    """The encoded entries of one repeated message field at the top level of ``data``.

    Only the outer framing is read (tag, length); other top-level fields are skipped by
    wire type, so newer kubelets adding fields stay readable.

    Raises:
        ValueError: the framing is broken (truncated, bad wire type, field number 0).
    """
    entries: list[bytes] = []
    pos, end = 0, len(data)
    wanted_tag = field << 3 | 2
    while pos < end:
        # Fast path: the wanted field with a one- or two-byte length (almost every pod).
        if data[pos] == wanted_tag and pos + 2 < end:
            length = data[pos + 1]
            if length < 0x80:
                start = pos + 2
            elif data[pos + 2] < 0x80:
                length = (length & 0x7F) | data[pos + 2] << 7
                start = pos + 3
            else:
                start = 0
            if start and start + length <= end:
                entries.append(data[start:start + length])
                pos = start + length
                continue
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise ValueError(f"field number 0 at byte {pos}")
        if wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > end:
                raise ValueError(f"field {number} runs past the end ({length} bytes at {pos})")
            if number == field:
                entries.append(data[pos:pos + length])
            pos += length
        elif wire == 0:
            _, pos = _varint(data, pos)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire} for field {number}")
    if pos != end:
        raise ValueError("truncated fixed-size field")
    return entries


_new = object.__new__
_SET_DEVICES = slot_setters(Devices, "resource_name", "device_ids")
_SET_CONTAINER = slot_setters(Container, "name", "devices", "claims")
_SET_POD = slot_setters(Pod, "name", "namespace", "containers")


def _devices_of(resource_name: str, device_ids: tuple[str, ...],
                _set: tuple[Setter, ...] = _SET_DEVICES) -> Devices:
    devices = _new(Devices)
    _set[0](devices, resource_name)
    _set[1](devices, device_ids)
    return devices


def _container_of(name: str, devices: tuple[Devices, ...],
                  _set: tuple[Setter, ...] = _SET_CONTAINER) -> Container:
    container = _new(Container)
    _set[0](container, name)
    _set[1](container, devices)
    _set[2](container, ())
    return container


def _pod_of(name: str, namespace: str, containers: tuple[Container, ...],
            _set: tuple[Setter, ...] = _SET_POD) -> Pod:
    pod = _new(Pod)
    _set[0](pod, name)
    _set[1](pod, namespace)
    _set[2](pod, containers)
    return pod


# Tags (field number << 3 | wire type 2) of the fields read; every other field is skipped.
_NAME = 0x0A  # PodResources.name, ContainerResources.name, ContainerDevices.resource_name
_NAMESPACE = 0x12  # PodResources.namespace
_CONTAINERS = 0x1A  # PodResources.containers
_DEVICES = 0x12  # ContainerResources.devices
_DEVICE_IDS = 0x12  # ContainerDevices.device_ids


class _Unusual(Exception):  # noqa: N818 (a signal, not an error)
    """An encoding :func:`decode_pod` leaves to the protobuf runtime (group fields)."""


def _ascii_container(data: bytes, text: str, pos: int, end: int) -> Container | None:
    """The container encoded in ``data[pos:end]``; every varint in ``data`` is one byte."""
    name = (0, 0)
    devices: list[Devices] = []
    while pos < end:
        tag = data[pos]
        start = pos + 2
        wire = tag & 7
        if wire == 2:
            pos = start + data[pos + 1]
            if tag == _DEVICES:
                resource = ""
                ids: list[str] = []
                at = start
                while at < pos:
                    inner = data[at]
                    begin = at + 2
                    if inner & 7 == 2:
                        at = begin + data[at + 1]
                        if inner == _DEVICE_IDS:
                            ids.append(text[begin:at])
                        elif inner == _NAME:
                            resource = text[begin:at]
                    else:
                        at = _skip_short(inner, at)
                devices.append(_devices_of(resource, tuple(ids)))
            elif tag == _NAME:
                name = (start, pos)
        else:
            pos = _skip_short(tag, pos)
    if not devices:
        return None
    return _container_of(text[name[0]:name[1]], tuple(devices))


def _skip_short(tag: int, pos: int) -> int:
    """Position after the non-length-delimited field at ``pos`` (one-byte varints only)."""
    wire = tag & 7
    if wire == 0:
        return pos + 2
    if wire == 1:
        return pos + 9
    if wire == 5:
        return pos + 5
    raise _Unusual


def _ascii_pod(data: bytes, text: str) -> Pod | None:
    """The pod encoded in ``data``, all of whose bytes are ASCII; ``text`` is it decoded.

    With no byte above 0x7F every varint (tag, length, number) is a single byte, and a string
    field's text is a slice of ``text``. A container whose bytes hold no 0x12 has no devices
    field (tag 0x12), so it is skipped unread: most containers of a node hold no device.
    """
    name = namespace = (0, 0)
    containers: list[Container] = []
    pos, end = 0, len(data)
    while pos < end:
        tag = data[pos]
        start = pos + 2
        if tag & 7 == 2:
            pos = start + data[pos + 1]
            if tag == _CONTAINERS:
                if data.find(_DEVICES, start, pos) >= 0:
                    container = _ascii_container(data, text, start, pos)
                    if container is not None:
                        containers.append(container)
            elif tag == _NAME:
                name = (start, pos)
            elif tag == _NAMESPACE:
                namespace = (start, pos)
        else:
            pos = _skip_short(tag, pos)
    if not containers:
        return None
    return _pod_of(text[name[0]:name[1]], text[namespace[0]:namespace[1]], tuple(containers))


def _fields(data: bytes, pos: int, end: int) -> list[tuple[int, int, int]]:
    """(tag, start, end) of each length-delimited field in ``data[pos:end]``, any varints."""
    out: list[tuple[int, int, int]] = []
    while pos < end:
        tag, pos = _varint(data, pos)
        wire = tag & 7
        if wire == 2:
            length, pos = _varint(data, pos)
            out.append((tag, pos, pos + length))
            pos += length
        elif wire == 0:
            _, pos = _varint(data, pos)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise _Unusual
    return out


def _any_pod(data: bytes) -> Pod | None:
    """The pod encoded in ``data``, whatever its varints and string bytes."""
    name = namespace = ""
    containers: list[Container] = []
    for tag, start, end in _fields(data, 0, len(data)):
        if tag == _CONTAINERS:
            container_name = ""
            devices: list[Devices] = []
            for inner, begin, stop in _fields(data, start, end):
                if inner == _DEVICES:
                    resource = ""
                    ids: list[str] = []
                    for field, first, last in _fields(data, begin, stop):
                        if field == _DEVICE_IDS:
                            ids.append(data[first:last].decode())
                        elif field == _NAME:
                            resource = data[first:last].decode()
                    devices.append(_devices_of(resource, tuple(ids)))
                elif inner == _NAME:
                    container_name = data[begin:stop].decode()
            if devices:
                containers.append(_container_of(container_name, tuple(devices)))
        elif tag == _NAME:
            name = data[start:end].decode()
        elif tag == _NAMESPACE:
            namespace = data[start:end].decode()
    return _pod_of(name, namespace, tuple(containers)) if containers else None


def decode_pod(data: bytes) -> Pod | None:
    """Read one encoded ``PodResources`` the protobuf runtime has accepted, without it.

    Gives what ``convert_pod(PodResources.FromString(data))`` gives, by protobuf's rules: the
    last ``name`` wins, repeated fields keep their order, unknown fields and known fields with
    another wire type are skipped. ``data`` must have passed ``PodResources.FromString``
    (framing, UTF-8 of strings); pods with group fields are handed to the runtime.
    """
    try:
        if data.isascii():
            return _ascii_pod(data, data.decode("ascii"))
        return _any_pod(data)
    except _Unusual:
        return convert_pod(api_pb2.PodResources.FromString(data))


def _check_pods(data: bytes, fresh: list[bytes], total: int) -> None:
    """Have the protobuf runtime check the ``fresh`` pod encodings of the List answer ``data``.

    When more than an eighth of the ``total`` pods are fresh, the whole answer is parsed at
    once (much cheaper than one parse per pod) unless it is larger than
    :data:`CHECK_WHOLE_BYTES`; if that fails, or otherwise, each fresh pod is parsed on its
    own, so a broken pod raises the same error either way.

    Raises:
        google.protobuf.message.DecodeError: a fresh pod cannot be decoded.
    """
    if not fresh:
        return
    if len(fresh) * 8 > total and len(data) <= CHECK_WHOLE_BYTES:
        try:
            api_pb2.ListPodResourcesResponse.FromString(data)
        except DecodeError:
            pass  # found and reported pod by pod below
        else:
            return
    for chunk in fresh:
        api_pb2.PodResources.FromString(chunk)


class ListDecoder:
    """Decodes ``List`` answers pod by pod, reusing what it decoded for unchanged pods.

    A pod whose encoded bytes equal those of the previous answer gets the same
    :class:`Pod` object back without being decoded again; the kubelet's pod order does not
    matter. The cache holds the pods of the last answer only.
    """

    def __init__(self, *, dra: bool = False) -> None:
        self._cache: dict[bytes, Pod | None] = {}
        self._dra = dra

    def decode(self, data: bytes) -> tuple[Pod, ...]:
        """The device-holding pods of an encoded ``ListPodResourcesResponse``.

        Raises:
            ValueError: the framing is broken.
            google.protobuf.message.DecodeError: a pod cannot be decoded.
        """
        with gc_paused():  # a cold decode makes objects for every device-holding pod
            return self._decode(data)

    def _decode(self, data: bytes) -> tuple[Pod, ...]:
        previous, cache = self._cache, {}
        chunks = split_repeated(data, 1)
        _check_pods(data, [chunk for chunk in chunks if chunk not in previous], len(chunks))
        pods: list[Pod] = []
        for chunk in chunks:
            try:
                pod = previous[chunk]
            except KeyError:
                if self._dra:  # claims are read by the protobuf runtime (DRA nodes only)
                    pod = convert_pod(api_pb2.PodResources.FromString(chunk), dra=True)
                else:
                    pod = decode_pod(chunk)
            cache[chunk] = pod
            if pod is not None:
                pods.append(pod)
        self._cache = cache
        return tuple(pods)


def convert_allocatable(response: Any) -> tuple[Devices, ...]:  # noqa: ANN401 (a protobuf message)
    """Turn an ``AllocatableResourcesResponse`` into its device lists."""
    return _devices(response.devices)


def method_path(method: str) -> str:
    """The gRPC path of a ``PodResourcesLister`` method, from the proto's own descriptor.

    ``List`` gives ``/v1.PodResourcesLister/List``: the proto's package is what makes the
    path the kubelet's.
    """
    service = api_pb2.DESCRIPTOR.services_by_name["PodResourcesLister"]
    return f"/{service.full_name}/{service.methods_by_name[method].name}"


class PodResourcesClient:
    """Calls ``List`` and ``GetAllocatableResources`` on one long-lived channel.

    Args:
        socket_path: path of the kubelet's ``kubelet.sock``.
        deadline: seconds allowed for each call.
        max_receive_bytes: largest answer accepted.
        max_reconnect_backoff: cap, in seconds, of gRPC's own reconnect backoff.
        dra: also read each container's DRA claimed devices (``dynamic_resources``).
    """

    def __init__(
        self,
        socket_path: str,
        *,
        deadline: float,
        max_receive_bytes: int,
        max_reconnect_backoff: float,
        dra: bool = False,
    ) -> None:
        self._target = f"unix://{socket_path}"
        self._deadline = deadline
        self._options = (
            ("grpc.max_receive_message_length", max_receive_bytes),
            ("grpc.max_send_message_length", 1024 * 1024),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", max(100, int(max_reconnect_backoff * 1000))),
        )
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[str, Any] = {}
        self._list_decoder = ListDecoder(dra=dra)

    @property
    def target(self) -> str:
        """The gRPC target, ``unix:///path/to/kubelet.sock``."""
        return self._target

    def _callable(self, method: str) -> Any:  # noqa: ANN401 (grpc multi-callable)
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._target, options=self._options)
            self._calls = {}
        call = self._calls.get(method)
        if call is None:
            call = self._calls[method] = self._channel.unary_unary(method_path(method))
        return call

    async def _call(self, method: str, request: Any) -> bytes:  # noqa: ANN401 (protobuf)
        # Bytes in, bytes out: decoding here turns a malformed answer into one KubeletError
        # instead of gRPC's own logged traceback and a None response.
        call = self._callable(method)
        try:
            data = await call(request.SerializeToString(), timeout=self._deadline)
        except grpc.aio.AioRpcError as exc:
            raise KubeletError(method, exc.code().name, exc.details() or "") from exc
        except grpc.RpcError as exc:  # other gRPC failures carry no code
            raise KubeletError(method, "UNKNOWN", str(exc)) from exc
        if not isinstance(data, bytes):
            raise KubeletError(method, "MALFORMED", f"answer is {type(data).__name__}, not bytes")
        return data

    async def list_pods(self) -> tuple[Pod, ...]:
        """Every pod of the node that holds devices.

        Raises:
            KubeletError: the call failed or its answer could not be read.
        """
        data = await self._call("List", api_pb2.ListPodResourcesRequest())
        try:
            if len(data) > OFFLOAD_BYTES:  # big nodes: keep the event loop responsive
                return await asyncio.to_thread(self._list_decoder.decode, data)
            return self._list_decoder.decode(data)
        except (ValueError, DecodeError) as exc:
            raise KubeletError("List", "MALFORMED",
                               f"undecodable answer ({len(data)} bytes): {exc}") from exc

    async def allocatable(self) -> tuple[Devices, ...]:
        """Every device the node can hand out, by resource name.

        Raises:
            KubeletError: the call failed (``unimplemented`` on kubelets without it).
        """
        method = "GetAllocatableResources"
        data = await self._call(method, api_pb2.AllocatableResourcesRequest())
        try:
            response = api_pb2.AllocatableResourcesResponse.FromString(data)
        except DecodeError as exc:
            raise KubeletError(method, "MALFORMED",
                               f"undecodable answer ({len(data)} bytes): {exc}") from exc
        return convert_allocatable(response)

    async def close(self) -> None:
        """Close the channel; a later call opens a new one."""
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
