"""Cost of one NVML call into the simulated library, against an empty C function.

Run on its own (pynvml holds one library per process; figures go to
bench/RESULTS.md):

    .venv/bin/pytest bench/test_sim_call.py --benchmark-enable -s \
        --benchmark-columns=min,median,mean,stddev,rounds

The baseline is a shared library compiled here whose NVML functions do nothing but return
NVML_SUCCESS, called the same way: through raw ctypes with the same arguments, and through
the same pynvml wrappers (by pointing pynvml at it). The difference is the simulator's own
work per call: counters, fault checks, the closed-form dynamics. The target is that a call
into the simulator costs less than twice an empty call, so that benchmarks of the exporter
measure the exporter, not the simulator.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import timeit
from collections.abc import Callable, Iterator
from pathlib import Path

import pynvml
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from gpu_exporter.simulator import library_path, prepare

NOOP_C = r"""
typedef struct { unsigned int gpu, memory; } util_t;
int nvmlDeviceGetUtilizationRates(void *device, util_t *u) { (void)device; (void)u; return 0; }
int nvmlDeviceGetPowerUsage(void *device, unsigned int *p) { (void)device; (void)p; return 0; }
int nvmlDeviceGetFieldValues(void *device, int n, void *values)
{ (void)device; (void)n; (void)values; return 0; }
"""

# A collection cycle's worth of field ids (ECC, energy, NVLink, PCIe, violations, ...).
FIELD_IDS = [1, 3, 4, 5, 6, 38, 45, 52, 59, 74, 75, 78, 82, 83, 91, 94, 95, 138, 139, 142, 143,
             144, 145, 160, 185, 186, 190, 193, 194, 195, 196, 197, 198, 269, 270, 271]


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """The simulator (h100x8, clock running) and an empty NVML, both loaded; pynvml restored."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        pytest.fail("a C compiler is needed to build the empty baseline library")
    tmp = tmp_path_factory.mktemp("noop")
    (tmp / "noop.c").write_text(NOOP_C)
    noop_path = tmp / "libnoop.so"
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(noop_path), str(tmp / "noop.c")],
                   check=True)
    session = prepare("h100x8", state_dir=tmp / "state")
    os.environ["GPU_SIM_DIR"] = str(session.state_dir)
    sim = ctypes.CDLL(str(library_path()))
    noop = ctypes.CDLL(str(noop_path))
    assert sim.nvmlInitWithFlags(0) == 0
    handle = pynvml.c_nvmlDevice_t()
    assert sim.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(handle)) == 0
    saved = pynvml.nvmlLib
    yield {"sim": sim, "noop": noop, "handle": handle}
    pynvml.nvmlLib = saved
    pynvml._nvmlGetFunctionPointer_cache.clear()


def _use(lib: ctypes.CDLL) -> None:
    """Point pynvml at ``lib`` (its wrappers resolve symbols lazily through nvmlLib)."""
    pynvml.nvmlLib = lib
    pynvml._nvmlGetFunctionPointer_cache.clear()


def _raw_util(lib: ctypes.CDLL, handle: object) -> Callable[[], int]:
    fn = lib.nvmlDeviceGetUtilizationRates
    util = pynvml.c_nvmlUtilization_t()
    ref = ctypes.byref(util)
    return lambda: int(fn(handle, ref))


def _pynvml_util(lib: ctypes.CDLL, handle: object) -> Callable[[], object]:
    _use(lib)
    return lambda: pynvml.nvmlDeviceGetUtilizationRates(handle)


def _pynvml_fields(lib: ctypes.CDLL, handle: object) -> Callable[[], object]:
    _use(lib)
    return lambda: pynvml.nvmlDeviceGetFieldValues(handle, FIELD_IDS)


@pytest.mark.benchmark(group="raw ctypes: nvmlDeviceGetUtilizationRates")
@pytest.mark.parametrize("which", ["noop", "sim"])
def test_raw_ctypes_call(benchmark: BenchmarkFixture, libs: dict[str, object], which: str) -> None:
    call = _raw_util(libs[which], libs["handle"])  # type: ignore[arg-type]
    assert benchmark(call) == 0


@pytest.mark.benchmark(group="pynvml: nvmlDeviceGetUtilizationRates")
@pytest.mark.parametrize("which", ["noop", "sim"])
def test_pynvml_call(benchmark: BenchmarkFixture, libs: dict[str, object], which: str) -> None:
    call = _pynvml_util(libs[which], libs["handle"])  # type: ignore[arg-type]
    benchmark(call)


@pytest.mark.benchmark(group="pynvml: nvmlDeviceGetFieldValues (36 ids)")
@pytest.mark.parametrize("which", ["noop", "sim"])
def test_pynvml_field_values(benchmark: BenchmarkFixture, libs: dict[str, object],
                             which: str) -> None:
    call = _pynvml_fields(libs[which], libs["handle"])  # type: ignore[arg-type]
    benchmark(call)


def _best(call: Callable[[], object], number: int = 20000) -> float:
    """Best per-call time in seconds over a few repeats (less noise than a mean)."""
    return min(timeit.repeat(call, number=number, repeat=7)) / number


def test_simulator_within_2x_of_an_empty_call(libs: dict[str, object]) -> None:
    """The acceptance figure: a call into the simulator vs the same call into a no-op."""
    sim, noop, handle = libs["sim"], libs["noop"], libs["handle"]
    rows = []
    for label, make in (("raw ctypes UtilizationRates", _raw_util),
                        ("pynvml UtilizationRates", _pynvml_util),
                        ("pynvml FieldValues x36", _pynvml_fields)):
        t_noop = _best(make(noop, handle))  # type: ignore[arg-type]
        t_sim = _best(make(sim, handle))  # type: ignore[arg-type]
        rows.append((label, t_noop, t_sim, t_sim / t_noop))
    print()
    print("| call | empty (us) | simulator (us) | ratio |")
    print("|---|---|---|---|")
    for label, t_noop, t_sim, ratio in rows:
        print(f"| {label} | {t_noop * 1e6:.3f} | {t_sim * 1e6:.3f} | {ratio:.2f} |")
    for label, _, _, ratio in rows:
        assert ratio < 2.0, f"{label}: simulator {ratio:.2f}x an empty call"


def test_baseline_library_is_really_empty(libs: dict[str, object]) -> None:
    """Guard: the baseline answers SUCCESS without touching its arguments."""
    util = pynvml.c_nvmlUtilization_t()
    util.gpu = 77
    noop = libs["noop"]
    assert noop.nvmlDeviceGetUtilizationRates(None, ctypes.byref(util)) == 0  # type: ignore[attr-defined]
    assert util.gpu == 77
    assert Path(str(library_path())).is_file()
