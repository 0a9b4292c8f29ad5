"""A demonstration of the gradient-checking toolkit on a hand-written layer.

``python -m tinygradlm check-demo`` runs it. It writes a layer-norm forward/backward pair in plain
NumPy, verifies the backward against float64 finite differences with ``check_vjp``, shows the
report the checker gives for a backward with a planted bug, and cross-checks the layer against
the autograd engine's layer norm (composed from primitive ops) with ``gradcheck``.
"""

from __future__ import annotations

import numpy as np

from .autograd import Tensor, layer_norm, numpy_op
from .testing import check_vjp, gradcheck


def layernorm_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-5):
    """x (B, T, C), w (C,), b (C,) -> out (B, T, C), normalized over C."""
    mean = x.mean(axis=-1, keepdims=True)  # (B, T, 1)
    rstd = 1.0 / np.sqrt(x.var(axis=-1, keepdims=True) + eps)  # (B, T, 1)
    xhat = (x - mean) * rstd  # (B, T, C)
    return xhat * w + b, (xhat, rstd, w)


def layernorm_backward(dout: np.ndarray, cache):
    """In the forward pass this was: out = xhat·w + b with xhat = (x - mean)·rstd, so now
    dw = Σ dout·xhat, db = Σ dout over (B, T), and with dxhat = dout·w:
    dx = rstd · (dxhat - mean(dxhat) - xhat · mean(dxhat·xhat))."""
    xhat, rstd, w = cache
    dw = (dout * xhat).sum(axis=(0, 1))
    db = dout.sum(axis=(0, 1))
    dxhat = dout * w
    dx = rstd * (
        dxhat
        - dxhat.mean(axis=-1, keepdims=True)
        - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)
    )
    return dx, dw, db


def layernorm_backward_with_bug(dout: np.ndarray, cache):
    """The same backward with a classic mistake: the bias gradient not summed over T."""
    dx, dw, _ = layernorm_backward(dout, cache)
    db = dout.sum(axis=0)[0]  # forgot to sum over positions: only t = 0 contributes
    return dx, dw, db


def main() -> int:
    rng = np.random.default_rng(0)
    B, T, C = 2, 3, 8
    x = rng.normal(size=(B, T, C))
    w = rng.normal(size=C)
    b = rng.normal(size=C)

    print(f"Checking a hand-written layer norm backward, x of shape {(B, T, C)}, in float64.\n")
    result = check_vjp(layernorm_forward, layernorm_backward, [x, w, b], mode="full")
    print(result, "\n")

    print("The same check on a backward with a planted bug (bias gradient not summed over T):\n")
    caught = check_vjp(
        layernorm_forward, layernorm_backward_with_bug, [x, w, b], raise_exception=False
    )
    print(caught, "\n")

    print("Cross-check: the NumPy layer inside the autograd graph, and autograd's own layer norm")
    hand = numpy_op(layernorm_forward, layernorm_backward, name="layernorm")
    lifted = gradcheck(lambda *t: hand(*t), [x, w, b])
    composed = gradcheck(lambda x, w, b: layer_norm(x, w, b), [x, w, b])
    print(f"  numpy_op(layernorm): {'ok' if lifted.ok else 'FAILED'}")
    print(f"  autograd layer_norm: {'ok' if composed.ok else 'FAILED'}")
    x64, w64, b64 = (Tensor(a, requires_grad=True) for a in (x, w, b))
    dout = rng.normal(size=x.shape)
    layer_norm(x64, w64, b64).backward(dout)
    dx, dw, db = layernorm_backward(dout, layernorm_forward(x, w, b)[1])
    agree = all(
        np.allclose(got, want, rtol=1e-10, atol=1e-12)
        for got, want in ((x64.grad, dx), (w64.grad, dw), (b64.grad, db))
    )
    print(f"  hand-derived and autograd gradients agree to 1e-10: {agree}")

    ok = result.ok and not caught.ok and lifted.ok and composed.ok and agree
    print("\nDemo", "passed." if ok else "FAILED.")
    return 0 if ok else 1
