"""Batches of (x, y) token windows from the shards of a split, sliced by rank, resumable.

The sampling scheme, in full (docs/shards.md has the pictures):

- The shards of the split, in order, are one token stream of n_tokens tokens, memory-mapped and
  never read whole.
- Window i is the stream's tokens [i·T, i·T + T + 1) for i in 0 … n_windows − 1, with
  n_windows = (n_tokens − 1) // T: T inputs and, shifted by one, T targets. Consecutive
  windows share one token (the last target of one is the first input of the next), so every
  token but the very first is a target exactly once per epoch. A window may straddle a shard
  boundary; it is read from both shards.
- Epoch e visits the windows in the order ``np.random.default_rng([seed, e]).permutation``
  (shuffle=False: 0, 1, 2, …). Global batch k of the epoch is the windows order[k·B, (k+1)·B);
  the n_windows mod B windows left over at the end of an epoch are skipped (a different set
  each epoch when shuffled).
- Rank r of P takes rows [r·B/P, (r+1)·B/P) of the global batch. The global batch depends on
  (data, seed, B, T) only, never on P, so the ranks' slices are disjoint, together they are
  the global batch, and a run can resume on a different number of ranks at exactly the next
  batch: the state is just (epoch, batch index).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .shards import find_shards, read_shard

__all__ = ["DataLoader"]

_STATE_KEYS = ("epoch", "batch", "seed", "shuffle", "batch_size", "seq_len", "dataset")


class DataLoader:
    """Batches ``(x, y)`` for this rank, each (B // world_size, T) int64, where y[:, t] is the
    token after x[:, t] in the stream (so y[:, :-1] == x[:, 1:]).

    source: a directory (its ``{split}_NNNNNN.bin`` shards, by index), one shard file, or a
    list of shard files (read in the order given; ``split`` is then unused).
    batch_size: the GLOBAL batch B, summed over all ranks; it must be divisible by world_size.
    seq_len: T. rank, world_size: this process's place among P data-parallel ranks.
    seed, shuffle: the window order of each epoch (see the module docstring).
    vocab_size: if given, every token id is checked to be below it when the shards are opened.

    The loader is an endless iterator: ``next(loader)`` or ``loader.next_batch()`` moves to the
    next epoch after ``batches_per_epoch`` batches. ``state_dict()`` / ``load_state_dict()``
    resume at exactly the next batch, for any world_size.
    """

    def __init__(
        self,
        source: str | Path | Sequence[str | Path],
        *,
        split: str = "train",
        batch_size: int,
        seq_len: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        vocab_size: int | None = None,
    ) -> None:
        for name, value, low in (
            ("batch_size", batch_size, 1),
            ("seq_len", seq_len, 1),
            ("world_size", world_size, 1),
            ("rank", rank, 0),
            ("seed", seed, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise DataError(f"DataLoader: {name} must be an integer ≥ {low}, got {value!r}")
        if rank >= world_size:
            raise DataError(f"DataLoader: rank {rank} is not below world_size {world_size}")
        if batch_size % world_size:
            raise DataError(
                f"DataLoader: the global batch_size {batch_size} is not divisible by world_size "
                f"{world_size}: every rank must take the same number of rows"
            )
        self.batch_size = int(batch_size)  # B, global
        self.seq_len = int(seq_len)  # T
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.split = split

        self.files = _shard_files(source, split)
        self._shards = [read_shard(f, vocab_size=vocab_size) for f in self.files]  # memory-maps
        counts = [len(tokens) for tokens in self._shards]
        # _starts[s] is the stream position of shard s's first token; _starts[-1] = n_tokens
        self._starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])  # (shards + 1,)
        self.n_tokens = int(self._starts[-1])
        self.n_windows = max(0, (self.n_tokens - 1) // self.seq_len)
        if self.n_windows < self.batch_size:
            raise DataError(
                f"DataLoader: {_describe(self.files)} {self.n_tokens:,} tokens, "
                f"{self.n_windows:,} windows of T={self.seq_len} (+1), fewer than one global batch "
                f"of B={self.batch_size}: need at least {self.batch_size * self.seq_len + 1:,} "
                f"tokens; use a smaller batch_size or seq_len, or more data"
            )
        self._fingerprint = {"files": [f.name for f in self.files], "tokens": counts}
        self._epoch = 0
        self._batch = 0  # the next batch of the epoch
        self._order_epoch = -1
        self._order = np.zeros(0, dtype=np.int64)  # (n_windows,) the window order of _order_epoch

    # ---------------------------------------------------------------------------------------
    # sizes and position
    # ---------------------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The epoch of the next batch (0-based)."""
        return self._epoch

    @property
    def batch_index(self) -> int:
        """The index within its epoch of the next batch."""
        return self._batch

    @property
    def batches_per_epoch(self) -> int:
        """Whole global batches in one pass over the windows: n_windows // B."""
        return self.n_windows // self.batch_size

    @property
    def tokens_per_batch(self) -> int:
        """Tokens one global batch (one optimizer step, all ranks together) trains on: B·T."""
        return self.batch_size * self.seq_len

    @property
    def local_batch_size(self) -> int:
        """Rows of this rank's x and y: B // world_size."""
        return self.batch_size // self.world_size

    # ---------------------------------------------------------------------------------------
    # batches
    # ---------------------------------------------------------------------------------------

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """This rank's slice of the next global batch: x, y, each (B // world_size, T) int64."""
        B, T = self.batch_size, self.seq_len
        rows = self.local_batch_size
        first = self._batch * B + self.rank * rows  # this rank's first row, in the epoch's order
        windows = self._windows(first, rows)  # (B/P,) window indices
        buffer = np.empty((rows, T + 1), dtype=np.int64)  # (B/P, T+1) inputs and last target
        for row, window in enumerate(windows):
            self._read(int(window) * T, buffer[row])
        x = np.ascontiguousarray(buffer[:, :-1])  # (B/P, T)
        y = np.ascontiguousarray(buffer[:, 1:])  # (B/P, T) the token after each input

        self._batch += 1
        if self._batch == self.batches_per_epoch:
            self._epoch, self._batch = self._epoch + 1, 0
        return x, y

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        return self.next_batch()

    def reset(self) -> None:
        """Back to the first batch of epoch 0 (e.g. before each pass over the validation set)."""
        self._epoch, self._batch = 0, 0

    def _windows(self, first: int, count: int) -> np.ndarray:
        """Positions [first, first + count) of the current epoch's window order: (count,)."""
        if not self.shuffle:
            return np.arange(first, first + count, dtype=np.int64)
        if self._order_epoch != self._epoch:  # one permutation per epoch, shared by its batches
            rng = np.random.default_rng([self.seed, self._epoch])
            self._order = rng.permutation(self.n_windows)  # (n_windows,)
            self._order_epoch = self._epoch
        return self._order[first : first + count]

    def _read(self, start: int, out: np.ndarray) -> None:
        """Copy the stream's tokens [start, start + len(out)) into ``out``, across as many
        shards as they span."""
        shard = int(np.searchsorted(self._starts, start, side="right")) - 1
        filled = 0
        while filled < len(out):
            tokens = self._shards[shard]
            offset = start + filled - int(self._starts[shard])  # position within this shard
            n = min(len(out) - filled, len(tokens) - offset)
            out[filled : filled + n] = tokens[offset : offset + n]
            filled += n
            shard += 1  # the rest, if any, comes from the next shard (an empty one adds nothing)

    # ---------------------------------------------------------------------------------------
    # resuming
    # ---------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Where the loader is, as JSON-able plain values: the next batch (epoch, batch), what
        fixes the batches (seed, shuffle, B, T) and the data (file names, token counts).
        world_size and rank are not part of it: any number of ranks can resume from it."""
        return {
            "epoch": self._epoch,
            "batch": self._batch,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "dataset": {
                "files": list(self._fingerprint["files"]),
                "tokens": list(self._fingerprint["tokens"]),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (from :meth:`state_dict`): the next batch is the one that
        would have followed. The seed, shuffle, B, T and the data must match this loader's;
        a DataError lists every difference, and nothing changes unless all match."""
        if not isinstance(state, dict):
            raise DataError(f"DataLoader state must be a dict, got {type(state).__name__}")
        missing = [k for k in _STATE_KEYS if k not in state]
        unknown = sorted(set(state) - set(_STATE_KEYS))
        if missing or unknown:
            raise DataError(f"DataLoader state: missing keys {missing}, unknown keys {unknown}")
        mine = self.state_dict()
        differences = [
            f"{key} is {state[key]!r} in the state but {mine[key]!r} here"
            for key in ("seed", "shuffle", "batch_size", "seq_len")
            if state[key] != mine[key]
        ]
        differences += _dataset_differences(state["dataset"], mine["dataset"])
        if differences:
            raise DataError("DataLoader: cannot resume: " + "; ".join(differences))
        epoch, batch = state["epoch"], state["batch"]
        for name, value in (("epoch", epoch), ("batch", batch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise DataError(f"DataLoader state: {name} must be an integer ≥ 0, got {value!r}")
        if batch >= self.batches_per_epoch:
            raise DataError(
                f"DataLoader state: batch {batch} is not below batches_per_epoch "
                f"{self.batches_per_epoch}"
            )
        self._epoch, self._batch = epoch, batch

    def __repr__(self) -> str:
        return (
            f"DataLoader({len(self.files)} shard(s), {self.n_tokens:,} tokens, B={self.batch_size}"
            f", T={self.seq_len}, rank {self.rank}/{self.world_size}, epoch {self._epoch}, batch "
            f"{self._batch}/{self.batches_per_epoch})"
        )


def _shard_files(source: str | Path | Sequence[str | Path], split: str) -> list[Path]:
    """The shard files a loader reads: a directory's shards of ``split``, or the files given."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            files = find_shards(path, split)
            if not files:
                raise DataError(f"{path}: no {split} shards ({split}_NNNNNN.bin) in this directory")
            return files
        if not path.exists():
            raise DataError(f"{path}: no such file or directory")
        return [path]
    files = [Path(f) for f in source]
    if not files:
        raise DataError("DataLoader: the list of shard files is empty")
    return files


def _describe(files: list[Path]) -> str:
    if len(files) == 1:
        return f"the shard {files[0]} holds"
    return f"the {len(files)} shards {files[0]}, …, {files[-1].name} hold"


def _dataset_differences(theirs: Any, mine: dict[str, list]) -> list[str]:
    """What differs between two dataset fingerprints, in words."""
    if (
        not isinstance(theirs, dict)
        or set(theirs) != {"files", "tokens"}
        or not all(isinstance(theirs[key], list) for key in theirs)
    ):
        return [f"dataset in the state is {theirs!r}, not {{'files': […], 'tokens': […]}}"]
    if theirs == mine:
        return []
    if theirs["files"] != mine["files"]:
        return [f"the shards are {theirs['files']} in the state but {mine['files']} here"]
    if len(theirs["tokens"]) != len(mine["tokens"]):
        return [f"token counts are {theirs['tokens']} in the state but {mine['tokens']} here"]
    return [
        f"{name} holds {n_theirs!r} tokens in the state but {n_mine:,} here"
        for name, n_theirs, n_mine in zip(
            mine["files"], theirs["tokens"], mine["tokens"], strict=True
        )
        if n_theirs != n_mine
    ]
