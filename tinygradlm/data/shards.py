"""Token shards: llm.c's ``.bin`` file format, written atomically and read memory-mapped.

A shard is a 1,024-byte header of 256 little-endian int32 followed by the tokens::

    byte offset   int32 index   value
    0             [0]           magic 20240520
    4             [1]           version: 1 = tokens are uint16 (llm.c's), 2 = uint32 (ours)
    8             [2]           N, the number of tokens
    12 … 1023     [3] … [255]   0 (reserved)
    1024          —             N tokens, little-endian uint16 (version 1) or uint32 (version 2)

so a file holds exactly ``1024 + N · itemsize`` bytes. Version 1 is byte for byte the format of
llm.c's ``dev/data`` scripts (its C loader reads our version-1 shards); version 2 is ours, for
vocabularies with ids beyond uint16 (vocab_size > 65,536), and llm.c's C loader rejects it rather
than misreading it. The reader also accepts llm.c's Llama-3 shards (magic 20240801, version 7,
uint32 tokens).

A shard is just a token stream: the writer stores the tokens it is given, in order. Documents
are separated by the end-of-text token that the caller puts in the stream (``prepare`` puts one
before each document); ``write_shards`` cuts shards every ``shard_tokens`` tokens, so a document
may continue in the next shard, and the loader reads the shards of a split as one stream.

Format, loader and sampling scheme: docs/shards.md.
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from ..atomic import atomic_file
from ..errors import DataError
from ..parse import ABSENT, file_problem

__all__ = [
    "HEADER_BYTES",
    "HEADER_INTS",
    "MAGIC",
    "VERSION_UINT16",
    "VERSION_UINT32",
    "ShardInfo",
    "find_shards",
    "read_shard",
    "shard_info",
    "shard_name",
    "token_dtype",
    "write_shard",
    "write_shards",
]

MAGIC = 20240520
VERSION_UINT16 = 1  # llm.c's GPT-2 shards
VERSION_UINT32 = 2  # ours: vocabularies beyond uint16
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
MAX_TOKENS = 2**31 - 1  # the count is an int32
LLAMA3_MAGIC = 20240801  # llm.c's Llama-3 shards: read, never written
LLAMA3_VERSION = 7
_SWAPPED_MAGIC = int.from_bytes(MAGIC.to_bytes(4, "big"), "little", signed=True)

# (magic, version) -> token dtype, for every layout the reader accepts
_LAYOUTS: dict[tuple[int, int], np.dtype] = {
    (MAGIC, VERSION_UINT16): np.dtype("<u2"),
    (MAGIC, VERSION_UINT32): np.dtype("<u4"),
    (LLAMA3_MAGIC, LLAMA3_VERSION): np.dtype("<u4"),
}

_SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


# --------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------


def shard_name(split: str, index: int) -> str:
    """The file name of shard ``index`` of ``split``: ``train_000003.bin``."""
    _check_split(split)
    return f"{split}_{index:06d}.bin"


def find_shards(directory: str | Path, split: str) -> list[Path]:
    """The shards of ``split`` in ``directory`` (``{split}_NNNNNN.bin``), by index.

    Only exact names count: ``train_extra_000000.bin`` is not a ``train`` shard, and the
    writer's temporary files (``.train_000000.bin.*.tmp``) are never listed. A name that
    matches but is not a readable file (a dangling symbolic link, a loop, a directory) is a
    DataError naming it, not a shard silently left out.
    """
    _check_split(split)
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory")
    pattern = re.compile(rf"{re.escape(split)}_([0-9]{{6,}})\.bin")
    found = []
    for path in directory.iterdir():
        match = pattern.fullmatch(path.name)
        if match:
            problem = file_problem(path)
            if problem is not None:  # skipping it would train on less data without a word
                raise DataError(f"{path}: named like a {split} shard but {problem}")
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def _check_split(split: str) -> None:
    if not isinstance(split, str) or not _SPLIT_NAME.fullmatch(split):
        raise DataError(
            f"split must be a name of letters, digits, '_', '.' or '-' (not starting with "
            f"'.', '_' or '-'), got {split!r}"
        )


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def token_dtype(vocab_size: int) -> np.dtype:
    """The on-disk token type for a vocabulary: uint16 while every id (< vocab_size) fits in
    it, i.e. vocab_size ≤ 65,536, else uint32. Both little-endian."""
    _check_vocab_size(vocab_size)
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


def write_shard(path: str | Path, tokens: np.ndarray, *, vocab_size: int) -> None:
    """Write ``tokens`` (N,) to ``path`` as one shard, atomically.

    The version follows from ``vocab_size`` (:func:`token_dtype`): 1 (uint16) for vocabularies
    up to 65,536, 2 (uint32) beyond. Every id must lie in [0, vocab_size): a DataError says
    which does not. The bytes go to a temporary file in the same directory, which is flushed,
    fsync'ed and renamed over ``path`` (``os.replace``); on any error the temporary file is
    removed and an existing file at ``path`` is left as it was.
    """
    path = Path(path)
    tokens = _checked_tokens(tokens, vocab_size, where=str(path))
    if not path.parent.is_dir():
        raise DataError(f"{path}: the directory {path.parent} does not exist")
    _atomic_write(path, _header(tokens), tokens)


def write_shards(
    token_arrays: Iterable[np.ndarray],
    out_dir: str | Path,
    *,
    split: str,
    vocab_size: int,
    shard_tokens: int = 10_000_000,
    overwrite: bool = False,
) -> list[Path]:
    """Write a stream of token arrays as shards ``{split}_000000.bin``, ``{split}_000001.bin``, …
    of ``shard_tokens`` tokens each (the last one holds the rest); returns their paths.

    Streams: at most one shard's worth of tokens is held in memory. The arrays are
    concatenated as given (put the end-of-text token between documents yourself), and shards
    are cut every ``shard_tokens`` tokens regardless of document boundaries. No tokens, no
    shards: an empty stream returns []. ``out_dir`` is created if needed. If it already holds
    shards of ``split``, a DataError, unless ``overwrite``: then the new shards replace the old
    ones and old shards beyond the new count are removed, so no stale shard joins the split.
    """
    out_dir = Path(out_dir)
    _check_split(split)
    dtype = token_dtype(vocab_size)
    if isinstance(shard_tokens, bool) or not isinstance(shard_tokens, (int, np.integer)):
        raise DataError(f"shard_tokens must be an integer, got {shard_tokens!r}")
    if not 1 <= shard_tokens <= MAX_TOKENS:
        raise DataError(f"shard_tokens must be in [1, {MAX_TOKENS:,}], got {shard_tokens:,}")
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = find_shards(out_dir, split)
    if existing and not overwrite:
        raise DataError(
            f"{out_dir}: already holds {len(existing)} {split} shard(s) ({existing[0].name}, …); "
            f"remove them or pass overwrite=True"
        )

    written: list[Path] = []

    def flush(pieces: list[np.ndarray]) -> None:
        path = out_dir / shard_name(split, len(written))
        tokens = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
        _atomic_write(path, _header(tokens), tokens)
        written.append(path)

    pending: list[np.ndarray] = []  # copies, so a caller may reuse its buffer after yielding it
    n_pending = 0
    for k, array in enumerate(token_arrays):
        array = _checked_tokens(array, vocab_size, where=f"write_shards: array {k}")
        while n_pending + array.size >= shard_tokens:
            take = shard_tokens - n_pending
            pending.append(array[:take].copy())
            flush(pending)
            pending, n_pending = [], 0
            array = array[take:]
        if array.size:
            pending.append(array.astype(dtype, copy=True))
            n_pending += array.size
    if n_pending:
        flush(pending)

    if overwrite:
        for stale in set(existing) - set(written):
            stale.unlink(missing_ok=True)
    return written


def _check_vocab_size(vocab_size: int) -> None:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)):
        raise DataError(f"vocab_size must be an integer, got {vocab_size!r}")
    if not 1 <= vocab_size <= 2**32:
        raise DataError(f"vocab_size must be in [1, 2**32], got {vocab_size:,}")


def _checked_tokens(tokens: np.ndarray, vocab_size: int, *, where: str) -> np.ndarray:
    """``tokens`` as a 1-D little-endian array of the shard's token type, after checking that
    it holds integers in [0, vocab_size)."""
    dtype = token_dtype(vocab_size)
    array = np.asarray(tokens)
    if array.ndim != 1:
        raise DataError(f"{where}: tokens must be a 1-D array, got shape {array.shape}")
    if array.size and array.dtype.kind not in "iu":
        raise DataError(f"{where}: tokens must be integers, got dtype {array.dtype}")
    if array.size > MAX_TOKENS:
        raise DataError(f"{where}: {array.size:,} tokens do not fit one shard (max {MAX_TOKENS:,})")
    if array.size:
        low, high = int(array.min()), int(array.max())  # one vectorised pass each
        if low < 0 or high >= vocab_size:
            bad = low if low < 0 else high
            position = int(np.argmax(array == bad))
            raise DataError(
                f"{where}: token id {bad:,} at position {position:,} is outside the vocabulary "
                f"[0, {vocab_size:,})"
            )
    return array.astype(dtype, copy=False)


def _header(tokens: np.ndarray) -> np.ndarray:
    """The (256,) little-endian int32 header for ``tokens``, whose dtype picks the version."""
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0] = MAGIC
    header[1] = VERSION_UINT16 if tokens.dtype.itemsize == 2 else VERSION_UINT32
    header[2] = tokens.size
    return header


def _write_payload(file: IO[bytes], header: np.ndarray, tokens: np.ndarray) -> None:
    """The bytes of a shard: the header, then the tokens (no copy of the tokens)."""
    file.write(header.tobytes())
    file.write(memoryview(np.ascontiguousarray(tokens)).cast("B"))


def _atomic_write(path: Path, header: np.ndarray, tokens: np.ndarray) -> None:
    """A reader sees the old shard or the new one, never a partial one; the temporary name
    starts with '.' and ends in '.tmp', so :func:`find_shards` never lists it."""
    with atomic_file(path) as file:
        _write_payload(file, header, tokens)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardInfo:
    """What a shard's header says, checked against the file's size."""

    path: Path
    magic: int
    version: int
    num_tokens: int
    dtype: np.dtype  # little-endian uint16 or uint32
    file_bytes: int


def shard_info(path: str | Path) -> ShardInfo:
    """Read and check a shard's header without touching its tokens.

    Checks that the file exists and holds a whole header, that (magic, version) is a known
    layout, and that the file is exactly ``1024 + N · itemsize`` bytes long, neither truncated
    nor followed by extra bytes. Any failure is a DataError that names the file.
    """
    path = Path(path)
    problem = file_problem(path)
    if problem == ABSENT:
        raise DataError(f"{path}: no such file")
    if problem is not None:
        raise DataError(f"{path}: not a regular file: it {problem}")
    with open(path, "rb") as file:
        raw = file.read(HEADER_BYTES)
        file_bytes = os.fstat(file.fileno()).st_size
    if len(raw) < HEADER_BYTES:
        raise DataError(
            f"{path}: the file has {len(raw):,} bytes, fewer than the {HEADER_BYTES:,}-byte "
            f"header: truncated, or not a token shard?"
        )
    header = np.frombuffer(raw, dtype="<i4")  # (256,)
    magic, version, num_tokens = (int(v) for v in header[:3])
    if magic not in (MAGIC, LLAMA3_MAGIC):
        hint = ""
        if magic == _SWAPPED_MAGIC:
            hint = " (the right magic, byte-swapped: written big-endian?)"
        raise DataError(
            f"{path}: magic number {magic} is not a token shard's {MAGIC}{hint}: not a "
            f"token shard, or corrupted?"
        )
    dtype = _LAYOUTS.get((magic, version))
    if dtype is None:
        known = ", ".join(str(v) for m, v in _LAYOUTS if m == magic)
        raise DataError(
            f"{path}: unknown shard version {version} (known for magic {magic}: {known})"
        )
    if num_tokens < 0:
        raise DataError(f"{path}: header says {num_tokens:,} tokens, a negative count: corrupted?")
    expected = HEADER_BYTES + num_tokens * dtype.itemsize
    if file_bytes != expected:
        problem = "truncated?" if file_bytes < expected else "extra bytes after the tokens?"
        raise DataError(
            f"{path}: header says {num_tokens:,} tokens ({expected:,} bytes with the header, "
            f"{dtype.name} tokens) but the file has {file_bytes:,} bytes: {problem}"
        )
    return ShardInfo(path, magic, version, num_tokens, dtype, file_bytes)


def read_shard(path: str | Path, *, vocab_size: int | None = None) -> np.ndarray:
    """The tokens (N,) of a shard, memory-mapped read-only (uint16 or uint32, little-endian).

    The header is checked by :func:`shard_info`. With ``vocab_size``, every id is also checked
    to be < vocab_size: one vectorised pass over the file (the pages stay in the OS cache, not
    in this process). Nothing is read into memory until it is indexed; the map stays open as
    long as the returned array (or a view of it) is alive.
    """
    info = shard_info(path)
    if info.num_tokens == 0:
        tokens = np.zeros(0, dtype=info.dtype)
        tokens.flags.writeable = False
    else:
        with open(info.path, "rb") as file:
            mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        tokens = np.frombuffer(mapped, dtype=info.dtype, count=info.num_tokens, offset=HEADER_BYTES)
    if vocab_size is not None:
        _check_vocab_size(vocab_size)
        if tokens.size and int(tokens.max()) >= vocab_size:
            position = int(np.argmax(tokens >= vocab_size))
            raise DataError(
                f"{info.path}: token id {int(tokens[position]):,} at position {position:,} "
                f"(byte offset {HEADER_BYTES + position * info.dtype.itemsize:,}) is not "
                f"below vocab_size {vocab_size:,}: a shard of another tokenizer?"
            )
    return tokens
