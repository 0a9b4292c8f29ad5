"""GELU (Hendrycks & Gimpel, 2016) in GPT-2's tanh approximation.

    out = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x³)))

Derivation: docs/derivations.md, "GELU".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import checks

# Python floats on purpose: NumPy 2 promotes a float32 array meeting a np.float64 scalar (what
# np.sqrt would return) to float64, but keeps it float32 against a Python float.
GELU_SCALE = math.sqrt(2.0 / math.pi)  # sqrt(2/pi) = 0.7978845608028654
GELU_CUBIC = 0.044715

GeluCache = tuple[np.ndarray]


def gelu_forward(x: np.ndarray, *, out: np.ndarray | None = None) -> tuple[np.ndarray, GeluCache]:
    """GELU of every element: x (any shape, normally (B, T, 4C)) -> out like x.

    The cache is (x,); the backward recomputes tanh rather than keep another array.

    Derivation: out = 0.5·x·(1 + tanh u) with u = s·(x + c·x³), s = sqrt(2/pi), c = 0.044715.
    By the product rule, dout/dx = 0.5·(1 + tanh u) + 0.5·x·(1 − tanh² u)·du/dx, and
    du/dx = s·(1 + 3c·x²); dx = dout·dout/dx elementwise.
    """
    out = check_gelu_forward(x, out)  # like x

    u = GELU_SCALE * (x + GELU_CUBIC * x * x * x)  # (B, T, 4C)
    np.multiply(0.5 * x, 1.0 + np.tanh(u), out=out)  # (B, T, 4C)
    return out, (x,)


def gelu_backward(
    dout: np.ndarray, cache: GeluCache, out: np.ndarray | None = None
) -> tuple[np.ndarray]:
    """Gradient dx (like x) from dout (like x), written into ``out`` when given (it may be
    ``dout`` itself: the gradient replaces the upstream one), else a new array. See
    :func:`gelu_forward`."""
    (x,) = cache
    out = check_gelu_backward(dout, x, out)
    tanh_u = np.tanh(GELU_SCALE * (x + GELU_CUBIC * x * x * x))  # (B, T, 4C) as in the forward
    du_dx = GELU_SCALE * (1.0 + 3.0 * GELU_CUBIC * x * x)  # (B, T, 4C)

    # in the forward pass this was: out = 0.5 * x * (1 + tanh(u)), so now (product rule, and
    # tanh' = 1 - tanh²):
    local_grad = 0.5 * (1.0 + tanh_u) + 0.5 * x * (1.0 - tanh_u * tanh_u) * du_dx
    dx = np.multiply(dout, local_grad, out=out)  # (B, T, 4C)
    return (dx,)


def check_gelu_backward(dout: np.ndarray, x: np.ndarray, out: np.ndarray | None) -> Any:
    """The argument checks of :func:`gelu_backward` (and of its Numba twin): dout like the
    cached x, and ``out`` (None: a new array) like x and apart from it; returns ``out``."""
    checks.upstream("gelu_backward", dout, x.shape, x.dtype)
    if out is None:
        return None
    return checks.out_array("gelu_backward", out, x.shape, x.dtype, kept=(("x", x),))


def check_gelu_forward(x: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """The argument checks of :func:`gelu_forward` (and of its Numba twin in tinygradlm.kernels);
    returns the array to write the output into, ``out`` or a new one."""
    fn = "gelu_forward"
    dtype = checks.float_array(fn, "x", x)
    return checks.out_array(fn, out, x.shape, dtype, kept=(("x", x),))
