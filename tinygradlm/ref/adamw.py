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
    decay_mask: np.ndarray | None = None,
) -> None:
    """One AdamW step, in place on params, m and v (grads is only read).

    Shapes: params, grads, m, v all (N,), the flat buffers of the whole model (float32 in
    training; float64 works too). ``step`` is the 1-based count of updates, including this one.
    ``decay_mask`` (N,), bool or float, is 1 where weight decay applies and 0 where it does not
    (nanoGPT decays the 2-D weight matrices, embeddings included, and not the biases or the
    layer-norm parameters); None decays every parameter.

    Derivation (of the update, not a gradient): m and v are exponential moving averages of the
    gradient and of its square, started at 0, so after k steps they are (1 − beta^k) times an
    average of the gradients: dividing by (1 − beta^k) removes that bias. Each parameter moves
    by about lr in the direction of −mhat/sqrt(vhat), a step normalized by the gradient's own
    scale. The weight decay is applied to the parameters directly ("decoupled"), not added to
    the gradient, where Adam's normalization would rescale it differently per parameter.
    """
    check_adamw_update(params, grads, m, v, step, decay_mask)
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
        if decay_mask is not None:
            decay *= decay_mask
        update += decay
    params -= lr * update


def check_adamw_update(
    params: np.ndarray,
    grads: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    step: int,
    decay_mask: np.ndarray | None,
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
    if decay_mask is not None:
        if not isinstance(decay_mask, np.ndarray) or decay_mask.dtype.kind not in "bf":
            raise TypeError(f"{fn}: decay_mask must be a bool or float array (or None)")
        if decay_mask.shape != params.shape:
            raise ValueError(
                f"{fn}: decay_mask has shape {decay_mask.shape} but params {params.shape}"
            )
    if not isinstance(step, (int, np.integer)) or isinstance(step, bool) or step < 1:
        raise ValueError(f"{fn}: step must be an integer >= 1 (the 1-based step), got {step!r}")
