"""Layer normalization (Ba, Kiros & Hinton, 2016) over the channels of each position.

    out = (x - mean) / sqrt(var + eps) * weight + bias      mean, var over the last axis (C)

Derivation: docs/derivations.md, "Layer norm".
"""

from __future__ import annotations

import numpy as np

from . import checks

LayerNormCache = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def layernorm_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    eps: float = 1e-5,
    *,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, LayerNormCache]:
    """Normalize each row of x to zero mean and unit variance, then scale and shift it.

    Shapes: x (B, T, C) (any leading axes: (..., C)), weight (C,), bias (C,) -> out like x.
    The variance is the biased one (divided by C) and eps sits inside the square root, as in
    GPT-2 and torch.nn.LayerNorm. The cache is (x, mean, rstd, weight) with mean and rstd of
    shape (B, T); llm.c keeps the two row statistics too, so the backward need not reduce again.

    Derivation: with xhat = (x − mean)·rstd and rstd = 1/sqrt(var + eps), out = xhat·weight +
    bias, so dbias = Σ dout and dweight = Σ dout·xhat over all positions. Every xhat_i of a row
    depends on every x_j of that row through mean and rstd; with dxhat = dout·weight the chain
    rule gives dx = rstd·(dxhat − mean(dxhat) − xhat·mean(dxhat·xhat)), means over the row: the
    first term removes what the subtracted mean absorbs (a shift of the whole row changes
    nothing), the second what the division by the standard deviation absorbs (a scaling of the
    centred row changes nothing).
    """
    out = check_layernorm_forward(x, weight, bias, out)  # like x
    eps = x.dtype.type(eps)  # a float64 eps would promote float32 rows to float64

    mean = x.mean(axis=-1)  # (B, T)
    xc = x - mean[..., None]  # (B, T, C) centred
    var = (xc * xc).mean(axis=-1)  # (B, T) biased: divided by C, not C - 1
    rstd = 1.0 / np.sqrt(var + eps)  # (B, T) reciprocal standard deviation
    xhat = xc * rstd[..., None]  # (B, T, C) zero mean, unit variance along C
    np.multiply(xhat, weight, out=out)  # (B, T, C)
    out += bias
    return out, (x, mean, rstd, weight)


def layernorm_backward(
    dout: np.ndarray, cache: LayerNormCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients dx (B, T, C), dweight (C,), dbias (C,), all new arrays, from dout (B, T, C).

    See :func:`layernorm_forward` for the derivation.
    """
    x, mean, rstd, weight = cache
    checks.upstream("layernorm_backward", dout, x.shape, x.dtype)
    C = x.shape[-1]
    # recomputed rather than cached: one (B, T, C) array less kept per layer until the backward
    xhat = (x - mean[..., None]) * rstd[..., None]  # (B, T, C)

    # in the forward pass this was: out = xhat * weight + bias, so now:
    dbias = dout.reshape(-1, C).sum(axis=0)  # (C,) the bias was added at every position
    dweight = (dout * xhat).reshape(-1, C).sum(axis=0)  # (C,)
    dxhat = dout * weight  # (B, T, C)

    # in the forward pass this was: xhat = (x - mean) * rstd, where mean and rstd are functions
    # of the whole row, so now (dxhat projected off the directions the normalization removes):
    dx = dxhat - dxhat.mean(axis=-1, keepdims=True)  # (B, T, C) no gradient along a shift
    dx -= xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)  # none along a rescaling
    dx *= rstd[..., None]
    return dx, dweight, dbias


def check_layernorm_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray, out: np.ndarray | None
) -> np.ndarray:
    """The argument checks of :func:`layernorm_forward` (and of its Numba twin in
    tinygradlm.kernels); returns the array to write the output into, ``out`` or a new one."""
    fn = "layernorm_forward"
    dtype = checks.float_array(fn, "x", x)
    if x.ndim == 0:
        raise ValueError(f"{fn}: x must have a channel axis (..., C), got a 0-d array")
    C = x.shape[-1]
    for name, p in (("weight", weight), ("bias", bias)):
        checks.float_array(fn, name, p)
        if p.shape != (C,):
            raise ValueError(f"{fn}: {name} has shape {p.shape} but x has C={C} channels")
        checks.same_dtype(fn, name, p, "x", dtype)
    return checks.out_array(fn, out, x.shape, dtype, kept=(("x", x),))
