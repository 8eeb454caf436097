"""Container names from a Docker-compatible engine's unix socket (``--container-engine-socket``).

A GPU process in a Docker or Podman container is named by its cgroup file only by the
container's id (:mod:`.cgroup`); the name people know it by lives in the engine. This module
asks the engine's HTTP API over its unix socket (``GET /containers/json``: Docker serves it,
and so does Podman's ``podman system service`` in its Docker-compatible API) and keeps an id
-> name map:

- a known id is answered from the map, without I/O;
- an unknown id triggers one list refresh, but at most one per ``min_refresh_s`` (a process
  of a container that is not the engine's, e.g. a Kubernetes pod's, must not make every cycle
  call the engine), so it answers ``None`` until the next allowed refresh finds it;
- each refresh replaces the map, so removed containers are forgotten;
- the engine being down, slow (past ``timeout_s`` for the whole exchange), answering an error
  status, garbage or more than ``max_bytes`` gives ``None`` for unknown ids and keeps the last
  good map; one warning per outage, one info line when the engine answers again. Nothing
  raises.

Synchronous and stdlib only: one ``Connection: close`` request on an ``AF_UNIX`` socket, read
to its end under one deadline and one size bound, then parsed by ``http.client``. A refresh
is serialised by a lock and blocks its callers at most about ``timeout_s``; the workload
collector asks through :class:`BackgroundNames`, which does that I/O on a thread of its own,
so no GPU worker ever waits for the engine.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import cast

__all__ = ["MAX_RESPONSE_BYTES", "BackgroundNames", "ContainerNames", "EngineError",
           "parse_container_list", "parse_http_answer"]

LOG = logging.getLogger("gpu_exporter.workloads")

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
"""Largest ``/containers/json`` answer read (about 2 KiB per running container)."""

_PATH = "/containers/json"
_REQUEST = (f"GET {_PATH} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
            "Connection: close\r\n\r\n").encode("ascii")
_CHUNK = 64 * 1024


class EngineError(Exception):
    """The engine could not be asked, or its answer was not a container list."""


def parse_container_list(body: bytes) -> dict[str, str]:
    """Map container id -> name from a ``/containers/json`` answer (pure).

    Docker and Podman's compatible API both answer a JSON array of objects with ``Id`` (64 hex
    digits) and ``Names`` (``["/name"]``; the leading slash is dropped). Entries without a
    usable id or name are skipped.

    Raises:
        EngineError: the body is not a JSON array of objects.
    """
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EngineError(f"answer is not JSON ({exc})") from None
    if not isinstance(doc, list):
        raise EngineError(f"answer is a JSON {type(doc).__name__}, not a container list")
    names: dict[str, str] = {}
    for entry in doc:
        if not isinstance(entry, Mapping):
            raise EngineError("container list holds a non-object entry")
        cid, cnames = entry.get("Id"), entry.get("Names")
        if not isinstance(cid, str) or not cid or not isinstance(cnames, list):
            continue
        name = next((n.lstrip("/") for n in cnames if isinstance(n, str) and n.strip("/")), None)
        if name is not None:
            names[cid.lower()] = name
    return names


def parse_http_answer(raw: bytes) -> bytes:
    """The body of a complete raw HTTP/1.x answer that must be ``200`` (pure).

    Content-Length and chunked bodies are both understood (``http.client`` parses them).

    Raises:
        EngineError: another status, or a malformed or truncated answer.
    """
    resp = http.client.HTTPResponse(cast("socket.socket", _Replay(raw)))
    try:
        resp.begin()
        if resp.status != 200:
            raise EngineError(f"GET {_PATH} answered HTTP {resp.status} {resp.reason}")
        return resp.read()
    except (http.client.HTTPException, ValueError) as exc:
        raise EngineError(f"malformed HTTP answer ({type(exc).__name__}: {exc})") from None
    finally:
        resp.close()


class _Replay:
    """Stands in for a socket so that ``http.client`` parses bytes already read."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str) -> io.BytesIO:
        del mode
        return io.BytesIO(self._data)


class ContainerNames:
    """Docker/Podman container id -> name, from the engine's unix socket, cached.

    Args:
        socket_path: the engine's API socket (``/run/docker.sock``, ``/run/podman/podman.sock``).
        timeout_s: bound on one whole list request (connect, send, read).
        min_refresh_s: at most one list request per this many seconds for unknown ids.
        max_bytes: larger answers (headers included) are refused like an outage.
        clock: monotonic seconds for the refresh rate limit (tests pass their own).
    """

    def __init__(
        self,
        socket_path: Path,
        *,
        timeout_s: float = 1.0,
        min_refresh_s: float = 5.0,
        max_bytes: int = MAX_RESPONSE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = str(socket_path)
        self._timeout_s = timeout_s
        self._min_refresh_s = min_refresh_s
        self._max_bytes = max_bytes
        self._clock = clock
        self._names: dict[str, str] = {}
        self._last_try: float | None = None
        self._down = False
        self._lock = threading.Lock()

    def lookup(self, container_id: str) -> str | None:
        """The container's name, or ``None`` when the engine does not (or cannot) name it."""
        cid = container_id.lower()
        name = self._names.get(cid)
        if name is not None:
            return name
        with self._lock:
            name = self._names.get(cid)  # another thread may have refreshed meanwhile
            if name is not None:
                return name
            now = self._clock()
            if self._last_try is not None and now - self._last_try < self._min_refresh_s:
                return None
            self._last_try = now
            self._refresh()
            return self._names.get(cid)

    def prefetch(self) -> None:
        """Read the list now (the refresh limit counts from now), before any id is asked."""
        with self._lock:
            self._last_try = self._clock()
            self._refresh()

    def snapshot(self) -> Mapping[str, str]:
        """The last list read (id -> name); replaced, never changed, by a refresh."""
        return self._names

    def _refresh(self) -> None:
        try:
            names = parse_container_list(self._fetch())
        except (EngineError, OSError) as exc:
            if not self._down:
                self._down = True
                LOG.warning("container engine at %s not usable: %s; container names unavailable "
                            "(processes keep their container ids) until it answers",
                            self._path, str(exc) or type(exc).__name__)
            return
        if self._down:
            self._down = False
            LOG.info("container engine at %s answers again (%d containers)",
                     self._path, len(names))
        self._names = names

    def _fetch(self) -> bytes:
        """One ``GET /containers/json``, bounded in total time and size, returning the body."""
        deadline = time.monotonic() + self._timeout_s
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self._timeout_s)
                sock.connect(self._path)
                sock.sendall(_REQUEST)
                raw = self._read_to_end(sock, deadline)
        except TimeoutError:
            raise EngineError(f"no complete answer within {self._timeout_s:g}s") from None
        return parse_http_answer(raw)

    def _read_to_end(self, sock: socket.socket, deadline: float) -> bytes:
        raw = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise EngineError(f"no complete answer within {self._timeout_s:g}s")
            sock.settimeout(left)
            chunk = sock.recv(_CHUNK)
            if not chunk:
                return bytes(raw)
            raw += chunk
            if len(raw) > self._max_bytes:
                raise EngineError(f"answer exceeds {self._max_bytes} bytes")


class BackgroundNames:
    """Container names for the GPU workers, the engine's I/O on a thread of its own.

    A worker's :meth:`lookup` answers from the last list read and never waits: an id the
    list lacks is handed to the thread, which asks the :class:`ContainerNames` (at most one
    list request per its ``min_refresh_s``, as when asked directly) and publishes the new list
    by replacing it. The list is also read once at start, so containers that already run are
    named from the first cycle; one started later is named from the cycle after its id was
    first asked (or the one after the next allowed refresh). :meth:`close` stops the thread.
    """

    def __init__(self, names: ContainerNames) -> None:
        self._names = names
        self._wanted: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="container-names", daemon=True)
        self._thread.start()

    def snapshot(self) -> Mapping[str, str]:
        """The list the workers answer from (a new object after each refresh)."""
        return self._names.snapshot()

    def lookup(self, container_id: str) -> str | None:
        """The container's name from the last list, ``None`` if it lacks it (then asked)."""
        cid = container_id.lower()
        name = self._names.snapshot().get(cid)
        if name is None and not self._closed:
            with self._lock:
                if cid not in self._wanted:
                    self._wanted.add(cid)
                    self._wake.set()
        return name

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the thread (waiting up to ``timeout_s`` for a request in progress)."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        self._names.prefetch()
        while not self._closed:
            self._wake.wait()
            with self._lock:
                wanted, self._wanted = self._wanted, set()
                self._wake.clear()
            for cid in wanted:
                if self._closed:
                    return
                self._names.lookup(cid)  # a refresh when allowed; never raises
