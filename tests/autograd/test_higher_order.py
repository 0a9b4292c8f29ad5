"""Higher-order gradients: every op's backward is itself differentiable, the second derivatives
agree with finite differences, closed forms and PyTorch, the helpers (grad, hvp, jacobian,
hessian, gradients) behave as documented, and first-order results are unchanged."""

import doctest
import math

import numpy as np
import pytest
from gpt_block import Ours, block_loss, block_problem, ours_params, torch_ops
from hypothesis import given
from hypothesis import strategies as st

import tinygradlm.autograd.higher
import tinygradlm.autograd.tensor
import tinygradlm.testing.gradgrad
from tinygradlm.autograd import (
    Tensor,
    concatenate,
    cross_entropy,
    dropout,
    embedding,
    enable_grad,
    grad,
    gradients,
    hessian,
    hvp,
    jacobian,
    layer_norm,
    log_softmax,
    masked_fill,
    no_grad,
    numpy_op,
    scatter_add,
    softmax,
    split,
    stack,
    where,
)
from tinygradlm.autograd.tensor import forward_value
from tinygradlm.testing import gradcheck, gradgradcheck
from tinygradlm.testing import strategies as tst

RNG = np.random.default_rng(1234)
X = RNG.normal(size=(3, 4))  # away from every kink with probability 1
Y = RNG.normal(size=(3, 4))
Z = RNG.normal(size=(4, 4))
POS = RNG.uniform(0.5, 2.0, size=(3, 4))
IDX = np.array([2, 0, 2, 1])
TARGETS = np.array([1, 3, -100])
CAUSAL = np.triu(np.ones((3, 4), bool), 1)

# fn, inputs: every op of the engine, on float64 inputs
OPS = {
    "add": (lambda a, b: a + b, [X, Y[0]]),
    "sub": (lambda a, b: a - b, [X, Y[:, :1]]),
    "mul": (lambda a, b: a * b, [X, Y]),
    "div": (lambda a, b: a / b, [X, POS]),
    "neg": (lambda a: -a, [X]),
    "pow 0": (lambda a: a**0, [X]),
    "pow 1": (lambda a: a**1, [X]),
    "pow 2": (lambda a: a**2, [X]),
    "pow 3": (lambda a: a**3, [X]),
    "pow -0.5": (lambda a: a**-0.5, [POS]),
    "pow 1.7": (lambda a: a**1.7, [POS]),
    "exp": (lambda a: a.exp(), [X]),
    "log": (lambda a: a.log(), [POS]),
    "sqrt": (lambda a: a.sqrt(), [POS]),
    "abs": (lambda a: a.abs(), [X]),
    "tanh": (lambda a: a.tanh(), [X]),
    "sigmoid": (lambda a: a.sigmoid(), [X]),
    "relu": (lambda a: a.relu(), [X]),
    "gelu": (lambda a: a.gelu(), [X]),
    "softmax": (lambda a: softmax(a, 0), [X]),
    "log_softmax": (lambda a: log_softmax(a, -1), [X]),
    "sum": (lambda a: a.sum(axis=1), [X]),
    "mean": (lambda a: a.mean(axis=(0, 1), keepdims=True), [X]),
    "var": (lambda a: a.var(axis=0, ddof=1), [X]),
    "max": (lambda a: a.max(axis=1), [X]),
    "min": (lambda a: a.min(), [X]),
    "reshape": (lambda a: a.reshape(2, 6) * a.reshape(2, 6), [X]),
    "transpose": (lambda a: a.T @ a, [X]),
    "broadcast_to": (lambda a: a.broadcast_to(2, 3, 4) * a, [X]),
    "getitem basic": (lambda a: a[1:, None, ::2] ** 2, [X]),
    "getitem gather": (lambda a: a[IDX % 3] * a[IDX % 3], [X]),
    "getitem mask": (lambda a: a[a.data > 0] ** 3, [X]),
    "scatter_add": (lambda a: scatter_add(a * a, IDX % 3, (3, 4)), [Z]),
    "index_add": (lambda a, b: a.index_add(IDX % 3, b * b) ** 2, [X, Z]),
    "matmul 2-D": (lambda a, b: (a @ b.T).tanh(), [X, Y]),
    "matmul 1-D": (lambda a, b: (a[0] @ b.T) * (a @ b[1]), [X, Y]),
    "matmul batched": (lambda a, b: (a.reshape(3, 2, 2) @ b.reshape(3, 2, 2)) ** 2, [X, Y]),
    "astype": (lambda a: a.astype(np.float64) ** 2, [X]),
    "cross_entropy": (lambda a: cross_entropy(a, TARGETS), [X]),
    "embedding": (lambda w: embedding(IDX % 3, w) ** 2, [X]),
    "where": (lambda a, b: where(a.data > 0, a * a, b.exp()), [X, Y]),
    "masked_fill": (lambda a: softmax(masked_fill(a, CAUSAL, -np.inf)), [X]),
    "concatenate": (lambda a, b: concatenate([a * a, b], axis=1).exp(), [X, Y]),
    "stack": (lambda a, b: stack([a, b * a], axis=1) ** 2, [X, Y]),
    "split": (lambda a: split(a, [1], axis=0)[1] ** 3, [X]),
    "dropout": (lambda a: dropout(a * a, 0.3, np.random.default_rng(0)), [X]),
    "layer_norm": (lambda a, w, b: layer_norm(a, w, b), [X, Y[0], Y[1]]),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(OPS))
def test_second_derivative_of_every_op_matches_finite_differences(name):
    fn, inputs = OPS[name]
    gradgradcheck(fn, inputs, mode="full")


@given(data=st.data())
def test_double_backward_of_broadcast_binary_ops_matches_fd(data):
    shape_a, shape_b = data.draw(tst.broadcastable_shapes(max_side=3))
    a = data.draw(tst.arrays(shape_a))
    b = data.draw(tst.arrays(shape_b, min_abs=0.5))
    op = data.draw(st.sampled_from(["add", "sub", "mul", "div"]))
    gradgradcheck(OPS[op][0], [a, b], mode="full")


@given(data=st.data())
def test_double_backward_of_matmul_matches_fd_for_1d_2d_and_batched(data):
    shape_a, shape_b = data.draw(tst.matmul_shapes(max_side=3))
    a, b = data.draw(tst.arrays(shape_a)), data.draw(tst.arrays(shape_b))
    gradgradcheck(lambda x, y: (x @ y) * (x @ y), [a, b], mode="full")


# --------------------------------------------------------------------------------------------
# a planted wrong double backward is caught (and passes a first-order check)
# --------------------------------------------------------------------------------------------


def tanh_with_cut_backward(x):
    """tanh whose backward uses the forward's array: right gradient, no second derivative."""
    out = np.tanh(x.data)
    return Tensor._make(out, (x,), lambda g: (g * Tensor(1.0 - out * out),), "tanh")


def sigmoid_with_wrong_recompute(x):
    """sigmoid whose backward, when recorded, recomputes its output as tanh instead."""
    out = 1.0 / (1.0 + np.exp(-x.data))

    def backward(g):
        s = forward_value(out, x.tanh)  # the planted bug: should be x.sigmoid
        return (g * s * (1.0 - s),)

    return Tensor._make(out, (x,), backward, "sigmoid")


@pytest.mark.parametrize("op", [tanh_with_cut_backward, sigmoid_with_wrong_recompute])
def test_a_wrong_double_backward_passes_gradcheck_but_fails_gradgradcheck(op):
    assert gradcheck(op, [X], mode="full")
    result = gradgradcheck(op, [X], mode="full", raise_exception=False)
    assert not result.ok
    assert result.checker == "gradgradcheck"
    assert "input 0" in str(result)  # the failing second derivative is wrt x, named as input 0


def test_gradgradcheck_in_tight_mode_sees_a_second_derivative_off_by_one_part_in_a_million():
    def tanh_slightly_off(x):
        """tanh whose recorded backward scales the second derivative by 1 + 1e-6."""
        out = np.tanh(x.data)

        def backward(g):
            y = forward_value(out, x.tanh)
            return (g * (1.0 - y * y) + g * (y * y - y.detach() * y.detach()) * 1e-6,)

        return Tensor._make(out, (x,), backward, "tanh")

    assert gradgradcheck(lambda t: t.tanh(), [X], mode="tight")
    assert gradgradcheck(tanh_slightly_off, [X], raise_exception=False).ok  # below the default
    assert not gradgradcheck(tanh_slightly_off, [X], mode="tight", raise_exception=False).ok


def test_gradgradcheck_rejects_cotangents_of_the_wrong_shape():
    with pytest.raises(ValueError, match="do not match"):
        gradgradcheck(lambda t: t.tanh(), [X], grad_outputs=np.ones(3))


# --------------------------------------------------------------------------------------------
# closed forms
# --------------------------------------------------------------------------------------------

POINTS = np.array([-2.0, -0.3, 0.0, 0.7, 1.9])


@pytest.mark.parametrize(
    "f, second",
    [
        (lambda x: x.tanh(), lambda x: -2 * np.tanh(x) * (1 - np.tanh(x) ** 2)),
        (lambda x: x.exp(), np.exp),
        (lambda x: x**3, lambda x: 6 * x),
        (lambda x: x.sigmoid(), lambda x: (s := 1 / (1 + np.exp(-x))) * (1 - s) * (1 - 2 * s)),
        (lambda x: 3.0 * x**0 + 2.0 * x + x**2, lambda x: 2 + 0 * x),
    ],
    ids=["tanh", "exp", "cube", "sigmoid", "polynomial"],
)
def test_second_derivative_equals_its_closed_form(f, second):
    # f acts elementwise, so ∂/∂x_i Σ_j f'(x_j) = f''(x_i)
    d2 = grad(lambda x: grad(lambda y: f(y).sum())(x).sum())(POINTS)
    np.testing.assert_allclose(d2, second(POINTS), rtol=1e-12, atol=1e-12)


def test_softmax_hessian_equals_its_closed_form():
    # s = softmax(x): ∂²s_i/∂x_j∂x_k = s_i[(δ_ij − s_j)(δ_ik − s_k) − s_j(δ_jk − s_k)]
    x = np.array([0.3, -1.1, 0.8, 0.05])
    s = np.exp(x) / np.exp(x).sum()
    eye = np.eye(4)
    for i in range(4):
        expected = s[i] * (np.outer(eye[i] - s, eye[i] - s) - s[:, None] * (eye - s[None, :]))
        got = hessian(lambda t, i=i: softmax(t)[i])(x)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_pow_zero_has_zero_gradient_at_zero_and_the_polynomial_stays_finite():
    x = Tensor(np.array([0.0, 1.5]), requires_grad=True)
    (x**0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])
    x.grad = None
    (3.0 * x**0 + 2.0 * x + x**2).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0 + 2 * 1.5])  # 2 + 2x


def test_pow_gradients_at_zero_follow_the_math():
    zero = np.array([0.0])
    assert grad(lambda x: (x**1).sum())(zero)[0] == 1.0
    assert grad(lambda x: (x**2).sum())(zero)[0] == 0.0
    assert grad(grad(lambda x: (x**2).sum()))(zero)[0] == 2.0
    with np.errstate(divide="ignore"):
        assert grad(lambda x: (x**0.5).sum())(zero)[0] == np.inf  # d√x/dx = 1/(2√x)


# --------------------------------------------------------------------------------------------
# Hessian-vector products of a one-layer GPT
# --------------------------------------------------------------------------------------------


def block_hvp(arrays, idx, targets, dims, vectors):
    """H·v of the one-layer GPT's loss with respect to all its parameters at once."""
    names = sorted(arrays)

    def loss(*params):
        return block_loss(Ours, dict(zip(names, params, strict=True)), idx, targets, *dims)

    products = hvp(loss, [arrays[k] for k in names], [vectors[k] for k in names])
    return dict(zip(names, products, strict=True))


def test_gpt_block_hvp_matches_pytorch_double_backward():
    torch = pytest.importorskip("torch")
    arrays, idx, targets, dims = block_problem()
    rng = np.random.default_rng(5)
    vectors = {k: rng.normal(size=a.shape) for k, a in arrays.items()}
    ours = block_hvp(arrays, idx, targets, dims, vectors)

    params = {k: torch.tensor(a, requires_grad=True) for k, a in arrays.items()}
    loss = block_loss(torch_ops(torch), params, idx, targets, *dims)
    first = torch.autograd.grad(loss, list(params.values()), create_graph=True)
    dot = sum((g * torch.tensor(vectors[k])).sum() for g, k in zip(first, params, strict=True))
    theirs = torch.autograd.grad(dot, list(params.values()))
    for k, t in zip(params, theirs, strict=True):
        np.testing.assert_allclose(ours[k], t.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)


def test_gpt_block_hvp_matches_finite_differences_of_the_gradient():
    arrays, idx, targets, dims = block_problem(seed=3)
    rng = np.random.default_rng(6)
    vectors = {k: rng.normal(size=a.shape) for k, a in arrays.items()}
    ours = block_hvp(arrays, idx, targets, dims, vectors)

    def gradient_at(step):
        params = ours_params({k: a + step * vectors[k] for k, a in arrays.items()})
        block_loss(Ours, params, idx, targets, *dims).backward()
        return {k: p.grad for k, p in params.items()}

    h = 1e-5  # H·v ≈ (∇f(x + hv) − ∇f(x − hv)) / 2h, error O(h²) plus rounding O(ε/h)
    plus, minus = gradient_at(h), gradient_at(-h)
    for k in arrays:
        np.testing.assert_allclose(ours[k], (plus[k] - minus[k]) / (2 * h), rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------------------------
# the helpers
# --------------------------------------------------------------------------------------------


def test_grad_of_several_arguments_and_tensor_arguments():
    f = lambda x, y: (x * y * y).sum()  # noqa: E731
    x, y = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    gx, gy = grad(f, argnums=(0, 1))(x, y)
    np.testing.assert_array_equal(gx, y * y)
    np.testing.assert_array_equal(gy, 2 * x * y)
    out = grad(f, argnums=1)(Tensor(x), Tensor(y))
    assert isinstance(out, Tensor)
    with pytest.raises(ValueError, match="single-element"):
        grad(lambda x: x * 2.0)(x)


def test_hvp_equals_the_hessian_times_the_vector():
    f = lambda x, w: ((x @ w).tanh() ** 2).sum()  # noqa: E731
    x, w = RNG.normal(size=(2, 3)), RNG.normal(size=3)
    v = RNG.normal(size=3)
    H = hessian(f, argnum=1)(x, w)
    np.testing.assert_allclose(hvp(lambda w: f(x, w), w, v), H @ v, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(H, H.T, rtol=1e-12, atol=1e-14)  # a Hessian is symmetric
    np.testing.assert_array_equal(hvp(lambda w: (w * 2.0).sum(), w, v), np.zeros(3))


def test_jacobian_of_a_vector_function():
    x = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(jacobian(lambda t: t.exp())(x), np.diag(np.exp(x)), rtol=1e-15)


def test_gradients_leaves_grad_alone_and_gives_zeros_for_unused_inputs():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    unused = Tensor(np.array([5.0]), requires_grad=True)
    h = x * x
    dx, dh, du = gradients((h * 3.0).sum(), [x, h, unused])
    np.testing.assert_array_equal(dx.data, 6 * x.data)
    np.testing.assert_array_equal(dh.data, [3.0, 3.0])
    np.testing.assert_array_equal(du.data, [0.0])
    assert x.grad is None and unused.grad is None


def test_gradients_of_several_outputs_sum_their_vector_jacobian_products():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    a, b = x * x, x.exp()
    v, w = np.array([1.0, -1.0]), np.array([0.5, 2.0])
    (dx,) = gradients([a, b], x, [v, w])
    np.testing.assert_allclose(dx.data, v * 2 * x.data + w * np.exp(x.data), rtol=1e-15)


def test_enable_grad_records_inside_no_grad_and_grad_works_there():
    x = Tensor(np.array([2.0]), requires_grad=True)
    with no_grad():
        assert not (x * x).requires_grad
        with enable_grad():
            assert (x * x).requires_grad
        assert grad(lambda t: (t**3).sum())(np.array([2.0]))[0] == 12.0


def test_create_graph_leaves_a_tensor_grad_that_differentiates_again():
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    (x**3).sum().backward(create_graph=True)
    g = x.grad
    assert isinstance(g, Tensor) and g.requires_grad
    np.testing.assert_array_equal(g.data, 3 * x.data**2)
    x.grad = None
    (g * g).sum().backward()  # d/dx Σ (3x²)² = 36x³
    np.testing.assert_allclose(x.grad, 36 * x.data**3)
    assert isinstance(x.grad, np.ndarray)


def test_numpy_op_refuses_to_be_differentiated_twice_and_names_itself():
    op = numpy_op(lambda x: (x * x, x), lambda dout, x: (2 * x * dout,), name="square")
    x = Tensor(X, requires_grad=True)
    op(x).sum().backward()  # first order works
    np.testing.assert_array_equal(x.grad, 2 * X)
    with pytest.raises(RuntimeError, match=r"square.*create_graph"):
        op(x).sum().backward(create_graph=True)


# --------------------------------------------------------------------------------------------
# first-order results are bitwise those of the NumPy formulas
# --------------------------------------------------------------------------------------------

X32 = X.astype(np.float32)
G32 = Y.astype(np.float32)
T32 = np.tanh(X32)
S32 = np.exp(X32 - X32.max(-1, keepdims=True)) / np.exp(X32 - X32.max(-1, keepdims=True)).sum(
    -1, keepdims=True
)
U32 = np.tanh(math.sqrt(2 / math.pi) * (X32 + 0.044715 * X32**3))  # Python floats: float32
C32 = X32 - X32.mean(axis=1, keepdims=True)

FIRST_ORDER = {
    "mul": (lambda t: t * t, G32 * X32 + G32 * X32),
    "div": (lambda t: t / 1.5, G32 / np.float32(1.5)),
    "exp": (lambda t: t.exp(), G32 * np.exp(X32)),
    "tanh": (lambda t: t.tanh(), G32 * (1 - T32 * T32)),
    "pow 3": (lambda t: t**3, G32 * np.float32(3) * X32 ** np.float32(2)),
    "gelu": (
        lambda t: t.gelu(),
        G32
        * (
            0.5 * (1 + U32)
            + 0.5
            * X32
            * (1 - U32 * U32)
            * (math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * X32 * X32))
        ),
    ),
    "softmax": (lambda t: softmax(t), S32 * (G32 - (G32 * S32).sum(-1, keepdims=True))),
    "var": (lambda t: t.var(axis=1, keepdims=True), G32[:, :1] * C32 * np.float32(2 / 4)),
    "matmul": (lambda t: t @ Tensor(X32.T), G32[:, :3] @ X32),
}


@pytest.mark.parametrize("name", sorted(FIRST_ORDER))
def test_first_order_gradient_is_bitwise_the_numpy_formula(name):
    fn, expected = FIRST_ORDER[name]
    x = Tensor(X32, requires_grad=True)
    out = fn(x)
    out.backward(G32[: out.shape[0], : out.shape[1]])
    assert isinstance(x.grad, np.ndarray) and x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, expected)


def test_first_order_cross_entropy_gradient_is_bitwise_softmax_minus_onehot():
    logits = Tensor(X32, requires_grad=True)
    targets = np.array([1, 3, -100])
    cross_entropy(logits, targets).backward()
    logp = X32 - X32.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    expected = np.exp(logp)
    expected[[0, 1], [1, 3]] -= 1
    expected *= (np.array([1, 1, 0]) / np.float32(2))[:, None].astype(np.float32)
    np.testing.assert_array_equal(logits.grad, expected)


@pytest.mark.parametrize(
    "module",
    [tinygradlm.autograd.higher, tinygradlm.autograd.tensor, tinygradlm.testing.gradgrad],
    ids=lambda m: m.__name__,
)
def test_docstring_examples_run(module):
    assert doctest.testmod(module).failed == 0
