"""The simulated NVML and the stub libdcgm.so.4 under AddressSanitizer and UBSan.

Builds sanitized variants of both libraries from the same sources (and the same generated
stubs) with gcc, then runs a subset of the simulator tests and the stub's C-ABI tests in a
child pytest with the sanitized libraries first on LD_LIBRARY_PATH. libasan is preloaded into
the (uninstrumented) Python interpreter, and ``PYTHONMALLOC=malloc`` makes ctypes buffers
plain malloc blocks, so ASan's redzones sit right after every caller buffer. Any sanitizer
report fails the run: UBSan does not recover, ASan halts with its own exit code.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpu_exporter.simulator import _codegen, library_path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NATIVE = library_path().parent.parent / "native"
DCGM_NATIVE = library_path().parent.parent / "dcgm"
# setup.py's flags, plus the sanitizers (frame pointers and -O1 for readable reports)
CFLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-Wall", "-Wextra", "-Werror",
          "-DNVML_NO_UNVERSIONED_FUNC_DEFS", "-fPIC", "-shared", "-Wl,-soname,libnvidia-ml.so.1",
          "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
# setup.py's flags of the stub, plus the sanitizers
DCGM_CFLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-Wall", "-Wextra", "-Werror",
               "-DNVML_NO_UNVERSIONED_FUNC_DEFS", "-fPIC", "-shared", "-fvisibility=hidden",
               "-Wl,-soname,libdcgm.so.4", "-fsanitize=address,undefined",
               "-fno-sanitize-recover=all"]
SUBSET = ["test_sim_guard.py", "test_sim_library.py", "test_sim_mig.py", "test_sim_gpm.py",
          "test_sim_events.py", "test_sim_processes.py", "test_dcgm_stub.py"]
ASAN_EXIT = 86


def _header() -> Path:
    for entry in sys.path:
        hits = sorted(Path(entry or ".").glob("nvidia/cu*/include/nvml.h"))
        if hits:
            return hits[-1]
    pytest.fail("nvml.h not found: install nvidia-nvml-dev==13.5.37 (test dependency)")


def _runtime(name: str) -> Path:
    cc = shutil.which(os.environ.get("CC", "cc")) or "cc"
    path = Path(subprocess.run([cc, f"-print-file-name={name}"], capture_output=True,
                               text=True, check=True).stdout.strip())
    if not path.is_absolute() or not path.exists():
        pytest.fail(f"{name} not found by the C compiler: install gcc's sanitizer runtimes "
                    "(libasan8, libubsan1 on Debian 12)")
    return path.resolve()


def build_sanitized(native: Path, out_dir: Path) -> Path:
    """Compile ``native``/*.c (+ generated stubs) with ASan and UBSan into ``out_dir``."""
    header = _header()
    gen = out_dir / "gen"
    _codegen.generate(header, native, gen)
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / "libnvidia-ml.so.1"
    cc = shlex.split(os.environ.get("CC", "cc"))
    subprocess.run([*cc, *CFLAGS, f"-I{header.parent}", f"-I{native}", f"-I{gen}", "-o",
                    str(lib), *sorted(str(p) for p in native.glob("*.c")),
                    str(gen / "sim_stubs_gen.c"), "-lpthread", "-lm"],
                   check=True, capture_output=True, text=True)
    return lib


def build_sanitized_dcgm(native: Path, out_dir: Path) -> Path:
    """Compile the stub libdcgm.so.4 from ``native``/*.c with ASan and UBSan into ``out_dir``."""
    header = _header()
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / "libdcgm.so.4"
    cc = shlex.split(os.environ.get("CC", "cc"))
    subprocess.run([*cc, *DCGM_CFLAGS, f"-I{header.parent}", f"-I{native}", "-o", str(lib),
                    *sorted(str(p) for p in native.glob("*.c")), "-ldl", "-lpthread", "-lm"],
                   check=True, capture_output=True, text=True)
    return lib


def run_sanitized(lib_dir: Path, tests: list[str], *, timeout: float = 1200,
                  ) -> subprocess.CompletedProcess[str]:
    """Run simulator test files in a child pytest against the sanitized build."""
    env = dict(os.environ)
    env.update({
        "GPU_SIM_TEST_LIBDIR": str(lib_dir),
        "LD_PRELOAD": str(_runtime("libasan.so")),
        "ASAN_OPTIONS": f"detect_leaks=0:halt_on_error=1:exitcode={ASAN_EXIT}:"
                        "verify_asan_link_order=0",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
        "PYTHONMALLOC": "malloc",
    })
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
         "-o", "addopts=--strict-markers --benchmark-disable",
         *(str(HERE / t) for t in tests)],
        env=env, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT)


@pytest.mark.slow
def test_simulator_tests_pass_under_asan_and_ubsan(tmp_path: Path) -> None:
    lib = build_sanitized(NATIVE, tmp_path / "asan")
    build_sanitized_dcgm(DCGM_NATIVE, tmp_path / "asan")
    proc = run_sanitized(lib.parent, SUBSET)
    report = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"sanitized run failed ({proc.returncode}):\n{report}"
    assert " passed" in proc.stdout
    assert "ERROR: AddressSanitizer" not in proc.stderr
    assert "runtime error:" not in proc.stderr
