"""Layer norm, forward and backward, one pass over each row (Numba).

The forward and backward keep a row of C values in L1 cache and do all of a row's work there:
NumPy's version makes five to eight passes over the whole (B, T, C) array with a temporary for
each. Statistics (mean, variance, the backward's two row sums) accumulate in float64: free inside
a vectorized loop, and it makes the variance exact to float32 rounding however large C is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from ..ref.layernorm import check_layernorm_forward
from . import _checks
from ._vecmath import fma, row_centered_dot, row_squared_deviations, row_sum

# Rows per block in the backward: each block sums its rows' dweight/dbias contributions into its
# own float64 partial (no two threads write the same partial), and the partials are added in
# block order, so the result does not depend on the number of threads.
ROWS_PER_BLOCK = 32


@njit(cache=True, parallel=True)
def _layernorm_forward_rows(x, weight, bias, eps, out, mean, rstd):
    """x, out (N, C); weight, bias (C,); mean, rstd (N,) written."""
    N, C = x.shape
    for i in prange(N):
        row = x[i]
        mu = row_sum(row, C) / C  # float64 (see the module docstring)
        # two-pass variance: no cancellation, unlike E[x²] − E[x]²
        squares = row_squared_deviations(row, C, mu)
        mean[i] = mu
        rstd[i] = 1.0 / np.sqrt(squares / C + eps)
        m, r = mean[i], rstd[i]  # rounded to x's dtype: the loop below runs in that dtype
        for c in range(C):
            out[i, c] = fma((row[c] - m) * r, weight[c], bias[c])


@njit(cache=True, parallel=True)
def _layernorm_backward_rows(dout, x, mean, rstd, weight, dx, dweight_blocks, dbias_blocks):
    """dout, x, dx (N, C); mean, rstd (N,); weight (C,); *_blocks (n_blocks, C) float64, zero."""
    N, C = x.shape
    for block in prange(dweight_blocks.shape[0]):
        dweight, dbias = dweight_blocks[block], dbias_blocks[block]
        for i in range(block * ROWS_PER_BLOCK, min(N, (block + 1) * ROWS_PER_BLOCK)):
            m, r = mean[i], rstd[i]
            # in the forward pass this was: out = xhat·weight + bias, xhat = (x − mean)·rstd,
            # so now dweight += dout·xhat, dbias += dout, dxhat = dout·weight
            for c in range(C):
                xhat = (x[i, c] - m) * r
                dweight[c] += dout[i, c] * xhat
                dbias[c] += dout[i, c]
                dx[i, c] = dout[i, c] * weight[c]  # dxhat, for the row sums
            sum_dxhat = row_sum(dx[i], C)
            sum_dxhat_xhat = row_centered_dot(dx[i], x[i], C, float(m)) * float(r)
            mean_dxhat = x.dtype.type(sum_dxhat / C)
            mean_dxhat_xhat = x.dtype.type(sum_dxhat_xhat / C)
            # same as ref.layernorm_backward:
            # dx = rstd·(dxhat − mean(dxhat) − xhat·mean(dxhat·xhat))
            for c in range(C):
                xhat = (x[i, c] - m) * r
                dx[i, c] = r * (dx[i, c] - mean_dxhat - xhat * mean_dxhat_xhat)


def layernorm_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    eps: float = 1e-5,
    *,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, Any]:
    """out = (x − mean)·rstd·weight + bias over the last axis, rstd = 1/sqrt(var + eps).

    x (..., C), weight (C,), bias (C,) -> out (..., C); cache (x, mean, rstd, weight) with mean
    and rstd of shape (...). Same math as ``tinygradlm.ref.layernorm_forward``.

    Fuses mean, variance, normalization and the affine map into one kernel over rows (three
    reads of each row from L1, one write); parallel over rows.
    """
    out = check_layernorm_forward(x, weight, bias, out)  # like x
    C, dtype = x.shape[-1], x.dtype
    work = _checks.work_buffer(out)
    mean = np.empty(x.shape[:-1], dtype=dtype)
    rstd = np.empty(x.shape[:-1], dtype=dtype)
    _layernorm_forward_rows(
        np.ascontiguousarray(x).reshape(-1, C),
        np.ascontiguousarray(weight),
        np.ascontiguousarray(bias),
        float(eps),
        work.reshape(-1, C),
        mean.reshape(-1),
        rstd.reshape(-1),
    )
    _checks.copy_back(out, work)
    return out, (x, mean, rstd, weight)


def layernorm_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dweight, dbias) of :func:`layernorm_forward`, shapes of x, weight and bias.

    One pass over each row adds its dweight/dbias contributions and writes dxhat into dx, the two
    row sums read dxhat back, and a last pass (the row still in L1) turns it into dx. dweight and
    dbias accumulate in float64 per block of rows and are summed in a fixed order (deterministic
    for any number of threads).
    """
    x, mean, rstd, weight = cache
    _checks.upstream("layernorm_backward", dout, x.shape, x.dtype)
    C = x.shape[-1]
    dtype = x.dtype
    dout_rows = np.ascontiguousarray(dout).reshape(-1, C)
    N = dout_rows.shape[0]
    dx = np.empty(x.shape, dtype=dtype)
    n_blocks = max(1, -(-N // ROWS_PER_BLOCK))
    dweight_blocks = np.zeros((n_blocks, C))
    dbias_blocks = np.zeros((n_blocks, C))
    _layernorm_backward_rows(
        dout_rows,
        np.ascontiguousarray(x).reshape(-1, C),
        mean.reshape(-1),
        rstd.reshape(-1),
        np.ascontiguousarray(weight),
        dx.reshape(-1, C),
        dweight_blocks,
        dbias_blocks,
    )
    dweight = dweight_blocks.sum(axis=0).astype(dtype)
    dbias = dbias_blocks.sum(axis=0).astype(dtype)
    return dx, dweight, dbias
