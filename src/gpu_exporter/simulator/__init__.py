"""Simulated NVML: a ``libnvidia-ml.so.1`` built from NVIDIA's ``nvml.h`` for GPU-less hosts.

Importing this package never loads the library. :func:`prepare` resolves a profile into a
state directory; :attr:`SimSession.env` is the environment that makes any unmodified NVML
program (pynvml, nvitop-exporter, ...) load the simulator; :func:`activate` does the same for
the current process before pynvml loads anything; :class:`FaultInjector` changes the
simulated machine at runtime.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gpu_exporter.simulator.faults import FaultInjector
from gpu_exporter.simulator.profiles import (
    SimulatorError,
    builtin_names,
    load_profile,
    render_config,
    resolve,
)

__all__ = [
    "FaultInjector",
    "SimSession",
    "SimulatorError",
    "activate",
    "default_state_dir",
    "library_path",
    "list_profiles",
    "prepare",
]

LIBRARY_NAME = "libnvidia-ml.so.1"


def list_profiles() -> list[str]:
    """Names of the built-in profiles."""
    return builtin_names()


def library_path() -> Path:
    """Path of the built simulated ``libnvidia-ml.so.1``.

    Raises:
        FileNotFoundError: the library was not built (install the package with pip).
    """
    path = Path(__file__).resolve().parent / "lib" / LIBRARY_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"the simulated NVML library is not built: {path} is missing; it is compiled by "
            "the package install (`pip install -e .` needs gcc and nvidia-nvml-dev)"
        )
    return path


@dataclass(frozen=True)
class SimSession:
    """A prepared simulator state directory (resolved profile, faults, call counters)."""

    state_dir: Path
    profile: str = ""
    seed: int = 0

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that make any NVML program load this simulated machine."""
        lib_dir = str(library_path().parent)
        current = os.environ.get("LD_LIBRARY_PATH", "")
        return {
            "LD_LIBRARY_PATH": f"{lib_dir}:{current}" if current else lib_dir,
            "GPU_SIM_DIR": str(self.state_dir),
        }

    @property
    def faults(self) -> FaultInjector:
        """Fault injector for this session."""
        return FaultInjector(self.state_dir)


def prepare(
    profile: str | os.PathLike[str],
    *,
    seed: int = 0,
    state_dir: Path | None = None,
    frozen_time: float | None = None,
) -> SimSession:
    """Resolve ``profile`` (built-in name or YAML path) into a state directory.

    Args:
        profile: built-in profile name (see :func:`list_profiles`) or a YAML file path.
        seed: seed of UUIDs, serials and dynamics.
        state_dir: directory to write into (created if needed); a new temp dir when None.
        frozen_time: pin the simulated clock at this many seconds (every value then is a
            pure function of profile, seed and time); ``GPU_SIM_FROZEN_TIME`` does the same.

    A ``state_dir`` that already holds the state of the same profile and seed is reused (its
    faults and call counters are reset); one that holds another profile's or seed's state is
    refused, never rewritten, since processes may be using it.

    Raises:
        SimulatorError: unknown profile name, unreadable or invalid profile, or ``state_dir``
            holds another profile's state.
    """
    if not isinstance(seed, int) or seed < 0:
        raise SimulatorError(f"seed must be a non-negative integer, got {seed!r}")
    resolved = resolve(load_profile(profile))
    text = render_config(resolved, seed, frozen_time)
    if state_dir is None:
        state_dir = Path(tempfile.mkdtemp(prefix="gpu-sim-"))
    state_dir = Path(state_dir).resolve()
    _check_owner(state_dir, resolved.name, resolved.source, seed)
    state_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("faults", "faults.json", "calls.bin", "calls.names"):
        (state_dir / stale).unlink(missing_ok=True)
    meta = {
        "profile": resolved.name,
        "source": resolved.source,
        "seed": seed,
        "device_count": len(resolved.devices),
        "mig_tables": [
            (d.get("mig") or {}).get("table") if (d.get("mig") or {}).get("capable") else None
            for d in resolved.devices
        ],
    }
    _write(state_dir / "profile.json", json.dumps(meta, indent=1) + "\n")
    _write(state_dir / "config", text)
    return SimSession(state_dir, resolved.name, seed)


def _check_owner(state_dir: Path, name: str, source: str, seed: int) -> None:
    """Refuse a state directory that holds another profile's (or seed's) state."""
    meta_path = state_dir / "profile.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        raise SimulatorError(f"{meta_path}: unreadable simulator state ({exc}); pick another "
                             "state directory or remove this one") from None
    held = (meta.get("profile"), meta.get("source"), meta.get("seed"))
    if held != (name, source, seed):
        raise SimulatorError(
            f"{state_dir} holds the simulator state of profile {held[0]!r} (seed {held[2]}); "
            f"refusing to replace it with {name!r} (seed {seed}) under processes that may use "
            "it: pick another state directory (--state-dir, GPU_SIM_DIR) or remove this one")


def default_state_dir(profile: str | os.PathLike[str], seed: int = 0) -> Path:
    """The state directory ``gpu-sim env`` reuses for ``profile`` and ``seed``.

    One per user, profile and seed under the temp directory (``/tmp/gpu-sim-<uid>/h100x8-seed0``),
    so repeated ``gpu-sim env`` calls do not leave a new directory behind each time. A profile
    file is keyed by its name and a hash of its absolute path.

    Raises:
        SimulatorError: the per-user parent exists but is not a private directory of this user.
    """
    base = Path(tempfile.gettempdir()) / f"gpu-sim-{os.getuid()}"
    try:
        base.mkdir(mode=0o700, exist_ok=True)
        st = base.lstat()
    except OSError as exc:
        raise SimulatorError(f"{base}: {exc}; pass --state-dir") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise SimulatorError(f"{base} is not a private directory of this user (mode 0700); "
                             "pass --state-dir")
    text = os.fspath(profile)
    if text in builtin_names():
        key = text
    else:
        path = Path(text).resolve()
        key = f"{path.stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    return base / f"{key}-seed{seed}"


def activate(session: SimSession) -> None:
    """Make this process's NVML the simulator: call before pynvml loads the library.

    Sets ``GPU_SIM_DIR`` and preloads the library by absolute path with ``RTLD_GLOBAL``, so
    pynvml's later ``CDLL("libnvidia-ml.so.1")`` resolves to the same loaded object (the
    dynamic linker matches the SONAME).

    Raises:
        SimulatorError: a different ``libnvidia-ml.so.1`` is already loaded here.
    """
    path = library_path()
    other = _loaded_nvml()
    if other is not None and Path(other).resolve() != path:
        raise SimulatorError(f"cannot activate the simulator: {other} is already loaded in "
                             "this process (activate before NVML is initialised)")
    os.environ["GPU_SIM_DIR"] = str(session.state_dir)
    ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)


def _loaded_nvml() -> str | None:
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        if line.endswith("/" + LIBRARY_NAME):
            return line.split(maxsplit=5)[-1]
    return None


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
