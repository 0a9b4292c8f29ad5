"""Atomic writes: a reader sees the old file (or directory) or the new one, never a partial one.

    write_atomic(path, data)       bytes or text to ``path`` in one step
    atomic_file(path)              the same for a streamed write: ``with atomic_file(p) as f: …``
    atomic_directory(final)        build a directory beside ``final``, then rename it into place
                                   (``replace=True``: swap it for an existing one, as a whole)
    writable_directory(path, …)    check that ``path`` is, or can become, a directory to write
    file_mode(), directory_mode()  what ``open()`` / ``mkdir()`` give under the current umask
    fsync_file, fsync_directory    the two durability steps, for code that seals its own files

The recipe is the usual one: write to a temporary name in the same directory (a rename is atomic
only within one file system), flush and fsync the data, ``os.replace`` it over the final name,
then fsync the directory, because the rename itself is durable only once its directory is. On
any error, the temporary file or directory is removed and whatever was at the final name is
left as it was. Temporary names start with ``.`` so that listings of shards, checkpoints and
the like pass over them. A file or directory written here gets the mode a plain ``open()`` or
``mkdir()`` would give it under the user's umask (``mkstemp`` alone would leave 0600), so on a
shared file system others read what the user lets them read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


def current_umask() -> int:
    """The process's umask. Linux reports it in /proc; elsewhere it is read by setting it and
    setting it back (which a thread creating files at that instant could see)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The permission bits ``open(path, "w")`` gives a new file under the current umask."""
    return 0o666 & ~current_umask()


def directory_mode() -> int:
    """The permission bits ``mkdir`` gives a new directory under the current umask."""
    return 0o777 & ~current_umask()


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
        os.chmod(temp, file_mode())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


@contextlib.contextmanager
def atomic_directory(
    final: str | os.PathLike[str],
    *,
    replace: bool = False,
    keep: Callable[[str], bool] | None = None,
) -> Iterator[Path]:
    """A new, empty directory to fill; renamed to ``final`` when the block ends without error.

    The directory is ``.tmp-<name>-<pid>`` beside ``final`` (a leftover of a crashed write by
    this pid is removed first; one writer per directory is assumed). Whoever fills it fsyncs
    the files it writes (:func:`fsync_file`), in the order its format needs; this gives its
    files and folders the umask's modes (:func:`file_mode`), fsyncs the directory, renames it
    into place and fsyncs the parent. On any exception (Ctrl-C included)
    the temporary directory is deleted and ``final`` is left as it was.

    ``final`` must not exist, unless ``replace``: then an existing ``final`` (a directory) is
    swapped for the new one as a whole, once the new one is complete (:func:`_swap_in`). The
    entries of the old directory for which ``keep(name)`` is true, and that the new one does
    not have, move into the new one first: what is not the writer's own output stays.
    """
    final = Path(os.path.abspath(final))  # "." has a name and a parent only this way
    if final.is_symlink() and replace:
        final = Path(os.path.realpath(final))  # replace the directory, not the link to it
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    if temp.exists():
        shutil.rmtree(temp)
    temp.mkdir()
    try:
        yield temp
        _give_umask_modes(temp)
        fsync_directory(temp)
        if replace and final.exists():
            _swap_in(temp, final, keep or (lambda _name: False))
        else:
            os.replace(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    fsync_directory(final.parent)


def _give_umask_modes(directory: Path) -> None:
    """Every file and folder in ``directory`` gets the mode ``open()`` / ``mkdir()`` would give
    it: writers such as safetensors go through temporary files of mode 0600."""
    files, folders = file_mode(), directory_mode()
    for root, names, files_here in os.walk(directory):
        for name in names:
            os.chmod(os.path.join(root, name), folders)
        for name in files_here:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, files)


def _swap_in(temp: Path, final: Path, keep: Callable[[str], bool]) -> None:
    """Put the complete directory ``temp`` in the place of the directory ``final``: the kept
    entries of ``final`` move over, ``final`` is renamed aside, ``temp`` renamed to ``final``,
    and the old one deleted. Two renames cannot be one atomic step, so Ctrl-C and SIGTERM wait
    until both are done (:func:`_signals_deferred`), and an error between them puts everything
    back. Only a crash between the two renames (SIGKILL, power) leaves ``final`` missing, with
    the old directory complete at ``.old-<name>-<pid>`` beside it."""
    if not final.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "expected a directory to replace", str(final))
    old = final.parent / f".old-{final.name}-{os.getpid()}"
    if old.exists():
        shutil.rmtree(old)
    moved: list[str] = []
    with _signals_deferred():
        try:
            for name in sorted(os.listdir(final)):
                if keep(name) and not os.path.lexists(temp / name):
                    os.rename(final / name, temp / name)
                    moved.append(name)
            shutil.copymode(final, temp)
            os.rename(final, old)
            os.rename(temp, final)
        except BaseException:
            if old.exists() and not final.exists():
                os.rename(old, final)
            for name in moved:
                os.rename(temp / name, final / name)
            raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive inside the block are delivered when it ends (only the main
    thread can set handlers; elsewhere the block runs as it is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler is not None:  # None: set outside Python, cannot be put back
            previous[signum] = handler
            signal.signal(signum, lambda s, _frame: received.append(s))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in received:
            signal.raise_signal(signum)


def writable_directory(
    path: str | os.PathLike[str], what: str, error: type[Exception] = OSError
) -> Path:
    """``path`` if it is a directory, or could be made one, that this process may write into;
    else ``error`` naming ``what`` (e.g. "out_dir"), the path and what is wrong: a file where a
    directory is expected (at ``path`` or above it), a dangling symlink or a symlink loop, or
    no permission to write. Creates nothing."""
    path = Path(path)
    probe = path
    while True:
        try:
            mode = os.stat(probe).st_mode
            break
        except OSError as e:
            missing = e.errno in (errno.ENOENT, errno.ENOTDIR) and not os.path.islink(probe)
            if not missing or probe.parent == probe:
                raise error(
                    f"{what} {path}: {_unusable(probe, path, e)}; expected a directory"
                ) from None
            probe = probe.parent  # it can be created if a directory above it exists
    if not stat.S_ISDIR(mode):
        where = "is a file" if probe == path else f"is under the file {probe}"
        raise error(f"{what} {path}: {where}; expected a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise error(f"{what} {path}: {probe} is not writable by this user")
    return path


def _unusable(probe: Path, path: Path, error: OSError) -> str:
    """Why ``probe`` (``path`` or a directory above it) cannot be followed to a directory."""
    if error.errno == errno.ELOOP:
        reason = "a symlink loop"
    elif os.path.islink(probe):
        reason = "a symlink to nothing"
    else:
        reason = f"unusable ({error.strerror})"
    return f"is {reason}" if probe == path else f"{probe} above it is {reason}"


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
