"""Reading the files a user points the exporter at, safely (counters CSV, YAML configs).

A path given on the command line may name anything: a FIFO (a plain ``open`` blocks until a
writer appears, forever), ``/dev/zero`` or ``/dev/urandom`` (a whole-file read never ends or
exhausts memory), a huge file. :func:`read_regular_file` opens without blocking, refuses
anything but a regular file and reads at most a size limit. :func:`yaml_too_deep` finds a
nesting depth that would exhaust the recursion of PyYAML's composer, from the parser's event
stream (which is not recursive), before a document is built.
"""

from __future__ import annotations

import os
import stat

MAX_INPUT_BYTES = 4 * 1024 * 1024
"""Largest counters CSV or YAML file read (4 MiB; upstream's files are a few KiB)."""

MAX_YAML_DEPTH = 64
"""Deepest nesting of mappings and sequences accepted in a YAML file (configs need < 10)."""


class InputFileError(ValueError):
    """A file that cannot be read as input; the message names the file and the reason.

    ``unreadable`` is True when the file could not be opened or read at all (missing, no
    permission, a directory: the environment), False when it is the wrong kind of file (a
    FIFO, a device) or too large (bad input).
    """

    def __init__(self, message: str, *, unreadable: bool = False) -> None:
        super().__init__(message)
        self.unreadable = unreadable


def read_regular_file(path: str | os.PathLike[str], *, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Opened with ``O_NONBLOCK`` so that a FIFO cannot block; only then checked with
    ``fstat`` (no race with a rename in between).

    Raises:
        InputFileError: unreadable, not a regular file, or larger than ``limit``; the
            message starts with the path.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputFileError(f"{name}: cannot read: {exc.strerror or exc}",
                             unreadable=True) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputFileError(f"{name}: cannot read: not a regular file ({_kind(mode)})",
                                 unreadable=stat.S_ISDIR(mode))
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise InputFileError(f"{name}: cannot read: larger than {limit} bytes")
        return b"".join(chunks)
    except OSError as exc:
        raise InputFileError(f"{name}: cannot read: {exc.strerror or exc}",
                             unreadable=True) from None
    finally:
        os.close(fd)


def read_text_file(path: str | os.PathLike[str], *, limit: int = MAX_INPUT_BYTES) -> str:
    """:func:`read_regular_file` decoded as UTF-8.

    Raises:
        InputFileError: as :func:`read_regular_file`, or not UTF-8 (naming the line).
    """
    data = read_regular_file(path, limit=limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputFileError(f"{os.fspath(path)}:{line}: not UTF-8 text") from None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


def yaml_too_deep(text: str, *, limit: int = MAX_YAML_DEPTH) -> int | None:
    """The 1-based line where ``text`` nests mappings/sequences deeper than ``limit``.

    ``None`` when it does not (or when the text is not valid YAML: the real parse then
    reports the syntax error with its own message).
    """
    import yaml  # noqa: PLC0415  # only where a YAML file is read: never loaded otherwise

    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > limit:
                    mark = event.start_mark
                    return mark.line + 1 if mark is not None else 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return None
    return None
