"""Reading raw text into :class:`Document` objects, and the offline default corpus.

Inputs, in the order given (each path may be):

- a **text file** (any extension but ``.jsonl`` / ``.json``): one document, the whole file;
- a **JSON Lines file** (``.jsonl``, or ``.json`` whose first character is not ``[``): one document
  per non-blank line, the line being a JSON object whose ``text_field`` is a string;
- a **JSON file** holding an array (``.json`` starting with ``[``): one document per element, an
  object with ``text_field`` or a plain string;
- a **directory**: every file below it, recursively, in sorted order of relative path (so the
  order never depends on the file system), less what a :class:`~.walk.FileFilter` leaves out:
  by default hidden names (``.git``, ``.DS_Store``), ``__pycache__`` folders, binary files and
  files that are not UTF-8, each counted by reason in a :class:`~.walk.Skipped` (:mod:`.walk`).

Files are decoded as strict UTF-8 (a leading byte-order mark is dropped); newlines are left as
they are (cleaning normalises them). A file named explicitly that is not UTF-8 is an error, as
is every other problem; each raises :class:`DataError` naming the place:
``path: no such file or directory``, ``path: invalid UTF-8 at byte 1234 (line 7)``,
``path:12: not valid JSON (...)``, ``path:12: no string field 'text'``.

The source of a document says where it came from: ``path`` for a text file, ``path:LINE`` for a
JSON Lines record (1-based line), ``path[INDEX]`` for a JSON array element, ``pydoc_data:TOPIC``
for the default corpus.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..parse import parse_json
from .walk import FileFilter, Skipped, files_below, read_text

__all__ = ["Document", "default_corpus", "read_documents", "write_documents"]

JSON_SUFFIXES = (".jsonl", ".json")


@dataclass(frozen=True)
class Document:
    """One document of a corpus: its text and where it came from (see the module docstring)."""

    text: str
    source: str


def read_documents(
    paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    text_field: str = "text",
    filters: FileFilter | None = None,
    skipped: Skipped | None = None,
) -> Iterator[Document]:
    """Yield the documents of ``paths`` (files, JSON Lines files, directories), in order.

    A single path may be passed on its own. Lazily reads one file at a time. Directories are
    walked under ``filters`` (default :class:`~.walk.FileFilter`), and what they leave out is
    counted in ``skipped`` when given. Raises :class:`DataError` for a missing path, invalid
    UTF-8 in a file named explicitly (naming file and byte offset) and a malformed JSON record
    (naming ``path:line``).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    filters = filters or FileFilter()
    tally = skipped if skipped is not None else Skipped()
    for path in map(Path, paths):
        if path.is_dir():
            for file in files_below(path, filters, tally):
                yield from _read_file(
                    file, text_field, read_text(file, filters, tally, decode_utf8)
                )
        elif path.is_file():
            yield from _read_file(path, text_field, read_text(path, filters, None, decode_utf8))
        elif path.exists():
            raise DataError(f"{path}: neither a regular file nor a directory")
        else:
            raise DataError(f"{path}: no such file or directory")


def decode_utf8(path: Path, data: bytes) -> str:
    """Strict UTF-8, with the error pointing at the first bad byte and its line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        bad = data[error.start : error.end].hex(" ")
        raise DataError(
            f"{path}: invalid UTF-8 at byte {error.start} (line {line}): {error.reason} "
            f"(bytes {bad})"
        ) from None
    return text.removeprefix("\ufeff")


def _read_file(path: Path, text_field: str, text: str | None) -> Iterator[Document]:
    if text is None:  # binary or undecodable, and skipped
        return
    if path.suffix.lower() not in JSON_SUFFIXES:
        yield Document(text, str(path))
    elif path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        yield from _read_json_array(path, text, text_field)
    else:
        yield from _read_json_lines(path, text, text_field)


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_unicode(value: str, where: str) -> str:
    """JSON's \\uXXXX escapes can spell half of a surrogate pair, which is not Unicode text
    (it has no UTF-8 encoding): refuse it here, naming the record, not deep in the tokenizer."""
    bad = _SURROGATE.search(value)
    if bad:
        raise DataError(
            f"{where}: text has an unpaired surrogate \\u{ord(bad.group()):04x} at character "
            f"{bad.start()}, which is not valid Unicode"
        )
    return value


def string_field(record: Any, text_field: str, where: str) -> str:
    """``record[text_field]``, or a DataError naming ``where`` if ``record`` is not a JSON
    object or the field is not a string."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    value = record.get(text_field)
    if not isinstance(value, str):
        keys = ", ".join(map(repr, record)) or "none"
        what = "missing" if value is None else f"of type {type(value).__name__}, not a string"
        raise DataError(f"{where}: field {text_field!r} is {what} (keys: {keys})")
    return value


def _read_json_lines(path: Path, text: str, text_field: str) -> Iterator[Document]:
    # split on "\n" only: str.splitlines would also split inside a record at \x1c, \u2028, ...
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        record = parse_json(line, where, DataError)
        yield Document(check_unicode(string_field(record, text_field, where), where), where)


def _read_json_array(path: Path, text: str, text_field: str) -> Iterator[Document]:
    records = parse_json(text, str(path), DataError)
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON array of records")
    for index, record in enumerate(records):
        where = f"{path}[{index}]"
        value = record if isinstance(record, str) else string_field(record, text_field, where)
        yield Document(check_unicode(value, where), where)


def write_documents(documents: Iterable[Document], path: str | os.PathLike[str]) -> int:
    """Write ``documents`` as JSON Lines (``{"text": ..., "source": ...}``), the format
    :func:`read_documents` reads back. Returns how many were written."""
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for document in documents:
            record = {"text": document.text, "source": document.source}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def default_corpus() -> list[Document]:
    """The standard library's ``pydoc_data.topics``: one document per help topic, sorted by
    topic name (79 topics, about 0.5 MB of English technical prose with code, in CPython 3.11).

    The offline default, so the demo runs on a fresh machine with nothing downloaded.
    """
    from pydoc_data.topics import topics

    return [Document(topics[name], f"pydoc_data:{name}") for name in sorted(topics)]
