"""Kubernetes API client: node-scoped list+watch of Pods (and DRA ResourceSlices), on aiohttp.

The only module that talks to the Kubernetes API server. It is imported only when a flag
that needs the API is set (``--kubernetes-enable-pod-labels``, ``--kubernetes-enable-pod-uid``,
``--kubernetes-enable-dra``): plain ``-k`` needs no API access and no RBAC.

Why our own client (see docs/architecture.md): the exporter needs two GET requests, a list
and a watch, for one or two kinds; aiohttp is already loaded for the HTTP server, so this
client adds no dependency and almost no memory, where a general client brings its own HTTP
stack and thousands of generated model classes.

Semantics (as client-go's reflector; facts in docs/kubernetes.md):

* **List** ``GET <path>?fieldSelector=...&limit=500`` page by page (``continue``), which gives
  the collection's ``resourceVersion``; the store is replaced by the listed objects.
* **Watch** ``GET <path>?watch=1&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=N``:
  a chunked stream of one JSON event per line (``ADDED``, ``MODIFIED``, ``DELETED``,
  ``BOOKMARK``, ``ERROR``). Every event moves RV forward; a watch that ends normally is
  resumed from RV without a list.
* **410 Gone** (HTTP status, or an ``ERROR`` event whose Status has code 410): RV is too old;
  list again (``relists`` counts these and every list after a failure).
* Failures (connection refused, TLS, 401/403, timeouts, malformed answers) back off
  exponentially with full jitter up to ``max_backoff``; one warning per outage, one info line
  when it is back. The last store is kept meanwhile.

Objects are reduced at once (:func:`reduce_pod`, :func:`reduce_slice_devices`) to the few
fields attribution needs, so memory stays bounded whatever the objects carry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlencode

import aiohttp
import yaml

LOG = logging.getLogger("gpu_exporter.kubernetes")

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where Kubernetes mounts a pod's service-account token and cluster CA."""

MAX_EVENT_BYTES = 4 * 1024 * 1024
"""Largest watch event (one JSON line) accepted; a longer line ends the watch (relist)."""

MAX_LIST_BYTES = 256 * 1024 * 1024
"""Largest list page accepted."""

MAX_LABEL_VALUE = 1024
"""Longer pod label values are dropped (the API itself allows 63 characters)."""

LIST_PAGE = 500

MIN_WATCH_SECONDS = 1.0
"""A watch ending sooner without any event counts as a failure (backoff, no busy loop)."""

DRA_DRIVER = "gpu.nvidia.com"
"""The NVIDIA DRA driver's name (ResourceSlice ``spec.driver``, claim ``driver_name``)."""

DRA_VERSIONS = ("v1", "v1beta2", "v1beta1")
"""resource.k8s.io versions tried in order; the first the server serves is watched."""

JSON: TypeAlias = Any


class MalformedError(ValueError):
    """An API object or answer that is not what the API server sends."""


class ApiConfigError(Exception):
    """No usable API configuration (not in a cluster, broken kubeconfig)."""


class ApiError(Exception):
    """One API request failed; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """Where the API server is and how to authenticate.

    Attributes:
        server: base URL, ``https://host:port``.
        token: a bearer token given inline (kubeconfig ``token``).
        token_file: a file holding the bearer token, re-read on every request (service
            account tokens are rotated by the kubelet).
        ca_file: CA bundle file; ``ca_data`` PEM text given inline instead.
        cert_file, key_file: client certificate and key (kubeconfig).
        insecure: skip server certificate verification (kubeconfig
            ``insecure-skip-tls-verify``).
        source: where this came from, for log lines.
    """

    server: str
    token: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None
    ca_data: str | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False
    source: str = ""

    def bearer(self) -> str | None:
        """The bearer token to send now, or ``None``."""
        if self.token_file is not None:
            try:
                return self.token_file.read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                raise ApiError(0, f"cannot read token file {self.token_file}: {exc}") from None
        return self.token

    def ssl_context(self) -> ssl.SSLContext | bool:
        """The TLS settings of the connection (``False``: plain HTTP)."""
        if self.server.startswith("http://"):
            return False
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file else None, cadata=self.ca_data)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file is not None:
            context.load_cert_chain(str(self.cert_file),
                                    str(self.key_file) if self.key_file else None)
        return context


def in_cluster_config(
    environ: Mapping[str, str], sa_dir: Path = SERVICE_ACCOUNT_DIR
) -> ApiConfig:
    """The pod's own service account: ``KUBERNETES_SERVICE_HOST``/``PORT``, token and CA.

    Raises:
        ApiConfigError: not in a cluster, or the service-account files are missing.
    """
    host = environ.get("KUBERNETES_SERVICE_HOST", "").strip()
    port = environ.get("KUBERNETES_SERVICE_PORT", "").strip() or "443"
    if not host:
        raise ApiConfigError("KUBERNETES_SERVICE_HOST is not set (not running in a pod) and "
                             "KUBECONFIG is not set")
    token = sa_dir / "token"
    if not token.is_file():
        raise ApiConfigError(f"no service-account token at {token} (automountServiceAccountToken "
                             "is off?)")
    if ":" in host:
        host = f"[{host}]"
    ca = sa_dir / "ca.crt"
    return ApiConfig(f"https://{host}:{port}", token_file=token,
                     ca_file=ca if ca.is_file() else None, source="in-cluster service account")


def _pick(items: JSON, name: str, what: str, path: Path) -> dict[str, Any]:
    for item in items or ():
        if isinstance(item, dict) and item.get("name") == name:
            value = item.get(what)
            if isinstance(value, dict):
                return value
    raise ApiConfigError(f"{path}: no {what} named {name!r}")


def _data_file(directory: Path, name: str, data: str) -> Path:
    import base64  # noqa: PLC0415  # only for kubeconfigs with inline certificates

    target = directory / name
    target.write_bytes(base64.b64decode(data))
    target.chmod(0o600)
    return target


def kubeconfig_config(path: Path, context: str | None = None) -> ApiConfig:
    """The current (or named) context of a kubeconfig file.

    Supported: ``server``, ``certificate-authority(-data)``, ``insecure-skip-tls-verify``,
    user ``token``, ``tokenFile``, ``client-certificate(-data)``, ``client-key(-data)``.
    Exec and auth-provider plugins are not (they run programs).

    Raises:
        ApiConfigError: unreadable file or missing entries, naming the file.
    """
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ApiConfigError(f"{path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ApiConfigError(f"{path}: not a kubeconfig")
    name = context or doc.get("current-context")
    if not name:
        raise ApiConfigError(f"{path}: no current-context")
    ctx = _pick(doc.get("contexts"), name, "context", path)
    cluster = _pick(doc.get("clusters"), str(ctx.get("cluster")), "cluster", path)
    user: dict[str, Any] = {}
    if ctx.get("user"):
        user = _pick(doc.get("users"), str(ctx["user"]), "user", path)
    server = str(cluster.get("server") or "")
    if not server:
        raise ApiConfigError(f"{path}: cluster {ctx.get('cluster')!r} has no server")
    base = path.parent
    secrets: Path | None = None

    def rel(value: object) -> Path | None:
        return (base / str(value)) if value else None

    def inline(key: str, filename: str) -> Path | None:
        nonlocal secrets
        if not user.get(key):
            return None
        if secrets is None:
            secrets = Path(tempfile.mkdtemp(prefix="gpu-exporter-kubeconfig-"))
        return _data_file(secrets, filename, str(user[key]))

    ca_data = cluster.get("certificate-authority-data")
    ca_pem: str | None = None
    if ca_data:
        import base64  # noqa: PLC0415

        ca_pem = base64.b64decode(str(ca_data)).decode("ascii", "replace")
    return ApiConfig(
        server.rstrip("/"),
        token=str(user["token"]) if user.get("token") else None,
        token_file=rel(user.get("tokenFile")),
        ca_file=rel(cluster.get("certificate-authority")),
        ca_data=ca_pem,
        cert_file=rel(user.get("client-certificate"))
        or inline("client-certificate-data", "client.crt"),
        key_file=rel(user.get("client-key")) or inline("client-key-data", "client.key"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        source=f"kubeconfig {path} (context {name})",
    )


def load_config(environ: Mapping[str, str]) -> ApiConfig:
    """``KUBECONFIG`` (its first file) when set, else the in-cluster service account.

    Raises:
        ApiConfigError: neither works.
    """
    kubeconfig = environ.get("KUBECONFIG", "").strip()
    if kubeconfig:
        first = kubeconfig.split(os.pathsep)[0]
        return kubeconfig_config(Path(first).expanduser())
    return in_cluster_config(environ)


# --- reduced objects ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PodMeta:
    """What attribution needs of one Pod object.

    Attributes:
        namespace, name, uid: identity.
        phase: ``status.phase`` (``Pending``, ``Running``, ``Succeeded``, ``Failed``, ...).
        labels: ``metadata.labels`` as sorted (key, value) pairs, values over
            :data:`MAX_LABEL_VALUE` characters dropped.
        containers: (container id, container name) of every container, init and ephemeral
            container with a runtime id in ``status``, the id without its ``<runtime>://``
            prefix, sorted (for ``--workload-metrics``).
    """

    namespace: str
    name: str
    uid: str
    phase: str
    labels: tuple[tuple[str, str], ...] = ()
    containers: tuple[tuple[str, str], ...] = ()

    @property
    def finished(self) -> bool:
        """True once the pod ended (its containers will not run again)."""
        return self.phase in ("Succeeded", "Failed")


@dataclass(frozen=True, slots=True)
class SliceDevice:
    """One device of a ResourceSlice of the NVIDIA DRA driver.

    Attributes:
        pool, name: how claims name it (``pool_name``, ``device_name``).
        type: ``gpu`` or ``mig`` (attribute ``type``).
        uuid: ``GPU-...`` or ``MIG-...`` (attribute ``uuid``).
        parent_uuid: the GPU of a MIG device (attribute ``parentUUID``).
        profile: MIG profile such as ``1g.10gb`` (attribute ``profile``).
    """

    pool: str
    name: str
    type: str
    uuid: str
    parent_uuid: str = ""
    profile: str = ""


def _meta(obj: JSON) -> dict[str, Any]:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        raise MalformedError("object without metadata")
    return meta


def reduce_pod(obj: JSON) -> tuple[str, PodMeta]:
    """``(namespace/name, PodMeta)`` of a Pod object.

    Raises:
        ValueError: not a usable Pod object.
    """
    meta = _meta(obj)
    name, namespace, uid = meta.get("name"), meta.get("namespace"), meta.get("uid")
    if not (isinstance(name, str) and isinstance(namespace, str) and isinstance(uid, str)):
        raise MalformedError("pod without name, namespace or uid")
    status = obj.get("status")
    phase = status.get("phase") if isinstance(status, dict) else None
    raw = meta.get("labels")
    labels: tuple[tuple[str, str], ...] = ()
    if isinstance(raw, dict):
        labels = tuple(sorted(
            (k, v) for k, v in raw.items()
            if isinstance(k, str) and isinstance(v, str) and len(v) <= MAX_LABEL_VALUE
        ))
    return f"{namespace}/{name}", PodMeta(namespace, name, uid,
                                          phase if isinstance(phase, str) else "", labels,
                                          _container_ids(status))


def _container_ids(status: object) -> tuple[tuple[str, str], ...]:
    """(runtime container id, name) pairs of a pod's ``status`` (see :class:`PodMeta`)."""
    if not isinstance(status, dict):
        return ()
    found: set[tuple[str, str]] = set()
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        entries = status.get(key)
        for entry in entries if isinstance(entries, list) else ():
            if not isinstance(entry, dict):
                continue
            raw, name = entry.get("containerID"), entry.get("name")
            if isinstance(raw, str) and isinstance(name, str) and name:
                cid = raw.rpartition("://")[2].lower()
                if cid:
                    found.add((cid, name))
    return tuple(sorted(found))


def _attribute(attrs: JSON, key: str) -> str:
    """A device attribute's string value (``{"string": ...}``; the key may be qualified)."""
    if not isinstance(attrs, dict):
        return ""
    value = attrs.get(key)
    if value is None:
        value = attrs.get(f"{DRA_DRIVER}/{key}")
    if isinstance(value, dict):
        for kind in ("string", "version"):
            if isinstance(value.get(kind), str):
                return str(value[kind])
    return ""


def reduce_slice_devices(obj: JSON) -> tuple[str, tuple[SliceDevice, ...]]:
    """``(slice name, its GPU and MIG devices)`` of a ResourceSlice of ``gpu.nvidia.com``.

    Devices carry ``attributes`` directly (``v1``, ``v1beta2``) or under ``basic``
    (``v1beta1``). Slices of other drivers, and devices without a ``uuid``, give nothing.

    Raises:
        ValueError: not a usable ResourceSlice object.
    """
    meta = _meta(obj)
    name = meta.get("name")
    spec = obj.get("spec")
    if not isinstance(name, str) or not isinstance(spec, dict):
        raise MalformedError("resource slice without name or spec")
    if spec.get("driver") != DRA_DRIVER:
        return name, ()
    pool = spec.get("pool")
    pool_name = pool.get("name") if isinstance(pool, dict) else None
    if not isinstance(pool_name, str):
        raise MalformedError("resource slice without pool name")
    devices: list[SliceDevice] = []
    for device in spec.get("devices") or ():
        if not isinstance(device, dict) or not isinstance(device.get("name"), str):
            continue
        attrs = device.get("attributes")
        if attrs is None and isinstance(device.get("basic"), dict):
            attrs = device["basic"].get("attributes")
        uuid = _attribute(attrs, "uuid")
        if not uuid:
            continue
        devices.append(SliceDevice(pool_name, device["name"], _attribute(attrs, "type"), uuid,
                                   _attribute(attrs, "parentUUID"),
                                   _attribute(attrs, "profile")))
    return name, tuple(devices)


# --- list + watch ------------------------------------------------------------------------

def backoff(failures: int, base: float, cap: float, rng: Callable[[], float]) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**(failures-1))]."""
    ceiling = min(cap, base * 2.0 ** min(max(failures - 1, 0), 30))
    return max(0.05, ceiling * rng())


class Gone(Exception):  # noqa: N818 (the HTTP status's name)
    """The resourceVersion is too old (HTTP 410 or a watch ERROR event with code 410)."""


@dataclass
class Reflector:
    """Keeps a local store of one resource kind in step with the API server.

    Args:
        kind: resource name for logs and metrics (``pods``, ``resourceslices``).
        path: collection path, ``/api/v1/pods``.
        params: query parameters of every list and watch (``fieldSelector``).
        reduce: raw object -> (key, value); raises ``ValueError`` for unusable objects.
    """

    kind: str
    path: str
    params: Mapping[str, str]
    reduce: Callable[[JSON], tuple[str, Any]]
    store: dict[str, Any] = field(default_factory=dict)
    resource_version: str = ""
    up: bool = False
    synced: bool = False
    relists: int = 0
    lists: int = 0
    watches: int = 0
    events: int = 0
    malformed: int = 0
    last_sync: float | None = None
    version: int = 0
    """Bumped on every change of :attr:`store` (cheap change detection for attribution)."""
    deleted: dict[str, bool] = field(default_factory=dict)
    """Keys of recently deleted objects (bounded; no object kept), so that a pod the kubelet
    still lists can be told apart from one the API has not shown yet."""
    _failures: int = 0
    _outage_since: float | None = None

    MAX_DELETED = 4096

    def _bury(self, key: str) -> None:
        self.deleted.pop(key, None)
        self.deleted[key] = True
        while len(self.deleted) > self.MAX_DELETED:
            self.deleted.pop(next(iter(self.deleted)))

    def replace(self, items: dict[str, Any]) -> None:
        """Take a full list: objects gone since the last one count as deleted."""
        for key in self.store:
            if key not in items:
                self._bury(key)
        for key in items:
            self.deleted.pop(key, None)
        self.store = items
        self.version += 1

    def apply(self, event: JSON) -> None:
        """Apply one watch event.

        Raises:
            Gone: an ERROR event with code 410.
            ApiError: another ERROR event.
            ValueError: a malformed event.
        """
        if not isinstance(event, dict):
            raise MalformedError("watch event is not an object")
        kind, obj = event.get("type"), event.get("object")
        if kind == "ERROR":
            code = obj.get("code") if isinstance(obj, dict) else None
            message = obj.get("message", "") if isinstance(obj, dict) else ""
            if code == 410:
                raise Gone(str(message))
            raise ApiError(int(code) if isinstance(code, int) else 0,
                           f"watch error: {message}")
        rv = _meta(obj).get("resourceVersion")
        if kind == "BOOKMARK":
            pass
        elif kind in ("ADDED", "MODIFIED", "DELETED"):
            self.events += 1
            try:
                key, value = self.reduce(obj)
            except ValueError:
                self.malformed += 1
                LOG.debug("ignoring a malformed %s object in a watch event", self.kind)
            else:
                if kind == "DELETED":
                    self.store.pop(key, None)
                    self._bury(key)
                else:
                    self.deleted.pop(key, None)
                    self.store[key] = value
                self.version += 1
        else:
            raise MalformedError(f"unknown watch event type {kind!r}")
        if isinstance(rv, str) and rv:
            self.resource_version = rv

    def reduce_all(self, items: JSON) -> dict[str, Any]:
        """Reduce a list's items, skipping (and counting) malformed ones."""
        out: dict[str, Any] = {}
        for obj in items or ():
            try:
                key, value = self.reduce(obj)
            except ValueError:
                self.malformed += 1
                continue
            out[key] = value
        return out


class ApiClient:
    """HTTP requests to one API server (one aiohttp session, opened on first use)."""

    def __init__(self, config: ApiConfig, *, deadline: float) -> None:
        self.config = config
        self._deadline = deadline
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        """Requests sent so far (lists and watches)."""

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self.config.ssl_context(), limit=4)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "gpu-exporter"}
        token = self.config.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    @contextlib.asynccontextmanager
    async def get(self, path: str, params: Mapping[str, str], *,
                  read_timeout: float) -> Any:  # noqa: ANN401 (aiohttp response)
        """A GET whose response is open for the ``async with`` block; errors as ApiError."""
        url = f"{self.config.server}{path}?{urlencode(params)}"
        timeout = aiohttp.ClientTimeout(total=None, connect=self._deadline,
                                        sock_connect=self._deadline, sock_read=read_timeout)
        self.requests += 1
        try:
            async with self._open().get(url, headers=self._headers(), timeout=timeout,
                                        allow_redirects=False) as response:
                if response.status == 410:
                    raise Gone(await _message(response))
                if response.status != 200:
                    raise ApiError(response.status, await _message(response))
                yield response
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError) as exc:
            raise ApiError(0, f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc

    async def close(self) -> None:
        """Close the session."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def _message(response: Any) -> str:  # noqa: ANN401 (aiohttp response)
    try:
        body = await response.content.read(4096)
        doc = json.loads(body)
        if isinstance(doc, dict) and isinstance(doc.get("message"), str):
            return f"{response.reason}: {doc['message']}"
    except (ValueError, aiohttp.ClientError, TimeoutError):
        pass
    return str(response.reason or "")


async def _read_all(response: Any, limit: int) -> bytes:  # noqa: ANN401 (aiohttp response)
    """The whole body (chunked or not), refused beyond ``limit`` bytes."""
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise ApiError(0, f"answer larger than {limit} bytes")
    return bytes(body)


async def _lines(response: Any, limit: int) -> Any:  # noqa: ANN401 (async iterator)
    """The newline-separated records of a chunked body, each at most ``limit`` bytes."""
    pending = bytearray()
    async for chunk in response.content.iter_any():
        pending += chunk
        while True:
            cut = pending.find(b"\n")
            if cut < 0:
                break
            line = bytes(pending[:cut])
            del pending[:cut + 1]
            if line.strip():
                yield line
        if len(pending) > limit:
            raise ApiError(0, f"watch event longer than {limit} bytes")
    if pending.strip():
        yield bytes(pending)


class Watcher:
    """Runs the reflectors of one API server: list, watch, resume, relist, back off.

    Args:
        client: the API client.
        reflectors: what to keep in step.
        deadline: seconds for connecting and for each list request.
        max_backoff: longest wait between two attempts after failures.
        watch_timeout: ``timeoutSeconds`` asked of the server for each watch (randomised
            by up to a quarter so exporters of a cluster do not reconnect together).
        clock: monotonic clock.
        rng: uniform [0, 1) source (jitter).
    """

    def __init__(
        self,
        client: ApiClient,
        reflectors: tuple[Reflector, ...],
        *,
        deadline: float = 10.0,
        max_backoff: float = 30.0,
        watch_timeout: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.client = client
        self.reflectors = reflectors
        self._deadline = deadline
        self._max_backoff = max_backoff
        self._watch_timeout = watch_timeout
        self._clock = clock
        self._rng = rng
        self._tasks: list[asyncio.Task[None]] = []

    def by_kind(self, kind: str) -> Reflector | None:
        """The reflector of ``kind``."""
        return next((r for r in self.reflectors if r.kind == kind), None)

    async def list_once(self, reflector: Reflector) -> None:
        """List the whole collection (all pages) and replace the store."""
        params = dict(reflector.params)
        params["limit"] = str(LIST_PAGE)
        items: dict[str, Any] = {}
        version = ""
        while True:
            async with self.client.get(reflector.path, params,
                                       read_timeout=self._deadline) as response:
                body = await _read_all(response, MAX_LIST_BYTES)
            try:
                doc = json.loads(body)
                meta = _meta(doc)
            except ValueError as exc:
                raise ApiError(0, f"malformed list answer: {exc}") from exc
            page = doc.get("items")
            if page is not None and not isinstance(page, list):
                raise ApiError(0, "malformed list answer: items is not a list")
            items.update(reflector.reduce_all(page))
            version = str(meta.get("resourceVersion") or "")
            token = meta.get("continue")
            if not token:
                break
            params["continue"] = str(token)
        reflector.lists += 1
        reflector.replace(items)
        reflector.resource_version = version
        reflector.synced = True
        self._good(reflector)

    async def watch_once(self, reflector: Reflector) -> None:
        """One watch from the reflector's resourceVersion until the server ends it."""
        timeout = self._watch_timeout * (1.0 + self._rng() / 4)
        params = dict(reflector.params)
        params.update(watch="1", allowWatchBookmarks="true",
                      resourceVersion=reflector.resource_version,
                      timeoutSeconds=str(int(timeout)))
        reflector.watches += 1
        started, events = self._clock(), 0
        async with self.client.get(reflector.path, params,
                                   read_timeout=timeout + 30) as response:
            self._good(reflector)
            async for line in _lines(response, MAX_EVENT_BYTES):
                try:
                    event = json.loads(line)
                    reflector.apply(event)
                except (Gone, ApiError):
                    raise
                except ValueError as exc:
                    raise ApiError(0, f"malformed watch event: {exc}") from exc
                events += 1
                self._good(reflector)
        if not events and self._clock() - started < MIN_WATCH_SECONDS:
            # A server (or proxy) that ends every watch at once must not make us spin.
            raise ApiError(0, "the server ended the watch at once, with no event")

    def _good(self, reflector: Reflector) -> None:
        reflector.last_sync = self._clock()
        if reflector._outage_since is not None:
            LOG.info("Kubernetes API (%s) answers again for %s after %.1fs (%d failed attempts)",
                     self.client.config.server, reflector.kind,
                     self._clock() - reflector._outage_since, reflector._failures)
        elif not reflector.up:
            LOG.info("Kubernetes API (%s, %s): watching %s", self.client.config.server,
                     self.client.config.source, reflector.kind)
        reflector.up = True
        reflector._failures = 0
        reflector._outage_since = None

    def _failed(self, reflector: Reflector, reason: str) -> float:
        reflector.up = False
        reflector._failures += 1
        if reflector._outage_since is None:
            reflector._outage_since = self._clock()
            kept = ("keeping what it last said" if reflector.synced
                    else "no pod labels, UIDs or DRA claims until it answers")
            LOG.warning("Kubernetes API (%s) not usable for %s: %s; %s, retrying with backoff",
                        self.client.config.server, reflector.kind, reason, kept)
        else:
            LOG.debug("Kubernetes API still not usable for %s (attempt %d): %s",
                      reflector.kind, reflector._failures, reason)
        return backoff(reflector._failures, 0.5, self._max_backoff, self._rng)

    async def run(self, reflector: Reflector) -> None:
        """List, then watch and resume forever; relist on 410 and after failures."""
        need_list = True
        while True:
            try:
                if not reflector.path:  # ResourceSlices: the version the server serves
                    version = await detect_dra_version(self.client, self._deadline)
                    reflector.path = f"/apis/resource.k8s.io/{version}/resourceslices"
                    LOG.info("Kubernetes API: DRA ResourceSlices from resource.k8s.io/%s",
                             version)
                if need_list:
                    if reflector.lists:
                        reflector.relists += 1
                    await self.list_once(reflector)
                    need_list = False
                await self.watch_once(reflector)
            except asyncio.CancelledError:  # noqa: PERF203 (the loop is the retry loop)
                raise
            except Gone as exc:
                LOG.info("Kubernetes API: %s watch expired (410 Gone: %s); listing again",
                         reflector.kind, exc)
                need_list = True
            except ApiError as exc:
                await asyncio.sleep(self._failed(reflector, str(exc)))
                need_list = need_list or exc.status != 0 or not reflector.resource_version
            except Exception as exc:
                LOG.exception("Kubernetes API %s watch failed unexpectedly", reflector.kind)
                await asyncio.sleep(self._failed(reflector, f"{type(exc).__name__}: {exc}"))
                need_list = True

    def start(self) -> None:
        """Start one task per reflector."""
        loop = asyncio.get_running_loop()
        for reflector in self.reflectors:
            self._tasks.append(loop.create_task(self.run(reflector),
                                                name=f"kube-api-{reflector.kind}"))

    async def close(self) -> None:
        """Stop the tasks and close the session."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.close()

    def health(self) -> Iterator[tuple[str, bool, float, int]]:
        """(kind, up, seconds since last sync (inf: never), relists) of each reflector."""
        now = self._clock()
        for r in self.reflectors:
            age = math.inf if r.last_sync is None else max(0.0, now - r.last_sync)
            yield r.kind, r.up, age, r.relists


async def _serves(client: ApiClient, version: str, deadline: float) -> bool:
    try:
        async with client.get(f"/apis/resource.k8s.io/{version}/resourceslices",
                              {"limit": "1"}, read_timeout=deadline):
            return True
    except ApiError as exc:
        if exc.status != 404:
            raise
    return False


async def detect_dra_version(client: ApiClient, deadline: float) -> str:
    """The first of :data:`DRA_VERSIONS` the server serves.

    Raises:
        ApiError: no answer, or none of them is served (404 for each).
    """
    for version in DRA_VERSIONS:
        if await _serves(client, version, deadline):
            return version
    raise ApiError(404, "the API server serves no resource.k8s.io version of resourceslices "
                   f"({', '.join(DRA_VERSIONS)}): DRA is off in this cluster")


def pod_reflector(node_name: str | None) -> Reflector:
    """Pods of this node only (``fieldSelector=spec.nodeName=NODE``)."""
    params = {"fieldSelector": f"spec.nodeName={node_name}"} if node_name else {}
    return Reflector("pods", "/api/v1/pods", params, reduce_pod)


def slice_reflector(node_name: str | None, version: str = "") -> Reflector:
    """ResourceSlices of the NVIDIA DRA driver on this node (``version`` empty: detected)."""
    selector = f"spec.driver={DRA_DRIVER}"
    if node_name:
        selector += f",spec.nodeName={node_name}"
    path = f"/apis/resource.k8s.io/{version}/resourceslices" if version else ""
    return Reflector("resourceslices", path, {"fieldSelector": selector},
                     reduce_slice_devices)


class ApiView:
    """What attribution reads of the API watch: plain, synchronous and cheap.

    Args:
        watcher: the running watcher; ``None`` when the API could not be configured (every
            reflector then reads as down, with nothing known).
        kinds: resources shown in the health metrics when ``watcher`` is ``None``.
    """

    def __init__(self, watcher: Watcher | None, kinds: tuple[str, ...] = ("pods",)) -> None:
        self.watcher = watcher
        self._kinds = kinds
        self._devices: dict[tuple[str, str], SliceDevice] = {}
        self._devices_version = -1

    @property
    def version(self) -> int:
        """Changes whenever anything attribution reads changes."""
        if self.watcher is None:
            return 0
        return sum(r.version for r in self.watcher.reflectors)

    def _store(self, kind: str) -> Reflector | None:
        return self.watcher.by_kind(kind) if self.watcher is not None else None

    def pods(self) -> Mapping[str, PodMeta]:
        """Pods of the node by ``namespace/name``."""
        r = self._store("pods")
        return r.store if r is not None else {}

    def deleted(self) -> Mapping[str, bool]:
        """``namespace/name`` of recently deleted pods."""
        r = self._store("pods")
        return r.deleted if r is not None else {}

    def devices(self) -> Mapping[tuple[str, str], SliceDevice]:
        """DRA devices of ``gpu.nvidia.com`` by (pool, device name)."""
        r = self._store("resourceslices")
        if r is None:
            return {}
        if r.version != self._devices_version:
            self._devices = {(d.pool, d.name): d for devices in r.store.values()
                             for d in devices}
            self._devices_version = r.version
        return self._devices

    def health(self) -> list[tuple[str, bool, float, int]]:
        """(resource, up, seconds since last answer, relists) of each watched resource."""
        if self.watcher is None:
            return [(kind, False, math.inf, 0) for kind in self._kinds]
        return list(self.watcher.health())

    async def close(self) -> None:
        """Stop watching."""
        if self.watcher is not None:
            await self.watcher.close()


async def start_watch(
    environ: Mapping[str, str],
    node_name: str | None,
    *,
    dra: bool,
    deadline: float,
    max_backoff: float = 30.0,
    watch_timeout: float = 300.0,
) -> ApiView:
    """Configure the API client and start watching; never raises (failures are logged)."""
    kinds = ("pods", "resourceslices") if dra else ("pods",)
    try:
        config = load_config(environ)
        config.ssl_context()  # a broken CA or client certificate shows now, once
    except (ApiConfigError, ssl.SSLError, OSError, ValueError) as exc:
        LOG.warning("Kubernetes API not configured (%s): pod labels, pod UIDs, finished-pod "
                    "detection and DRA attribution are off; pod, namespace and container "
                    "labels still come from the kubelet", exc)
        return ApiView(None, kinds)
    if not node_name:
        LOG.warning("NODE_NAME is not set: watching the pods of every node of the cluster "
                    "(set NODE_NAME from spec.nodeName to watch this node's pods only)")
    client = ApiClient(config, deadline=deadline)
    reflectors = [pod_reflector(node_name)]
    if dra:
        reflectors.append(slice_reflector(node_name, ""))
    watcher = Watcher(client, tuple(reflectors), deadline=deadline, max_backoff=max_backoff,
                      watch_timeout=watch_timeout)
    watcher.start()
    return ApiView(watcher, kinds)
