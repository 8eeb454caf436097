"""Helpers for the cold pod-resources refresh: every pod new, tens of thousands of objects.

:func:`slot_setters` lets hot loops build frozen slotted dataclasses without their generated
``__init__``, which sets each field through ``object.__setattr__`` by name; setting the slots
through their descriptors takes about half the time. The objects are the very same (same
class, same field values), so equality, hashing, ``repr`` and immutability are unchanged.

:func:`gc_paused` keeps the cycle collector from running while one answer is decoded or one
index built. Both make trees of new objects without reference cycles, so a collection during
them finds nothing to free; yet each of the hundreds that such a burst of allocations triggers
walks the young objects, and the full ones walk the whole heap again and again. Paused, the
new objects are walked once or twice after the burst instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from collections.abc import Callable, Iterator
from typing import Any

Setter = Callable[[Any, Any], None]


def slot_setters(cls: type, *names: str) -> tuple[Setter, ...]:
    """The slot setters of ``cls``'s fields, which must be exactly ``names``, in order.

    Raises:
        TypeError: ``cls`` is not a slotted dataclass with these fields (a field was added
            or renamed without updating the builder that uses these setters).
    """
    declared = tuple(field.name for field in dataclasses.fields(cls))
    if names != declared or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__}: builder sets {names}, dataclass declares {declared}")
    return tuple(cls.__dict__[name].__set__ for name in names)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cycle collector for a bounded burst of allocations without cycles.

    It is re-enabled on the way out, even on an error, unless it was already disabled on
    the way in: overlapping pauses in several threads can end it early, never leave it off.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
