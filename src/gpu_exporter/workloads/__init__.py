"""Per-workload attribution of GPU processes (``--workload-metrics``).

:mod:`.cgroup` maps a process's ``/proc/<pid>/cgroup`` text to the workload it names (pure);
:mod:`.procfs` reads those files under ``--procfs-root``, bounded, and caches per PID.
"""
