"""Our own metric families: names, types, help texts and label names.

Names are an API: snake_case, ``gpu_exporter_`` prefix, base units. Producers build
:class:`gpu_exporter.model.Native` samples with these names; the renderer looks the
family up here. ``gpu_labels`` means the dcgm GPU label set comes first (from
``Native.entity``), with ``model_name`` in place of dcgm's camelCase ``modelName`` so that
every ``gpu_exporter_*`` family passes ``promtool check metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricType = Literal["gauge", "counter", "info"]


@dataclass(frozen=True, slots=True)
class NativeMetric:
    """Definition of one ``gpu_exporter_*`` family."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    gpu_labels: bool = False


WORKLOAD_LABELS = ("workload_kind", "workload", "container", "namespace", "pod", "uid", "pid")
"""Labels of the workload families; container/namespace/pod only where known, uid on Slurm
jobs whose cgroup path names the user, pid opt-in (--workload-pid-labels)."""


def _m(
    name: str,
    type_: MetricType,
    help_: str,
    labels: tuple[str, ...] = (),
    *,
    gpu_labels: bool = False,
) -> NativeMetric:
    return NativeMetric(name, type_, help_, labels, gpu_labels)


NATIVE_METRICS: dict[str, NativeMetric] = {
    m.name: m
    for m in (
        _m("gpu_exporter_build_info", "gauge",
           "Build information; the value is always 1.",
           ("version", "python_version", "driver_version", "nvml_version")),
        _m("gpu_exporter_gpu_up", "gauge",
           "1 when the last collection cycle could read this GPU, 0 when it is lost or failing.",
           gpu_labels=True),
        _m("gpu_exporter_gpu_slow", "gauge",
           "1 while this GPU answers NVML slower than the collection waits (the collect "
           "interval, 1-10 s): its values are those of its last complete read (see "
           "gpu_exporter_gpu_data_age_seconds); a call outstanding for 10 s makes it "
           "gpu_exporter_gpu_up 0.", gpu_labels=True),
        _m("gpu_exporter_gpu_data_age_seconds", "gauge",
           "Age of this GPU's exported values at the end of the collection cycle, from the "
           "start of the cycle that read them: 0 when read this cycle, more while it is slow.",
           gpu_labels=True),
        _m("gpu_exporter_field_supported", "gauge",
           "0 for a DCGM field requested in the counters file that the GPU cannot provide (see "
           "the reason label), 1 once such a field is read again; a requested field without a "
           "row is supported. Unsupported fields are never exported as 0.",
           ("field", "reason"), gpu_labels=True),
        _m("gpu_exporter_collector_duration_seconds", "gauge",
           "Wall time the collector took in the last collection cycle.", ("collector",)),
        _m("gpu_exporter_collector_success", "gauge",
           "1 when the collector succeeded for every GPU in the last cycle, else 0.",
           ("collector",)),
        _m("gpu_exporter_collection_duration_seconds", "gauge",
           "Wall time of the last whole collection cycle."),
        _m("gpu_exporter_collect_interval_seconds", "gauge",
           "Configured collection interval (-c); snapshots older than 3 intervals are stale."),
        _m("gpu_exporter_counters_last_reload_successful", "gauge",
           "0 while the counters file on disk is refused (malformed, unreadable, not a regular "
           "file, or emptied while it had rows): the last good file stays in use; else 1."),
        _m("gpu_exporter_collections_total", "counter",
           "Collection cycles completed since start."),
        _m("gpu_exporter_snapshot_timestamp_seconds", "gauge",
           "Unix time at which the served snapshot was collected; /metrics is pre-rendered once "
           "per cycle, so its age is time() minus this value."),
        _m("gpu_exporter_snapshot_stale", "gauge",
           "1 when the served snapshot is older than its bound (3 collect intervals, at least "
           "30 s: /ready fails too) because the collection loop has published nothing since; "
           "its values are then those of the last cycle; else 0."),
        _m("gpu_exporter_event_wait_stuck_seconds", "gauge",
           "Seconds the NVML event thread's current wait has run past its own timeout, once "
           "that is more than 5 s: the wait is stuck and XID events are not received; else 0."),
        _m("gpu_exporter_dcgm_up", "gauge",
           "1 while connected to the DCGM host engine given by -r or --dcgm-local (profiling "
           "fields of GPUs without GPM come from it), 0 while not (no engine answering, or no "
           "libdcgm); absent when no DCGM engine is asked for."),
        _m("gpu_exporter_nvml_errors_total", "counter",
           "NVML calls that failed, by function and NVML return code (NOT_SUPPORTED excluded).",
           ("function", "code")),
        _m("gpu_exporter_xid_errors_total", "counter",
           "XID errors seen by the event watcher since start, by XID code.",
           ("xid",), gpu_labels=True),
        _m("gpu_exporter_http_connections", "gauge",
           "Open HTTP connections (all listeners)."),
        _m("gpu_exporter_http_connections_max", "gauge",
           "Connection limit of the metrics listener, below the descriptor limit."),
        _m("gpu_exporter_http_connections_closed_total", "counter",
           "Connections closed by a serving limit: limit (refused when full), evicted (idle, "
           "closed to make room), read_timeout, write_timeout, tls_handshake, client_san.",
           ("reason",)),
        _m("gpu_exporter_http_errors_total", "counter",
           "Malformed requests and server-side errors, by kind; the log shows a few a minute.",
           ("kind",)),
        _m("gpu_exporter_http_requests_refused_total", "counter",
           "Requests refused by the web config: unauthorized (basic auth) or rate_limited.",
           ("reason",)),
        _m("gpu_exporter_web_config_last_reload_successful", "gauge",
           "1 when the last check of the web config file and its certificate files found "
           "them valid (or unchanged), 0 while a bad edit is being ignored."),
        _m("gpu_exporter_web_config_last_reload_success_timestamp_seconds", "gauge",
           "Unix time of the last successful load of the web config file."),
        _m("gpu_exporter_pod_index_age_seconds", "gauge",
           "Age of the pod-resources index used for pod attribution at collection time."),
        _m("gpu_exporter_kubelet_up", "gauge",
           "1 when the last kubelet pod-resources refresh succeeded, else 0."),
        _m("gpu_exporter_kube_api_up", "gauge",
           "1 while the Kubernetes API watch of this resource works (pod labels, pod UIDs, "
           "finished pods, DRA), else 0.", ("resource",)),
        _m("gpu_exporter_kube_api_last_sync_age_seconds", "gauge",
           "Seconds since the Kubernetes API last answered for this resource (list, watch "
           "event or bookmark); +Inf before the first answer.", ("resource",)),
        _m("gpu_exporter_kube_api_relists_total", "counter",
           "Full lists of this resource after the first one (410 Gone, failures).",
           ("resource",)),
        _m("gpu_exporter_workload_sm_utilization_ratio", "gauge",
           "Share of NVML's latest sample period (1/6-1 s, the window of "
           "DCGM_FI_DEV_GPU_UTIL) in which this workload's kernels ran on the GPU (0-1). Per "
           "GPU the workloads plus workload=\"unattributed\" sum to DCGM_FI_DEV_GPU_UTIL / 100 "
           "(--workload-metrics; every sample of the cycle goes into the energy split).",
           WORKLOAD_LABELS, gpu_labels=True),
        _m("gpu_exporter_workload_memory_utilization_ratio", "gauge",
           "Share of NVML's latest sample period in which this workload read or wrote device "
           "memory (0-1; sums to the device's memory utilisation with "
           "workload=\"unattributed\").",
           WORKLOAD_LABELS, gpu_labels=True),
        _m("gpu_exporter_workload_encoder_utilization_ratio", "gauge",
           "Share of NVML's latest sample period in which this workload used the video "
           "encoder (0-1; sums to the device's encoder utilisation with "
           "workload=\"unattributed\").",
           WORKLOAD_LABELS, gpu_labels=True),
        _m("gpu_exporter_workload_decoder_utilization_ratio", "gauge",
           "Share of NVML's latest sample period in which this workload used the video "
           "decoder (0-1; sums to the device's decoder utilisation with "
           "workload=\"unattributed\").",
           WORKLOAD_LABELS, gpu_labels=True),
        _m("gpu_exporter_workload_memory_used_bytes", "gauge",
           "GPU memory used by this workload's processes; workload=\"unattributed\" holds "
           "the rest of the device's used memory (driver contexts, unattributed processes).",
           WORKLOAD_LABELS, gpu_labels=True),
        _m("gpu_exporter_workload_energy_joules_total", "counter",
           "Device energy attributed to this workload since it was first seen on this GPU: "
           "each cycle's energy split by its SM time over the cycle (every process sample), "
           "the idle share by memory held (docs/workloads.md); kept 5 minutes after the "
           "workload leaves the GPU; whole GPUs only.",
           WORKLOAD_LABELS, gpu_labels=True),
        _m("gpu_exporter_workload_processes", "gauge",
           "GPU processes of this workload (compute, graphics and MPS clients).",
           WORKLOAD_LABELS, gpu_labels=True),
        _m("gpu_exporter_workload_utilization_available", "gauge",
           "0 where NVML has no per-process utilisation (reason mig: MIG instances and GPUs "
           "in MIG mode; not_supported): the workload utilisation and energy families are "
           "absent there, never 0.",
           ("reason",), gpu_labels=True),
        _m("gpu_exporter_gpu_allocatable", "gauge",
           "1 for each GPU or MIG instance the kubelet reports as allocatable to pods.",
           ("resource",), gpu_labels=True),
        _m("gpu_exporter_gpu_allocated", "gauge",
           "1 for each GPU or MIG instance allocated to a pod container, with its owner.",
           ("resource", "namespace", "pod", "container"), gpu_labels=True),
    )
}
