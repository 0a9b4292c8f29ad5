"""LoRA adapters on the model: the adapted model's two engines against each other and finite
differences, merging, and adapters in checkpoints (the layer pair itself: tests/ref/
test_ref_lora.py)."""

import json

import numpy as np
import pytest

from tinygradlm import backend
from tinygradlm.checkpoint import (
    CheckpointError,
    load_checkpoint,
    restore,
    save_checkpoint,
    save_model,
)
from tinygradlm.lora import TARGETS, LoRAConfig, merged
from tinygradlm.model import GPT, GPTConfig
from tinygradlm.optim import AdamW
from tinygradlm.testing import check_vjp

KERNELS = ["numpy", "numba"]


def tiny(**overrides):
    base = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
    return GPTConfig(**{**base, **overrides})


def batch(config, B=2, T=5, seed=0):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, config.vocab_size, size=(B, T))
    targets = rng.integers(0, config.vocab_size, size=(B, T))
    return idx, targets


def adapted(config, lora=None, dtype=np.float64, seed=0, scale=0.3):
    """A model with perturbed base weights and adapters (B ≠ 0, or every dA would be zero)."""
    model = GPT(config, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    model.flat_params += rng.normal(0, scale, size=model.flat_params.shape).astype(dtype)
    model.params["wte.weight"][config.vocab_size :] = 0
    model.add_lora(lora or LoRAConfig(rank=2, alpha=3.0), seed=seed)
    model.lora.flat_params += rng.normal(0, scale, model.lora.flat_params.shape).astype(dtype)
    return model


# --------------------------------------------------------------------------------------------
# adapters on the model
# --------------------------------------------------------------------------------------------


def test_adapters_use_peft_names_and_layouts_in_their_own_buffers():
    config = tiny(n_embd=8)
    model = GPT(config)
    lora = model.add_lora(LoRAConfig(rank=2, targets=("mlp.c_fc", "attn.c_attn")))
    assert lora.config.targets == ("attn.c_attn", "mlp.c_fc")  # canonical order
    assert list(lora.shapes)[:4] == [
        "h.0.attn.c_attn.lora_A.weight",
        "h.0.attn.c_attn.lora_B.weight",
        "h.0.mlp.c_fc.lora_A.weight",
        "h.0.mlp.c_fc.lora_B.weight",
    ]
    assert lora.shapes["h.1.attn.c_attn.lora_A.weight"] == (2, 8)  # (r, in)
    assert lora.shapes["h.1.attn.c_attn.lora_B.weight"] == (24, 2)  # (out, r)
    assert lora.shapes["h.1.mlp.c_fc.lora_B.weight"] == (32, 2)
    assert lora.flat_params.size == 2 * (2 * (8 + 24) + 2 * (8 + 32))
    for name, view in lora.params.items():
        assert np.shares_memory(view, lora.flat_params), name
        assert np.shares_memory(lora.grads[name], lora.flat_grads), name
    assert not lora.params["h.0.attn.c_attn.lora_B.weight"].any()  # B = 0: no change at first
    bound = 1 / np.sqrt(8)
    assert np.abs(lora.params["h.0.attn.c_attn.lora_A.weight"]).max() <= bound
    assert lora.scale == 16.0 / 2
    with pytest.raises(ValueError, match="already has LoRA adapters"):
        model.add_lora(LoRAConfig())


@pytest.mark.parametrize(
    "values, message",
    [
        ({"rank": 0}, "rank must be a positive integer"),
        ({"alpha": -1.0}, "alpha must be a positive number"),
        ({"targets": ("attn.q_proj",)}, "targets must be distinct names"),
        ({"targets": ()}, "targets must be distinct names"),
    ],
)
def test_lora_config_rejects_bad_values(values, message):
    with pytest.raises(ValueError, match=message):
        LoRAConfig(**values)


def test_new_adapters_leave_the_logits_unchanged():
    config = tiny()
    model = GPT(config, seed=0)
    idx, _ = batch(config)
    before = model.logits(idx)
    model.add_lora(LoRAConfig(rank=4, alpha=8.0), seed=3)
    np.testing.assert_array_equal(model.logits(idx), before)


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize(
    "targets", [TARGETS, ("attn.c_attn",), ("attn.c_proj", "mlp.c_proj"), ("mlp.c_fc",)]
)
def test_fused_and_autograd_engines_agree_with_adapters(kernels, targets):
    config = tiny(padded_vocab_size=13)
    model = adapted(config, LoRAConfig(rank=3, alpha=2.0, targets=targets))
    idx, targets_ = batch(config, B=2, T=6)
    targets_[0, 1] = -100
    with backend.use_kernels(kernels):
        loss_fused, _ = model.forward_backward(idx, targets_)
    base, adapters = model.flat_grads.copy(), model.lora.flat_grads.copy()
    loss_auto, _ = model.forward_backward(idx, targets_, engine="autograd")
    assert loss_fused == pytest.approx(loss_auto, rel=1e-10)
    np.testing.assert_allclose(adapters, model.lora.flat_grads, rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(base, model.flat_grads, rtol=1e-8, atol=1e-11)
    assert np.abs(adapters).max() > 1e-3  # a real gradient was compared


@pytest.mark.parametrize("kernels", KERNELS)
def test_adapter_gradient_matches_finite_differences(kernels):
    config = tiny(padded_vocab_size=13)
    model = adapted(config, LoRAConfig(rank=2, alpha=4.0))
    idx, targets = batch(config, B=2, T=6)
    targets[1, 3] = -100

    def loss_at(flat):
        model.lora.flat_params[...] = flat
        with backend.use_kernels(kernels):
            return np.asarray(model.forward_backward(idx, targets)[0])

    def grad_at(dloss, flat):
        loss_at(flat)
        return (model.lora.flat_grads * dloss,)

    check_vjp(loss_at, grad_at, [model.lora.flat_params.copy()], cache=False, mode="fast")


def test_accumulating_micro_batches_accumulates_adapter_gradients():
    config = tiny()
    model = adapted(config)
    idx, targets = batch(config, B=4, T=6)
    model.forward_backward(idx, targets)
    whole = model.lora.flat_grads.copy()
    model.forward_backward(idx[:2], targets[:2], loss_scale=0.5)
    model.forward_backward(idx[2:], targets[2:], loss_scale=0.5, accumulate=True)
    np.testing.assert_allclose(model.lora.flat_grads, whole, rtol=1e-10, atol=1e-14)


def test_merging_gives_the_adapted_logits_and_merged_restores_the_weights_exactly():
    config = tiny(padded_vocab_size=16)
    model = adapted(config, dtype=np.float32, seed=2)
    idx, _ = batch(config, B=2, T=8)
    adapted_logits = model.logits(idx)
    before = model.flat_params.copy()
    with merged(model) as m:
        assert m.lora is None
        np.testing.assert_allclose(m.logits(idx), adapted_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(model.flat_params, before)  # bit for bit
    assert model.lora is not None
    model.merge_lora()
    np.testing.assert_allclose(model.logits(idx), adapted_logits, rtol=1e-5, atol=1e-5)
    assert not np.array_equal(model.flat_params, before)


# --------------------------------------------------------------------------------------------
# adapters in checkpoints
# --------------------------------------------------------------------------------------------


def lora_run(tmp_path, steps=2):
    config = tiny(padded_vocab_size=16)
    model = GPT(config, seed=0)
    model.add_lora(LoRAConfig(rank=2, alpha=4.0, targets=("attn.c_attn", "mlp.c_proj")))
    opt = AdamW(model.lora.flat_params, model.lora.flat_grads, lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        x = rng.integers(0, config.vocab_size, size=(2, 6))
        model.forward_backward(x[:, :-1], x[:, 1:])
        opt.step()
    path = save_checkpoint(tmp_path / "run", steps, model, opt, {"note": "lora"})
    return path, model, opt


def test_adapters_round_trip_through_a_checkpoint_exactly(tmp_path):
    path, model, opt = lora_run(tmp_path)
    assert not (path / "adapters.safetensors").exists()  # PEFT's two files instead
    manifest = json.loads((path / "manifest.json").read_text())
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(manifest["files"])
    ckpt = load_checkpoint(path)
    assert ckpt.lora == model.lora.config and ckpt.tokenizer_files == []
    assert ckpt.optimizer_state["m"].shape == model.lora.flat_params.shape

    fresh = GPT(ckpt.config, seed=5)
    fresh.add_lora(ckpt.lora, seed=5)
    fresh_opt = AdamW(fresh.lora.flat_params, fresh.lora.flat_grads, lr=1.0)
    restore(fresh, fresh_opt, ckpt)
    np.testing.assert_array_equal(fresh.flat_params, model.flat_params)
    np.testing.assert_array_equal(fresh.lora.flat_params, model.lora.flat_params)
    np.testing.assert_array_equal(fresh_opt.v, opt.v)

    # a model without adapters gets the adapted function: the adapters merged in
    plain = GPT(ckpt.config)
    restore(plain, None, ckpt)
    idx, _ = batch(ckpt.config)
    np.testing.assert_allclose(plain.logits(idx), model.logits(idx), rtol=1e-5, atol=1e-5)


def test_adapter_checkpoints_refuse_mismatches_and_tampering(tmp_path):
    path, _, _ = lora_run(tmp_path)
    ckpt = load_checkpoint(path)
    plain = GPT(ckpt.config)
    with pytest.raises(CheckpointError, match="add them to the model"):
        restore(plain, AdamW.for_model(plain, lr=1.0), ckpt)
    other = GPT(ckpt.config)
    other.add_lora(LoRAConfig(rank=3))
    with pytest.raises(CheckpointError, match=r"LoRA config .* differs"):
        restore(other, None, ckpt)

    no_adapters = save_checkpoint(tmp_path / "plain", 1, plain, AdamW.for_model(plain, lr=1.0), {})
    with pytest.raises(CheckpointError, match="the checkpoint has none"):
        restore(other, None, load_checkpoint(no_adapters))

    data = bytearray((path / "adapter_model.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (path / "adapter_model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"adapter_model.safetensors: SHA-256 differs"):
        load_checkpoint(path)


def test_a_model_only_checkpoint_loads_but_does_not_resume(tmp_path):
    config = tiny()
    model = GPT(config, seed=4)
    path = save_model(tmp_path / "model", model, step=7)
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json",
        "manifest.json",
        "model.safetensors",
    ]
    ckpt = load_checkpoint(path)
    assert ckpt.step == 7 and ckpt.optimizer_state is None and ckpt.lora is None
    fresh = GPT(config, seed=0)
    restore(fresh, None, ckpt)
    np.testing.assert_array_equal(fresh.flat_params, model.flat_params)
    with pytest.raises(CheckpointError, match="model-only checkpoint"):
        restore(fresh, AdamW.for_model(fresh, lr=1.0), ckpt)
    with pytest.raises(CheckpointError, match="already exists"):
        save_model(path, model)
    model.add_lora(LoRAConfig())
    with pytest.raises(CheckpointError, match="merge them first"):
        save_model(tmp_path / "other", model)
