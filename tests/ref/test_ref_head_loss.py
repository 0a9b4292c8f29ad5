"""The LM head fused with the loss in row chunks (tinygradlm.ref.head_loss, and its Numba twin):
the same loss and gradients as the unfused composition linear + cross-entropy, whatever the
chunk size, with ignored targets and a padded vocabulary; float64 finite differences; the
encoder's backward adding into given buffers."""

import numpy as np
import pytest

from tinygradlm import kernels, ref
from tinygradlm.testing import check_vjp

IMPLEMENTATIONS = [ref, kernels]


def problem(dtype, B=3, T=7, C=12, V=37, Vp=40, seed=0, ignored=((0, 3), (2, 0))):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, C)).astype(dtype)
    wte = rng.normal(size=(Vp, C)).astype(dtype)  # padding rows nonzero: must not matter
    targets = rng.integers(0, V, size=(B, T))
    for position in ignored:
        targets[position] = -100
    return x, wte, targets, V


def unfused(x, wte, targets, V, dloss, rounding=None):
    """linear (weight wte.T) + cross-entropy, forward and backward, as the model ran them."""
    logits, cache = ref.linear_forward(x, wte.T)
    if rounding is not None:
        rounding(logits)
    loss, cache_ce = ref.crossentropy_forward(logits, targets, V)
    (dlogits,) = ref.crossentropy_backward(x.dtype.type(dloss), cache_ce)
    if rounding is not None:
        rounding(dlogits)
    dx, dwte_t = ref.linear_backward(dlogits, cache)
    return loss, dx, dwte_t.T


@pytest.mark.parametrize("L", IMPLEMENTATIONS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("chunk_rows", [1, 4, 7, 21, 64])  # 21 rows: dividing and not
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
def test_chunked_head_loss_equals_the_unfused_composition(L, chunk_rows, dtype):
    x, wte, targets, V = problem(dtype)
    expected = unfused(x, wte, targets, V, 2.5)
    got = L.head_crossentropy_forward_backward(x, wte, targets, V, -100, 2.5, chunk_rows=chunk_rows)
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, **tol)


@pytest.mark.parametrize("L", IMPLEMENTATIONS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("rounder", [ref.round_to_bf16, ref.round_to_fp16])
def test_rounding_is_applied_where_the_unfused_head_rounds(L, rounder):
    x, wte, targets, V = problem(np.float32)
    x, wte = rounder(x), rounder(wte)  # the operands, rounded by the caller

    def rounding(a):
        rounder(a, out=a)

    expected = unfused(x, wte, targets, V, 1.0, rounding)
    got = L.head_crossentropy_forward_backward(x, wte, targets, V, chunk_rows=5, rounding=rounding)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("L", IMPLEMENTATIONS, ids=lambda m: m.__name__)
def test_dwte_is_added_into_and_dx_written_into_the_given_arrays(L):
    x, wte, targets, V = problem(np.float64)
    _, dx_new, dwte_new = L.head_crossentropy_forward_backward(x, wte, targets, V, chunk_rows=4)
    dwte, dx = np.full(wte.shape, 0.5), np.full(x.shape, np.nan)
    _, dx_out, dwte_out = L.head_crossentropy_forward_backward(
        x, wte, targets, V, chunk_rows=4, dwte=dwte, dx=dx
    )
    assert dwte_out is dwte and dx_out is dx
    np.testing.assert_allclose(dwte, dwte_new + 0.5, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, dx_new, rtol=1e-12, atol=1e-14)
    assert not dwte_new[V:].any()  # the padding rows get no gradient


@pytest.mark.parametrize("L", IMPLEMENTATIONS, ids=lambda m: m.__name__)
def test_ignored_positions_get_no_gradient_and_all_ignored_is_nan(L):
    x, wte, targets, V = problem(np.float64)
    _, dx, _ = L.head_crossentropy_forward_backward(x, wte, targets, V, chunk_rows=4)
    assert not dx[0, 3].any() and not dx[2, 0].any()
    loss, dx, dwte = L.head_crossentropy_forward_backward(
        x, wte, np.full(targets.shape, -100), V, chunk_rows=4
    )
    assert np.isnan(loss) and not dx.any() and not dwte.any()


def test_head_loss_matches_finite_differences():
    x, wte, targets, V = problem(np.float64, B=2, T=3, C=4, V=6, Vp=8, ignored=((1, 1),))

    def forward(x, wte):
        return ref.head_crossentropy_forward_backward(x, wte, targets, V, chunk_rows=2)[0]

    def backward(dout, x, wte):
        _, dx, dwte = ref.head_crossentropy_forward_backward(
            x, wte, targets, V, dloss=float(dout), chunk_rows=2
        )
        return dx, dwte

    check_vjp(forward, backward, [x, wte], cache=False, mode="full")


@pytest.mark.parametrize("L", IMPLEMENTATIONS, ids=lambda m: m.__name__)
def test_head_loss_argument_errors(L):
    x, wte, targets, V = problem(np.float32)
    with pytest.raises(ValueError, match="chunk_rows"):
        L.head_crossentropy_forward_backward(x, wte, targets, V, chunk_rows=0)
    with pytest.raises(TypeError, match="wte"):
        L.head_crossentropy_forward_backward(x, wte.astype(np.float64), targets, V)
    with pytest.raises(IndexError, match="outside"):
        L.head_crossentropy_forward_backward(x, wte, np.full(targets.shape, V), V)
    with pytest.raises(ValueError, match="dwte"):
        L.head_crossentropy_forward_backward(x, wte, targets, V, dwte=np.zeros((3, 3), x.dtype))


@pytest.mark.parametrize("L", IMPLEMENTATIONS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("contiguous", [True, False])
def test_encoder_backward_adds_into_the_given_tables(L, contiguous):
    rng = np.random.default_rng(0)
    idx = np.array([[1, 1, 3], [0, 1, 3]])  # repeated tokens
    wte, wpe = rng.normal(size=(5, 4)), rng.normal(size=(6, 4))
    out, cache = L.encoder_forward(idx, wte, wpe)
    dout = rng.normal(size=out.shape)
    dwte_new, dwpe_new = L.encoder_backward(dout, cache)
    if contiguous:
        dwte, dwpe = np.full((5, 4), 0.25), np.full((6, 4), -1.0)
    else:  # strided views, as a (C, Vp) transpose would give
        dwte, dwpe = np.full((4, 5), 0.25).T, np.full((4, 6), -1.0).T
    got = L.encoder_backward(dout, cache, into=(dwte, dwpe))
    assert got[0] is dwte and got[1] is dwpe
    np.testing.assert_allclose(dwte, dwte_new + 0.25, rtol=1e-12)
    np.testing.assert_allclose(dwpe, dwpe_new - 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match="dwpe"):
        L.encoder_backward(dout, cache, into=(dwte, np.zeros((2, 4))))
