"""Every Numba kernel against its NumPy twin in tinygradlm.ref, forward values and gradients, on
hypothesis-drawn shapes: in float32 to float32 rounding, in float64 tightly.

Tolerances. An entry passes when |kernel − ref| ≤ atol·scale + rtol·|ref|, where ``scale`` is
the largest magnitude in the ref array (at least 1). float32: rtol 1e-5, atol 1e-6. The kernels
and ref round differently (float64 row statistics and sums in the kernels, fused multiply-adds,
a different exp and a sigmoid form of GELU), which moves each result by a few float32 ulps
(~1e-7 relative) *of the terms it was computed from*; where those terms cancel (layer norm's
dx, a gradient summed over positions, gelu(x) for x < −3 where ref's 1 + tanh(u) cancels), the
error is a few ulps of the array's scale, not of the entry, hence ``scale`` (for layer norm's dx
and GELU's, the size of the terms that cancel: see :func:`gradient_scales`). float64: rtol
1e-10, atol 1e-12, the same argument with float64 ulps.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from layer_inputs import FUSED, STRATEGIES, cast, example, floating, upstream_gradient

from tinygradlm import kernels, ref

TOLERANCES = {np.float32: (1e-5, 1e-6), np.float64: (1e-10, 1e-12)}


def assert_close(actual, expected, dtype, what, scale=None):
    """|actual − expected| ≤ atol·max(1, scale) + rtol·|expected| everywhere; ``scale`` (a number
    or an array broadcasting against ``expected``) defaults to the largest |expected|."""
    rtol, atol = TOLERANCES[dtype]
    assert actual.dtype == expected.dtype == dtype, f"{what}: {actual.dtype} vs {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: {actual.shape} vs {expected.shape}"
    expected64 = expected.astype(np.float64)
    if scale is None:
        scale = np.max(np.abs(expected64), initial=0.0)
    allowed = atol * np.maximum(1.0, scale) + rtol * np.abs(expected64)
    error = np.abs(actual.astype(np.float64) - expected64)
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    bad = ~same & ~(error <= allowed)
    if bad.any():
        worst = np.unravel_index(np.argmax(np.where(bad, error / allowed, 0)), bad.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} entries differ by more than "
            f"atol={atol}·scale + rtol={rtol}·|ref|; worst at {tuple(map(int, worst))}: "
            f"kernel {actual[worst]!r}, ref {expected[worst]!r}, allowed "
            f"{np.broadcast_to(allowed, bad.shape)[worst]:.3g}"
        )


def forward_and_backward(module, layer, args):
    forward = getattr(module, f"{layer}_forward")
    backward = getattr(module, f"{layer}_backward")
    out, cache = forward(*args)
    grads = backward(upstream_gradient(out), cache)
    return out, cache, grads


def gradient_scales(layer, args, cache):
    """The size of the terms each gradient is computed from, where it exceeds the gradient's.

    - layer norm's dx = rstd·(dxhat − mean(dxhat) − xhat·mean(dxhat·xhat)) cancels terms of
      size rstd·|dout·weight| (exactly, for C = 2: the output is ±1 whatever x is, so dx = 0);
    - ref's GELU gradient 0.5·(1 + tanh u) + 0.5·x·(1 − tanh² u)·du/dx computes 1 − tanh² u
      as a difference of numbers near 1 in the tails (|x| ≳ 3), an error of an ulp of 1 times
      0.5·|x|·du/dx, per element (the kernel's sigmoid form has no such cancellation).
    """
    if layer == "layernorm":
        x, _, rstd, weight = cache
        dout = upstream_gradient(x)
        return {0: float(np.max(rstd) * np.max(np.abs(dout)) * np.max(np.abs(weight)))}
    if layer == "gelu":
        x = args[0].astype(np.float64)
        dout = upstream_gradient(args[0]).astype(np.float64)
        du_dx = kernels.GELU_SCALE * (1 + 3 * kernels.GELU_CUBIC * x * x)
        return {0: 0.5 * np.abs(x) * du_dx * np.abs(dout)}
    return {}


def assert_kernel_matches_ref(layer, args, dtype):
    args = cast(args, dtype)
    out, cache, grads = forward_and_backward(kernels, layer, args)
    expected_out, _, expected_grads = forward_and_backward(ref, layer, args)
    assert_close(out, expected_out, dtype, f"{layer}_forward")
    assert len(grads) == len(expected_grads) == len(floating(args))
    scales = gradient_scales(layer, args, cache)
    for k, (g, expected) in enumerate(zip(grads, expected_grads, strict=True)):
        assert_close(g, expected, dtype, f"{layer}_backward, gradient {k}", scales.get(k))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("layer", FUSED)
@given(data=st.data())
def test_kernel_matches_ref_on_drawn_shapes(layer, dtype, data):
    assert_kernel_matches_ref(layer, data.draw(STRATEGIES[layer]), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("layer", FUSED)
def test_kernel_matches_ref_at_gpt_like_shapes(layer, dtype):
    # T = 256: four causal blocks in attention, several row blocks in layer norm's backward
    assert_kernel_matches_ref(layer, example(layer, dtype, scale=4), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_crossentropy_kernel_matches_ref_at_gpt2_vocabulary_size(dtype):
    # one row per valid target over 50,257 real columns and 47 padding columns
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(3, 50304)) * 4).astype(dtype)
    logits[:, 50257:] = 1e4
    targets = np.array([0, 50256, -100])
    assert_kernel_matches_ref("crossentropy", [logits, targets, 50257], dtype)
