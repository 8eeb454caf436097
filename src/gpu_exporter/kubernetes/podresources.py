"""Client of the kubelet pod-resources API (v1) over its unix socket.

The only module that imports grpc. It keeps one long-lived ``grpc.aio`` channel, puts a
deadline on every call, bounds the answer size, and hands back plain frozen dataclasses
so nothing else sees protobuf or gRPC errors. gRPC re-dials the socket by itself when the
kubelet restarts (a new socket inode at the same path); its reconnect backoff is capped so
a returning kubelet is seen quickly. Retry pacing and logging belong to the refresher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from gpu_exporter.kubernetes._pb import api_pb2

if TYPE_CHECKING:
    from collections.abc import Iterable


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


def convert_list(response: Any) -> tuple[Pod, ...]:  # noqa: ANN401 (a protobuf message)
    """Turn a ``ListPodResourcesResponse`` into :class:`Pod` values.

    Containers without devices, and pods left without containers, are skipped: pod
    attribution only needs device assignments, and most pods of a node hold none.
    """
    pods: list[Pod] = []
    append = pods.append
    for pod in response.pod_resources:
        containers = tuple(
            Container(c.name, _devices(c.devices)) for c in pod.containers if c.devices
        )
        if containers:
            append(Pod(pod.name, pod.namespace, containers))
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

    async def _call(self, method: str, request: Any, response_type: Any) -> Any:  # noqa: ANN401
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
        try:
            return response_type.FromString(data)
        except DecodeError as exc:
            raise KubeletError(method, "MALFORMED", f"undecodable answer ({len(data)} bytes): "
                               f"{exc}") from exc

    async def list_pods(self) -> tuple[Pod, ...]:
        """Every pod of the node that holds devices.

        Raises:
            KubeletError: the call failed or its answer could not be read.
        """
        response = await self._call(
            "List", api_pb2.ListPodResourcesRequest(), api_pb2.ListPodResourcesResponse)
        return convert_list(response)

    async def allocatable(self) -> tuple[Devices, ...]:
        """Every device the node can hand out, by resource name.

        Raises:
            KubeletError: the call failed (``unimplemented`` on kubelets without it).
        """
        response = await self._call(
            "GetAllocatableResources",
            api_pb2.AllocatableResourcesRequest(),
            api_pb2.AllocatableResourcesResponse,
        )
        return convert_allocatable(response)

    async def close(self) -> None:
        """Close the channel; a later call opens a new one."""
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
