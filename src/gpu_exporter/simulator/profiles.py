"""Simulator profiles: YAML loading with line numbers, validation, merging and rendering.

A profile describes a machine: system versions, a device count, ``device_defaults`` and
per-device overrides (``devices: [{index: N, ...}]``). A user file may start from a built-in
profile with ``base: <name>``. Everything here is pure except :func:`load_profile`, which
reads files; the result of :func:`resolve` is rendered by :func:`render_config` into the
line-based file the C library reads.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gpu_exporter.inputfile import MAX_YAML_DEPTH, InputFileError, read_text_file, yaml_too_deep

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"

Path_ = tuple[str | int, ...]


class SimulatorError(ValueError):
    """Bad simulator input: the message names the file, the key or line, and the problem."""


# ---------------------------------------------------------------------------- schema

_INT = "int"
_NUM = "number"
_STR = "str"
_BOOL = "bool"
_STRS = "list[str]"
_INTS = "list[int]"

BRANDS = {"quadro": 1, "tesla": 2, "nvs": 3, "geforce": 5, "titan": 6, "quadro_rtx": 12,
          "nvidia_rtx": 13, "nvidia": 14}
ARCHITECTURES = {"volta": 5, "turing": 6, "ampere": 7, "ada": 8, "hopper": 9, "blackwell": 10}
COMPUTE_MODES = {"default": 0, "exclusive_thread": 1, "prohibited": 2, "exclusive_process": 3}
# NVLink version (as a profile states it) -> nvml.h's nvmlNvlinkVersion_t, which
# nvmlDeviceGetNvLinkVersion returns (NVML_NVLINK_VERSION_3_0 is 4, 4_0 is 6, ...).
NVLINK_VERSIONS = {"1.0": 1, "2.0": 2, "2.2": 3, "3.0": 4, "3.1": 5, "4.0": 6, "5.0": 7, "6.0": 8}
PATTERNS = {"idle": (0.0, 0.0), "steady": (88.0, 8.0), "busy": (65.0, 30.0),
            "burst": (45.0, 45.0)}

DEVICE_SCHEMA: dict[str, Any] = {
    "name": _STR, "uuid": _STR, "serial": _STR, "brand": _STR, "architecture": _STR,
    "compute_capability": _STR, "vbios_version": _STR, "board_part_number": _STR,
    "board_id": _INT, "multi_gpu_board": _BOOL, "minor_number": _INT, "sm_count": _INT,
    "numa_node": _INT, "cpus_per_numa_node": _INT, "persistence_mode": _BOOL,
    "compute_mode": _STR, "display": _BOOL, "encoder": _BOOL, "decoder": _BOOL, "gpm": _BOOL,
    "pcie_replay_counter": _INT, "unsupported": _STRS, "module_id": _INT, "baseboard": _BOOL,
    "gsp_firmware": _BOOL,
    "inforom": {"image": _STR, "oem": _STR, "ecc": _STR, "power": _STR},
    "pci": {"device_id": _INT, "subsystem_id": _INT, "domain": _INT, "bus": _INT,
            "buses": _INTS, "gen": _INT, "width": _INT, "max_gen": _INT, "max_width": _INT,
            "peak_mbps": _INT},
    "memory": {"total_mib": _INT, "reserved_mib": _INT, "bar1_mib": _INT, "bus_width": _INT},
    "power": {"default_limit_w": _NUM, "min_limit_w": _NUM, "max_limit_w": _NUM,
              "idle_w": _NUM, "peak_w": _NUM, "average_field": _BOOL},
    "clocks": {"sm_max_mhz": _INT, "mem_max_mhz": _INT, "video_max_mhz": _INT,
               "sm_idle_mhz": _INT, "mem_idle_mhz": _INT, "sm_base_mhz": _INT,
               "video_idle_mhz": _INT},
    "temperature": {"ambient_c": _INT, "load_c": _INT, "slowdown_c": _INT,
                    "shutdown_c": _INT, "gpu_max_c": _INT, "mem_max_c": _INT,
                    "memory_sensor": _BOOL, "memory_offset_c": _INT},
    "nvlink": {"links": _INT, "version": _NUM, "link_mbps": _INT},
    "ecc": {"supported": _BOOL, "enabled": _BOOL, "page_retirement": _BOOL, "row_remap": _BOOL,
            "sbe_volatile": _INT, "dbe_volatile": _INT, "sbe_aggregate": _INT,
            "dbe_aggregate": _INT, "retired_sbe": _INT, "retired_dbe": _INT,
            "retired_pending": _BOOL, "remapped_correctable": _INT,
            "remapped_uncorrectable": _INT, "remap_pending": _BOOL, "remap_failure": _BOOL,
            "remap_banks": _INT},
    "fans": {"count": _INT, "idle_pct": _INT, "load_pct": _INT},
    "mig": {"capable": _BOOL, "table": _STR, "enabled": _BOOL, "devices": _STRS},
    "workload": {"pattern": _STR, "mean": _NUM, "amplitude": _NUM, "period_s": _NUM,
                 "processes": _INT, "graphics_processes": _BOOL, "mps": _BOOL},
}
DEVICE_OVERRIDE_SCHEMA: dict[str, Any] = {"index": _INT, **DEVICE_SCHEMA}
PROFILE_SCHEMA: dict[str, Any] = {
    "name": _STR, "description": _STR, "base": _STR, "device_count": _INT, "uptime_s": _NUM,
    "system": {"driver_version": _STR, "nvml_version": _STR, "cuda_version": _INT},
    "device_defaults": DEVICE_SCHEMA,
    "devices": [DEVICE_OVERRIDE_SCHEMA],
}

REQUIRED = (
    "name", "brand", "architecture", "compute_capability", "sm_count", "memory.total_mib",
    "power.default_limit_w", "power.idle_w", "clocks.sm_max_mhz", "clocks.mem_max_mhz",
    "pci.device_id",
)

# ---------------------------------------------------------------------------- MIG tables


@dataclass(frozen=True)
class GiProfile:
    """One GPU instance profile of a MIG-capable GPU."""

    name: str
    const: int  # NVML_GPU_INSTANCE_PROFILE_* constant
    id: int  # nvidia-smi profile id
    slices: int  # compute slices
    count: int  # max instances
    mem_mib: int
    sm: int
    ce: int
    dec: int
    enc: int
    jpg: int
    ofa: int
    mem_slices: int  # placement size (out of 8 memory slices)
    starts: tuple[int, ...]


_ONE = (0, 1, 2, 3, 4, 5, 6)
MIG_TABLES: dict[str, tuple[GiProfile, ...]] = {
    "a100-80gb": (
        GiProfile("1g.10gb", 0x0, 19, 1, 7, 9728, 14, 1, 0, 0, 0, 0, 1, _ONE),
        GiProfile("1g.10gb+me", 0x7, 20, 1, 1, 9728, 14, 1, 1, 0, 1, 1, 1, _ONE),
        GiProfile("1g.20gb", 0x9, 15, 1, 4, 19968, 14, 1, 1, 0, 0, 0, 2, (0, 2, 4, 6)),
        GiProfile("2g.20gb", 0x1, 14, 2, 3, 19968, 28, 2, 1, 0, 0, 0, 2, (0, 2, 4)),
        GiProfile("3g.40gb", 0x2, 9, 3, 2, 40192, 42, 3, 2, 0, 0, 0, 4, (0, 4)),
        GiProfile("4g.40gb", 0x3, 5, 4, 1, 40192, 56, 4, 2, 0, 0, 0, 4, (0,)),
        GiProfile("7g.80gb", 0x4, 0, 7, 1, 80896, 98, 7, 5, 0, 1, 1, 8, (0,)),
    ),
    "h100-80gb": (
        GiProfile("1g.10gb", 0x0, 19, 1, 7, 9984, 16, 1, 1, 0, 1, 0, 1, _ONE),
        GiProfile("1g.10gb+me", 0x7, 20, 1, 1, 9984, 16, 1, 1, 0, 1, 1, 1, _ONE),
        GiProfile("1g.20gb", 0x9, 15, 1, 4, 20096, 26, 1, 1, 0, 1, 0, 2, (0, 2, 4, 6)),
        GiProfile("2g.20gb", 0x1, 14, 2, 3, 20096, 32, 2, 2, 0, 2, 0, 2, (0, 2, 4)),
        GiProfile("3g.40gb", 0x2, 9, 3, 2, 40448, 60, 3, 3, 0, 3, 0, 4, (0, 4)),
        GiProfile("4g.40gb", 0x3, 5, 4, 1, 40448, 64, 4, 4, 0, 4, 0, 4, (0,)),
        GiProfile("7g.80gb", 0x4, 0, 7, 1, 81152, 132, 8, 7, 0, 7, 1, 8, (0,)),
    ),
}


@dataclass(frozen=True)
class MigDevice:
    """One placed MIG device: a compute instance of a GPU instance.

    ``ci_slices`` 0 means one compute instance spanning the whole GPU instance (name
    ``3g.40gb``); otherwise the GPU instance is split and this compute instance has that many
    compute slices (name ``1c.3g.40gb``, its share of the SMs).
    """

    profile: GiProfile
    gi: int
    ci: int
    start: int
    ci_slices: int = 0

    @property
    def name(self) -> str:
        """MIG device profile name as the driver shows it (``3g.40gb``, ``1c.3g.40gb``)."""
        p = self.profile
        return f"{self.ci_slices}c.{p.name}" if self.ci_slices else p.name

    def render(self) -> str:
        """The C library's MIG line (after the key)."""
        p = self.profile
        sm = p.sm * self.ci_slices // p.slices if self.ci_slices else p.sm
        return (f"{self.name} {p.const} {p.id} {self.gi} {self.ci} {self.start} {p.mem_slices} "
                f"{p.mem_mib} {sm} {p.ce} {p.dec} {p.enc} {p.jpg} {p.ofa}")


_SPLIT = re.compile(r"^([1-7])c\.(.+)$")


def _gi_id(p: GiProfile, start: int) -> int:
    if p.mem_slices == 8:
        return 0
    if p.mem_slices == 4:
        return 1 + start // 4
    if p.mem_slices == 2:
        return 3 + start // 2
    return 7 + start


def place_mig(table: str, names: Sequence[str]) -> tuple[MigDevice, ...]:
    """Place MIG devices first-fit on the 8 memory slices, like ``nvidia-smi mig -cgi``.

    A name ``<k>c.<profile>`` is a compute instance of ``k`` compute slices: consecutive ones of
    the same profile share one GPU instance until its compute slices are used up
    (``["1c.3g.40gb", "2c.3g.40gb"]`` is one ``3g.40gb`` split in two, like
    ``nvidia-smi mig -cci``); compute instance ids count from 0 within their GPU instance.

    Raises:
        ValueError: unknown table or profile name, or the layout does not fit.
    """
    profiles = {p.name: p for p in MIG_TABLES[table]}
    used = [False] * 8
    out: list[MigDevice] = []
    split: tuple[MigDevice, int] | None = None  # last split GPU instance, compute slices left
    for name in names:
        match = _SPLIT.match(name)
        base = match.group(2) if match else name
        p = profiles.get(base)
        if p is None:
            raise ValueError(f"unknown MIG profile {name!r} (known: {', '.join(profiles)})")
        ci_slices = int(match.group(1)) if match else 0
        if ci_slices > p.slices:
            raise ValueError(f"{name}: a {base} instance has only {p.slices} compute slices")
        if ci_slices and split is not None and split[0].profile is p and split[1] >= ci_slices:
            first, left = split
            ci = sum(1 for m in out if m.gi == first.gi)
            out.append(MigDevice(p, first.gi, ci, first.start, ci_slices))
            split = (first, left - ci_slices)
            continue
        if len({m.gi for m in out if m.profile is p}) >= p.count:
            raise ValueError(f"at most {p.count} x {base}")
        for s in p.starts:
            if not any(used[s:s + p.mem_slices]) and s + p.mem_slices <= 8:
                for k in range(s, s + p.mem_slices):
                    used[k] = True
                out.append(MigDevice(p, _gi_id(p, s), 0, s, ci_slices))
                split = (out[-1], p.slices - ci_slices) if ci_slices else None
                break
        else:
            raise ValueError(f"MIG layout {list(names)} does not fit: no free placement for "
                             f"{name} (7 compute slices, 8 memory slices per GPU)")
    if sum(m.profile.slices for m in out if m.ci == 0) > 7:
        raise ValueError(f"MIG layout {list(names)} needs more than 7 compute slices")
    return tuple(out)


# ---------------------------------------------------------------------------- YAML with lines


@dataclass(frozen=True)
class Doc:
    """A parsed YAML document and the line of every key/item in it."""

    source: str
    data: Any
    lines: Mapping[Path_, int]

    def where(self, path: Path_) -> str:
        """``file:line`` of ``path``, or of its nearest ancestor that has a line."""
        p = path
        while p and p not in self.lines:
            p = p[:-1]
        line = self.lines.get(p)
        return f"{self.source}:{line}" if line else self.source


def _convert(node: yaml.Node, path: Path_, lines: dict[Path_, int], source: str,
             loader: yaml.SafeLoader) -> object:
    if isinstance(node, yaml.MappingNode):
        out: dict[str, object] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k)
            if key in out:
                raise SimulatorError(f"{source}:{k.start_mark.line + 1}: duplicate key "
                                     f"{_dotted((*path, key))!r}")
            lines[(*path, key)] = k.start_mark.line + 1
            out[key] = _convert(v, (*path, key), lines, source, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, v in enumerate(node.value):
            lines[(*path, i)] = v.start_mark.line + 1
            items.append(_convert(v, (*path, i), lines, source, loader))
        return items
    value: object = loader.construct_object(node, deep=True)  # implicit type: int, hex, ...
    return value


def parse_yaml(text: str, source: str) -> Doc:
    """Parse YAML text into a :class:`Doc` (pure).

    Raises:
        SimulatorError: YAML syntax error (with its line) or an empty document.
    """
    deep = yaml_too_deep(text)
    if deep is not None:
        raise SimulatorError(f"{source}:{deep}: nested deeper than {MAX_YAML_DEPTH} levels")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SimulatorError(f"{source}{line}: invalid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise SimulatorError(f"{source}: invalid YAML: {exc}") from None
    if node is None:
        raise SimulatorError(f"{source}: empty profile")
    lines: dict[Path_, int] = {}
    data = _convert(node, (), lines, source, yaml.SafeLoader(""))
    if not isinstance(data, dict):
        raise SimulatorError(f"{source}:1: a profile must be a mapping of keys")
    return Doc(source, data, lines)


def _dotted(path: Path_) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check(doc: Doc, value: object, schema: object, path: Path_) -> None:
    where = doc.where(path)
    key = _dotted(path)
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise SimulatorError(f"{where}: key {key!r}: expected a mapping, got {value!r}")
        for k, v in value.items():
            if k not in schema:
                raise SimulatorError(f"{doc.where((*path, k))}: unknown key "
                                     f"{_dotted((*path, k))!r} (expected one of: "
                                     f"{', '.join(sorted(schema))})")
            _check(doc, v, schema[k], (*path, k))
        return
    if isinstance(schema, list):
        if not isinstance(value, list):
            raise SimulatorError(f"{where}: key {key!r}: expected a list, got {value!r}")
        for i, v in enumerate(value):
            _check(doc, v, schema[0], (*path, i))
        return
    assert isinstance(schema, str)  # noqa: S101 - the schema tables above hold only these
    ok = {
        _INT: isinstance(value, int) and not isinstance(value, bool),
        _NUM: isinstance(value, int | float) and not isinstance(value, bool),
        _STR: isinstance(value, str | int | float) and not isinstance(value, bool),
        _BOOL: isinstance(value, bool),
        _STRS: isinstance(value, list) and all(isinstance(x, str) for x in value),
        _INTS: isinstance(value, list) and all(isinstance(x, int) for x in value),
    }[schema]
    if not ok:
        raise SimulatorError(f"{where}: key {key!r}: expected {schema}, got {value!r}")
    texts = value if isinstance(value, list) else [value]
    if any(isinstance(t, str) and _CONTROL.search(t) for t in texts):
        raise SimulatorError(f"{where}: key {key!r}: control characters (line breaks, tabs, "
                             f"...) are not allowed, got {value!r}")


# ---------------------------------------------------------------------------- resolution


def builtin_names() -> list[str]:
    """Names of the built-in profiles."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(profile: str | os.PathLike[str]) -> list[Doc]:
    """Load a profile by built-in name or path; return it and its bases, base first.

    Raises:
        SimulatorError: unknown name (lists the available ones), unreadable or bad file.
    """
    chain: list[Doc] = []
    current: str | os.PathLike[str] | None = profile
    while current is not None:
        doc = _read(current)
        if any(d.source == doc.source for d in chain):
            raise SimulatorError(f"{doc.source}: 'base' chain loops back to itself")
        _check(doc, doc.data, PROFILE_SCHEMA, ())
        chain.insert(0, doc)
        base = doc.data.get("base")
        current = str(base) if base is not None else None
    return chain


def _read(profile: str | os.PathLike[str]) -> Doc:
    text_name = os.fspath(profile)
    looks_like_path = (isinstance(profile, os.PathLike) or "/" in text_name
                       or text_name.endswith((".yaml", ".yml")))
    if not looks_like_path:
        path = PROFILE_DIR / f"{text_name}.yaml"
        if not path.is_file():
            raise SimulatorError(f"unknown profile {text_name!r}; available profiles: "
                                 f"{', '.join(builtin_names())} (or a path to a YAML file)")
    else:
        path = Path(text_name)
    try:
        text = read_text_file(path)
    except InputFileError as exc:
        raise SimulatorError(str(exc).replace(": cannot read:", ": cannot read profile:", 1)
                             ) from None
    return parse_yaml(text, str(path))


def _merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _get(d: Mapping[str, Any], dotted: str, default: object = None) -> object:
    cur: object = d
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


class _Dev:
    """Typed access to a merged device mapping (dotted keys)."""

    def __init__(self, dev: Mapping[str, Any]) -> None:
        self.dev = dev

    def has(self, key: str) -> bool:
        return _get(self.dev, key) is not None

    def i(self, key: str, default: int = 0) -> int:
        v = _get(self.dev, key, default)
        return int(v) if isinstance(v, int | float) else default

    def f(self, key: str, default: float = 0.0) -> float:
        v = _get(self.dev, key, default)
        return float(v) if isinstance(v, int | float) else default

    def s(self, key: str, default: str = "") -> str:
        v = _get(self.dev, key, default)
        return default if v is None else str(v)

    def b(self, key: str, default: bool = False) -> int:  # noqa: FBT001, FBT002
        v = _get(self.dev, key, default)
        return 1 if v else 0

    def strs(self, key: str) -> list[str]:
        v = _get(self.dev, key, [])
        return [str(x) for x in v] if isinstance(v, list) else []

    def ints(self, key: str) -> list[int]:
        v = _get(self.dev, key, [])
        return [int(x) for x in v] if isinstance(v, list) else []


@dataclass(frozen=True)
class Resolved:
    """A fully merged profile: system settings and one settings mapping per device."""

    name: str
    source: str
    system: Mapping[str, Any]
    uptime_s: float
    devices: tuple[Mapping[str, Any], ...]


def resolve(chain: Sequence[Doc]) -> Resolved:
    """Merge a profile chain (base first) into per-device settings and validate them (pure).

    Raises:
        SimulatorError: a missing or inconsistent setting, naming the file and key.
    """
    top: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    overrides: dict[int, tuple[Doc, int, dict[str, Any]]] = {}
    for doc in chain:
        data = doc.data
        for k in ("name", "description", "device_count", "uptime_s"):
            if k in data:
                top[k] = data[k]
        top["system"] = _merge(top.get("system", {}), data.get("system", {}))
        defaults = _merge(defaults, data.get("device_defaults", {}))
        for i, dev in enumerate(data.get("devices", [])):
            if "index" not in dev:
                raise SimulatorError(f"{doc.where(('devices', i))}: key 'devices[{i}]': "
                                     "missing 'index'")
            idx = dev["index"]
            body = {k: v for k, v in dev.items() if k != "index"}
            prev = overrides.get(idx)
            overrides[idx] = (doc, i, _merge(prev[2], body) if prev else body)
    last = chain[-1]
    count = top.get("device_count")
    if not isinstance(count, int) or not 1 <= count <= 64:
        raise SimulatorError(f"{last.where(('device_count',))}: key 'device_count': must be an "
                             f"integer from 1 to 64, got {count!r}")
    for idx, (doc, i, _) in list(overrides.items()):
        if not 0 <= idx < count and doc is not last:
            del overrides[idx]  # a base profile's device that this profile does not have
        elif not 0 <= idx < count:
            raise SimulatorError(f"{doc.where(('devices', i, 'index'))}: key "
                                 f"'devices[{i}].index': {idx} is outside 0..{count - 1}")
    name = str(top.get("name") or Path(last.source).stem)
    devices = []
    for idx in range(count):
        ov = overrides.get(idx)
        dev = _merge(defaults, ov[2]) if ov else dict(defaults)
        where_doc, where_path = ((ov[0], ("devices", ov[1])) if ov
                                 else (last, ("device_defaults",)))
        _validate_device(dev, idx, where_doc, where_path)
        devices.append(dev)
    system = top["system"]
    for key in ("driver_version", "nvml_version", "cuda_version"):
        if key not in system:
            raise SimulatorError(f"{last.where(('system',))}: key 'system.{key}' is required")
    return Resolved(name, last.source, system, float(top.get("uptime_s", 86400.0)),
                    tuple(devices))


def _validate_device(dev: Mapping[str, Any], idx: int, doc: Doc, path: Path_) -> None:
    def fail(key: str, problem: str) -> SimulatorError:
        full = (*path, *key.split("."))
        return SimulatorError(f"{doc.where(full)}: device {idx}: key {_dotted(full)!r}: "
                              f"{problem}")

    for key in REQUIRED:
        if _get(dev, key) is None:
            raise fail(key, "is required (set it in device_defaults or the device)")
    _validate_values(dev, fail)
    _validate_lists(dev, fail)


def _validate_values(dev: Mapping[str, Any], fail: Callable[[str, str], SimulatorError]) -> None:
    for key, table in (("brand", BRANDS), ("architecture", ARCHITECTURES),
                       ("compute_mode", COMPUTE_MODES), ("workload.pattern", PATTERNS)):
        value = _get(dev, key)
        if value is not None and str(value) not in table:
            raise fail(key, f"unknown value {value!r} (expected one of: {', '.join(table)})")
    cc = str(dev["compute_capability"]).split(".")
    if len(cc) != 2 or not all(c.isdigit() for c in cc):
        raise fail("compute_capability", f"expected MAJOR.MINOR, got {dev['compute_capability']!r}")
    mean, amp = _workload(dev)
    if mean - amp < 0 or mean + amp > 100:
        raise fail("workload", f"mean {mean} +/- amplitude {amp} must stay within 0..100")
    if _Dev(dev).i("memory.reserved_mib") >= dev["memory"]["total_mib"]:
        raise fail("memory.reserved_mib", "must be smaller than memory.total_mib")
    if _Dev(dev).i("nvlink.links") > 18:
        raise fail("nvlink.links", "at most 18 links are simulated")
    if _Dev(dev).i("nvlink.links") and nvlink_version(dev) is None:
        raise fail("nvlink.version", f"unknown NVLink version {_get(dev, 'nvlink.version')!r} "
                                     f"(expected one of: {', '.join(NVLINK_VERSIONS)})")
    if _Dev(dev).i("workload.processes") > 8:
        raise fail("workload.processes", "at most 8 process slots per device")


def nvlink_version(dev: Mapping[str, Any]) -> int | None:
    """The ``nvmlNvlinkVersion_t`` value of a device's ``nvlink.version`` (None: unknown)."""
    value = _get(dev, "nvlink.version")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return NVLINK_VERSIONS.get(f"{float(value):.1f}")


def _validate_lists(dev: Mapping[str, Any], fail: Callable[[str, str], SimulatorError]) -> None:
    d = _Dev(dev)
    for entry in d.strs("unsupported"):
        if entry.startswith("field:"):
            if not entry[6:].isdigit() or int(entry[6:]) >= 512:
                raise fail("unsupported", f"bad field id in {entry!r} (expected field:<0-511>)")
        elif not entry.startswith("nvml"):
            raise fail("unsupported", f"{entry!r} is neither an NVML function nor field:<id>")
    mig_devices = d.strs("mig.devices")
    if mig_devices:
        if not d.b("mig.capable"):
            raise fail("mig.devices", "MIG devices need mig.capable: true")
        table = d.s("mig.table")
        if table not in MIG_TABLES:
            raise fail("mig.table", f"unknown MIG table {table!r} (known: {', '.join(MIG_TABLES)})")
        try:
            place_mig(table, mig_devices)
        except ValueError as exc:
            raise fail("mig.devices", str(exc)) from None


def _workload(dev: Mapping[str, Any]) -> tuple[float, float]:
    d = _Dev(dev)
    mean, amp = PATTERNS.get(d.s("workload.pattern", "busy"), PATTERNS["busy"])
    return (d.f("workload.mean", mean), d.f("workload.amplitude", amp))


# ---------------------------------------------------------------------------- rendering


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()


def device_uuid(profile: str, seed: int, index: int) -> str:
    """Deterministic ``GPU-...`` UUID of a device (same profile and seed, same UUID)."""
    h = _digest("uuid", profile, seed, index).hex()
    return f"GPU-{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def device_serial(profile: str, seed: int, index: int) -> str:
    """Deterministic 13-digit board serial."""
    return "1" + str(int.from_bytes(_digest("serial", profile, seed, index)[:8], "big"))[-12:]


def device_lines(r: Resolved, seed: int, idx: int, dev: Mapping[str, Any]) -> list[str]:
    """The C library's ``g <idx> <key> <value>`` lines for one device (pure)."""
    d = _Dev(dev)
    buses = d.ints("pci.buses")
    bus = d.i("pci.bus", buses[idx] if idx < len(buses) else 0x10 + idx * 0x10)
    domain = d.i("pci.domain")
    mean, amp = _workload(dev)
    major, minor = str(dev["compute_capability"]).split(".")
    count = len(r.devices)
    mig_table = d.s("mig.table")
    mig_devs = place_mig(mig_table, d.strs("mig.devices")) if d.strs("mig.devices") else ()
    limit = d.f("power.default_limit_w")
    fields: dict[str, Any] = {
        "name": dev["name"],
        "uuid": d.s("uuid") or device_uuid(r.name, seed, idx),
        "serial": d.s("serial") or device_serial(r.name, seed, idx),
        "part_number": d.s("board_part_number"),
        "vbios": d.s("vbios_version"),
        "inforom_image": d.s("inforom.image"),
        "inforom_oem": d.s("inforom.oem"),
        "inforom_ecc": d.s("inforom.ecc"),
        "inforom_pwr": d.s("inforom.power"),
        "bus_id": f"{domain:08X}:{bus:02X}:00.0",
        "brand": BRANDS[str(dev["brand"])],
        "arch": ARCHITECTURES[str(dev["architecture"])],
        "cc_major": major, "cc_minor": minor,
        "pci_device_id": d.i("pci.device_id"), "pci_subsystem_id": d.i("pci.subsystem_id", 0),
        "pci_domain": domain, "pci_bus": bus, "pci_device": 0,
        "minor": d.i("minor_number", idx),
        "board_id": d.i("board_id", 0x100 * (bus or 1)),
        "multi_gpu_board": d.b("multi_gpu_board"),
        "mem_total_mib": d.i("memory.total_mib"),
        "mem_reserved_mib": d.i("memory.reserved_mib"),
        "bar1_total_mib": d.i("memory.bar1_mib", 256),
        "mem_bus_width": d.i("memory.bus_width"),
        "power_default_mw": round(limit * 1000),
        "power_min_mw": round(d.f("power.min_limit_w", limit) * 1000),
        "power_max_mw": round(d.f("power.max_limit_w", limit) * 1000),
        "power_idle_mw": round(d.f("power.idle_w") * 1000),
        "power_peak_mw": round(d.f("power.peak_w", limit * 0.95) * 1000),
        "power_average_field": d.b("power.average_field", True),
        "clock_sm_max": d.i("clocks.sm_max_mhz"), "clock_mem_max": d.i("clocks.mem_max_mhz"),
        "clock_video_max": d.i("clocks.video_max_mhz", d.i("clocks.sm_max_mhz")),
        "clock_sm_idle": d.i("clocks.sm_idle_mhz", 210),
        "clock_mem_idle": d.i("clocks.mem_idle_mhz", d.i("clocks.mem_max_mhz")),
        "clock_sm_base": d.i("clocks.sm_base_mhz", d.i("clocks.sm_max_mhz")),
        "clock_video_idle": d.i("clocks.video_idle_mhz", 540),
        "temp_ambient": d.i("temperature.ambient_c", 30),
        "temp_load": d.i("temperature.load_c", 70),
        "temp_slowdown": d.i("temperature.slowdown_c", 90),
        "temp_shutdown": d.i("temperature.shutdown_c", 95),
        "temp_gpu_max": d.i("temperature.gpu_max_c", 87),
        "temp_mem_max": d.i("temperature.mem_max_c", 95),
        "mem_temp": d.b("temperature.memory_sensor"),
        "mem_temp_offset": d.i("temperature.memory_offset_c", 5),
        "sm_count": dev["sm_count"],
        "pcie_gen": d.i("pci.gen", 4), "pcie_width": d.i("pci.width", 16),
        "pcie_max_gen": d.i("pci.max_gen", d.i("pci.gen", 4)),
        "pcie_max_width": d.i("pci.max_width", d.i("pci.width", 16)),
        "pcie_peak_mbps": d.i("pci.peak_mbps", 25000),
        "pcie_replay": d.i("pcie_replay_counter", 0),
        "nvlink_links": d.i("nvlink.links", 0), "nvlink_version": nvlink_version(dev) or 0,
        "nvlink_link_mbps": d.i("nvlink.link_mbps", 0),
        "ecc_supported": d.b("ecc.supported"), "ecc_enabled": d.b("ecc.enabled"),
        "page_retirement": d.b("ecc.page_retirement"), "row_remap": d.b("ecc.row_remap"),
        "retired_sbe": d.i("ecc.retired_sbe", 0), "retired_dbe": d.i("ecc.retired_dbe", 0),
        "retired_pending": d.b("ecc.retired_pending"),
        "remap_cor": d.i("ecc.remapped_correctable", 0),
        "remap_unc": d.i("ecc.remapped_uncorrectable", 0),
        "remap_pending": d.b("ecc.remap_pending"), "remap_failure": d.b("ecc.remap_failure"),
        "ecc_sbe_agg": d.i("ecc.sbe_aggregate", 0), "ecc_dbe_agg": d.i("ecc.dbe_aggregate", 0),
        "ecc_sbe_vol": d.i("ecc.sbe_volatile", 0), "ecc_dbe_vol": d.i("ecc.dbe_volatile", 0),
        "gpm": d.b("gpm"), "mig_capable": d.b("mig.capable"),
        "mig_enabled": 1 if mig_devs else d.b("mig.enabled"),
        "fans": d.i("fans.count", 0), "fan_idle": d.i("fans.idle_pct", 30),
        "fan_load": d.i("fans.load_pct", 75),
        "encoder": d.b("encoder", True), "decoder": d.b("decoder", True),
        "display": d.b("display"),
        "procs": d.i("workload.processes", 3),
        "mps": d.b("workload.mps"), "graphics_procs": d.b("workload.graphics_processes"),
        "persistence": d.b("persistence_mode", True),
        "compute_mode": COMPUTE_MODES[d.s("compute_mode", "default")],
        "numa_node": d.i("numa_node", idx * 2 // count if count > 1 else 0),
        "cpu_affinity_cpus": d.i("cpus_per_numa_node", 32),
        # GPUs on a baseboard (HGX/DGX) number their modules from 1; other boards answer 0
        "module_id": d.i("module_id", idx + 1 if d.b("baseboard") else 0),
        "gsp": d.b("gsp_firmware"),
        "remap_banks": d.i("ecc.remap_banks", 0),
        "util_mean": mean, "util_amp": amp, "util_period": d.f("workload.period_s", 300.0),
    }
    lines = [f"g {idx} {k} {v}" for k, v in fields.items()]
    lines += [f"g {idx} unsupported {u}" for u in d.strs("unsupported")]
    if mig_table:
        for p in MIG_TABLES[mig_table]:
            starts = sum(1 << s for s in p.starts)
            lines.append(f"g {idx} gip {p.name} {p.const} {p.id} {p.slices} {p.count} "
                         f"{p.mem_mib} {p.sm} {p.ce} {p.dec} {p.enc} {p.jpg} {p.ofa} "
                         f"{p.mem_slices} {starts}")
    lines += [f"g {idx} mig {m.render()}" for m in mig_devs]
    return lines


def render_config(r: Resolved, seed: int, frozen_time: float | None = None) -> str:
    """Render the resolved profile as the C library's ``config`` file (pure)."""
    out = [
        "# gpu-sim resolved configuration (generated; edit the profile instead)",
        "version 1",
        f"# profile {r.name} from {r.source}",
        f"seed {seed}",
        f"uptime {r.uptime_s}",
        f"driver_version {r.system['driver_version']}",
        f"nvml_version {r.system['nvml_version']}",
        f"cuda_version {r.system['cuda_version']}",
        f"gpus {len(r.devices)}",
    ]
    if frozen_time is not None:
        out.append(f"frozen_time {frozen_time}")
    for idx, dev in enumerate(r.devices):
        out += device_lines(r, seed, idx, dev)
    return "\n".join(out) + "\n"
