"""The artefacts users install: the wheel and the sdist, each outside the source tree.

The wheel and the sdist are built once (``python -m build``, as a user or a release job
would), then installed into fresh virtual environments in a temporary directory with the
working directory outside the checkout, so nothing can be imported from ``src/``. Each
installed copy runs ``gpu-exporter --simulate h100x8`` without ``-f`` (the packaged default
counters file) and serves ``/metrics``; ``gpu-sim list`` works. The wheel is installed on every
CPython 3.10-3.13 this machine has; a missing interpreter is skipped with its name.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ("3.10", "3.11", "3.12", "3.13")
PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"


def find_interpreter(version: str) -> Path | None:
    """A CPython ``version`` on this machine: pyenv's, then one on PATH."""
    if sys.version_info[:2] == tuple(int(p) for p in version.split(".")):
        return Path(sys.executable)
    for candidate in sorted(PYENV.glob(f"{version}.*/bin/python{version}"), reverse=True):
        if candidate.is_file():
            return candidate
    found = shutil.which(f"python{version}")
    return Path(found) if found else None


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel built from a copy of the sdist (as ``python -m build`` does)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                   check=True, capture_output=True, timeout=900)
    wheels = list(out.glob("*.whl"))
    sdists = list(out.glob("*.tar.gz"))
    assert len(wheels) == 1, wheels
    assert len(sdists) == 1, sdists
    return {"wheel": wheels[0], "sdist": sdists[0]}


def test_wheel_is_tagged_for_what_it_holds(dist: dict[str, Path]) -> None:
    name = dist["wheel"].name
    # no CPython ABI: the only binaries are plain C libraries needing glibc >= 2.N
    assert "-py3-none-manylinux_2_" in name, name
    glibc = int(name.split("manylinux_2_")[1].split("_")[0])
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        infos = {i.filename: i for i in wheel.infolist()}
        for data in ("default-counters.csv", "dcp-metrics-included.csv",
                     "1.x-compatibility-metrics.csv"):
            member = f"gpu_exporter/data/{data}"
            assert member in infos, member
            # a real file with the repository's bytes, not a symbolic link
            assert (infos[member].external_attr >> 28) != 0o12
            assert wheel.read(member) == (ROOT / "counters" / data).read_bytes()
        assert "gpu_exporter/simulator/lib/libnvidia-ml.so.1" in infos
        assert "gpu_exporter/simulator/lib/libdcgm.so.4" in infos
        assert "gpu_exporter/_fast/libgpu_exporter_fast.so" in infos  # fastpath.py's library
        assert "gpu_exporter/simulator/dcgm/stub.h" in infos  # the sanitizer test builds it
        assert any(n.endswith("/licenses/LICENSE") for n in infos)
        assert not [n for n in infos if (infos[n].external_attr >> 28) == 0o12]
        libs = [wheel.read(n) for n in ("gpu_exporter/simulator/lib/libnvidia-ml.so.1",
                                        "gpu_exporter/simulator/lib/libdcgm.so.4",
                                        "gpu_exporter/_fast/libgpu_exporter_fast.so")]
    versions = {int(v) for lib in libs for v in _glibc_minors(lib)}
    assert max(versions) == glibc, (versions, name)


def _glibc_minors(blob: bytes) -> Iterator[str]:
    marker = b"GLIBC_2."
    start = blob.find(marker)
    while start != -1:
        end = start + len(marker)
        digits = b""
        while blob[end:end + 1].isdigit():
            digits += blob[end:end + 1]
            end += 1
        if digits:
            yield digits.decode()
        start = blob.find(marker, end)


def test_sdist_holds_what_building_and_testing_need(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as sdist:
        names = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
        links = [m.name for m in sdist.getmembers() if m.issym() or m.islnk()]
    for needed in ("LICENSE", "setup.py", "pyproject.toml", "README.md", "CHANGELOG.md",
                   "counters/default-counters.csv", "counters/dcp-metrics-included.csv",
                   "counters/1.x-compatibility-metrics.csv", "tests/test_cli.py",
                   "tests/data/golden/h100x8.prom", "docs/flags.md", "Dockerfile",
                   "charts/dcgm-exporter/Chart.yaml", "bench/RESULTS.md",
                   "src/gpu_exporter/simulator/native/sim.h",
                   "src/gpu_exporter/simulator/dcgm/stub.h",
                   "src/gpu_exporter/simulator/dcgm/api.c",
                   "src/gpu_exporter/_fast/samples.c", "src/gpu_exporter/_fast/rows.c",
                   "tests/test_fastpath.py",
                   "tests/simulator/test_dcgm_stub.py"):
        assert needed in names, needed
    assert not [n for n in names if n.startswith("src/gpu_exporter/simulator/lib/")]
    assert not [n for n in names if n.endswith(".so")]  # built by the install, not shipped
    assert links == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _venv(python: Path, where: Path) -> Path:
    subprocess.run([str(python), "-m", "venv", str(where)], check=True, timeout=300)
    return where / "bin"


def _install(bin_dir: Path, artefact: Path, cwd: Path) -> None:
    done = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", str(artefact)],
        cwd=cwd, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def _serves_metrics(bin_dir: Path, cwd: Path) -> str:
    """Start the installed exporter without -f; return its first complete /metrics body."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPU_SIM", "DCGM_"))}
    env.pop("PYTHONPATH", None)
    log = cwd / "exporter.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(bin_dir / "gpu-exporter"), "--simulate", "h100x8",
             "--address", f"127.0.0.1:{port}"],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    body = r.read().decode()
                if "DCGM_FI_DEV_GPU_TEMP{" in body:
                    return body
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        pytest.fail(f"no /metrics within 90 s:\n{log.read_text()}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _check_installed(bin_dir: Path, cwd: Path) -> None:
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import gpu_exporter, sys; print(gpu_exporter.__file__)"],
        cwd=cwd, capture_output=True, text=True, check=True, timeout=120).stdout.strip()
    assert not Path(where).is_relative_to(ROOT), where  # the installed copy, not src/
    body = _serves_metrics(bin_dir, cwd)
    assert body.count("DCGM_FI_DEV_GPU_TEMP{") == 8
    listed = subprocess.run([str(bin_dir / "gpu-sim"), "list"], cwd=cwd, capture_output=True,
                            text=True, timeout=120, check=False)
    assert listed.returncode == 0, listed.stderr
    assert "h100x8" in listed.stdout
    # the stub libdcgm.so.4 is installed next to the simulated NVML and loads
    stub = subprocess.run(
        [str(bin_dir / "python"), "-c", "import ctypes\n"
         "from gpu_exporter.simulator.dcgm import library_path\n"
         "lib = ctypes.CDLL(str(library_path()))\n"
         "print(library_path().name, lib.dcgmInit(), lib.dcgmShutdown())"],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert stub.returncode == 0, stub.stderr
    assert stub.stdout.split() == ["libdcgm.so.4", "0", "0"]
    # the per-row sums and the rows' values run in the installed C library, not the fallback
    fast = subprocess.run(
        [str(bin_dir / "python"), "-c",
         "from gpu_exporter.fastpath import load_rows, load_sums, LIBRARY\n"
         "from gpu_exporter.fastread import load\n"
         "print(type(load_sums()).__name__, type(load_rows()).__name__, LIBRARY.name,\n"
         "      type(load()).__name__)"],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert fast.returncode == 0, fast.stderr
    # the per-GPU device reads too (fastread.py), from the same library
    assert fast.stdout.split() == ["CSums", "CRows", "libgpu_exporter_fast.so", "Reads"]


@pytest.mark.parametrize("version", VERSIONS)
def test_wheel_installs_and_runs(version: str, dist: dict[str, Path],
                                 tmp_path: Path) -> None:
    python = find_interpreter(version)
    if python is None:
        pytest.skip(f"python{version} is not installed on this machine")
    bin_dir = _venv(python, tmp_path / "venv")
    _install(bin_dir, dist["wheel"], tmp_path)
    _check_installed(bin_dir, tmp_path)


def test_sdist_builds_installs_and_runs(dist: dict[str, Path], tmp_path: Path) -> None:
    bin_dir = _venv(Path(sys.executable), tmp_path / "venv")
    _install(bin_dir, dist["sdist"], tmp_path)  # compiles both libraries from the sdist
    _check_installed(bin_dir, tmp_path)
