"""AdamW on flat buffers, in place, one pass (Numba).

Each element's update reads params, grads, m and v once and writes params, m and v once: the
whole step is memory-bound at 28 bytes per float32 parameter. NumPy's expression of the same
formula makes about a dozen passes, most through temporaries as large as the model.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..ref.adamw import check_adamw_update, decay_segments


@njit(cache=True, parallel=True)
def _adamw_flat(params, grads, m, v, lr, beta1, beta2, eps, decay, bc1, bc2):
    """All scalars typed like params; beta1 = (β1, 1 − β1) and beta2 = (β2, 1 − β2) pairs,
    bc1 = 1 − β1**step, bc2 = 1 − β2**step (computed in float64: 1 − β2 for β2 = 0.999 in
    float32 arithmetic would be off by 1e-5 relative); decay is the weight decay of every
    entry of these buffers (0 where it does not apply)."""
    for i in prange(params.size):
        g = grads[i]
        m_i = beta1[0] * m[i] + beta1[1] * g
        v_i = beta2[0] * v[i] + beta2[1] * g * g
        m[i] = m_i
        v[i] = v_i
        m_hat = m_i / bc1
        v_hat = v_i / bc2
        # decoupled weight decay, as torch.optim.AdamW: both terms use the old params
        params[i] -= lr * (m_hat / (np.sqrt(v_hat) + eps) + decay * params[i])


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
    """One AdamW step, in place on the flat (N,) buffers params, m and v.

    m = beta1·m + (1 − beta1)·g, v = beta2·v + (1 − beta2)·g², mhat = m/(1 − beta1**step),
    vhat = v/(1 − beta2**step), params −= lr·(mhat/(sqrt(vhat) + eps) + weight_decay·params),
    the decay only inside the [start, end) ranges of ``decay_ranges`` (n, 2) (everywhere when
    it is None). step is 1-based. Same formula as torch.optim.AdamW. Pure Numba, one pass over
    each piece of the buffer, decayed or not, parallel over elements.
    """
    check_adamw_update(params, grads, m, v, step, decay_ranges)
    # the hyperparameters enter the loop as scalars of the buffers' dtype: no float64 promotion
    t = params.dtype.type
    lr_, beta1_ = t(lr), (t(beta1), t(1.0 - float(beta1)))
    beta2_, eps_ = (t(beta2), t(1.0 - float(beta2))), t(eps)
    bc1, bc2 = t(1.0 - float(beta1) ** step), t(1.0 - float(beta2) ** step)
    for start, end, decayed in decay_segments(decay_ranges, params.size):
        piece = slice(start, end)  # views: contiguous, updated in place
        decay = t(weight_decay) if decayed else t(0.0)
        _adamw_flat(
            params[piece], grads[piece], m[piece], v[piece],
            lr_, beta1_, beta2_, eps_, decay, bc1, bc2,
        )  # fmt: skip
