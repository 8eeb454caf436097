"""The live web configuration: built from the file at start, re-read when it changes.

The web config file and the certificate, key and CA files it names are checked every
:data:`CHECK_S` seconds (and at once on SIGHUP). When any changed, the whole configuration is
read again and, only if all of it is valid, swapped in: new connections get the new
certificate and client CA, every request the new users, headers and rate limit. A bad edit
(a half-written key, a typo) keeps the last good configuration, logs one line naming the
file and the problem, and sets ``gpu_exporter_web_config_last_reload_successful`` to 0 until
a good edit. TLS cannot be switched on or off without a restart (the listener's scheme
would change under its clients): such an edit is refused the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from gpu_exporter.config import WebConfig
from gpu_exporter.errors import WebConfigError
from gpu_exporter.http import TokenBucket, WebHolder, WebState
from gpu_exporter.listener import Listener, ServingStats, TlsState
from gpu_exporter.model import Native

log = logging.getLogger(__name__)

CHECK_S = 2.0
"""Seconds between checks of the web config file and the files it names."""

Stamp = tuple[tuple[str, int, int, int], ...]


def tls_state(config: WebConfig) -> TlsState | None:
    """The TLS context of ``config`` (reads the PEM files); raises WebConfigError."""
    if config.tls is None:
        return None
    # Imported here, as below: only a run with a web config file loads the parser.
    from gpu_exporter.webconfig import sans_check, ssl_context  # noqa: PLC0415

    return TlsState(ssl_context(config.tls), sans_check(config.tls.client_allowed_sans))


def web_state(config: WebConfig, previous: WebState | None = None) -> WebState:
    """Per-request settings of ``config``; the basic-auth cache survives an unchanged list."""
    auth = None
    if config.basic_auth_users:
        # Imported here: bcrypt is loaded only when the web config lists users.
        from gpu_exporter.auth import BasicAuth  # noqa: PLC0415

        old = previous.auth if previous is not None else None
        auth = old if old is not None and old.users == config.basic_auth_users else \
            BasicAuth(config.basic_auth_users)
    limiter = TokenBucket(config.rate_limit) if config.rate_limit is not None else None
    return WebState(auth=auth, headers=config.headers, limiter=limiter)


def stamp(config: WebConfig) -> Stamp:
    """(path, mtime, size, inode) of the web config file and the files it names."""
    paths: list[Path] = []
    if config.path is not None:
        paths.append(config.path)
    if config.tls is not None:
        paths.extend(config.tls.files)
    result = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:  # noqa: PERF203  # a few files, checked every few seconds
            result.append((str(path), -1, -1, -1))
        else:
            result.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(result)


@dataclass
class _Loaded:
    config: WebConfig
    tls: TlsState | None
    stamp: Stamp


def _load(path: Path, *, tls: bool) -> _Loaded:
    from gpu_exporter.webconfig import load_web_config  # noqa: PLC0415

    config = load_web_config(path)
    if (config.tls is not None) != tls:
        msg = f"{path}: TLS cannot be turned {'on' if config.tls else 'off'} without a restart"
        raise WebConfigError(msg)
    before = stamp(config)
    return _Loaded(config, tls_state(config), before)


class WebReloader:
    """Watches the web config and its files; swaps in a new configuration when valid."""

    def __init__(self, config: WebConfig, holder: WebHolder,
                 listeners: list[Listener]) -> None:
        """Start from the configuration loaded at start-up."""
        self.config = config
        self.holder = holder
        self.listeners = listeners
        self.current_stamp = stamp(config)
        self.failed_stamp: Stamp | None = None
        self.last_successful = True
        self.success_time = time.time()
        self._requested = False
        self._wake = asyncio.Event()

    def request(self) -> None:
        """SIGHUP: check now, even when nothing seems to have changed."""
        self._requested = True
        self._wake.set()

    async def run(self) -> None:
        """Check every :data:`CHECK_S` seconds until cancelled."""
        path = self.config.path
        if path is None:
            return
        while True:
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), CHECK_S)
            self._wake.clear()
            await self.check(path)

    async def check(self, path: Path) -> bool:
        """Reload when a file changed (or a reload was requested); True when swapped."""
        now_stamp = stamp(self.config)
        forced, self._requested = self._requested, False
        if not forced and (now_stamp in (self.current_stamp, self.failed_stamp)):
            return False
        try:
            loaded = await asyncio.to_thread(_load, path, tls=self.config.tls is not None)
        except WebConfigError as exc:
            if self.failed_stamp != now_stamp or forced:
                log.error("web config not reloaded, keeping the last good one: %s", exc)  # noqa: TRY400
            self.failed_stamp = now_stamp
            self.last_successful = False
            return False
        previous = self.holder.current
        self.holder.current = web_state(loaded.config, previous)
        if previous.auth is not None and previous.auth is not self.holder.current.auth:
            previous.auth.close()
        for listener in self.listeners:
            if listener.tls is not None and loaded.tls is not None:
                listener.tls = loaded.tls
        self.config = loaded.config
        self.current_stamp = loaded.stamp
        self.failed_stamp = None
        self.last_successful = True
        self.success_time = time.time()
        log.info("web config %s reloaded", path)
        return True


CLOSE_REASONS = ("limit", "evicted", "read_timeout", "write_timeout", "tls_handshake",
                 "client_san")
"""Why the listener closes a connection (``reason`` label; all present from the start)."""


@dataclass
class Serving:
    """Serving counters and the web config state, read into metrics once per cycle."""

    stats: ServingStats
    web: WebHolder
    reloader: WebReloader | None = field(default=None)
    # the counters natives() last read, and what it built from them (reused while the same)
    _last: tuple[object, list[Native]] | None = field(default=None, init=False, repr=False,
                                                      compare=False)

    def natives(self) -> list[Native]:
        """``gpu_exporter_http_*`` and ``gpu_exporter_web_config_*`` samples.

        Called once per cycle; while no counter moved, last cycle's samples are reused.
        """
        stats = self.stats
        web_holder = self.web
        reloader = self.reloader
        key = (stats.open, stats.limit, tuple(stats.closed.items()),
               tuple(stats.errors.items()), web_holder.unauthorized, web_holder.rate_limited,
               None if reloader is None else (reloader.last_successful, reloader.success_time))
        last = self._last
        if last is not None and last[0] == key:
            return list(last[1])
        result = self._build()
        self._last = (key, result)
        return list(result)

    def _build(self) -> list[Native]:
        stats = self.stats
        result = [
            Native("gpu_exporter_http_connections", float(stats.open)),
            Native("gpu_exporter_http_connections_max", float(stats.limit)),
        ]
        result.extend(
            Native("gpu_exporter_http_connections_closed_total", float(stats.closed[reason]),
                   (("reason", reason),))
            for reason in (*CLOSE_REASONS, *sorted(set(stats.closed) - set(CLOSE_REASONS)))
        )
        result.extend(
            Native("gpu_exporter_http_errors_total", float(stats.errors[kind]),
                   (("kind", kind),))
            for kind in sorted({"bad_request", *stats.errors})
        )
        result.append(Native("gpu_exporter_http_requests_refused_total",
                             float(self.web.unauthorized), (("reason", "unauthorized"),)))
        result.append(Native("gpu_exporter_http_requests_refused_total",
                             float(self.web.rate_limited), (("reason", "rate_limited"),)))
        reloader = self.reloader
        if reloader is not None:
            result.append(Native("gpu_exporter_web_config_last_reload_successful",
                                 1.0 if reloader.last_successful else 0.0))
            result.append(Native("gpu_exporter_web_config_last_reload_success_timestamp_seconds",
                                 reloader.success_time))
        return result


SERVING = web.AppKey("serving", Serving)
