"""The collector thread's stop flag (gpu_exporter.wake): its waits, its wake, its idempotence."""

from __future__ import annotations

import threading
import time

from gpu_exporter.wake import StopFlag


def test_a_wait_times_out_while_the_flag_is_clear() -> None:
    flag = StopFlag()
    t0 = time.monotonic()
    assert flag.wait(0.05) is False
    assert time.monotonic() - t0 >= 0.04
    assert flag.wait(0) is False
    assert flag.wait(-1.0) is False
    assert flag.is_set() is False


def test_set_wakes_every_waiter_at_once_and_later_waits_do_not_block() -> None:
    flag = StopFlag()
    woke: list[tuple[bool, float]] = []

    def waiter() -> None:
        t0 = time.monotonic()
        woke.append((flag.wait(30.0), time.monotonic() - t0))

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)  # all three in their wait
    assert woke == []
    flag.set()
    flag.set()  # idempotent: no second release of the lock
    for thread in threads:
        thread.join(5)
    assert len(woke) == 3
    assert all(got and took < 5 for got, took in woke), woke
    t0 = time.monotonic()
    assert flag.wait(30.0) is True
    assert flag.wait(30.0) is True
    assert time.monotonic() - t0 < 1
    assert flag.is_set() is True
