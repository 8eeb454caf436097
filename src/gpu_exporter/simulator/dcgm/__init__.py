"""Stub DCGM client library (``libdcgm.so.4``) for tests and demos, and its control file.

The stub is C in this directory (``api.c``, ``engine.c``, ``control.c``; our own declarations
of DCGM's API in ``stub.h``), built by the package install next to the simulated NVML. It
behaves like a DCGM host engine that uses NVML: ``dcgmConnect_v2`` opens a real TCP or unix
socket connection to the address it is given (anything that listens there stands in for
nv-hostengine; closing it is a lost engine), and every value comes from the
``libnvidia-ml.so.1`` the process loads (in tests, the simulated one).

Its behaviour is steered by a small text file named by ``GPU_SIM_DCGM_CONFIG`` and re-read
when it changes (grammar in docs/simulator.md); :class:`DcgmControl` writes it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gpu_exporter.simulator.profiles import SimulatorError

__all__ = ["BLANK_KINDS", "CONFIG_ENV", "DcgmControl", "Entity", "MetricGroup", "library_path"]

LIBRARY_NAME = "libdcgm.so.4"
CONFIG_ENV = "GPU_SIM_DCGM_CONFIG"
BLANK_KINDS = ("blank", "not_found", "not_supported", "not_permissioned")
"""Blank sentinels: DCGM's BLANK value, then base + 1, + 2, + 3."""
ENTITY_KINDS = ("gpu", "gpu_i", "gpu_ci")
"""Entity groups as the control file names them: DCGM_FE_GPU, _GPU_I, _GPU_CI."""
MAX_FIELD_ID = 1533       # DCGM_FI_MAX_FIELDS - 1 (dcgm_fields.h:3521)
MAX_GROUPS_PER_GPU = 10   # DCGM_PROF_MAX_NUM_GROUPS_V2 (dcgm_structs.h:4201)
MAX_FIELDS_PER_GROUP = 64  # DCGM_PROF_MAX_FIELD_IDS_PER_GROUP_V2 (dcgm_structs.h:4206)
MAX_GPUS = 32             # DCGM_MAX_NUM_DEVICES
MAX_RULES = 128           # blank/status lines the stub holds


def library_path() -> Path:
    """Path of the built stub ``libdcgm.so.4`` (next to the simulated NVML).

    Raises:
        FileNotFoundError: the library was not built (install the package with pip).
    """
    path = Path(__file__).resolve().parent.parent / "lib" / LIBRARY_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"the stub DCGM library is not built: {path} is missing; it is compiled by the "
            "package install (`pip install -e .` needs gcc and nvidia-nvml-dev)")
    return path


@dataclass(frozen=True)
class Entity:
    """A DCGM entity: ``Entity("gpu", 0)``, ``Entity("gpu_i", 1)``, ``Entity("gpu_ci", 0)``."""

    kind: str
    id: int

    def __post_init__(self) -> None:
        if self.kind not in ENTITY_KINDS:
            raise SimulatorError(f"entity kind must be one of {', '.join(ENTITY_KINDS)}, "
                                 f"got {self.kind!r}")
        if not 0 <= self.id < 2**32:
            raise SimulatorError(f"entity id must be a non-negative 32-bit integer, got {self.id}")

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True)
class MetricGroup:
    """One profiling metric group.

    Its fields are collected together; groups sharing ``major`` need one hardware pass each.
    """

    major: int
    minor: int
    fields: tuple[int, ...]

    def __post_init__(self) -> None:
        if not (0 <= self.major <= 0xFFFF and 0 <= self.minor <= 0xFFFF):
            raise SimulatorError("metric group ids must be 0..65535, got "
                                 f"{self.major}.{self.minor}")
        if not 1 <= len(self.fields) <= MAX_FIELDS_PER_GROUP:
            raise SimulatorError(f"a metric group holds 1..{MAX_FIELDS_PER_GROUP} fields, "
                                 f"got {len(self.fields)}")
        for f in self.fields:
            _check_field(f)


def _check_field(f: int) -> None:
    if not isinstance(f, int) or not 1 <= f <= MAX_FIELD_ID:
        raise SimulatorError(f"field id must be 1..{MAX_FIELD_ID}, got {f!r}")


def _check_gpu(gpu: int | None) -> str:
    if gpu is None:
        return "*"
    if not isinstance(gpu, int) or not 0 <= gpu < MAX_GPUS:
        raise SimulatorError(f"GPU id must be 0..{MAX_GPUS - 1} or None (every GPU), got {gpu!r}")
    return str(gpu)


@dataclass
class DcgmControl:
    """The stub's behaviour, written to ``path`` (atomically) after every change.

    ``gpu`` arguments are DCGM GPU ids (the NVML index); ``None`` means every GPU. ``field``
    arguments are DCGM field ids; ``None`` means every field. ``entity`` None means every
    entity.
    """

    path: Path
    _lines: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def env(self) -> dict[str, str]:
        """The environment variable that makes the stub read this file."""
        return {CONFIG_ENV: str(self.path)}

    def module_not_loaded(self, *, on: bool = True) -> None:
        """The profiling module is not loaded: profiling calls return MODULE_NOT_LOADED (-33)."""
        self._set("module_not_loaded", ["module_not_loaded"] if on else [])

    def paused(self, *, on: bool = True) -> None:
        """Profiling paused: profiling values are DCGM's BLANK."""
        self._set("paused", ["paused"] if on else [])

    def mux(self, passes: int) -> None:
        """Set how many metric groups of one majorId a watch may multiplex (default 5).

        A watch needing more returns PROFILING_MULTI_PASS (-38).
        """
        if not isinstance(passes, int) or not 1 <= passes <= MAX_GROUPS_PER_GPU:
            raise SimulatorError(f"mux takes 1..{MAX_GROUPS_PER_GPU} passes, got {passes!r}")
        self._set("mux", [f"mux {passes}"])

    def profiling_not_supported(self, gpu: int | None) -> None:
        """Profiling is not supported on ``gpu``: PROFILING_NOT_SUPPORTED (-36)."""
        self._add("profiling_not_supported", f"profiling_not_supported {_check_gpu(gpu)}")

    def library_error(self, gpu: int | None) -> None:
        """The profiling library fails on ``gpu``: PROFILING_LIBRARY_ERROR (-37)."""
        self._add("library_error", f"library_error {_check_gpu(gpu)}")

    def metric_groups(self, gpu: int | None, groups: Sequence[MetricGroup]) -> None:
        """Replace the metric groups of ``gpu`` (default: the architecture's split)."""
        if not 1 <= len(groups) <= MAX_GROUPS_PER_GPU:
            raise SimulatorError(f"a GPU has 1..{MAX_GROUPS_PER_GPU} metric groups, "
                                 f"got {len(groups)}")
        key = f"group {_check_gpu(gpu)}"
        self._set(key, [f"{key} {g.major} {g.minor} {','.join(map(str, g.fields))}"
                        for g in groups])

    def blank(self, field_id: int | None, entity: Entity | None = None,
              kind: str = "blank") -> None:
        """Make the value of ``field_id`` on ``entity`` a blank sentinel of ``kind``."""
        if kind not in BLANK_KINDS:
            raise SimulatorError(f"blank kind must be one of {', '.join(BLANK_KINDS)}, "
                                 f"got {kind!r}")
        self._rule(f"blank {self._target(field_id, entity)} {kind}")

    def status(self, field_id: int | None, entity: Entity | None, code: int) -> None:
        """Give the value of ``field_id`` on ``entity`` the per-value status ``code`` (< 0)."""
        if not isinstance(code, int) or not -1000 <= code < 0:
            raise SimulatorError(f"status takes a negative DCGM return code, got {code!r}")
        self._rule(f"status {self._target(field_id, entity)} {code}")

    def clear(self) -> None:
        """Back to the stub's default behaviour."""
        self._lines.clear()
        self.write()

    def render(self) -> str:
        """The control file's text for the current state."""
        body = [line for lines in self._lines.values() for line in lines]
        head = "# stub libdcgm.so.4 behaviour (gpu_exporter.simulator.dcgm.DcgmControl)\n"
        return head + "".join(f"{line}\n" for line in body)

    def write(self) -> None:
        """Write the file atomically (the stub sees the old or the new text, never a mix)."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.render())
        tmp.replace(self.path)

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _target(field_id: int | None, entity: Entity | None) -> str:
        if field_id is not None:
            _check_field(field_id)
        return f"{'*' if field_id is None else field_id} {'*' if entity is None else entity}"

    def _set(self, key: str, lines: list[str]) -> None:
        if lines:
            self._lines[key] = lines
        else:
            self._lines.pop(key, None)
        self.write()

    def _add(self, key: str, line: str) -> None:
        lines = self._lines.setdefault(key, [])
        if line not in lines:
            lines.append(line)
        self.write()

    def _rule(self, line: str) -> None:
        rules = self._lines.setdefault("rules", [])
        if len(rules) >= MAX_RULES:
            raise SimulatorError(f"at most {MAX_RULES} blank/status rules")
        rules.append(line)
        self.write()
