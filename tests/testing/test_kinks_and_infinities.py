"""check_kinks still requires a valid subgradient where elements tie; constant infinite outputs
(a causal mask's -inf) are compared as constants, through which no gradient may flow."""

import numpy as np
import pytest

from tinygradlm.autograd import masked_fill
from tinygradlm.testing import check_vjp, gradcheck

TIED = np.array([[1.0, 3.0, 3.0, -2.0], [0.5, 0.5, 0.5, -1.0], [2.0, -1.0, 0.0, 1.0]])


def row_max_forward(x):
    return x.max(axis=1), x


def row_max_backward_to(share):
    """The max's backward, with each row's tied maxima getting share(n_tied) of the gradient."""

    def backward(dout, x):
        is_max = x == x.max(axis=1, keepdims=True)
        n_tied = is_max.sum(axis=1, keepdims=True)
        return (is_max * share(n_tied) * dout[:, None],)

    return backward


def first_max_backward(dout, x):
    dx = np.zeros_like(x)
    dx[np.arange(len(x)), x.argmax(axis=1)] = dout
    return (dx,)


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_every_tied_maximum_getting_the_full_gradient_fails_with_check_kinks(mode):
    full_to_each = row_max_backward_to(lambda n: 1.0)
    result = check_vjp(
        row_max_forward,
        full_to_each,
        [TIED],
        check_kinks=True,
        mode=mode,
        raise_exception=False,
    )
    pair = result.pair(0)
    assert not result.ok
    assert set(pair.failed_indices) == {(0, 1), (0, 2), (1, 0), (1, 1), (1, 2)}
    assert "together they are no subgradient" in str(result)


@pytest.mark.parametrize(
    "backward",
    [row_max_backward_to(lambda n: 1.0 / n), first_max_backward],
    ids=["shared", "first"],
)
def test_sharing_or_picking_one_tied_maximum_passes_with_check_kinks(backward):
    result = check_vjp(row_max_forward, backward, [TIED], check_kinks=True, mode="full")
    assert {k.index for k in result.pair(0).kinks} >= {(0, 1), (0, 2)}


def test_the_engines_max_relu_and_abs_at_kinks_pass_with_check_kinks():
    assert gradcheck(lambda x: x.max(axis=1), [TIED], check_kinks=True, mode="full")
    assert gradcheck(lambda x: x.max(), [np.array([1.0, 3.0, 3.0])], check_kinks=True)
    at_zero = np.array([[0.0, 1.5], [0.0, -0.5]])
    assert gradcheck(lambda x: x.relu().sum(), [at_zero], check_kinks=True, mode="full")
    assert gradcheck(lambda x: x.abs().sum(axis=0), [at_zero], check_kinks=True, mode="full")


CAUSAL = np.triu(np.ones((4, 4), dtype=bool), k=1)


def masked_forward(x):
    return np.where(CAUSAL, -np.inf, x), None


def masked_backward(dout, cache):
    return (np.where(CAUSAL, 0.0, dout),)


def leaking_backward(dout, cache):
    return (dout,)  # passes dout through the masked entries too


@pytest.mark.parametrize("mode", ["auto", "full", "fast", "tight"])
def test_a_causal_mask_with_minus_infinity_passes_and_says_how_it_was_compared(mode):
    x = np.random.default_rng(0).normal(size=(4, 4))
    result = check_vjp(masked_forward, masked_backward, [x], mode=mode)
    assert "output 0 has 6 infinite entries: compared as constants" in result.notes[-1]
    assert gradcheck(lambda x: masked_fill(x, CAUSAL, -np.inf), [x], mode=mode)
    assert gradcheck(lambda x: masked_fill(x * x, CAUSAL, -np.inf).exp().sum(), [x], mode=mode)


@pytest.mark.parametrize("mode", ["auto", "full", "fast", "tight"])
def test_a_backward_that_leaks_gradient_through_the_masked_entries_fails(mode):
    x = np.random.default_rng(1).normal(size=(4, 4))
    result = check_vjp(masked_forward, leaking_backward, [x], mode=mode, raise_exception=False)
    assert any(
        p.startswith("backward passes gradient through the 6 infinite entries of output 0")
        for p in result.problems
    )


def test_a_cotangent_on_the_masked_entries_is_checked_too():
    x = np.random.default_rng(2).normal(size=(4, 4))
    dout = np.random.default_rng(3).normal(size=(4, 4))  # nonzero on the masked entries too
    assert check_vjp(masked_forward, masked_backward, [x], cotangent=dout)
    bad = check_vjp(masked_forward, leaking_backward, [x], cotangent=dout, raise_exception=False)
    assert not bad.ok and bad.pair(0).n_failed == 6


def test_an_infinite_entry_that_moves_with_the_input_fails():
    def forward(x):  # -inf only where x is exactly 1: a perturbation makes it finite
        return np.where(x == 1.0, -np.inf, x), x

    def backward(dout, x):
        return (np.where(x == 1.0, 0.0, dout),)

    x = np.array([1.0, 2.0, 3.0])
    result = check_vjp(forward, backward, [x], mode="full", raise_exception=False)
    assert result.pair(0).failed_indices == [(0,)]


def test_nan_outputs_still_fail():
    x = np.array([-1.0, 2.0])
    with np.errstate(invalid="ignore"):
        result = check_vjp(
            np.sqrt, lambda d, x: d / (2 * np.sqrt(x)), [x], cache=False, raise_exception=False
        )
    assert result.problems[0].startswith("output 0 has 1 non-finite value(s)")
