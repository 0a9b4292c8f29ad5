"""Gradient synchronisation: how a step's micro-batches become the gradient its update reads,
and how the update reaches every rank. One object per strategy, one interface, so the step
(``tinygradlm.train.step``) has one path::

    loss_sum = sync.gradients(batches, forward_backward, loss_scale, before_reduce)
    grads = sync.grads                 # what the update reads: the gradient, or this rank's shard
    norm = sync.global_norm()          # over every rank's part
    sync.update(lr)                    # AdamW, and the new parameters on every rank

- :class:`LocalSync`: one process; the micro-steps accumulate into the buffer, nothing travels.
- :class:`AllreduceSync`: each rank weighs its slice of a micro-batch by its share of the
  targets (so the loss is the mean over all ranks' targets, as one process computes it); after
  the last micro-step the gradients are averaged by ``Allreduce`` in fixed-order buckets of
  ``bucket_size_mb``. P ranks match one process within float32 rounding.
- :class:`OrderedSumSync` (``deterministic_reduce``): each sequence's gradient on its own, summed
  in float32 in the global batch's order through the ranks (``Dist.ordered_sum_``, whose module
  docstring says why this is bitwise the same for any P).
- :class:`ZeroSync` (``zero_stage = 1``, ZeRO-1): the gradients are reduce-scattered instead, each
  rank runs AdamW on its shard of the buffer (its moments only), the shards are allgathered. The
  moments are gathered to rank 0 before a checkpoint (:meth:`gather_state`), whose format does
  not change, and sharded again after a restore (:meth:`shard_state`).

``forward_backward(x, y, *, accumulate, loss_scale) -> loss`` writes the gradient of
``loss_scale · loss`` into ``optimizer.grads`` (added when ``accumulate``); ``loss_scale`` is the
step's base scale (the fp16 loss scale over ``grad_accum_steps``), which each strategy weighs.
``before_reduce()`` is called once before the gradients travel (a test hook point).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..data.sft import IGNORE_INDEX
from ..optim import AdamW, grad_norm
from .comm import Dist

Batch = tuple[np.ndarray, np.ndarray]
ForwardBackward = Callable[..., float]


class LocalSync:
    """One process: the micro-steps' gradients accumulate in the optimizer's buffer."""

    def __init__(self, optimizer: AdamW, dist: Dist, timer: Any) -> None:
        self.optimizer, self.dist, self.timer = optimizer, dist, timer

    @property
    def grads(self) -> np.ndarray:
        """The gradient the update reads (this rank's part of it)."""
        return self.optimizer.grads

    def local_part(self, full: np.ndarray) -> np.ndarray:
        """The entries of a whole-buffer array (a gradient mask) that :attr:`grads` holds."""
        return full

    def gradients(
        self,
        batches: Sequence[Batch],
        forward_backward: ForwardBackward,
        loss_scale: float,
        before_reduce: Callable[[], None],
    ) -> float:
        """The step's gradient into :attr:`grads`; returns the sum of the micro-steps' losses."""
        loss_sum = 0.0
        for micro, (x, y) in enumerate(batches):
            with self.timer("fwd_bwd"):
                loss_sum += forward_backward(x, y, accumulate=micro > 0, loss_scale=loss_scale)
        before_reduce()
        return loss_sum

    def global_norm(self) -> float:
        return grad_norm(self.grads)

    def update(self, lr: float) -> None:
        self.optimizer.step(lr)

    def comm_bytes(self) -> int:
        """The bytes of gradient traffic each rank sends per step (an estimate; 0 alone)."""
        return 0

    def start(self) -> None:
        """Once the ranks hold rank 0's parameters and optimizer state."""

    def shard_state(self) -> None:
        """After the optimizer state was restored from a checkpoint (a rollback)."""

    def gather_state(self) -> None:
        """Before rank 0 writes the optimizer state to a checkpoint (every rank calls it)."""


def global_target_counts(batches: Sequence[Batch], dist: Dist, timer: Any) -> np.ndarray:
    """Per micro-batch, the target tokens of all ranks' slices together (one Allreduce)."""
    counts = np.array([(y != IGNORE_INDEX).sum() for _, y in batches], dtype=np.float64)
    with timer("comm"):
        return dist.allreduce_sum_(counts.copy())


class AllreduceSync(LocalSync):
    """Several ranks: the mean gradient by bucketed ``Allreduce`` after the last micro-step."""

    def __init__(self, optimizer: AdamW, dist: Dist, timer: Any, bucket_size_mb: float) -> None:
        super().__init__(optimizer, dist, timer)
        self.bucket_size_mb = bucket_size_mb

    def gradients(
        self,
        batches: Sequence[Batch],
        forward_backward: ForwardBackward,
        loss_scale: float,
        before_reduce: Callable[[], None],
    ) -> float:
        """A rank weighs its slice's mean loss by its share of the targets (weight 1.0 exactly
        when every slice has the same targets), so the mean over the ranks is one process's
        loss; returns the sum of the micro-steps' losses, averaged over the ranks."""
        P, grads = self.dist.world_size, self.optimizer.grads
        totals = global_target_counts(batches, self.dist, self.timer)
        local = np.zeros(1, dtype=np.float64)
        written = False
        for (x, y), total in zip(batches, totals, strict=True):
            n = int((y != IGNORE_INDEX).sum())
            if n == 0:
                continue  # no targets in this rank's slice: it adds nothing
            weight = P * n / total
            with self.timer("fwd_bwd"):
                loss = forward_backward(
                    x, y, accumulate=written, loss_scale=loss_scale * weight
                )
            local[0] += loss * weight
            written = True
        if not written:
            grads[...] = 0
        before_reduce()
        with self.timer("comm"):
            self.reduce(grads)
            self.dist.allreduce_sum_(local)
        return float(local[0]) / P

    def reduce(self, grads: np.ndarray) -> None:
        mb = self.bucket_size_mb
        elems = max(int(mb * 2**20) // grads.itemsize, 1) if mb else 0
        self.dist.allreduce_mean_(grads, elems)

    def comm_bytes(self) -> int:
        """A ring allreduce of the buffer S: each rank sends 2(P − 1)/P · S (and receives as
        many); a reduce-scatter and an allgather move the same."""
        P = self.dist.world_size
        return int(2 * (P - 1) / P * self.optimizer.grads.nbytes)


class ZeroSync(AllreduceSync):
    """ZeRO-1 (fp32): gradients reduce-scattered, AdamW on this rank's shard, then allgathered."""

    def __init__(self, optimizer: AdamW, dist: Dist, timer: Any) -> None:
        super().__init__(optimizer, dist, timer, bucket_size_mb=0)
        self.shard: AdamW | None = None  # AdamW on this rank's shard, once started
        self.lo, self.hi = dist.shard_range(optimizer.params.size)

    @property
    def grads(self) -> np.ndarray:
        assert self.shard is not None, "ZeroSync.start() comes before the first step"
        return self.shard.grads

    def local_part(self, full: np.ndarray) -> np.ndarray:
        return full[self.lo : self.hi]

    def reduce(self, grads: np.ndarray) -> None:
        self.dist.reduce_scatter_mean_(grads, self.grads)  # the mean of this rank's shard only

    def global_norm(self) -> float:
        """The shards' squared norms summed over the ranks: the norm of the whole gradient."""
        squares = np.array([grad_norm(self.grads) ** 2], dtype=np.float64)
        with self.timer("comm"):
            self.dist.allreduce_sum_(squares)
        return math.sqrt(float(squares[0]))

    def update(self, lr: float) -> None:
        shard, opt = self.shard, self.optimizer
        assert shard is not None
        shard.step(lr)
        opt.step_count, opt.lr = shard.step_count, shard.lr
        with self.timer("comm"):
            self.dist.allgather_shards_(opt.params)

    def start(self) -> None:
        self._build_shard()

    def shard_state(self) -> None:
        if self.shard is not None:  # a rollback under ZeRO-1: every rank reads the checkpoint
            self._build_shard()

    def _build_shard(self) -> None:
        """(Re)build this rank's AdamW on its shard from the full optimizer's moments and step,
        then let the full moments go (they are filled again on rank 0 only, to save)."""
        opt, lo, hi = self.optimizer, self.lo, self.hi
        mask = opt.decay_mask
        shard = AdamW(
            opt.params[lo:hi],
            np.zeros(hi - lo, dtype=opt.grads.dtype),
            lr=opt.lr,
            betas=(opt.beta1, opt.beta2),
            eps=opt.eps,
            weight_decay=opt.weight_decay,
            decay_mask=None if mask is None else np.ascontiguousarray(mask[lo:hi]),
        )
        shard.m[...] = opt.m[lo:hi]
        shard.v[...] = opt.v[lo:hi]
        shard.step_count = opt.step_count
        self.shard = shard
        opt.m, opt.v = np.zeros_like(opt.m), np.zeros_like(opt.v)  # untouched pages: no memory

    def gather_state(self) -> None:
        """The moments' shards into rank 0's full buffers: the checkpoint is as without ZeRO."""
        if self.shard is None:
            return
        self.dist.gather_shards(self.shard.m, self.optimizer.m)
        self.dist.gather_shards(self.shard.v, self.optimizer.v)


class OrderedSumSync(LocalSync):
    """``deterministic_reduce``: each sequence's gradient on its own (weighed by its share of
    the micro-batch's targets), summed in float32 in the global batch's order through the ranks,
    so the step is bitwise the same for any number of ranks."""

    def __init__(self, optimizer: AdamW, dist: Dist, timer: Any, grad_accum_steps: int) -> None:
        super().__init__(optimizer, dist, timer)
        self.grad_accum_steps = grad_accum_steps

    def gradients(
        self,
        batches: Sequence[Batch],
        forward_backward: ForwardBackward,
        loss_scale: float,
        before_reduce: Callable[[], None],
    ) -> float:
        grads = self.optimizer.grads
        acc = np.zeros_like(grads)
        totals = global_target_counts(batches, self.dist, self.timer)
        before_reduce()
        loss_sum = 0.0
        for (x, y), total in zip(batches, totals, strict=True):
            rows = np.zeros((x.shape[0], grads.size), dtype=grads.dtype)  # (B, N)
            weighted = np.zeros(x.shape[0], dtype=np.float64)
            with self.timer("fwd_bwd"):
                for i in range(x.shape[0]):
                    n = int((y[i] != IGNORE_INDEX).sum())
                    if n == 0:
                        continue
                    loss = forward_backward(
                        x[i : i + 1],
                        y[i : i + 1],
                        accumulate=False,
                        loss_scale=loss_scale * (n / total),
                    )
                    rows[i] = grads
                    weighted[i] = loss * (n / total)
            with self.timer("comm"):
                self.dist.ordered_sum_(acc, rows)
                all_weighted = self.dist.allgather(weighted)
            for w in all_weighted:  # in the global order: the same sum for any P
                loss_sum += float(w)
        grads[...] = acc
        return loss_sum

    def comm_bytes(self) -> int:
        """The chain's traffic per micro-step, S received and S sent plus the final broadcast's
        S, as an estimate."""
        return 3 * self.optimizer.grads.nbytes * self.grad_accum_steps


def make_sync(config: Any, optimizer: AdamW, dist: Dist, timer: Any) -> LocalSync:
    """The strategy a run's settings and ranks ask for."""
    if config.deterministic_reduce:
        return OrderedSumSync(optimizer, dist, timer, config.grad_accum_steps)
    if not dist.enabled:
        return LocalSync(optimizer, dist, timer)
    if config.zero_stage == 1:
        return ZeroSync(optimizer, dist, timer)
    return AllreduceSync(optimizer, dist, timer, config.bucket_size_mb)
