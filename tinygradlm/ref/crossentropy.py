"""Fused softmax and cross-entropy: the mean negative log-likelihood of the targets.

    probs = softmax(logits[..., :V])          the padded columns [V, Vp) take no part
    loss  = mean over valid positions of -log probs[target]

Derivation: docs/derivations.md, "Softmax and cross-entropy".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import checks

CrossEntropyCache = tuple[np.ndarray, np.ndarray, np.ndarray, int]


def crossentropy_forward(
    logits: np.ndarray,
    targets: np.ndarray,
    vocab_size: int | None = None,
    ignore_index: int = -100,
) -> tuple[np.ndarray, CrossEntropyCache]:
    """Mean cross-entropy of the targets under the softmax of the logits.

    Shapes: logits (B, T, Vp) (any leading axes: (..., Vp)), targets (B, T) integer -> loss, a
    0-d array of the logits' dtype. ``vocab_size`` V <= Vp (None: V = Vp): the columns
    logits[..., V:] are padding (GPT-2's vocabulary padded to a round Vp) and get exactly zero
    probability and zero gradient, whatever they hold. Positions whose target is
    ``ignore_index`` add nothing; the mean is over the others, and is NaN when there are none
    (0/0, as in PyTorch). A target outside [0, V) that is not ``ignore_index`` raises
    IndexError. The cache is (probs, targets, valid, n_valid): probs (B, T, Vp) with zeros in
    the padding, targets with ignored positions replaced by 0, the valid mask (B, T) and count.

    Derivation: with z the logits of one position, −log softmax(z)_y = log Σ_j exp(z_j) − z_y,
    whose derivative by z_i is p_i − [i = y]. The loss is the mean over n_valid positions, so
    dlogits = (probs − onehot(target))·dloss/n_valid at valid positions, 0 at ignored ones, and
    0 in the padding (those columns never entered the loss).
    """
    V, valid = check_crossentropy_forward(logits, targets, vocab_size, ignore_index)
    dtype = logits.dtype
    n_valid = int(valid.sum())

    # softmax over the real vocabulary only: the padded columns never enter the maximum, the
    # sum or the probabilities, so nothing they hold (huge values included) can leak in
    z = logits[..., :V]  # (B, T, V) a view
    zmax = z.max(axis=-1, keepdims=True)  # (B, T, 1) subtracted so that exp(.) <= 1
    probs = np.zeros(logits.shape, dtype=dtype)  # (B, T, Vp) the padding stays exactly 0
    shifted = probs[..., :V]  # (B, T, V) a view: z - zmax, then exp, then probs, in place
    with np.errstate(invalid="ignore"):  # a row of -inf at an ignored position: NaN, unused
        np.subtract(z, zmax, out=shifted)
    safe_targets = np.where(valid, targets, 0)  # (B, T) ignored positions read column 0 ...
    shifted_target = np.take_along_axis(shifted, safe_targets[..., None], axis=-1)[..., 0]
    np.exp(shifted, out=shifted)
    total = shifted.sum(axis=-1, keepdims=True)  # (B, T, 1) >= 1: the max contributes exp(0)
    shifted /= total  # now probs[..., :V]

    # -log p[target] = log Σ_j exp(z_j - zmax) - (z[target] - zmax): from the log-sum-exp, not
    # log(probs), which is log(0) = -inf for a target whose probability underflows; and with
    # zmax subtracted before anything else, where zmax + log(total) - z[target] would cancel
    # catastrophically in float32 (logits 1e4 and 1e4 - 1 differ in the 4th digit)
    losses = np.log(total[..., 0]) - shifted_target  # (B, T)
    total_loss = np.where(valid, losses, 0).sum()  # ... and are left out here
    with np.errstate(invalid="ignore", divide="ignore"):  # no valid target: 0/0 = NaN
        loss = np.array(total_loss / dtype.type(n_valid), dtype=dtype)  # 0-d
    return loss, (probs, safe_targets, valid, n_valid)


def crossentropy_backward(dloss: Any, cache: CrossEntropyCache) -> tuple[np.ndarray]:
    """Gradient dlogits (B, T, Vp), a new array, from dloss (a 0-d array or a Python float).

    0 at ignored positions and in the padded columns. See :func:`crossentropy_forward`.
    """
    probs, targets, valid, n_valid = cache
    check_crossentropy_backward(dloss)
    dtype = probs.dtype
    Vp = probs.shape[-1]

    # in the forward pass this was: loss = (1/n_valid) Σ_valid (log Σ_j exp(z_j) - z[target]),
    # so now, at each valid position: dz_i = (p_i - [i == target]) * dloss / n_valid
    dlogits = np.where(valid[..., None], probs, dtype.type(0))  # (B, T, Vp) ignored rows: 0
    rows = np.flatnonzero(valid)  # the valid positions, in the flattened (B·T) order
    dlogits.reshape(-1, Vp)[rows, targets.reshape(-1)[rows]] -= 1  # a view: dlogits is new
    dlogits *= dtype.type(dloss) / dtype.type(max(n_valid, 1))  # max: all ignored gives 0, not NaN
    return (dlogits,)


def check_crossentropy_forward(
    logits: np.ndarray, targets: np.ndarray, vocab_size: int | None, ignore_index: int
) -> tuple[int, np.ndarray]:
    """The argument checks of :func:`crossentropy_forward` (and of its Numba twin in
    tinygradlm.kernels); returns V and the mask of valid positions (B, T)."""
    fn = "crossentropy_forward"
    checks.float_array(fn, "logits", logits)
    checks.int_array(fn, "targets", targets)
    if logits.ndim == 0:
        raise ValueError(f"{fn}: logits must have a vocabulary axis (..., Vp), got a 0-d array")
    Vp = logits.shape[-1]
    if targets.shape != logits.shape[:-1]:
        raise ValueError(
            f"{fn}: targets have shape {targets.shape} but logits {logits.shape} need targets "
            f"of shape {logits.shape[:-1]}"
        )
    V = Vp if vocab_size is None else int(vocab_size)
    if not 1 <= V <= Vp:
        raise ValueError(f"{fn}: vocab_size={vocab_size} must be in [1, Vp={Vp}]")
    valid = targets != ignore_index  # (B, T)
    # NumPy would read a negative target from the end of the row, and a jitted loop does no
    # bounds checking at all: a target outside [0, V) must stop here
    out_of_range = valid & ((targets < 0) | (targets >= V))
    if out_of_range.any():
        position = tuple(int(i) for i in np.argwhere(out_of_range)[0])
        raise IndexError(
            f"{fn}: target {int(targets[position])} at position {position} is outside "
            f"[0, {V}) and is not ignore_index={ignore_index}"
        )
    return V, valid


def check_crossentropy_backward(dloss: Any) -> None:
    """The argument check of :func:`crossentropy_backward` (and of its Numba twin)."""
    if np.ndim(dloss) != 0:
        raise ValueError(
            f"crossentropy_backward: dloss must be a scalar (the loss is one number), got "
            f"shape {np.shape(dloss)}"
        )
