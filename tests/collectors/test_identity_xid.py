"""Identity (cached label fields) and the XID collector over the event log (pure parts)."""

from __future__ import annotations

from collector_fixtures import GPU, mig, view

from gpu_exporter.collectors.identity import IdentityCollector
from gpu_exporter.collectors.xid import XidCollector
from gpu_exporter.events import EventLog
from gpu_exporter.model import Sample, Unsupported


def test_identity_labels_on_every_entity_and_cached() -> None:
    collector = IdentityCollector()
    v = view(mig_ids=(7,))
    fields = frozenset({1, 53, 85, 52})
    result = collector.collect(v, fields, {}, 0.0)
    assert Sample(GPU, 1, "570.1") in result.samples
    assert Sample(mig(7, 0), 1, "570.1") in result.samples
    assert Sample(mig(7, 0), 53, "1650") in result.samples
    assert Sample(GPU, 52, 0.0) in result.samples  # numeric, device level only
    assert Unsupported(GPU, 85, "not_supported") in result.unsupported
    assert collector.collect(v, fields, {}, 1.0) is result  # static: built once per probe
    assert collector.collect(view(mig_ids=(7,)), fields, {}, 1.0) is not result


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
    result = collector.collect(view(mig_ids=(7,)), frozenset({230}), {}, 6.0)
    by_entity = {s.entity: s.value for s in result.samples}
    assert by_entity == {GPU: 0.0, mig(7, 0): 31.0}
