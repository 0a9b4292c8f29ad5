"""Gradient synchronisation: how a step's micro-batches become the gradient its update reads,
and how the update reaches every rank. One object per strategy, one interface, so the step
(``tinygradlm.train.step``) has one path::

    loss_sum = sync.gradients(batches, forward_backward, loss_scale, before_reduce)
    grads = sync.grads                 # what the update reads: the gradient, or this rank's shard
    norm = sync.global_norm()          # over every rank's part
    norms = sync.group_norms(groups)   # the same, per layer group (the step's diagnostics)
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

``forward_backward(x, y, *, accumulate, loss_scale[, on_grads_final]) -> loss`` writes the
gradient of ``loss_scale · loss`` into ``optimizer.grads`` (added when ``accumulate``);
``loss_scale`` is the step's base scale (the fp16 loss scale over ``grad_accum_steps``), which
each strategy weighs.
``before_reduce()`` is called once before the gradients travel (a test hook point).

**Overlap** (``overlap_comm``, on by default; :class:`BucketReduce`): with the parameter layout
known (the optimizer trains the model's buffer), :class:`AllreduceSync` and :class:`ZeroSync`
pass ``on_grads_final`` to the last micro-step's ``forward_backward``; the model's backward calls
it with each layer's name as that layer's gradient becomes final (``ln_f``, ``h.{L-1}`` …
``h.0``, then ``wpe`` and ``wte``: the tied head adds to wte first, the embedding last), and each
bucket's non-blocking ``Iallreduce`` (ZeRO-1: ``Ireduce_scatter``) starts as soon as its layers
are final, while the backward goes on with the layers below. All are waited for (``Waitall``)
before the norm and the update; the earlier micro-steps accumulate locally, as without overlap.
Every rank starts the same buckets in the same order (the layout's, from the last layer down),
whatever its data. :class:`OrderedSumSync` does not overlap (see there).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..data.sft import IGNORE_INDEX
from ..optim import AdamW, grad_norm
from ..params import shard_ranges
from .comm import Dist

# with overlap, a thread tests the started buckets this often while the backward computes,
# when the gradient holds at least POLL_MIN_BYTES (below, its allreduce takes well under a
# millisecond and the thread's wake-ups cost more than they hide)
POLL_S = 0.0005
POLL_MIN_BYTES = 4 * 2**20
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

    def group_norms(self, groups: Sequence[tuple[str, int, int]]) -> np.ndarray:
        """Per group ``(name, lo, hi)`` of the whole buffer (:func:`layer_groups`), the L2 norm
        of the gradient's entries lo..hi over every rank's part: float64 (len(groups),)."""
        return range_norms(self.grads, groups)

    def update(
        self, lr: float, measure: Sequence[tuple[int, int]] | None = None
    ) -> np.ndarray | None:
        """The optimizer's step at ``lr``; with ``measure`` ([lo, hi) ranges of the whole
        buffer), each range's sum of squared updates over every rank's part (float64)."""
        return self.optimizer.step(lr, measure=measure)

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


def layer_groups(layout: Mapping[str, tuple[int, ...]]) -> list[tuple[str, int, int]]:
    """The flat buffer's layers in layout order, ``(name, lo, hi)``: consecutive parameters
    with the same layer name (``h.3`` for ``h.3.attn.c_attn.weight``, else the first part of
    the name: ``wte``, ``wpe``, ``ln_f``) form one."""
    groups: list[tuple[str, int, int]] = []
    offset = 0
    for name, shape in layout.items():
        parts = name.split(".")
        layer = ".".join(parts[:2]) if parts[0] == "h" else parts[0]
        size = math.prod(shape)
        if groups and groups[-1][0] == layer and groups[-1][2] == offset:
            groups[-1] = (layer, groups[-1][1], offset + size)
        else:
            groups.append((layer, offset, offset + size))
        offset += size
    return groups


def range_norms(flat: np.ndarray, groups: Sequence[tuple[str, int, int]]) -> np.ndarray:
    """The L2 norm of ``flat[lo:hi]`` for each ``(name, lo, hi)``, accumulated in float64:
    (len(groups),)."""
    return np.array([grad_norm(flat[lo:hi]) for _, lo, hi in groups], dtype=np.float64)


class BucketReduce:
    """The gradient's sum over the ranks in buckets started while the backward runs.

    The buckets are whole layers of ``layout`` (the model's parameter shapes, the flat buffer's
    order), taken from the end of the buffer down (the backward's order: ln_f, the last block,
    …, the embeddings), each grown by the next layers until it holds ``bucket_elems`` entries
    (0: one layer a bucket). :meth:`final` (the model's ``on_grads_final``) marks a layer's
    gradient final; the next buckets in order whose layers are all final start, non-blocking:
    an in-place ``Iallreduce`` of ``flat``'s slice or, given ``shard`` (ZeRO-1), an
    ``Ireduce_scatter`` of it into the shard. :meth:`finish` starts the buckets not started yet
    (a layer never reported, a rank with nothing to compute), in the same order, waits for all
    and divides by P. The plan and the order of the starts depend on the layout alone, so
    every rank makes the same calls; each entry is the same one sum over the ranks as with one
    ``Allreduce``.
    """

    def __init__(
        self,
        dist: Dist,
        layout: Mapping[str, tuple[int, ...]],
        flat: np.ndarray,
        bucket_elems: int = 0,
        shard: np.ndarray | None = None,
        poll_s: float = 0.0,
    ) -> None:
        self.dist, self.flat, self.shard = dist, flat, shard
        # a thread that tests the started requests every poll_s seconds while the backward
        # computes (MPI moves them on only inside its calls); 0, or an MPI without
        # MPI_THREAD_MULTIPLE: tested only at each layer boundary
        self.poll_s = poll_s if getattr(dist, "thread_multiple", False) else 0.0
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None
        self._poller: threading.Thread | None = None
        buckets: list[tuple[int, int, list[str]]] = []  # (lo, hi, layers), backward order
        for layer, lo, hi in reversed(layer_groups(layout)):
            if buckets and buckets[-1][1] - buckets[-1][0] < bucket_elems:
                b_lo, b_hi, layers = buckets[-1]
                assert hi == b_lo
                buckets[-1] = (lo, b_hi, [*layers, layer])
            else:
                buckets.append((lo, hi, [layer]))
        if buckets and (buckets[-1][0] != 0 or buckets[0][1] != flat.size):
            raise ValueError(f"the layout tiles {buckets[0][1]} entries, the buffer {flat.size}")
        self.buckets = [(lo, hi) for lo, hi, _ in buckets]
        self.bucket_of = {layer: b for b, (_, _, layers) in enumerate(buckets) for layer in layers}
        self.layers = [len(layers) for _, _, layers in buckets]
        self.begin()

    def begin(self) -> None:
        """Before a backward whose layers will be reported: nothing final, nothing started."""
        self.waiting = list(self.layers)  # per bucket, its layers not final yet
        self.started = 0  # buckets started, in order
        self.requests: list[Any] = []

    def final(self, layer: str) -> None:
        """``layer``'s gradient is final: start the buckets that are ready, in order."""
        self.waiting[self.bucket_of[layer]] -= 1
        while self.started < len(self.buckets) and self.waiting[self.started] == 0:
            self._start()
        if self._poller is None:
            self.dist.test_all(self.requests)  # MPI progresses a started operation in its calls

    def finish(self) -> None:
        """Start the rest, wait for every bucket, and divide by P: the mean over the ranks."""
        while self.started < len(self.buckets):
            self._start()
        if self._poller is not None:
            assert self._stop is not None
            self._stop.set()
            self._poller.join()
            self._poller = None
        out = self.flat if self.shard is None else self.shard
        name = "allreduce_mean" if self.shard is None else "reduce_scatter"
        self.dist.wait_all(self.requests, name)
        self.requests = []
        out *= out.dtype.type(1.0 / self.dist.world_size)

    def _start(self) -> None:
        lo, hi = self.buckets[self.started]
        if self.shard is None:
            request = self.dist.iallreduce_sum_(self.flat[lo:hi])
        else:
            request = self.dist.ireduce_scatter_sum_(self.flat, lo, hi, self.shard)
        if request is not None:
            with self._lock:
                self.requests.append(request)
            if self.poll_s and self._poller is None:
                self._stop = threading.Event()
                self._poller = threading.Thread(target=self._poll, args=(self._stop,), daemon=True)
                self._poller.start()
        self.started += 1

    def _poll(self, stop: threading.Event) -> None:
        while not stop.wait(self.poll_s):  # sleeps without the GIL
            with self._lock:
                self.dist.test_all(self.requests)


class AllreduceSync(LocalSync):
    """Several ranks: the mean gradient by bucketed ``Allreduce``, started during the last
    micro-step's backward (``overlap``, given the parameter ``layout``) or after it."""

    def __init__(
        self,
        optimizer: AdamW,
        dist: Dist,
        timer: Any,
        bucket_size_mb: float,
        layout: Mapping[str, tuple[int, ...]] | None = None,
        overlap: bool = True,
    ) -> None:
        super().__init__(optimizer, dist, timer)
        self.bucket_size_mb = bucket_size_mb
        self.layout = layout
        self.overlap = overlap and layout is not None
        self._buckets: BucketReduce | None = None

    def bucket_elems(self) -> int:
        """``bucket_size_mb`` in entries of the gradient (0: no bound)."""
        mb, itemsize = self.bucket_size_mb, self.optimizer.grads.itemsize
        return max(int(mb * 2**20) // itemsize, 1) if mb else 0

    def poll_s(self) -> float:
        """How often the overlap's thread tests the buckets in flight (0: no thread)."""
        return POLL_S if self.optimizer.grads.nbytes >= POLL_MIN_BYTES else 0.0

    def bucket_reduce(self) -> BucketReduce:
        """The overlapped reduction of the optimizer's gradient (made once)."""
        if self._buckets is None:
            assert self.layout is not None
            grads = self.optimizer.grads
            self._buckets = BucketReduce(
                self.dist, self.layout, grads, self.bucket_elems(), poll_s=self.poll_s()
            )
        return self._buckets

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
        counts = [int((y != IGNORE_INDEX).sum()) for _, y in batches]
        last = max((i for i, n in enumerate(counts) if n), default=-1)  # the last with targets
        buckets = self.bucket_reduce() if self.overlap else None
        written = False
        for i, ((x, y), total, n) in enumerate(zip(batches, totals, counts, strict=True)):
            if n == 0:
                continue  # no targets in this rank's slice: it adds nothing
            weight = P * n / total
            hook = {}
            if buckets is not None and i == last:  # the buckets travel during this backward
                before_reduce()
                buckets.begin()
                hook = {"on_grads_final": buckets.final}
            with self.timer("fwd_bwd"):
                loss = forward_backward(
                    x, y, accumulate=written, loss_scale=loss_scale * weight, **hook
                )
            local[0] += loss * weight
            written = True
        if not written:
            grads[...] = 0
            if buckets is not None:
                before_reduce()
                buckets.begin()
        if buckets is None:
            before_reduce()
        with self.timer("comm"):  # with overlap: the wait for what the backward did not hide
            if buckets is not None:
                buckets.finish()
            else:
                self.reduce(grads)
            self.dist.allreduce_sum_(local)
        return float(local[0]) / P

    def reduce(self, grads: np.ndarray) -> None:
        """Without overlap: after the backward, fixed-size slices from the buffer's start."""
        self.dist.allreduce_mean_(grads, self.bucket_elems())

    def comm_bytes(self) -> int:
        """A ring allreduce of the buffer S: each rank sends 2(P − 1)/P · S (and receives as
        many); a reduce-scatter and an allgather move the same."""
        P = self.dist.world_size
        return int(2 * (P - 1) / P * self.optimizer.grads.nbytes)


class ZeroSync(AllreduceSync):
    """ZeRO-1 (fp32): gradients reduce-scattered, AdamW on this rank's shard, then allgathered."""

    def __init__(
        self,
        optimizer: AdamW,
        dist: Dist,
        timer: Any,
        bucket_size_mb: float = 0,
        layout: Mapping[str, tuple[int, ...]] | None = None,
        overlap: bool = True,
    ) -> None:
        super().__init__(optimizer, dist, timer, bucket_size_mb, layout, overlap)
        self.shard: AdamW | None = None  # AdamW on this rank's shard, once started
        self.lo, self.hi = dist.shard_range(optimizer.params.size)

    def bucket_reduce(self) -> BucketReduce:
        """Each bucket reduce-scattered into the shard (``Ireduce_scatter``): the entries of
        the bucket in this rank's shard arrive there. Made anew when the shard is rebuilt."""
        assert self.layout is not None and self.shard is not None
        if self._buckets is None or self._buckets.shard is not self.shard.grads:
            self._buckets = BucketReduce(
                self.dist,
                self.layout,
                self.optimizer.grads,
                self.bucket_elems(),
                self.shard.grads,
                poll_s=self.poll_s(),
            )
        return self._buckets

    @property
    def grads(self) -> np.ndarray:
        assert self.shard is not None, "ZeroSync.start() comes before the first step"
        return self.shard.grads

    def local_part(self, full: np.ndarray) -> np.ndarray:
        return full[self.lo : self.hi]

    def reduce(self, grads: np.ndarray) -> None:
        """Without overlap: one ``Reduce_scatter`` of the buffer (``bucket_size_mb`` unused)."""
        self.dist.reduce_scatter_mean_(grads, self.grads)  # the mean of this rank's shard only

    def global_norm(self) -> float:
        """The shards' squared norms summed over the ranks: the norm of the whole gradient."""
        squares = np.array([grad_norm(self.grads) ** 2], dtype=np.float64)
        with self.timer("comm"):
            self.dist.allreduce_sum_(squares)
        return math.sqrt(float(squares[0]))

    def in_shard(self, lo: int, hi: int) -> tuple[int, int]:
        """The part of the whole buffer's [lo, hi) in this rank's shard, counted from the
        shard's start (an empty range when they do not meet)."""
        start = min(max(lo, self.lo), self.hi)
        return start - self.lo, max(min(hi, self.hi), start) - self.lo

    def group_norms(self, groups: Sequence[tuple[str, int, int]]) -> np.ndarray:
        """Each group's squared norm over the part of it in this rank's shard, summed over the
        ranks (one Allreduce of len(groups) float64s)."""
        local = [(name, *self.in_shard(lo, hi)) for name, lo, hi in groups]
        squares = range_norms(self.grads, local) ** 2
        with self.timer("comm"):
            self.dist.allreduce_sum_(squares)
        return np.sqrt(squares)

    def update(
        self, lr: float, measure: Sequence[tuple[int, int]] | None = None
    ) -> np.ndarray | None:
        shard, opt = self.shard, self.optimizer
        assert shard is not None
        local = None if measure is None else [self.in_shard(lo, hi) for lo, hi in measure]
        squares = shard.step(lr, measure=local)
        opt.step_count, opt.lr = shard.step_count, shard.lr
        with self.timer("comm"):
            if squares is not None:
                self.dist.allreduce_sum_(squares)
            self.dist.allgather_shards_(opt.params)
        return squares

    def start(self) -> None:
        self._build_shard()

    def shard_state(self) -> None:
        if self.shard is not None:  # a rollback under ZeRO-1: every rank reads the checkpoint
            self._build_shard()

    def _build_shard(self) -> None:
        """(Re)build this rank's AdamW on its shard from the full optimizer's moments and step,
        then let the full moments go (they are filled again on rank 0 only, to save)."""
        opt, lo, hi = self.optimizer, self.lo, self.hi
        ranges = opt.decay_ranges
        shard = AdamW(
            opt.params[lo:hi],
            np.zeros(hi - lo, dtype=opt.grads.dtype),
            lr=opt.lr,
            betas=(opt.beta1, opt.beta2),
            eps=opt.eps,
            weight_decay=opt.weight_decay,
            decay_ranges=None if ranges is None else shard_ranges(ranges, lo, hi),
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
    so the step is bitwise the same for any number of ranks.

    It does not overlap the backward: the sum's order is the global batch's, so rank r can add
    nothing before rank r − 1's running sum has arrived (a float32 sum of its own sequences
    first would change the bits), and each micro-step's chain starts once all of its
    sequences' gradients are kept."""

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


def make_sync(
    config: Any,
    optimizer: AdamW,
    dist: Dist,
    timer: Any,
    layout: Mapping[str, tuple[int, ...]] | None = None,
) -> LocalSync:
    """The strategy a run's settings and ranks ask for. ``layout``: the parameter shapes of the
    buffer ``optimizer.grads`` (the model's, when the optimizer trains it), which the overlap
    of ``overlap_comm`` buckets by; None: no overlap (LoRA adapters train their own buffer)."""
    if config.deterministic_reduce:
        return OrderedSumSync(optimizer, dist, timer, config.grad_accum_steps)
    if not dist.enabled:
        return LocalSync(optimizer, dist, timer)
    if config.zero_stage == 1:
        return ZeroSync(optimizer, dist, timer, config.bucket_size_mb, layout, config.overlap_comm)
    return AllreduceSync(optimizer, dist, timer, config.bucket_size_mb, layout, config.overlap_comm)
