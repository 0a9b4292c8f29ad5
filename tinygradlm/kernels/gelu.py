"""GELU (GPT-2's tanh approximation), forward and backward, one pass each (Numba).

GPT-2's GELU is 0.5·x·(1 + tanh(u)) with u = sqrt(2/π)·(x + 0.044715·x³). Since
0.5·(1 + tanh(u)) = sigmoid(2u), the kernels compute

    gelu(x)  = x·s,                      s = sigmoid(2u)
    gelu'(x) = s + 2·x·s·(1 − s)·sqrt(2/π)·(1 + 3·0.044715·x²)

(the same values as ref's tanh formulas: 1 − tanh²(u) = 4·s·(1 − s)). The sigmoid needs one exp,
which :func:`tinygradlm.kernels._vecmath.exp` vectorizes; a Numba loop of ``math.tanh`` would be
a scalar libm call per element, about 50× slower than NumPy's SIMD ``np.tanh`` (measured: see
docs/performance.md, which also compares a NumPy/Numba hybrid). To avoid overflow, the sigmoid is
built from t = exp(−2|u|) ∈ (0, 1]: s = 1/(1 + t) for u ≥ 0, t/(1 + t) for u < 0, and
s·(1 − s) = t/(1 + t)², accurate in float32 for every x (the tanh form loses all relative
precision of gelu(x) for x below about −4, where 1 + tanh(u) cancels).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from ..ref.gelu import GELU_CUBIC, GELU_SCALE, check_gelu_backward, check_gelu_forward
from . import _checks
from ._vecmath import exp, fma


@njit(cache=True, inline="always")
def _sigmoid_2u(x, k, c, one):
    """(s, s·(1 − s)) with s = sigmoid(2u), u = k·(x + c·x³); k, c, one typed like x."""
    u = k * fma(c * x * x, x, x)  # k·(x + c·x³)
    t = exp(-(u + u) if u >= 0 else u + u)  # exp(−2|u|) ∈ (0, 1]: never overflows
    a = one / (one + t)
    s = a if u >= 0 else t * a
    return s, t * a * a


@njit(cache=True, parallel=True)
def _gelu_forward_flat(x, out):
    k, c, one = x.dtype.type(GELU_SCALE), x.dtype.type(GELU_CUBIC), x.dtype.type(1.0)
    for i in prange(x.size):
        s, _ = _sigmoid_2u(x[i], k, c, one)
        out[i] = x[i] * s


@njit(cache=True, parallel=True)
def _gelu_backward_flat(dout, x, dx):
    k, c = x.dtype.type(GELU_SCALE), x.dtype.type(GELU_CUBIC)
    one, two, three_c = x.dtype.type(1.0), x.dtype.type(2.0), x.dtype.type(3.0 * GELU_CUBIC)
    for i in prange(x.size):
        xi = x[i]
        s, s_one_minus_s = _sigmoid_2u(xi, k, c, one)
        # same as ref.gelu_backward: 0.5·(1 + tanh u) + 0.5·x·(1 − tanh² u)·du/dx
        du_dx = k * fma(three_c * xi, xi, one)
        dx[i] = dout[i] * fma(two * xi * s_one_minus_s, du_dx, s)


def gelu_forward(x: np.ndarray, *, out: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
    """0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))) elementwise; cache (x,).

    One vectorized pass (pure Numba, parallel over elements): ref makes about ten passes with
    temporaries (the cube, the tanh argument, the tanh, ...).
    """
    out = check_gelu_forward(x, out)  # like x
    work = _checks.work_buffer(out)
    _gelu_forward_flat(np.ascontiguousarray(x).reshape(-1), work.reshape(-1))
    _checks.copy_back(out, work)
    return out, (x,)


def gelu_backward(dout: np.ndarray, cache: Any, out: np.ndarray | None = None) -> tuple[np.ndarray]:
    """(dx,) of :func:`gelu_forward`: dx = dout·gelu'(x), recomputing the sigmoid from x (one
    pass; cheaper than storing it in the forward and reading it back). dx goes into ``out``
    when given, which may be ``dout`` itself (each element is read before it is written)."""
    (x,) = cache
    out = check_gelu_backward(dout, x, out)
    dx = np.empty(x.shape, dtype=x.dtype) if out is None else out
    work = _checks.work_buffer(dx)
    _gelu_backward_flat(
        np.ascontiguousarray(dout).reshape(-1),
        np.ascontiguousarray(x).reshape(-1),
        work.reshape(-1),
    )
    _checks.copy_back(dx, work)
    return (dx,)
