"""Atomic writes: a reader sees the old file (or directory) or the new one, never a partial one.

    write_atomic(path, data)       bytes or text to ``path`` in one step
    atomic_file(path)              the same for a streamed write: ``with atomic_file(p) as f: …``
    atomic_directory(final)        build a directory beside ``final``, then rename it into place
    fsync_file, fsync_directory    the two durability steps, for code that seals its own files

The recipe is the usual one: write to a temporary name in the same directory (a rename is atomic
only within one file system), flush and fsync the data, ``os.replace`` it over the final name,
then fsync the directory, because the rename itself is durable only once its directory is. On
any error, the temporary file or directory is removed and whatever was at the final name is
left as it was. Temporary names start with ``.`` so that listings of shards, checkpoints and
the like pass over them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

# what open() gives a new file under the usual umask 022; mkstemp would leave 0600
FILE_MODE = 0o644


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8, newlines as given)."""
    with atomic_file(path) as file:
        file.write(data.encode("utf-8") if isinstance(data, str) else data)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file object whose contents replace ``path`` when the block ends without error.

    The temporary file is ``.<name>.<random>.tmp`` beside ``path``; it is fsynced and renamed
    over ``path`` on success, and deleted on any exception (which propagates).
    """
    path = Path(path)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, FILE_MODE)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike[str]) -> Iterator[Path]:
    """A new, empty directory to fill; renamed to ``final`` when the block ends without error.

    The directory is ``.tmp-<name>-<pid>`` beside ``final`` (a leftover of a crashed write by
    this pid is removed first; one writer per directory is assumed). Whoever fills it fsyncs
    the files it writes (:func:`fsync_file`), in the order its format needs; this fsyncs the
    directory, renames it into place and fsyncs the parent. ``final`` must not exist. On any
    exception the temporary directory is deleted.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    if temp.exists():
        shutil.rmtree(temp)
    temp.mkdir()
    try:
        yield temp
        fsync_directory(temp)
        os.replace(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    fsync_directory(final.parent)


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush ``path``'s data to the disk."""
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make the names in ``directory`` (a rename, a new file) durable; a no-op on systems where
    a directory cannot be opened or synced."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
