"""Cross-entropy over a (padded) vocabulary: fused softmax + loss, and its gradient (Numba).

The forward does one row of logits at a time, the row staying in L1/L2 cache: its max over the
real vocabulary [0, V), exp(logit − max) into probs, their sum (in float64: up to 50,257 positive
terms), one pass normalizing, and the row's loss −log p[target] = log Σ − (logit[target] − max)
from the same numbers. The padding columns [V, Vp) are never read, only zeroed in probs. ref
computes the same with about eight NumPy passes over the whole (N, Vp) array (max, subtract, exp,
sum, divide, log, gather, mask). The backward is one pass writing (probs − onehot)·dloss/n_valid.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit, prange

from ..ref.crossentropy import check_crossentropy_backward, check_crossentropy_forward
from ..ref.head_loss import head_loss_chunks
from ._vecmath import exp_shifted_and_sum, row_max


@njit(cache=True, parallel=True)
def _crossentropy_forward_rows(logits, targets, valid, vocab_size, probs, losses):
    """logits, probs (N, Vp); targets (N,) int64, valid (N,) bool; losses (N,) float64 written
    (0 where not valid)."""
    N, Vp = logits.shape
    zero, one = logits.dtype.type(0.0), logits.dtype.type(1.0)
    for i in prange(N):
        p = probs[i]
        if not valid[i]:
            p[:] = zero
            losses[i] = 0.0
            continue
        row = logits[i]
        m = row_max(row, vocab_size)
        total = exp_shifted_and_sum(row, vocab_size, m, one, p)
        inv = one / logits.dtype.type(total)
        for j in range(vocab_size):
            p[j] *= inv
        for j in range(vocab_size, Vp):
            p[j] = zero  # padding: no probability
        # −log p[target] = −(logit[target] − max − log Σ exp(logit − max))
        losses[i] = math.log(total) - (float(row[targets[i]]) - float(m))


@njit(cache=True, parallel=True)
def _crossentropy_backward_rows(probs, targets, valid, scale, dlogits):
    """dlogits (N, Vp) = (probs − onehot(targets))·scale on valid rows, 0 elsewhere (probs is
    0 in the padding, so the padding gets 0 too)."""
    N, Vp = probs.shape
    zero = probs.dtype.type(0.0)
    for i in prange(N):
        d = dlogits[i]
        if not valid[i]:
            d[:] = zero  # ignored position: no gradient
            continue
        p = probs[i]
        # same as ref.crossentropy_backward: dlogits = (probs − onehot)·dloss/n_valid
        for j in range(Vp):
            d[j] = p[j] * scale
        d[targets[i]] -= scale


def crossentropy_forward(
    logits: np.ndarray,
    targets: np.ndarray,
    vocab_size: int | None = None,
    ignore_index: int = -100,
) -> tuple[np.ndarray, Any]:
    """Mean over valid positions of −log softmax(logits[..., :V])[target]; a 0-d array.

    logits (..., Vp), targets (...) integer, V = vocab_size (None: Vp); positions whose target is
    ``ignore_index`` are left out of the mean (NaN when none is left). cache (probs,
    safe_targets, valid, n_valid) as ref's, except that probs (..., Vp) is zero in ignored rows as
    well as in the padding (an ignored row's softmax is never needed, so it is not computed).

    Pure Numba, parallel over rows; one fused kernel (module docstring).
    """
    V, valid = check_crossentropy_forward(logits, targets, vocab_size, ignore_index)
    dtype, Vp = logits.dtype, logits.shape[-1]
    n_valid = int(np.count_nonzero(valid))
    safe_targets = np.where(valid, targets, 0).astype(np.int64)  # (B, T) as ref's cache

    probs = np.empty(logits.shape, dtype=dtype)  # (B, T, Vp)
    losses = np.empty(valid.size)  # (B·T,) float64
    _crossentropy_forward_rows(
        np.ascontiguousarray(logits).reshape(-1, Vp),
        safe_targets.reshape(-1),
        valid.reshape(-1),
        V,
        probs.reshape(-1, Vp),
        losses,
    )
    loss = losses.sum() / n_valid if n_valid else math.nan  # float64 sum, rounded once
    return np.asarray(loss, dtype=dtype), (probs, safe_targets, valid, n_valid)


def crossentropy_backward(dloss: Any, cache: Any) -> tuple[np.ndarray]:
    """(dlogits,) of :func:`crossentropy_forward`: (probs − onehot)·dloss/n_valid at valid
    positions, 0 at ignored positions and in the padding. One pass (Numba, parallel over rows)."""
    probs, targets, valid, n_valid = cache
    check_crossentropy_backward(dloss)
    Vp = probs.shape[-1]
    # max: when every position is ignored the gradient is 0, not NaN (as ref)
    scale = probs.dtype.type(float(dloss) / max(n_valid, 1))
    dlogits = np.empty(probs.shape, dtype=probs.dtype)
    _crossentropy_backward_rows(
        probs.reshape(-1, Vp),
        targets.reshape(-1),
        valid.reshape(-1),
        scale,
        dlogits.reshape(-1, Vp),
    )
    return (dlogits,)


@njit(cache=True, parallel=True)
def _crossentropy_rows_in_place_kernel(logits, targets, valid, vocab_size, scale, losses):
    """logits (n, Vp) replaced by dlogits = (softmax − onehot)·scale (0 in ignored rows and in
    the padding); losses (n,) float64 written (0 where not valid). The forward's and the
    backward's row loops above, fused: the same arithmetic, in place."""
    n, Vp = logits.shape
    zero, one = logits.dtype.type(0.0), logits.dtype.type(1.0)
    for i in prange(n):
        row = logits[i]
        if not valid[i]:
            row[:] = zero
            losses[i] = 0.0
            continue
        m = row_max(row, vocab_size)
        shifted_target = float(row[targets[i]]) - float(m)  # read before it is overwritten
        total = exp_shifted_and_sum(row, vocab_size, m, one, row)  # exp(logit − max), in place
        inv = one / logits.dtype.type(total)
        for j in range(vocab_size):
            row[j] = (row[j] * inv) * scale  # probability, then its gradient
        for j in range(vocab_size, Vp):
            row[j] = zero  # padding: no probability, no gradient
        row[targets[i]] -= scale
        losses[i] = math.log(total) - shifted_target


def crossentropy_rows_in_place(
    logits: np.ndarray, targets: np.ndarray, valid: np.ndarray, V: int, scale: Any
) -> np.ndarray:
    """ref.head_loss.crossentropy_rows_in_place in one Numba pass per row (parallel over
    rows): logits (n, Vp) replaced by dlogits; returns the rows' losses (n,) in float64."""
    losses = np.empty(logits.shape[0])
    _crossentropy_rows_in_place_kernel(
        logits, targets.astype(np.int64, copy=False), valid, V, logits.dtype.type(scale), losses
    )
    return losses


def head_crossentropy_forward_backward(
    x: np.ndarray,
    wte: np.ndarray,
    targets: np.ndarray,
    vocab_size: int | None = None,
    ignore_index: int = -100,
    dloss: Any = 1.0,
    *,
    dwte: np.ndarray | None = None,
    dx: np.ndarray | None = None,
    chunk_rows: int | None = None,
    rounding: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(loss, dx, dwte) of ref.head_crossentropy_forward_backward: the same row chunks and
    BLAS products, each chunk's softmax, loss and dlogits in one Numba pass per row (the loss
    summed in float64, as :func:`crossentropy_forward`)."""
    return head_loss_chunks(
        x, wte, targets, vocab_size, ignore_index, dloss, dwte, dx, chunk_rows, rounding,
        crossentropy_rows_in_place,
    )  # fmt: skip
