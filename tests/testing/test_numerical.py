"""numerical_jacobian and numerical_vjp: central differences in float64, with documented shapes."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.testing import numerical_jacobian, numerical_vjp
from tinygradlm.testing import strategies as tst


def test_numerical_jacobian_of_elementwise_square_is_diagonal_two_x():
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    (J,) = numerical_jacobian(lambda x: x * x, [x])
    np.testing.assert_allclose(J, np.diag(2 * x.reshape(-1)), atol=1e-8)


@given(data=st.data())
def test_numerical_jacobian_of_matmul_is_a_kronecker_product(data):
    m, k, n = (data.draw(st.integers(1, 4)) for _ in range(3))
    a, b = data.draw(tst.arrays((m, k))), data.draw(tst.arrays((k, n)))
    J_a, J_b = numerical_jacobian(lambda a, b: a @ b, [a, b])
    # out[i, j] = Σ_k a[i, k] b[k, j]: ∂out[i, j]/∂a[i', k] = δ(i, i') b[k, j], row-major order
    np.testing.assert_allclose(J_a, np.kron(np.eye(m), b.T), atol=1e-8)
    np.testing.assert_allclose(J_b, np.kron(a, np.eye(n)), atol=1e-8)


def test_numerical_jacobian_shape_is_out_size_by_in_size_per_input():
    x, y = np.ones((2, 3)), np.ones(4)
    J_x, J_y = numerical_jacobian(lambda x, y: x.sum() * y, [x, y])
    assert J_x.shape == (4, 6)
    assert J_y.shape == (4, 4)


def test_numerical_jacobian_of_tuple_output_is_one_jacobian_per_output():
    x = np.array([1.0, 2.0, 3.0])
    (per_output,) = numerical_jacobian(lambda x: (x.sum(), 2 * x), [x])
    J_sum, J_double = per_output
    np.testing.assert_allclose(J_sum, np.ones((1, 3)), atol=1e-8)
    np.testing.assert_allclose(J_double, 2 * np.eye(3), atol=1e-8)


def test_numerical_jacobian_with_int_argnums_returns_a_single_array():
    x, y = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    J_y = numerical_jacobian(lambda x, y: x * y, [x, y], argnums=1)
    np.testing.assert_allclose(J_y, np.diag(x), atol=1e-8)


def test_integer_inputs_are_passed_through_and_not_differentiated():
    idx, w = np.array([2, 0, 2]), np.arange(6.0).reshape(3, 2)
    (J_w,) = numerical_jacobian(lambda idx, w: w[idx], [idx, w])
    assert J_w.shape == (6, 6)
    np.testing.assert_allclose(J_w.sum(axis=0), [1, 1, 0, 0, 2, 2], atol=1e-8)
    with pytest.raises(ValueError, match="input 0 is a int64 array"):
        numerical_jacobian(lambda idx, w: w[idx], [idx, w], argnums=0)


def test_numerical_jacobian_of_a_function_returning_a_view_of_its_input():
    # the output aliases the perturbed input: it must be copied before the input is restored
    x = np.arange(6.0).reshape(2, 3)
    (J,) = numerical_jacobian(lambda x: x.reshape(-1), [x])
    np.testing.assert_allclose(J, np.eye(6), atol=1e-8)


def test_numerical_helpers_never_modify_the_callers_arrays():
    x32 = np.array([1.0, 2.0], dtype=np.float32)
    x64 = np.array([3.0, 4.0])
    before = (x32.copy(), x64.copy())
    numerical_jacobian(lambda a, b: a * b, [x32, x64])
    numerical_vjp(lambda a, b: a * b, [x32, x64], np.ones(2))
    np.testing.assert_array_equal(x32, before[0])
    np.testing.assert_array_equal(x64, before[1])
    assert x32.dtype == np.float32


@given(data=st.data())
def test_numerical_vjp_equals_cotangent_times_numerical_jacobian(data):
    shape = data.draw(tst.shapes(max_dims=2, max_side=4))
    x, v = data.draw(tst.arrays(shape)), data.draw(tst.arrays((2, *shape)))

    def f(x):
        return np.stack([np.tanh(x) * x.sum(), np.exp(x)])

    (J,) = numerical_jacobian(f, [x])
    (grad,) = numerical_vjp(f, [x], v)
    assert grad.shape == x.shape
    np.testing.assert_allclose(grad.reshape(-1), v.reshape(-1) @ J, atol=1e-7)


def test_numerical_vjp_of_tuple_output_takes_a_tuple_cotangent():
    x, y = np.array([1.0, 2.0]), np.array([3.0, 5.0])
    dx, dy = numerical_vjp(
        lambda x, y: (x * y, x + y), [x, y], (np.array([1.0, 0.0]), np.array([0.0, 2.0]))
    )
    np.testing.assert_allclose(dx, [3.0, 2.0], atol=1e-8)
    np.testing.assert_allclose(dy, [1.0, 2.0], atol=1e-8)


def test_numerical_vjp_rejects_a_cotangent_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"cotangent 0 has shape \(3,\), but output 0 has shape"):
        numerical_vjp(lambda x: x, [np.ones(2)], np.ones(3))
