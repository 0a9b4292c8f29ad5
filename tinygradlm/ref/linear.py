"""The linear (affine) layer in HF GPT-2's "Conv1D" layout: weight is (in, out).

    out = x @ weight + bias

Derivation: docs/derivations.md, "Linear".
"""

from __future__ import annotations

import numpy as np

from . import checks

LinearCache = tuple[np.ndarray, np.ndarray, bool]


def linear_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, LinearCache]:
    """Multiply every position's channels by weight and add the bias.

    Shapes: x (B, T, C) (any leading axes: (..., C)), weight (C, OC), bias (OC,) or None ->
    out (B, T, OC). ``out``, when given, must be C-contiguous (it is written as (B·T, OC)).
    weight may be a transposed view, as for GPT-2's tied LM head ``wte.T``. The cache is
    (x, weight, has_bias).

    Derivation: out[n, o] = Σ_c x[n, c]·weight[c, o] + bias[o] with n running over the B·T
    positions. Differentiating: dx[n, c] = Σ_o dout[n, o]·weight[c, o], i.e. dx = dout @ weightᵀ;
    dweight[c, o] = Σ_n x[n, c]·dout[n, o], i.e. dweight = xᵀ @ dout with the positions
    flattened (the weight is shared by every position, so their contributions add); dbias[o] =
    Σ_n dout[n, o].
    """
    out = check_linear_forward(x, weight, bias, out)  # (B, T, OC)
    C, OC = weight.shape

    # one (B·T, C) @ (C, OC) product rather than B of shape (T, C): the same numbers, and the
    # shape at which BLAS is fastest
    np.matmul(x.reshape(-1, C), weight, out=out.reshape(-1, OC))  # (B·T, OC)
    if bias is not None:
        out += bias  # (OC,) broadcast over every position
    return out, (x, weight, bias is not None)


def linear_backward(dout: np.ndarray, cache: LinearCache) -> tuple[np.ndarray, ...]:
    """Gradients (dx, dweight, dbias), or (dx, dweight) when the forward had no bias.

    dout is (B, T, OC); dx is (B, T, C), dweight (C, OC), dbias (OC,), all new arrays. See
    :func:`linear_forward` for the derivation.
    """
    x, weight, has_bias = cache
    C, OC = weight.shape
    checks.upstream("linear_backward", dout, (*x.shape[:-1], OC), x.dtype)
    x2 = x.reshape(-1, C)  # (B·T, C)
    dout2 = dout.reshape(-1, OC)  # (B·T, OC)

    # in the forward pass this was: out = x @ weight + bias, so now:
    dx = (dout2 @ weight.T).reshape(x.shape)  # (B, T, C)
    dweight = x2.T @ dout2  # (C, OC) the matmul sums over all B·T positions
    if not has_bias:
        return dx, dweight
    dbias = dout2.sum(axis=0)  # (OC,)
    return dx, dweight, dbias


def check_linear_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, out: np.ndarray | None
) -> np.ndarray:
    """The argument checks of :func:`linear_forward`; returns the array to write the output
    into, ``out`` or a new one."""
    fn = "linear_forward"
    dtype = checks.float_array(fn, "x", x)
    checks.float_array(fn, "weight", weight)
    checks.same_dtype(fn, "weight", weight, "x", dtype)
    if x.ndim == 0:
        raise ValueError(f"{fn}: x must have a channel axis (..., C), got a 0-d array")
    C = x.shape[-1]
    if weight.ndim != 2 or weight.shape[0] != C:
        raise ValueError(
            f"{fn}: weight has shape {weight.shape} but x has C={C} channels (weight is "
            f"(C, OC), the (in, out) layout of HF GPT-2's Conv1D)"
        )
    OC = weight.shape[1]
    if bias is not None:
        checks.float_array(fn, "bias", bias)
        checks.same_dtype(fn, "bias", bias, "x", dtype)
        if bias.shape != (OC,):
            raise ValueError(f"{fn}: bias has shape {bias.shape} but weight has OC={OC} outputs")
    return checks.out_array(
        fn, out, (*x.shape[:-1], OC), dtype, contiguous=True, kept=(("x", x), ("weight", weight))
    )
