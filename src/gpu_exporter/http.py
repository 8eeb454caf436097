"""HTTP handlers: serve the pre-rendered snapshot; never touch NVML or the kubelet."""

from __future__ import annotations

import html
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy

from gpu_exporter import __version__
from gpu_exporter.config import RateLimit
from gpu_exporter.listener import SERVER_HEADER
from gpu_exporter.render import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from gpu_exporter.snapshot import SnapshotHolder

if TYPE_CHECKING:
    from gpu_exporter.auth import BasicAuth


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """What the handlers need to know besides the snapshot."""

    collect_interval: float
    headers: tuple[tuple[str, str], ...] = ()


class TokenBucket:
    """``rate_limit``: ``burst`` requests at once, then one per ``interval`` seconds."""

    def __init__(self, limit: RateLimit) -> None:
        """A full bucket."""
        self._interval = limit.interval
        self._burst = float(limit.burst)
        self._tokens = self._burst
        self._stamp = time.monotonic()

    def allow(self) -> bool:
        """Take a token if there is one."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) / self._interval)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@dataclass(slots=True)
class WebState:
    """What the web config file asks of every request; replaced as a whole on reload."""

    auth: BasicAuth | None = None
    headers: tuple[tuple[str, str], ...] = ()
    limiter: TokenBucket | None = None


@dataclass(slots=True)
class WebHolder:
    """The current :class:`WebState` and the counts of refused requests."""

    current: WebState
    unauthorized: int = 0
    rate_limited: int = 0


CHALLENGE = 'Basic realm="gpu-exporter", charset="UTF-8"'
"""``WWW-Authenticate`` value of a 401 answer."""

SNAPSHOT = web.AppKey("snapshot", SnapshotHolder)
HTTP_SETTINGS = web.AppKey("http_settings", HttpSettings)
WEB = web.AppKey("web", WebHolder)


def _q_values(header: str) -> dict[str, float]:
    """Media types (or codings) of an Accept-style header with their q values."""
    result: dict[str, float] = {}
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        if not fields[0]:
            continue
        q = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        key = fields[0].lower()
        result[key] = max(q, result.get(key, 0.0))
    return result


@lru_cache(maxsize=64)  # scrapers send the same few headers; bounded, pure
def wants_openmetrics(accept: str) -> bool:
    """True when the client prefers OpenMetrics to the text format (pure)."""
    q = _q_values(accept)
    om = q.get("application/openmetrics-text", 0.0)
    text = max(q.get("text/plain", 0.0), q.get("*/*", 0.0))
    return om > 0 and om >= text


@lru_cache(maxsize=64)
def accepts_gzip(accept_encoding: str) -> bool:
    """True when the client accepts a gzip-encoded body (pure)."""
    q = _q_values(accept_encoding)
    return q.get("gzip", q.get("*", 0.0)) > 0


def _headers(request: web.Request) -> dict[str, str]:
    headers = {"X-Content-Type-Options": "nosniff", "Server": SERVER_HEADER}
    headers.update(request.app[HTTP_SETTINGS].headers)
    return headers


@lru_cache(maxsize=8)
def _metrics_headers(
    openmetrics: bool, gzipped: bool, extra: tuple[tuple[str, str], ...],  # noqa: FBT001
) -> CIMultiDictProxy[str]:
    """Response headers of one /metrics variant, built once (read-only, shared)."""
    headers = CIMultiDict(extra)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Server"] = SERVER_HEADER
    headers["Content-Type"] = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    headers["Vary"] = "Accept, Accept-Encoding"
    return CIMultiDictProxy(headers)


NEGOTIATED_MAX = 64
"""Distinct (Accept, Accept-Encoding) pairs whose negotiation a /metrics handler keeps."""

Variant = tuple[tuple[bool, bool], CIMultiDictProxy[str]]
"""``((openmetrics, gzipped), response headers)`` of one negotiated /metrics answer."""


def metrics_handler(app: web.Application) -> Handler:
    """``/metrics`` of ``app``: the last snapshot's bytes, in the negotiated format and encoding.

    Per request only what aiohttp needs besides: the snapshot holder and the header sets are
    bound once, and the negotiation of each (Accept, Accept-Encoding) pair is kept (scrapers
    send the same few; at most :data:`NEGOTIATED_MAX` pairs are kept, the others are
    negotiated on each request). ``app`` holds :data:`SNAPSHOT` and :data:`HTTP_SETTINGS`.
    """
    holder = app[SNAPSHOT]
    extra = app[HTTP_SETTINGS].headers
    negotiated: dict[tuple[str, str], Variant] = {}

    def negotiate(key: tuple[str, str]) -> Variant:
        om = wants_openmetrics(key[0])
        gz = accepts_gzip(key[1])
        variant = ((om, gz), _metrics_headers(om, gz, extra))
        if len(negotiated) < NEGOTIATED_MAX:
            negotiated[key] = variant
        return variant

    async def metrics(request: web.Request) -> web.Response:
        """``/metrics``: the last snapshot's bytes, in the negotiated format and encoding."""
        snapshot = holder.current
        if snapshot is None:
            return web.Response(
                status=503, text="no collection has completed yet\n", headers=_headers(request)
            )
        headers = request.headers
        key = (headers.get(hdrs.ACCEPT, ""), headers.get(hdrs.ACCEPT_ENCODING, ""))
        variant = negotiated.get(key) or negotiate(key)
        # rendered once per cycle and variant
        return web.Response(body=snapshot.variant(variant[0]), headers=variant[1])

    return metrics


LIVENESS_MIN_STALL_S = 120.0
"""A published snapshot older than max(10 intervals, this) means the collection loop stalled."""


def stall_limit(collect_interval: float) -> float:
    """Snapshot age beyond which ``/health`` fails (pure)."""
    return max(10 * collect_interval, LIVENESS_MIN_STALL_S)


async def health(request: web.Request) -> web.Response:
    """``/health``: liveness.

    200 ``OK`` while the collection loop publishes; 503 once the last snapshot is older than
    :func:`stall_limit` (each cycle is bounded per GPU, so only a broken loop gets there and a
    restart is the remedy). Before the first snapshot it is 200: NVML may be slow to start.
    """
    snapshot = request.app[SNAPSHOT].current
    headers = _headers(request)
    if snapshot is not None:
        age = time.monotonic() - snapshot.monotonic
        limit = stall_limit(request.app[HTTP_SETTINGS].collect_interval)
        if age > limit:
            return web.Response(
                status=503, text=f"KO: no collection for {age:.0f}s (limit {limit:.0f}s)\n",
                headers=headers,
            )
    return web.Response(text="OK", headers=headers)


READY_MIN_STALE_S = 30.0
"""The least snapshot age at which ``/ready`` fails, whatever the interval.

A cycle takes time of its own (tens of milliseconds per GPU, up to the per-GPU deadline of
10 s when a GPU hangs), so at short intervals (``-c 1`` is 1 ms) three intervals are shorter
than one cycle and the exporter would never be ready. Three worst-case cycles: 30 s.
"""


def ready_limit(collect_interval: float) -> float:
    """Snapshot age beyond which ``/ready`` fails (pure): max(3 intervals, 30 s)."""
    return max(3 * collect_interval, READY_MIN_STALE_S)


async def ready(request: web.Request) -> web.Response:
    """``/ready``: 503 until the first snapshot and when it is older than :func:`ready_limit`."""
    snapshot = request.app[SNAPSHOT].current
    headers = _headers(request)
    if snapshot is None:
        return web.Response(status=503, text="not ready: no snapshot yet\n", headers=headers)
    age = time.monotonic() - snapshot.monotonic
    limit = ready_limit(request.app[HTTP_SETTINGS].collect_interval)
    if age > limit:
        return web.Response(
            status=503,
            text=f"not ready: snapshot is {age:.1f}s old (limit {limit:.1f}s)\n",
            headers=headers,
        )
    return web.Response(text=f"ready: snapshot {age:.1f}s old\n", headers=headers)


_LANDING = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>gpu-exporter</title></head>
<body><h1>gpu-exporter {version}</h1>
<p>Prometheus exporter for NVIDIA GPUs, compatible with dcgm-exporter.
Metrics are collected every {interval} s and served from a pre-rendered snapshot.</p>
<ul><li><a href="metrics">/metrics</a></li><li><a href="health">/health</a> (liveness)</li>
<li><a href="ready">/ready</a> (readiness)</li></ul></body></html>
"""


async def landing(request: web.Request) -> web.Response:
    """``/``: a small page with links."""
    page = _LANDING.format(
        version=html.escape(__version__),
        interval=f"{request.app[HTTP_SETTINGS].collect_interval:g}",
    )
    return web.Response(text=page, content_type="text/html", headers=_headers(request))


Handler = Callable[[web.Request], Coroutine[Any, Any, web.Response]]


def _not_found(paths: frozenset[str]) -> Handler:
    async def not_found(request: web.Request) -> web.Response:
        """Any other path or method: 404 or 405 with our headers (no aiohttp version)."""
        if request.path in paths:
            return web.Response(status=405, text="405: Method Not Allowed\n",
                                headers={**_headers(request), "Allow": "GET, HEAD"})
        return web.Response(status=404, text="404: Not Found\n", headers=_headers(request))

    return not_found


@web.middleware
async def web_config_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    """Apply ``rate_limit``, the configured headers and ``basic_auth_users``.

    In the toolkit's order: a limited request gets 429, then every path (``/health`` and
    ``/ready`` included) needs credentials when users are set.
    """
    holder = request.app[WEB]
    state = holder.current
    if state.limiter is not None and not state.limiter.allow():
        holder.rate_limited += 1
        return web.Response(status=429, text="429: Too Many Requests\n",
                            headers={**_headers(request), **dict(state.headers)})
    if state.auth is not None and not await state.auth.check(
        request.headers.get("Authorization", "")
    ):
        holder.unauthorized += 1
        return web.Response(
            status=401, text="401: Unauthorized\n",
            headers={**_headers(request), **dict(state.headers),
                     "WWW-Authenticate": CHALLENGE},
        )
    response = await handler(request)
    if state.headers:
        response.headers.update(state.headers)
    return response


async def metrics(request: web.Request) -> web.Response:
    """``/metrics`` (:func:`add_routes` registers :func:`metrics_handler` of the app instead)."""
    return await metrics_handler(request.app)(request)


ROUTES: tuple[tuple[str, Handler], ...] = (
    ("/metrics", metrics),
    ("/health", health),
    ("/ready", ready),
    ("/", landing),
)
PROBE_ROUTES: tuple[tuple[str, Handler], ...] = (("/health", health), ("/ready", ready))
"""What the probe listener serves (``--web-probe-address``): liveness and readiness only."""


def add_routes(app: web.Application, routes: tuple[tuple[str, Handler], ...] = ROUTES) -> None:
    """Register the GET routes, and a catch-all answering 404/405."""
    for path, handler in routes:
        app.router.add_get(path, metrics_handler(app) if handler is metrics else handler)
    app.router.add_route("*", "/{tail:.*}", _not_found(frozenset(p for p, _ in routes)))
