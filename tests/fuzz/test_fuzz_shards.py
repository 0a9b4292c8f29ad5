"""Fuzzing the token-shard reader: any bytes in a file named like a shard are a valid token
array (every id below vocab_size, the count the header states) or a DataError, within the time
and memory bounds; and a shard directory with a broken entry is an error, never a shard left out.
"""

import os
import tempfile
from pathlib import Path

import numpy as np
from fuzz_support import mutated_bytes, read_within_bounds, snapshot
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.data.shards import HEADER_BYTES, find_shards, read_shard, shard_info, write_shard
from tinygradlm.errors import DataError

VOCAB = 300


def _valid_shard(dtype: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train_000000.bin"
        tokens = np.arange(40, dtype=dtype) * 7 % VOCAB
        write_shard(path, tokens, vocab_size=VOCAB if dtype == "uint16" else 70_000)
        return path.read_bytes()


VALID = [_valid_shard("uint16"), _valid_shard("uint32")]


@given(
    data=st.sampled_from(VALID).flatmap(mutated_bytes), vocab_size=st.sampled_from([VOCAB, None])
)
def test_any_shard_bytes_read_as_valid_tokens_or_a_data_error(data, vocab_size):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train_000000.bin"
        path.write_bytes(data)
        before = snapshot(Path(tmp))
        tokens = read_within_bounds(lambda: read_shard(path, vocab_size=vocab_size), DataError)
        if tokens is not None:
            info = shard_info(path)
            assert tokens.shape == (info.num_tokens,) and tokens.dtype == info.dtype
            assert HEADER_BYTES + tokens.nbytes == len(data)
            if vocab_size is not None and tokens.size:
                assert int(tokens.max()) < vocab_size
            del tokens
        assert snapshot(Path(tmp)) == before


@given(kind=st.sampled_from(["loop", "dangling", "directory", "fifo", "file"]))
def test_every_entry_named_like_a_shard_is_read_or_named(kind):
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "train_000000.bin").write_bytes(VALID[0])
        entry = directory / "train_000001.bin"
        if kind == "loop":
            entry.symlink_to(entry)
        elif kind == "dangling":
            entry.symlink_to(directory / "absent")
        elif kind == "directory":
            entry.mkdir()
        elif kind == "fifo":
            os.mkfifo(entry)
        else:
            entry.write_bytes(VALID[1])
        found = read_within_bounds(lambda: find_shards(directory, "train"), DataError)
        assert (found is not None) == (kind == "file")
