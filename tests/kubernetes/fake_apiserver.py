"""A fake Kubernetes API server: HTTPS, bearer-token auth, real list and watch semantics.

Started by the tests (its own event loop in a thread). What it implements, as the real API
server does (kube-apiserver's REST semantics for core/v1 Pods and resource.k8s.io
ResourceSlices):

* ``GET /api/v1/pods`` and ``/apis/resource.k8s.io/<version>/resourceslices``: a list
  (``kind: PodList``, ``metadata.resourceVersion``, ``limit``/``continue`` paging) filtered by
  ``fieldSelector`` (``spec.nodeName=``, ``spec.driver=``, comma = and);
* ``?watch=1&resourceVersion=N``: a chunked stream, one JSON event per line (``ADDED``,
  ``MODIFIED``, ``DELETED``; ``BOOKMARK`` every ``bookmark_interval`` seconds when
  ``allowWatchBookmarks=true``), events after N first, then live ones, until
  ``timeoutSeconds``; a resourceVersion older than the retained history gets an ``ERROR``
  event with a ``Status`` of code 410 (``Expired``), as etcd compaction causes;
* 401 without the right ``Authorization: Bearer`` token, 403 when ``forbidden`` is set, 503
  while ``down`` is set (open watches are cut), 404 for versions not in ``served``;
  ``watch_ends_at_once`` makes every watch end with no event (a broken proxy).

Objects are built by :func:`pod_object` and :func:`slice_object` in the shapes ``kubectl get
-o json`` prints (sources: Kubernetes API reference for core/v1 Pod and resource.k8s.io
ResourceSlice; device attributes ``type``, ``uuid``, ``parentUUID``, ``profile`` as published
by NVIDIA's DRA driver for GPUs, k8s-dra-driver-gpu).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

TOKEN = "fake-service-account-token"  # noqa: S105 (a test token)


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1 signed by it (openssl).

    Returns:
        (CA certificate, server certificate, server key).
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(ca_key), "-out", str(ca_crt), "-days", "2", "-subj", "/CN=fake-kube-ca")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", "/CN=kube-apiserver")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(crt), "-days", "2", "-extfile", str(ext))
    return ca_crt, crt, key


def pod_object(
    name: str,
    namespace: str,
    *,
    node: str = "test-node",
    uid: str | None = None,
    labels: dict[str, str] | None = None,
    phase: str = "Running",
    gpus: int = 1,
) -> dict[str, Any]:
    """A Pod as ``kubectl get pod -o json`` shows it (the fields a real one has)."""
    uid = uid or f"{abs(hash((namespace, name))) % 10**12:012d}-0000-4000-8000-000000000000"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "creationTimestamp": "2026-12-05T00:00:00Z",
            "labels": dict(labels or {}),
            "annotations": {"kubectl.kubernetes.io/default-container": "main"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                 "uid": "9f1e0000-0000-4000-8000-000000000001",
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "schedulerName": "default-scheduler",
            "serviceAccountName": "default",
            "containers": [{
                "name": "main",
                "image": "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04",
                "resources": {"limits": {"nvidia.com/gpu": str(gpus)},
                              "requests": {"nvidia.com/gpu": str(gpus)}},
                "terminationMessagePath": "/dev/termination-log",
                "imagePullPolicy": "IfNotPresent",
            }],
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                             "effect": "NoSchedule"}],
        },
        "status": {
            "phase": phase,
            "qosClass": "BestEffort",
            "hostIP": "10.0.0.5",
            "podIP": "10.244.1.7",
            "startTime": "2026-12-05T00:00:01Z",
            "conditions": [{"type": "Ready", "status": "True" if phase == "Running" else "False",
                            "lastTransitionTime": "2026-12-05T00:00:03Z"}],
            "containerStatuses": [{"name": "main", "ready": phase == "Running",
                                   "restartCount": 0, "image": "cuda", "imageID": "sha256:0",
                                   "started": phase == "Running", "state": {}}],
        },
    }


def slice_object(
    name: str,
    pool: str,
    devices: list[dict[str, str]],
    *,
    node: str = "test-node",
    version: str = "v1",
    driver: str = "gpu.nvidia.com",
) -> dict[str, Any]:
    """A ResourceSlice of NVIDIA's DRA driver; ``devices``: name, type, uuid, [parentUUID,
    profile]. ``v1beta1`` puts attributes under ``basic``; ``v1``/``v1beta2`` directly."""
    out = []
    for spec in devices:
        attrs: dict[str, Any] = {
            key: {"string": value} for key, value in spec.items() if key != "name"
        }
        attrs["productName"] = {"string": "NVIDIA H100 80GB HBM3"}
        attrs["driverVersion"] = {"version": "570.124.6"}
        body: dict[str, Any] = {"attributes": attrs,
                                "capacity": {"memory": {"value": "80Gi"}}}
        out.append({"name": spec["name"], **({"basic": body} if version == "v1beta1" else body)})
    return {
        "apiVersion": f"resource.k8s.io/{version}",
        "kind": "ResourceSlice",
        "metadata": {"name": name, "uid": f"slice-{name}", "generateName": f"{node}-gpu-",
                     "creationTimestamp": "2026-12-05T00:00:00Z"},
        "spec": {"driver": driver, "nodeName": node,
                 "pool": {"name": pool, "generation": 1, "resourceSliceCount": 1},
                 "devices": out},
    }


@dataclass
class _Kind:
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def _field(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part, {}) if isinstance(value, dict) else {}
    return value if isinstance(value, str) else ""


def _matches(obj: dict[str, Any], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, want = term.partition("=")
        if _field(obj, key) != want:
            return False
    return True


class FakeApiServer:
    """The fake API server on ``https://127.0.0.1:<port>``; see the module docstring."""

    def __init__(self, tls_dir: Path, *, served: tuple[str, ...] = ("v1",)) -> None:
        self.ca, self._crt, self._key = make_tls(tls_dir)
        self.served = served
        self.token = TOKEN
        self.forbidden = False
        self.down = False
        self.bookmark_interval = 1.0
        self.watch_ends_at_once = False
        self.stall = 0.0
        """Seconds every answer is held back (an API server too slow to answer)."""
        self.requests: Counter[str] = Counter()
        """Requests by ``list <path>`` / ``watch <path>``."""
        self.attempts = 0
        """Every request, answered or refused."""
        self.selectors: list[str] = []
        self.rv = 100
        self._kinds: dict[str, _Kind] = {}
        self._oldest = 0
        self._loop = asyncio.new_event_loop()
        self._changed: asyncio.Condition | None = None
        self._released: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    # --- state (called from the test thread) ---------------------------------------------

    def _call(self, fn: Any, *args: Any) -> Any:
        async def run() -> Any:
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def _put(self, path: str, kind: str, obj: dict[str, Any]) -> None:
        store = self._kinds.setdefault(path, _Kind())
        meta = obj["metadata"]
        key = f"{meta.get('namespace', '')}/{meta['name']}"
        self.rv += 1
        obj = json.loads(json.dumps(obj))
        obj["metadata"]["resourceVersion"] = str(self.rv)
        if kind == "DELETED":
            store.objects.pop(key, None)
        else:
            kind = "MODIFIED" if key in store.objects else "ADDED"
            store.objects[key] = obj
        store.history.append((self.rv, kind, obj))
        assert self._changed is not None
        self._changed.notify_all()

    async def _locked_put(self, path: str, kind: str, obj: dict[str, Any]) -> None:
        assert self._changed is not None
        async with self._changed:
            self._put(path, kind, obj)

    def apply(self, obj: dict[str, Any], *, delete: bool = False) -> None:
        """Create or update (or delete) one object; watchers get the event."""
        path = self._path_of(obj)
        asyncio.run_coroutine_threadsafe(
            self._locked_put(path, "DELETED" if delete else "ADDED", obj), self._loop
        ).result(10)

    def compact(self) -> None:
        """Forget the event history (as etcd compaction): older resourceVersions get 410."""
        def run() -> None:
            self._oldest = self.rv
            for store in self._kinds.values():
                store.history.clear()
        self._call(run)

    @staticmethod
    def _path_of(obj: dict[str, Any]) -> str:
        if obj["kind"] == "Pod":
            return "/api/v1/pods"
        return "resourceslices"

    # --- HTTP ----------------------------------------------------------------------------

    def _auth(self, request: web.Request) -> web.Response | None:
        if self.down:
            return web.json_response(_status(503, "ServiceUnavailable", "down for the test"),
                                     status=503)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(_status(401, "Unauthorized", "Unauthorized"), status=401)
        if self.forbidden:
            return web.json_response(_status(403, "Forbidden", "pods is forbidden: User "
                                             "\"system:serviceaccount:gpu:exporter\" cannot "
                                             "list resource \"pods\""), status=403)
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        if self.stall:
            assert self._released is not None
            with contextlib.suppress(TimeoutError):  # stop() releases held answers at once
                await asyncio.wait_for(self._released.wait(), self.stall)
        denied = self._auth(request)
        if denied is not None:
            return denied
        path = request.path
        store_path = path
        if path.startswith("/apis/resource.k8s.io/"):
            version = path.split("/")[3]
            if version not in self.served or not path.endswith("/resourceslices"):
                return web.json_response(_status(404, "NotFound", "the server could not find "
                                                 "the requested resource"), status=404)
            store_path = "resourceslices"
        elif path != "/api/v1/pods":
            return web.json_response(_status(404, "NotFound", "not found"), status=404)
        selector = request.query.get("fieldSelector", "")
        self.selectors.append(selector)
        if request.query.get("watch") in ("1", "true"):
            self.requests[f"watch {path}"] += 1
            return await self._watch(request, store_path, selector)
        self.requests[f"list {path}"] += 1
        return self._list(request, store_path, selector, path)

    def _list(self, request: web.Request, store_path: str, selector: str,
              path: str) -> web.Response:
        store = self._kinds.get(store_path, _Kind())
        items = [o for _, o in sorted(store.objects.items()) if _matches(o, selector)]
        start = int(request.query.get("continue") or 0)
        limit = int(request.query.get("limit") or 0) or len(items) or 1
        page = items[start:start + limit]
        meta: dict[str, Any] = {"resourceVersion": str(self.rv)}
        if start + limit < len(items):
            meta["continue"] = str(start + limit)
        kind = "PodList" if store_path == "/api/v1/pods" else "ResourceSliceList"
        version = "v1" if kind == "PodList" else f"resource.k8s.io/{path.split('/')[3]}"
        items_out = []
        for obj in page:
            item = dict(obj)
            item.pop("kind", None)
            item.pop("apiVersion", None)
            items_out.append(item)
        return web.json_response({"kind": kind, "apiVersion": version, "metadata": meta,
                                  "items": items_out})

    async def _watch(self, request: web.Request, store_path: str,
                     selector: str) -> web.StreamResponse:
        since = int(request.query.get("resourceVersion") or 0)
        timeout = float(request.query.get("timeoutSeconds") or 300)
        bookmarks = request.query.get("allowWatchBookmarks") == "true"
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)

        async def send(event: dict[str, Any]) -> None:
            await response.write(json.dumps(event).encode() + b"\n")

        if self.watch_ends_at_once:
            return response
        if since and since < self._oldest:
            await send({"type": "ERROR", "object": _status(
                410, "Expired", f"too old resource version: {since} ({self._oldest})")})
            return response
        assert self._changed is not None
        end = time.monotonic() + timeout
        last_bookmark = time.monotonic()
        sent = since
        while time.monotonic() < end and not self.down:
            store = self._kinds.get(store_path, _Kind())
            for rv, kind, obj in list(store.history):
                if rv > sent and _matches(obj, selector):
                    await send({"type": kind, "object": obj})
            if store.history:
                sent = max(sent, store.history[-1][0])
            if bookmarks and time.monotonic() - last_bookmark >= self.bookmark_interval:
                last_bookmark = time.monotonic()
                await send({"type": "BOOKMARK", "object": {
                    "kind": "Pod", "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self.rv)}}})
                sent = max(sent, self.rv)
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.1)
        return response

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> FakeApiServer:
        import ssl

        self._thread.start()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self._crt), str(self._key))

        async def boot() -> int:
            self._changed = asyncio.Condition()
            self._released = asyncio.Event()
            app = web.Application()
            app.router.add_get("/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
            await site.start()
            server = site._server
            assert server is not None
            return int(server.sockets[0].getsockname()[1])

        self.port = asyncio.run_coroutine_threadsafe(boot(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._released is not None:
            self._loop.call_soon_threadsafe(self._released.set)
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig file pointing at this server (CA file, token)."""
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url,
                                                      "certificate-authority": str(self.ca)}}],
            "users": [{"name": "exporter", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "exporter"}}],
        }))
        return path

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
