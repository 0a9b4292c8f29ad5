"""What every backward must do besides giving the right values at one point: give the same grads
when run again, be linear in dout, and not depend on how its arrays are laid out in memory or on
two inputs being one array. Each planted bug is caught; correct backwards pass."""

import numpy as np
import planted_bugs as pb
import pytest

from tinygradlm.autograd import numpy_op
from tinygradlm.testing import check_vjp, gradcheck

RNG = np.random.default_rng(5)
X, W, B = RNG.normal(size=(3, 4)), RNG.normal(size=(4, 2)), RNG.normal(size=2)
MODES = ["auto", "full", "tight"]


def problems_of(forward, backward, inputs, **kwargs):
    return check_vjp(forward, backward, inputs, raise_exception=False, **kwargs).problems


def accumulating_square_backward():
    """Adds each call's gradient into a buffer it keeps, and returns the buffer."""
    kept = {}

    def backward(dout, x):
        kept["grad"] = kept.get("grad", 0.0) + 2 * x * dout
        return (kept["grad"].copy(),)

    return backward


def noisy_square_backward(noise):
    rng = np.random.default_rng(0)

    def backward(dout, x):
        return (2 * x * dout + noise * rng.standard_normal(x.shape),)

    return backward


def product_forward(x, y):
    return x * y, (x, y)


def product_backward_keyed_by_identity(dout, cache):
    """Accumulates grads in a dict keyed by the input arrays' identity: right for two arrays,
    doubled when the caller passes one array twice."""
    x, y = cache
    grads = {}
    grads[id(x)] = grads.get(id(x), 0.0) + dout * y
    grads[id(y)] = grads.get(id(y), 0.0) + dout * x
    return grads[id(x)], grads[id(y)]


def storage_order_backward(dout, cache):
    """Reads ``w`` in the order its elements lie in memory, as a kernel indexing a raw pointer
    would: right for a C-contiguous ``w``, transposed garbage otherwise."""
    x, w = cache
    w_memory_order = w.ravel(order="K").reshape(w.shape)
    return dout @ w_memory_order.T, x.T @ dout, dout.sum(axis=0)


@pytest.mark.parametrize("mode", MODES)
def test_correct_backwards_pass_every_property_check(mode):
    assert check_vjp(pb.linear_forward, pb.linear_backward, [X, W, B], mode=mode)
    assert check_vjp(product_forward, lambda d, c: (d * c[1], d * c[0]), [X, X], mode=mode)
    assert gradcheck(lambda x, w: (x @ w).tanh(), [X, W], mode=mode)
    assert gradcheck(lambda a, b: a * b + a, [X, X], mode=mode)  # aliased: grads add up


@pytest.mark.parametrize("mode", MODES)
def test_a_backward_that_keeps_state_between_calls_is_not_reentrant(mode):
    problems = problems_of(pb.square_forward, accumulating_square_backward(), [X], mode=mode)
    assert any(p.startswith("backward is not reentrant (input 0, output 0)") for p in problems)


def test_a_nondeterministic_backward_fails_bitwise_and_passes_within_nondet_tol():
    problems = problems_of(pb.square_forward, noisy_square_backward(1e-12), [X], mode="full")
    assert any("not reentrant" in p and "nondet_tol=0" in p for p in problems)
    assert check_vjp(pb.square_forward, noisy_square_backward(1e-12), [X], nondet_tol=1e-9)


@pytest.mark.parametrize("mode", MODES)
def test_a_backward_that_ignores_dout_is_not_linear(mode):
    # for a scalar output the one-hot cotangent of full mode is 1.0: only linearity sees this
    def forward(x):
        return (x * x).sum(), x

    problems = problems_of(forward, lambda dout, x: (2 * x,), [X], mode=mode)
    assert any(p.startswith("backward is not linear in dout (input 0") for p in problems)
    assert check_vjp(forward, lambda dout, x: (2 * x * dout,), [X], mode=mode)


@pytest.mark.parametrize("mode", MODES)
def test_a_backward_that_adds_a_constant_is_not_linear(mode):
    def backward(dout, cache):
        dx, dw, db = pb.linear_backward(dout, cache)
        return dx, dw, db + 1e-3

    problems = problems_of(pb.linear_forward, backward, [X, W, B], mode=mode)
    assert any(p.startswith("backward is not linear in dout (input 2") for p in problems)


@pytest.mark.parametrize("mode", MODES)
def test_a_backward_that_reads_memory_in_storage_order_is_caught(mode):
    problems = problems_of(pb.linear_forward, storage_order_backward, [X, W, B], mode=mode)
    assert any(
        p.startswith("backward gives other grads when its inputs and dout are not C-contiguous")
        and "input 0" in p
        for p in problems
    )


def test_a_forward_that_reads_memory_in_storage_order_is_caught():
    def forward(x):
        return np.tanh(x.ravel(order="K").reshape(x.shape)), x

    problems = problems_of(forward, lambda d, x: (d * (1 - np.tanh(x) ** 2),), [X])
    assert any(p.startswith("forward gives other outputs when its inputs") for p in problems)


def test_a_backward_that_mishandles_aliased_inputs_is_caught_with_check_vjp_and_gradcheck():
    problems = problems_of(product_forward, product_backward_keyed_by_identity, [X, X])
    assert any("when inputs 0 and 1 are one array (as passed)" in p for p in problems)
    assert check_vjp(product_forward, product_backward_keyed_by_identity, [X, X.copy()])
    op = numpy_op(product_forward, product_backward_keyed_by_identity)
    result = gradcheck(lambda a, b: op(a, b), [X, X], raise_exception=False)
    assert any("are one array" in p for p in result.problems)


def test_a_kernel_that_refuses_non_contiguous_arrays_is_noted_not_failed():
    def forward(x):
        if not x.flags.c_contiguous:
            raise TypeError("x must be C-contiguous")
        return x * x, x

    result = check_vjp(forward, pb.square_backward, [X])
    expected = "raised TypeError when its inputs and dout are not C-contiguous"
    assert any(expected in note for note in result.notes)


def test_property_checks_can_be_turned_off():
    # fast mode calls the backward once, so only the property checks see the kept state
    kept = accumulating_square_backward()
    assert check_vjp(pb.square_forward, kept, [X], mode="fast", check_properties=False)
    result = check_vjp(pb.linear_forward, storage_order_backward, [X, W, B], check_properties=False)
    assert result.ok and not result.problems
