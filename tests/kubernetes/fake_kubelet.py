"""A fake kubelet: a real gRPC server for the pod-resources v1 API on a unix socket.

It serves the project's own proto from mutable test state and counts calls. Handlers work
on raw bytes, so a test can also make it answer garbage, answer late, or refuse a method.

Reuse from other test directories::

    sys.path.insert(0, str(Path(__file__).parents[1] / "kubernetes"))  # or tests/kubernetes
    from fake_kubelet import FakeKubelet, pod

    with FakeKubelet(tmp_path / "kubelet.sock") as kubelet:
        kubelet.set_pods([pod("train-0", "ml", {"trainer": {"nvidia.com/gpu": ["GPU-..."]}})])
        ... run the exporter with --pod-resources-kubelet-socket=<kubelet.socket_path>
        assert kubelet.calls["List"] > 0
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from gpu_exporter.kubernetes._pb import api_pb2

SERVICE = "v1.PodResourcesLister"

ContainerSpec = dict[str, list[str]]
"""resource name -> device ids of one container."""


@dataclass(frozen=True)
class ClaimSpec:
    """One device of a DRA claim (``DynamicResource`` + ``ClaimResource``)."""

    claim_name: str
    claim_namespace: str
    pool: str
    device: str
    driver: str = "gpu.nvidia.com"


@dataclass(frozen=True)
class PodSpec:
    """One pod of the fake kubelet's List answer."""

    name: str
    namespace: str
    containers: dict[str, ContainerSpec] = field(default_factory=dict)
    claims: dict[str, list[ClaimSpec]] = field(default_factory=dict)


def pod(name: str, namespace: str, containers: dict[str, ContainerSpec] | None = None,
        claims: dict[str, list[ClaimSpec]] | None = None) -> PodSpec:
    """A pod with containers ``{container name: {resource name: [device ids]}}`` and DRA
    claims ``{container name: [ClaimSpec]}``."""
    return PodSpec(name, namespace, dict(containers or {}), dict(claims or {}))


def list_response(pods: list[PodSpec]) -> Any:
    """The ``ListPodResourcesResponse`` message for ``pods``."""
    response = api_pb2.ListPodResourcesResponse()
    for spec in pods:
        message = response.pod_resources.add(name=spec.name, namespace=spec.namespace)
        for cname in [*spec.containers, *(c for c in spec.claims if c not in spec.containers)]:
            container = message.containers.add(name=cname)
            container.cpu_ids.extend([2, 3])  # present in real answers; ignored by the exporter
            for resource, ids in spec.containers.get(cname, {}).items():
                container.devices.add(resource_name=resource, device_ids=ids)
            for claim in spec.claims.get(cname, []):
                # As the kubelet fills it (pod-resources v1, DynamicResourceAllocation): one
                # DynamicResource per claim, its devices with their CDI ids.
                dynamic = container.dynamic_resources.add(
                    claim_name=claim.claim_name, claim_namespace=claim.claim_namespace)
                resource = dynamic.claim_resources.add(
                    driver_name=claim.driver, pool_name=claim.pool, device_name=claim.device)
                resource.cdi_devices.add(name=f"k8s.{claim.driver}/claim={claim.device}")
    return response


def allocatable_response(devices: dict[str, list[str]]) -> Any:
    """The ``AllocatableResourcesResponse`` message for ``{resource: [device ids]}``."""
    response = api_pb2.AllocatableResourcesResponse()
    for resource, ids in devices.items():
        response.devices.add(resource_name=resource, device_ids=ids)
    return response


class FakeKubelet:
    """A pod-resources server on ``socket_path``; start/stop it as often as needed.

    Mutable state (thread-safe setters): :meth:`set_pods`, :meth:`set_allocatable`,
    ``delay`` (seconds to sleep before answering), ``garbage`` (answer undecodable bytes),
    ``allocatable_unimplemented``. ``calls`` counts requests per method.
    """

    def __init__(self, socket_path: Path | str) -> None:
        self.socket_path = str(socket_path)
        self.calls: Counter[str] = Counter()
        self.delay = 0.0
        self.garbage = False
        self.allocatable_unimplemented = False
        self._lock = threading.Lock()
        self._list_bytes = list_response([]).SerializeToString()
        self._allocatable_bytes = allocatable_response({}).SerializeToString()
        self._server: grpc.Server | None = None
        self._release = threading.Event()

    def set_pods(self, pods: list[PodSpec]) -> None:
        """Replace the pods the next List answers with."""
        data = list_response(pods).SerializeToString()
        with self._lock:
            self._list_bytes = data

    def set_allocatable(self, devices: dict[str, list[str]]) -> None:
        """Replace the devices GetAllocatableResources answers with."""
        data = allocatable_response(devices).SerializeToString()
        with self._lock:
            self._allocatable_bytes = data

    def _answer(self, method: str, context: grpc.ServicerContext, body: bytes) -> bytes:
        with self._lock:
            self.calls[method] += 1
            delay, garbage = self.delay, self.garbage
        if delay:
            self._release.wait(delay)  # stop() releases waiting handlers at once
        if garbage:
            # Field 1 as a varint where a message is expected, then a truncated field.
            return b"\x08\x96\x01\x0a\xff\xff\xff"
        return body

    def _list(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            body = self._list_bytes
        return self._answer("List", context, body)

    def _allocatable(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        if self.allocatable_unimplemented:
            with self._lock:
                self.calls["GetAllocatableResources"] += 1
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "method not enabled")
        with self._lock:
            body = self._allocatable_bytes
        return self._answer("GetAllocatableResources", context, body)

    def start(self) -> FakeKubelet:
        """Listen on the socket (removing a stale socket file first)."""
        if self._server is not None:
            return self
        Path(self.socket_path).unlink(missing_ok=True)
        self._release.clear()
        server = grpc.server(ThreadPoolExecutor(max_workers=4))
        handlers = {
            "List": grpc.unary_unary_rpc_method_handler(self._list),
            "GetAllocatableResources": grpc.unary_unary_rpc_method_handler(self._allocatable),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        if server.add_insecure_port(f"unix://{self.socket_path}") != 1:
            raise RuntimeError(f"fake kubelet could not listen on {self.socket_path}")
        server.start()
        self._server = server
        deadline = time.monotonic() + 5.0
        while not Path(self.socket_path).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("fake kubelet socket did not appear")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop listening (the socket file goes away) and wait for the server to end."""
        server, self._server = self._server, None
        if server is not None:
            self._release.set()
            server.stop(grace=None).wait(5.0)
        Path(self.socket_path).unlink(missing_ok=True)

    def __enter__(self) -> FakeKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
