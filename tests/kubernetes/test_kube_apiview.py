"""What the Kubernetes API adds to the kubelet's index: pure functions (apiview, reducers)."""

from __future__ import annotations

from fake_apiserver import pod_object, slice_object

from gpu_exporter.kubernetes.apiserver import (
    MAX_LABEL_VALUE,
    PodMeta,
    SliceDevice,
    reduce_pod,
    reduce_slice_devices,
)
from gpu_exporter.kubernetes.apiview import (
    ApiSettings,
    LabelPolicy,
    apply_api,
    sanitize_label_name,
)
from gpu_exporter.kubernetes.podindex import Claim, Owner, PodIndex, build_index
from gpu_exporter.kubernetes.podresources import Container, Devices, Pod

UUID0 = "GPU-11111111-2222-3333-4444-555555555555"
UUID1 = "GPU-66666666-7777-8888-9999-000000000000"
MIG = "MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


def test_label_names_are_sanitised_as_upstream() -> None:
    assert sanitize_label_name("app.kubernetes.io/name") == "app_kubernetes_io_name"
    assert sanitize_label_name("team") == "team"
    assert sanitize_label_name("batch.kubernetes.io/job-name") == "batch_kubernetes_io_job_name"
    assert sanitize_label_name("9lives") == "_9lives"  # a valid Prometheus name


def test_allowlist_collisions_and_reserved_names() -> None:
    labels = (("app", "a"), ("app.kubernetes.io/name", "x"), ("app_kubernetes_io/name", "y"),
              ("pod", "evil"), ("__meta", "m"), ("team", "t"))
    everything = LabelPolicy()
    # app.kubernetes.io/name < app_kubernetes_io/name: the smaller original key wins, always.
    assert everything.labels(labels) == (
        ("app", "a"), ("app_kubernetes_io_name", "x"), ("team", "t"))
    assert everything.labels(reversed(labels)) == everything.labels(labels)
    only = LabelPolicy(("^app$", "tea"))  # matched anywhere in the original key, as Go's
    assert only.labels(labels) == (("app", "a"), ("team", "t"))


def test_pods_reduce_from_real_objects() -> None:
    key, meta = reduce_pod(pod_object("train-0", "ml", uid="u-1", labels={"app": "train"},
                                      phase="Succeeded"))
    assert key == "ml/train-0"
    assert meta == PodMeta("ml", "train-0", "u-1", "Succeeded", (("app", "train"),))
    assert meta.finished
    huge = pod_object("p", "ns", labels={"big": "x" * (MAX_LABEL_VALUE + 1), "ok": "1"})
    assert reduce_pod(huge)[1].labels == (("ok", "1"),)  # a huge value is dropped, not copied


def test_slices_reduce_in_v1_and_v1beta1_shapes() -> None:
    devices = [{"name": "gpu-0", "type": "gpu", "uuid": UUID0},
               {"name": "gpu-1-mig-1g10gb-3", "type": "mig", "uuid": MIG,
                "parentUUID": UUID1, "profile": "1g.10gb"}]
    for version in ("v1", "v1beta2", "v1beta1"):
        name, reduced = reduce_slice_devices(slice_object("node-gpu-x", "node-a", devices,
                                                          version=version))
        assert name == "node-gpu-x"
        assert reduced == (
            SliceDevice("node-a", "gpu-0", "gpu", UUID0),
            SliceDevice("node-a", "gpu-1-mig-1g10gb-3", "mig", MIG, UUID1, "1g.10gb"),
        ), version
    other = slice_object("s", "p", devices, driver="net.example.com")
    assert reduce_slice_devices(other) == ("s", ())


def _index(*pods: Pod) -> PodIndex:
    return build_index(pods, None)


def _pod(name: str, ns: str, container: str, resource: str, *ids: str) -> Pod:
    return Pod(name, ns, (Container(container, (Devices(resource, ids),)),))


def _meta(name: str, ns: str, phase: str = "Running", **labels: str) -> PodMeta:
    return PodMeta(ns, name, f"uid-{name}", phase, tuple(sorted(labels.items())))


LABELS_AND_UID = ApiSettings(pod_labels=True, pod_uid=True)


def _apply(index: PodIndex, pods: list[PodMeta], deleted: tuple[PodMeta, ...] = (),
           devices: dict[tuple[str, str], SliceDevice] | None = None,
           settings: ApiSettings = LABELS_AND_UID) -> PodIndex:
    return apply_api(index, pods={f"{m.namespace}/{m.name}": m for m in pods},
                     deleted={f"{m.namespace}/{m.name}": True for m in deleted},
                     devices=devices or {}, settings=settings, policy=LabelPolicy())


def test_finished_and_deleted_pods_lose_attribution_in_every_mode() -> None:
    index = _index(
        _pod("done", "ml", "c", "nvidia.com/gpu", UUID0),                 # exclusive
        _pod("alive", "ml", "c", "nvidia.com/gpu", UUID1 + "::0"),        # shared replica
        _pod("failed", "ml", "c", "nvidia.com/gpu", UUID1 + "::1"),       # shared replica
        _pod("mig-gone", "ml", "c", "nvidia.com/mig-1g.10gb", MIG),       # MIG, deleted
        _pod("unseen", "ml", "c", "nvidia.com/gpu", "GPU-new"),            # API not told yet
    )
    out = _apply(index, [_meta("done", "ml", "Succeeded"), _meta("alive", "ml", app="a"),
                         _meta("failed", "ml", "Failed")],
                 deleted=(_meta("mig-gone", "ml"),))
    assert [a.owner.pod for a in out.assignments] == ["alive", "unseen"]
    assert out.extra == {("ml", "alive"): (("pod_uid", "uid-alive"), ("app", "a"))}
    # pod labels only, no uid; and a pod recreated under the same name is attributed again
    only_labels = _apply(index, [_meta("mig-gone", "ml", team="t")],
                         settings=ApiSettings(pod_labels=True))
    assert ("ml", "mig-gone") in only_labels.extra
    assert only_labels.extra[("ml", "mig-gone")] == (("team", "t"),)


def test_dra_claims_map_through_resource_slices() -> None:
    owner = Owner("ml", "dra-pod", "main")
    index = PodIndex(claims=(
        Claim(owner, "gpu-claim", "ml", "gpu.nvidia.com", "node-a", "gpu-0"),
        Claim(owner, "mig-claim", "ml", "gpu.nvidia.com", "node-a", "gpu-1-mig-1g10gb-3"),
        Claim(owner, "nic", "ml", "net.example.com", "node-a", "eth1"),
        Claim(owner, "late", "ml", "gpu.nvidia.com", "node-a", "gpu-7"),
    ))
    devices = {("node-a", "gpu-0"): SliceDevice("node-a", "gpu-0", "gpu", UUID0),
               ("node-a", "gpu-1-mig-1g10gb-3"): SliceDevice(
                   "node-a", "gpu-1-mig-1g10gb-3", "mig", MIG, UUID1, "1g.10gb")}
    out = _apply(index, [_meta("dra-pod", "ml")], devices=devices,
                 settings=ApiSettings(dra=True))
    assert [(a.device_id, a.ref.kind, a.resource) for a in out.assignments] == [
        (UUID0, "gpu-uuid", "gpu.nvidia.com"), (MIG, "mig-uuid", "gpu.nvidia.com")]
    gpu, mig = out.assignments
    assert dict(gpu.labels) == {"dra_claim_name": "gpu-claim", "dra_claim_namespace": "ml",
                                "dra_driver_name": "gpu.nvidia.com", "dra_pool_name": "node-a",
                                "dra_device_name": "gpu-0"}
    assert dict(mig.labels)["dra_mig_profile"] == "1g.10gb"
    assert dict(mig.labels)["dra_mig_device_uuid"] == MIG
    assert out.unknown_claims == ("node-a/gpu-7",)
    # without --kubernetes-enable-dra claims are not attributed
    assert _apply(index, [], settings=ApiSettings()).assignments == ()


def test_the_api_client_is_loaded_only_when_a_flag_needs_it() -> None:
    """Plain -k imports the refresher and the pure API view, never the API client."""
    import subprocess
    import sys

    code = ("import sys, gpu_exporter.kubernetes.integration, gpu_exporter.kubernetes.apiview; "
            "print('gpu_exporter.kubernetes.apiserver' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"
