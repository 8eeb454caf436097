"""Errors the CLI turns into exit codes; library code raises, only the CLI exits."""

from __future__ import annotations


class BadInputError(ValueError):
    """User input is wrong (counters file, profile, web config): exit code 2."""


class StartupError(RuntimeError):
    """The exporter cannot run here (no NVML library, port in use): exit code 1."""
