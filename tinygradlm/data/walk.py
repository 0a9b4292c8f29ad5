"""Which files of a directory ``prepare`` reads, and an account of every one it leaves out.

A real folder holds more than text: ``__pycache__/*.pyc``, a ``.png`` in the docs, ``.git``.
:func:`files_below` walks a directory in sorted order and leaves out, each under a reason:

- ``hidden``: a file or folder whose name starts with ``.`` (``.git``, ``.DS_Store``);
- ``skipped_folder``: a folder named in ``skip_folders`` (default ``__pycache__``);
- ``excluded``: a file matching an ``exclude`` glob;
- ``not_included``: a file matching none of the ``include`` globs (when there are any);

and :func:`read_text` (called on each file read) leaves out

- ``binary``: a file with a known binary extension, or a NUL byte in its first 8 KiB (git's
  test for binary content; UTF-8 text never needs NUL);
- ``undecodable``: a file that is not valid UTF-8 (with ``undecodable = "replace"``, read with
  U+FFFD for each bad byte instead; with ``"error"``, a binary or undecodable file stops the run
  with an error naming it).

A hidden or skipped folder counts as one path and is not walked. Globs are shell-style
(``fnmatch``, case-sensitive) against the path relative to the directory given, with ``/``
between folders; ``*`` crosses folders, so ``*.md`` matches ``docs/a.md``. Files named
explicitly (not found by a walk) are always read, and an undecodable one is an error unless
``undecodable = "replace"``. :class:`Skipped` counts each reason, names its first path and the
setting that would keep such files, for ``report.json``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..schema import Rule, check_table, problems_message

__all__ = ["FILE_RULES", "FileFilter", "Skipped", "files_below", "read_text"]

UNDECODABLE = ("skip", "error", "replace")
FILE_RULES: dict[str, Rule] = {
    "include": Rule("str_list", doc="globs a walked file must match one of (none: every file)"),
    "exclude": Rule("str_list", doc="globs of walked files to leave out"),
    "include_hidden": Rule("bool", doc="walk names starting with '.' too"),
    "skip_folders": Rule("str_list", doc="folder names never walked"),
    "undecodable": Rule("str", choices=UNDECODABLE, doc="what a non-UTF-8 or binary file does"),
}

# extensions whose files are never text; anything else is tested for a NUL byte
BINARY_SUFFIXES = frozenset(
    ".pyc .pyo .so .o .a .dll .dylib .exe .class .jar .whl .egg .zip .gz .bz2 .xz .zst .tar "
    ".7z .rar .png .jpg .jpeg .gif .bmp .ico .webp .tif .tiff .pdf .mp3 .mp4 .wav .ogg .flac "
    ".avi .mov .mkv .woff .woff2 .ttf .otf .eot .bin .npy .npz .pt .pth .safetensors .pkl "
    ".sqlite .db .parquet .arrow".split()
)
BINARY_SNIFF_BYTES = 8192

# the setting that keeps files left out for each reason
RELAXED_BY = {
    "hidden": "include_hidden = true in [files] (--include-hidden)",
    "skipped_folder": 'skip_folders in [files] (default ["__pycache__"]; [] walks every folder)',
    "excluded": "exclude in [files] (--exclude)",
    "not_included": "include in [files] (--include)",
    "undecodable": 'undecodable = "replace" in [files] (--undecodable replace)',
    "binary": "no setting: binary files are not text (convert them to text to read them)",
}


@dataclass(frozen=True)
class FileFilter:
    """The ``[files]`` settings of ``prepare`` (see the module docstring)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    include_hidden: bool = False
    skip_folders: tuple[str, ...] = ("__pycache__",)
    undecodable: str = "skip"

    def __post_init__(self) -> None:
        problems = check_table(asdict(self), FILE_RULES, "files.")
        if problems:
            raise DataError(problems_message(problems, None))
        for name in ("include", "exclude", "skip_folders"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FileFilter:
        """Build from plain data (a TOML ``[files]`` table); unknown keys raise DataError."""
        problems = check_table(data, FILE_RULES, "files.")
        if problems:
            raise DataError(problems_message(problems, None))
        return cls(**data)


@dataclass
class Skipped:
    """Paths left out, by reason: how many, and the first (in walk order)."""

    counts: dict[str, int] = field(default_factory=dict)
    first: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, path: Path) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.first.setdefault(reason, str(path))

    @classmethod
    def combine(cls, tallies: Iterable[Skipped]) -> Skipped:
        """The sum of ``tallies``; each reason's first path is the first tally's."""
        total = cls()
        for tally in tallies:
            for reason, n in tally.counts.items():
                total.counts[reason] = total.counts.get(reason, 0) + n
                total.first.setdefault(reason, tally.first[reason])
        return total

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{reason: {"paths": n, "first": path, "relaxed_by": setting}}``, reasons sorted."""
        return {
            reason: {"paths": n, "first": self.first[reason], "relaxed_by": RELAXED_BY[reason]}
            for reason, n in sorted(self.counts.items())
        }


def files_below(directory: Path, filters: FileFilter, skipped: Skipped) -> list[Path]:
    """The files under ``directory`` that ``filters`` keep, sorted by relative path (components
    compared one by one, so ``a/b`` sorts before ``a-b/c`` on every system); each path left
    out is added to ``skipped``."""
    found = []
    for root, dirs, files in os.walk(directory):
        walked = []
        for name in sorted(dirs):
            reason = _folder_reason(name, filters)
            if reason:
                skipped.add(reason, Path(root, name))
            else:
                walked.append(name)
        dirs[:] = walked
        found.extend(Path(root, name) for name in files)
    kept = []
    for path in sorted(found, key=lambda p: p.relative_to(directory).parts):
        reason = _file_reason(path.relative_to(directory).as_posix(), path.name, filters)
        if reason:
            skipped.add(reason, path)
        else:
            kept.append(path)
    return kept


def _folder_reason(name: str, filters: FileFilter) -> str | None:
    if name.startswith(".") and not filters.include_hidden:
        return "hidden"
    return "skipped_folder" if name in filters.skip_folders else None


def _file_reason(relative: str, name: str, filters: FileFilter) -> str | None:
    if name.startswith(".") and not filters.include_hidden:
        return "hidden"
    if any(fnmatchcase(relative, glob) for glob in filters.exclude):
        return "excluded"
    if filters.include and not any(fnmatchcase(relative, glob) for glob in filters.include):
        return "not_included"
    return None


def read_text(
    path: Path, filters: FileFilter, skipped: Skipped | None, decode: Callable[[Path, bytes], str]
) -> str | None:
    """The text of ``path``, or None when it is binary or undecodable and ``skipped`` (a walk's
    tally) takes it. ``decode(path, data)`` is strict UTF-8 raising DataError with the byte
    offset; ``skipped`` None (a file named explicitly) makes undecodable bytes that error."""
    walked = skipped is not None and filters.undecodable != "error"
    if walked and path.suffix.lower() in BINARY_SUFFIXES:
        skipped.add("binary", path)
        return None
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    nul = data.find(b"\0", 0, BINARY_SNIFF_BYTES)
    if skipped is not None and (nul >= 0 or path.suffix.lower() in BINARY_SUFFIXES):
        if walked:
            skipped.add("binary", path)
            return None
        where = f"a NUL byte at byte {nul}" if nul >= 0 else f"extension {path.suffix}"
        raise DataError(
            f"{path}: binary file ({where}); leave it out with an exclude glob, or set "
            f'undecodable = "skip"'
        )
    if filters.undecodable == "replace":
        return data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    try:
        return decode(path, data)
    except DataError:
        if not walked:
            raise
        skipped.add("undecodable", path)
        return None
