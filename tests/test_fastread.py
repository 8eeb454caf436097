"""The compiled device reads give exactly the cycles of the collectors' Python reads.

Each scenario runs twice, each time in its own process (``simproc``) with the simulated clock
frozen (every value a pure function of profile, seed and time): once with the compiled read
(:mod:`gpu_exporter.fastread`, the default) and once with ``compiled_reads=False``; the same
faults are injected between the same cycles. Every cycle's samples (in order, with their
values and labels) and its field-support rows, GPU up/down, collector success and NVML error
counts must be equal. Faults cover NOT_SUPPORTED and failing calls of each kind (a call that
fails its collector, a failed field-value entry, a failed batched call, a GPM sample or
metrics call), a versioned call turned down (the read falls back to the older entry point), a
changed value, a counters reload (the GPM buffers handed back and forth) and a lost GPU, on an
H100 profile, H100s in MIG mode (GPM per instance), an A100 MIG profile (both MIG layouts) and
an older GPU without GPM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from simproc import run_snippet

from gpu_exporter.catalog import ids_of
from gpu_exporter.counters import load_counters
from gpu_exporter.fastread import COMPILED, LIBRARY, load

DEFAULT = frozenset(s.field_id for s in load_counters("counters/default-counters.csv"))
EVERY_COMPILED = DEFAULT.union(*(ids_of(name) for name in COMPILED))

SCENARIO = """
nv = Nvml(simulate=PROFILE, seed=3)
f = nv.sim_session.faults
s = Sampler(nvml=nv, fields=FIELDS, events=False, compiled_reads=COMPILED_READS,
            mig_device_fields_once=ONCE)
KEPT = ("gpu_exporter_field_supported", "gpu_exporter_gpu_up",
        "gpu_exporter_collector_success", "gpu_exporter_nvml_errors_total")

def snap(c):
    samples = [[x.entity.gpu, x.entity.gi_id, x.field_id, x.value,
                [list(pair) for pair in x.labels]] for x in c.samples]
    natives = sorted([n.name, n.value, [list(pair) for pair in n.labels],
                      [-1, -1] if n.entity is None else [n.entity.gpu, -1 if n.entity.gi_id
                                                          is None else n.entity.gi_id]]
                     for n in c.natives if n.name in KEPT)
    return [samples, natives]

cycles = []
compiled = []
for step in STEPS:
    if step:
        exec(step)
        time.sleep(0.3)  # the simulator reads its fault file again 100 ms after a call
    cycles.append(snap(s.collect_once()))
    compiled.append([g.fast is not None for g in s._gpus])
out["cycles"] = cycles
out["compiled"] = compiled
s.close()
"""

H100_STEPS = [
    None, None,
    "f.unsupported(1, 'nvmlDeviceGetPowerUsage')",
    "f.error(2, 'nvmlDeviceGetClockInfo', 999)",
    "f.error(3, 'field:83', 999); f.unsupported(3, 'field:82')",
    "f.ecc(4, sbe=3)",
    "f.error(0, 'nvmlDeviceGetFieldValues', 999); f.unsupported(1, 'nvmlDeviceGetFieldValues')",
    "f.error(5, 'nvmlDeviceGetMemoryInfo_v2', 25)",
    "f.error(5, 'nvmlDeviceGetTemperatureV', 13)",
    "f.error(4, 'nvmlGpmSampleGet', 999)",
    "s.set_wanted(FIELDS)",  # a reload: every plan built again, the GPM buffers handed back
    "f.error(6, 'nvmlDeviceGetEnforcedPowerLimit', 15)",
    # the XID collector's clock event reasons (read by the plan, fed to its turn)
    "f.unsupported(2, 'nvmlDeviceGetCurrentClocksEventReasons')",
    "f.error(3, 'nvmlDeviceGetCurrentClocksEventReasons', 999)",
    "f.lose_gpu(7)",
    None,
    "f.clear()",
    None,
    # the metrics call names no device: on every GPU
    "f.error(None, 'nvmlGpmMetricsGet', 999)",
    "f.clear(); f.unsupported(None, 'nvmlGpmMetricsGet')",
    "f.clear()",
    None,
]

H100_MIG_PROFILE = """base: h100x8
name: h100-mig
devices:
  - {index: 0, mig: {enabled: true, devices: [1g.10gb, 1g.10gb, 2g.20gb]}}
  - {index: 1, mig: {enabled: true, devices: [3g.40gb]}}
"""

H100_MIG_STEPS = [
    None, None,
    "f.error(0, 'nvmlGpmMigSampleGet', 999)",
    "f.unsupported(1, 'nvmlGpmMigSampleGet'); f.error(2, 'nvmlGpmSampleGet', 4)",
    "f.clear()",
    "s.set_wanted(FIELDS)",
    None,
]

MIG_STEPS = [
    None, None,
    "f.unsupported(0, 'nvmlDeviceGetMemoryInfo_v2')",
    "f.error(1, 'nvmlDeviceGetUtilizationRates', 4)",
    "f.error(2, 'field:83', 999)",
    "f.lose_gpu(3)",
    "f.clear()",
    None, None,
]

OLD_STEPS = [
    None, None,
    "f.unsupported(0, 'nvmlDeviceGetFanSpeed')",
    "f.error(1, 'nvmlDeviceGetCurrentClocksEventReasons', 13)",
    "f.error(2, 'nvmlDeviceGetPowerManagementLimitConstraints', 999)",
    "f.clear()",
    None,
]


def test_the_library_is_built() -> None:
    # pip install builds it; without it every test below would compare the Python reads
    # with themselves, so a missing library fails here instead of passing unseen
    assert LIBRARY.is_file(), "pip install -e . builds it"
    assert load() is not None


def _run(profile: str, fields: frozenset[int], steps: list[str | None], *, compiled: bool,
         once: bool = False) -> Any:
    setup = (f"PROFILE = {profile!r}\nFIELDS = frozenset({sorted(fields)!r})\n"
             f"COMPILED_READS = {compiled!r}\nONCE = {once!r}\nSTEPS = {steps!r}\n")
    return run_snippet(setup + SCENARIO, timeout=180.0,
                       env={"GPU_SIM_FROZEN_TIME": "5000"})


def _errors(cycle: list[Any]) -> list[Any]:
    return [n for n in cycle[1] if n[0] == "gpu_exporter_nvml_errors_total"]


@pytest.mark.parametrize(("profile", "fields", "steps", "once"), [
    ("h100x8", DEFAULT, H100_STEPS, False),
    ("h100x8", EVERY_COMPILED, H100_STEPS, False),
    ("a100-mig", EVERY_COMPILED, MIG_STEPS, False),
    ("a100-mig", DEFAULT, MIG_STEPS, True),
    ("h100-mig", DEFAULT, H100_MIG_STEPS, False),
    ("t4x4", EVERY_COMPILED, OLD_STEPS, False),
], ids=["h100x8", "h100x8-every-field", "a100-mig", "a100-mig-fields-once", "h100-mig", "t4x4"])
def test_the_compiled_read_gives_the_python_reads_cycles(
    profile: str, fields: frozenset[int], steps: list[str | None], once: bool, tmp_path: Path,
) -> None:
    if profile == "h100-mig":  # a user profile: H100s (with GPM) in MIG mode
        path = tmp_path / "h100-mig.yaml"
        path.write_text(H100_MIG_PROFILE)
        profile = str(path)
    fast = _run(profile, fields, steps, compiled=True, once=once)
    python = _run(profile, fields, steps, compiled=False, once=once)
    # each path is the one it says (a GPU re-probed in that cycle has no plan yet)
    assert all(any(row) for row in fast["compiled"])
    assert not any(any(row) for row in python["compiled"])
    assert len(fast["cycles"]) == len(steps)
    for number, (ours, theirs) in enumerate(zip(fast["cycles"], python["cycles"], strict=True)):
        assert ours[0] == theirs[0], f"samples of cycle {number} ({steps[number]})"
        assert ours[1] == theirs[1], f"natives of cycle {number} ({steps[number]})"
    # the faults did something: errors were counted, fields marked, samples went missing
    assert _errors(fast["cycles"][-1]) != _errors(fast["cycles"][0])
    sizes = {len(cycle[0]) for cycle in fast["cycles"][1:]}
    assert len(sizes) > 1


def test_values_changing_every_cycle_keep_what_a_full_decode_gives() -> None:
    """The simulated clock running: outputs updated in place equal a decode from scratch.

    Only where a value changed is decoded, cycle after cycle; a collector failing from the first
    cycle while its values change recovers when the fault is cleared.
    """
    out = run_snippet("""
from gpu_exporter.model import Sample, Unsupported
nv = Nvml(simulate="h100x8")
f = nv.sim_session.faults
f.error(1, "nvmlDeviceGetPowerManagementLimit", 999)
time.sleep(0.3)
s = Sampler(nvml=nv, fields=default_fields(), events=False)
mismatches = []
for cycle in range(8):
    time.sleep(0.15)
    c = s.collect_once()
    for g in s._gpus:
        read = g.fast
        for row in read.plan:
            part = getattr(row[1], "__self__", None)
            if part is None or part.__class__.__name__ != "_Part" or part.dirty:
                continue
            full = [read._decode(r) for r in range(part.lo, part.hi)]
            if ([o for o in full if o.__class__ is Sample] != part.samples
                    or [o for o in full if o.__class__ is Unsupported] != part.marks):
                mismatches.append([cycle, g.index, part.name])
    if cycle == 4:
        f.clear()
        time.sleep(0.3)
out["mismatches"] = mismatches
out["power_gpu1"] = [x.field_id for x in c.samples
                     if x.entity.gpu == 1 and x.field_id in (155, 160)]
s.close()
""")
    assert out["mismatches"] == []
    assert out["power_gpu1"] == [155, 160]  # back after the fault was cleared


def test_without_the_library_there_is_no_compiled_read(tmp_path: Path) -> None:
    """A source tree where the library is not built (or is of another version): Python reads."""
    assert load(tmp_path / "libgpu_exporter_fast.so") is None
    stale = tmp_path / "stale.so"
    stale.write_bytes(b"not a shared library")
    assert load(stale) is None
    assert load() is not None  # the built one loads


def test_turns_of_compiled_collectors_and_the_xid_clock_reasons() -> None:
    """A clean cycle takes a run of compiled collectors in one turn; a failure, one each.

    The XID collector's clock event reasons are calls of the plan (its stage named for the
    hung-GPU line), not calls of its own.
    """
    out = run_snippet("""
nv = Nvml(simulate="h100x8")
f = nv.sim_session.faults
s = Sampler(nvml=nv, fields=default_fields(), events=False)
s.collect_once()
s.collect_once()
read = s._gpus[1].fast
out["plan"] = [row[0] for row in read.plan]
out["turns"] = [row[0] for row in read.turns]
out["fed"] = [type(getattr(row[1], "__self__", None)).__name__ for row in read.plan
              if row[0] == "xid"]
out["stages"] = sorted(set(read._stages))
before = f.call_counts().get("nvmlDeviceGetCurrentClocksEventReasons", 0)
f.error(1, "nvmlDeviceGetPowerManagementLimit", 999)
time.sleep(0.3)
c = s.collect_once()
out["failed_turns"] = [row[0] for row in s._gpus[1].fast.turns]
out["power_gpu1"] = [x.field_id for x in c.samples if x.entity.gpu == 1 and x.field_id == 155]
out["reasons_calls"] = f.call_counts().get("nvmlDeviceGetCurrentClocksEventReasons", 0) - before
s.close()
""")
    assert out["fed"] == ["_Fed"]
    assert "collector xid" in out["stages"]
    runs = ["field_values", "clocks", "temperature", "power", "utilization", "memory"]
    assert all(name in out["plan"] for name in runs)
    assert [name for name in out["turns"] if name in runs] == ["field_values"]  # one turn
    assert out["failed_turns"] == out["plan"]  # power failed: each collector in its own turn
    assert out["power_gpu1"] == []  # its samples dropped, as the collector's failure does
    assert out["reasons_calls"] == 8  # one per GPU for the cycle, none made twice
