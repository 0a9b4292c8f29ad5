"""The layer conventions (see tinygradlm.ref's docstring), kept by both implementations: each test
runs on ``backend.layers("numpy")`` (tinygradlm.ref) and ``backend.layers("numba")``
(tinygradlm.kernels). Masking and padding get exact zeros, float32 stays float32, ``out=`` is
written, backwards leave their arguments alone, and bad inputs raise the same clear errors."""

import re

import numpy as np
import pytest
from layer_inputs import IMPLEMENTATIONS, LAYERS, example, floating, upstream_gradient

from tinygradlm import backend, kernels, ref

DTYPES = [np.float32, np.float64]
dtype_ids = ["float32", "float64"]


@pytest.fixture(params=IMPLEMENTATIONS)
def layers(request):
    return backend.layers(request.param)


def pair(layers, layer):
    return getattr(layers, f"{layer}_forward"), getattr(layers, f"{layer}_backward")


def attention_probabilities(layers, cache):
    """att (B, NH, T, T): kept in ref's cache, recomputed from the kernels' (which keep none)."""
    if layers is kernels:
        return kernels.attention.attention_probabilities(cache)
    return cache[1]


# --------------------------------------------------------------------------------------------
# dtypes, out=, and what a backward may touch
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("layer", LAYERS)
def test_float32_in_gives_float32_out_and_float64_gives_float64(layers, layer, dtype):
    forward, backward = pair(layers, layer)
    args = example(layer, dtype)
    out, cache = forward(*args)
    assert out.dtype == dtype
    grads = backward(upstream_gradient(out), cache)
    assert isinstance(grads, tuple)
    assert [g.dtype for g in grads] == [dtype] * len(floating(args))
    assert [g.shape for g in grads] == [a.shape for a in floating(args)]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_adamw_update_keeps_the_buffers_dtype(layers, dtype):
    rng = np.random.default_rng(0)
    p, g = rng.normal(size=50).astype(dtype), rng.normal(size=50).astype(dtype)
    m, v = np.zeros(50, dtype), np.zeros(50, dtype)
    # a np.float64 learning rate must not switch the arithmetic to float64
    layers.adamw_update(p, g, m, v, 1, np.float64(1e-3), weight_decay=np.float64(0.1))
    assert p.dtype == m.dtype == v.dtype == dtype


@pytest.mark.parametrize("layer", sorted(set(LAYERS) - {"crossentropy"}))
def test_forward_writes_into_out_and_returns_it(layers, layer):
    forward, _ = pair(layers, layer)
    args = example(layer, np.float32)
    expected, _ = forward(*args)
    buffer = np.full(expected.shape, np.nan, dtype=np.float32)
    out, _ = forward(*args, out=buffer)
    assert out is buffer
    np.testing.assert_array_equal(buffer, expected)


@pytest.mark.parametrize("layer", ["encoder", "layernorm", "gelu"])
def test_forward_writes_into_a_non_contiguous_out(layers, layer):
    forward, _ = pair(layers, layer)
    args = example(layer, np.float32)
    expected, _ = forward(*args)
    storage = np.full((*expected.shape[:-1], 2 * expected.shape[-1]), np.nan, np.float32)
    buffer = storage[..., ::2]  # every other element: not C-contiguous
    out, _ = forward(*args, out=buffer)
    assert out is buffer
    np.testing.assert_array_equal(buffer, expected)
    assert np.isnan(storage[..., 1::2]).all()  # the elements in between are untouched


def _arrays_in(obj):
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _arrays_in(item)


@pytest.mark.parametrize("layer", LAYERS)
def test_backward_returns_new_arrays_and_leaves_dout_and_cache_alone(layers, layer):
    forward, backward = pair(layers, layer)
    args = example(layer, np.float32)
    out, cache = forward(*args)
    dout = upstream_gradient(out)
    dout_before = dout.copy()
    cache_before = [a.copy() for a in _arrays_in(cache)]
    grads = backward(dout, cache)
    np.testing.assert_array_equal(dout, dout_before)
    for a, before in zip(_arrays_in(cache), cache_before, strict=True):
        np.testing.assert_array_equal(a, before)
    others = [dout, out, *_arrays_in(cache), *floating(args)]
    for k, grad in enumerate(grads):
        assert not any(np.shares_memory(grad, a) for a in others), f"gradient {k}"


@pytest.mark.parametrize("where", ["new", "in place of dout", "non-contiguous"])
def test_gelu_backward_writes_into_out_even_over_dout(layers, where):
    # the block writes dfch over dfcg (one (B, T, 4C) transient less per block's backward)
    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32)
    _, cache = layers.gelu_forward(x)
    dout = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
    (expected,) = layers.gelu_backward(dout.copy(), cache)
    if where == "new":
        out = np.empty_like(x)
    elif where == "in place of dout":
        out = dout
    else:
        out = np.empty((2, 3, 16), np.float32)[..., ::2]
    (dx,) = layers.gelu_backward(dout, cache, out=out)
    assert dx is out
    np.testing.assert_array_equal(dx, expected)
    with pytest.raises(ValueError, match="out overlaps x"):
        layers.gelu_backward(dout, cache, out=x)


def test_kernels_export_every_function_of_ref():
    assert set(kernels.__all__) == set(ref.__all__)
    for name in ref.__all__:
        assert callable(getattr(kernels, name)) or name.startswith("GELU")


# --------------------------------------------------------------------------------------------
# masking and padding: exact zeros
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_attention_masks_the_future_with_exact_zeros(layers, dtype):
    args = example("attention", dtype, scale=2)  # T = 128
    qkv, n_head = args
    qkv[..., : qkv.shape[-1] // 3] *= 30  # large scores: exp underflows far below the max
    out, cache = layers.attention_forward(qkv, n_head)
    att = attention_probabilities(layers, cache)
    T = qkv.shape[1]
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    assert np.all(att[..., future] == 0)
    # the first row sees only itself: weight exactly 1 on the diagonal, so out = v there
    np.testing.assert_array_equal(att[..., 0, 0], 1)
    C = qkv.shape[-1] // 3
    np.testing.assert_allclose(out[:, 0], qkv[:, 0, 2 * C :], rtol=1e-6)
    (dqkv,) = layers.attention_backward(upstream_gradient(out), cache)
    assert np.isfinite(dqkv).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_attention_with_one_position_is_the_identity_on_v(layers, dtype):
    rng = np.random.default_rng(0)
    qkv = rng.normal(size=(3, 1, 12)).astype(dtype)
    out, cache = layers.attention_forward(qkv, 2)
    np.testing.assert_array_equal(attention_probabilities(layers, cache), 1)
    np.testing.assert_array_equal(out, qkv[..., 8:])
    dout = upstream_gradient(out)
    (dqkv,) = layers.attention_backward(dout, cache)
    # a softmax over one element is constant: no gradient reaches q or k, v gets dout
    np.testing.assert_array_equal(dqkv[..., :8], 0)
    np.testing.assert_array_equal(dqkv[..., 8:], dout)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_crossentropy_padding_gets_zero_probability_and_gradient_despite_huge_logits(layers, dtype):
    logits, targets, V = example("crossentropy", dtype)
    garbage = logits.copy()
    garbage[..., V:] = 1e30 if dtype == np.float32 else 1e300  # exp would overflow to inf
    loss, _ = layers.crossentropy_forward(logits, targets, V)
    loss_garbage, cache_garbage = layers.crossentropy_forward(garbage, targets, V)
    assert loss_garbage == loss and np.isfinite(loss)
    probs = cache_garbage[0]
    assert np.all(probs[..., V:] == 0)
    (dlogits,) = layers.crossentropy_backward(1.0, cache_garbage)
    assert np.all(dlogits[..., V:] == 0)
    assert np.isfinite(dlogits).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_crossentropy_ignored_positions_get_zero_gradient_and_no_weight(layers, dtype):
    logits, targets, V = example("crossentropy", dtype)
    ignored = targets == -100
    assert ignored.any()
    loss, cache = layers.crossentropy_forward(logits, targets, V)
    (dlogits,) = layers.crossentropy_backward(np.array(2.0, dtype), cache)
    assert np.all(dlogits[ignored] == 0)
    # the loss is the mean over the valid positions only
    valid_logits, valid_targets = logits[~ignored], targets[~ignored]
    loss_valid, _ = layers.crossentropy_forward(valid_logits[None], valid_targets[None], V)
    np.testing.assert_allclose(loss, loss_valid, rtol=1e-6)
    # each valid row of dlogits sums to 0 (the softmax's gradient is a difference of distributions)
    np.testing.assert_allclose(dlogits[~ignored].sum(-1), 0, atol=1e-6)


def test_crossentropy_with_every_position_ignored_is_nan_with_zero_gradient(layers):
    logits = np.zeros((2, 3, 5), np.float32)
    targets = np.full((2, 3), -100)
    loss, cache = layers.crossentropy_forward(logits, targets)
    assert loss.shape == () and loss.dtype == np.float32 and np.isnan(loss)
    (dlogits,) = layers.crossentropy_backward(1.0, cache)
    np.testing.assert_array_equal(dlogits, 0)


@pytest.mark.parametrize("layer", ["layernorm", "attention", "gelu", "crossentropy"])
def test_a_nan_input_gives_a_nan_output(layers, layer):
    # no "nnan" fast-math flag: a diverged run shows up as NaN, it is not silently hidden
    forward, backward = pair(layers, layer)
    args = example(layer, np.float32)
    args[0].reshape(-1)[0] = np.nan
    out, cache = forward(*args)
    assert np.isnan(out).any()
    assert np.isnan(backward(upstream_gradient(out), cache)[0]).any()


def test_encoder_scatter_adds_repeated_tokens(layers):
    idx = np.array([[3, 3, 1], [3, 0, 1]])
    wte, wpe = np.ones((5, 2), np.float32), np.zeros((4, 2), np.float32)
    out, cache = layers.encoder_forward(idx, wte, wpe)
    dwte, dwpe = layers.encoder_backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(dwte[:, 0], [1, 2, 0, 3, 0])
    np.testing.assert_array_equal(dwpe[:, 0], [2, 2, 2, 0])  # rows >= T stay zero


# --------------------------------------------------------------------------------------------
# errors name the function, the argument and what was expected
# --------------------------------------------------------------------------------------------


BAD_CALLS = [
    (
        "layernorm_forward",
        lambda m: m.layernorm_forward(np.zeros((2, 8), np.float32), *[np.ones(7, np.float32)] * 2),
        ValueError,
        "weight has shape (7,)",
    ),
    (
        "layernorm_forward",
        lambda m: m.layernorm_forward(np.zeros((2, 8), np.float32), *[np.ones(8)] * 2),
        TypeError,
        "weight is float64 but x is float32",
    ),
    (
        "gelu_forward",
        lambda m: m.gelu_forward(np.arange(4)),
        TypeError,
        "x has dtype int64",
    ),
    (
        "gelu_backward",
        lambda m: m.gelu_backward(
            np.ones(3, np.float32), m.gelu_forward(np.ones(4, np.float32))[1]
        ),
        ValueError,
        "dout has shape (3,)",
    ),
    (
        "attention_forward",
        lambda m: m.attention_forward(np.zeros((1, 2, 12), np.float32), 5),
        ValueError,
        "do not split into n_head=5",
    ),
    (
        "attention_forward",
        lambda m: m.attention_forward(
            np.zeros((1, 2, 12), np.float32), 2, out=np.zeros((1, 2, 3), np.float32)
        ),
        ValueError,
        "out has shape (1, 2, 3)",
    ),
    (
        "encoder_forward",
        lambda m: m.encoder_forward(np.array([[0, 9]]), np.zeros((5, 2)), np.zeros((4, 2))),
        IndexError,
        "token id 9 at position (0, 1)",
    ),
    (
        "encoder_forward",
        lambda m: m.encoder_forward(np.array([[0, -1]]), np.zeros((5, 2)), np.zeros((4, 2))),
        IndexError,
        "token id -1 at position (0, 1)",
    ),
    (
        "crossentropy_forward",
        lambda m: m.crossentropy_forward(np.zeros((2, 6)), np.array([1, 5]), 5),
        IndexError,
        "target 5 at position (1,)",
    ),
    (
        "crossentropy_forward",
        lambda m: m.crossentropy_forward(np.zeros((2, 6)), np.array([1, 2, 3])),
        ValueError,
        "targets have shape (3,)",
    ),
    (
        "adamw_update",
        lambda m: m.adamw_update(*[np.zeros(4, np.float32)] * 3, np.zeros(5, np.float32), 1, 0.1),
        ValueError,
        "v has shape (5,)",
    ),
    (
        "adamw_update",
        lambda m: m.adamw_update(*[np.zeros(4, np.float32)] * 4, 0, 0.1),
        ValueError,
        "step must be an integer >= 1",
    ),
]


@pytest.mark.parametrize(("function", "call", "error", "message"), BAD_CALLS)
def test_bad_inputs_raise_an_error_naming_what_was_wrong(layers, function, call, error, message):
    with pytest.raises(error, match=f"^{function}: .*{re.escape(message)}"):
        call(layers)
