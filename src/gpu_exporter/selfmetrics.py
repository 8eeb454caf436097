"""The exporter's own process metrics (``process_*``, ``python_info``), read from ``/proc``.

The same series, names, types and help texts as prometheus_client's process and platform
collectors, which dashboards and alerts already use, without importing prometheus_client (its
import costs more memory than everything it would read here). Read when a snapshot is first
rendered, so a process nobody scrapes does not read them at all. Where ``/proc`` is missing (not
Linux), only ``python_info`` is exported, as prometheus_client does.
"""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path

from gpu_exporter.render import Family

_PROC = Path("/proc")


def python_info() -> Family:
    """``python_info``: fixed for the process's life (build it once)."""
    major, minor, patchlevel = platform.python_version_tuple()
    labels = (
        ("version", platform.python_version()),
        ("implementation", platform.python_implementation()),
        ("major", major),
        ("minor", minor),
        ("patchlevel", patchlevel),
    )
    return Family("python_info", "gauge", "Python platform information",
                  (("python_info", labels, 1.0),))


def _boot_time(proc: Path) -> float:
    for line in (proc / "stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


class ProcessMetrics:
    """Reads ``/proc/self`` into the ``process_*`` families (boot time and tick read once)."""

    def __init__(self, proc: Path = _PROC) -> None:
        self._self = proc / "self"
        self._ticks = float(os.sysconf("SC_CLK_TCK"))
        self._pagesize = resource.getpagesize()
        try:
            self._btime = _boot_time(proc)
        except OSError:
            self._btime = 0.0

    def families(self) -> list[Family]:
        """The current values; an empty list where ``/proc`` cannot be read."""
        try:
            stat = (self._self / "stat").read_bytes()
            fields = stat[stat.rindex(b")") + 2:].split()
            open_fds = sum(1 for _ in (self._self / "fd").iterdir())
            limits = (self._self / "limits").read_text()
        except (OSError, ValueError):
            return []
        max_fds = 0.0
        for line in limits.splitlines():
            if line.startswith("Max open files"):
                max_fds = float(line.split()[3])
        # fields are numbered from the state (field 3 of proc(5)) on
        gauges = (
            ("process_virtual_memory_bytes", "Virtual memory size in bytes.", float(fields[20])),
            ("process_resident_memory_bytes", "Resident memory size in bytes.",
             float(fields[21]) * self._pagesize),
            ("process_start_time_seconds", "Start time of the process since unix epoch in "
             "seconds.", float(fields[19]) / self._ticks + self._btime),
        )
        out = [Family(name, "gauge", help_, ((name, (), value),)) for name, help_, value in gauges]
        cpu = (float(fields[11]) + float(fields[12])) / self._ticks
        out.append(Family("process_cpu_seconds_total", "counter",
                          "Total user and system CPU time spent in seconds.",
                          (("process_cpu_seconds_total", (), cpu),)))
        out.append(Family("process_open_fds", "gauge", "Number of open file descriptors.",
                          (("process_open_fds", (), float(open_fds)),)))
        out.append(Family("process_max_fds", "gauge", "Maximum number of open file descriptors.",
                          (("process_max_fds", (), max_fds),)))
        return out
