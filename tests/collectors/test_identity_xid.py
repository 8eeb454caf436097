"""Identity (cached label fields) and the XID collector over the event log (pure parts)."""

from __future__ import annotations

import dataclasses

from collector_fixtures import GPU, mig, view

from gpu_exporter.collectors.identity import IdentityCollector
from gpu_exporter.collectors.xid import XidCollector
from gpu_exporter.events import EventLog
from gpu_exporter.model import Sample, Unsupported


def test_identity_labels_on_every_entity_and_cached() -> None:
    collector = IdentityCollector()
    v = view(mig_ids=(7,), once=True)
    fields = frozenset({1, 53, 85, 52})
    result = collector.collect(v, fields, {}, 0.0)
    assert Sample(GPU, 1, "570.1") in result.samples
    assert Sample(mig(7, 0), 1, "570.1") in result.samples
    assert Sample(mig(7, 0), 53, "1650") in result.samples
    assert Sample(GPU, 52, 0.0) in result.samples  # numeric, device level only
    assert Unsupported(GPU, 85, "not_supported") in result.unsupported
    assert collector.collect(v, fields, {}, 1.0) is result  # static: built once per probe
    assert collector.collect(view(mig_ids=(7,)), fields, {}, 1.0) is not result


def test_identity_in_dcgm_exporter_s_mig_layout_labels_the_instances_only() -> None:
    result = IdentityCollector().collect(view(mig_ids=(7,)), frozenset({1, 52}), {}, 0.0)
    # label fields on the instance; device-level numbers on the GPU (the sampler copies them)
    assert set(result.samples) == {Sample(mig(7, 0), 1, "570.1"), Sample(GPU, 52, 0.0)}


class _SystemNvml:
    """The NVML calls behind the identity numbers, with fixed answers."""

    def __init__(self, *, cuda: int | None) -> None:
        self.cuda = cuda

    @staticmethod
    def device_count() -> int:
        return 8

    def cuda_driver_version(self) -> int | None:
        return self.cuda

    @staticmethod
    def minor_number(_handle: object) -> int:
        return 3


def test_identity_numbers_count_cuda_version_and_minor_number() -> None:
    v = dataclasses.replace(view(mig_ids=(7,), once=True), nvml=_SystemNvml(cuda=12040))
    result = IdentityCollector().collect(v, frozenset({4, 5, 55}), {}, 0.0)
    assert set(result.samples) == {
        Sample(GPU, 4, 8.0), Sample(mig(7, 0), 4, 8.0),  # system wide: every entity
        Sample(GPU, 5, 12040.0), Sample(mig(7, 0), 5, 12040.0),  # CUDA 12.4, as DCGM gives it
        Sample(GPU, 55, 3.0),  # /dev/nvidia3: device level
    }
    v = dataclasses.replace(view(), nvml=_SystemNvml(cuda=None))
    result = IdentityCollector().collect(v, frozenset({5}), {}, 0.0)
    assert result.unsupported == (Unsupported(GPU, 5, "not_supported"),)


def test_xid_collector_unsupported_without_events() -> None:
    collector = XidCollector(EventLog(), lambda gpu: False)
    result = collector.collect(view(), frozenset({230}), {}, 0.0)
    assert result.samples == ()
    assert result.unsupported == (Unsupported(GPU, 230, "not_supported"),)


def test_xid_collector_reports_every_entity() -> None:
    log = EventLog(describe=lambda code: f"text {code}")
    log.set_instances(0, [7])
    log.record_xid(0, 31, 5.0, gi_id=7)
    collector = XidCollector(log, lambda gpu: True)
    result = collector.collect(view(mig_ids=(7,), once=True), frozenset({230}), {}, 6.0)
    by_entity = {s.entity: s.value for s in result.samples}
    assert by_entity == {GPU: 0.0, mig(7, 0): 31.0}


def test_xid_collector_in_dcgm_exporter_s_mig_layout_shows_gpu_xids_on_each_instance() -> None:
    log = EventLog(describe=lambda code: f"text {code}")
    log.set_instances(0, [7, 9])
    log.record_xid(0, 79, 4.0)  # the whole GPU
    log.record_xid(0, 31, 5.0, gi_id=7)  # instance 7 only
    collector = XidCollector(log, lambda gpu: True)
    result = collector.collect(view(mig_ids=(7, 9)), frozenset({230, 9001}), {}, 6.0)
    last = {s.entity: s.value for s in result.samples if s.field_id == 230}
    assert last == {mig(7, 0): 31.0, mig(9, 1): 79.0}
    counts = {(s.entity, s.labels) for s in result.samples if s.field_id == 9001}
    window = ("window_size_in_ms", "300000")
    assert counts == {
        (mig(7, 0), (window, ("xid", "31"))), (mig(7, 0), (window, ("xid", "79"))),
        (mig(9, 1), (window, ("xid", "79"))),
    }


def test_xid_collector_reuses_quiet_samples_until_an_event_is_recorded() -> None:
    log = EventLog(describe=lambda code: f"text {code}", xid_window_s=10.0)
    collector = XidCollector(log, lambda gpu: True)
    v = view()
    fields = frozenset({230, 9001})
    quiet = collector.collect(v, fields, {}, 1.0).samples
    assert {(s.field_id, s.value) for s in quiet} == {(230, 0.0), (9001, 0.0)}
    again = collector.collect(v, fields, {}, 2.0).samples
    assert again == quiet
    assert all(a is b for a, b in zip(again, quiet, strict=True))  # the same objects
    log.record_xid(0, 79, 3.0)
    loud = collector.collect(v, fields, {}, 4.0).samples
    assert {(s.field_id, s.value) for s in loud} == {(230, 79.0), (9001, 1.0)}
    assert collector.collect(v, fields, {}, 5.0).samples == loud  # still in the window
    # once it has left the window, the zeros are back (built anew, then reused)
    after = collector.collect(v, fields, {}, 20.0).samples
    assert {(s.field_id, s.value) for s in after} == {(230, 0.0), (9001, 0.0)}
    assert collector.collect(v, fields, {}, 21.0).samples == after
