"""tinygradlm.ref.lora: LoRA's hand-derived pair against float64 finite differences (whole
Jacobians) and the autograd engine, on transposed views too; float32 stays float32 and bad
arguments are named."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm import Tensor
from tinygradlm.ref import lora_backward, lora_forward
from tinygradlm.testing import check_vjp


@st.composite
def lora_inputs(draw, dtype=np.float64):
    lead = draw(st.lists(st.integers(1, 3), min_size=1, max_size=2))
    C, r, OC = draw(st.integers(1, 6)), draw(st.integers(1, 3)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.normal(size=(*lead, C)).astype(dtype)
    A = rng.normal(size=(C, r)).astype(dtype)
    B = rng.normal(size=(r, OC)).astype(dtype)
    if draw(st.booleans()):  # the model passes transposed views of PEFT's layouts
        A, B = np.ascontiguousarray(A.T).T, np.ascontiguousarray(B.T).T
    scale = draw(st.sampled_from([1.0, 0.5, 2.0, 16.0 / 3]))
    return x, A, B, scale


@given(lora_inputs())
def test_lora_backward_matches_fd(args):
    # contiguous copies: check_vjp's finite differences perturb an input through a flat view,
    # which an F-ordered copy of a transposed view does not give (the views are covered below)
    x, A, B, scale = args
    inputs = [np.ascontiguousarray(a) for a in (x, A, B)]
    check_vjp(lora_forward, lora_backward, [*inputs, scale], mode="full")


@given(lora_inputs())
def test_lora_backward_matches_autograd(args):
    x, A, B, scale = args
    out, cache = lora_forward(x, A, B, scale)
    dout = np.random.default_rng(0).normal(size=out.shape)
    dx, dA, dB = lora_backward(dout, cache)

    tx, tA, tB = (Tensor(a, requires_grad=True) for a in (x, A, B))
    y = ((tx @ tA) * scale) @ tB
    (y * Tensor(dout)).sum().backward()
    np.testing.assert_allclose(out, y.data, rtol=1e-12, atol=1e-12)
    for mine, witness in ((dx, tx), (dA, tA), (dB, tB)):
        np.testing.assert_allclose(mine, witness.grad, rtol=1e-10, atol=1e-12)


def test_lora_keeps_float32_and_names_bad_arguments():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    A = rng.normal(size=(4, 2)).astype(np.float32)
    B = rng.normal(size=(2, 5)).astype(np.float32)
    out, cache = lora_forward(x, A, B, 16.0 / 3)
    grads = lora_backward(np.ones_like(out), cache)
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    assert [g.shape for g in grads] == [x.shape, A.shape, B.shape]
    with pytest.raises(TypeError, match="lora_forward: A is float64 but x is float32"):
        lora_forward(x, A.astype(np.float64), B, 1.0)
    with pytest.raises(ValueError, match=r"lora_forward: A has shape \(3, 2\) but x has C=4"):
        lora_forward(x, A[:3], B, 1.0)
    with pytest.raises(ValueError, match=r"lora_forward: B has shape \(3, 5\) but A has rank r=2"):
        lora_forward(x, A, np.zeros((3, 5), np.float32), 1.0)
    with pytest.raises(ValueError, match="lora_backward: dout has shape"):
        lora_backward(np.ones((2, 3, 4), np.float32), cache)
