"""dcgm-exporter 4.6+'s YAML configuration file (``--config-file``), parsed by pure functions.

The schema is upstream's (version 1)::

    version: 1
    metrics:               # exactly one of:
      file: /etc/dcgm-exporter/dcp-metrics-included.csv
      fields:              # inline counters rows
        - {name: DCGM_FI_DEV_GPU_TEMP, prometheusType: gauge, help: GPU temperature (C).}
    collection:
      interval: 10s        # Go duration, whole milliseconds; the same as -c 10000
      watchGroups: [...]   # per-field intervals: refused, not supported yet

Flags and environment variables given explicitly win over the file (the CLI applies that
rule). Like upstream, the file is read once at start-up; a counters CSV it names is watched
and reloaded as ``-f`` is, inline ``fields`` are not. Unknown keys, duplicate keys, several
YAML documents, a wrong ``version`` and malformed values are errors naming the file and the
key: a configuration file fails closed.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

VERSION = 1

_UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
             "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


class ConfigFileError(ValueError):
    """The configuration file is unreadable or wrong; the message names the file and key."""


@dataclass(frozen=True, slots=True)
class FileSettings:
    """What a configuration file sets; ``None`` where it sets nothing.

    Attributes:
        counters_file: ``metrics.file``: the counters CSV to use (as ``-f``).
        counters_csv: ``metrics.fields`` written as counters CSV text.
        interval_ms: ``collection.interval`` in milliseconds (as ``-c``).
    """

    counters_file: str | None = None
    counters_csv: str | None = None
    interval_ms: int | None = None


def parse_duration_ms(text: str, *, allow_zero: bool = False) -> int:
    """A Go duration (``1m30s``, ``500ms``, ``1.5s``) in whole milliseconds, above zero.

    ``allow_zero`` accepts ``0``/``0s`` (Go servers read a zero timeout as "none").

    Raises:
        ValueError: not a duration, not positive (or negative with ``allow_zero``), or not
            whole milliseconds.
    """
    value = text.strip()
    if allow_zero and value == "0":
        return 0
    if not value:
        raise ValueError("empty duration")
    total_ns = 0.0
    pos = 0
    while pos < len(value):
        match = _PART.match(value, pos)
        if match is None:
            raise ValueError(f"{text!r} is not a duration such as '30s', '500ms' or '1m30s'")
        total_ns += float(match.group(1)) * _UNITS_NS[match.group(2)]
        pos = match.end()
    if total_ns <= 0 and not (allow_zero and total_ns == 0):
        raise ValueError(f"{text!r}: must be greater than 0")
    if total_ns % 1_000_000:
        raise ValueError(f"{text!r}: must be whole milliseconds")
    return int(total_ns // 1_000_000)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigFileError(
                f"line {line}: duplicate key {key!r} (first at line {seen[key]})")
        seen[key] = line
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _mapping(value: object, where: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigFileError(f"{where}: expected a mapping, got {type(value).__name__}")
    unknown = sorted(str(k) for k in value if k not in keys)
    if unknown:
        known = ", ".join(sorted(keys))
        raise ConfigFileError(f"{where}.{unknown[0]}: unknown key (known: {known})")
    return value


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigFileError(f"{where}: expected a non-empty string")
    return value.strip()


def _inline_csv(fields: object) -> str:
    if not isinstance(fields, list) or not fields:
        raise ConfigFileError("metrics.fields: expected a non-empty list")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    seen: dict[str, int] = {}
    for index, item in enumerate(fields):
        where = f"metrics.fields[{index}]"
        entry = _mapping(item, where, {"name", "prometheusType", "help"})
        name = _text(entry.get("name"), f"{where}.name")
        if name in seen:
            raise ConfigFileError(
                f"{where}.name: {name!r} repeats metrics.fields[{seen[name]}]")
        seen[name] = index
        writer.writerow([name, _text(entry.get("prometheusType"), f"{where}.prometheusType"),
                         _text(entry.get("help"), f"{where}.help")])
    return out.getvalue()


def parse_config_file(text: str) -> FileSettings:
    """Parse the YAML text (pure).

    Raises:
        ConfigFileError: naming the key (or line) and the problem, without the file name.
    """
    try:
        docs = list(yaml.load_all(text, Loader=_StrictLoader))  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigFileError(f"{where}not valid YAML: {problem}") from None
    if len(docs) != 1:
        raise ConfigFileError("expected exactly one YAML document")
    doc = _mapping(docs[0], "(top level)", {"version", "metrics", "collection"})
    version = doc.get("version")
    if type(version) is not int or version != VERSION:
        raise ConfigFileError(f"version: must be {VERSION}, got {version!r}")
    settings = FileSettings()
    if "metrics" in doc:
        metrics = _mapping(doc["metrics"], "metrics", {"file", "fields"})
        if ("file" in metrics) == ("fields" in metrics):
            raise ConfigFileError("metrics: give exactly one of 'file' or 'fields'")
        if "file" in metrics:
            settings = FileSettings(counters_file=_text(metrics["file"], "metrics.file"))
        else:
            settings = FileSettings(counters_csv=_inline_csv(metrics["fields"]))
    if "collection" in doc:
        collection = _mapping(doc["collection"], "collection", {"interval", "watchGroups"})
        if "watchGroups" in collection:
            raise ConfigFileError(
                "collection.watchGroups: per-field collection intervals are not supported yet "
                "by gpu-exporter; remove it (every field is collected each "
                "collection.interval)")
        if "interval" in collection:
            try:
                interval = parse_duration_ms(_text(collection["interval"],
                                                   "collection.interval"))
            except ValueError as exc:
                raise ConfigFileError(f"collection.interval: {exc}") from None
            settings = FileSettings(settings.counters_file, settings.counters_csv, interval)
    return settings


def load_config_file(path: Path) -> FileSettings:
    """Read and parse the file; errors name it.

    Raises:
        ConfigFileError: ``<path>: <key>: <problem>``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigFileError(f"{path}: cannot read: {reason}") from None
    try:
        return parse_config_file(text)
    except ConfigFileError as exc:
        raise ConfigFileError(f"{path}: {exc}") from None
