"""The ``/metrics`` snapshot of one cycle: rendered on first request, then served as bytes.

A cycle publishes a snapshot holding how to build its families, not bytes: nothing is written
while nobody scrapes. The first request for a variant (text or OpenMetrics, plain or gzip)
builds the families once and renders and compresses that variant once; every later request
in the same cycle gets the same bytes. The collection loop renders, before publishing, the
variants the previous cycle's scrapers asked for, so a scraped exporter's requests find their
bytes ready. So a cycle costs at most one render and one gzip per variant actually asked for,
never one per scrape, and nothing when nobody scrapes.
"""

from __future__ import annotations

import gzip
import logging
import threading
from collections.abc import Callable, Sequence

from gpu_exporter.render import Family, render

log = logging.getLogger(__name__)

# Level 1 compresses a 50 KiB exposition to about 8 % of its size at a fraction of level 9's
# cost; the body is compressed once per cycle, never per scrape.
_GZIP_LEVEL = 1


class Snapshot:
    """One cycle's exposition, each variant built on first use and kept.

    Attributes:
        created: wall-clock time of the cycle (seconds since the epoch).
        monotonic: ``time.monotonic()`` when the snapshot was published.
    """

    __slots__ = ("_asked", "_bodies", "_build", "_families", "_lock", "_previous", "created",
                 "monotonic")

    def __init__(
        self, build: Callable[[], Sequence[Family]], *, created: float, monotonic: float,
        previous: Snapshot | None = None,
    ) -> None:
        self._build: Callable[[], Sequence[Family]] | None = build
        self._families: Sequence[Family] = ()
        # The build and its fallback run under this lock: a snapshot is built by the loop's
        # scrape and, as the next one's fallback, by the collector thread, and its link to
        # the previous one is cut by the collector thread. Taken once per snapshot.
        self._lock = threading.Lock()
        # served instead when building this one fails (as the eager loop served the last
        # good snapshot); only one deep, so unscraped snapshots never form a chain
        self._previous = previous
        if previous is not None:
            with previous._lock:  # not while its build may still fall back to it
                previous._previous = None
        self._bodies: dict[tuple[bool, bool], bytes] = {}
        self._asked: set[tuple[bool, bool]] = set()  # variants a scraper asked for
        self.created = created
        self.monotonic = monotonic

    @property
    def families(self) -> Sequence[Family]:
        """The cycle's families (built on first use)."""
        if self._build is not None:
            with self._lock:  # a second caller waits for the first one's families
                build = self._build
                if build is not None:
                    try:
                        self._families = build()
                    except Exception:
                        log.exception(
                            "building this cycle's metrics failed; serving the previous cycle's")
                        previous = self._previous
                        self._families = previous.families if previous is not None else ()
                    self._previous = None
                    self._build = None
        return self._families

    def body(self, *, openmetrics: bool, gzipped: bool) -> bytes:
        """The exposition bytes of one variant a scraper asks for (rendered once per cycle)."""
        return self.variant((openmetrics, gzipped))

    def variant(self, key: tuple[bool, bool]) -> bytes:
        """:meth:`body` of ``(openmetrics, gzipped)``: the request path's form."""
        self._asked.add(key)
        cached = self._bodies.get(key)
        return cached if cached is not None else self._variant(*key)

    def _variant(self, openmetrics: bool, gzipped: bool) -> bytes:  # noqa: FBT001
        key = (openmetrics, gzipped)
        cached = self._bodies.get(key)
        if cached is None:
            if gzipped:
                plain = self._variant(openmetrics, gzipped=False)
                cached = gzip.compress(plain, compresslevel=_GZIP_LEVEL, mtime=0)
            else:
                cached = render(self.families, "openmetrics" if openmetrics else "text")
            self._bodies[key] = cached
        return cached

    def variants(self) -> list[tuple[bool, bool]]:
        """``(openmetrics, gzipped)`` of every variant a scraper asked for so far."""
        return sorted(self._asked)

    def prepare(self, variants: list[tuple[bool, bool]]) -> None:
        """Render these variants now (those the previous cycle's scrapers asked for).

        Not counted as asked: a cycle nobody scrapes stops the preparing of the next one.
        """
        for openmetrics, gzipped in variants:
            self._variant(openmetrics, gzipped)

    @property
    def text(self) -> bytes:
        """Prometheus text format 0.0.4."""
        return self.body(openmetrics=False, gzipped=False)

    @property
    def text_gz(self) -> bytes:
        """``text`` gzip-compressed."""
        return self.body(openmetrics=False, gzipped=True)

    @property
    def openmetrics(self) -> bytes:
        """OpenMetrics 1.0."""
        return self.body(openmetrics=True, gzipped=False)

    @property
    def openmetrics_gz(self) -> bytes:
        """``openmetrics`` gzip-compressed."""
        return self.body(openmetrics=True, gzipped=True)


def build_snapshot(families: Sequence[Family], *, created: float, monotonic: float) -> Snapshot:
    """A snapshot of families already built (rendered lazily all the same)."""
    fixed = tuple(families)
    return Snapshot(lambda: fixed, created=created, monotonic=monotonic)


class SnapshotHolder:
    """The one mutable cell: the collector thread rebinds ``current``; handlers only read it.

    Rebinding an attribute is atomic: readers take no lock (the server's publishers, the
    collector thread and the staleness watch, replace it under their own lock).
    """

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current: Snapshot | None = None
