"""Rates from cumulative counters (NVLink and PCIe bytes) over their own timestamps.

Pure helpers plus a small keyed memory of the previous reading; the only state NVLink and PCIe
collectors keep between cycles, on purpose.
"""

from __future__ import annotations

from collections.abc import Hashable


def counter_rate(
    previous: tuple[float, float] | None, current: tuple[float, float],
) -> float | None:
    """Per-second rate between two (timestamp in seconds, cumulative value) readings.

    Returns:
        ``None`` on the first reading, when time did not advance, or when the counter went
        backwards (reset or wrap): no rate is better than a wrong one.
    """
    if previous is None:
        return None
    dt = current[0] - previous[0]
    delta = current[1] - previous[1]
    if dt <= 0 or delta < 0:
        return None
    return delta / dt


class RateTracker:
    """Remembers the previous reading per key and turns the next one into a rate."""

    __slots__ = ("_previous",)

    def __init__(self) -> None:
        self._previous: dict[Hashable, tuple[float, float]] = {}

    def update(self, key: Hashable, timestamp: float, value: float) -> float | None:
        """Store (timestamp, value) for ``key``; return the rate since the previous one."""
        current = (timestamp, value)
        rate = counter_rate(self._previous.get(key), current)
        self._previous[key] = current
        return rate

    def forget_gpu(self, gpu: int) -> None:
        """Drop the readings whose key starts with GPU index ``gpu``."""
        for key in [k for k in list(self._previous)  # a copy: GPUs are read concurrently
                    if isinstance(k, tuple) and k[0] == gpu]:
            self._previous.pop(key, None)
