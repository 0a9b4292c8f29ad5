"""JSON and TOML text into plain values, every failure as the caller's own error type.

Every reader of the project (checkpoints, tokenizer headers, configs, SFT records, metrics,
reports) parses through here, so the rules hold everywhere at once:

- the bytes must be UTF-8; the error names the file and the byte offset of the first bad byte;
- Python's ``json`` and ``tomllib`` recurse once per level of nesting, so a document nested
  100,000 deep would raise ``RecursionError`` from inside the parser: here it is an error that
  says so (no project file nests more than a few levels);
- JSON's non-standard constants ``NaN``, ``Infinity`` and ``-Infinity``, which ``json`` accepts
  by default, are refused, and so is a number too large for a float (``1e400``, which ``json``
  reads as infinity) or an integer of more digits than Python converts (a bare ``ValueError``);
- any other parse error keeps the parser's message (line and column) after the file's name.

:func:`file_problem` tells "nothing there" from "there but not a readable file" (a dangling
symbolic link, a symbolic link loop, a directory), so that a reader of an optional file never
takes a broken one for an absent one.

``error`` is the exception class to raise (``DataError``, ``CheckpointError``, ...); the message
starts with ``where`` (a path, or ``path:line`` for one line of a JSON Lines file).
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import tomllib
from typing import Any

__all__ = [
    "ABSENT",
    "decode_utf8_text",
    "file_problem",
    "parse_json",
    "parse_toml",
    "read_json",
    "read_toml",
]

ABSENT = "does not exist"  # what file_problem says when there is nothing at the path


def decode_utf8_text(data: bytes, where: str, error: type[Exception] = ValueError) -> str:
    """``data`` as text, or ``error`` naming the offset of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{where}: not UTF-8 text (invalid byte at offset {e.start})") from None


def parse_json(text: str | bytes, where: str, error: type[Exception] = ValueError) -> Any:
    """The value of the JSON document ``text``; ``error`` if it is not one (see the module)."""
    if isinstance(text, bytes):
        text = decode_utf8_text(text, where, error)
    try:
        return json.loads(
            text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int
        )
    except RecursionError:
        raise error(f"{where}: not valid JSON: nested too deeply") from None
    except _NonStandardConstant as e:
        raise error(f"{where}: not valid JSON: {e} is not a JSON value") from None
    except json.JSONDecodeError as e:
        raise error(f"{where}: not valid JSON: {e}") from None


def parse_toml(text: str | bytes, where: str, error: type[Exception] = ValueError) -> dict:
    """The table of the TOML document ``text``; ``error`` if it is not one (see the module)."""
    if isinstance(text, bytes):
        text = decode_utf8_text(text, where, error)
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise error(f"{where}: not valid TOML: nested too deeply") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{where}: not valid TOML: {e}") from None
    except ValueError as e:  # int() of an integer of thousands of digits, inside tomllib
        raise error(f"{where}: not valid TOML: {e}") from None


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """None if ``path`` is a regular file (through symbolic links); else what it is instead, to
    follow the path in a message: :data:`ABSENT`, "is a dangling symbolic link", "is a symbolic
    link loop", "is a directory", "is not a regular file" or "cannot be read (...)". Only
    :data:`ABSENT` means there is nothing there."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "is a dangling symbolic link" if os.path.islink(path) else ABSENT
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "is a symbolic link loop"
        return f"cannot be read ({e.strerror or e})"
    except ValueError:  # a NUL byte in the name
        return "is not a valid file name"
    if stat.S_ISDIR(mode):
        return "is a directory"
    return None if stat.S_ISREG(mode) else "is not a regular file"


def read_json(path: str | os.PathLike[str], error: type[Exception] = ValueError) -> Any:
    """The JSON value in the file ``path``; a missing or unreadable file is ``error`` too."""
    return parse_json(_read_bytes(path, error), os.fspath(path), error)


def read_toml(path: str | os.PathLike[str], error: type[Exception] = ValueError) -> dict:
    """The TOML table in the file ``path``; a missing or unreadable file is ``error`` too."""
    return parse_toml(_read_bytes(path, error), os.fspath(path), error)


class _NonStandardConstant(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NonStandardConstant(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonStandardConstant(f"{text[:40]} (beyond the range of a float)")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > _MAX_INT_DIGITS:
        raise _NonStandardConstant(f"an integer of {len(text)} digits")
    return int(text)


_MAX_INT_DIGITS = 4000  # Python's int() refuses more than 4300 digits


def _read_bytes(path: str | os.PathLike[str], error: type[Exception]) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise error(f"{os.fspath(path)}: no such file") from None
    except OSError as e:
        raise error(f"{os.fspath(path)}: cannot read: {e.strerror or e}") from None
