"""The lazily rendered snapshot: built only when asked, each variant once, failures fall back."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Sequence

import pytest

from gpu_exporter.render import Family, render
from gpu_exporter.snapshot import Snapshot


def _families(value: float) -> list[Family]:
    return [Family("gpu_exporter_collections_total", "counter", "cycles",
                   (("gpu_exporter_collections_total", (), value),))]


def test_nothing_is_built_until_a_variant_is_asked_for_then_once() -> None:
    calls: list[int] = []

    def build() -> list[Family]:
        calls.append(1)
        return _families(3.0)

    snapshot = Snapshot(build, created=0.0, monotonic=0.0)
    assert calls == []  # a cycle nobody scrapes renders nothing
    text = snapshot.body(openmetrics=False, gzipped=False)
    assert text == render(_families(3.0), "text")
    assert gzip.decompress(snapshot.body(openmetrics=False, gzipped=True)) == text
    om = snapshot.body(openmetrics=True, gzipped=True)
    assert gzip.decompress(om) == render(_families(3.0), "openmetrics")
    assert snapshot.body(openmetrics=True, gzipped=True) is om  # cached, not re-rendered
    assert calls == [1]


def test_a_failing_build_serves_the_previous_cycle(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> list[Family]:
        raise RuntimeError("boom")

    previous = Snapshot(lambda: _families(1.0), created=0.0, monotonic=0.0)
    current = Snapshot(broken, created=1.0, monotonic=1.0, previous=previous)
    assert current.text == render(_families(1.0), "text")
    assert "serving the previous cycle's" in caplog.text
    # only one snapshot deep: the next one no longer keeps the older one alive
    following = Snapshot(broken, created=2.0, monotonic=2.0, previous=current)
    assert following.text == current.text
    last = Snapshot(broken, created=3.0, monotonic=3.0, previous=None)
    assert last.text == b""


def test_a_build_failing_while_the_next_cycle_is_published_still_falls_back() -> None:
    # The loop builds a scraped snapshot while the collector thread publishes the next one,
    # which cuts the older snapshot's link to its own previous. A build that fails in that
    # moment must still serve the cycle before, never an empty body.
    inside, release = threading.Event(), threading.Event()

    def slow_then_broken() -> list[Family]:
        inside.set()
        release.wait(10)
        raise RuntimeError("boom")

    oldest = Snapshot(lambda: _families(1.0), created=0.0, monotonic=0.0)
    scraped = Snapshot(slow_then_broken, created=1.0, monotonic=1.0, previous=oldest)
    served: list[bytes] = []
    scrape = threading.Thread(target=lambda: served.append(scraped.text))
    scrape.start()
    assert inside.wait(10)
    publish = threading.Thread(
        target=Snapshot, args=(lambda: _families(3.0),),
        kwargs={"created": 2.0, "monotonic": 2.0, "previous": scraped})
    publish.start()
    publish.join(0.3)  # the publisher cuts the link now, or waits for the build to end
    release.set()
    scrape.join(10)
    publish.join(10)
    assert not scrape.is_alive()
    assert not publish.is_alive()
    assert served == [render(_families(1.0), "text")]


def test_concurrent_first_uses_build_once_and_see_the_same_families() -> None:
    inside, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def build() -> list[Family]:
        calls.append(1)
        inside.set()
        release.wait(10)
        return _families(4.0)

    snapshot = Snapshot(build, created=0.0, monotonic=0.0)
    seen: list[Sequence[Family]] = []
    first = threading.Thread(target=lambda: seen.append(snapshot.families))
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=lambda: seen.append(snapshot.families))
    second.start()
    second.join(0.3)  # waits for the first caller's build instead of seeing none
    release.set()
    first.join(10)
    second.join(10)
    assert calls == [1]
    assert len(seen) == 2
    assert seen[0] is seen[1]
    assert list(seen[0]) == _families(4.0)


def test_the_variants_scraped_last_cycle_are_prepared_for_the_next() -> None:
    last = Snapshot(lambda: _families(1.0), created=0.0, monotonic=0.0)
    assert last.variants() == []
    last.body(openmetrics=True, gzipped=True)
    assert last.variants() == [(True, True)]  # the plain one was rendered, not asked for
    calls: list[int] = []

    def build() -> list[Family]:
        calls.append(1)
        return _families(2.0)

    following = Snapshot(build, created=1.0, monotonic=1.0, previous=last)
    following.prepare(last.variants())
    assert calls == [1]
    assert following.variants() == []  # prepared, not asked: nobody scraped this cycle
    unscraped_next = Snapshot(build, created=2.0, monotonic=2.0, previous=following)
    unscraped_next.prepare(following.variants())
    assert calls == [1]  # so the cycle after it renders nothing
