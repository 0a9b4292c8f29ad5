"""AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay, on flat buffers.

    m = beta1 m + (1 - beta1) g              v = beta2 v + (1 - beta2) g²
    mhat = m / (1 - beta1^step)              vhat = v / (1 - beta2^step)
    params -= lr * (mhat / (sqrt(vhat) + eps) + weight_decay * params)

The same update as torch.optim.AdamW. Derivation: docs/derivations.md, "AdamW".
"""

from __future__ import annotations

import numpy as np

from . import checks


def adamw_update(
    params: np.ndarray,
    grads: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    step: int,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decay_ranges: np.ndarray | None = None,
) -> None:
    """One AdamW step, in place on params, m and v (grads is only read).

    Shapes: params, grads, m, v all (N,), the flat buffers of the whole model (float32 in
    training; float64 works too). ``step`` is the 1-based count of updates, including this one.
    ``decay_ranges`` (n, 2) int64 holds the [start, end) ranges of the flat buffer where weight
    decay applies, in order and apart (nanoGPT decays the 2-D weight matrices, embeddings
    included, and not the biases or the layer-norm parameters: decay is per tensor, and a
    model's tensors are ranges of its flat buffer, ``ParameterBuffer.ranges``); None decays
    every parameter.

    Derivation (of the update, not a gradient): m and v are exponential moving averages of the
    gradient and of its square, started at 0, so after k steps they are (1 − beta^k) times an
    average of the gradients: dividing by (1 − beta^k) removes that bias. Each parameter moves
    by about lr in the direction of −mhat/sqrt(vhat), a step normalized by the gradient's own
    scale. The weight decay is applied to the parameters directly ("decoupled"), not added to
    the gradient, where Adam's normalization would rescale it differently per parameter.
    """
    check_adamw_update(params, grads, m, v, step, decay_ranges)
    # Python floats: a np.float64 learning rate (from a schedule) would promote float32 buffers
    lr, beta1, beta2 = float(lr), float(beta1), float(beta2)
    eps, weight_decay = float(eps), float(weight_decay)

    # the first and second moments: moving averages of the gradient and of its square
    m *= beta1
    m += (1.0 - beta1) * grads  # (N,)
    v *= beta2
    v += (1.0 - beta2) * (grads * grads)  # (N,)

    # both started at 0: after `step` updates they are (1 - beta^step) times too small
    mhat = m / (1.0 - beta1**step)  # (N,)
    vhat = v / (1.0 - beta2**step)  # (N,)
    update = mhat / (np.sqrt(vhat) + eps)  # (N,) about ±1 per parameter: Adam's normalization

    if weight_decay != 0.0:
        # decoupled weight decay: shrink the parameters themselves, outside the normalization
        decay = weight_decay * params  # (N,) the parameters before this step
        if decay_ranges is not None:
            for start, end, decayed in decay_segments(decay_ranges, params.size):
                if not decayed:
                    decay[start:end] *= 0.0  # no decay here (as a mask of zeros would multiply)
        update += decay
    params -= lr * update


def decay_segments(decay_ranges: np.ndarray | None, n: int) -> list[tuple[int, int, bool]]:
    """[0, n) cut into (start, end, decayed) pieces, in order: the ranges of ``decay_ranges``
    (checked by :func:`check_adamw_update`) and the gaps between them; None: all decayed."""
    if decay_ranges is None:
        return [(0, n, True)] if n else []
    segments, at = [], 0
    for start, end in decay_ranges.tolist():
        if start > at:
            segments.append((at, start, False))
        if end > start:
            segments.append((start, end, True))
        at = end
    if at < n:
        segments.append((at, n, False))
    return segments


def check_adamw_update(
    params: np.ndarray,
    grads: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    step: int,
    decay_ranges: np.ndarray | None,
) -> None:
    """The argument checks of :func:`adamw_update` (and of its Numba twin in
    tinygradlm.kernels)."""
    fn = "adamw_update"
    dtype = checks.float_array(fn, "params", params)
    if params.ndim != 1:
        raise ValueError(f"{fn}: params must be a flat (N,) buffer, got shape {params.shape}")
    for name, buf in (("grads", grads), ("m", m), ("v", v)):
        checks.float_array(fn, name, buf)
        if buf.shape != params.shape:
            raise ValueError(f"{fn}: {name} has shape {buf.shape} but params {params.shape}")
        checks.same_dtype(fn, name, buf, "params", dtype)
    if decay_ranges is not None:
        check_decay_ranges(fn, decay_ranges, params.size)
    if not isinstance(step, (int, np.integer)) or isinstance(step, bool) or step < 1:
        raise ValueError(f"{fn}: step must be an integer >= 1 (the 1-based step), got {step!r}")


def check_decay_ranges(fn: str, decay_ranges: np.ndarray, n: int) -> None:
    """``decay_ranges`` must be an (n, 2) integer array of [start, end) ranges within [0, n),
    in order and not overlapping; else a TypeError or ValueError naming ``fn``."""
    if isinstance(decay_ranges, np.ndarray) and decay_ranges.ndim == 1:
        raise ValueError(
            f"{fn}: decay_ranges must have shape (n, 2), got {decay_ranges.shape} (a per-entry "
            "0/1 mask, what this argument once was, converts with "
            "tinygradlm.params.ranges_of_mask(mask))"
        )
    if not isinstance(decay_ranges, np.ndarray) or decay_ranges.dtype.kind not in "iu":
        raise TypeError(f"{fn}: decay_ranges must be an integer array of shape (n, 2) (or None)")
    if decay_ranges.ndim != 2 or decay_ranges.shape[1] != 2:
        raise ValueError(f"{fn}: decay_ranges must have shape (n, 2), got {decay_ranges.shape}")
    bounds = decay_ranges.reshape(-1)  # start0, end0, start1, end1, ...: never decreasing
    if bounds.size and (bounds[0] < 0 or bounds[-1] > n or np.any(np.diff(bounds) < 0)):
        raise ValueError(
            f"{fn}: decay_ranges must be [start, end) ranges in order, apart, within [0, {n})"
        )
