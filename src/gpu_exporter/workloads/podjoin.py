"""Pod UID and container id -> ``namespace``, ``pod``, ``container`` (pure, plus one holder).

A GPU process of a pod names, through its cgroup, the pod's UID and the container's runtime
id. Names come from two places, both kept by the Kubernetes refresher (``-k``):

- **the Kubernetes API watch** of the node's pods: UID -> namespace and name, and each
  container's runtime id (``status.containerStatuses[].containerID``) -> container name;
- **without it, the kubelet's pod-resources** only where that is unambiguous: the GPU or
  MIG instance the process runs on is allocated to exactly one container, and the pod
  processes on it all belong to one pod UID and one container id. Anything else (a shared
  GPU without the API, two pods on a GPU one of them holds) gets no names: the workload keeps
  its id only, never a guessed pod.

The refresher builds a :class:`PodDirectory` after each cycle (on the event loop) and
publishes it by rebinding :attr:`PodDirectoryHolder.current`; the GPU workers read it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gpu_exporter.model import Labels, Native, split_natives
from gpu_exporter.workloads.cgroup import WorkloadRef

__all__ = ["EntityKey", "OwnValues", "PodDirectory", "PodDirectoryHolder", "PodEntry",
           "own_values", "pod_labels"]

EntityKey = tuple[int, int | None]
"""(GPU index, GPU instance id or ``None``), as the pod join keys entities."""


@dataclass(frozen=True, slots=True)
class PodEntry:
    """One pod as the API sees it."""

    namespace: str
    name: str
    containers: Mapping[str, str] = field(default_factory=dict)  # runtime id -> name


@dataclass(frozen=True, slots=True)
class PodDirectory:
    """What names pod processes (see the module).

    Attributes:
        pods: pod UID -> its entry, from the API watch (empty without it).
        holders: entity -> the (namespace, pod, container) it is allocated to, for entities
            the kubelet reports allocated to exactly one container.
    """

    pods: Mapping[str, PodEntry] = field(default_factory=dict)
    holders: Mapping[EntityKey, tuple[str, str, str]] = field(default_factory=dict)


EMPTY = PodDirectory()


class PodDirectoryHolder:
    """The current directory; one writer (the event loop) rebinds it, GPU workers read it."""

    def __init__(self) -> None:
        self.current: PodDirectory = EMPTY


def pod_labels(
    directory: PodDirectory, ref: WorkloadRef, entity: EntityKey, *, sole: bool,
) -> Labels:
    """``container``/``namespace``/``pod`` pairs of a pod process, or ``()`` when unknown.

    Args:
        directory: the current directory.
        ref: the process's workload (kind ``pod``).
        entity: the GPU or MIG instance it runs on.
        sole: its (pod UID, container id) is the only one among the pod processes on
            ``entity`` this cycle (the kubelet fallback needs it).
    """
    entry = directory.pods.get(ref.pod_uid)
    if entry is not None:
        container = entry.containers.get(ref.container_id)
        pairs: Labels = (("namespace", entry.namespace), ("pod", entry.name))
        return ((("container", container),) if container else ()) + pairs
    holder = directory.holders.get(entity)
    if holder is not None and sole and not directory.pods:
        namespace, pod, container = holder
        return (("container", container), ("namespace", namespace), ("pod", pod))
    return ()


GPU_UTIL = 203
FB_USED = 252
_SM = "gpu_exporter_workload_sm_utilization_ratio"
_MEMORY = "gpu_exporter_workload_memory_used_bytes"
MIB = 1 << 20
_OWN = {_SM: (GPU_UTIL, 100.0), _MEMORY: (FB_USED, 1.0)}

OwnValues = Mapping[tuple[EntityKey, int], Mapping[tuple[str, str], float]]
"""(entity, DCGM field id) -> (namespace, pod) -> the pod's own value in DCGM's unit."""


def own_values(natives: Iterable[Native]) -> dict[tuple[EntityKey, int], dict[tuple[str, str],
                                                                               float]]:
    """Each named pod's own ``DCGM_FI_DEV_GPU_UTIL`` and ``DCGM_FI_DEV_FB_USED`` (pure).

    From the cycle's workload rows that carry ``namespace`` and ``pod``: the pod's SM
    utilisation (its containers summed, in percent) and its processes' memory (MiB,
    truncated as DCGM does), per GPU or MIG instance. For ``--kubernetes-virtual-gpus``.
    """
    sums: dict[tuple[EntityKey, int], dict[tuple[str, str], float]] = {}
    singles, blocks = split_natives(natives)
    rows = [(n.name, n.entity, n.labels, n.value) for n in singles if n.name in _OWN]
    rows.extend((name, block.entity, labels, value) for block in blocks
                for name, labels_of, values in zip(block.names, block.labels, block.values,
                                                   strict=True) if name in _OWN
                for labels, value in zip(labels_of, values, strict=True))
    for name, entity, pairs, value in rows:
        fid, scale = _OWN[name]
        labels = dict(pairs)
        namespace, pod = labels.get("namespace"), labels.get("pod")
        if entity is None or namespace is None or pod is None:
            continue
        per_pod = sums.setdefault(((entity.gpu, entity.gi_id), fid), {})
        per_pod[(namespace, pod)] = per_pod.get((namespace, pod), 0.0) + value * scale
    for (_, fid), per_pod in sums.items():
        for key, value in per_pod.items():
            per_pod[key] = float(int(value) // MIB) if fid == FB_USED else round(value, 3)
    return sums

