"""Which items a rank takes for each batch: the epoch/batch position shared by the loaders.

The scheme (the same for :class:`~tinygradlm.data.DataLoader`'s token windows and
:class:`~tinygradlm.data.sft.SFTLoader`'s examples): epoch e visits the n items in the order
``np.random.default_rng([seed, e]).permutation(n)`` (shuffle=False: 0, 1, 2, …); global batch k
of the epoch is the items order[k·B, (k+1)·B); rank r of P takes rows [r·B/P, (r+1)·B/P) of it.
With drop_last the n mod B items left over at the end of an epoch are skipped; without it the
last batch is partial. The global batch never depends on P, so the state (epoch, batch) resumes
at exactly the next batch on any number of ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from ..errors import DataError

__all__ = ["EpochSampler", "SampledBatches", "check_integers", "check_loader_args"]


def check_integers(owner: str, **values: Any) -> None:
    """Raise a DataError naming ``owner`` for the first of ``values`` that is not an integer
    ≥ 1 (≥ 0 for ``rank`` and ``seed``)."""
    for name, value in values.items():
        low = 0 if name in ("rank", "seed") else 1
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise DataError(f"{owner}: {name} must be an integer ≥ {low}, got {value!r}")


def check_loader_args(
    owner: str, *, batch_size: Any, rank: Any, world_size: Any, **others: Any
) -> None:
    """The checks every loader makes of its place among the ranks: integers (see
    :func:`check_integers`; ``others`` such as seq_len and seed too), rank < world_size, and a
    global batch that splits evenly, so every rank takes the same number of rows."""
    check_integers(owner, batch_size=batch_size, world_size=world_size, rank=rank, **others)
    if rank >= world_size:
        raise DataError(f"{owner}: rank {rank} is not below world_size {world_size}")
    if batch_size % world_size:
        raise DataError(
            f"{owner}: the global batch_size {batch_size} is not divisible by world_size "
            f"{world_size}: every rank must take the same number of rows"
        )


class EpochSampler:
    """The position (epoch, batch) in the scheme above, and this rank's item indices for each
    batch. ``owner`` names the loader in error messages."""

    def __init__(
        self,
        n_items: int,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        owner: str = "EpochSampler",
    ) -> None:
        self.n_items = int(n_items)
        self.batch_size = int(batch_size)  # B, global
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.owner = owner
        self.epoch = 0
        self.batch = 0  # the next batch of the epoch
        self._order_epoch = -1
        self._order = np.zeros(0, dtype=np.int64)  # (n_items,) the item order of _order_epoch

    @property
    def batches_per_epoch(self) -> int:
        """Global batches in one pass: n // B, or with a last partial one ⌈n / B⌉."""
        n, B = self.n_items, self.batch_size
        return n // B if self.drop_last else -(-n // B)

    @property
    def local_batch_size(self) -> int:
        """Rows of this rank's slice of a batch: B // world_size."""
        return self.batch_size // self.world_size

    def next_indices(self) -> np.ndarray:
        """The item indices of this rank's slice of the next global batch, (≤ B/P,) int64, and
        move on (to the next epoch after the last batch). Fewer than B/P only in a partial last
        batch (drop_last=False): the rows past the end of the epoch are missing."""
        rows = self.local_batch_size
        first = self.batch * self.batch_size + self.rank * rows  # in the epoch's order
        stop = min(first + rows, self.n_items)
        first = min(first, stop)
        if self.shuffle:
            indices = self._epoch_order()[first:stop]
        else:
            indices = np.arange(first, stop, dtype=np.int64)
        self.batch += 1
        if self.batch == self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        return indices

    def _epoch_order(self) -> np.ndarray:
        """The current epoch's permutation of the items: (n_items,), one per epoch."""
        if self._order_epoch != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch])
            self._order = rng.permutation(self.n_items)
            self._order_epoch = self.epoch
        return self._order

    def reset(self) -> None:
        """Back to the first batch of epoch 0."""
        self.epoch, self.batch = 0, 0

    def state_dict(self) -> dict[str, Any]:
        """The position and what fixes the batches: epoch, batch, seed, shuffle, batch_size."""
        return {
            "epoch": self.epoch,
            "batch": self.batch,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "batch_size": self.batch_size,
        }

    def load_state_dict(
        self,
        state: Any,
        extra: Mapping[str, Any],
        *,
        differ: Mapping[str, Callable[[Any, Any], list[str]]] | None = None,
        hint: str = "",
    ) -> None:
        """Move to the position in ``state``, the output of :meth:`state_dict` merged with the
        loader's own ``extra`` keys. Every key but epoch and batch must match this sampler's (or
        the loader's) value: compared with ``!=``, or by ``differ[key](theirs, mine)``, which
        returns the differences in words. A DataError lists every difference (``hint`` follows
        "cannot resume"), and nothing changes unless all match."""
        owner = self.owner
        if not isinstance(state, dict):
            raise DataError(f"{owner} state must be a dict, got {type(state).__name__}")
        mine = {**self.state_dict(), **extra}
        missing = [k for k in mine if k not in state]
        unknown = sorted(set(state) - set(mine))
        if missing or unknown:
            raise DataError(f"{owner} state: missing keys {missing}, unknown keys {unknown}")
        differ = differ or {}
        differences = [
            f"{key} is {state[key]!r} in the state but {mine[key]!r} here"
            for key in mine
            if key not in ("epoch", "batch") and key not in differ and state[key] != mine[key]
        ]
        for key, compare in differ.items():
            differences += compare(state[key], mine[key])
        if differences:
            raise DataError(f"{owner}: cannot resume{hint}: " + "; ".join(differences))
        epoch, batch = state["epoch"], state["batch"]
        for name, value in (("epoch", epoch), ("batch", batch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise DataError(f"{owner} state: {name} must be an integer ≥ 0, got {value!r}")
        if batch >= self.batches_per_epoch:
            raise DataError(
                f"{owner} state: batch {batch} is not below batches_per_epoch "
                f"{self.batches_per_epoch}"
            )
        self.epoch, self.batch = epoch, batch


class SampledBatches:
    """The iterator interface of a loader whose position is an :class:`EpochSampler` in
    ``self.sampler``; the loader defines ``next_batch``."""

    sampler: EpochSampler

    @property
    def epoch(self) -> int:
        """The epoch of the next batch (0-based)."""
        return self.sampler.epoch

    @property
    def batch_index(self) -> int:
        """The index within its epoch of the next batch."""
        return self.sampler.batch

    @property
    def batches_per_epoch(self) -> int:
        """Global batches in one epoch (see :attr:`EpochSampler.batches_per_epoch`)."""
        return self.sampler.batches_per_epoch

    @property
    def local_batch_size(self) -> int:
        """Rows of this rank's x and y: B // world_size."""
        return self.sampler.local_batch_size

    @property
    def batch_size(self) -> int:
        """B, the global batch summed over all ranks."""
        return self.sampler.batch_size

    @property
    def rank(self) -> int:
        return self.sampler.rank

    @property
    def world_size(self) -> int:
        return self.sampler.world_size

    @property
    def seed(self) -> int:
        return self.sampler.seed

    @property
    def shuffle(self) -> bool:
        return self.sampler.shuffle

    @property
    def drop_last(self) -> bool:
        return self.sampler.drop_last

    def epochs_seen(self) -> float:
        """How many passes over the items the batches so far add up to: epoch + batch /
        batches_per_epoch (1.5 is halfway through the second epoch)."""
        return self.epoch + self.batch_index / self.batches_per_epoch

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        return self.next_batch()

    def reset(self) -> None:
        """Back to the first batch of epoch 0 (e.g. before each pass over the validation set)."""
        self.sampler.reset()
