"""The HTTP(S) listener: connection limits, timeouts, TLS per connection, quiet error logs.

aiohttp serves the requests; this module decides which connections it gets to see. Every
accepted socket is wrapped in a :class:`_Guard` protocol that

* counts it against :attr:`Limits.max_connections` (kept below the process's descriptor
  limit, so ``accept()`` never fails with EMFILE). At the limit, the connection that has
  been silent longest is closed to make room when it has been silent for
  :data:`EVICT_AFTER_S`; otherwise the new one is closed at once (a few microseconds);
* closes a connection whose request head is not complete within ``read_timeout`` (slow or
  silent clients, including TLS handshakes), and one whose response has been blocked on a
  client that does not read for ``write_timeout``; idle keep-alive connections are closed by
  aiohttp after ``idle_timeout``;
* does the TLS handshake itself (``loop.start_tls``) with the context current at accept
  time, so a reloaded certificate applies to the next connection, and checks
  ``client_allowed_sans`` on the verified client certificate before any HTTP is read.

Errors of malformed requests and of the event loop (``accept()`` failures included) go to
:class:`QuietLog`: counted by kind, logged as one line without traceback, at most
:data:`LOG_LINES_PER_MINUTE` lines a minute plus one summary of what was left out.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

if TYPE_CHECKING:
    import ssl

log = logging.getLogger(__name__)

SERVER_HEADER = "gpu-exporter"
"""``Server`` header of every response (no version: it helps nobody but an attacker)."""

EVICT_AFTER_S = 1.0
"""At the connection limit, a connection silent this long may be closed for a new one."""

SWEEP_S = 1.0
"""How often timeouts are checked."""

LOG_LINES_PER_MINUTE = 5
"""Request-error log lines per minute at most; the rest are counted only."""

ACCEPT_BATCH = 128
"""Listen backlog; asyncio also accepts up to this many sockets in one go before any of them
reaches :meth:`Listener.admit`, so they count against the descriptor reserve."""

ACCEPT_BATCHES_IN_FLIGHT = 4
"""Accept batches whose sockets can be open before the first is closed: asyncio accepts a batch
in one loop iteration, makes each socket's transport in a task (the next iteration), calls
``connection_made`` in the one after, where a guard at the limit closes it, and the socket is
closed one iteration later still; the listening socket may be read in each of them (seen as
EMFILE in the soak test when only one batch was reserved)."""

DESCRIPTOR_RESERVE = 128 + ACCEPT_BATCHES_IN_FLIGHT * ACCEPT_BATCH
"""Descriptors kept free: 128 for everything but client connections (NVML, files, kubelet,
threads) and the accept batches in flight."""

DEFAULT_MAX_CONNECTIONS = 1024


def max_connections(configured: int, soft_limit: int | None = None) -> int:
    """The connection cap: ``configured`` (0: automatic) bounded by the descriptor limit."""
    if soft_limit is None:
        soft_limit, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = (soft_limit - DESCRIPTOR_RESERVE if soft_limit != resource.RLIM_INFINITY
            else DEFAULT_MAX_CONNECTIONS)
    room = max(room, 8)
    wanted = configured or DEFAULT_MAX_CONNECTIONS
    return min(wanted, room)


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-listener limits (seconds, connections)."""

    read_timeout: float = 10.0
    write_timeout: float = 30.0
    max_connections: int = DEFAULT_MAX_CONNECTIONS


@dataclass
class TlsState:
    """The TLS settings new connections use; replaced as a whole on reload."""

    context: ssl.SSLContext
    allowed: Callable[[dict[str, Any] | None], bool] | None = None


@dataclass
class ServingStats:
    """Counters of one process's listeners, read into ``gpu_exporter_http_*`` metrics."""

    open: int = 0
    limit: int = 0
    closed: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


class QuietLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger for aiohttp's server errors: counted, one line each, rate-limited.

    Anything at WARNING or above is counted under a kind (``bad_request`` for an
    ``HttpProcessingError``, else the exception's class name or ``error``) and logged
    without traceback while fewer than :data:`LOG_LINES_PER_MINUTE` lines went out this
    minute; when a minute ends with lines left out, one line says how many.
    """

    def __init__(self, logger: logging.Logger, stats: ServingStats) -> None:
        """Log through ``logger``; count into ``stats.errors``."""
        super().__init__(logger, {})
        self.stats = stats
        self._window = 0.0
        self._lines = 0
        self._dropped = 0

    def log(
        self, level: int, msg: object, *args: object, exc_info: object = None,
        **_kwargs: object,
    ) -> None:
        """Count and maybe log one line (never a traceback).

        aiohttp logs a non-HTTP first request (TLS to the plain port, a scanner) at DEBUG with
        its exception: counted too, never logged.
        """
        exc = exc_info
        if exc is True:
            exc = sys.exc_info()[1]
        if level < logging.WARNING and not isinstance(exc, BaseException):
            return
        kind = _kind(exc if isinstance(exc, BaseException) else None)
        self.stats.errors[kind] += 1
        if level < logging.WARNING:
            return
        now = time.monotonic()
        if now - self._window >= 60.0:  # one-minute windows
            if self._dropped:
                self.logger.warning("%d more request errors in the last minute were not "
                                    "logged (gpu_exporter_http_errors_total counts them)",
                                    self._dropped)
            self._window, self._lines, self._dropped = now, 0, 0
        if self._lines >= LOG_LINES_PER_MINUTE:
            self._dropped += 1
            return
        self._lines += 1
        text = str(msg) % args if args else str(msg)
        detail = _detail(exc if isinstance(exc, BaseException) else None)
        self.logger.log(level, "%s%s", text[:200], f": {detail}" if detail else "")

    def loop_exception(self, _loop: asyncio.AbstractEventLoop, context: Mapping[str, Any]) -> None:
        """An event loop exception handler routed through the same limiter."""
        self.log(logging.ERROR, str(context.get("message", "event loop error")),
                 exc_info=context.get("exception"))


def _kind(exc: BaseException | None) -> str:
    if isinstance(exc, HttpProcessingError):
        return "bad_request"
    if isinstance(exc, OSError):
        return "os_error"
    return "error"


def _detail(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    text = str(exc).replace("\n", " ").replace("\r", " ")
    return f"{type(exc).__name__}: {text[:160]!r}"


class _Handler(RequestHandler):
    """aiohttp's request handler with a versionless ``Server`` header on its error pages."""

    __slots__ = ()

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The error page aiohttp would send, with our ``Server`` header."""
        response = super().handle_error(request, status, exc, message)
        response.headers["Server"] = SERVER_HEADER
        return response


class _Guard(asyncio.Protocol):
    """One accepted connection: limits and TLS around an aiohttp request handler."""

    __slots__ = ("_early", "_inner", "_listener", "_raw", "_tail", "connected", "head_since",
                 "last_active", "paused_since")

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._inner: RequestHandler | None = None
        self._raw: asyncio.Transport | None = None
        self._tail = b""
        self._early: list[bytes] | None = None
        self.connected = False
        self.head_since: float | None = None
        self.last_active = 0.0
        self.paused_since: float | None = None

    # -- asyncio protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Count the connection; start TLS or hand it to aiohttp."""
        assert isinstance(transport, asyncio.Transport)  # noqa: S101  # stream sockets only
        self._raw = transport
        now = self._listener.loop.time()
        self.head_since = self.last_active = now
        if not self._listener.admit(self):
            transport.abort()
            return
        tls = self._listener.tls
        if tls is None:
            self._connect(transport)
            return
        transport.pause_reading()  # the ClientHello goes to the TLS layer, not to us
        self._early = []
        self._listener.spawn(self._handshake(transport, tls))

    async def _handshake(self, raw: asyncio.Transport, tls: TlsState) -> None:
        listener = self._listener
        try:
            secure = await listener.loop.start_tls(
                raw, self, tls.context, server_side=True,
                ssl_handshake_timeout=listener.limits.read_timeout,
            )
        except Exception:  # noqa: BLE001  # any failed handshake ends this connection only
            listener.count_closed("tls_handshake")
            raw.abort()
            listener.forget(self)
            return
        if secure is None or raw.is_closing():
            listener.forget(self)
            return
        if tls.allowed is not None and not tls.allowed(secure.get_extra_info("peercert")):
            listener.count_closed("client_san")
            secure.abort()
            listener.forget(self)
            return
        self._connect(secure)
        early, self._early = self._early or [], None
        for chunk in early:
            self._feed(chunk)

    def _connect(self, transport: asyncio.Transport) -> None:
        self._inner = self._listener.make_handler()
        self.connected = True
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        """Track the request head, then pass the bytes to aiohttp."""
        if self._early is not None:  # TLS data before the handler was connected
            self._early.append(data)
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        listener = self._listener
        now = listener.loop.time()
        self.last_active = now
        listener.touch(self)
        tail = self._tail
        pos = data.rfind(b"\r\n\r\n")
        end = pos + 4 if pos >= 0 else -1  # just past the last request head in data
        if end < 0 and tail:
            pos = (tail + data[:3]).find(b"\r\n\r\n")
            end = pos - len(tail) + 4 if pos >= 0 else -1
        if end >= 0:  # a head is complete: waiting for nothing, or for the next one's end
            self.head_since = now if end < len(data) else None
        elif self.head_since is None:
            self.head_since = now  # the first bytes of a new request
        self._tail = data[-3:] if len(data) >= 3 else (tail + data)[-3:]
        inner = self._inner
        if inner is not None:
            inner.data_received(data)

    def eof_received(self) -> bool | None:
        """Half-close: aiohttp decides."""
        if self._inner is not None and self.connected:
            self._inner.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Uncount; tell aiohttp."""
        self._listener.forget(self)
        if self._inner is not None and self.connected:
            self.connected = False
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        """The client is not reading fast enough: start the write clock."""
        self.paused_since = self._listener.loop.time()
        if self._inner is not None and self.connected:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        """The client caught up."""
        self.paused_since = None
        if self._inner is not None and self.connected:
            self._inner.resume_writing()

    # -- limits ----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection now (no graceful TLS close: the client misbehaved)."""
        if self._raw is not None:
            self._raw.abort()


class Listener:
    """The connections of one listening socket and their limits."""

    def __init__(self, runner: web.AppRunner, limits: Limits, stats: ServingStats,
                 handler_kwargs: Mapping[str, Any], tls: TlsState | None = None) -> None:
        """Serve ``runner``'s application; ``handler_kwargs`` are aiohttp handler settings."""
        self._runner = runner
        self.limits = limits
        self.stats = stats
        self.tls = tls
        self._kwargs = dict(handler_kwargs)
        self._conns: OrderedDict[_Guard, None] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()

    def make_handler(self) -> RequestHandler:
        """A new aiohttp request handler bound to the runner's server."""
        server = self._runner.server
        if server is None:  # pragma: no cover  # runner.setup() runs before any listener
            msg = "listener used before the runner was set up"
            raise RuntimeError(msg)
        return _Handler(server, loop=self.loop, **self._kwargs)

    def protocol(self) -> _Guard:
        """The protocol factory for ``loop.create_server``."""
        return _Guard(self)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a per-connection task, kept referenced until it ends."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def admit(self, guard: _Guard) -> bool:
        """Count a new connection; make room or refuse it at the limit."""
        conns = self._conns
        if len(conns) >= self.limits.max_connections:
            oldest = next(iter(conns))
            if (guard.last_active - oldest.last_active < EVICT_AFTER_S
                    or oldest.paused_since is not None):
                self.count_closed("limit")
                return False
            self.count_closed("evicted")
            self.forget(oldest)
            oldest.close()
        conns[guard] = None
        self.stats.open += 1
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(SWEEP_S, self._sweep)
        return True

    def touch(self, guard: _Guard) -> None:
        """``guard`` just received data: it is the most recently active."""
        try:  # noqa: SIM105  # per request: no context manager object (0.6 us)
            self._conns.move_to_end(guard)
        except KeyError:
            pass

    def forget(self, guard: _Guard) -> None:
        """Uncount a connection (idempotent)."""
        if self._conns.pop(guard, False) is None:
            self.stats.open -= 1

    def count_closed(self, reason: str) -> None:
        """Count a connection closed by a limit."""
        self.stats.closed[reason] += 1

    def _sweep(self) -> None:
        self._sweeper = None
        now = self.loop.time()
        read_limit = now - self.limits.read_timeout
        write_limit = now - self.limits.write_timeout
        expired = []
        for guard in self._conns:
            if guard.head_since is not None and guard.head_since < read_limit:
                expired.append((guard, "tls_handshake" if self.tls is not None and
                                not guard.connected else "read_timeout"))
            elif guard.paused_since is not None and guard.paused_since < write_limit:
                expired.append((guard, "write_timeout"))
        for guard, reason in expired:
            self.count_closed(reason)
            self.forget(guard)
            guard.close()
        if self._conns:
            self._sweeper = self.loop.call_later(SWEEP_S, self._sweep)

    def close_all(self) -> None:
        """Stop the sweeper and close every connection (shutdown)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for task in list(self._tasks):
            task.cancel()
        for guard in list(self._conns):
            if not guard.connected:
                self.forget(guard)
                guard.close()


class GuardedSite(web.BaseSite):
    """An aiohttp site whose connections go through a :class:`Listener`."""

    __slots__ = ("_host", "_listener", "_port", "_sock")

    def __init__(self, runner: web.AppRunner, listener: Listener, *, host: str | None = None,
                 port: int = 0, sock: socket.socket | None = None,
                 shutdown_timeout: float = 5.0) -> None:
        """Listen on ``host:port``, or on ``sock`` (systemd socket activation)."""
        super().__init__(runner, shutdown_timeout=shutdown_timeout, backlog=ACCEPT_BATCH)
        self._listener = listener
        self._host = host
        self._port = port
        self._sock = sock

    @property
    def name(self) -> str:
        """``scheme://host:port``."""
        scheme = "https" if self._listener.tls is not None else "http"
        return f"{scheme}://{self._host or '0.0.0.0'}:{self._port}"  # noqa: S104

    async def start(self) -> None:
        """Create the listening server."""
        await super().start()
        loop = asyncio.get_running_loop()
        if self._sock is not None:
            self._server = await loop.create_server(
                self._listener.protocol, sock=self._sock, backlog=self._backlog
            )
        else:
            self._server = await loop.create_server(
                self._listener.protocol, self._host, self._port, backlog=self._backlog,
                reuse_address=True,
            )

    async def stop(self) -> None:
        """Stop listening; close connections still in their TLS handshake."""
        self._listener.close_all()
        await super().stop()
