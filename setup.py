"""Build glue: compiles the simulated libnvidia-ml.so.1, the stub libdcgm.so.4 and the
exporter's own fast-path library during the normal install.

Everything else about the package is in pyproject.toml. Three things are done here:

* The three "extensions" are not Python modules: they are plain shared libraries, compiled
  with the system C compiler against nvml.h from the nvidia-nvml-dev build requirement (in
  place under src/ for editable installs): into gpu_exporter/simulator/lib/ the simulated NVML
  (SONAME libnvidia-ml.so.1) and a stub DCGM client library (SONAME libdcgm.so.4, our own
  declarations of DCGM's API) that loads whatever libnvidia-ml.so.1 the process finds; into
  gpu_exporter/_fast/ libgpu_exporter_fast.so, the per-row sums of NVML's process samples
  and the workload rows' floating-point part, that gpu_exporter/fastpath.py loads with ctypes
  (it has a Python fallback).
* The counters files of ``counters/`` (the one copy in the repository) are copied into the
  package as ``gpu_exporter/data/*.csv``: real files in the wheel, and under src/ (git-ignored)
  for editable installs.
* The wheel is tagged ``py3-none-manylinux_2_NN_<arch>``: the library is tied to no CPython
  ABI, only to the glibc symbol versions it links (NN is read from the built library).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

try:  # setuptools >= 70.1 ships bdist_wheel; older ones use the wheel package's
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # pragma: no cover - depends on the build environment
    from wheel.bdist_wheel import bdist_wheel  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent
SIM = ROOT / "src" / "gpu_exporter" / "simulator"
NATIVE = SIM / "native"
DCGM_NATIVE = SIM / "dcgm"
FAST = ROOT / "src" / "gpu_exporter" / "_fast"
EXT_NAME = "gpu_exporter.simulator.lib.libnvidia-ml"
LIB_FILE = "libnvidia-ml.so.1"
DCGM_EXT_NAME = "gpu_exporter.simulator.lib.libdcgm"
DCGM_LIB_FILE = "libdcgm.so.4"
FAST_EXT_NAME = "gpu_exporter._fast.libgpu_exporter_fast"
FAST_LIB_FILE = "libgpu_exporter_fast.so"
LIB_FILES = {EXT_NAME: LIB_FILE, DCGM_EXT_NAME: DCGM_LIB_FILE, FAST_EXT_NAME: FAST_LIB_FILE}
COMMON_CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror", "-DNVML_NO_UNVERSIONED_FUNC_DEFS", "-fPIC",
                 "-shared"]
CFLAGS = [*COMMON_CFLAGS, f"-Wl,-soname,{LIB_FILE}"]
# the stub exports only DCGM's entry points (everything else is hidden)
DCGM_CFLAGS = [*COMMON_CFLAGS, "-fvisibility=hidden", f"-Wl,-soname,{DCGM_LIB_FILE}"]
# no fused multiply-add: the fast path's floating-point results match its Python fallback's
FAST_CFLAGS = [*COMMON_CFLAGS, "-fvisibility=hidden", "-ffp-contract=off",
               f"-Wl,-soname,{FAST_LIB_FILE}"]


def find_nvml_header() -> Path:
    """Locate nvml.h from the nvidia-nvml-dev package (or $NVML_INCLUDE_DIR)."""
    override = os.environ.get("NVML_INCLUDE_DIR")
    if override:
        return Path(override) / "nvml.h"
    for entry in sys.path:
        hits = sorted(Path(entry or ".").glob("nvidia/cu*/include/nvml.h"))
        if hits:
            return hits[-1]
    raise SystemExit("gpu-exporter build: nvml.h not found; install nvidia-nvml-dev==13.5.37 "
                     "(a build requirement) or set NVML_INCLUDE_DIR")


def _codegen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_gpu_sim_codegen", SIM / "_codegen.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"gpu-exporter build: cannot load {SIM / '_codegen.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


class BuildSimulatedNvml(build_ext):
    """build_ext that links the simulator as libnvidia-ml.so.1 (and the DCGM stub as
    libdcgm.so.4, the fast path as libgpu_exporter_fast.so) with NVIDIA's header."""

    def get_ext_filename(self, fullname: str) -> str:
        # setuptools asks with the full dotted name or with its last part only
        for name, lib in LIB_FILES.items():
            if fullname == name:
                return str(Path(*name.split(".")[:-1], lib))
            if fullname == name.rsplit(".", 1)[-1]:
                return lib
        return str(super().get_ext_filename(fullname))

    def build_extension(self, ext: Extension) -> None:
        if ext.name == DCGM_EXT_NAME:
            self._build_dcgm_stub(ext)
            return
        if ext.name == FAST_EXT_NAME:
            header = find_nvml_header()
            self._link(ext, [*FAST_CFLAGS, f"-I{header.parent}"],
                       sorted(str(p) for p in FAST.glob("*.c")), [])
            return
        if ext.name != EXT_NAME:
            super().build_extension(ext)
            return
        header = find_nvml_header()
        gen_dir = Path(self.build_temp) / "simgen"
        _codegen().generate(header, NATIVE, gen_dir, cc=os.environ.get("CC", "cc"))
        sources = [*sorted(str(p) for p in NATIVE.glob("*.c")), str(gen_dir / "sim_stubs_gen.c")]
        self._link(ext, [*CFLAGS, f"-I{header.parent}", f"-I{NATIVE}", f"-I{gen_dir}"],
                   sources, ["-lpthread", "-lm"])

    def _build_dcgm_stub(self, ext: Extension) -> None:
        header = find_nvml_header()
        self._link(ext, [*DCGM_CFLAGS, f"-I{header.parent}", f"-I{DCGM_NATIVE}"],
                   sorted(str(p) for p in DCGM_NATIVE.glob("*.c")), ["-ldl", "-lpthread", "-lm"])

    def _link(self, ext: Extension, flags: list[str], sources: list[str],
              libs: list[str]) -> None:
        """Compile ``sources`` into ext's library: to a temporary name, then renamed over it."""
        out = Path(self.get_ext_fullpath(ext.name))
        out.parent.mkdir(parents=True, exist_ok=True)
        # editable installs copy the library back into src/ (git-ignored, so maybe missing)
        (SIM / "lib").mkdir(exist_ok=True)
        tmp = _temp_beside(out)
        cmd = [*shlex.split(os.environ.get("CC", "cc")), *flags, "-o", str(tmp), *sources, *libs]
        print(" ".join(cmd))
        try:
            subprocess.run(cmd, check=True)
            tmp.replace(out)
        finally:
            tmp.unlink(missing_ok=True)

    def copy_file(  # type: ignore[override]
        self, infile: str, outfile: str, *args: object, **kwargs: object,
    ) -> tuple[str, bool]:
        """Copy the library next to its destination, then rename it over the old one.

        Rewriting a loaded shared library in place crashes the processes that have it
        mapped (a test run, a running exporter); a rename leaves them the old inode.
        """
        if Path(outfile).name not in LIB_FILES.values():
            return super().copy_file(infile, outfile, *args, **kwargs)  # type: ignore[arg-type]
        dest = Path(outfile)
        tmp = _temp_beside(dest)
        try:
            shutil.copy2(infile, tmp)
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)
        return outfile, True


class BuildPyWithCounters(build_py):
    """build_py that also puts counters/*.csv into the package as real files."""

    def run(self) -> None:
        super().run()
        sources = sorted((ROOT / "counters").glob("*.csv"))
        if not sources:
            raise SystemExit(f"gpu-exporter build: no counters files in {ROOT / 'counters'}")
        base = ROOT / "src" if getattr(self, "editable_mode", False) else Path(self.build_lib)
        target = base / "gpu_exporter" / "data"
        target.mkdir(parents=True, exist_ok=True)
        for source in sources:
            dest = target / source.name
            dest.unlink(missing_ok=True)  # an old symbolic link must not be written through
            shutil.copyfile(source, dest)


def glibc_requirement(library: Path) -> tuple[int, int]:
    """The highest GLIBC_x.y symbol version ``library`` needs (objdump ships with gcc)."""
    out = subprocess.run(["objdump", "-T", str(library)], check=True, capture_output=True,
                         text=True).stdout
    versions = {(int(a), int(b)) for a, b in re.findall(r"GLIBC_(\d+)\.(\d+)", out)}
    if not versions:
        raise SystemExit(f"gpu-exporter build: no GLIBC symbol versions in {library}")
    return max(versions)


class PlatformWheel(bdist_wheel):
    """A py3-none-manylinux wheel: the only binary is a plain C library, not an extension."""

    def get_tag(self) -> tuple[str, str, str]:
        if not Path(self.bdist_dir).is_dir():
            # editable_wheel asks for the tag before anything is built; its wheel holds no
            # library (that stays under src/), so the default tag is the honest one
            return tuple(super().get_tag())  # type: ignore[return-value]
        built = [hit for lib in LIB_FILES.values()
                 for hit in sorted(Path(self.bdist_dir).rglob(lib))[:1]]
        if len(built) != len(LIB_FILES):
            raise SystemExit(f"gpu-exporter build: {' or '.join(LIB_FILES.values())} missing "
                             "from the wheel")
        major, minor = max(glibc_requirement(lib) for lib in built)
        machine = platform.machine()
        return "py3", "none", f"manylinux_{major}_{minor}_{machine}"


def _temp_beside(path: Path) -> Path:
    """A temporary name in ``path``'s directory (same file system, so rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


setup(
    ext_modules=[Extension(EXT_NAME, sources=[]), Extension(DCGM_EXT_NAME, sources=[]),
                 Extension(FAST_EXT_NAME, sources=[])],
    cmdclass={"build_ext": BuildSimulatedNvml, "build_py": BuildPyWithCounters,
              "bdist_wheel": PlatformWheel},
)
