"""What the Kubernetes API adds to the kubelet's pod index: pure functions, no I/O.

:func:`apply_api` takes the kubelet's :class:`PodIndex` and what the API watch last said
(pods of the node, recently deleted pods, DRA ResourceSlice devices) and gives the index that
attribution uses:

* assignments of **finished pods** (phase ``Succeeded``/``Failed``, or deleted) are dropped,
  even while the kubelet still lists their devices;
* **DRA claims** of driver ``gpu.nvidia.com`` become assignments of the claimed GPU or MIG
  UUID (looked up by (pool, device) in the ResourceSlices), with upstream's ``dra_*`` labels;
* each pod gets its **extra labels**: ``pod_uid`` (``--kubernetes-enable-pod-uid``) and its
  own labels (``--kubernetes-enable-pod-labels``), names sanitised as upstream does
  (:func:`sanitize_label_name`), filtered by the allowlist, collisions resolved
  deterministically (the smallest original key wins), names the exporter already uses
  dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from gpu_exporter.kubernetes.deviceids import parse_device_id
from gpu_exporter.kubernetes.podindex import Assignment, Claim, Owner, PodIndex
from gpu_exporter.model import Labels

if TYPE_CHECKING:
    from gpu_exporter.kubernetes.apiserver import PodMeta, SliceDevice

_INVALID = re.compile(r"[^a-zA-Z0-9_]")

RESERVED_LABELS = frozenset({
    "gpu", "UUID", "uuid", "pci_bus_id", "device", "modelName", "model_name", "Hostname",
    "hostname", "GPU_I_PROFILE", "GPU_I_ID", "container", "namespace", "pod", "pod_uid",
    "vgpu", "hpc_job", "err_code", "err_msg", "pod_name", "pod_namespace", "container_name",
    "dra_claim_name", "dra_claim_namespace", "dra_driver_name", "dra_pool_name",
    "dra_device_name", "dra_mig_profile", "dra_mig_device_uuid", "resource", "instance", "job",
})
"""Label names our series already carry (or Prometheus sets): a pod label never takes them."""

DRA_RESOURCE = "gpu.nvidia.com"
"""``resource`` label of DRA allocations in ``gpu_exporter_gpu_allocated`` (the driver)."""


def sanitize_label_name(key: str) -> str:
    """A pod label key as a Prometheus label name.

    As dcgm-exporter: every character outside ``[a-zA-Z0-9_]`` becomes ``_``
    (``app.kubernetes.io/name`` -> ``app_kubernetes_io_name``); a leading digit, which
    upstream leaves and Prometheus refuses, gets a ``_`` in front.
    """
    name = _INVALID.sub("_", key)
    if name[:1].isdigit():
        name = "_" + name
    return name


@dataclass
class LabelPolicy:
    """Which pod labels are copied, and under which names (decisions cached, bounded).

    Args:
        allowlist: regexes matched (anywhere, as Go's ``MatchString``) against the original
            label key; empty: every label.
    """

    allowlist: tuple[str, ...] = ()
    _compiled: tuple[re.Pattern[str], ...] = field(default=(), init=False)
    _names: dict[str, str | None] = field(default_factory=dict, init=False)

    CACHE = 65536

    def __post_init__(self) -> None:
        self._compiled = tuple(re.compile(p) for p in self.allowlist)

    def name_of(self, key: str) -> str | None:
        """The label name ``key`` is copied as, or ``None`` when it is not copied."""
        try:
            return self._names[key]
        except KeyError:
            pass
        name: str | None = None
        if not self._compiled or any(p.search(key) for p in self._compiled):
            name = sanitize_label_name(key)
            if not name or name in RESERVED_LABELS or name.startswith("__"):
                name = None
        if len(self._names) >= self.CACHE:
            self._names.clear()
        self._names[key] = name
        return name

    def labels(self, pod_labels: Iterable[tuple[str, str]]) -> Labels:
        """The copied labels, sorted by name; on a name collision the smallest key wins."""
        out: dict[str, str] = {}
        for key, value in sorted(pod_labels):
            name = self.name_of(key)
            if name is not None and name not in out:
                out[name] = value
        return tuple(sorted(out.items()))


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Which API features are on."""

    pod_labels: bool = False
    pod_uid: bool = False
    dra: bool = False


def pod_extra_labels(meta: PodMeta, settings: ApiSettings, policy: LabelPolicy) -> Labels:
    """``pod_uid`` and the copied pod labels of one pod."""
    extra: Labels = (("pod_uid", meta.uid),) if settings.pod_uid and meta.uid else ()
    if settings.pod_labels:
        extra += policy.labels(meta.labels)
    return extra


def _is_gone(key: str, pods: Mapping[str, PodMeta], deleted: Mapping[str, bool]) -> bool:
    meta = pods.get(key)
    if meta is not None:
        return meta.finished
    return key in deleted


def dra_assignments(
    claims: Iterable[Claim], devices: Mapping[tuple[str, str], SliceDevice]
) -> tuple[list[Assignment], list[str]]:
    """Assignments of the GPU/MIG devices claimed through ``gpu.nvidia.com``.

    Returns:
        the assignments (device id = the device's ``uuid``), and the ``pool/device`` names
        no ResourceSlice knows yet (sorted).
    """
    out: list[Assignment] = []
    unknown: set[str] = set()
    for claim in claims:
        if claim.driver != DRA_RESOURCE:
            continue
        device = devices.get((claim.pool, claim.device))
        ref = parse_device_id(device.uuid) if device is not None else None
        if device is None or ref is None:
            unknown.add(f"{claim.pool}/{claim.device}")
            continue
        labels: Labels = (
            ("dra_claim_name", claim.claim_name),
            ("dra_claim_namespace", claim.claim_namespace),
            ("dra_driver_name", claim.driver),
            ("dra_pool_name", claim.pool),
            ("dra_device_name", claim.device),
        )
        if device.type == "mig" or device.uuid.startswith("MIG-"):
            labels += (("dra_mig_profile", device.profile),
                       ("dra_mig_device_uuid", device.uuid))
        out.append(Assignment(claim.owner, DRA_RESOURCE, device.uuid, ref, labels))
    return out, sorted(unknown)


def apply_api(
    index: PodIndex,
    *,
    pods: Mapping[str, PodMeta],
    deleted: Mapping[str, bool],
    devices: Mapping[tuple[str, str], SliceDevice],
    settings: ApiSettings,
    policy: LabelPolicy,
) -> PodIndex:
    """The kubelet index as the API sees it (see the module docstring)."""
    assignments: list[Assignment] = list(index.assignments)
    unknown: list[str] = []
    if settings.dra and index.claims:
        extra_items, unknown = dra_assignments(index.claims, devices)
        assignments.extend(extra_items)
    kept: list[Assignment] = []
    gone: dict[str, bool] = {}
    extra: dict[tuple[str, str], Labels] = {}
    for item in assignments:
        owner: Owner = item.owner
        key = f"{owner.namespace}/{owner.pod}"
        finished = gone.get(key)
        if finished is None:
            finished = gone[key] = _is_gone(key, pods, deleted)
            meta = pods.get(key)
            if not finished and meta is not None:
                labels = pod_extra_labels(meta, settings, policy)
                if labels:
                    extra[(owner.namespace, owner.pod)] = labels
        if not finished:
            kept.append(item)
    kept.sort(key=lambda a: (a.owner.namespace, a.owner.pod))
    return replace(index, assignments=tuple(kept), extra=extra,
                   claims=(), unknown_claims=tuple(unknown))
