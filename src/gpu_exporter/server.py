"""The running exporter: app factory, lifecycle and the collection loop.

One writer, many readers: the collector thread is the only code that publishes a fresh
:class:`~gpu_exporter.snapshot.Snapshot` (one reference, under the publish lock that the
staleness watch takes too); the HTTP handlers only read the latest one. The collector thread
owns the timing and the cycle (it sleeps on an event between cycles), so the event loop is not
woken per cycle, except with ``-k``, where the publish step joins the kubelet's state on the
loop. NVML runs in worker threads (the sampler's daemon workers, waited for by the collector
thread under a per-GPU deadline), the kubelet refresh on its own timer, the XID event wait in
its own thread (owned by the sampler), so the event loop never blocks. On
SIGTERM the backend is closed with a time limit: a hung NVML call delays the exit by at most
``backend.CLOSE_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from gpu_exporter import __version__
from gpu_exporter.backend import Backend, open_backend
from gpu_exporter.config import Config
from gpu_exporter.counters import (
    CountersError,
    CounterSpec,
    CountersReadError,
    load_counters,
    parse_counters,
)
from gpu_exporter.errors import BadInputError, StartupError, WebConfigError
from gpu_exporter.heap import release_free_heap
from gpu_exporter.hpc import JobKey, attach_jobs, read_job_map
from gpu_exporter.http import (
    HTTP_SETTINGS,
    PROBE_ROUTES,
    SNAPSHOT,
    WEB,
    HttpSettings,
    WebHolder,
    add_routes,
    ready_limit,
    web_config_middleware,
)
from gpu_exporter.listener import (
    GuardedSite,
    Limits,
    Listener,
    QuietLog,
    ServingStats,
    TlsState,
    max_connections,
)
from gpu_exporter.model import Cycle, Native, Sample, new_native, split_natives
from gpu_exporter.render import Family, RenderOptions, dcgm_families, native_families
from gpu_exporter.selfmetrics import ProcessMetrics, python_info
from gpu_exporter.snapshot import Snapshot, SnapshotHolder, build_snapshot
from gpu_exporter.wake import StopFlag
from gpu_exporter.webstate import SERVING, Serving, WebReloader, tls_state, web_state

if TYPE_CHECKING:
    from gpu_exporter.kubernetes.refresher import Refresher

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CountersFile:
    """A parsed counters file and the file state it was read from."""

    path: Path
    specs: tuple[CounterSpec, ...]
    stamp: tuple[int, int, int]  # (mtime_ns, size, inode)
    watched: bool = True  # False for --config-file's inline rows: read once, as upstream

    @property
    def wanted(self) -> frozenset[int]:
        """DCGM field ids the file asks for (label rows included)."""
        return frozenset(spec.field_id for spec in self.specs)

    @property
    def names(self) -> dict[int, str]:
        """Field id -> metric name as written in the file (the ``field`` label)."""
        return {spec.field_id: spec.name for spec in self.specs}


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)  # noqa: PTH116  # os.stat: no pathlib layer once per check
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def read_counters(path: Path) -> CountersFile:
    """Read and parse the counters file; raises BadInputError or StartupError."""
    try:
        stamp = _stamp(path)
    except OSError as exc:
        raise StartupError(f"{path}: cannot read counters file: {exc.strerror}") from None
    try:
        specs = load_counters(path)
    except CountersReadError as exc:
        raise StartupError(str(exc)) from None
    except CountersError as exc:
        raise BadInputError(str(exc)) from None
    if not specs:
        log.warning("counters file %s lists no fields: only gpu_exporter_* metrics", path)
    return CountersFile(path, specs, stamp)


def inline_counters(config_file: Path, text: str) -> CountersFile:
    """The counters rows of a ``--config-file``'s ``metrics.fields`` (never reloaded)."""
    try:
        specs = parse_counters(text, source=f"{config_file}: metrics.fields")
    except CountersError as exc:
        raise BadInputError(f"--config-file: {exc}") from None
    return CountersFile(config_file, specs, (0, 0, 0), watched=False)


@dataclass
class Runtime:
    """State owned by the collection loop (the single writer)."""

    counters: CountersFile
    backend: Backend | None = None
    refresher: Refresher | None = None
    reload_requested: bool = False
    failed_stamp: tuple[int, int, int] | None = None  # set while the file on disk is refused
    counters_checked: float | None = None  # monotonic time of the last look at the file
    process: ProcessMetrics = field(default_factory=ProcessMetrics)
    platform: tuple[Family, ...] = field(  # python_info: fixed for the process's life
        default_factory=lambda: (python_info(),)
    )
    stale_families: Callable[[], list[Family]] | None = None  # the served snapshot, marked stale
    publish_lock: threading.Lock = field(default_factory=threading.Lock)
    collector: threading.Thread | None = None


CONFIG = web.AppKey("config", Config)
RUNTIME = web.AppKey("runtime", Runtime)


def _load_replacement(current: CountersFile) -> tuple[CounterSpec, ...]:
    """The changed file's rows; a file that had rows and now has none is refused."""
    specs = load_counters(current.path)
    if not specs and current.specs:
        raise CountersError(str(current.path), None, (
            "lists no fields now (empty, or truncated while being written?)"))
    return specs


COUNTERS_CHECK_S = 5.0
"""The collection loop looks at the counters file at most this often (SIGHUP: at once)."""


def _counters_check_due(runtime: Runtime, now: float | None) -> bool:
    """Whether :func:`maybe_reload` looks at the file now (and, if so, notes the time).

    Never for ``--config-file``'s inline rows (read once, as upstream; SIGHUP included).
    """
    if not runtime.counters.watched:
        runtime.reload_requested = False
        return False
    if now is None or runtime.reload_requested:
        return True
    last = runtime.counters_checked
    if last is not None and now - last < COUNTERS_CHECK_S:
        return False
    runtime.counters_checked = now
    return True


def maybe_reload(runtime: Runtime, now: float | None = None) -> bool:
    """Re-read the counters file when it changed (or on SIGHUP); keep the last good one.

    Returns True when a new file was swapped in. Runs in the collector thread. ``now``
    (the monotonic clock): the file is looked at only when :data:`COUNTERS_CHECK_S` have
    passed since the last look, or a reload was requested; without it, always.
    """
    current = runtime.counters
    if not _counters_check_due(runtime, now):
        return False
    try:
        stamp = _stamp(current.path)
    except OSError as exc:
        if runtime.failed_stamp != (0, 0, 0):
            log.error(  # noqa: TRY400  # an expected condition: no traceback
                "counters file %s unreadable (%s); keeping the last good one",
                current.path, exc.strerror,
            )
            runtime.failed_stamp = (0, 0, 0)
        return False
    if stamp == current.stamp and not runtime.reload_requested:
        runtime.failed_stamp = None  # back to the file in use (moved back in place)
        return False
    runtime.reload_requested = False
    if stamp == runtime.failed_stamp:
        return False
    try:
        specs = _load_replacement(current)
    except CountersError as exc:
        log.error(  # noqa: TRY400  # the message names file and line; no traceback
            "counters file not reloaded, keeping the last good one: %s", exc
        )
        runtime.failed_stamp = stamp
        return False
    runtime.counters = CountersFile(current.path, specs, stamp)
    runtime.failed_stamp = None
    log.info("counters file %s reloaded: %d rows", current.path, len(specs))
    return True


def render_options(config: Config) -> RenderOptions:
    """Label spelling from the config."""
    return RenderOptions(
        hostname=config.hostname,
        hostname_label=config.hostname_label,
        old_names=config.old_names,
        replace_blanks=config.replace_blanks,
    )


def cycle_families(
    cycle: Cycle,
    *,
    samples: Sequence[Sample],
    natives: Sequence[Native],
    counters: Sequence[CounterSpec],
    options: RenderOptions,
    extra: Sequence[Family] = (),
) -> list[Family]:
    """All families of one snapshot: DCGM rows in file order, then ours, then process."""
    families = dcgm_families(samples, counters, options)
    singles, blocks = split_natives(cycle.natives)
    families.extend(native_families((*singles, *natives), options, blocks))
    families.extend(extra)
    return families


SECOND_CYCLE_DELAY_S = 1.0
"""Start-up: the second cycle starts at most this long after the first one ends.

Rate fields (GPM profiling, NVLink and PCIe bandwidth) need two samples, so the first snapshot
lacks them; with the 30 s default interval the first complete snapshot would come only after
30 s. The second cycle follows within a second instead; later cycles keep the interval.
"""


def next_delay(interval: float, elapsed: float, *, first: bool) -> float:
    """Seconds to sleep before the next cycle (pure).

    Args:
        interval: the collect interval in seconds.
        elapsed: how long the cycle just finished took.
        first: whether that was the first cycle since start.
    """
    delay = interval - elapsed
    if first:
        delay = min(delay, SECOND_CYCLE_DELAY_S)
    return max(delay, 0.0)


def _collect_step(
    runtime: Runtime, backend: Backend, hpc_job_dir: Path | None,
) -> tuple[Cycle, dict[JobKey, tuple[str, ...]] | None]:
    """One cycle's blocking part, in one worker-thread hop: reload, collect, HPC job map."""
    if maybe_reload(runtime, time.monotonic()):
        backend.set_wanted(runtime.counters.wanted, runtime.counters.names)
    cycle = backend.collect_once()
    jobs = read_job_map(hpc_job_dir) if hpc_job_dir is not None else None
    return cycle, jobs


def _publish(
    app: web.Application, cycle: Cycle, jobs: dict[JobKey, tuple[str, ...]] | None,
    options: RenderOptions, *, first: bool, refresher: Refresher | None = None,
) -> None:
    """Publish one collected cycle's snapshot (built lazily; rendered when a scraper asks).

    Runs in the collector thread, or on the event loop with ``-k`` (the kubelet and API
    state it joins with is the loop's). The snapshot and its stale twin are published
    together, under the publish lock (the staleness watch replaces them under it too).
    """
    config = app[CONFIG]
    runtime = app[RUNTIME]
    holder = app[SNAPSHOT]
    backend = runtime.backend
    if backend is None:
        raise RuntimeError("collection loop started without a backend")
    samples: Sequence[Sample] = cycle.samples
    natives: list[Native] = [
        backend.build_info(),
        new_native("gpu_exporter_snapshot_timestamp_seconds", cycle.started),
        new_native("gpu_exporter_collect_interval_seconds", config.collect_interval),
        *app[SERVING].natives(),
        _RELOAD_FAILED if runtime.failed_stamp is not None else _RELOAD_OK,
        _FRESH,
    ]
    if refresher is not None:
        samples, kube_natives = refresher.attribute(cycle)
        natives.extend(kube_natives)
        if backend.pods is not None:  # names the next cycle's pod workloads
            backend.pods.current = refresher.pod_directory(cycle.entities)
    if jobs is not None:
        samples = attach_jobs(samples, jobs)
    previous = holder.current
    # Families and bytes are built when a scraper asks (Snapshot), not here, except
    # the variants scrapers asked for last cycle: ready before the snapshot is public.
    snapshot = Snapshot(
        partial(_snapshot_families, runtime, cycle, samples, natives,
                runtime.counters.specs, options),
        created=cycle.started, monotonic=time.monotonic(), previous=previous,
    )
    if previous is not None:
        snapshot.prepare(previous.variants())
    stale = partial(_stale_families, runtime, cycle, samples, natives,  # built if needed
                    runtime.counters.specs, options)
    with runtime.publish_lock:  # with its stale twin: the watch never pairs two cycles
        holder.current = snapshot
        runtime.stale_families = stale
    if first:
        # Everything built at start-up (modules, NVML handles, catalog) lives for
        # the whole run: move it out of the collector's reach, so the garbage
        # collections that serving triggers scan only what requests allocate.
        gc.freeze()
        release_free_heap()  # and what start-up freed goes back to the kernel


def _publish_on_loop(
    app: web.Application, cycle: Cycle, jobs: dict[JobKey, tuple[str, ...]] | None,
    options: RenderOptions, *, first: bool,
) -> None:
    """:func:`_publish` with the kubelet attribution, on the event loop (``-k``)."""
    try:
        _publish(app, cycle, jobs, options, first=first, refresher=app[RUNTIME].refresher)
    except Exception:
        log.exception("collection cycle failed; serving the previous snapshot")


def _collect_thread(
    app: web.Application, loop: asyncio.AbstractEventLoop, stop: StopFlag,
) -> None:
    """The collector thread: owns the timing, collects, publishes; never wakes the loop.

    One thread for the whole cycle (the sampler's worker reads the GPUs under its watchdog),
    sleeping on ``stop`` between cycles, so SIGTERM ends it at once. With ``-k`` the
    publish step, which joins with the kubelet's and the API's state, runs on the loop.
    """
    config = app[CONFIG]
    runtime = app[RUNTIME]
    options = render_options(config)
    backend = runtime.backend
    if backend is None:
        raise RuntimeError("collection loop started without a backend")
    cycles = 0
    while not stop.is_set():
        started = time.monotonic()
        cycles += 1
        try:
            cycle, jobs = _collect_step(runtime, backend, config.hpc_job_dir)
            if stop.is_set():
                break
            if runtime.refresher is not None:
                loop.call_soon_threadsafe(partial(_publish_on_loop, app, cycle, jobs, options,
                                                  first=cycles == 1))
            else:
                _publish(app, cycle, jobs, options, first=cycles == 1)
        except RuntimeError:
            if stop.is_set() or loop.is_closed():  # the loop closed under the last cycle
                break
            log.exception("collection cycle failed; serving the previous snapshot")
        except Exception:
            log.exception("collection cycle failed; serving the previous snapshot")
        elapsed = time.monotonic() - started
        stop.wait(next_delay(config.collect_interval, elapsed, first=cycles == 1))


COLLECTOR_JOIN_S = 1.0
"""At shutdown, how long the backend's close waits for the collector thread to leave."""


def _snapshot_families(  # noqa: PLR0917  # bound once per cycle with partial
    runtime: Runtime, cycle: Cycle, samples: Sequence[Sample], natives: Sequence[Native],
    counters: Sequence[CounterSpec], options: RenderOptions,
) -> list[Family]:
    """The families of one published cycle; process metrics are read now (first scrape)."""
    process = [*runtime.process.families(), *runtime.platform]
    return cycle_families(cycle, samples=samples, natives=natives, counters=counters,
                          options=options, extra=process)


def _stale_families(  # noqa: PLR0917  # bound once per cycle with partial
    runtime: Runtime, cycle: Cycle, samples: Sequence[Sample], natives: Sequence[Native],
    counters: Sequence[CounterSpec], options: RenderOptions,
) -> list[Family]:
    """:func:`_snapshot_families` with ``gpu_exporter_snapshot_stale 1`` (the stale twin)."""
    return _snapshot_families(runtime, cycle, samples, _marked_stale(natives), counters, options)


STALE = "gpu_exporter_snapshot_stale"
STALE_CHECK_MIN_S = 0.01
"""The least pause of the staleness watch (its timer may fire a little early)."""


def stale_check_delay(published: float, now: float, bound: float) -> float:
    """Seconds until a snapshot published at ``published`` outlives ``bound``; 0: it has (pure).

    The staleness watch sleeps this long, not a fixed tick: while cycles publish, it wakes
    about once per bound (a later snapshot is due later still), never every few seconds.
    At least :data:`STALE_CHECK_MIN_S` while not yet stale, since the timer may fire early.
    """
    due = published + bound
    if now > due:
        return 0.0
    return max(due - now, STALE_CHECK_MIN_S)
# the fixed natives of every published cycle (immutable; shared by all cycles)
_FRESH = Native(STALE, 0.0)
_RELOAD_OK = Native("gpu_exporter_counters_last_reload_successful", 1.0)
_RELOAD_FAILED = Native("gpu_exporter_counters_last_reload_successful", 0.0)


def _marked_stale(natives: Sequence[Native]) -> list[Native]:
    return [Native(STALE, 1.0) if n.name == STALE else n for n in natives]


async def _staleness_watch(app: web.Application) -> None:
    """Mark the served snapshot stale once it outlives its bound (:func:`ready_limit`).

    The collection loop publishes a snapshot every cycle; when it publishes nothing for
    longer than the bound (a step stuck in a thread), the same snapshot is published again
    with ``gpu_exporter_snapshot_stale 1`` and its original age (so ``/ready`` still fails),
    once per stale snapshot: work per bound, never per scrape.
    """
    holder = app[SNAPSHOT]
    runtime = app[RUNTIME]
    bound = ready_limit(app[CONFIG].collect_interval)
    marked: Snapshot | None = None
    lock = runtime.publish_lock
    delay = bound  # a snapshot published from now on outlives the bound no sooner
    while True:
        await asyncio.sleep(delay)
        with lock:  # the collector thread publishes both together
            current, stale = holder.current, runtime.stale_families
        if current is None or current is marked or stale is None:
            delay = bound  # nothing to mark: any later snapshot is fresh for a bound
            continue
        now = time.monotonic()
        delay = stale_check_delay(current.monotonic, now, bound)
        if delay > 0:
            continue
        age = now - current.monotonic
        delay = bound
        snapshot = await asyncio.to_thread(
            build_snapshot, stale(), created=current.created, monotonic=current.monotonic)
        with lock:
            if holder.current is not current:  # the collector published meanwhile
                continue
            holder.current = marked = snapshot
        log.warning("no collection cycle has completed for %.0fs (bound %gs): serving the "
                    "last snapshot with %s 1", age, bound, STALE)


async def _backend_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    counters = app[RUNTIME].counters
    backend = await asyncio.to_thread(open_backend, config, counters.wanted, counters.names)
    app[RUNTIME].backend = backend
    try:
        yield
    finally:
        await asyncio.to_thread(_close_backend, app[RUNTIME], backend)


def _close_backend(runtime: Runtime, backend: Backend) -> None:
    """Close the backend, then let the collector thread (told to stop already) leave.

    Closing stops the sampler's runner, so a cycle waiting on it returns; the wait for the
    thread is bounded all the same (a daemon thread: the exit does not wait for it).
    """
    backend.close()
    collector = runtime.collector
    if collector is not None:
        collector.join(COLLECTOR_JOIN_S)


async def _kube_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    if not config.kube.enabled:
        if config.kube.pod_labels or config.kube.pod_uid or config.kube.dra:
            log.warning("pod labels, pod UIDs and DRA attribution need -k "
                        "(--kubernetes); ignored without it")
        yield
        return
    # Imported here: grpc is loaded only in Kubernetes mode (it costs memory and start time);
    # the API client only when a flag needs it.
    from gpu_exporter.kubernetes.integration import start_refresher  # noqa: PLC0415

    refresher = await start_refresher(config.kube)
    app[RUNTIME].refresher = refresher
    try:
        yield
    finally:
        await refresher.close()


async def _loop_ctx(app: web.Application) -> AsyncIterator[None]:
    stop = StopFlag()
    collector = threading.Thread(target=_collect_thread, name="collect",
                                 args=(app, asyncio.get_running_loop(), stop), daemon=True)
    app[RUNTIME].collector = collector
    collector.start()
    tasks = [asyncio.create_task(_staleness_watch(app), name="staleness-watch")]
    try:
        yield
    finally:
        stop.set()  # wakes its sleep; a cycle in progress ends when the backend closes
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def create_app(config: Config, counters: CountersFile) -> web.Application:
    """The aiohttp application; background work starts with the app and stops with it.

    With a web config file, a middleware applies its rate limit, headers and basic auth to
    every path (the configured headers then come from the middleware, so a reload changes
    them).
    """
    with_file = config.web.path is not None
    app = web.Application(middlewares=[web_config_middleware] if with_file else [])
    app[CONFIG] = config
    app[RUNTIME] = Runtime(counters=counters)
    app[SNAPSHOT] = SnapshotHolder()
    app[HTTP_SETTINGS] = HttpSettings(
        collect_interval=config.collect_interval,
        headers=() if with_file else config.web.headers,
    )
    app[WEB] = WebHolder(web_state(config.web))
    app[SERVING] = Serving(ServingStats(), app[WEB])
    add_routes(app)
    app.cleanup_ctx.extend([_backend_ctx, _kube_ctx, _loop_ctx])
    return app


def _probe_app(app: web.Application) -> web.Application:
    """``/health`` and ``/ready`` of ``app``'s snapshot, for the plain-HTTP probe listener."""
    probe = web.Application()
    probe[SNAPSHOT] = app[SNAPSHOT]
    probe[HTTP_SETTINGS] = app[HTTP_SETTINGS]
    add_routes(probe, PROBE_ROUTES)
    return probe


async def _start_site(site: GuardedSite, where: str) -> None:
    try:
        await site.start()
    except OSError as exc:
        raise StartupError(f"{where}: cannot listen: {exc.strerror}") from None


async def run(config: Config, counters: CountersFile) -> None:  # noqa: PLR0915
    """Serve until SIGTERM/SIGINT; SIGHUP reloads the counters file and the web config."""
    app = create_app(config, counters)
    tls: TlsState | None = None
    try:
        tls = tls_state(config.web)
    except WebConfigError as exc:
        raise BadInputError(f"--web-config-file {config.web.path}: {exc}") from None
    serving = app[SERVING]
    stats = serving.stats
    quiet = QuietLog(logging.getLogger("gpu_exporter.http"), stats)
    handler_kwargs = {"logger": quiet, "access_log": None,
                      "keepalive_timeout": config.limits.idle_timeout}
    runner = web.AppRunner(app, handle_signals=False, logger=quiet, access_log=None,
                           keepalive_timeout=config.limits.idle_timeout)
    probe_runner = web.AppRunner(_probe_app(app), handle_signals=False, logger=quiet,
                                 access_log=None, keepalive_timeout=config.limits.idle_timeout)
    limits = Limits(read_timeout=config.limits.read_timeout,
                    write_timeout=config.limits.write_timeout,
                    max_connections=max_connections(config.limits.max_connections))
    stats.limit = limits.max_connections
    reloader: WebReloader | None = None
    watcher: asyncio.Task[None] | None = None
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(quiet.loop_exception)
    try:
        # inside the try: a start-up step that fails (NVML, -d, kubelet) must still have the
        # steps before it cleaned up (runner.cleanup runs the cleanup contexts entered so far)
        await runner.setup()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            loop.add_signal_handler(sig, stop.set)
        listener = Listener(runner, limits, stats, handler_kwargs, tls)
        if config.web.path is not None:
            reloader = WebReloader(config.web, app[WEB], [listener])
            serving.reloader = reloader
            watcher = asyncio.create_task(reloader.run(), name="web-config-watch")
        loop.add_signal_handler(signal.SIGHUP, _request_reload, app, reloader)
        if config.systemd_socket:
            site = GuardedSite(runner, listener, sock=systemd_socket(os.environ))
        else:
            site = GuardedSite(runner, listener, host=config.address.host,
                               port=config.address.port)
        await _start_site(site, f"--address {config.address}")
        for sock in _bound(runner):
            log.info("listening on %s://%s/metrics (at most %d connections)",
                     "https" if tls else "http", sock, limits.max_connections)
        probe = config.limits.probe_address
        if probe is not None:
            await probe_runner.setup()
            probe_limits = Limits(read_timeout=limits.read_timeout,
                                  write_timeout=limits.write_timeout,
                                  max_connections=PROBE_MAX_CONNECTIONS)
            probe_listener = Listener(probe_runner, probe_limits, stats, handler_kwargs)
            await _start_site(GuardedSite(probe_runner, probe_listener, host=probe.host,
                                          port=probe.port), f"--web-probe-address {probe}")
            log.info("probe listener on http://%s (/health, /ready only)", probe)
        await stop.wait()
        log.info("shutting down")
    finally:
        if watcher is not None:
            watcher.cancel()
        if probe_runner.server is not None:
            await probe_runner.cleanup()
        await runner.cleanup()
        auth = app[WEB].current.auth
        if auth is not None:
            auth.close()


PROBE_MAX_CONNECTIONS = 16
"""Connections the probe listener accepts at once (the kubelet opens one per probe)."""


SD_LISTEN_FDS_START = 3
"""First file descriptor systemd passes to a socket-activated service."""


def systemd_socket(environ: Mapping[str, str]) -> socket.socket:
    """The listening socket systemd passed (``LISTEN_FDS``/``LISTEN_PID``, fd 3).

    Raises:
        BadInputError: no socket was passed (the service was not socket-activated).
    """
    pid = environ.get("LISTEN_PID")
    count = environ.get("LISTEN_FDS", "")
    if (pid and pid != str(os.getpid())) or not count.isdigit() or int(count) < 1:
        raise BadInputError(
            "--web-systemd-socket: no socket passed by systemd (LISTEN_FDS/LISTEN_PID unset "
            "or for another process); start the exporter from a .socket unit"
        )
    if int(count) > 1:
        log.warning("systemd passed %s sockets; serving on the first", count)
    try:
        return socket.socket(fileno=SD_LISTEN_FDS_START)
    except OSError as exc:
        raise BadInputError(f"--web-systemd-socket: fd 3 is not a socket: {exc.strerror}") from None


def _bound(runner: web.AppRunner) -> list[str]:
    addresses = []
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            host = str(address[0])
            addresses.append(f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}")
    return addresses


def _request_reload(app: web.Application, reloader: WebReloader | None) -> None:
    log.info("SIGHUP: reloading the counters file%s",
             " and the web config" if reloader is not None else "")
    app[RUNTIME].reload_requested = True
    if reloader is not None:
        reloader.request()


def serve(config: Config) -> None:
    """Load the counters file, then run the exporter until it is stopped."""
    if config.counters_inline is not None:
        counters = inline_counters(config.counters_path, config.counters_inline)
    else:
        counters = read_counters(config.counters_path)
    if config.hpc_job_dir is not None and not config.hpc_job_dir.is_dir():
        log.warning("--hpc-job-mapping-dir %s is not a directory (yet): no hpc_job labels "
                    "until it appears", config.hpc_job_dir)
    log.info(
        "gpu-exporter %s (pid %d): %d counters from %s, collecting every %gs",
        __version__, os.getpid(), len(counters.specs), config.counters_path,
        config.collect_interval,
    )
    asyncio.run(run(config, counters))
