"""Every Numba kernel's backward against float64 finite differences of its own forward (the
check ref passes too: the kernels are verified on their own, not only through ref), over
hypothesis-drawn shapes, comparing whole Jacobians (mode="full": the shapes are small)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from layer_inputs import FUSED, STRATEGIES, example, upstream_gradient

from tinygradlm import kernels
from tinygradlm.testing import check_vjp


def pair(layer):
    return getattr(kernels, f"{layer}_forward"), getattr(kernels, f"{layer}_backward")


@pytest.mark.parametrize("layer", FUSED)
@given(data=st.data())
def test_kernel_backward_matches_fd(layer, data):
    check_vjp(*pair(layer), data.draw(STRATEGIES[layer]), mode="full")


@pytest.mark.parametrize("layer", FUSED)
def test_kernel_backward_matches_fd_at_gpt_like_shapes(layer):
    # the random-projection screen, then element by element for the gradient a step computes
    forward, backward = pair(layer)
    args = example(layer)
    check_vjp(forward, backward, args, mode="fast")
    out, _ = forward(*args)
    check_vjp(forward, backward, args, cotangent=upstream_gradient(out))
