"""Every op: forward values against plain NumPy, gradients against float64 finite differences,
over hypothesis-drawn shapes (broadcasting included)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.autograd import (
    Tensor,
    concatenate,
    cross_entropy,
    embedding,
    layer_norm,
    log_softmax,
    masked_fill,
    softmax,
    split,
    stack,
    where,
)
from tinygradlm.testing import gradcheck
from tinygradlm.testing import strategies as tst


def check(fn, inputs, expected=None, **kwargs):
    """Forward value equals ``expected`` (plain NumPy) and the gradient passes gradcheck."""
    if expected is not None:
        out = fn(*(Tensor(x) if isinstance(x, np.ndarray) else x for x in inputs))
        np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)
    gradcheck(fn, inputs, mode="full", **kwargs)


# --------------------------------------------------------------------------------------------
# elementwise
# --------------------------------------------------------------------------------------------

BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data())
def test_binary_op_matches_numpy_and_fd_under_broadcasting(name, data):
    shape_a, shape_b = data.draw(tst.broadcastable_shapes())
    a = data.draw(tst.arrays(shape_a))
    b = data.draw(tst.arrays(shape_b, min_abs=0.5 if name == "div" else None))
    op, ref = BINARY[name]
    check(op, [a, b], ref(a, b))


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data())
def test_binary_op_with_a_python_scalar_on_either_side(name, data):
    a = data.draw(tst.arrays(data.draw(tst.shapes()), min_abs=0.5))
    op, ref = BINARY[name]
    check(lambda x: op(x, 1.5), [a], ref(a, 1.5))
    check(lambda x: op(-0.75, x), [a], ref(-0.75, a))


UNARY = {
    "neg": (lambda x: -x, np.negative, {}),
    "exp": (lambda x: x.exp(), np.exp, {}),
    "log": (lambda x: x.log(), np.log, {"positive": True}),
    "sqrt": (lambda x: x.sqrt(), np.sqrt, {"positive": True}),
    "tanh": (lambda x: x.tanh(), np.tanh, {}),
    "sigmoid": (lambda x: x.sigmoid(), lambda x: 1 / (1 + np.exp(-x)), {}),
    "relu": (lambda x: x.relu(), lambda x: np.maximum(x, 0), {"min_abs": 0.1}),
    "abs": (lambda x: x.abs(), np.abs, {"min_abs": 0.1}),
    "gelu": (
        lambda x: x.gelu(),
        lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
        {},
    ),
    "square": (lambda x: x**2, np.square, {}),
    "cube": (lambda x: x**3, lambda x: x**3, {}),
    "rsqrt": (lambda x: x**-0.5, lambda x: x**-0.5, {"positive": True}),
    "pow_1.7": (lambda x: x**1.7, lambda x: x**1.7, {"positive": True}),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data())
def test_unary_op_matches_numpy_and_fd(name, data):
    op, ref, opts = UNARY[name]
    shape = data.draw(tst.shapes())
    if opts.get("positive"):
        x = data.draw(tst.positive_arrays(shape))
    else:
        x = data.draw(tst.arrays(shape, min_abs=opts.get("min_abs")))
    check(op, [x], ref(x))


def test_sigmoid_is_finite_for_large_inputs():
    x = Tensor(np.array([-1000.0, 0.0, 1000.0], np.float32), requires_grad=True)
    y = x.sigmoid()
    np.testing.assert_allclose(y.data, [0.0, 0.5, 1.0])
    y.sum().backward()
    assert np.isfinite(x.grad).all()


@given(data=st.data())
def test_astype_round_trip_carries_the_gradient(data):
    x = data.draw(tst.arrays(data.draw(tst.shapes())))
    check(lambda t: t.float().double() * 3.0, [x])
    t = Tensor(x, requires_grad=True)
    (t.float() * 2.0).sum().backward()
    assert t.grad.dtype == np.float64
    np.testing.assert_allclose(t.grad, 2.0)


# --------------------------------------------------------------------------------------------
# matmul
# --------------------------------------------------------------------------------------------


@given(data=st.data())
def test_matmul_matches_numpy_and_fd_for_1d_2d_and_batched(data):
    shape_a, shape_b = data.draw(tst.matmul_shapes())
    a, b = data.draw(tst.arrays(shape_a)), data.draw(tst.arrays(shape_b))
    check(lambda x, y: x @ y, [a, b], np.matmul(a, b))


def test_matmul_with_an_ndarray_on_the_left():
    w = Tensor(np.ones((3, 2)), requires_grad=True)
    out = np.ones((4, 3)) @ w
    assert isinstance(out, Tensor) and out.shape == (4, 2)
    out.sum().backward()
    np.testing.assert_allclose(w.grad, 4.0)


# --------------------------------------------------------------------------------------------
# reductions
# --------------------------------------------------------------------------------------------


@st.composite
def array_and_axis(draw, min_dims=1, **array_kwargs):
    shape = draw(tst.shapes(min_dims=min_dims))
    x = draw(tst.arrays(shape, **array_kwargs))
    choice = draw(st.sampled_from(["none", "int", "negative", "tuple"]))
    if choice == "none":
        axis = None
    elif choice == "int":
        axis = draw(st.integers(0, len(shape) - 1))
    elif choice == "negative":
        axis = draw(st.integers(-len(shape), -1))
    else:
        axis = tuple(draw(st.sets(st.integers(0, len(shape) - 1), min_size=1)))
    return x, axis, draw(st.booleans())


@pytest.mark.parametrize("name", ["sum", "mean", "var"])
@given(case=array_and_axis())
def test_reduction_matches_numpy_and_fd(name, case):
    x, axis, keepdims = case
    expected = getattr(np, name)(x, axis=axis, keepdims=keepdims)
    check(lambda t: getattr(t, name)(axis=axis, keepdims=keepdims), [x], expected)


@pytest.mark.parametrize("name", ["max", "min"])
@given(case=array_and_axis(min_gap=0.05))
def test_max_and_min_match_numpy_and_fd_without_ties(name, case):
    x, axis, keepdims = case
    expected = getattr(np, name)(x, axis=axis, keepdims=keepdims)
    check(lambda t: getattr(t, name)(axis=axis, keepdims=keepdims), [x], expected)


def test_var_with_ddof_one_matches_numpy():
    x = np.random.default_rng(0).normal(size=(3, 5))
    check(lambda t: t.var(axis=1, ddof=1), [x], np.var(x, axis=1, ddof=1))


def test_max_ties_share_the_gradient_evenly():
    x = Tensor(np.array([[1.0, 3.0, 3.0, 3.0], [2.0, 0.0, 2.0, -1.0]]), requires_grad=True)
    x.max(axis=1).backward(np.array([3.0, 1.0]))
    np.testing.assert_allclose(x.grad, [[0.0, 1.0, 1.0, 1.0], [0.5, 0.0, 0.5, 0.0]])


# --------------------------------------------------------------------------------------------
# shape ops and indexing
# --------------------------------------------------------------------------------------------


@given(data=st.data())
def test_reshape_transpose_and_broadcast_to_match_numpy_and_fd(data):
    shape = data.draw(tst.shapes(min_dims=1))
    x = data.draw(tst.arrays(shape))
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    check(lambda t: t.transpose(perm), [x], x.transpose(perm))
    check(lambda t: t.reshape(-1), [x], x.reshape(-1))
    check(lambda t: t.T, [x], x.T)
    target = (2, *shape)
    check(lambda t: t.broadcast_to(target), [x], np.broadcast_to(x, target))


def test_reshape_error_names_both_shapes():
    with pytest.raises(ValueError, match=r"shape \(2, 3\) into \(4,\)"):
        Tensor(np.ones((2, 3))).reshape(4)


INDEXES = {
    "int": lambda s: 1,
    "negative int": lambda s: -1,
    "slice": lambda s: slice(1, None),
    "step slice": lambda s: slice(None, None, 2),
    "none and ellipsis": lambda s: (None, Ellipsis, 0),
    "int array with repeats": lambda s: np.array([0, 2, 0, 1, 2]) % s[0],
    "2-D int array": lambda s: np.array([[0, 1], [1, 0]]) % s[0],
    "pair of int arrays": lambda s: (np.array([0, 1, 1]) % s[0], np.array([2, 0, 2]) % s[1]),
    "mixed slice and array": lambda s: (slice(None), np.array([1, 1, 0]) % s[1]),
    "bool mask": lambda s: np.arange(s[0] * s[1]).reshape(s[:2]) % 3 == 0,
}


@pytest.mark.parametrize("name", sorted(INDEXES))
@given(data=st.data())
def test_getitem_matches_numpy_and_scatters_back_with_accumulation(name, data):
    shape = data.draw(tst.shapes(min_dims=2, min_side=2))
    x = data.draw(tst.arrays(shape))
    index = INDEXES[name](shape)
    check(lambda t: t[index], [x], x[index])


def test_gather_with_a_repeated_index_accumulates():
    x = Tensor(np.zeros(4), requires_grad=True)
    x[np.array([1, 1, 3, 1])].backward(np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_allclose(x.grad, [0.0, 7.0, 0.0, 3.0])


def test_index_error_names_the_shape():
    with pytest.raises(IndexError, match=r"shape \(3,\)"):
        Tensor(np.ones(3))[5]


@given(data=st.data())
def test_concatenate_stack_and_split_match_numpy_and_fd(data):
    shape = data.draw(tst.shapes(min_dims=1, min_side=2))
    axis = data.draw(st.integers(0, len(shape) - 1))
    a, b = data.draw(tst.arrays(shape)), data.draw(tst.arrays(shape))
    check(lambda x, y: concatenate([x, y], axis=axis), [a, b], np.concatenate([a, b], axis))
    check(lambda x, y: stack([x, y], axis=axis), [a, b], np.stack([a, b], axis))
    check(lambda x, y: stack([x, y], axis=-1), [a, b], np.stack([a, b], -1))

    def pieces_weighted(x):
        first, second = split(x, [1], axis=axis)
        return first.sum() * 2.0 + (second * second).sum()

    check(pieces_weighted, [a])
    halves = split(Tensor(np.concatenate([a, b], axis)), 2, axis=axis)
    np.testing.assert_array_equal(halves[0].data, a)
    np.testing.assert_array_equal(halves[1].data, b)


@given(data=st.data())
def test_where_and_masked_fill_match_numpy_and_fd(data):
    shape_a, shape_b = data.draw(tst.broadcastable_shapes())
    a, b = data.draw(tst.arrays(shape_a)), data.draw(tst.arrays(shape_b))
    cond = data.draw(tst.arrays(np.broadcast_shapes(shape_a, shape_b))) > 0
    check(lambda x, y: where(cond, x, y), [a, b], np.where(cond, a, b))
    mask = a > 0.5
    check(lambda x: masked_fill(x, mask, -7.0), [a], np.where(mask, -7.0, a))


# --------------------------------------------------------------------------------------------
# softmax family and layers
# --------------------------------------------------------------------------------------------


def np_log_softmax(x, axis):
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


@given(data=st.data())
def test_softmax_and_log_softmax_match_numpy_and_fd(data):
    shape = data.draw(tst.shapes(min_dims=1))
    x = data.draw(tst.arrays(shape, low=-5, high=5))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    check(lambda t: softmax(t, axis), [x], np.exp(np_log_softmax(x, axis)))
    check(lambda t: log_softmax(t, axis), [x], np_log_softmax(x, axis))


def test_softmax_is_stable_for_large_logits_and_masked_entries():
    x = Tensor(np.array([[1000.0, 1000.0, -np.inf], [-1000.0, 0.0, 1000.0]]), requires_grad=True)
    y = softmax(x)
    np.testing.assert_allclose(y.data, [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    y.backward(np.ones_like(y.data))
    assert np.isfinite(x.grad).all()


@given(data=st.data())
def test_cross_entropy_matches_numpy_and_fd_with_ignore_index(data):
    shape = data.draw(tst.shapes(min_dims=1, max_dims=2))
    V = data.draw(st.integers(2, 6))
    logits = data.draw(tst.arrays((*shape, V), low=-3, high=3))
    targets = data.draw(
        st.lists(st.integers(-1, V - 1), min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))
    )
    targets = np.array(targets).reshape(shape)
    if (targets == -1).all():
        targets.flat[0] = 0
    valid = targets != -1
    logp = np_log_softmax(logits, -1)
    picked = np.take_along_axis(logp, np.where(valid, targets, 0)[..., None], -1)[..., 0]
    expected = -picked[valid].mean()
    check(lambda t: cross_entropy(t, targets, ignore_index=-1), [logits], expected)


def test_cross_entropy_of_all_ignored_targets_is_nan_and_bad_targets_are_named():
    logits = Tensor(np.zeros((2, 3)), requires_grad=True)
    assert np.isnan(cross_entropy(logits, np.array([-100, -100])).item())
    with pytest.raises(IndexError, match=r"target 3 at index \(1,\)"):
        cross_entropy(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match="do not match logits"):
        cross_entropy(logits, np.array([0, 1, 2]))


def test_cross_entropy_ignores_a_masked_minus_inf_logit():
    logits = Tensor(np.array([[-np.inf, 0.0, 0.0], [0.0, 0.0, 0.0]]), requires_grad=True)
    loss = cross_entropy(logits, np.array([-100, 1]))
    assert loss.item() == pytest.approx(np.log(3))
    loss.backward()
    assert np.isfinite(logits.grad).all()


@given(data=st.data())
def test_embedding_matches_numpy_and_fd_with_repeated_indices(data):
    V, C = data.draw(st.integers(2, 5)), data.draw(st.integers(1, 4))
    weight = data.draw(tst.arrays((V, C)))
    idx = np.array(data.draw(st.lists(st.integers(0, V - 1), min_size=1, max_size=8)))
    idx = idx.reshape(1, -1) if data.draw(st.booleans()) else idx
    check(lambda w: embedding(idx, w), [weight], weight[idx])


def test_embedding_names_an_out_of_range_index():
    with pytest.raises(IndexError, match=r"index 5 is outside \[0, 4\)"):
        embedding(np.array([1, 5]), Tensor(np.ones((4, 2))))


@given(data=st.data())
def test_layer_norm_matches_numpy_and_fd(data):
    shape = data.draw(tst.shapes(min_dims=1, min_side=2))
    C = shape[-1]
    x = data.draw(tst.arrays(shape, min_std=0.1))
    w, b = data.draw(tst.arrays((C,))), data.draw(tst.arrays((C,)))
    mean = x.mean(-1, keepdims=True)
    expected = (x - mean) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b
    check(lambda x, w, b: layer_norm(x, w, b), [x, w, b], expected)


def test_dropout_is_reproducible_scales_kept_units_and_passes_their_gradient():
    from tinygradlm.autograd import dropout

    x = Tensor(np.ones((200, 50)), requires_grad=True)
    a = dropout(x, 0.25, np.random.default_rng(7))
    b = dropout(Tensor(np.ones((200, 50))), 0.25, np.random.default_rng(7))
    np.testing.assert_array_equal(a.data, b.data)
    kept = a.data != 0
    np.testing.assert_allclose(a.data[kept], 1 / 0.75)
    assert abs(kept.mean() - 0.75) < 0.02
    a.sum().backward()
    np.testing.assert_allclose(x.grad, a.data)
    # with the generator re-seeded on every call the mask is fixed, so finite differences apply
    x64 = np.random.default_rng(1).normal(size=(3, 4))
    check(lambda t: dropout(t, 0.4, np.random.default_rng(3)), [x64])
    assert dropout(x, 0.25, None, training=False) is x
    with pytest.raises(TypeError, match="Generator"):
        dropout(x, 0.25, None)
    with pytest.raises(ValueError):
        dropout(x, 1.0, np.random.default_rng(0))
