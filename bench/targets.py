"""Absolute targets of the benchmarks: recorded and reported, never asserted.

Absolute figures depend on the machine and its load, so a benchmark run reports them in a
"targets" section at its end (met or NOT MET, printed by bench/conftest.py) instead of
failing; bench/RESULTS.md records them with their command. Ratios against same-run baselines
may still assert.
"""

from __future__ import annotations

TARGETS: list[tuple[str, float, float, str]] = []
"""(what, measured, target, unit) recorded during this run."""


def target(what: str, measured: float, limit: float, unit: str) -> None:
    """Record ``measured`` against its target ``limit`` (lower is better)."""
    TARGETS.append((what, measured, limit, unit))
