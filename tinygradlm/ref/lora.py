"""LoRA's low-rank term (Hu et al., 2021): out = scale · (x @ A) @ B, forward and backward.

An adapted linear layer computes ``y = x @ W + b + scale · (x @ A) @ B`` with the frozen W
(C, OC) left alone and only A (C, r) and B (r, OC) trained; this module is the second term, which
the caller adds to the frozen layer's output. ``tinygradlm.lora`` keeps the adapters' tensors.
"""

from __future__ import annotations

import math

import numpy as np

from . import checks

LoRACache = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.floating]


def lora_forward(
    x: np.ndarray,
    A: np.ndarray,
    B: np.ndarray,
    scale: float,
    *,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, LoRACache]:
    """The low-rank term of an adapted linear layer: out = scale · (x @ A) @ B.

    Shapes: x (B, T, C) (any leading axes: (..., C)), A (C, r), B (r, OC), scale a number
    (alpha / r) -> out (B, T, OC), which the caller adds to the frozen layer's output. A and B
    may be transposed views. ``out``, when given, must be C-contiguous. The cache is
    (x, A, B, h, scale) with h = scale · (x @ A), (B·T, r).

    Derivation: with the B·T positions flattened into n, h[n, k] = s·Σ_c x[n, c]·A[c, k] and
    out[n, o] = Σ_k h[n, k]·B[k, o]. The second is a linear layer in h, so dB = hᵀ @ dout and
    dh = dout @ Bᵀ; the first is a linear layer in x with weight s·A, so dA = s·xᵀ @ dh and
    dx = s·dh @ Aᵀ. The scale is a hyperparameter, not a parameter: it has no gradient.
    """
    out = check_lora_forward(x, A, B, scale, out)  # (B, T, OC)
    C, OC = A.shape[0], B.shape[1]
    s = x.dtype.type(scale)  # a typed constant: a Python float must not promote float32

    # scaling h (B·T, r) rather than out (B·T, OC): the same product, r/OC of the work
    h = x.reshape(-1, C) @ A  # (B·T, r)
    h *= s
    np.matmul(h, B, out=out.reshape(-1, OC))  # (B·T, OC)
    return out, (x, A, B, h, s)


def lora_backward(dout: np.ndarray, cache: LoRACache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients (dx, dA, dB): dout is (B, T, OC); dx is (B, T, C), dA (C, r), dB (r, OC), all
    new arrays. See :func:`lora_forward` for the derivation."""
    x, A, B, h, s = cache
    C, OC = A.shape[0], B.shape[1]
    checks.upstream("lora_backward", dout, (*x.shape[:-1], OC), x.dtype)
    dout2 = dout.reshape(-1, OC)  # (B·T, OC)

    # in the forward pass this was: out = h @ B, so now:
    dB = h.T @ dout2  # (r, OC) summed over all B·T positions
    dh = dout2 @ B.T  # (B·T, r)
    # and before that: h = s · (x @ A), so now:
    dh *= s
    dA = x.reshape(-1, C).T @ dh  # (C, r)
    dx = (dh @ A.T).reshape(x.shape)  # (B, T, C)
    return dx, dA, dB


def check_lora_forward(
    x: np.ndarray, A: np.ndarray, B: np.ndarray, scale: float, out: np.ndarray | None
) -> np.ndarray:
    """The argument checks of :func:`lora_forward`; returns the array to write the output into,
    ``out`` or a new one."""
    fn = "lora_forward"
    dtype = checks.float_array(fn, "x", x)
    for name, a in (("A", A), ("B", B)):
        checks.float_array(fn, name, a)
        checks.same_dtype(fn, name, a, "x", dtype)
    if x.ndim == 0:
        raise ValueError(f"{fn}: x must have a channel axis (..., C), got a 0-d array")
    C = x.shape[-1]
    if A.ndim != 2 or A.shape[0] != C:
        raise ValueError(f"{fn}: A has shape {A.shape} but x has C={C} channels (A is (C, r))")
    r = A.shape[1]
    if B.ndim != 2 or B.shape[0] != r:
        raise ValueError(f"{fn}: B has shape {B.shape} but A has rank r={r} (B is (r, OC))")
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)):
        raise TypeError(f"{fn}: scale must be a number, got {type(scale).__name__}")
    if not math.isfinite(scale):
        raise ValueError(f"{fn}: scale must be finite, got {scale}")
    OC = B.shape[1]
    return checks.out_array(
        fn, out, (*x.shape[:-1], OC), dtype, contiguous=True, kept=(("x", x), ("A", A), ("B", B))
    )
