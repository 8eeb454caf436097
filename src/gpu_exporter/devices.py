"""The ``-d`` / ``--devices`` selector of dcgm-exporter, parsed by a pure function.

Grammar: exactly one letter, optionally followed by ``:`` and one list:

* ``f`` (default): every GPU; a MIG-enabled GPU shows as its MIG instances (and its
  device-level fields once on the physical GPU); no list allowed;
* ``g`` or ``g:LIST``: whole GPUs by NVML index; MIG instances are not reported;
* ``i`` or ``i:LIST``: MIG instances only, numbered 0, 1, ... across all GPUs in enumeration
  order (GPU index, then MIG device index).

``LIST`` is comma-separated non-negative integers and ``a-b`` ranges (``g:0,2-4``), each id at
most :data:`MAX_ID` (so a huge range cannot exhaust memory). Mixing letters (``g:0,i:1``)
is rejected, as upstream does; dcgm-exporter 4.6+'s combined selectors (``g[:LIST]+i[:LIST]``)
are refused with a message saying so (not supported yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SelectorKind = Literal["f", "g", "i"]

MAX_ID = 1024
"""Largest GPU index or MIG instance number a list may name (far above any real host)."""


@dataclass(frozen=True, slots=True)
class DeviceSelector:
    """A parsed ``-d`` value.

    Attributes:
        kind: ``f``, ``g`` or ``i``.
        ids: selected GPU indices (``g``) or MIG instance numbers (``i``); ``None`` = all.
    """

    kind: SelectorKind = "f"
    ids: frozenset[int] | None = None

    def selects(self, number: int) -> bool:
        """True when ``number`` is in the list (or there is no list)."""
        return self.ids is None or number in self.ids

    def first_missing(self, available: int) -> int | None:
        """The smallest listed id that is not below ``available``, or ``None``."""
        if self.ids is None:
            return None
        return min((i for i in self.ids if i >= available), default=None)


ALL = DeviceSelector()


def _parse_list(text: str, flag: str, whole: str) -> frozenset[int]:
    ids: set[int] = set()
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise ValueError(f"{flag}: empty item in device list {whole!r}")
        low_text, dash, high_text = item.partition("-")
        try:
            low = int(low_text.strip())
            high = int(high_text.strip()) if dash else low
        except ValueError:
            raise ValueError(
                f"{flag}: {item!r} in {whole!r} is not a number or an a-b range "
                "(expected e.g. g:0,2-4)") from None
        if low < 0 or high < 0:
            raise ValueError(f"{flag}: negative id in {whole!r}")
        if high < low:
            raise ValueError(f"{flag}: range {item!r} in {whole!r} goes backwards")
        if high > MAX_ID:
            raise ValueError(
                f"{flag}: id {high} in {whole!r} is too large (ids go up to {MAX_ID})")
        ids.update(range(low, high + 1))
    return frozenset(ids)


def parse_device_selector(text: str, *, flag: str = "-d/--devices") -> DeviceSelector:
    """Parse a ``-d`` value such as ``f``, ``g``, ``g:0,2-4`` or ``i:0-3``.

    Raises:
        ValueError: naming ``flag`` and what was expected.
    """
    value = text.strip()
    if "+" in value:
        raise ValueError(
            f"{flag}: {text!r}: combined selectors 'g[:LIST]+i[:LIST]' (dcgm-exporter 4.6+) are "
            "not supported yet; use 'f' (whole GPUs, MIG instances where MIG is on), 'g' or 'i'")
    letter, colon, rest = value.partition(":")
    letter = letter.strip()
    if letter not in ("f", "g", "i"):
        raise ValueError(
            f"{flag}: {text!r} is not a device selector; expected 'f', 'g[:LIST]' or "
            "'i[:LIST]' (LIST: ids and a-b ranges, e.g. g:0,2-4)")
    kind: SelectorKind = letter  # type: ignore[assignment]
    if not colon:
        return DeviceSelector(kind, None)
    if kind == "f":
        raise ValueError(f"{flag}: 'f' takes no list (got {text!r}); use 'g:LIST' or 'i:LIST'")
    if ":" in rest or any(ch.isalpha() for ch in rest):
        raise ValueError(
            f"{flag}: {text!r} mixes selectors; give exactly one letter and one list")
    return DeviceSelector(kind, _parse_list(rest, flag, text))
