"""Targets per level, result building and counter rates (pure)."""

from __future__ import annotations

import pytest
from collector_fixtures import GPU, mig, view

from gpu_exporter.collectors.base import ResultBuilder
from gpu_exporter.collectors.rates import RateTracker, counter_rate
from gpu_exporter.model import Sample, Unsupported


def _entities(v, level):
    return [t.entity for t in v.targets[level]]


def test_whole_gpu_targets() -> None:
    v = view()
    assert _entities(v, "device") == [GPU]
    assert _entities(v, "instance") == [GPU]
    assert _entities(v, "entity") == [GPU]
    assert v.entities == (GPU,)


def test_mig_gpu_splits_instance_level_fields_with_device_fields_once() -> None:
    v = view(mig_ids=(7, 9), once=True)
    assert not v.repeat_device
    assert _entities(v, "device") == [GPU]
    assert _entities(v, "instance") == [mig(7, 0), mig(9, 1)]
    assert _entities(v, "entity") == [GPU, mig(7, 0), mig(9, 1)]
    assert v.entities == (GPU, mig(7, 0), mig(9, 1))
    assert [t.gi_id for t in v.targets["instance"]] == [7, 9]


def test_mig_gpu_by_default_is_its_instances_and_device_fields_are_read_on_the_gpu() -> None:
    # dcgm-exporter's layout: the GPU has no series of its own; device-level fields are read
    # once from the GPU handle and the sampler repeats them on each instance.
    v = view(mig_ids=(7, 9))
    assert v.repeat_device
    assert _entities(v, "device") == [GPU]
    assert [t.handle for t in v.targets["device"]] == [v.handle]
    assert _entities(v, "instance") == [mig(7, 0), mig(9, 1)]
    assert _entities(v, "entity") == [mig(7, 0), mig(9, 1)]
    assert v.entities == (mig(7, 0), mig(9, 1))


def test_mig_enabled_gpu_without_instances_stays_the_gpu() -> None:
    v = view(mig_ids=())
    assert not v.repeat_device
    assert v.entities == (GPU,)


def test_selector_g_keeps_the_whole_gpu_only() -> None:
    v = view(mig_ids=(7,), instances=False)
    assert _entities(v, "instance") == [GPU]
    assert _entities(v, "entity") == [GPU]


def test_selector_i_with_device_fields_once_has_no_device_level_target() -> None:
    v = view(mig_ids=(7,), device=False, once=True)
    assert _entities(v, "device") == []
    assert _entities(v, "instance") == [mig(7, 0)]
    assert _entities(v, "entity") == [mig(7, 0)]


def test_selector_i_by_default_reads_device_fields_for_its_instances() -> None:
    v = view(mig_ids=(7,), device=False)
    assert v.repeat_device
    assert _entities(v, "device") == [GPU]
    assert _entities(v, "entity") == [mig(7, 0)]
    assert v.entities == (mig(7, 0),)


def test_result_builder_converts_and_marks_unsupported() -> None:
    out = ResultBuilder()
    out.add(GPU, 155, 250500)  # mW -> W
    out.add(GPU, 150, 300)  # dropped by the conversion: no sample, not unsupported
    out.add(GPU, 140, None)
    out.unsupported_all(GPU, frozenset({1002, 1001}), "no_gpm")
    result = out.result()
    assert result.samples == (Sample(GPU, 155, 250.5),)
    assert result.unsupported == (
        Unsupported(GPU, 140, "not_supported"),
        Unsupported(GPU, 1001, "no_gpm"),
        Unsupported(GPU, 1002, "no_gpm"),
    )


def test_result_builder_reuses_last_cycles_samples_only_where_nothing_changed() -> None:
    first = ResultBuilder()
    first.add(GPU, 155, 250500)
    first.add(GPU, 160, 700000)
    first.add(GPU, 140, None)
    first.samples.append(Sample(GPU, 230, 0.0, (("err_code", "0"),)))
    first.add(GPU, 150, 41)
    again = ResultBuilder(first.samples, first.unsupported)
    again.add(GPU, 155, 260000)  # changed: a new sample with the new value
    again.add(GPU, 160, 700000)  # unchanged: the same object
    again.add(GPU, 140, None)  # the same mark
    again.samples.append(Sample(GPU, 230, 0.0, (("err_code", "0"),)))
    again.add(GPU, 150, 41)
    result = again.result()
    assert result.samples == (Sample(GPU, 155, 260.0), Sample(GPU, 160, 700.0),
                              Sample(GPU, 230, 0.0, (("err_code", "0"),)), Sample(GPU, 150, 41))
    assert result.samples[0] is not first.samples[0]
    assert result.samples[1] is first.samples[1]
    assert result.samples[3] is first.samples[3]
    assert result.unsupported[0] is first.unsupported[0]
    # an equal but other entity object (a re-probed GPU), another field at that position,
    # or a labelled sample there: never reused
    other = mig(7, 0)
    shifted = ResultBuilder(first.samples, first.unsupported)
    shifted.add(other, 155, 250500)
    shifted.add(GPU, 155, 700000)  # 700 W where field 160 had 700 W
    shifted.add(GPU, 230, 0.0)
    shifted.mark(GPU, 140, "error")
    assert shifted.samples == [Sample(other, 155, 250.5), Sample(GPU, 155, 700.0),
                               Sample(GPU, 230, 0.0)]
    assert not any(a is b for a, b in zip(shifted.samples, first.samples, strict=False))
    assert shifted.unsupported == [Unsupported(GPU, 140, "error")]


@pytest.mark.parametrize(
    ("previous", "current", "rate"),
    [
        (None, (10.0, 100.0), None),
        ((10.0, 100.0), (12.0, 300.0), 100.0),
        ((10.0, 100.0), (10.0, 300.0), None),  # time did not advance
        ((10.0, 100.0), (11.0, 50.0), None),  # counter went back (reset / wrap)
        ((10.0, 100.0), (11.0, 100.0), 0.0),
    ],
)
def test_counter_rate(previous, current, rate) -> None:
    assert counter_rate(previous, current) == rate


def test_rate_tracker_per_key_and_forget() -> None:
    tracker = RateTracker()
    assert tracker.update((0, 449), 1.0, 1000.0) is None
    assert tracker.update((1, 449), 1.0, 5000.0) is None
    assert tracker.update((0, 449), 3.0, 3000.0) == 1000.0
    tracker.forget_gpu(0)
    assert tracker.update((0, 449), 4.0, 4000.0) is None
    assert tracker.update((1, 449), 2.0, 5500.0) == 500.0
