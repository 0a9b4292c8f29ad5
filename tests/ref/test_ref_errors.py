"""Wrong shapes, dtypes, indices and buffers raise at the top of the layer, with a message
that names the function, the argument and what was expected."""

import re

import layer_inputs as ri
import numpy as np
import pytest

from tinygradlm import ref

rng = np.random.default_rng(0)


def raises(error, message):
    return pytest.raises(error, match=re.escape(message))


def test_layernorm_weight_of_the_wrong_size_is_named():
    x = rng.normal(size=(2, 3, 8))
    with raises(ValueError, "layernorm_forward: weight has shape (7,) but x has C=8 channels"):
        ref.layernorm_forward(x, np.ones(7), np.zeros(8))
    with raises(ValueError, "layernorm_forward: bias has shape (8, 1) but x has C=8 channels"):
        ref.layernorm_forward(x, np.ones(8), np.zeros((8, 1)))


def test_mixed_dtypes_are_refused_rather_than_promoted():
    x = rng.normal(size=(2, 3, 8)).astype(np.float32)
    with raises(TypeError, "layernorm_forward: weight is float64 but x is float32"):
        ref.layernorm_forward(x, np.ones(8), np.zeros(8, np.float32))
    with raises(TypeError, "linear_forward: weight is float64 but x is float32"):
        ref.linear_forward(x, np.ones((8, 4)))
    with raises(TypeError, "residual_forward: b is float64 but a is float32"):
        ref.residual_forward(x, x.astype(np.float64))


def test_integer_data_where_floats_belong_is_named():
    with raises(TypeError, "gelu_forward: x has dtype int64; expected float32 or float64"):
        ref.gelu_forward(np.arange(4))
    with raises(TypeError, "gelu_forward: x must be a NumPy array, got list"):
        ref.gelu_forward([1.0, 2.0])


def test_linear_weight_of_the_wrong_shape_is_named():
    x = rng.normal(size=(2, 3, 8))
    with raises(ValueError, "linear_forward: weight has shape (4, 8) but x has C=8 channels"):
        ref.linear_forward(x, np.ones((4, 8)))
    with raises(ValueError, "linear_forward: bias has shape (8,) but weight has OC=4 outputs"):
        ref.linear_forward(x, np.ones((8, 4)), np.ones(8))


def test_attention_shapes_that_do_not_split_into_heads_are_named():
    with raises(ValueError, "attention_forward: qkv must be (B, T, 3C), got shape (5, 24)"):
        ref.attention_forward(np.ones((5, 24)), 2)
    with raises(ValueError, "attention_forward: qkv's last axis has 25 channels, not 3C"):
        ref.attention_forward(np.ones((1, 5, 25)), 2)
    with raises(ValueError, "attention_forward: C=8 channels do not split into n_head=3 heads"):
        ref.attention_forward(np.ones((1, 5, 24)), 3)


def test_encoder_token_out_of_range_names_value_and_position():
    idx, wte, wpe = ri.example("encoder")
    idx[1, 3] = 16  # wte has Vp = 16 rows
    with raises(IndexError, "encoder_forward: token id 16 at position (1, 3) is outside [0, 16)"):
        ref.encoder_forward(idx, wte, wpe)
    idx[1, 3] = -2
    with raises(IndexError, "encoder_forward: token id -2 at position (1, 3)"):
        ref.encoder_forward(idx, wte, wpe)


def test_encoder_shape_errors_are_named():
    idx, wte, wpe = ri.example("encoder")  # idx (2, 5), wpe (7, 8)
    with raises(ValueError, "encoder_forward: T=8 positions but wpe has only maxT=7 rows"):
        ref.encoder_forward(np.zeros((2, 8), dtype=np.int64), wte, wpe)
    with raises(ValueError, "encoder_forward: wpe has shape (7, 4) but wte has C=8 channels"):
        ref.encoder_forward(idx, wte, wpe[:, :4])
    with raises(TypeError, "encoder_forward: idx has dtype float64; expected integers"):
        ref.encoder_forward(idx.astype(np.float64), wte, wpe)


def test_crossentropy_target_out_of_range_names_value_and_position():
    logits, targets, V = ri.example("crossentropy")  # V = 11 of Vp = 16
    targets[0, 4] = 11  # a padded column is not a valid target
    with raises(
        IndexError, "crossentropy_forward: target 11 at position (0, 4) is outside [0, 11)"
    ):
        ref.crossentropy_forward(logits, targets, V)
    targets[0, 4] = -1  # negative but not the ignore_index
    with raises(IndexError, "target -1 at position (0, 4) is outside [0, 11) and is not ignore"):
        ref.crossentropy_forward(logits, targets, V)


def test_crossentropy_shape_and_vocab_size_errors_are_named():
    logits, targets, V = ri.example("crossentropy")  # logits (2, 5, 16)
    with raises(ValueError, "crossentropy_forward: targets have shape (5, 2) but logits"):
        ref.crossentropy_forward(logits, targets.T, V)
    with raises(ValueError, "crossentropy_forward: vocab_size=17 must be in [1, Vp=16]"):
        ref.crossentropy_forward(logits, targets, 17)
    with raises(TypeError, "crossentropy_forward: targets has dtype float64; expected integers"):
        ref.crossentropy_forward(logits, targets.astype(np.float64), V)
    _, cache = ref.crossentropy_forward(logits, targets, V)
    with raises(ValueError, "crossentropy_backward: dloss must be a scalar"):
        ref.crossentropy_backward(np.ones(2), cache)


def test_out_buffer_of_the_wrong_shape_or_dtype_is_refused():
    x = rng.normal(size=(2, 3, 8))
    with raises(ValueError, "gelu_forward: out has shape (2, 3) and dtype float64; expected"):
        ref.gelu_forward(x, out=np.empty((2, 3)))
    with raises(ValueError, "out has shape (2, 3, 8) and dtype float32; expected shape (2, 3, 8)"):
        ref.gelu_forward(x, out=np.empty((2, 3, 8), np.float32))
    with raises(ValueError, "linear_forward: out must be C-contiguous"):
        ref.linear_forward(x, np.ones((8, 4)), out=np.empty((4, 3, 2)).T)


def test_out_buffer_that_would_overwrite_a_cached_input_is_refused():
    x = rng.normal(size=(2, 3, 8))
    with raises(ValueError, "layernorm_forward: out overlaps x, which the cache keeps"):
        ref.layernorm_forward(x, np.ones(8), np.zeros(8), out=x)
    with raises(ValueError, "gelu_forward: out overlaps x"):
        ref.gelu_forward(x, out=x)


@pytest.mark.parametrize("layer", sorted(set(ri.LAYERS) - {"crossentropy"}))
def test_backward_refuses_dout_of_the_wrong_shape_or_dtype(layer):
    forward, backward = ri.PAIRS[layer]
    out, cache = forward(*ri.example(layer))
    with raises(ValueError, f"{layer}_backward: dout has shape (3,) but the forward's output"):
        backward(np.ones(3), cache)
    with raises(TypeError, f"{layer}_backward: dout is float32 but the forward ran in float64"):
        backward(np.ones(out.shape, np.float32), cache)


def test_adamw_errors_are_named():
    p = np.zeros(4, np.float32)
    with raises(ValueError, "adamw_update: m has shape (3,) but params (4,)"):
        ref.adamw_update(p, p.copy(), np.zeros(3, np.float32), p.copy(), 1, 1e-3)
    with raises(TypeError, "adamw_update: v is float64 but params is float32"):
        ref.adamw_update(p, p.copy(), p.copy(), np.zeros(4), 1, 1e-3)
    with raises(ValueError, "adamw_update: step must be an integer >= 1 (the 1-based step), got 0"):
        ref.adamw_update(p, p.copy(), p.copy(), p.copy(), 0, 1e-3)
    with raises(ValueError, "adamw_update: params must be a flat (N,) buffer, got shape (2, 2)"):
        q = np.zeros((2, 2), np.float32)
        ref.adamw_update(q, q.copy(), q.copy(), q.copy(), 1, 1e-3)
    with raises(ValueError, "adamw_update: decay_ranges must have shape (n, 2), got (3,)"):
        ref.adamw_update(p, p.copy(), p.copy(), p.copy(), 1, 1e-3, decay_ranges=np.ones(3, int))
    with raises(ValueError, "adamw_update: decay_ranges must be [start, end) ranges in order"):
        ref.adamw_update(p, p.copy(), p.copy(), p.copy(), 1, 1e-3, decay_ranges=np.array([[0, 5]]))
