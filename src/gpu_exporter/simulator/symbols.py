"""The NVML functions the built simulated library exports, read from its ELF symbol table.

Used to reject fault specs that name a function which does not exist (a typo would otherwise
inject a fault that nothing ever hits) and to suggest the closest real names. Reading the
dynamic symbol table needs no loader, compiler or binutils, so the library is never loaded.
"""

from __future__ import annotations

import difflib
import functools
import struct
from pathlib import Path

_SHT_DYNSYM = 11
_STT_FUNC = 2


def elf_functions(data: bytes) -> frozenset[str]:
    """Names of the functions an ELF64 little-endian shared object defines in ``.dynsym``.

    Raises:
        ValueError: not a 64-bit little-endian ELF file, or a truncated one.
    """
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    try:
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                    for i in range(shnum)]
        names: set[str] = set()
        for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
            if kind != _SHT_DYNSYM or entsize == 0:
                continue
            strtab = sections[link]
            str_off, str_size = strtab[4], strtab[5]
            for pos in range(offset, offset + size, entsize):
                st_name, st_info, _other, st_shndx = struct.unpack_from("<IBBH", data, pos)
                if st_shndx == 0 or st_info & 0xF != _STT_FUNC or st_name >= str_size:
                    continue
                end = data.index(b"\0", str_off + st_name)
                names.add(data[str_off + st_name:end].decode("ascii", "replace"))
    except (struct.error, IndexError) as exc:
        raise ValueError(f"truncated ELF file: {exc}") from None
    return frozenset(names)


@functools.cache
def nvml_functions(library: Path) -> frozenset[str]:
    """The ``nvml*`` functions ``library`` exports (read once per path and process)."""
    return frozenset(n for n in elf_functions(library.read_bytes()) if n.startswith("nvml"))


def closest(name: str, known: frozenset[str], n: int = 3) -> list[str]:
    """Up to ``n`` names of ``known`` closest to ``name`` (difflib), best first."""
    return difflib.get_close_matches(name, sorted(known), n=n, cutoff=0.6)
