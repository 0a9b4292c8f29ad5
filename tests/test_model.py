"""The GPT model: configuration, the flat parameter layout, the state dict, and the two gradient
engines held to each other, to finite differences and (when installed) to PyTorch."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm import backend
from tinygradlm.lora import LoRAConfig
from tinygradlm.model import GPT, PRESETS, GPTConfig, parameter_shapes
from tinygradlm.testing import check_vjp
from tinygradlm.testing import strategies as tst

KERNELS = ["numpy", "numba"]


def tiny(**overrides):
    base = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
    return GPTConfig(**{**base, **overrides})


def batch(config, B=2, T=5, seed=0):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, config.vocab_size, size=(B, T))
    targets = rng.integers(0, config.vocab_size, size=(B, T))
    return idx, targets


def perturbed(model, seed=1, scale=0.3):
    """Move the parameters off their initial values (biases 0 and LN weights 1 hide bugs)."""
    rng = np.random.default_rng(seed)
    model.flat_params += rng.normal(0, scale, size=model.flat_params.shape).astype(model.dtype)
    model.params["wte.weight"][model.config.vocab_size :] = 0
    return model


# --------------------------------------------------------------------------------------------
# configuration and layout
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("n_embd", 10, "divisible by n_head"),
        ("n_layer", 0, "n_layer must be a positive integer"),
        ("vocab_size", -3, "vocab_size must be a positive integer"),
        ("block_size", 2.5, "block_size must be a positive integer"),
        ("padded_vocab_size", 5, "at least vocab_size"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        tiny(**{"n_head": 4, "n_embd": 8, field: value})


def test_config_from_dict_rejects_unknown_keys_and_round_trips():
    config = tiny()
    assert GPTConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"unknown key GPTConfig.n_embed"):
        GPTConfig.from_dict({**config.to_dict(), "n_embed": 8})


def test_gpt2_preset_has_124m_parameters():
    shapes = parameter_shapes(PRESETS["gpt2"])
    assert sum(math.prod(s) for s in shapes.values()) == 124_439_808  # HF GPT-2 "gpt2"
    assert GPTConfig.preset("gpt2", padded_vocab_size=50304).Vp == 50304
    with pytest.raises(ValueError, match="unknown GPT preset"):
        GPTConfig.preset("gpt5")


def test_parameters_and_gradients_are_views_tiling_two_flat_buffers():
    model = GPT(tiny(padded_vocab_size=16))
    offset = 0
    for name, view in model.params.items():
        assert np.shares_memory(view, model.flat_params), name
        assert np.shares_memory(model.grads[name], model.flat_grads), name
        assert view.__array_interface__["data"][0] == model.flat_params[offset:].ctypes.data
        offset += view.size
    assert offset == model.flat_params.size == model.flat_grads.size
    assert model.flat_params.dtype == np.float32
    assert model.num_params == model.flat_params.size - (16 - 11) * 8


def test_initialisation_follows_gpt2():
    config = GPTConfig(vocab_size=512, block_size=64, n_layer=4, n_head=4, n_embd=128)
    model = GPT(config, seed=3)
    p = model.params
    assert np.std(p["h.0.attn.c_attn.weight"]) == pytest.approx(0.02, rel=0.05)
    assert np.std(p["wte.weight"]) == pytest.approx(0.02, rel=0.05)
    proj = np.concatenate([p[f"h.{i}.mlp.c_proj.weight"].ravel() for i in range(4)])
    assert np.std(proj) == pytest.approx(0.02 / math.sqrt(2 * 4), rel=0.05)
    assert not p["h.1.mlp.c_fc.bias"].any()
    assert (p["ln_f.weight"] == 1).all() and (p["h.2.ln_1.weight"] == 1).all()
    np.testing.assert_array_equal(GPT(config, seed=3).flat_params, model.flat_params)
    assert not np.array_equal(GPT(config, seed=4).flat_params, model.flat_params)


def test_decay_ranges_cover_exactly_the_2d_weights():
    model = GPT(tiny())
    mask = np.zeros(model.flat_params.size, bool)
    for start, end in model.decay_ranges():
        mask[start:end] = True
    for name, view in model.params.items():
        offset = view.__array_interface__["data"][0] - model.flat_params.ctypes.data
        start = offset // model.flat_params.itemsize
        part = mask[start : start + view.size]
        assert (part == (1 if view.ndim == 2 else 0)).all(), name


# --------------------------------------------------------------------------------------------
# state dict
# --------------------------------------------------------------------------------------------


def test_state_dict_uses_hf_names_and_layouts():
    config = tiny(padded_vocab_size=16)
    sd = GPT(config).state_dict()
    C = config.n_embd
    assert sd["wte.weight"].shape == (11, C)  # padding rows are not part of it
    assert sd["wpe.weight"].shape == (8, C)
    assert sd["h.1.attn.c_attn.weight"].shape == (C, 3 * C)
    assert sd["h.1.attn.c_proj.weight"].shape == (C, C)
    assert sd["h.0.mlp.c_fc.weight"].shape == (C, 4 * C)
    assert sd["h.0.mlp.c_proj.weight"].shape == (4 * C, C)
    assert sd["ln_f.bias"].shape == (C,)
    assert len(sd) == 2 + 12 * config.n_layer + 2


def test_load_state_dict_round_trips_and_accepts_hf_extras():
    a, b = GPT(tiny(), seed=0), GPT(tiny(), seed=1)
    hf = {"transformer." + k: v.copy() for k, v in a.state_dict().items()}
    hf["transformer.h.0.attn.bias"] = np.tril(np.ones((1, 1, 8, 8)))  # HF's causal-mask buffer
    hf["lm_head.weight"] = a.state_dict()["wte.weight"].copy()  # tied head
    b.load_state_dict(hf)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)


def test_load_state_dict_reports_every_difference_and_changes_nothing():
    model = GPT(tiny())
    before = model.flat_params.copy()
    sd = {k: v.copy() for k, v in model.state_dict().items()}
    del sd["h.1.ln_2.bias"]
    sd["h.0.attn.c_attn.weight"] = np.zeros((8, 8), np.float32)
    sd["ln_f.weight"] = sd["ln_f.weight"].astype(np.float64)
    sd["h.9.mlp.c_fc.weight"] = np.zeros((8, 32), np.float32)
    with pytest.raises(ValueError) as err:
        model.load_state_dict(sd)
    message = str(err.value)
    assert "missing: h.1.ln_2.bias" in message
    assert "unexpected: h.9.mlp.c_fc.weight" in message
    assert "h.0.attn.c_attn.weight: shape (8, 8), expected (8, 24)" in message
    assert "ln_f.weight: dtype float64, expected float32" in message
    np.testing.assert_array_equal(model.flat_params, before)


# --------------------------------------------------------------------------------------------
# the two engines
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernels", KERNELS)
@given(data=st.data())
def test_fused_and_autograd_engines_agree_in_float64(kernels, data):
    params = data.draw(tst.gpt_configs(max_vocab_size=12, max_block_size=6))
    padding = data.draw(st.integers(0, 3))
    config = GPTConfig(**params, padded_vocab_size=params["vocab_size"] + padding)
    T = data.draw(tst.seq_lens(params))
    B = data.draw(st.integers(1, 2))
    model = perturbed(GPT(config, seed=data.draw(st.integers(0, 99)), dtype=np.float64))
    idx, targets = batch(config, B, T, seed=data.draw(st.integers(0, 99)))
    if B * T > 1 and data.draw(st.booleans()):
        targets[0, 0] = -100  # an ignored position (never all of them: that mean is NaN)
    with backend.use_kernels(kernels):
        loss_fused, grads = model.forward_backward(idx, targets, engine="fused")
        fused = model.flat_grads.copy()
    loss_auto, _ = model.forward_backward(idx, targets, engine="autograd")
    assert loss_fused == pytest.approx(loss_auto, rel=1e-10)
    np.testing.assert_allclose(fused, model.flat_grads, rtol=1e-8, atol=1e-11)
    assert set(grads) == set(model.state_dict())


@pytest.mark.parametrize("kernels", KERNELS)
def test_fused_and_autograd_engines_agree_in_float32(kernels):
    config = tiny(padded_vocab_size=16)
    model = perturbed(GPT(config, seed=0))
    idx, targets = batch(config, B=3, T=8)
    assert_engines_agree(model, idx, targets, kernels, rtol=1e-3, atol=2e-5, loss_rtol=1e-5)


def assert_engines_agree(model, idx, targets, kernels, *, rtol, atol, loss_rtol):
    """The fused engine (with ``kernels``' layers) and the autograd engine give the same loss
    and flat gradient, within the tolerances."""
    with backend.use_kernels(kernels):
        loss_fused, _ = model.forward_backward(idx, targets)
        fused = model.flat_grads.copy()
    loss_auto, _ = model.forward_backward(idx, targets, engine="autograd")
    assert loss_fused == pytest.approx(loss_auto, rel=loss_rtol)
    np.testing.assert_allclose(fused, model.flat_grads, rtol=rtol, atol=atol)


def check_model_gradient(model, idx, targets, kernels):
    """The fused engine's gradient of the whole flat parameter buffer (float64) against central
    finite differences of its loss (``check_vjp``), with ``kernels``' layers."""

    def loss_at(flat):
        model.flat_params[...] = flat
        with backend.use_kernels(kernels):
            return np.asarray(model.forward_backward(idx, targets)[0])

    def grad_at(dloss, flat):
        loss_at(flat)
        return (model.flat_grads * dloss,)

    check_vjp(loss_at, grad_at, [model.flat_params.copy()], cache=False, mode="fast")


@pytest.mark.parametrize("kernels", KERNELS)
def test_whole_model_gradient_matches_finite_differences_in_float64(kernels):
    config = tiny(padded_vocab_size=13)
    model = perturbed(GPT(config, seed=0, dtype=np.float64))
    idx, targets = batch(config, B=2, T=6)
    targets[1, 2] = -100
    check_model_gradient(model, idx, targets, kernels)


def test_gradient_accumulation_of_two_halves_equals_the_whole_batch():
    config = tiny()
    model = perturbed(GPT(config, seed=0, dtype=np.float64))
    idx, targets = batch(config, B=4, T=6)
    model.forward_backward(idx, targets)
    whole = model.flat_grads.copy()
    model.forward_backward(idx[:2], targets[:2], loss_scale=0.5)
    model.forward_backward(idx[2:], targets[2:], loss_scale=0.5, accumulate=True)
    np.testing.assert_allclose(model.flat_grads, whole, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------------------------
# known properties
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernels", KERNELS)
def test_changing_a_future_token_does_not_change_earlier_logits(kernels):
    config = tiny()
    model = perturbed(GPT(config, seed=0))
    idx, _ = batch(config, B=1, T=8)
    changed = idx.copy()
    changed[0, 5] = (idx[0, 5] + 1) % config.vocab_size
    with backend.use_kernels(kernels):
        a, b = model.logits(idx), model.logits(changed)
    np.testing.assert_array_equal(a[:, :5], b[:, :5])
    assert not np.allclose(a[:, 5:], b[:, 5:])
    assert a.shape == (1, 8, config.vocab_size)


@pytest.mark.parametrize("engine", ["fused", "autograd"])
def test_padding_rows_of_the_embedding_get_no_gradient(engine):
    config = tiny(padded_vocab_size=16)
    model = perturbed(GPT(config, seed=0))
    model.params["wte.weight"][11:] = 5.0  # even nonzero padding rows must not matter
    idx, targets = batch(config)
    loss, _ = model.forward_backward(idx, targets, engine=engine)
    assert not model.grads["wte.weight"][11:].any()
    model.params["wte.weight"][11:] = -5.0
    assert model.forward_backward(idx, targets, engine=engine)[0] == pytest.approx(loss)


def test_initial_loss_is_close_to_log_vocab():
    config = GPTConfig.preset("tiny")
    model = GPT(config, seed=0)
    idx, targets = batch(config, B=2, T=32)
    loss, _ = model.forward_backward(idx, targets)
    assert loss == pytest.approx(math.log(config.vocab_size), rel=0.02)


def test_bad_tokens_are_rejected_with_what_and_where():
    model = GPT(tiny())
    idx = np.zeros((2, 5), np.int64)
    with pytest.raises(ValueError, match="token id 11 is outside"):
        model.forward_backward(idx, np.full((2, 5), 11))
    with pytest.raises(ValueError, match="sequence length 9 exceeds block_size 8"):
        model.logits(np.zeros((1, 9), np.int64))
    with pytest.raises(TypeError, match="integer token ids"):
        model.logits(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        model.logits(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="unknown engine"):
        model.forward_backward(idx, idx, engine="jax")


# --------------------------------------------------------------------------------------------
# one forward, its caches returned; the NumPy backend needs no Numba
# --------------------------------------------------------------------------------------------


def test_forward_returns_the_caches_and_the_model_keeps_none():
    model = GPT(tiny(), seed=0)
    idx, targets = batch(tiny(), B=2, T=6)
    reference = GPT(tiny(), seed=0)
    reference.forward_backward(idx, targets)
    logits, caches = model.forward(idx, keep=True)
    assert logits.shape == (2, 6, tiny().Vp) and len(caches.blocks) == tiny().n_layer
    assert not any("cache" in name for name in vars(model))
    L = backend.layers()
    _, cache_ce = L.crossentropy_forward(logits, targets, tiny().vocab_size)
    (dlogits,) = L.crossentropy_backward(np.float32(1.0), cache_ce)
    model.backward(dlogits, caches)
    # forward_backward runs the head fused with the loss in row chunks: the same sums in
    # another order
    np.testing.assert_allclose(model.flat_grads, reference.flat_grads, rtol=1e-5, atol=1e-7)


def test_the_workspace_keeps_per_block_only_what_backward_reads():
    config = tiny()
    B, T, C, L = 2, 6, config.n_embd, config.n_layer
    model = GPT(config, seed=0)
    acts = model._activations(B, T)
    # ln_1/ln_2, c_proj's outputs and the GELU's: one buffer each for all blocks
    for block in acts.blocks:
        assert block.ln1 is block.ln2 is acts.shared.ln
        assert block.proj is acts.shared.proj and block.fcg is acts.shared.fcg
    own = {id(a) for block in acts.blocks for a in block.own()}
    assert len(own) == 4 * L  # qkv, atty, x2, fch
    # x (L + 1), each block's qkv 3C + atty + x2 + fch 4C, the shared ln + proj + fcg 4C, ln_f
    units = (L + 1) + L * (3 + 1 + 1 + 4) + (1 + 1 + 4) + 1
    assert model.activation_bytes(B, T) == units * B * T * C * 4


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_two_backward_passes_of_one_forward_give_the_same_gradient(kernels, precision):
    # the backward writes ln_1, ln_2 and the GELU's output again into buffers every block
    # shares: a second backward of the same caches must find them as the first did
    config = tiny()
    model = perturbed(GPT(config, seed=0, precision=precision))
    model.add_lora(LoRAConfig(rank=2, alpha=4.0))
    model.lora.flat_params[...] = np.random.default_rng(3).normal(0, 0.1, model.lora.num_params)
    idx, _ = batch(config, B=2, T=6)
    with backend.use_kernels(kernels):
        logits, caches = model.forward(idx, keep=True)
        rng = np.random.default_rng(4)
        dlogits = rng.normal(0, 1, logits.shape).astype(np.float32)
        model.backward(dlogits, caches)
        first, first_lora = model.flat_grads.copy(), model.lora.flat_grads.copy()
        model.flat_grads[...] = 0
        model.lora.flat_grads[...] = 0
        model.backward(dlogits, caches)
    assert first.any() and first_lora.any()
    np.testing.assert_array_equal(model.flat_grads, first)
    np.testing.assert_array_equal(model.lora.flat_grads, first_lora)


def test_importing_the_model_with_numpy_kernels_loads_no_numba():
    code = "import sys, tinygradlm.model; assert 'numba' not in sys.modules, 'numba loaded'"
    env = {**os.environ, "TINYGRADLM_KERNELS": "numpy"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
