"""Reading JSON that anyone may have written: job files dropped in ``incoming/`` and
request bodies alike.

Python's parser recurses once per nesting level, so a document of a hundred thousand
``[`` raises RecursionError (or worse) from deep inside the caller; ``1e400`` becomes
``inf`` and only fails later, in an ``int()`` far from the input.  ``loads`` refuses both
up front with a ``ValueError``, the error every caller already handles as "not valid
JSON".  ``read_file`` reads a file without following links, without blocking on FIFOs
or devices, and without reading more than a limit, whatever ``stat`` said beforehand.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

MAX_DEPTH = 64

# A JSON string (with its escapes) or one bracket: strings are skipped whole, so that
# brackets inside them are not counted.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_CHUNK = 1 << 20


class UntrustedInput(ValueError):
    """Input refused before parsing it: too deep, too large, not a regular file."""


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise ``UntrustedInput`` when arrays and objects nest deeper than ``max_depth``.

    A loop over brackets, never a recursion.  Malformed text may be miscounted, but only
    upwards (an unterminated string's brackets count), and the parser refuses it anyway."""
    if text.count("[") + text.count("{") <= max_depth:
        return  # fewer openers than the limit: nothing to scan
    depth = 0
    for m in _TOKENS.finditer(text):
        c = m.group()
        if c == "[" or c == "{":
            depth += 1
            if depth > max_depth:
                raise UntrustedInput(
                    f"JSON nested deeper than {max_depth} levels (at offset {m.start()})"
                )
        elif c == "]" or c == "}":
            depth -= 1


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UntrustedInput(f"number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise UntrustedInput(f"{name} is not a JSON number")


def loads(data: str | bytes | bytearray, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` with bounded nesting and finite numbers only.

    Raises ``ValueError`` (``UntrustedInput``, ``json.JSONDecodeError`` or
    ``UnicodeDecodeError``) for anything it will not return."""
    if isinstance(data, bytes | bytearray):
        data = bytes(data).decode(json.detect_encoding(data), "strict")
    check_depth(data, max_depth)
    try:
        return json.loads(data, parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError as exc:  # unreachable after check_depth, kept as a last guard
        raise UntrustedInput("JSON nested too deeply") from exc


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_file(path: Path | str, limit: int) -> bytes:
    """The bytes of a regular file, at most ``limit`` of them.

    Raises ``FileNotFoundError`` when nothing is there, ``UntrustedInput`` for a link,
    anything but a regular file or more than ``limit`` bytes, ``OSError`` otherwise.
    The type is checked before opening (opening some devices has effects) and again on
    the open descriptor (the entry may have been swapped in between)."""
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise UntrustedInput(f"{_kind(st.st_mode)}, not a regular file")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UntrustedInput("a symbolic link, not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedInput(f"{_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise UntrustedInput(f"file is {st.st_size} bytes; the limit is {limit}")
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise UntrustedInput(f"file is over the limit of {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def load_file(path: Path | str, limit: int, *, max_depth: int = MAX_DEPTH) -> Any:
    """``loads(read_file(path, limit))``."""
    return loads(read_file(path, limit), max_depth=max_depth)
