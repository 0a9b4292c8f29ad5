"""The engine itself: graph recording, accumulation, topological order, grad mode, dtypes and
errors."""

import time

import numpy as np
import pytest

import tinygradlm
from tinygradlm.autograd import Tensor, no_grad, numpy_op, unbroadcast


def test_package_reexports_tensor():
    assert tinygradlm.Tensor is Tensor


def test_python_floats_become_float32_and_float64_arrays_stay_float64():
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor(3.0).dtype == np.float32
    x = Tensor(np.ones(3), requires_grad=True)
    assert x.dtype == np.float64
    y = ((x * 2.0 + 1.0) / 3.0).exp().tanh().sum()
    assert y.dtype == np.float64
    y.backward()
    assert x.grad.dtype == np.float64


def test_integer_tensors_stay_integer_and_cannot_require_grad():
    idx = Tensor(np.array([0, 2, 1]))
    assert idx.dtype.kind == "i"
    with pytest.raises(TypeError, match="only floating-point"):
        Tensor(np.array([1, 2]), requires_grad=True)


def test_mixing_float32_and_float64_names_both_operands():
    a = Tensor(np.ones((2, 3), np.float32))
    b = Tensor(np.ones((2, 3), np.float64))
    with pytest.raises(TypeError, match=r"shape \(2, 3\) float32 and shape \(2, 3\) float64"):
        a * b
    assert (a.double() * b).dtype == np.float64
    assert (a * b.float()).dtype == np.float32


def test_shape_mismatch_error_names_both_shapes():
    with pytest.raises(ValueError, match=r"shape \(2, 3\) float32 and shape \(4,\) float32"):
        Tensor(np.ones((2, 3), np.float32)) + Tensor(np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"\(2, 3\).*@.*\(2, 3\)"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((2, 3)))


def test_backward_on_nonscalar_without_gradient_is_an_error():
    x = Tensor(np.ones((2, 2)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"non-scalar tensor of shape \(2, 2\)"):
        (x * 2.0).backward()
    with pytest.raises(ValueError, match="does not match"):
        (x * 2.0).backward(np.ones(3))


def test_backward_without_any_grad_input_is_an_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (Tensor([1.0]) * 2.0).sum().backward()


def test_gradient_accumulates_when_a_tensor_is_used_twice():
    x = Tensor(np.array([1.5, -2.0]), requires_grad=True)
    (x * x + x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 1)


def test_gradient_accumulates_across_backward_calls():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * 3.0).sum()
    y.backward()
    y.backward()
    np.testing.assert_allclose(x.grad, [6.0, 6.0])
    x.zero_grad()
    assert x.grad is None


def test_diamond_graph_sums_both_paths():
    # y = a·b with a = 2x and b = x + 1: dy/dx = 2(x + 1) + 2x
    x = Tensor(np.array(3.0), requires_grad=True)
    a = x * 2.0
    b = x + 1.0
    (a * b).backward()
    assert x.grad == pytest.approx(2 * (3 + 1) + 2 * 3)


def test_deep_chain_backpropagates_without_recursion_error_in_linear_time():
    def chain_seconds(n):
        x = Tensor(np.array(1.0), requires_grad=True)
        y = x
        for _ in range(n):
            y = y * 1.0 + 0.0
        start = time.perf_counter()
        y.backward()
        elapsed = time.perf_counter() - start
        assert x.grad == 1.0
        return elapsed

    small = chain_seconds(10_000)
    large = chain_seconds(100_000)  # 200,000 ops
    # linear time: 10× the ops should cost about 10×, far from the 100× of a quadratic walk
    assert large < 40 * small + 0.5


def test_no_grad_records_nothing_and_restores_state():
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.is_leaf
    assert (x * 2.0).requires_grad

    @no_grad()
    def f(t):
        return t * 2.0

    assert not f(x).requires_grad


def test_detach_shares_data_but_cuts_the_graph():
    x = Tensor(np.ones(3), requires_grad=True)
    d = (x * 2.0).detach()
    assert not d.requires_grad
    (x * d).sum().backward()
    np.testing.assert_allclose(x.grad, d.data)


def test_non_leaf_grads_are_kept_only_when_retained():
    x = Tensor(np.ones(2), requires_grad=True)
    h = x * 3.0
    assert h.parents[0] is x and h.op == "mul" and x.parents == ()
    k = (x * 4.0).retain_grad()
    (h + k).sum().backward()
    assert h.grad is None
    np.testing.assert_allclose(k.grad, [1.0, 1.0])


def test_unbroadcast_sums_prepended_and_stretched_axes():
    g = np.ones((4, 2, 3))
    assert unbroadcast(g, (2, 1)).tolist() == [[12.0], [12.0]]
    assert unbroadcast(g, (3,)).tolist() == [8.0, 8.0, 8.0]
    assert unbroadcast(g, ()).item() == 24.0
    with pytest.raises(ValueError):
        unbroadcast(g, (5,))


def test_numpy_op_rejects_a_gradient_of_the_wrong_shape():
    def forward(x):
        return x.sum(axis=0), x.shape

    def backward(dout, shape):
        return (dout,)  # forgot to broadcast back to (3, 4)

    op = numpy_op(forward, backward)
    x = Tensor(np.ones((3, 4)), requires_grad=True)
    with pytest.raises(ValueError, match=r"shape \(4,\) for input 0 of shape \(3, 4\)"):
        op(x).sum().backward()


def test_numpy_op_feeds_its_gradient_into_the_graph():
    def forward(x, w):
        return x @ w, (x, w)

    def backward(dout, cache):
        x, w = cache
        return dout @ w.T, x.T @ dout

    linear = numpy_op(forward, backward, name="linear")
    x = Tensor(np.random.default_rng(0).normal(size=(2, 3)), requires_grad=True)
    w = Tensor(np.random.default_rng(1).normal(size=(3, 4)), requires_grad=True)
    (linear(x, w) * 2.0).sum().backward()
    x2, w2 = x.detach(), w.detach()
    x2.requires_grad = w2.requires_grad = True
    ((x2 @ w2) * 2.0).sum().backward()
    np.testing.assert_allclose(x.grad, x2.grad)
    np.testing.assert_allclose(w.grad, w2.grad)


def test_reflected_operators_with_arrays_and_scalars():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = (2.0 - x) + (1.0 / x) + np.array([1.0, 1.0]) * x
    np.testing.assert_allclose(y.data, [3.0, 2.5])
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [-1.0, -0.25])


def test_comparisons_give_boolean_masks_outside_the_graph():
    x = Tensor(np.array([-1.0, 0.5, 2.0]), requires_grad=True)
    mask = x > 0
    assert mask.dtype == np.bool_ and not mask.requires_grad
    x[mask].sum().backward()
    np.testing.assert_allclose(x.grad, [0.0, 1.0, 1.0])


def test_pow_rejects_a_tensor_exponent():
    with pytest.raises(TypeError, match="scalar exponent"):
        Tensor([1.0]) ** Tensor([2.0])
