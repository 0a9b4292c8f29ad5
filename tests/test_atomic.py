"""tinygradlm.atomic: a file or directory is replaced whole or not at all, and a failed write
leaves neither a partial target nor a temporary behind."""

import os

import pytest

from tinygradlm import atomic
from tinygradlm.atomic import atomic_directory, atomic_file, write_atomic


def test_write_atomic_replaces_the_file_with_bytes_or_utf8_text(tmp_path):
    path = tmp_path / "out.txt"
    write_atomic(path, b"old")
    write_atomic(path, "né\n")
    assert path.read_bytes() == "né\n".encode()
    assert os.listdir(tmp_path) == ["out.txt"]
    assert path.stat().st_mode & 0o777 == atomic.file_mode()


def test_a_failed_streamed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.bin"
    write_atomic(path, b"old")
    with pytest.raises(RuntimeError, match="midway"), atomic_file(path) as file:
        file.write(b"half of the new")
        raise RuntimeError("midway")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_a_failed_fsync_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "out.bin"
    write_atomic(path, b"old")

    def failing_fsync(fd):
        raise OSError("fsync failed")

    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="fsync failed"):
        write_atomic(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_directory_appears_complete_under_its_final_name(tmp_path):
    final = tmp_path / "ckpt"
    with atomic_directory(final) as building:
        assert building.parent == tmp_path and building.name.startswith(".tmp-ckpt-")
        (building / "a.txt").write_text("a")
        assert not final.exists()
    assert sorted(os.listdir(final)) == ["a.txt"]
    assert os.listdir(tmp_path) == ["ckpt"]


def test_a_failed_directory_build_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_directory(tmp_path / "ckpt") as building:
        (building / "a.txt").write_text("a")
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_a_leftover_of_a_crashed_build_by_the_same_pid_is_replaced(tmp_path):
    leftover = tmp_path / f".tmp-ckpt-{os.getpid()}"
    leftover.mkdir()
    (leftover / "stale.txt").write_text("stale")
    with atomic_directory(tmp_path / "ckpt") as building:
        (building / "a.txt").write_text("a")
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["a.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_and_directories_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_atomic(tmp_path / "a.txt", b"a")
        with atomic_directory(tmp_path / "d") as building:
            fd = os.open(building / "private", os.O_CREAT | os.O_WRONLY, 0o600)  # as mkstemp
            os.close(fd)
            (building / "sub").mkdir(mode=0o700)
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "d" / "private").stat().st_mode & 0o777 == 0o666 & ~umask
    for folder in (tmp_path / "d", tmp_path / "d" / "sub"):
        assert folder.stat().st_mode & 0o777 == 0o777 & ~umask


def test_replace_swaps_the_whole_directory_and_keeps_what_is_not_the_writers(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.bin").write_text("old")
    (final / "mine.txt").write_text("mine")
    with atomic_directory(final, replace=True, keep=lambda name: name == "mine.txt") as building:
        (building / "new.bin").write_text("new")
        assert (final / "old.bin").exists()  # untouched while the new one is built
    assert sorted(os.listdir(final)) == ["mine.txt", "new.bin"]
    assert os.listdir(tmp_path) == ["out"]


def test_a_failed_swap_puts_the_old_directory_back(tmp_path, monkeypatch):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.bin").write_text("old")
    (final / "mine.txt").write_text("mine")
    real_rename = os.rename

    def rename(source, target):
        if str(source).startswith(str(tmp_path / ".tmp-")) and target == final:
            raise OSError("rename failed")
        real_rename(source, target)

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(OSError, match="rename failed"):
        with atomic_directory(final, replace=True, keep=lambda n: n == "mine.txt") as building:
            (building / "new.bin").write_text("new")
    monkeypatch.undo()
    assert sorted(os.listdir(final)) == ["mine.txt", "old.bin"]
    assert os.listdir(tmp_path) == ["out"]
