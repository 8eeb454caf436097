"""Batched field-value requests and their decoding into samples (pure)."""

from __future__ import annotations

import pytest
from collector_fixtures import GPU, mig, reading, view

from gpu_exporter.collectors.field_values import FieldValuesCollector, field_requests
from gpu_exporter.collectors.nvlink import NvlinkCollector, kib_rate_to_reported
from gpu_exporter.collectors.pcie import PcieCollector
from gpu_exporter.model import Sample, Unsupported

ALL_LINKS = 0xFFFFFFFF


def test_requests_cover_wanted_fields_once() -> None:
    requests = field_requests([156, 140, 393, 449, 440, 155, 1001, 200, 9999])
    assert requests == (
        (82, 0), (83, 0), (138, 0), (138, ALL_LINKS), (139, 0), (139, ALL_LINKS), (143, 0),
        (197, 0),
    )
    assert field_requests([]) == ()


def test_field_values_decode_per_entry() -> None:
    readings = dict([
        reading(83, 123456789.0),
        reading(82, 250.0),  # garbage temperature: dropped
        reading(3, None, code=3),  # ECC not supported
        reading(143, None, code=999),  # another failure: counted elsewhere, no sample
        reading(145, 0.0),
    ])
    result = FieldValuesCollector().collect(
        view(mig_ids=(7,)), frozenset({156, 140, 310, 393, 395, 202}), readings, 0.0)
    assert result.samples == (Sample(GPU, 156, 123456789.0), Sample(GPU, 395, 0.0))
    assert set(result.unsupported) == {
        Unsupported(GPU, 202, "not_supported"),  # no entry at all: the batch lacked it
        Unsupported(GPU, 310, "not_supported"),
        Unsupported(GPU, 393, "error"),  # never produced, so never "supported"
    }
    # device level: nothing for the MIG instance
    assert all(s.entity != mig(7, 0) for s in result.samples)


def test_nvlink_bandwidth_is_a_rate_from_the_second_cycle() -> None:
    collector = NvlinkCollector()
    v = view()
    first = dict([reading(138, 1000.0, scope=ALL_LINKS, stamp_us=1_000_000),
                  reading(139, 3000.0, scope=ALL_LINKS, stamp_us=1_000_000)])
    assert collector.collect(v, frozenset({449}), first, 1.0).samples == ()
    second = dict([reading(138, 501000.0, scope=ALL_LINKS, stamp_us=3_000_000),
                   reading(139, 503000.0, scope=ALL_LINKS, stamp_us=3_000_000)])
    (sample,) = collector.collect(v, frozenset({449}), second, 3.0).samples
    # 1,000,000 KiB over 2 s = 500,000 KiB/s; dcgm-exporter reports KiB/s / 1000
    assert sample.field_id == 449
    assert sample.value == 500.0
    collector.reset(0)
    assert collector.collect(v, frozenset({449}), second, 4.0).samples == ()


@pytest.mark.parametrize(
    ("kib_per_s", "expected"), [(0.0, 0.0), (1000.0, 1.0), (500_000.0, 500.0), (1536.0, 1.536)])
def test_nvlink_reported_rate_is_kib_per_second_over_1000(
        kib_per_s: float, expected: float) -> None:
    assert kib_rate_to_reported(kib_per_s) == pytest.approx(expected)


def test_nvlink_entry_error_marks_the_field() -> None:
    readings = dict([reading(138, None, scope=ALL_LINKS, code=4),  # NO_PERMISSION
                     reading(139, 10.0, scope=ALL_LINKS)])
    result = NvlinkCollector().collect(view(), frozenset({449}), readings, 1.0)
    assert result.samples == ()
    assert result.unsupported == (Unsupported(GPU, 449, "error"),)


def test_nvlink_unsupported_on_gpus_without_nvlink() -> None:
    readings = dict([reading(138, None, scope=ALL_LINKS, code=3),
                     reading(139, None, scope=ALL_LINKS, code=3)])
    result = NvlinkCollector().collect(view(), frozenset({449}), readings, 1.0)
    assert result.unsupported == (Unsupported(GPU, 449, "not_supported"),)


def test_pcie_throughput_rate_in_kb_per_second() -> None:
    collector = PcieCollector()
    v = view()
    collector.collect(v, frozenset({200}), dict([reading(197, 0.0, stamp_us=1_000_000)]), 1.0)
    result = collector.collect(
        v, frozenset({200}), dict([reading(197, 2048000.0, stamp_us=2_000_000)]), 2.0)
    assert result.samples == (Sample(GPU, 200, 2000.0),)


def test_pcie_counter_entry_error_marks_the_field() -> None:
    readings = dict([reading(197, None, code=4)])  # NO_PERMISSION on the TX byte counter
    result = PcieCollector().collect(view(), frozenset({200}), readings, 1.0)
    assert result.samples == ()
    assert result.unsupported == (Unsupported(GPU, 200, "error"),)
