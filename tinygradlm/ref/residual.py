"""The residual connection (He et al., 2016): a branch's output added to the stream.

    out = a + b

Derivation: docs/derivations.md, "Residual".
"""

from __future__ import annotations

import numpy as np

from . import checks

ResidualCache = tuple[tuple[int, ...], np.dtype]


def residual_forward(
    a: np.ndarray, b: np.ndarray, *, out: np.ndarray | None = None
) -> tuple[np.ndarray, ResidualCache]:
    """Elementwise sum of two arrays of the same shape (normally (B, T, C)) -> out like a.

    ``out`` may be a (the stream updated in place): the backward needs neither input. The cache
    is (shape, dtype), kept only to check dout.

    Derivation: ∂out/∂a and ∂out/∂b are both the identity, so da = db = dout: the stream
    carries the gradient past the branch unchanged, which is why deep residual networks train.
    """
    out = check_residual_forward(a, b, out)  # like a

    np.add(a, b, out=out)  # (B, T, C)
    return out, (a.shape, a.dtype)


def residual_backward(dout: np.ndarray, cache: ResidualCache) -> tuple[np.ndarray, np.ndarray]:
    """Gradients (da, db), each like dout and each a new array. See :func:`residual_forward`."""
    shape, dtype = cache
    checks.upstream("residual_backward", dout, shape, dtype)
    # in the forward pass this was: out = a + b, so now: both get dout unchanged. Copies, so a
    # caller may accumulate into da (da += ...) without changing db or dout.
    return dout.copy(), dout.copy()


def check_residual_forward(a: np.ndarray, b: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """The argument checks of :func:`residual_forward`; returns the array to write the output
    into, ``out`` or a new one."""
    fn = "residual_forward"
    dtype = checks.float_array(fn, "a", a)
    checks.float_array(fn, "b", b)
    checks.same_dtype(fn, "b", b, "a", dtype)
    if a.shape != b.shape:
        raise ValueError(f"{fn}: a has shape {a.shape} but b has shape {b.shape}")
    return checks.out_array(fn, out, a.shape, dtype)
