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

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .sampler import EpochSampler, SampledBatches, check_loader_args
from .shards import find_shards, read_shard

__all__ = ["DataLoader", "TokenStream", "dataset_differences"]


class DataLoader(SampledBatches):
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
        check_loader_args(
            "DataLoader",
            batch_size=batch_size,
            rank=rank,
            world_size=world_size,
            seq_len=seq_len,
            seed=seed,
        )
        self.seq_len = int(seq_len)  # T
        self.split = split

        self.stream = TokenStream(source, split, vocab_size=vocab_size)
        self.files = self.stream.files
        self.n_tokens = self.stream.n_tokens
        self.n_windows = self.stream.n_windows(self.seq_len)
        if self.n_windows < batch_size:
            raise DataError(
                f"DataLoader: {self.stream.describe()} {self.n_tokens:,} tokens, "
                f"{self.n_windows:,} windows of T={self.seq_len} (+1), fewer than one global batch "
                f"of B={batch_size}: need at least {batch_size * self.seq_len + 1:,} "
                f"tokens; use a smaller batch_size or seq_len, or more data"
            )
        # the window order, this rank's windows of each batch, and the position (epoch, batch)
        self.sampler = EpochSampler(
            self.n_windows,
            batch_size,
            rank=rank,
            world_size=world_size,
            seed=seed,
            shuffle=shuffle,
            drop_last=True,  # the windows left over at the end of an epoch are skipped
            owner="DataLoader",
        )

    # ---------------------------------------------------------------------------------------
    # sizes (the position and batches_per_epoch = n_windows // B: SampledBatches)
    # ---------------------------------------------------------------------------------------

    @property
    def tokens_per_batch(self) -> int:
        """Tokens one global batch (one optimizer step, all ranks together) trains on: B·T."""
        return self.batch_size * self.seq_len

    # ---------------------------------------------------------------------------------------
    # batches
    # ---------------------------------------------------------------------------------------

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """This rank's slice of the next global batch: x, y, each (B // world_size, T) int64."""
        T = self.seq_len
        windows = self.sampler.next_indices()  # (B/P,) window indices; then the next batch
        buffer = np.empty((len(windows), T + 1), dtype=np.int64)  # (B/P, T+1) inputs, last target
        for row, window in enumerate(windows):
            self.stream.read(int(window) * T, buffer[row])
        x = np.ascontiguousarray(buffer[:, :-1])  # (B/P, T)
        y = np.ascontiguousarray(buffer[:, 1:])  # (B/P, T) the token after each input
        return x, y

    # ---------------------------------------------------------------------------------------
    # resuming
    # ---------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Where the loader is, as JSON-able plain values: the next batch (epoch, batch), what
        fixes the batches (seed, shuffle, B, T) and the data (file names, token counts).
        world_size and rank are not part of it: any number of ranks can resume from it."""
        return {**self.sampler.state_dict(), **self._own_state()}

    def _own_state(self) -> dict[str, Any]:
        return {
            "seq_len": self.seq_len,
            "dataset": self.stream.fingerprint(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (from :meth:`state_dict`): the next batch is the one that
        would have followed. The seed, shuffle, B, T and the data must match this loader's;
        a DataError lists every difference, and nothing changes unless all match."""
        if isinstance(state, dict) and isinstance(state.get("mixture"), dict):
            raise DataError(
                f"DataLoader: cannot resume: the state is a mixture's (sources "
                f"{', '.join(map(str, state['mixture']))}), and this run reads one source"
            )
        self.sampler.load_state_dict(
            state, self._own_state(), differ={"dataset": dataset_differences}
        )

    def __repr__(self) -> str:
        return (
            f"DataLoader({len(self.files)} shard(s), {self.n_tokens:,} tokens, B={self.batch_size}"
            f", T={self.seq_len}, rank {self.rank}/{self.world_size}, epoch {self.epoch}, batch "
            f"{self.batch_index}/{self.batches_per_epoch})"
        )


class TokenStream:
    """The shards of a split, in order, as one memory-mapped token stream (never read whole).

    source: a directory (its ``{split}_NNNNNN.bin`` shards, by index), one shard file, or a
    list of shard files (read in the order given; ``split`` is then unused). vocab_size: if
    given, every token id is checked to be below it when the shards are opened.
    """

    def __init__(
        self,
        source: str | Path | Sequence[str | Path],
        split: str = "train",
        *,
        vocab_size: int | None = None,
    ) -> None:
        self.files = _shard_files(source, split)
        self.shards = [read_shard(f, vocab_size=vocab_size) for f in self.files]  # memory-maps
        self.counts = [len(tokens) for tokens in self.shards]
        # starts[s] is the stream position of shard s's first token; starts[-1] = n_tokens
        self.starts = np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])
        self.n_tokens = int(self.starts[-1])

    def n_windows(self, seq_len: int) -> int:
        """Windows of T = seq_len inputs and T targets, (n_tokens − 1) // T: consecutive
        windows share one token (see the module docstring)."""
        return max(0, (self.n_tokens - 1) // seq_len)

    def read(self, start: int, out: np.ndarray) -> None:
        """Copy the stream's tokens [start, start + len(out)) into ``out``, across as many
        shards as they span."""
        shard = int(np.searchsorted(self.starts, start, side="right")) - 1
        filled = 0
        while filled < len(out):
            tokens = self.shards[shard]
            offset = start + filled - int(self.starts[shard])  # position within this shard
            n = min(len(out) - filled, len(tokens) - offset)
            out[filled : filled + n] = tokens[offset : offset + n]
            filled += n
            shard += 1  # the rest, if any, comes from the next shard (an empty one adds nothing)

    def fingerprint(self) -> dict[str, list]:
        """What a resumed run checks to be reading the same data: file names, token counts."""
        return {"files": [f.name for f in self.files], "tokens": list(self.counts)}

    def describe(self) -> str:
        """ "the shard F holds" or "the N shards F, …, G hold", to start a sentence."""
        files = self.files
        if len(files) == 1:
            return f"the shard {files[0]} holds"
        return f"the {len(files)} shards {files[0]}, …, {files[-1].name} hold"


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


def dataset_differences(theirs: Any, mine: dict[str, list]) -> list[str]:
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
