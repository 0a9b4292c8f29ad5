"""Token shards: llm.c's byte layout, atomic writes, and a clear DataError for every bad file."""

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm import atomic
from tinygradlm.data import shards
from tinygradlm.data.shards import (
    HEADER_BYTES,
    MAGIC,
    VERSION_UINT16,
    VERSION_UINT32,
    find_shards,
    read_shard,
    shard_info,
    token_dtype,
    write_shard,
    write_shards,
)
from tinygradlm.errors import DataError


def _header_bytes(magic=MAGIC, version=VERSION_UINT16, count=0) -> bytes:
    header = np.zeros(256, dtype="<i4")
    header[:3] = magic, version, count
    return header.tobytes()


# --------------------------------------------------------------------------------------------
# the format
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vocab_size", "version", "itemsize"),
    [(50257, VERSION_UINT16, 2), (65536, VERSION_UINT16, 2), (65537, VERSION_UINT32, 4)],
)
def test_header_is_llm_c_layout_and_tokens_round_trip(tmp_path, vocab_size, version, itemsize):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, vocab_size, size=1000)
    tokens[:2] = 0, vocab_size - 1  # both ends of the vocabulary
    path = tmp_path / "train_000000.bin"
    write_shard(path, tokens, vocab_size=vocab_size)

    header = np.fromfile(path, dtype="<i4", count=256)
    assert header[0] == 20240520
    assert header[1] == version
    assert header[2] == len(tokens)
    assert not header[3:].any()
    assert path.stat().st_size == 1024 + itemsize * len(tokens)
    payload = path.read_bytes()[1024:]
    assert payload == tokens.astype(f"<u{itemsize}").tobytes()  # little-endian, nothing else

    read = read_shard(path, vocab_size=vocab_size)
    assert read.dtype == np.dtype(f"<u{itemsize}")
    np.testing.assert_array_equal(read, tokens)
    info = shard_info(path)
    assert (info.version, info.num_tokens, info.file_bytes) == (
        version,
        1000,
        1024 + itemsize * 1000,
    )


def test_version_follows_from_vocab_size():
    assert token_dtype(256) == np.dtype("<u2")
    assert token_dtype(65536) == np.dtype("<u2")  # ids 0 … 65,535 fit in uint16
    assert token_dtype(65537) == np.dtype("<u4")


def test_read_shard_is_memory_mapped_and_read_only(tmp_path):
    path = tmp_path / "s.bin"
    write_shard(path, np.arange(100), vocab_size=100)
    tokens = read_shard(path)
    assert not tokens.flags.owndata  # a view of the mapped file, not a copy
    assert not tokens.flags.writeable
    with pytest.raises(ValueError):
        tokens[0] = 1


def test_empty_shard_round_trips(tmp_path):
    path = tmp_path / "s.bin"
    write_shard(path, np.zeros(0, dtype=np.int64), vocab_size=10)
    assert path.stat().st_size == HEADER_BYTES
    assert read_shard(path).shape == (0,)


def test_reads_llm_c_llama3_shards(tmp_path):
    tokens = np.array([128000, 5, 128255], dtype="<u4")
    path = tmp_path / "llama.bin"
    path.write_bytes(_header_bytes(20240801, 7, 3) + tokens.tobytes())
    np.testing.assert_array_equal(read_shard(path, vocab_size=128256), tokens)


# --------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------


def _fail_midway(file, header, tokens):
    file.write(header.tobytes())  # half a shard is on disk, then the disk "fails"
    raise OSError("disk full (simulated)")


def _fail_fsync(fd):
    raise OSError("fsync failed (simulated)")


@pytest.mark.parametrize("failure", ["write", "fsync"])
def test_failed_write_leaves_old_shard_intact_and_no_temp_file(tmp_path, monkeypatch, failure):
    path = tmp_path / "train_000000.bin"
    write_shard(path, np.arange(50), vocab_size=100)
    before = path.read_bytes()
    if failure == "write":
        monkeypatch.setattr(shards, "_write_payload", _fail_midway)
    else:
        monkeypatch.setattr(atomic.os, "fsync", _fail_fsync)
    with pytest.raises(OSError, match="simulated"):
        write_shard(path, np.arange(99), vocab_size=100)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_000000.bin"]


def test_failed_write_of_a_new_shard_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "_write_payload", _fail_midway)
    with pytest.raises(OSError):
        write_shard(tmp_path / "new.bin", np.arange(5), vocab_size=10)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_removes_temp_file(tmp_path, monkeypatch):
    def interrupted(file, header, tokens):
        file.write(header.tobytes())
        raise KeyboardInterrupt

    monkeypatch.setattr(shards, "_write_payload", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_shard(tmp_path / "new.bin", np.arange(5), vocab_size=10)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# what the writer refuses
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (np.array([1, 2, 10]), "token id 10 at position 2 is outside the vocabulary"),
        (np.array([1, -1, 2]), "token id -1 at position 1"),
        (np.array([1.0, 2.0]), "must be integers"),
        (np.zeros((2, 2), dtype=np.int64), "1-D"),
    ],
)
def test_write_shard_rejects_bad_tokens_by_name(tmp_path, tokens, message):
    path = tmp_path / "bad.bin"
    with pytest.raises(DataError, match=message) as error:
        write_shard(path, tokens, vocab_size=10)
    assert "bad.bin" in str(error.value)
    assert not path.exists()


def test_write_shard_rejects_bad_vocab_size(tmp_path):
    for vocab_size in (0, 2**32 + 1, 1.5, True):
        with pytest.raises(DataError, match="vocab_size"):
            write_shard(tmp_path / "s.bin", np.arange(3), vocab_size=vocab_size)


# --------------------------------------------------------------------------------------------
# write_shards: a stream cut into shards
# --------------------------------------------------------------------------------------------


def test_write_shards_cuts_every_shard_tokens_with_a_final_partial_shard(tmp_path):
    arrays = [np.arange(7), np.arange(0), np.arange(25) % 13, np.array([3])]
    paths = write_shards(arrays, tmp_path, split="train", vocab_size=13, shard_tokens=10)
    assert [p.name for p in paths] == [f"train_{i:06d}.bin" for i in range(4)]
    assert [shard_info(p).num_tokens for p in paths] == [10, 10, 10, 3]
    stream = np.concatenate([read_shard(p) for p in paths])
    np.testing.assert_array_equal(stream, np.concatenate(arrays))
    assert find_shards(tmp_path, "train") == paths


def test_write_shards_of_nothing_writes_nothing(tmp_path):
    assert write_shards([], tmp_path, split="val", vocab_size=10) == []
    assert write_shards([np.zeros(0, np.int64)], tmp_path, split="val", vocab_size=10) == []


def test_write_shards_copies_a_reused_buffer(tmp_path):
    def reused():
        buffer = np.zeros(3, dtype=np.int64)
        for value in range(5):
            buffer[:] = value
            yield buffer

    paths = write_shards(reused(), tmp_path, split="train", vocab_size=10, shard_tokens=100)
    np.testing.assert_array_equal(read_shard(paths[0]), np.repeat(np.arange(5), 3))


def test_write_shards_refuses_existing_shards_unless_overwrite(tmp_path):
    write_shards([np.arange(30)], tmp_path, split="train", vocab_size=30, shard_tokens=10)
    with pytest.raises(DataError, match="already holds 3 train shard"):
        write_shards([np.arange(5)], tmp_path, split="train", vocab_size=30)
    paths = write_shards(
        [np.arange(5)], tmp_path, split="train", vocab_size=30, shard_tokens=10, overwrite=True
    )
    assert find_shards(tmp_path, "train") == paths  # the two stale shards are gone
    np.testing.assert_array_equal(read_shard(paths[0]), np.arange(5))


def test_write_shards_names_the_array_with_a_bad_token(tmp_path):
    with pytest.raises(DataError, match="array 1: token id 10 at position 0"):
        write_shards([np.arange(3), np.array([10])], tmp_path, split="train", vocab_size=10)


def test_find_shards_lists_only_its_split_in_index_order(tmp_path):
    for name in [
        "train_000001.bin",
        "train_000000.bin",
        "train_extra_000000.bin",
        "val_000000.bin",
    ]:
        write_shard(tmp_path / name, np.arange(3), vocab_size=3)
    (tmp_path / ".train_000002.bin.abc.tmp").write_bytes(b"")
    (tmp_path / "train_1000000.bin").write_bytes(b"")  # a seventh digit sorts by number
    names = [p.name for p in find_shards(tmp_path, "train")]
    assert names == ["train_000000.bin", "train_000001.bin", "train_1000000.bin"]
    with pytest.raises(DataError, match="split"):
        find_shards(tmp_path, "../train")


@given(
    sizes=st.lists(st.integers(0, 40), max_size=8),
    shard_tokens=st.integers(1, 50),
    wide=st.booleans(),
)
def test_write_shards_preserves_any_stream(sizes, shard_tokens, wide):
    vocab_size = 70_000 if wide else 300
    rng = np.random.default_rng(len(sizes))
    arrays = [rng.integers(0, vocab_size, size=n) for n in sizes]
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_shards(
            arrays, tmp, split="train", vocab_size=vocab_size, shard_tokens=shard_tokens
        )
        counts = [shard_info(p).num_tokens for p in paths]
        total = sum(sizes)
        assert sum(counts) == total
        assert len(paths) == -(-total // shard_tokens)
        assert all(c == shard_tokens for c in counts[:-1])
        stream = [read_shard(p, vocab_size=vocab_size) for p in paths]
        expected = np.concatenate(arrays) if arrays else np.zeros(0)
        np.testing.assert_array_equal(np.concatenate(stream) if stream else np.zeros(0), expected)


# --------------------------------------------------------------------------------------------
# what the reader refuses: always a DataError that names the file
# --------------------------------------------------------------------------------------------

_TOKENS = np.arange(1000, dtype="<u2").tobytes()  # 1,000 tokens, 2,000 bytes

BAD_FILES = {
    "empty": (b"", "0 bytes, fewer than the 1,024-byte header"),
    "short header": (b"\x00" * 100, "100 bytes, fewer than the 1,024-byte header"),
    "wrong magic": (_header_bytes(magic=1234, count=1000) + _TOKENS, "magic number 1234"),
    "big-endian": (
        np.array([MAGIC, 1, 1000] + [0] * 253, dtype=">i4").tobytes() + _TOKENS,
        "byte-swapped",
    ),
    "wrong version": (_header_bytes(version=3, count=1000) + _TOKENS, "unknown shard version 3"),
    "negative count": (_header_bytes(count=-5) + _TOKENS, "-5 tokens"),
    "truncated": (
        _header_bytes(count=1000) + _TOKENS[:1000],
        r"header says 1,000 tokens \(3,024 bytes with the header, uint16 tokens\) but the file "
        "has 2,024 bytes: truncated",
    ),
    "too long": (_header_bytes(count=1000) + _TOKENS + b"\x00", "file has 3,025 bytes: extra"),
    "uint32 count as uint16": (
        _header_bytes(version=VERSION_UINT32, count=1000) + _TOKENS,
        "5,024 bytes with the header, uint32 tokens\\) but the file has 3,024",
    ),
    "token beyond vocab": (_header_bytes(count=1000) + _TOKENS, "token id 999 at position 999"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_shard_raises_data_error_naming_file_and_problem(tmp_path, case):
    content, message = BAD_FILES[case]
    path = tmp_path / "train_000001.bin"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as error:
        read_shard(path, vocab_size=999)
    assert str(error.value).startswith(str(path) + ": ")


def test_missing_file_and_directory_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_shard(tmp_path / "missing.bin")
    with pytest.raises(DataError, match="not a regular file"):
        read_shard(tmp_path)


def _read_any(content: bytes, vocab_size: int | None):
    """Read ``content`` as a shard: a DataError or a valid array, nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "drawn.bin"
        path.write_bytes(content)
        try:
            tokens = read_shard(path, vocab_size=vocab_size)
        except DataError as error:
            assert str(path) in str(error)
            return None
        info = shard_info(path)
        assert tokens.shape == (info.num_tokens,)
        assert os.path.getsize(path) == HEADER_BYTES + tokens.nbytes
        np.testing.assert_array_equal(
            tokens, np.frombuffer(content, dtype=info.dtype, offset=HEADER_BYTES)
        )
        if vocab_size is not None and tokens.size:
            assert tokens.max() < vocab_size
        return tokens


@given(content=st.binary(max_size=1200), vocab_size=st.none() | st.integers(1, 70_000))
def test_any_bytes_give_data_error_or_valid_tokens(content, vocab_size):
    _read_any(content, vocab_size)


@given(
    magic=st.sampled_from([MAGIC, 20240801, 0, -1, 2**31 - 1]),
    version=st.sampled_from([0, 1, 2, 7, -1, 2**31 - 1]),
    count=st.sampled_from([0, 1, 5, 6, 10, -1, 2**31 - 1, -(2**31)]) | st.integers(-20, 20),
    payload=st.binary(max_size=24),
    reserved=st.binary(min_size=0, max_size=4),
    vocab_size=st.none() | st.integers(1, 2**32),
)
def test_drawn_headers_give_data_error_or_valid_tokens(
    magic, version, count, payload, reserved, vocab_size
):
    header = bytearray(_header_bytes(magic, version, count))
    header[12 : 12 + len(reserved)] = reserved  # non-zero reserved ints are tolerated, as in llm.c
    _read_any(bytes(header) + payload, vocab_size)


@pytest.mark.parametrize("kind", ["dangling link", "link loop", "directory"])
def test_a_broken_file_named_like_a_shard_is_an_error_not_skipped(tmp_path, kind):
    write_shard(tmp_path / "train_000000.bin", np.arange(5, dtype=np.uint16), vocab_size=10)
    broken = tmp_path / "train_000001.bin"
    if kind == "dangling link":
        broken.symlink_to(tmp_path / "absent.bin")
    elif kind == "link loop":
        broken.symlink_to(broken)
    else:
        broken.mkdir()
    with pytest.raises(DataError, match=f"{broken}: named like a train shard but is a"):
        find_shards(tmp_path, "train")
    assert find_shards(tmp_path, "val") == []
