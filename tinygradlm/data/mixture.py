"""Batches drawn from several token sources in set proportions: a data mixture.

A mixture is a list of sources, each a directory of shards (``tinygradlm prepare --source``
writes one per named source) with a weight; weights are relative and normalised to sum to 1.
Which sources a run mixes (the ``data.mix`` setting, a prepared directory's own mixture) is
worked out in :mod:`.mix`.

The sampling scheme, in full:

- Source i's windows are its own stream's windows, as in :class:`~.loader.DataLoader`: window
  j is the tokens [j·T, j·T + T + 1), n_i = (tokens_i − 1) // T of them. The source visits them
  in epochs: its epoch e is the order ``np.random.default_rng([seed, id_i, e]).permutation(n_i)``
  (shuffle=False: 0, 1, 2, …), where id_i is the CRC-32 of the source's name, so adding or
  reordering sources does not change any other source's order.
- Sequence s of the run (s = 0, 1, 2, …, counted over all global batches) comes from the source
  that Tijdeman's rule picks (below), and is that source's next window in its epoch order;
  after its last window the source starts its next epoch. So c_i(s), the number of sequences
  source i gave to the first s, fixes everything, and each source's epoch count is c_i / n_i.
- Tijdeman's rule (R. Tijdeman, "The chairman assignment problem", Discrete Math. 32, 1980):
  with k sources and δ = 1 / (2k − 2), sequence s + 1 goes to the source with the earliest
  deadline (c_i + 1 − δ) / w_i among those whose deficit w_i·(s + 1) − c_i is at least δ
  (ties: the source listed first). It keeps every source within
  1 − δ sequences of its exact share at every prefix:

      |c_i(s) − w_i · s| ≤ 1 − 1/(2k − 2)      for all s and i   (k ≥ 2)

  A global batch of B sequences therefore holds w_i·B of source i, rounded one way or the
  other, in every batch, not only on average: the proportions hold exactly up to that bound,
  with no sampling noise, while the windows drawn from each source are shuffled.
- A resumed run may change the weights (``load_state_dict(..., new_weights=True)``, the
  ``data.remix`` setting): the rule then runs on the counts since that batch, c_i − b_i with
  b_i the counts reached, so the new proportions hold within the same bound from there on,
  while every source goes on from its place in its epochs. The b_i are part of the state.
- Global batch k is sequences [k·B, (k+1)·B); rank r of P takes rows [r·B/P, (r+1)·B/P). Every
  rank works out the whole global batch's assignment (B small steps) and reads only its rows,
  so the global batch never depends on P, and the state (the counts c_i) resumes at exactly
  the next batch on any number of ranks.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import DataError
from .loader import TokenStream, dataset_differences
from .mix import Source, parse_mix
from .sampler import check_loader_args

__all__ = ["MixtureLoader", "tijdeman_counts"]


# --------------------------------------------------------------------------------------------
# the assignment of sequences to sources
# --------------------------------------------------------------------------------------------


def tijdeman_counts(weights: Sequence[float], counts: Sequence[int], n: int) -> np.ndarray:
    """The sources of the next ``n`` sequences, (n,) int64, after ``counts[i]`` sequences from
    source i; ``counts`` is not changed. ``weights`` sum to 1 (see the module docstring for the
    rule and its bound)."""
    k = len(weights)
    chosen = np.zeros(n, dtype=np.int64)
    if k == 1:
        return chosen
    delta = 1.0 / (2 * k - 2)
    c = [int(x) for x in counts]
    s = sum(c)
    for j in range(n):
        s += 1
        best, best_deadline = -1, math.inf
        for i, w in enumerate(weights):
            if w * s - c[i] >= delta - 1e-9:  # eligible: owed at least δ of a sequence
                deadline = (c[i] + 1 - delta) / w
                if deadline < best_deadline:
                    best, best_deadline = i, deadline
        if best < 0:  # unreachable in exact arithmetic (the deficits sum to 1 ≥ kδ for k ≥ 2)
            best = int(np.argmax([w * s - ci for w, ci in zip(weights, c, strict=True)]))
        c[best] += 1
        chosen[j] = best
    return chosen


# --------------------------------------------------------------------------------------------
# the loader
# --------------------------------------------------------------------------------------------


class MixtureLoader:
    """Batches ``(x, y)`` for this rank, each (B // world_size, T) int64, drawn from several
    sources in proportion to their weights (the module docstring gives the scheme).

    sources: :class:`Source` entries (name, shard directory, weight). split: the shards read
    from each directory. batch_size: the GLOBAL batch B, divisible by world_size. seq_len: T.
    seed, shuffle: each source's window order. vocab_size: if given, every token id is checked
    to be below it.

    An endless iterator like DataLoader; ``state_dict()`` / ``load_state_dict()`` resume at
    exactly the next batch for any world_size. :meth:`epochs_seen` says how many passes over
    each source the batches so far add up to."""

    def __init__(
        self,
        sources: Sequence[Source],
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
            "MixtureLoader",
            batch_size=batch_size,
            rank=rank,
            world_size=world_size,
            seq_len=seq_len,
            seed=seed,
        )
        if not sources:
            raise DataError("MixtureLoader: no sources")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise DataError(f"MixtureLoader: source names repeat: {names}")
        parse_mix({s.name: s.weight for s in sources})  # checks every weight
        total = math.fsum(s.weight for s in sources)
        self.names = names
        self.weights = [s.weight / total for s in sources]  # normalised, sum 1
        self.batch_size = int(batch_size)
        self.seq_len = int(seq_len)
        self.rank, self.world_size = int(rank), int(world_size)
        self.seed, self.shuffle, self.split = int(seed), bool(shuffle), split
        self.streams = []
        for source in sources:
            try:
                stream = TokenStream(source.path, split, vocab_size=vocab_size)
            except DataError as e:
                raise DataError(f"source {source.name!r}: {e}") from None
            if stream.n_windows(self.seq_len) < 1:
                raise DataError(
                    f"source {source.name!r}: {stream.describe()} {stream.n_tokens:,} tokens, "
                    f"not one window of T={self.seq_len} (+1)"
                )
            self.streams.append(stream)
        self.n_windows = [s.n_windows(self.seq_len) for s in self.streams]
        # ids of the sources' window orders: stable under adding or reordering sources
        self._ids = [zlib.crc32(name.encode("utf-8")) for name in names]
        self.counts = [0] * len(names)  # c_i: sequences source i gave so far, all ranks together
        # c_i when the current weights took over (0, unless a resume changed the weights): the
        # rule runs on the counts since then, so the new proportions hold from that batch on
        self.since = [0] * len(names)
        self._orders: dict[tuple[int, int], np.ndarray] = {}

    # -- sizes and position ---------------------------------------------------------------------

    @property
    def local_batch_size(self) -> int:
        """Rows of this rank's x and y: B // world_size."""
        return self.batch_size // self.world_size

    @property
    def tokens_per_batch(self) -> int:
        """Tokens one global batch trains on: B·T."""
        return self.batch_size * self.seq_len

    @property
    def batches_drawn(self) -> int:
        """Global batches drawn so far."""
        return sum(self.counts) // self.batch_size

    def epochs_seen(self) -> dict[str, float]:
        """Per source, the passes over its windows the batches so far add up to: c_i / n_i."""
        return {
            name: count / n
            for name, count, n in zip(self.names, self.counts, self.n_windows, strict=True)
        }

    # -- batches --------------------------------------------------------------------------------

    def next_assignment(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole next global batch, without moving on: per row, its source (B,) and that
        source's window index (B,)."""
        phase = [c - b for c, b in zip(self.counts, self.since, strict=True)]
        sources = tijdeman_counts(self.weights, phase, self.batch_size)
        windows = np.empty(self.batch_size, dtype=np.int64)
        counts = list(self.counts)
        for row, i in enumerate(sources):
            windows[row] = self._window(int(i), counts[i])
            counts[i] += 1
        return sources, windows

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """This rank's slice of the next global batch: x, y, each (B // world_size, T) int64."""
        T, rows = self.seq_len, self.local_batch_size
        sources, windows = self.next_assignment()
        mine = slice(self.rank * rows, (self.rank + 1) * rows)
        buffer = np.empty((rows, T + 1), dtype=np.int64)  # (B/P, T+1) inputs, last target
        for row, (i, window) in enumerate(zip(sources[mine], windows[mine], strict=True)):
            self.streams[int(i)].read(int(window) * T, buffer[row])
        drawn = np.bincount(sources, minlength=len(self.names))
        self.counts = [c + int(n) for c, n in zip(self.counts, drawn, strict=True)]
        return np.ascontiguousarray(buffer[:, :-1]), np.ascontiguousarray(buffer[:, 1:])

    def _window(self, i: int, count: int) -> int:
        """Source i's window for its sequence number ``count`` (0-based, over all epochs)."""
        n = self.n_windows[i]
        epoch, position = divmod(count, n)
        if not self.shuffle:
            return position
        key = (i, epoch)
        if key not in self._orders:
            rng = np.random.default_rng([self.seed, self._ids[i], epoch])
            self._orders = {k: v for k, v in self._orders.items() if k[0] != i or k[1] >= epoch - 1}
            self._orders[key] = rng.permutation(n)
        return int(self._orders[key][position])

    def __iter__(self) -> MixtureLoader:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        return self.next_batch()

    def reset(self) -> None:
        """Back to the first batch."""
        self.counts = [0] * len(self.names)
        self.since = [0] * len(self.names)

    # -- resuming -------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Where the loader is, as JSON-able plain values: each source's sequence count and its
        count when the current weights took over (which fix every later batch), and what fixes
        the batches (sources, weights, seed, shuffle, B, T, each source's shard names and token
        counts). Not world_size: any number of ranks resumes from it."""
        return {
            "mixture": {
                name: {
                    "seen": count,
                    "since": since,
                    "weight": weight,
                    "dataset": stream.fingerprint(),
                }
                for name, count, since, weight, stream in zip(
                    self.names, self.counts, self.since, self.weights, self.streams, strict=True
                )
            },
            "seed": self.seed,
            "shuffle": self.shuffle,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
        }

    def load_state_dict(self, state: Any, *, new_weights: bool = False) -> None:
        """Continue from ``state`` (from :meth:`state_dict`): the next batch is the one that
        would have followed. The sources, their weights and data, the seed, shuffle, B and T
        must match; a DataError lists every difference, and nothing changes unless all do.

        ``new_weights``: this loader's weights may differ from the state's; they then take over
        from the next batch (each source keeps its place in its epochs, and the rule starts
        again from the counts reached, so the new proportions hold within the same bound from
        here on). The state saved afterwards records the change, so resuming it is exact."""
        owner = "MixtureLoader"
        if not isinstance(state, dict):
            raise DataError(f"{owner} state must be a dict, got {type(state).__name__}")
        if "mixture" not in state:
            raise DataError(
                f"{owner}: cannot resume: the state is a single-source loader's (keys "
                f"{sorted(state)}), and this run reads a mixture of {', '.join(self.names)}"
            )
        mine = self.state_dict()
        if set(state) != set(mine):
            raise DataError(f"{owner} state: keys {sorted(state)}, expected {sorted(mine)}")
        differences = [
            f"{key} is {state[key]!r} in the state but {mine[key]!r} here"
            for key in ("seed", "shuffle", "batch_size", "seq_len")
            if state[key] != mine[key]
        ]
        theirs = state["mixture"]
        if not isinstance(theirs, dict) or list(theirs) != self.names:
            differences.append(
                f"the sources are {list(theirs) if isinstance(theirs, dict) else theirs!r} in "
                f"the state but {self.names} here"
            )
            theirs = {}
        counts, since, reweighted = self._read_entries(
            theirs, mine["mixture"], new_weights, differences
        )
        if differences:
            raise DataError(f"{owner}: cannot resume: " + "; ".join(differences))
        self._check_counts(counts, since)
        if reweighted:  # (only with new_weights) the new weights take over from this batch
            since = list(counts)
        self._check_shares(counts, since)
        self.counts, self.since = counts, since

    def _read_entries(
        self,
        theirs: Mapping[str, Any],
        mine: Mapping[str, Any],
        new_weights: bool,
        differences: list[str],
    ) -> tuple[list[int], list[int], bool]:
        """Each source's (seen, since) from the state's entries ``theirs``, checked against this
        loader's (``mine``): what does not match is added to ``differences``. Also whether any
        weight changed (allowed with ``new_weights`` only)."""
        counts, since, reweighted = [], [], False
        for name, weight in zip(self.names, self.weights, strict=True):
            entry = theirs.get(name)
            if not entry:
                continue
            if not isinstance(entry, dict) or set(entry) != {"seen", "since", "weight", "dataset"}:
                differences.append(f"source {name!r}: malformed entry {entry!r}")
                continue
            same = isinstance(entry["weight"], (int, float)) and math.isclose(
                entry["weight"], weight, rel_tol=1e-12, abs_tol=0
            )
            reweighted |= not same
            if not same and not new_weights:
                differences.append(
                    f"source {name!r} has weight {entry['weight']!r} in the state but "
                    f"{weight:.6g} here (to go on with the new weights from here, set "
                    "data.remix = true)"
                )
            found = dataset_differences(entry["dataset"], mine[name]["dataset"])
            differences += [f"source {name!r}: {d}" for d in found]
            seen, start = entry["seen"], entry["since"]
            for key, value in (("seen", seen), ("since", start)):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    differences.append(
                        f"source {name!r}: {key} must be an integer ≥ 0, got {value!r}"
                    )
            counts.append(seen)
            since.append(start)
        return counts, since, reweighted

    def _check_counts(self, counts: Sequence[int], since: Sequence[int]) -> None:
        """The counts must make whole global batches, and the reweighting point lie before."""
        owner = "MixtureLoader"
        if sum(counts) % self.batch_size:
            raise DataError(
                f"{owner} state: the sources' counts {counts} add up to {sum(counts)}, not a "
                f"whole number of global batches of {self.batch_size}"
            )
        if any(b > c for b, c in zip(since, counts, strict=True)):
            raise DataError(f"{owner} state: since {since} exceeds the counts {counts}")

    def _check_shares(self, counts: Sequence[int], since: Sequence[int]) -> None:
        """The rule keeps every count since the last reweighting within 1 of its share: a
        state where one is further off is not the rule's."""
        phase = [c - b for c, b in zip(counts, since, strict=True)]
        total = sum(phase)
        off = [
            f"{name} {c} (its share is {w * total:.2f})"
            for name, c, w in zip(self.names, phase, self.weights, strict=True)
            if abs(c - w * total) > 1
        ]
        if off:
            raise DataError(
                f"MixtureLoader state: after {total:,} sequences at these weights the counts of "
                f"{', '.join(off)} are more than 1 from their shares"
            )

    def __repr__(self) -> str:
        mix = ", ".join(f"{n} {w:.3g}" for n, w in zip(self.names, self.weights, strict=True))
        return (
            f"MixtureLoader({mix}; B={self.batch_size}, T={self.seq_len}, rank "
            f"{self.rank}/{self.world_size}, batch {self.batches_drawn})"
        )
