"""Container names from a real HTTP server on a unix socket, answering as Docker and Podman do."""

from __future__ import annotations

import json
import logging
import socketserver
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from gpu_exporter.workloads.engine import (
    BackgroundNames,
    ContainerNames,
    EngineError,
    parse_container_list,
    parse_http_answer,
)

CID_A = "ed6979fc57844dda4f664b2677af4bb5c1da4fb7e6c59fdee164bdc8110ff783"
CID_B = "b2" * 32
CID_C = "c3" * 32

# The body podman 4.3.1's `podman system service` answered to GET /containers/json on this
# project's CI machine (one running container named "alpha", started with `podman run -d --name
# alpha ... /bin/sleep 300`), byte for byte; it came with "Content-Length: 739".
PODMAN_4_3_1_BODY = (
    b'[{"Id":"ed6979fc57844dda4f664b2677af4bb5c1da4fb7e6c59fdee164bdc8110ff783","Names":["/alpha"]'
    b',"Image":"localhost/sleep:t","ImageID":"sha256:89713da899c6326fb325dcbb3e91b95b582594313f46b4'
    b'4b3121cdd5ee93580f","Command":"/bin/sleep 300","Created":1796452571,"Ports":[],"Labels":{},"S'
    b'tate":"running","Status":"Up 8 seconds","NetworkSettings":{"Networks":{"podman":{"IPAMConfig"'
    b':null,"Links":null,"Aliases":["ed6979fc5784"],"NetworkID":"podman","EndpointID":"","Gateway":'
    b'"10.88.0.1","IPAddress":"10.88.0.231","IPPrefixLen":16,"IPv6Gateway":"","GlobalIPv6Address":'
    b'"","GlobalIPv6PrefixLen":0,"MacAddress":"52:40:b8:3f:bb:6f","DriverOpts":null}}},"Mounts":[],'
    b'"Name":"","Config":null,"NetworkingConfig":null,"Platform":null,"AdjustCPUShares":false}]\n'
)


def _docker_entry(cid: str, name: str) -> dict[str, object]:
    """A container as Docker Engine API v1.4x lists it (fields from its /containers/json docs)."""
    return {
        "Id": cid, "Names": [f"/{name}"], "Image": "ubuntu:24.04", "ImageID": "sha256:" + "0" * 64,
        "Command": "sleep infinity", "Created": 1733380000, "State": "running",
        "Status": "Up 2 minutes", "Ports": [], "Labels": {"com.example": "x"},
        "HostConfig": {"NetworkMode": "default"}, "Mounts": [],
    }


# --- a Docker-compatible engine on a unix socket -------------------------------------------------

Answer = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Engine:
    """A test engine: ``answer`` writes the reply; ``requests`` counts GET /containers/json."""

    path: Path
    answer: Answer
    requests: int = 0
    release: threading.Event = field(default_factory=threading.Event)


def _json(body: bytes) -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return answer


def _chunked(body: bytes, size: int = 100) -> Answer:
    """Go's net/http streams an encoder's output this way (Transfer-Encoding: chunked)."""
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for start in range(0, len(body), size):
            piece = body[start:start + size]
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        handler.wfile.write(b"0\r\n\r\n")
    return answer


def _docker(*containers: tuple[str, str]) -> Answer:
    return _chunked(json.dumps([_docker_entry(c, n) for c, n in containers]).encode() + b"\n")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        engine = self.server.engine
        if self.path != "/containers/json":
            self.send_error(404)
            return
        engine.requests += 1
        engine.answer(self)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib's name)
        pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    engine: Engine

    def handle_error(self, request: object, client_address: object) -> None:
        # The exporter hanging up mid-answer (an oversized or slow answer) is what some tests
        # want: a broken pipe on this side is expected there. Anything else is reported.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # A short directory: a unix socket path must stay under 108 bytes, pytest's tmp_path may not.
    with tempfile.TemporaryDirectory(prefix="gpx-eng-") as name:
        yield Path(name)


def _start(path: Path, answer: Answer) -> tuple[Engine, Callable[[], None]]:
    engine = Engine(path, answer)
    server = _Server(str(path), _Handler)
    server.engine = engine
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()

    def stop() -> None:
        engine.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
        path.unlink(missing_ok=True)
    return engine, stop


@pytest.fixture
def serve(sock_dir: Path) -> Iterator[Callable[[Answer], Engine]]:
    stops: list[Callable[[], None]] = []

    def start(answer: Answer) -> Engine:
        engine, stop = _start(sock_dir / "engine.sock", answer)
        stops.append(stop)
        return engine
    try:
        yield start
    finally:
        for stop in stops:
            stop()


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "gpu_exporter.workloads" and r.levelno == logging.WARNING]


# --- answers as the engines give them ------------------------------------------------------------

def test_podman_answer_names_its_container(serve: Callable[[Answer], Engine]) -> None:
    engine = serve(_json(PODMAN_4_3_1_BODY))
    names = ContainerNames(engine.path)
    assert names.lookup(CID_A) == "alpha"
    assert names.lookup(CID_A.upper()) == "alpha"  # ids are hex; case does not matter
    assert engine.requests == 1  # the second answer came from the cache


def test_docker_answer_chunked_names_every_listed_container(
    serve: Callable[[Answer], Engine],
) -> None:
    engine = serve(_docker((CID_B, "trainer"), (CID_C, "notebook")))
    names = ContainerNames(engine.path)
    assert names.lookup(CID_B) == "trainer"
    assert names.lookup(CID_C) == "notebook"  # from the same list: no second request
    assert engine.requests == 1


def test_unknown_id_refreshes_at_most_once_per_min_refresh(
    serve: Callable[[Answer], Engine],
) -> None:
    engine = serve(_docker((CID_B, "trainer")))
    clock = Clock()
    names = ContainerNames(engine.path, min_refresh_s=5.0, clock=clock)
    assert names.lookup(CID_C) is None
    assert engine.requests == 1
    for step in range(49):  # a cycle every 0.1 s for 4.9 s: the unknown id asks nothing
        clock.now += 0.1
        assert names.lookup(CID_C) is None, step
        assert names.lookup(CID_B) == "trainer"  # known ids never wait for the limit
    assert engine.requests == 1
    engine.answer = _docker((CID_B, "trainer"), (CID_C, "late"))  # the container appears
    clock.now += 0.1 + 1e-6
    assert names.lookup(CID_C) == "late"
    assert engine.requests == 2


def test_a_refresh_forgets_removed_containers(serve: Callable[[Answer], Engine]) -> None:
    engine = serve(_docker((CID_B, "old")))
    clock = Clock()
    names = ContainerNames(engine.path, clock=clock)
    assert names.lookup(CID_B) == "old"
    engine.answer = _docker((CID_C, "new"))
    clock.now += 5
    assert names.lookup(CID_C) == "new"
    assert names.lookup(CID_B) is None  # gone from the engine, gone from the map


# --- outages: None, the last good map kept, one warning per outage ---------------------------

def test_engine_down_then_up_logs_once_per_outage(
    sock_dir: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = sock_dir / "engine.sock"
    clock = Clock()
    names = ContainerNames(path, timeout_s=5.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="gpu_exporter.workloads"):
        for _ in range(3):  # no socket file at all
            assert names.lookup(CID_B) is None
            clock.now += 5
        path.touch()  # a plain file where the socket should be
        assert names.lookup(CID_B) is None
        path.unlink()
        clock.now += 5
        engine, stop = _start(path, _docker((CID_B, "trainer")))
        try:
            assert names.lookup(CID_B) == "trainer"
        finally:
            stop()
        clock.now += 5
        assert names.lookup(CID_C) is None  # down again: a second outage, a second warning
        assert names.lookup(CID_B) == "trainer"  # the last good map still answers
    warnings = _warnings(caplog)
    assert len(warnings) == 2, warnings
    assert str(path) in warnings[0]
    assert "names unavailable" in warnings[0]
    infos = [r.getMessage() for r in caplog.records
             if r.name == "gpu_exporter.workloads" and r.levelno == logging.INFO]
    assert infos == [f"container engine at {path} answers again (1 containers)"]
    assert engine.requests == 1


def _stall(handler: BaseHTTPRequestHandler) -> None:
    """Accept the request, answer nothing until the test ends (bounded)."""
    handler.server.engine.release.wait(timeout=60)  # type: ignore[attr-defined]


def _drip(handler: BaseHTTPRequestHandler) -> None:
    """Headers, then a byte every 50 ms: each read succeeds, the whole never ends in time."""
    handler.send_response(200)
    handler.send_header("Content-Length", "100000")
    handler.end_headers()
    release: threading.Event = handler.server.engine.release  # type: ignore[attr-defined]
    for _ in range(1200):  # at most 60 s
        if release.wait(timeout=0.05):
            return
        try:
            handler.wfile.write(b" ")
            handler.wfile.flush()
        except OSError:
            return


@pytest.mark.parametrize("answer", [_stall, _drip], ids=["stalled", "dripping"])
def test_slow_engine_gives_none_within_its_deadline(
    serve: Callable[[Answer], Engine], answer: Answer, caplog: pytest.LogCaptureFixture,
) -> None:
    engine = serve(answer)
    names = ContainerNames(engine.path, timeout_s=0.5)
    with caplog.at_level(logging.WARNING, logger="gpu_exporter.workloads"):
        assert names.lookup(CID_B) is None
    assert engine.requests == 1
    warnings = _warnings(caplog)
    assert len(warnings) == 1
    assert "no complete answer within 0.5s" in warnings[0]


def _status(code: int) -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        body = b'{"message":"page not found"}'
        handler.send_response(code)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return answer


def _truncated(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(PODMAN_4_3_1_BODY)))
    handler.end_headers()
    handler.wfile.write(PODMAN_4_3_1_BODY[:100])
    handler.close_connection = True


def _raw(data: bytes) -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.wfile.write(data)
        handler.close_connection = True
    return answer


BAD_ANSWERS: dict[str, tuple[Answer, str]] = {
    "http-500": (_status(500), "answered HTTP 500"),
    "not-json": (_json(b"<html>hello</html>"), "not JSON"),
    "json-object": (_json(b'{"Id": "x"}'), "JSON dict, not a container list"),
    "list-of-strings": (_json(b'["a", "b"]'), "non-object entry"),
    "truncated": (_truncated, "malformed HTTP answer (IncompleteRead"),
    "not-http": (_raw(b"SSH-2.0-OpenSSH_9.2\r\n"), "malformed HTTP answer"),
    "oversized": (_docker(*((f"{i:064x}", f"c{i}") for i in range(200))), "answer exceeds 4096"),
}


@pytest.mark.parametrize("case", BAD_ANSWERS)
def test_bad_answers_give_none_and_keep_the_last_good_map(
    serve: Callable[[Answer], Engine], case: str, caplog: pytest.LogCaptureFixture,
) -> None:
    engine = serve(_json(PODMAN_4_3_1_BODY))
    clock = Clock()
    names = ContainerNames(engine.path, clock=clock, max_bytes=4096)
    assert names.lookup(CID_A) == "alpha"
    answer, message = BAD_ANSWERS[case]
    engine.answer = answer
    with caplog.at_level(logging.WARNING, logger="gpu_exporter.workloads"):
        for _ in range(3):
            clock.now += 5
            assert names.lookup(CID_B) is None
            assert names.lookup(CID_A) == "alpha"
    assert engine.requests == 4
    warnings = _warnings(caplog)
    assert len(warnings) == 1, warnings
    assert message in warnings[0]


def test_concurrent_lookups_of_an_unknown_id_make_one_request(
    serve: Callable[[Answer], Engine],
) -> None:
    engine = serve(_docker((CID_B, "trainer")))
    names = ContainerNames(engine.path, clock=Clock())
    results: list[str | None] = []
    threads = [threading.Thread(target=lambda: results.append(names.lookup(CID_C)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [None] * 8
    assert engine.requests == 1


# --- the pure parts ---------------------------------------------------------------------------

def test_parse_container_list_skips_entries_without_a_usable_name() -> None:
    body = json.dumps([
        {"Id": CID_B, "Names": ["/a", "/b"]},
        {"Id": CID_C, "Names": []},
        {"Id": "", "Names": ["/x"]},
        {"Names": ["/y"]},
        {"Id": "d4" * 32, "Names": "/not-a-list"},
        {"Id": "E5" * 32, "Names": ["/", "plain"]},  # a name without slash, as libpod lists
    ]).encode()
    assert parse_container_list(body) == {CID_B: "a", "e5" * 32: "plain"}
    assert parse_container_list(b"[]") == {}


def test_parse_http_answer_reads_length_and_chunked_bodies() -> None:
    assert parse_http_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]") == b"[]"
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n[\r\n1\r\n]\r\n0\r\n\r\n"
    assert parse_http_answer(chunked) == b"[]"
    assert parse_http_answer(b"HTTP/1.0 200 OK\r\n\r\n[]") == b"[]"  # body to the end
    with pytest.raises(EngineError, match="HTTP 404"):
        parse_http_answer(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(EngineError, match="malformed"):
        parse_http_answer(b"")


# --- the collector's side: the engine's I/O off the GPU workers ----------------------------------

def _poll(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60  # generous: the machine may be loaded
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_background_names_answer_while_the_engine_stalls(
    serve: Callable[[Answer], Engine],
) -> None:
    listed = _docker((CID_B, "trainer"))

    def held(handler: BaseHTTPRequestHandler) -> None:
        handler.server.engine.release.wait(timeout=60)  # type: ignore[attr-defined]
        listed(handler)

    engine = serve(held)
    names = BackgroundNames(ContainerNames(engine.path, timeout_s=60))
    try:
        _poll(lambda: engine.requests == 1, "the list read at start")
        answers: list[str | None] = []
        worker = threading.Thread(target=lambda: answers.append(names.lookup(CID_B)))
        worker.start()
        worker.join(timeout=30)
        # the engine still holds its answer: the worker got one anyway, from the (empty) list
        assert not worker.is_alive()
        assert answers == [None]
        engine.release.set()
        _poll(lambda: names.lookup(CID_B) == "trainer", "the name once the engine answers")
        assert names.snapshot() == {CID_B: "trainer"}
    finally:
        names.close()


def test_background_names_ask_the_engine_for_an_unknown_id(
    serve: Callable[[Answer], Engine],
) -> None:
    running = [(CID_B, "trainer")]

    def answer(handler: BaseHTTPRequestHandler) -> None:
        _docker(*running)(handler)

    engine = serve(answer)
    names = BackgroundNames(ContainerNames(engine.path, min_refresh_s=0.0))
    try:
        _poll(lambda: names.lookup(CID_B) == "trainer", "the list read at start")
        requests = engine.requests
        assert names.lookup(CID_B) == "trainer"  # known: no request
        running.append((CID_C, "late"))
        assert names.lookup(CID_C) is None  # not in the last list: asked on the thread
        _poll(lambda: names.lookup(CID_C) == "late", "the refreshed list")
        assert engine.requests > requests
    finally:
        names.close()
