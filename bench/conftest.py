"""Benchmarks run with: .venv/bin/pytest bench --benchmark-enable (see bench/RESULTS.md)."""

import pytest
from targets import TARGETS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print every target recorded by ``targets.target`` with its verdict."""
    if not TARGETS:
        return
    terminalreporter.section("targets (absolute; reported, not asserted)")
    for what, measured, limit, unit in TARGETS:
        verdict = "met" if measured <= limit else "NOT MET"
        terminalreporter.write_line(
            f"{what}: {measured:.4g} {unit} (target <= {limit:g} {unit}): {verdict}")
