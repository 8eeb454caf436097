"""The DCGM source: planning and merging (pure), and its thread against a fake engine API.

The fake (:class:`FakeDcgm`) stands in for :class:`gpu_exporter.dcgm.Dcgm` at our own
boundary, with DCGM's documented behaviour for what these tests need: return codes raised as
DcgmError, per-value status, blank kinds, metric groups, MIG hierarchy. The real C ABI is
tested against the simulator's stub engine in tests/test_dcgm_engine.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import pytest
from collectors.collector_fixtures import GPU, mig, view

from gpu_exporter.config import DcgmSettings
from gpu_exporter.dcgm import (
    FE_GPU,
    FE_GPU_I,
    Dcgm,
    DcgmError,
    DcgmLibraryNotFound,
    FieldValue,
    Handle,
    MetricGroup,
    MigEntity,
)
from gpu_exporter.dcgmsource import (
    REPROBE_S,
    DcgmSource,
    Demand,
    GpuDemand,
    GpuReadout,
    Readout,
    Unit,
    backoff,
    choose_groups,
    decode_values,
    demand_of,
    drop_for_multi_pass,
    merge,
    plan_units,
    status_reason,
    wait_bound,
)
from gpu_exporter.model import Sample, Unsupported

PROF = frozenset({1001, 1002, 1004, 1005, 1009, 1010})


# ---------------------------------------------------------------------------- pure parts


def test_status_reasons() -> None:
    assert status_reason(-36) == "profiling_not_supported"
    assert status_reason(-33) == "profiling_module_not_loaded"
    assert status_reason(-37) == "profiling_library_error"
    assert status_reason(-38) == "profiling_multi_pass"
    assert status_reason(-29) == "not_permissioned"
    assert status_reason(-54) == "paused"
    assert status_reason(-14) == "blank"
    assert status_reason(-3) == "error"


def test_backoff_doubles_to_a_minute() -> None:
    delays = [backoff(None)]
    for _ in range(8):
        delays.append(backoff(delays[-1]))
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_wait_bound_is_half_the_cycle_wait_within_limits() -> None:
    assert wait_bound(10.0) == 2.0
    assert wait_bound(1.0) == 0.5
    assert wait_bound(0.05) == 0.1


def test_choose_groups_orders_by_most_wanted_and_lists_the_rest() -> None:
    groups = (MetricGroup(1, 0, (1004, 1007)), MetricGroup(2, 0, (1001, 1002, 1003)),
              MetricGroup(3, 0, (1001, 1009, 1010)))
    chosen, missing = choose_groups((1001, 1002, 1004, 1009, 1012), groups)
    # 1001 from the first group listing it
    assert chosen == ((2, (1001, 1002)), (1, (1004,)), (3, (1009,)))
    assert missing == {1012: "profiling_not_supported"}


def test_multi_pass_gives_up_a_group_sharing_its_major_first() -> None:
    # T4-like: A.1, A.2, A.3 share major 0; the PCIe group (C) needs no extra pass
    chosen = ((3, (1001,)), (0, (1002, 1003)), (1, (1005,)), (0, (1006,)), (0, (1008,)),
              (2, (1009, 1010)))
    assert drop_for_multi_pass(chosen) == 4
    assert drop_for_multi_pass(chosen[:4]) == 3
    assert drop_for_multi_pass(((3, (1001,)), (0, (1002,)), (2, (1009,)))) == 2  # all alone


def test_plan_units_whole_gpu() -> None:
    units, missing = plan_units(3, GpuDemand("GPU-a"), (1001, 1009), {})
    assert units == (Unit(((FE_GPU, 3),), (None,), (1001, 1009)),)
    assert missing == {}


def test_plan_units_mig_maps_nvml_instance_ids_and_keeps_pcie_on_the_gpu() -> None:
    units, missing = plan_units(0, GpuDemand("GPU-a", (1, 2, 9)), (1001, 1005, 1009),
                                {1: 7, 2: 8})
    assert units == (
        Unit(((FE_GPU_I, 7), (FE_GPU_I, 8)), (1, 2), (1001, 1005)),
        Unit(((FE_GPU, 0),), (None,), (1009,)),
    )
    assert missing == {(9, 1001): "dcgm_no_gpu", (9, 1005): "dcgm_no_gpu"}


def test_demand_skips_gpm_gpus_and_lists_mig_instances() -> None:
    plain = view(gpm=False)
    split = view(mig_ids=(1, 2), gpm=False)
    hopper = view(gpm=True)
    assert demand_of([plain, hopper], PROF) == Demand(tuple(sorted(PROF)),
                                                      (GpuDemand("GPU-aaaa"),))
    assert demand_of([split], {1001}).gpus == (GpuDemand("GPU-aaaa", (1, 2)),)
    assert demand_of([hopper], PROF) == Demand()
    assert demand_of([plain], ()) == Demand()


def _fv(group: int, eid: int, fid: int, value: float | None, *, status: int = 0,
        blank: str | None = None) -> FieldValue:
    return FieldValue(group, eid, fid, status, value, blank, 1)


def test_decode_values_sorts_values_and_reasons() -> None:
    values: dict[tuple[int | None, int], float] = {}
    reasons: dict[tuple[int | None, int], str] = {}
    decode_values([
        _fv(FE_GPU_I, 7, 1001, 0.5),
        _fv(FE_GPU_I, 7, 1005, None, blank="blank"),
        _fv(FE_GPU_I, 8, 1001, None, status=-38),
        _fv(FE_GPU_I, 8, 1005, None, blank="not_permissioned"),
        _fv(FE_GPU_I, 9, 1001, 0.9),  # not ours
        _fv(FE_GPU, 0, 1009, float("inf")),
    ], {(FE_GPU_I, 7): 1, (FE_GPU_I, 8): 2, (FE_GPU, 0): None}, values, reasons)
    assert values == {(1, 1001): 0.5}
    assert reasons == {(1, 1005): "blank", (2, 1001): "profiling_multi_pass",
                       (2, 1005): "not_permissioned", (None, 1009): "error"}


def test_merge_whole_gpu() -> None:
    gpu = GpuReadout(values={(None, 1001): 0.25, (None, 1009): 1.5e9},
                     reasons={(None, 1005): "blank"},
                     field_reasons={1002: "profiling_multi_pass"})
    result = merge(view(gpm=False), frozenset({1001, 1002, 1005, 1009, 1010}),
                   Readout(1, None, {"GPU-aaaa": gpu}))
    assert result.samples == (Sample(GPU, 1001, 0.25), Sample(GPU, 1009, 1.5e9))
    assert set(result.unsupported) == {
        Unsupported(GPU, 1002, "profiling_multi_pass"), Unsupported(GPU, 1005, "blank"),
        Unsupported(GPU, 1010, "dcgm_no_gpu")}


def test_merge_mig_default_layout_puts_gpu_fields_on_the_gpu_for_repeating() -> None:
    gpu = GpuReadout(values={(1, 1001): 0.1, (2, 1001): 0.2, (None, 1009): 7.0})
    split = view(mig_ids=(1, 2), gpm=False)
    assert split.repeat_device
    result = merge(split, frozenset({1001, 1009}), Readout(1, None, {"GPU-aaaa": gpu}))
    assert set(result.samples) == {Sample(mig(1, 0), 1001, 0.1), Sample(mig(2, 1), 1001, 0.2),
                                   Sample(GPU, 1009, 7.0)}
    assert result.unsupported == ()


def test_merge_mig_fields_once_keeps_gpu_fields_on_the_gpu_only() -> None:
    gpu = GpuReadout(values={(1, 1001): 0.1, (None, 1009): 7.0})
    split = view(mig_ids=(1,), gpm=False, once=True)
    result = merge(split, frozenset({1001, 1009}), Readout(1, None, {"GPU-aaaa": gpu}))
    assert set(result.samples) == {Sample(mig(1, 0), 1001, 0.1), Sample(GPU, 1009, 7.0)}
    assert result.unsupported == (Unsupported(mig(1, 0), 1009, "mig_instance"),)


@pytest.mark.parametrize(("readout", "reason"), [
    (None, "dcgm_slow"),
    (Readout(1, "dcgm_down"), "dcgm_down"),
    (Readout(1, None, {}), "dcgm_no_gpu"),
    (Readout(1, None, {"GPU-aaaa": GpuReadout(reason="profiling_module_not_loaded")}),
     "profiling_module_not_loaded"),
])
def test_merge_without_values_marks_every_field(readout: Readout | None, reason: str) -> None:
    result = merge(view(gpm=False), frozenset({1001, 1009}), readout)
    assert result.samples == ()
    assert result.unsupported == (Unsupported(GPU, 1001, reason), Unsupported(GPU, 1009, reason))


# ---------------------------------------------------------------------------- fake engine


class FakeDcgm(Dcgm):
    """DCGM's client API over an in-memory engine (one GPU, optionally MIG instances)."""

    def __init__(self, *, uuids: Sequence[str] = ("GPU-aaaa",),
                 groups: Sequence[MetricGroup] = (MetricGroup(1, 0, (1001, 1002, 1005)),
                                                  MetricGroup(2, 0, (1004,)),
                                                  MetricGroup(3, 0, (1009, 1010))),
                 instances: dict[int, int] | None = None, max_groups: int = 10) -> None:
        self.uuids = list(uuids)
        self.groups = tuple(groups)
        self.instances = instances or {}  # NVML GI id -> DCGM GPU_I id (GPU 0)
        self.max_groups = max_groups
        self.refuse = False
        self.lost = False
        self.group_error: int | None = None
        self.connects = 0
        self.shut = False
        self.block: threading.Event | None = None
        self.values: dict[tuple[int, int, int], float | str] = {}
        self.status: dict[tuple[int, int, int], int] = {}
        self._entities: dict[int, list[tuple[int, int]]] = {}
        self._fields: dict[int, tuple[int, ...]] = {}
        self.watched: dict[tuple[int, int], tuple[int, ...]] = {}
        self._ids = 100

    def _check(self) -> None:
        if self.lost:
            raise DcgmError("call", -21, "The connection to the host engine is not valid")

    def connect(self, address: str, *, unix_socket: bool, timeout_ms: int) -> Handle:
        self.connects += 1
        if self.refuse:
            raise DcgmError("dcgmConnect_v2", -21, "connection refused")
        self.lost = False
        self.watched.clear()
        return Handle(1)

    def disconnect(self, handle: Handle) -> None:
        self.watched.clear()

    def shutdown(self) -> None:
        self.shut = True

    def supported_devices(self, handle: Handle) -> tuple[int, ...]:
        self._check()
        return tuple(range(len(self.uuids)))

    def group_create(self, handle: Handle, name: str) -> int:
        self._check()
        self._ids += 1
        self._entities[self._ids] = []
        return self._ids

    def group_add_entity(self, handle: Handle, group: int, entity_group: int,
                         entity_id: int) -> None:
        self._entities[group].append((entity_group, entity_id))

    def group_destroy(self, handle: Handle, group: int) -> None:
        self._check()
        del self._entities[group]

    def field_group_create(self, handle: Handle, field_ids: Sequence[int], name: str) -> int:
        self._check()
        self._ids += 1
        self._fields[self._ids] = tuple(field_ids)
        return self._ids

    def field_group_destroy(self, handle: Handle, field_group: int) -> None:
        del self._fields[field_group]

    def watch(self, handle: Handle, group: int, field_group: int, update_us: int,  # noqa: PLR0917
              max_keep_age_s: float, max_keep_samples: int) -> None:
        self._check()
        fields = self._fields[field_group]
        prof = {f for w in self.watched.values() for f in w} | set(fields)
        needed = {g.major for g in self.groups if set(g.field_ids) & prof}
        if len(needed) > self.max_groups:
            raise DcgmError("dcgmWatchFields", -38, "multi pass")
        self.watched[(group, field_group)] = fields

    def unwatch(self, handle: Handle, group: int, field_group: int) -> None:
        self._check()
        self.watched.pop((group, field_group), None)

    def update_all(self, handle: Handle, *, wait: bool) -> None:
        self._check()

    def latest_values(self, handle: Handle, entities: Sequence[tuple[int, int]],
                      field_ids: Sequence[int]) -> list[FieldValue]:
        if self.block is not None:
            self.block.wait(10)
        self._check()
        out = []
        for group, eid in entities:
            for fid in field_ids:
                if fid == 54:
                    out.append(FieldValue(group, eid, fid, 0, self.uuids[eid], None, 1))
                    continue
                status = self.status.get((group, eid, fid), 0)
                value = self.values.get((group, eid, fid))
                if value is None:
                    out.append(FieldValue(group, eid, fid, status, None, "blank", 1))
                else:
                    out.append(FieldValue(group, eid, fid, status, float(value), None, 1))
        return out

    def mig_hierarchy(self, handle: Handle) -> tuple[MigEntity, ...]:
        self._check()
        return tuple(MigEntity(FE_GPU_I, eid, FE_GPU, 0, self.uuids[0], 0, gi, 0)
                     for gi, eid in self.instances.items())

    def metric_groups(self, handle: Handle, gpu_id: int) -> tuple[MetricGroup, ...]:
        self._check()
        if self.group_error is not None:
            raise DcgmError("dcgmProfGetSupportedMetricGroups", self.group_error, "no")
        return self.groups


class Clock:
    """A monotonic clock the test moves (the source's backoff reads it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


SETTINGS = DcgmSettings("127.0.0.1:5555")


def _source(fake: Dcgm | None, clock: Clock | None = None, wait_s: float = 5.0) -> DcgmSource:
    def opener(_path: str | None) -> Dcgm:
        if fake is None:
            raise DcgmLibraryNotFound("no libdcgm.so.4 here")
        return fake
    return DcgmSource(SETTINGS, update_us=1_000_000, wait_s=wait_s, opener=opener,
                      **({"clock": clock} if clock is not None else {}))


def _cycle(source: DcgmSource, fields: frozenset[int] = PROF, **kw: object) -> tuple[
        dict[tuple[int | None, int], float], dict[tuple[int | None, int], str]]:
    device = view(gpm=False, **kw)  # type: ignore[arg-type]
    source.begin_cycle([device], fields)
    result = source.collect(device, fields)
    values = {(s.entity.gi_id, s.field_id): float(s.value) for s in result.samples}
    reasons = {(u.entity.gi_id, u.field_id): u.reason for u in result.unsupported}
    return values, reasons


@pytest.fixture
def fake() -> FakeDcgm:
    engine = FakeDcgm()
    engine.values = {(FE_GPU, 0, 1001): 0.5, (FE_GPU, 0, 1002): 0.25, (FE_GPU, 0, 1009): 4e8}
    engine.status = {(FE_GPU, 0, 1010): -29}
    return engine


def test_values_blanks_and_reasons_of_one_cycle(fake: FakeDcgm) -> None:
    source = _source(fake)
    try:
        values, reasons = _cycle(source)
        assert values == {(None, 1001): 0.5, (None, 1002): 0.25, (None, 1009): 4e8}
        assert reasons == {(None, 1004): "blank", (None, 1005): "blank",
                           (None, 1010): "not_permissioned"}
        assert source.natives()[0].value == 1.0
    finally:
        assert source.close()
    assert fake.shut
    assert fake.watched == {}


def test_a_refused_engine_is_one_warning_and_retried_with_backoff(
        fake: FakeDcgm, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    fake.refuse = True
    source = _source(fake, clock)
    try:
        with caplog.at_level(logging.DEBUG, "gpu_exporter.dcgmsource"):
            for _ in range(3):
                _, reasons = _cycle(source)
                assert set(reasons.values()) == {"dcgm_down"}
            assert fake.connects == 1  # the 1 s backoff has not passed
            assert source.natives()[0].value == 0.0
            clock.now += 1.5
            _cycle(source)
            assert fake.connects == 2
            clock.now += 1.5  # the next delay is 2 s
            _cycle(source)
            assert fake.connects == 2
            fake.refuse = False
            clock.now += 1.0
            values, _ = _cycle(source)
        assert values[(None, 1001)] == 0.5
        assert source.natives()[0].value == 1.0
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, caplog.text
        assert "unreachable" in warnings[0].getMessage()
        assert "connected again" in caplog.text
    finally:
        source.close()


def test_a_lost_connection_reconnects_and_watches_again(
        fake: FakeDcgm, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    source = _source(fake, clock)
    try:
        assert _cycle(source)[0]
        fake.lost = True
        fake.refuse = True
        with caplog.at_level(logging.WARNING, "gpu_exporter.dcgmsource"):
            _, reasons = _cycle(source)
            assert set(reasons.values()) == {"dcgm_down"}
            assert source.natives()[0].value == 0.0
            clock.now += 1.5
            _cycle(source)
        assert len(caplog.records) == 1, caplog.text
        fake.refuse = False
        clock.now += 5
        values, _ = _cycle(source)
        assert values[(None, 1001)] == 0.5
        assert fake.watched  # watches set up again on the new connection
    finally:
        source.close()


def test_multi_pass_drops_the_least_wanted_groups(fake: FakeDcgm) -> None:
    fake.max_groups = 2
    source = _source(fake)
    try:
        values, reasons = _cycle(source)
        assert set(values) == {(None, 1001), (None, 1002)}
        assert reasons[(None, 1009)] == "profiling_multi_pass"
        assert reasons[(None, 1010)] == "profiling_multi_pass"
        assert reasons[(None, 1004)] == "blank"  # watched, no value yet
        assert {f for w in fake.watched.values() for f in w} == {54, 1001, 1002, 1004, 1005}
    finally:
        source.close()


@pytest.mark.parametrize(("code", "reason"), [
    (-36, "profiling_not_supported"), (-33, "profiling_module_not_loaded"),
    (-37, "profiling_library_error"),
])
def test_profiling_probe_errors_are_reasons(fake: FakeDcgm, code: int, reason: str) -> None:
    fake.group_error = code
    source = _source(fake)
    try:
        values, reasons = _cycle(source)
        assert values == {}
        assert set(reasons.values()) == {reason}
        assert source.natives()[0].value == 1.0  # connected all the same
    finally:
        source.close()


def test_a_refused_gpu_is_probed_again_later(
        fake: FakeDcgm, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    fake.group_error = -33  # the engine's profiling module is not loaded
    source = _source(fake, clock)
    try:
        with caplog.at_level(logging.INFO, "gpu_exporter.dcgmsource"):
            _, reasons = _cycle(source)
            assert set(reasons.values()) == {"profiling_module_not_loaded"}
            clock.now += REPROBE_S + 1  # refused again: same reasons, not logged again
            _, reasons = _cycle(source)
            assert set(reasons.values()) == {"profiling_module_not_loaded"}
            assert caplog.text.count("profiling_module_not_loaded") == 1, caplog.text
            fake.group_error = None  # loaded now
            _cycle(source)
            assert not {f for w in fake.watched.values() for f in w} - {54}  # not yet due
            clock.now += REPROBE_S + 1
            values, _ = _cycle(source)
        assert values[(None, 1001)] == 0.5
        assert {f for w in fake.watched.values() for f in w} >= {1001, 1002, 1009}
    finally:
        source.close()


def test_fields_no_metric_group_lists_are_not_supported(fake: FakeDcgm) -> None:
    source = _source(fake)
    try:
        _, reasons = _cycle(source, frozenset({1001, 1012}))
        assert reasons == {(None, 1012): "profiling_not_supported"}
    finally:
        source.close()


def test_an_unknown_gpu_is_dcgm_no_gpu(fake: FakeDcgm) -> None:
    fake.uuids = ["GPU-other"]
    source = _source(fake)
    try:
        _, reasons = _cycle(source)
        assert set(reasons.values()) == {"dcgm_no_gpu"}
    finally:
        source.close()


def test_mig_instances_through_the_hierarchy(fake: FakeDcgm) -> None:
    fake.instances = {3: 0, 5: 1}  # DCGM numbers instances itself
    fake.values = {(FE_GPU_I, 0, 1001): 0.3, (FE_GPU_I, 1, 1001): 0.6, (FE_GPU, 0, 1009): 9.0}
    source = _source(fake)
    try:
        values, reasons = _cycle(source, frozenset({1001, 1009}), mig_ids=(3, 5))
        assert values == {(3, 1001): 0.3, (5, 1001): 0.6, (None, 1009): 9.0}
        assert reasons == {}
    finally:
        source.close()


def test_no_library_is_one_warning_and_a_reason(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "gpu_exporter.dcgmsource"):
        source = _source(None)
        try:
            for _ in range(2):
                _, reasons = _cycle(source)
                assert set(reasons.values()) == {"dcgm_no_library"}
            assert source.natives()[0].value == 0.0
        finally:
            assert source.close()
    assert len(caplog.records) == 1
    assert "no libdcgm.so.4 here" in caplog.text


def test_a_slow_engine_costs_one_bounded_wait_then_none(fake: FakeDcgm) -> None:
    source = _source(fake, wait_s=0.3)
    try:
        assert _cycle(source)[0]
        fake.block = threading.Event()
        _, reasons = _cycle(source)
        assert set(reasons.values()) == {"dcgm_slow"}
        time.sleep(0.4)  # still stuck past the bound: the next cycle does not wait at all
        _, reasons = _cycle(source)
        assert set(reasons.values()) == {"dcgm_slow"}
        fake.block.set()
        fake.block = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the stuck read returns; the next cycles read
            values, _ = _cycle(source)
            if values:
                break
        assert values[(None, 1001)] == 0.5
    finally:
        if fake.block is not None:
            fake.block.set()
        assert source.close()
