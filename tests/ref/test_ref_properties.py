"""Known values and defining properties of each layer in tinygradlm.ref: the GELU constants,
layer norm's eps, the causal mask, the padded vocabulary, ignore_index, the scatter-add, and
AdamW's first step."""

import math

import layer_inputs as ri
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm import ref
from tinygradlm.testing import strategies as tst

# --------------------------------------------------------------------------------------------
# encoder
# --------------------------------------------------------------------------------------------


def test_encoder_output_is_token_row_plus_position_row():
    idx, wte, wpe = ri.example("encoder")
    out, _ = ref.encoder_forward(idx, wte, wpe)
    B, T = idx.shape
    for b in range(B):
        for t in range(T):
            np.testing.assert_array_equal(out[b, t], wte[idx[b, t]] + wpe[t])


def test_encoder_scatter_add_accumulates_repeated_tokens():
    rng = np.random.default_rng(0)
    idx = np.array([[3, 1, 3], [3, 0, 1]])  # token 3 three times, token 1 twice, 2 and 4 never
    wte, wpe = rng.normal(size=(5, 4)), rng.normal(size=(6, 4))
    out, cache = ref.encoder_forward(idx, wte, wpe)
    dout = rng.normal(size=out.shape)
    dwte, dwpe = ref.encoder_backward(dout, cache)
    np.testing.assert_allclose(dwte[3], dout[0, 0] + dout[0, 2] + dout[1, 0], rtol=1e-15)
    np.testing.assert_allclose(dwte[1], dout[0, 1] + dout[1, 2], rtol=1e-15)
    np.testing.assert_array_equal(dwte[0], dout[1, 1])
    assert not dwte[[2, 4]].any()  # unused tokens: exactly zero
    np.testing.assert_allclose(dwpe[:3], dout.sum(axis=0), rtol=1e-15)
    assert not dwpe[3:].any()  # positions beyond T: exactly zero


# --------------------------------------------------------------------------------------------
# layer norm
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layernorm_of_a_constant_row_is_the_bias(dtype):
    x = np.full((2, 3, 8), 7.5, dtype=dtype)
    weight, bias = np.arange(8, dtype=dtype), np.linspace(-1, 1, 8, dtype=dtype)
    out, _ = ref.layernorm_forward(x, weight, bias)
    np.testing.assert_array_equal(out, np.broadcast_to(bias, x.shape))


def test_layernorm_puts_eps_inside_the_square_root():
    # a row of variance 1e-6, ten times smaller than eps: the placement of eps matters
    x = np.array([[0.0, 2e-3]])  # mean 1e-3, var 1e-6
    out, _ = ref.layernorm_forward(x, np.ones(2), np.zeros(2))
    inside = 1e-3 / math.sqrt(1e-6 + 1e-5)  # ≈ 0.3015: GPT-2, torch.nn.LayerNorm
    outside = 1e-3 / (math.sqrt(1e-6) + 1e-5)  # ≈ 0.990
    np.testing.assert_allclose(out, [[-inside, inside]], rtol=1e-12)
    assert not np.allclose(out, [[-outside, outside]], rtol=0.1)


@given(tst.arrays((3, 16), low=-5.0, high=5.0, min_std=0.5))
def test_layernorm_rows_have_zero_mean_and_unit_variance(x):
    out, (_, mean, rstd, _) = ref.layernorm_forward(x, np.ones(16), np.zeros(16))
    np.testing.assert_allclose(mean, x.mean(axis=-1), rtol=1e-12)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(x.var(axis=-1) + 1e-5), rtol=1e-12)
    np.testing.assert_allclose(out.mean(axis=-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=-1), x.var(axis=-1) * rstd**2, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# linear
# --------------------------------------------------------------------------------------------


def test_linear_without_bias_returns_two_gradients():
    x, weight, _ = ri.example("linear")
    out, cache = ref.linear_forward(x, weight)
    np.testing.assert_allclose(out, x @ weight, rtol=1e-12)
    assert len(ref.linear_backward(np.ones_like(out), cache)) == 2


# --------------------------------------------------------------------------------------------
# attention
# --------------------------------------------------------------------------------------------


def attention_by_loops(qkv, n_head):
    """The slow reference: every batch, head and position in Python loops, the HF GPT-2 layout
    (head h of q is qkv[..., h*HS:(h+1)*HS], of k the same after C, of v after 2C)."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    HS = C // n_head
    out = np.zeros((B, T, C))
    for b in range(B):
        for h in range(n_head):
            cols = slice(h * HS, (h + 1) * HS)
            q, k, v = qkv[b, :, cols], qkv[b, :, C:][:, cols], qkv[b, :, 2 * C :][:, cols]
            for t in range(T):
                scores = np.array([q[t] @ k[s] / math.sqrt(HS) for s in range(t + 1)])
                weights = np.exp(scores - scores.max())
                weights /= weights.sum()
                out[b, t, cols] = sum(weights[s] * v[s] for s in range(t + 1))
    return out


@given(ri.STRATEGIES["attention"])
def test_attention_matches_loops_over_batches_heads_and_positions(args):
    out, _ = ref.attention_forward(*args)
    np.testing.assert_allclose(out, attention_by_loops(*args), rtol=1e-12, atol=1e-14)


@given(ri.STRATEGIES["attention"], st.data())
def test_attention_output_does_not_depend_on_future_positions(args, data):
    qkv, n_head = args
    T = qkv.shape[1]
    t = data.draw(st.integers(0, T - 1), label="t")
    changed = qkv.copy()
    changed[:, t + 1 :] = data.draw(tst.arrays(changed[:, t + 1 :].shape), label="future")
    out, _ = ref.attention_forward(qkv, n_head)
    out_changed, _ = ref.attention_forward(changed, n_head)
    np.testing.assert_array_equal(out[:, : t + 1], out_changed[:, : t + 1])


@given(ri.STRATEGIES["attention"])
def test_attention_weights_are_lower_triangular_rows_that_sum_to_one(args):
    _, (_, att, _) = ref.attention_forward(*args)
    T = att.shape[-1]
    assert not att[..., np.triu(np.ones((T, T), dtype=bool), k=1)].any()  # exactly 0
    assert (att >= 0).all()
    np.testing.assert_allclose(att.sum(axis=-1), 1.0, rtol=1e-14)


@given(ri.STRATEGIES["attention"], st.data())
def test_attention_gradient_does_not_reach_future_positions(args, data):
    qkv, n_head = args
    T = qkv.shape[1]
    t = data.draw(st.integers(0, T - 1), label="t")
    out, cache = ref.attention_forward(qkv, n_head)
    dout = np.zeros_like(out)
    dout[:, t] = 1.0  # the loss sees position t only
    (dqkv,) = ref.attention_backward(dout, cache)
    assert not dqkv[:, t + 1 :].any()  # masked entries get exactly zero gradient


def test_attention_first_position_returns_its_own_value():
    qkv, n_head = ri.example("attention")
    C = qkv.shape[-1] // 3
    out, _ = ref.attention_forward(qkv, n_head)
    np.testing.assert_allclose(out[:, 0], qkv[:, 0, 2 * C :], rtol=1e-15)  # att[0] = [1, 0, ..]


# --------------------------------------------------------------------------------------------
# GELU
# --------------------------------------------------------------------------------------------


def test_gelu_uses_gpt2_constants():
    assert ref.GELU_SCALE == math.sqrt(2 / math.pi)
    assert ref.GELU_CUBIC == 0.044715
    out, _ = ref.gelu_forward(np.array([1.0, 0.0, -1.0, 10.0, -10.0]))
    assert out[0] == pytest.approx(0.8411919906082768, rel=1e-15)
    assert out[1] == 0.0
    assert out[2] == pytest.approx(0.8411919906082768 - 1.0, rel=1e-14)  # gelu(-x) = gelu(x) - x
    assert out[3] == pytest.approx(10.0, rel=1e-15)
    assert out[4] == pytest.approx(0.0, abs=1e-15)


def test_gelu_derivative_known_values():
    _, cache = ref.gelu_forward(np.array([0.0, 1.0]))
    (dx,) = ref.gelu_backward(np.ones(2), cache)
    assert dx[0] == 0.5  # 0.5·(1 + tanh 0) + 0
    t = math.tanh(math.sqrt(2 / math.pi) * 1.044715)
    expected = 0.5 * (1 + t) + 0.5 * (1 - t * t) * math.sqrt(2 / math.pi) * (1 + 3 * 0.044715)
    assert dx[1] == pytest.approx(expected, rel=1e-15)


# --------------------------------------------------------------------------------------------
# residual
# --------------------------------------------------------------------------------------------


def test_residual_passes_the_gradient_to_both_inputs_unchanged():
    a, b = ri.example("residual")
    out, cache = ref.residual_forward(a, b)
    np.testing.assert_array_equal(out, a + b)
    dout = ri.upstream_gradient(out)
    da, db = ref.residual_backward(dout, cache)
    np.testing.assert_array_equal(da, dout)
    np.testing.assert_array_equal(db, dout)


def test_residual_forward_may_update_the_stream_in_place():
    a, b = ri.example("residual")
    expected = a + b
    out, _ = ref.residual_forward(a, b, out=a)
    assert out is a
    np.testing.assert_array_equal(a, expected)


# --------------------------------------------------------------------------------------------
# cross-entropy
# --------------------------------------------------------------------------------------------


def test_crossentropy_of_uniform_logits_is_log_vocab_size():
    logits, targets = np.zeros((2, 3, 10)), np.array([[0, 9, 4], [1, 2, 3]])
    loss, cache = ref.crossentropy_forward(logits, targets)
    assert loss == pytest.approx(math.log(10), rel=1e-15)
    (dlogits,) = ref.crossentropy_backward(1.0, cache)
    np.testing.assert_allclose(dlogits.sum(axis=-1), 0.0, atol=1e-16)  # softmax - onehot
    assert dlogits[0, 1, 9] == pytest.approx((0.1 - 1) / 6, rel=1e-14)
    assert dlogits[0, 1, 0] == pytest.approx(0.1 / 6, rel=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("garbage", [1e30, -1e30, 3e38, np.inf, np.nan, 0.0])
def test_crossentropy_padded_columns_get_zero_probability_and_gradient(dtype, garbage):
    logits, targets, V = ri.example("crossentropy", dtype)
    padded = logits.copy()
    padded[..., V:] = garbage
    loss, cache = ref.crossentropy_forward(padded, targets, V)
    probs = cache[0]
    assert not probs[..., V:].any()  # exactly 0
    (dlogits,) = ref.crossentropy_backward(1.0, cache)
    assert not dlogits[..., V:].any()
    # and the real columns are what they would be with no padding at all
    loss_unpadded, cache_unpadded = ref.crossentropy_forward(logits[..., :V].copy(), targets)
    assert loss == loss_unpadded
    (dlogits_unpadded,) = ref.crossentropy_backward(1.0, cache_unpadded)
    np.testing.assert_array_equal(dlogits[..., :V], dlogits_unpadded)


def test_crossentropy_ignored_positions_get_zero_gradient_and_leave_the_mean():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 4, 6))
    targets = np.array([[1, -100, 5, 0], [-100, -100, 2, 3]])
    loss, cache = ref.crossentropy_forward(logits, targets)
    valid = targets != -100
    logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    expected = -np.mean([logp[b, t, targets[b, t]] for b, t in np.argwhere(valid)])
    assert loss == pytest.approx(expected, rel=1e-14)  # the mean over the 5 valid positions
    (dlogits,) = ref.crossentropy_backward(1.0, cache)
    assert not dlogits[~valid].any()  # exactly 0
    np.testing.assert_allclose(dlogits[valid].sum(axis=-1), 0.0, atol=1e-16)
    np.testing.assert_allclose(dlogits[0, 0, 1], (np.exp(logp[0, 0, 1]) - 1) / 5, rtol=1e-13)


def test_crossentropy_with_every_position_ignored_is_nan_with_zero_gradient():
    logits, targets = np.ones((2, 3, 4)), np.full((2, 3), -100)
    loss, cache = ref.crossentropy_forward(logits, targets)
    assert np.isnan(loss)
    (dlogits,) = ref.crossentropy_backward(1.0, cache)
    assert not dlogits.any()


def test_crossentropy_ignored_positions_may_hold_any_value():
    logits = np.zeros((1, 2, 3))
    logits[0, 1] = -np.inf  # e.g. a fully masked row at an ignored position
    loss, cache = ref.crossentropy_forward(logits, np.array([[2, -1]]), ignore_index=-1)
    assert loss == pytest.approx(math.log(3), rel=1e-15)
    (dlogits,) = ref.crossentropy_backward(1.0, cache)
    assert np.isfinite(dlogits).all()
    assert not dlogits[0, 1].any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_crossentropy_is_stable_for_huge_logits(dtype):
    # exp(1e4) overflows in any dtype: the maximum must be subtracted first
    logits = np.array([[1e4, 1e4 - 1.0, 0.0]], dtype=dtype)
    loss, cache = ref.crossentropy_forward(logits, np.array([1]))
    expected = math.log(1 + math.exp(1.0)) if dtype == np.float64 else 1.3132616
    assert loss == pytest.approx(expected, rel=1e-6)
    (dlogits,) = ref.crossentropy_backward(1.0, cache)
    assert np.isfinite(dlogits).all()


def test_crossentropy_of_a_very_unlikely_target_is_finite():
    # probs underflows to 0 for the target; -log from the log-sum-exp is still exact
    loss, _ = ref.crossentropy_forward(np.array([[0.0, -1000.0]]), np.array([1]))
    assert loss == pytest.approx(1000.0, rel=1e-15)


# --------------------------------------------------------------------------------------------
# AdamW
# --------------------------------------------------------------------------------------------


def test_adamw_first_step_moves_each_parameter_by_lr_against_its_gradient():
    # step 1: mhat = g and vhat = g², so the update is g / (|g| + eps) ≈ sign(g)
    params = np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32)
    grads = np.array([0.3, -4.0, 1e-2, -0.7], dtype=np.float32)
    m, v = np.zeros(4, np.float32), np.zeros(4, np.float32)
    ref.adamw_update(params.copy(), grads, m, v, 1, 0.1)  # m, v: checked below
    np.testing.assert_allclose(m, 0.1 * grads, rtol=1e-6)  # (1 - beta1) g
    np.testing.assert_allclose(v, 0.05 * grads**2, rtol=1e-6)  # (1 - beta2) g²
    moved = params.copy()
    ref.adamw_update(moved, grads, np.zeros(4, np.float32), np.zeros(4, np.float32), 1, 0.1)
    np.testing.assert_allclose(moved, params - 0.1 * np.sign(grads), rtol=1e-5)


def test_adamw_weight_decay_is_decoupled_and_follows_the_mask():
    # zero gradients: Adam's step is 0, so only the decay moves the parameters
    params = np.array([1.0, 2.0, -3.0, 4.0], dtype=np.float32)
    mask = np.array([True, False, True, False])
    zeros = np.zeros(4, np.float32)
    p = params.copy()
    ref.adamw_update(
        p,
        zeros,
        zeros.copy(),
        zeros.copy(),
        1,
        0.1,
        weight_decay=0.5,
        decay_ranges=np.array([[0, 1], [2, 3]]),
    )
    np.testing.assert_allclose(p, np.where(mask, params * (1 - 0.1 * 0.5), params), rtol=1e-6)
    p = params.copy()
    ref.adamw_update(p, zeros, zeros.copy(), zeros.copy(), 1, 0.1, weight_decay=0.5)
    np.testing.assert_allclose(p, params * (1 - 0.1 * 0.5), rtol=1e-6)  # no mask: everywhere


def test_adamw_bias_correction_uses_the_step_count():
    # with a constant gradient, mhat = g and vhat = g² at every step: the update stays sign(g)
    g = np.array([0.5, -0.25])
    p, m, v = np.zeros(2), np.zeros(2), np.zeros(2)
    for step in range(1, 6):
        before = p.copy()
        ref.adamw_update(p, g, m, v, step, 0.01, eps=0.0)
        np.testing.assert_allclose(p - before, -0.01 * np.sign(g), rtol=1e-12)
