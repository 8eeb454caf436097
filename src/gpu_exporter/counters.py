"""The counters CSV: which DCGM fields to export, as what, with which help text.

The grammar is dcgm-exporter's, so its shipped and user-written files load unchanged:

* RFC 4180 CSV. A line whose **first character** is ``#`` is a comment; an indented
  ``#`` is data (and then an unknown field). Empty and all-blank lines are skipped.
* Each record has exactly three fields, ``<field>, <type>, <help>``, each trimmed of
  surrounding white space (upstream's own file has ``DCGM_FI_DEV_DEC_UTIL ,``).
* A field may be quoted (``"a, b"``; ``""`` stands for one quote), so a help text can
  hold commas; an unquoted comma makes a fourth field, which is an error. A quoted
  field may span lines. White space before an opening quote is allowed (dcgm-exporter
  rejects it); a quote inside an unquoted field is an error, as upstream.
* Column 1 is a DCGM field name, an older DCGM spelling, a dcgm-exporter 1.x name or a
  ``DCGM_EXP_*`` pseudo-field (see :mod:`gpu_exporter.dcgm_fields`). It is also the
  metric name, verbatim.
* Column 2 is ``gauge``, ``counter``, ``histogram``, ``summary`` or ``label``
  (case-sensitive). It is only printed in ``# TYPE``; ``label`` turns the field's value
  into a label named after column 1 on the entity's other series.
* Column 3 is the ``# HELP`` text, verbatim; it may be empty.

Duplicates: a DCGM field listed twice (the same name again, or the same field under
another spelling: ``DCGM_FI_DEV_POWER_USAGE`` and ``DCGM_FI_DEV_BOARD_POWER_WATTS`` are
both field 155) loads, as in dcgm-exporter, whose own ``1.x-compatibility-metrics.csv``
lists ``dcgm_fi_prof_pcie_tx_bytes`` twice. Upstream matches each value to the first row
with its field id, so the field is exported once, under the first row's name, type and help.
We keep the first row, drop the later one and warn once per dropped row, naming both lines.

There is no limit on the number of rows (DCGM's 128-field group limit is not ours).
Only :func:`load_counters` does I/O; everything else is pure.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from gpu_exporter import dcgm_fields
from gpu_exporter.inputfile import InputFileError, read_regular_file

log = logging.getLogger(__name__)

PromType: TypeAlias = Literal["gauge", "counter", "histogram", "summary", "label"]
PROM_TYPES: Final[tuple[PromType, ...]] = ("gauge", "counter", "histogram", "summary", "label")

_WANT = "expected 3 comma-separated fields <field>, <type>, <help>"
_INDENTED_COMMENT = (
    "'#' after white space does not start a comment; a comment needs '#' as the very "
    "first character of the line"
)


@dataclass(frozen=True, slots=True)
class CounterSpec:
    """One row of a counters CSV.

    Attributes:
        name: column 1 verbatim; also the Prometheus metric (or label) name.
        field_id: DCGM field id, or 9001-9004 for the ``DCGM_EXP_*`` pseudo-fields.
        prom_type: column 2.
        help: column 3 verbatim (trimmed).
        line: 1-based line number where the row starts.
    """

    name: str
    field_id: int
    prom_type: PromType
    help: str
    line: int

    @property
    def is_label(self) -> bool:
        """True for ``label`` rows, which add a label instead of a series."""
        return self.prom_type == "label"


class CountersError(ValueError):
    """A counters file that cannot be used, with where and why.

    The message reads ``<source>:<line>: <problem>`` (or ``<source>: <problem>`` when
    the problem is not on one line).

    Attributes:
        source: file name (or other origin) of the text.
        line: 1-based line number, or None.
        problem: the message without the location.
    """

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        self.source = source
        self.line = line
        self.problem = problem
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {problem}")


class CountersReadError(CountersError):
    """The counters file could not be read at all (missing, unreadable, a directory)."""


class _Lines:
    """Physical lines with a cursor, so that a quoted field can pull in the next line."""

    def __init__(self, text: str) -> None:
        self._lines = text.split("\n")
        self.number = 0  # 1-based number of the line last taken

    def take(self) -> str | None:
        """The next line without its line break, or None at the end."""
        if self.number >= len(self._lines):
            return None
        line = self._lines[self.number]
        self.number += 1
        return line[:-1] if line.endswith("\r") else line


def _quoted(lines: _Lines, current: str, pos: int, err: _Err) -> tuple[str, str, int]:
    """Read the quoted field whose opening quote is at ``current[pos]``.

    Returns the field's value, the line the field ends on and the index just past it.
    """
    parts: list[str] = []
    k = pos + 1
    while True:
        quote = current.find('"', k)
        if quote == -1:
            parts.append(current[k:])
            following = lines.take()
            if following is None:
                raise err('a quoted field is never closed (missing closing ")')
            parts.append("\n")
            current, k = following, 0
        elif current.startswith('"', quote + 1):
            parts.append(current[k:quote] + '"')
            k = quote + 2
        else:
            parts.append(current[k:quote])
            return "".join(parts), current, quote + 1


def _record(lines: _Lines, current: str, err: _Err) -> list[str]:
    """Split one record, starting at the line ``current``, into its raw fields."""
    fields: list[str] = []
    pos = 0
    while True:
        j = pos
        while j < len(current) and current[j] in " \t":
            j += 1
        if j < len(current) and current[j] == '"':
            value, current, k = _quoted(lines, current, j, err)
            fields.append(value)
            while k < len(current) and current[k] in " \t":
                k += 1
            if k == len(current):
                return fields
            if current[k] != ",":
                raise err(
                    f"unexpected {current[k]!r} after a closing quote; a quoted field "
                    "must be followed by a comma or the end of the line",
                )
            pos = k + 1
            continue
        comma = current.find(",", pos)
        value = current[pos:] if comma == -1 else current[pos:comma]
        if '"' in value:
            raise err(
                'a double quote inside an unquoted field; quote the whole field ("...") '
                'and write a quote inside it as ""',
            )
        fields.append(value)
        if comma == -1:
            return fields
        pos = comma + 1


class _Err:
    """Builds :class:`CountersError` for one record."""

    def __init__(self, source: str, line: int) -> None:
        self.source = source
        self.line = line

    def __call__(self, problem: str) -> CountersError:
        return CountersError(self.source, self.line, problem)


def _records(text: str, source: str) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(first line, raw fields)`` per CSV record, skipping comments and blanks."""
    lines = _Lines(text)
    while (current := lines.take()) is not None:
        if current.startswith("#") or not current.strip():
            continue
        start = lines.number
        yield start, _record(lines, current, _Err(source, start))


_BARE_CR = ("carriage return without a line feed (CR-only line endings?); save the file with "
            "LF or CRLF line endings")


def _bare_cr(text: str) -> int:
    """Offset of the first CR not followed by LF, or -1."""
    pos = text.find("\r")
    while pos >= 0:
        if not text.startswith("\n", pos + 1):
            return pos
        pos = text.find("\r", pos + 2)
    return -1


def _unknown_field(name: str) -> str:
    problem = f"unknown DCGM field {name!r}"
    hint = dcgm_fields.suggest(name)
    if hint is not None:
        problem += f" (did you mean {hint!r}?)"
    return problem


def _bad_type(prom_type: str) -> str:
    problem = f"unknown Prometheus type {prom_type!r}; expected one of {', '.join(PROM_TYPES)}"
    if prom_type.lower() in PROM_TYPES:
        problem += f" (did you mean {prom_type.lower()!r}?)"
    return problem


def _duplicate(source: str, line: int, name: str, fid: int, first: CounterSpec) -> str:
    """The warning for a row naming a field that an earlier row already configures."""
    what = f"field {name!r}" if name == first.name else (
        f"field {name!r} (DCGM field {fid}, the same as {first.name!r})")
    return (f"{source}:{line}: {what} is already configured on line {first.line}; "
            f"line {line} is ignored and the field is exported once, as line {first.line} "
            "says (as dcgm-exporter does)")


def parse_counters(
    text: str, *, source: str, warn: Callable[[str], None] | None = None,
) -> tuple[CounterSpec, ...]:
    """Parse counters-CSV text into rows, in file order.

    Args:
        text: the whole file.
        source: where the text came from, used in error messages (usually the path).
        warn: receives one message per ignored duplicate row (default: logged as a warning).

    Returns:
        One :class:`CounterSpec` per data row, later rows naming an already configured
        field left out; empty when the text has none.

    Raises:
        CountersError: on the first malformed row, naming its line and what was expected.
    """
    warn = log.warning if warn is None else warn
    text = text.removeprefix("\ufeff")
    bare_cr = _bare_cr(text)
    if bare_cr >= 0:  # dcgm-exporter (Go encoding/csv) would read it all as one line
        raise CountersError(source, text.count("\n", 0, bare_cr) + 1, _BARE_CR)
    specs: list[CounterSpec] = []
    ids: dict[int, CounterSpec] = {}
    for line, raw in _records(text, source):
        if raw[0].strip().startswith("#"):
            raise CountersError(source, line, _INDENTED_COMMENT)
        if len(raw) != 3:
            problem = f"{_WANT}; got {len(raw)}"
            if len(raw) > 3:
                problem += " (put the help text in double quotes if it contains a comma)"
            raise CountersError(source, line, problem)
        name, prom_type, help_text = (part.strip() for part in raw)
        if not name:
            raise CountersError(source, line, f"empty DCGM field name; {_WANT}")
        fid = dcgm_fields.field_id(name)
        if fid is None:
            raise CountersError(source, line, _unknown_field(name))
        if prom_type not in PROM_TYPES:
            raise CountersError(source, line, _bad_type(prom_type))
        first = ids.get(fid)
        if first is not None:
            warn(_duplicate(source, line, name, fid, first))
            continue
        spec = CounterSpec(name, fid, prom_type, help_text, line)
        ids[fid] = spec
        specs.append(spec)
    return tuple(specs)


def load_counters(
    path: str | os.PathLike[str], *, warn: Callable[[str], None] | None = None,
) -> tuple[CounterSpec, ...]:
    """Read and parse a counters CSV file (``warn``: as for :func:`parse_counters`).

    Raises:
        CountersReadError: the file cannot be read.
        CountersError: the file is not UTF-8 text or has a malformed row.
    """
    source = os.fspath(path)
    try:
        data = read_regular_file(source)
    except InputFileError as exc:  # "<path>: cannot read: <reason>"
        reason = str(exc).rpartition(": cannot read: ")[2]
        error = CountersReadError if exc.unreadable else CountersError
        raise error(source, None, f"cannot read the counters file: {reason}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CountersError(source, line, "the counters file is not UTF-8 text") from exc
    return parse_counters(text, source=source, warn=warn)
