"""Render one collection cycle into exposition bytes (pure functions).

The output keeps dcgm-exporter's label order (``gpu``, ``UUID``, ``pci_bus_id``, ``device``,
``modelName``, [``GPU_I_PROFILE``, ``GPU_I_ID``], ``hostname``, sorted label fields, sorted
attributes such as ``container``/``err_code``/``namespace``/``pod``), which
prometheus_client's own writer cannot do (it sorts label names), so the lines are written
here. Integral values print without a fraction, others as Python's shortest round-trip repr;
label values and HELP texts are escaped per the text format, and tests parse every output
back with prometheus_client's parsers and ``promtool check metrics``.

Two formats are produced from the same families:

* Prometheus text 0.0.4: names verbatim; DCGM counters keep their upstream names (no
  ``_total``), as dcgm-exporter does.
* OpenMetrics 1.0: a counter family whose samples do not end in ``_total`` (every DCGM
  counter) is typed ``unknown`` so that its series names stay exactly the DCGM names.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from gpu_exporter.native import NATIVE_METRICS

if TYPE_CHECKING:
    from gpu_exporter.counters import CounterSpec
    from gpu_exporter.model import Entity, Labels, Native, NativeRows, Sample

Format = Literal["text", "openmetrics"]

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

_OLD_LABEL_NAMES = {
    "UUID": "uuid",
    "pod": "pod_name",
    "namespace": "pod_namespace",
    "container": "container_name",
}


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """How GPU label sets are spelled.

    Attributes:
        hostname: value of the hostname label; ``None`` drops the label (``--no-hostname``).
        hostname_label: ``Hostname`` (dcgm-exporter up to 4.5.x) or ``hostname`` (4.6 and later).
        old_names: dcgm-exporter 1.x label names (``-o``): ``uuid``, ``pod_name``, ...
        replace_blanks: replace spaces in ``modelName`` with ``-`` (``-rbmn``).
    """

    hostname: str | None = None
    hostname_label: str = "Hostname"
    old_names: bool = False
    replace_blanks: bool = False


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family, ready to be written."""

    name: str
    type: str
    help: str
    samples: tuple[tuple[str, Labels, float], ...]


def _label_name(name: str, options: RenderOptions) -> str:
    return _OLD_LABEL_NAMES.get(name, name) if options.old_names else name


@lru_cache(maxsize=4096)  # pure; the same entities come back every cycle (bounded)
def gpu_labels(entity: Entity, options: RenderOptions, *, native: bool = False) -> Labels:
    """The dcgm label set of an entity, in upstream order (hostname last).

    ``native`` spells ``modelName`` as ``model_name`` for our own ``gpu_exporter_*``
    families, which follow Prometheus naming (promtool lint) rather than dcgm-exporter's;
    every other label is the same, so the two join on ``gpu``/``UUID``/``GPU_I_ID``.
    """
    model = entity.model_name.replace(" ", "-") if options.replace_blanks else entity.model_name
    pairs: list[tuple[str, str]] = [
        ("gpu", str(entity.gpu)),
        (_label_name("UUID", options), entity.uuid),
        ("pci_bus_id", entity.pci_bus_id),
        ("device", entity.device),
        ("model_name" if native else "modelName", model),
    ]
    if entity.gi_id is not None:
        pairs.append(("GPU_I_PROFILE", entity.gi_profile or ""))
        pairs.append(("GPU_I_ID", str(entity.gi_id)))
    if options.hostname is not None:
        pairs.append((options.hostname_label, options.hostname))
    return tuple(pairs)


def _label_fields(
    samples: Iterable[Sample], label_rows: Mapping[int, Sequence[str]]
) -> dict[tuple[int, int | None], list[tuple[str, str]]]:
    """Label-type CSV rows per entity key ``(gpu, gi_id)``; MIG instances inherit the GPU's."""
    per_key: dict[tuple[int, int | None], dict[str, str]] = defaultdict(dict)
    for sample in samples:
        names = label_rows.get(sample.field_id)
        if names is None:
            continue
        for name in names:
            value = sample.value
            text = value if isinstance(value, str) else _format_value(float(value))
            per_key[(sample.entity.gpu, sample.entity.gi_id)][name] = text
    result: dict[tuple[int, int | None], list[tuple[str, str]]] = {}
    for (gpu, gi_id), fields in per_key.items():
        merged = dict(per_key.get((gpu, None), {})) if gi_id is not None else {}
        merged.update(fields)
        result[(gpu, gi_id)] = sorted(merged.items())
    return result


def dcgm_families(
    samples: Sequence[Sample],
    counters: Sequence[CounterSpec],
    options: RenderOptions,
) -> list[Family]:
    """Build one family per non-label counters row, in file order."""
    label_rows: dict[int, list[str]] = defaultdict(list)
    for spec in counters:
        if spec.prom_type == "label":
            label_rows[spec.field_id].append(spec.name)
    label_fields = _label_fields(samples, label_rows)

    by_field: dict[int, list[Sample]] = defaultdict(list)
    for sample in samples:
        if not isinstance(sample.value, str):
            by_field[sample.field_id].append(sample)

    parent_label_fields: dict[int, list[tuple[str, str]]] = {
        gpu: fields for (gpu, gi_id), fields in label_fields.items() if gi_id is None
    }
    families: list[Family] = []
    for spec in counters:
        if spec.prom_type == "label":
            continue
        rows = []
        for sample in sorted(by_field.get(spec.field_id, ()), key=_sample_order):
            entity = sample.entity
            extra = label_fields.get((entity.gpu, entity.gi_id))
            if extra is None:
                extra = parent_label_fields.get(entity.gpu, [])
            attrs = sorted((_label_name(k, options), v) for k, v in sample.labels)
            labels = gpu_labels(entity, options) + tuple(extra) + tuple(attrs)
            rows.append((spec.name, labels, float(sample.value)))
        if rows:
            families.append(Family(spec.name, spec.prom_type, spec.help, tuple(rows)))
    return families


def _sample_order(sample: Sample) -> tuple[int, int, tuple[tuple[str, str], ...]]:
    gi = -1 if sample.entity.gi_id is None else sample.entity.gi_id
    return (sample.entity.gpu, gi, sample.labels)


def native_families(
    natives: Iterable[Native], options: RenderOptions, blocks: Sequence[NativeRows] = (),
) -> list[Family]:
    """Families for our own ``gpu_exporter_*`` samples, in table order.

    ``blocks``: more rows in columns (:class:`~gpu_exporter.model.NativeRows`), after the
    single ``natives`` of the same family, block by block.
    """
    by_name: dict[str, list[tuple[str, Labels, float]]] = defaultdict(list)
    for native in natives:
        name = native.name
        if name not in NATIVE_METRICS:
            raise KeyError(_unknown(name))
        labels: Labels = ()
        if native.entity is not None:
            labels = gpu_labels(native.entity, options, native=True)
        by_name[name].append((name, labels + native.labels, native.value))
    for block in blocks:
        device: Labels = ()
        if block.entity is not None:
            device = gpu_labels(block.entity, options, native=True)
        for name, rows, values in zip(block.names, block.labels, block.values, strict=True):
            if name not in NATIVE_METRICS:
                raise KeyError(_unknown(name))
            by_name[name].extend([(name, device + labels, value)
                                  for labels, value in zip(rows, values, strict=True)])
    return [Family(name, spec.type, spec.help, tuple(by_name[name]))
            for name, spec in NATIVE_METRICS.items() if by_name.get(name)]


def _unknown(name: str) -> str:
    return f"unknown native metric {name!r}: add it to native.NATIVE_METRICS"


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


@lru_cache(maxsize=16384)  # pure; a GPU's label set repeats on every row and every cycle
def _label_body(labels: Labels) -> str:
    """``k="v",...`` of a label set, values escaped (cached across families and cycles)."""
    return ",".join(f'{k}="{_escape_value(v)}"' for k, v in labels)


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _lines(family: Family, fmt: Format) -> Iterator[str]:
    name = family.name
    typ = family.type
    if typ in {"histogram", "summary"}:
        # A counters row may declare these, but a single value is neither; keep it parseable.
        typ = "untyped" if fmt == "text" else "unknown"
    if fmt == "openmetrics":
        if typ == "counter":
            if all(s[0].endswith("_total") for s in family.samples):
                name = name.removesuffix("_total")
            else:
                typ = "unknown"
        elif typ == "untyped":
            typ = "unknown"
    yield f"# HELP {name} {_escape_help(family.help)}\n"
    yield f"# TYPE {name} {typ}\n"
    for sample_name, labels, value in family.samples:
        if labels:
            yield f"{sample_name}{{{_label_body(labels)}}} {_format_value(value)}\n"
        else:
            yield f"{sample_name} {_format_value(value)}\n"


def render(families: Iterable[Family], fmt: Format = "text") -> bytes:
    """Write families in the given exposition format."""
    out: list[str] = []
    for family in families:
        out.extend(_lines(family, fmt))
    if fmt == "openmetrics":
        out.append("# EOF\n")
    return "".join(out).encode("utf-8")
