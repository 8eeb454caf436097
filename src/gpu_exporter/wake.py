"""A stop flag whose timed wait is one lock acquire.

A thread that sleeps once per collection cycle pays, on every wake, for whatever Python runs
around the kernel's wait, and right after a sleep all of it runs from cold caches.
``threading.Event.wait`` goes through ``Condition.wait`` (a new lock, the waiters' deque, the
condition's lock released and taken again): measured on the project's 2-CPU machine, about
40 us more per wake than one ``Lock.acquire(timeout=...)``, which is what
:class:`StopFlag` waits with.
"""

from __future__ import annotations

import threading


class StopFlag:
    """Set once, from any thread; :meth:`wait` sleeps until it is set or a timeout passes.

    Behaves as the ``threading.Event`` subset the collector thread uses (``set``,
    ``is_set``, ``wait``), with any number of waiters: once set, every wait returns at once.
    """

    __slots__ = ("_guard", "_set", "_signal")

    def __init__(self) -> None:
        self._signal = threading.Lock()
        self._signal.acquire()  # held until set: a wait blocks on it
        self._guard = threading.Lock()
        self._set = False

    def set(self) -> None:
        """Set the flag and wake every waiter (idempotent)."""
        with self._guard:
            if self._set:
                return
            self._set = True
            self._signal.release()

    def is_set(self) -> bool:
        """Whether :meth:`set` was called."""
        return self._set

    def wait(self, timeout: float) -> bool:
        """Sleep until set or ``timeout`` seconds passed; returns :meth:`is_set`."""
        if self._set:
            return True
        if timeout > 0 and self._signal.acquire(timeout=timeout):
            self._signal.release()  # stays free once set: the next waiter passes too
        return self._set
