"""Errors the CLI turns into exit codes; library code raises, only the CLI exits."""

from __future__ import annotations


class BadInputError(ValueError):
    """User input is wrong (counters file, profile, web config): exit code 2."""


class WebConfigError(ValueError):
    """The web config file is unreadable or wrong; the message names the file and key.

    Defined here rather than in ``webconfig`` so that catching it does not load the parser:
    a run without ``--web-config-file`` never imports ``webconfig``.
    """


class StartupError(RuntimeError):
    """The exporter cannot run here (no NVML library, port in use): exit code 1."""
