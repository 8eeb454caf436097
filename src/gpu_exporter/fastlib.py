"""Where the exporter's own fast-path library is, and how it is opened (one loader for all).

``setup.py`` compiles ``gpu_exporter/_fast/*.c`` into one plain shared library (no Python
headers): the workload rows (:mod:`gpu_exporter.fastpath`) and the per-GPU device reads
(:mod:`gpu_exporter.fastread`) load it through :func:`open_library`, each checking the
version of its own part. This module imports nothing of either, so a plain run that reads
devices does not load the workload modules.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path

LIBRARY = Path(__file__).resolve().parent / "_fast" / "libgpu_exporter_fast.so"
"""Where ``setup.py`` puts the library (in the package; under ``src/`` when editable)."""


def open_library(path: Path, abi_symbol: str, expected: int) -> ctypes.CDLL:
    """The library at ``path``, when its ``abi_symbol()`` answers ``expected``.

    Raises:
        OSError: it cannot be loaded, or it is of another version.
        AttributeError: it has no ``abi_symbol`` (a library built before that part).
    """
    lib = ctypes.CDLL(str(path))
    found = int_function(lib, abi_symbol)()
    if found != expected:
        raise OSError(f"{path}: {abi_symbol}() {found}, expected {expected} "
                      "(rebuild the package)")
    return lib


def int_function(lib: ctypes.CDLL, name: str, *argtypes: type) -> Callable[..., int]:
    """``lib``'s function ``name``, declared as returning a C ``int`` and taking ``argtypes``.

    Raises:
        AttributeError: the library has no such symbol.
    """
    fn = getattr(lib, name)
    fn.restype = ctypes.c_int
    fn.argtypes = list(argtypes)
    declared: Callable[..., int] = fn
    return declared
