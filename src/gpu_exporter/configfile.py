"""dcgm-exporter's YAML configuration file (``--config-file``), parsed by pure functions.

Both of upstream's schemas (4.6.0-4.8.3 introduced version 1, 4.6.1-4.8.4 added version 2)::

    version: 1
    metrics:                 # file or fields (not both), and/or enableExporterMetrics
      file: /etc/dcgm-exporter/dcp-metrics-included.csv
      fields:                # inline counters rows
        - {name: DCGM_FI_DEV_GPU_TEMP, prometheusType: gauge, help: GPU temperature (C).}
      enableExporterMetrics: true
    collection:
      interval: 10s          # Go duration, whole milliseconds; the same as -c 10000
      retention: {maxAge: 10m, maxSamples: 0}
      watchGroups: [...]     # per-field intervals: refused, not supported yet
    sources: {dcgm: {detectBindUnbind: {enabled: true, pollInterval: 1s}}}
    server: {maxConcurrentScrapes: 16}

    version: 2
    metrics: {...}           # as in version 1
    collections:             # only the all-fields collection (include ["*"]) is supported
      - {name: all, every: 10s, metrics: {include: ["*"]}}
    sources: {dcgm: {watch: {maxKeepAge: 10m, maxKeepSamples: 0}, detectBindUnbind: {...}}}
    server: {maxConcurrentScrapes: 16}

What works here: the counters (``metrics.file``/``metrics.fields``) and the collect interval.
DCGM watch retention, bind/unbind detection, the scrape cap and the exporter-metrics switch are
validated and have no effect (there is no DCGM; scrapes serve a pre-rendered snapshot; process
metrics are always exported); :attr:`FileSettings.no_effect` names them for one log line.

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

from gpu_exporter.inputfile import (
    MAX_YAML_DEPTH,
    InputFileError,
    read_text_file,
    yaml_too_deep,
)

VERSIONS = (1, 2)

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
        interval_ms: the collect interval in milliseconds (as ``-c``): version 1's
            ``collection.interval``, version 2's all-fields collection's ``every``.
        no_effect: keys that were given and validated but do nothing here.
    """

    counters_file: str | None = None
    counters_csv: str | None = None
    interval_ms: int | None = None
    no_effect: tuple[str, ...] = ()


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


def _load_all(text: str) -> list[Any]:
    """YAML documents of ``text``; a key given twice in one mapping is an error."""
    import yaml  # noqa: PLC0415  # only with --config-file: never loaded otherwise

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(loader: StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigFileError(
                    f"line {line}: duplicate key {key!r} (first at line {seen[key]})")
            seen[key] = line
        return loader.construct_mapping(node)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return list(yaml.load_all(text, Loader=StrictLoader))  # a SafeLoader subclass


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


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigFileError(f"{where}: expected true or false")
    return value


def _count(value: object, where: str, *, minimum: int) -> int:
    if type(value) is not int or value < minimum:
        raise ConfigFileError(f"{where}: expected an integer of at least {minimum}")
    return value


def _duration(value: object, where: str, *, allow_zero: bool) -> int:
    try:
        return parse_duration_ms(_text(value, where), allow_zero=allow_zero)
    except ValueError as exc:
        raise ConfigFileError(f"{where}: {exc}") from None


_INT32_MAX = 2**31 - 1


def _retention(value: object, where: str, age: str, samples: str) -> None:
    """Validate a DCGM watch retention block (no effect here) as upstream does."""
    block = _mapping(value, where, {age, samples})
    if age in block:
        _duration(block[age], f"{where}.{age}", allow_zero=True)
    if samples in block and _count(block[samples], f"{where}.{samples}", minimum=0) > _INT32_MAX:
        raise ConfigFileError(f"{where}.{samples}: must not exceed {_INT32_MAX}")


def _metrics(value: object, no_effect: list[str]) -> tuple[str | None, str | None]:
    metrics = _mapping(value, "metrics", {"file", "fields", "enableExporterMetrics"})
    if "file" in metrics and "fields" in metrics:
        raise ConfigFileError("metrics: give exactly one of 'file' or 'fields'")
    if "enableExporterMetrics" in metrics:
        _bool(metrics["enableExporterMetrics"], "metrics.enableExporterMetrics")
        no_effect.append("metrics.enableExporterMetrics")
    elif "file" not in metrics and "fields" not in metrics:
        raise ConfigFileError("metrics: give 'file', 'fields' or 'enableExporterMetrics'")
    if "file" in metrics:
        return _text(metrics["file"], "metrics.file"), None
    if "fields" in metrics:
        return None, _inline_csv(metrics["fields"])
    return None, None


def _sources(value: object, no_effect: list[str], *, version: int) -> None:
    dcgm_keys = {"detectBindUnbind"} | ({"watch"} if version == 2 else set())
    sources = _mapping(value, "sources", {"dcgm"})
    if "dcgm" not in sources:
        return
    dcgm = _mapping(sources["dcgm"], "sources.dcgm", dcgm_keys)
    if "detectBindUnbind" in dcgm:
        where = "sources.dcgm.detectBindUnbind"
        detect = _mapping(dcgm["detectBindUnbind"], where, {"enabled", "pollInterval"})
        if "enabled" in detect:
            _bool(detect["enabled"], f"{where}.enabled")
        if "pollInterval" in detect:
            _duration(detect["pollInterval"], f"{where}.pollInterval", allow_zero=False)
        no_effect.append(where)
    if "watch" in dcgm:
        _retention(dcgm["watch"], "sources.dcgm.watch", "maxKeepAge", "maxKeepSamples")
        no_effect.append("sources.dcgm.watch")


def _server(value: object, no_effect: list[str]) -> None:
    server = _mapping(value, "server", {"maxConcurrentScrapes"})
    if "maxConcurrentScrapes" in server:
        _count(server["maxConcurrentScrapes"], "server.maxConcurrentScrapes", minimum=1)
        no_effect.append("server.maxConcurrentScrapes")


def _collection_v1(value: object, no_effect: list[str]) -> int | None:
    collection = _mapping(value, "collection", {"interval", "retention", "watchGroups"})
    if "watchGroups" in collection:
        raise ConfigFileError(
            "collection.watchGroups: per-field collection intervals are not supported yet "
            "by gpu-exporter; remove it (every field is collected each "
            "collection.interval)")
    if "retention" in collection:
        _retention(collection["retention"], "collection.retention", "maxAge", "maxSamples")
        no_effect.append("collection.retention")
    if "interval" in collection:
        return _duration(collection["interval"], "collection.interval", allow_zero=False)
    return None


def _collections_v2(value: object, no_effect: list[str]) -> int | None:
    if not isinstance(value, list) or not value:
        raise ConfigFileError("collections: expected a non-empty list")
    interval = None
    for index, item in enumerate(value):
        where = f"collections[{index}]"
        entry = _mapping(item, where, {"name", "every", "metrics", "sources"})
        _text(entry.get("name"), f"{where}.name")
        every = _duration(entry.get("every"), f"{where}.every", allow_zero=False)
        metrics = _mapping(entry.get("metrics"), f"{where}.metrics", {"include"})
        include = metrics.get("include")
        if include != ["*"]:
            raise ConfigFileError(
                f"{where}.metrics.include: only the all-fields collection (include: [\"*\"]) is "
                "supported; per-field collection intervals are not supported yet by "
                "gpu-exporter")
        if interval is not None:
            raise ConfigFileError(f"{where}: a second all-fields collection")
        interval = every
        if "sources" in entry:
            sources = _mapping(entry["sources"], f"{where}.sources", {"dcgm"})
            dcgm = _mapping(sources.get("dcgm"), f"{where}.sources.dcgm", {"watch"})
            if "watch" in dcgm:
                _retention(dcgm["watch"], f"{where}.sources.dcgm.watch", "maxKeepAge",
                           "maxKeepSamples")
                no_effect.append(f"{where}.sources.dcgm.watch")
    return interval


def parse_config_file(text: str) -> FileSettings:
    """Parse the YAML text (pure).

    Raises:
        ConfigFileError: naming the key (or line) and the problem, without the file name.
    """
    import yaml  # noqa: PLC0415  # only with --config-file: never loaded otherwise

    deep = yaml_too_deep(text)
    if deep is not None:
        raise ConfigFileError(f"line {deep}: nested deeper than {MAX_YAML_DEPTH} levels")
    try:
        docs = _load_all(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigFileError(f"{where}not valid YAML: {problem}") from None
    if len(docs) != 1:
        raise ConfigFileError("expected exactly one YAML document")
    if not isinstance(docs[0], dict):
        raise ConfigFileError(
            f"(top level): expected a mapping, got {type(docs[0]).__name__}")
    version = docs[0].get("version")
    if type(version) is not int or version not in VERSIONS:
        raise ConfigFileError(f"version: must be 1 or 2, got {version!r}")
    keys = {"version", "metrics", "sources", "server",
            "collection" if version == 1 else "collections"}
    doc = _mapping(docs[0], "(top level)", keys)
    no_effect: list[str] = []
    counters_file = counters_csv = None
    if "metrics" in doc:
        counters_file, counters_csv = _metrics(doc["metrics"], no_effect)
    if "sources" in doc:
        _sources(doc["sources"], no_effect, version=version)
    if "server" in doc:
        _server(doc["server"], no_effect)
    interval = None
    if "collection" in doc:
        interval = _collection_v1(doc["collection"], no_effect)
    if "collections" in doc:
        interval = _collections_v2(doc["collections"], no_effect)
    return FileSettings(counters_file, counters_csv, interval, tuple(no_effect))


def load_config_file(path: Path) -> FileSettings:
    """Read and parse the file; errors name it.

    Raises:
        ConfigFileError: ``<path>: <key>: <problem>``.
    """
    try:
        text = read_text_file(path)
    except InputFileError as exc:
        raise ConfigFileError(str(exc)) from None
    try:
        return parse_config_file(text)
    except ConfigFileError as exc:
        raise ConfigFileError(f"{path}: {exc}") from None
