"""Client of the kubelet pod-resources API (v1) over its unix socket.

The only module that imports grpc. It keeps one long-lived ``grpc.aio`` channel, puts a
deadline on every call, bounds the answer size, and hands back plain frozen dataclasses
so nothing else sees protobuf or gRPC errors. gRPC re-dials the socket by itself when the
kubelet restarts (a new socket inode at the same path); its reconnect backoff is capped so
a returning kubelet is seen quickly. ``List`` answers are decoded pod by pod, and a pod whose
bytes did not change since the previous answer is not decoded again (:class:`ListDecoder`).
Retry pacing and logging belong to the refresher.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from gpu_exporter.kubernetes._pb import api_pb2

if TYPE_CHECKING:
    from collections.abc import Iterable


OFFLOAD_BYTES = 256 * 1024
"""List answers larger than this are decoded in a worker thread, not on the event loop."""


@dataclass(frozen=True, slots=True)
class Devices:
    """Device ids of one resource, as the kubelet lists them."""

    resource_name: str
    device_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Container:
    """One container and the devices assigned to it."""

    name: str
    devices: tuple[Devices, ...]


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


def convert_pod(pod: Any) -> Pod | None:  # noqa: ANN401 (a protobuf message)
    """Turn one ``PodResources`` message into a :class:`Pod`; ``None`` when it holds no device.

    Containers without devices are dropped: pod attribution only needs device assignments,
    and most containers of a node hold none.
    """
    containers = tuple(
        Container(c.name, _devices(c.devices)) for c in pod.containers if c.devices
    )
    return Pod(pod.name, pod.namespace, containers) if containers else None


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


class ListDecoder:
    """Decodes ``List`` answers pod by pod, reusing what it decoded for unchanged pods.

    A pod whose encoded bytes equal those of the previous answer gets the same
    :class:`Pod` object back without being decoded again; the kubelet's pod order does not
    matter. The cache holds the pods of the last answer only.
    """

    def __init__(self) -> None:
        self._cache: dict[bytes, Pod | None] = {}

    def decode(self, data: bytes) -> tuple[Pod, ...]:
        """The device-holding pods of an encoded ``ListPodResourcesResponse``.

        Raises:
            ValueError: the framing is broken.
            google.protobuf.message.DecodeError: a pod cannot be decoded.
        """
        previous, cache = self._cache, {}
        pods: list[Pod] = []
        for chunk in split_repeated(data, 1):
            try:
                pod = previous[chunk]
            except KeyError:
                pod = convert_pod(api_pb2.PodResources.FromString(chunk))
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
    """

    def __init__(
        self,
        socket_path: str,
        *,
        deadline: float,
        max_receive_bytes: int,
        max_reconnect_backoff: float,
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
        self._list_decoder = ListDecoder()

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
