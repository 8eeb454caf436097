"""The built library: exports, header coverage, never loaded unless asked for."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pynvml
import pytest

from gpu_exporter.simulator import _codegen, library_path


def _header() -> Path:
    for entry in sys.path:
        hits = sorted(Path(entry or ".").glob("nvidia/cu*/include/nvml.h"))
        if hits:
            return hits[-1]
    pytest.fail("nvml.h not found: install nvidia-nvml-dev==13.5.37 (test dependency)")


def _exports() -> set[str]:
    nm = shutil.which("nm")
    if nm is None:
        pytest.fail("nm (binutils) is required for the export check")
    out = subprocess.run([nm, "-D", "--defined-only", str(library_path())], check=True,
                         capture_output=True, text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if " T " in line}


def _header_functions() -> set[str]:
    return {f.name for f in _codegen.parse_header(_codegen.preprocess(_header()))}


def test_library_is_built_with_the_nvml_soname() -> None:
    path = library_path()
    assert path.name == "libnvidia-ml.so.1"
    dyn = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True,
                         check=False).stdout if shutil.which("readelf") else ""
    if dyn:
        assert "Library soname: [libnvidia-ml.so.1]" in dyn


def test_exports_every_function_declared_in_nvml_h() -> None:
    declared = _header_functions()
    assert len(declared) > 400  # 436 in nvidia-nvml-dev 13.5.37
    assert declared - _exports() == set()


def test_exports_every_symbol_pynvml_resolves() -> None:
    source = Path(pynvml.__file__).read_text()
    resolved = set(re.findall(r'_nvmlGetFunctionPointer\("(\w+)"\)', source))
    assert len(resolved) > 300
    assert resolved - _exports() == set()
    # both the unversioned and versioned names where pynvml can reach either
    for name in ("nvmlDeviceGetCount", "nvmlDeviceGetCount_v2", "nvmlEventSetWait",
                 "nvmlEventSetWait_v2", "nvmlDeviceGetPciInfo", "nvmlDeviceGetPciInfo_v3",
                 "nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v3"):
        assert name in _exports()


def test_codegen_parses_parameter_names_and_skips_hand_written() -> None:
    funcs = _codegen.parse_header(
        "nvmlReturn_t nvmlFoo(nvmlDevice_t device, unsigned int *count);\n"
        "__attribute__((deprecated)) nvmlReturn_t nvmlBar(nvmlDevice_t, char *);\n"
        "nvmlReturn_t nvmlInit_v2(void);\n"
    )
    assert [f.name for f in funcs] == ["nvmlBar", "nvmlFoo", "nvmlInit_v2"]
    assert funcs[0].params == (("nvmlDevice_t p0", "p0"), ("char * p1", "p1"))
    stubs = _codegen.render_stubs(funcs, skip={"nvmlInit_v2"})
    assert "return sim_stub(FN_nvmlFoo, device);" in stubs
    assert "(void)count;" in stubs
    assert "nvmlInit_v2" not in stubs


def test_importing_the_package_does_not_load_the_library() -> None:
    script = (
        "import gpu_exporter.simulator, gpu_exporter.simulator.cli\n"
        "maps = open('/proc/self/maps').read()\n"
        "print('libnvidia-ml' in maps)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_without_gpu_sim_dir_init_fails_with_a_message(tmp_path: Path) -> None:
    script = (
        "import pynvml\n"
        "try:\n"
        "    pynvml.nvmlInit()\n"
        "except pynvml.NVMLError as e:\n"
        "    print(e.value)\n"
    )
    env = {"LD_LIBRARY_PATH": str(library_path().parent), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, check=True, cwd=tmp_path)
    assert proc.stdout.strip() == str(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    assert "GPU_SIM_DIR is not set" in proc.stderr


def test_fidelity_table_names_every_hand_written_function() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "simulator.md").read_text()
    section = doc.split("## Fidelity", 1)[1].split("\n## ", 1)[0]
    fn = r"nvml(?:Device|System|Init|Shutdown|ErrorString|Event|Gpm|GpuInstance|ComputeInstance)\w*"
    named = {n for n in re.findall(r"`(nvml\w+)`", section)
             if re.fullmatch(fn, n) and not n.endswith("_t")}
    native = library_path().parent.parent / "native"
    written = _codegen.defined_in(sorted(native.glob("*.c")))
    assert len(written) > 150
    assert written - named == set()  # every simulated call has its row
    assert named - _header_functions() == set()  # and only real NVML names are used
