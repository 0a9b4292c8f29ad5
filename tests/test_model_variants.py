"""The block wirings ``GPTConfig.norm`` ("pre", "post", "none") × ``residual``: each one's
gradient against the autograd witness, finite differences and PyTorch; its parameters; the
streams left unrounded under bf16; KV-cache decoding; checkpoints (ours load and resume them,
transformers and ``export`` refuse them); and the config's validation."""

import dataclasses
import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from test_model import assert_engines_agree, check_model_gradient
from test_model_kvcache import _assert_same_up_to_rounding_flips
from test_train import make_data, tiny_config

from tinygradlm import backend
from tinygradlm.checkpoint import (
    MODEL_FILE,
    load_checkpoint,
    load_model,
    restore,
    save_checkpoint,
    save_model,
)
from tinygradlm.checkpoint.layout import VARIANT_MODEL_FILE
from tinygradlm.errors import CheckpointError, ConfigError
from tinygradlm.model import GPT, GPTConfig, parameter_shapes, training_bytes
from tinygradlm.model.config import NORMS
from tinygradlm.optim import AdamW
from tinygradlm.precision import round_to_bf16
from tinygradlm.train import Trainer
from tinygradlm.train.finetune import export

KERNELS = ["numpy", "numba"]
VARIANTS = [(norm, residual) for norm in NORMS for residual in (True, False)]
IDS = [f"{norm}-{'residual' if residual else 'plain'}" for norm, residual in VARIANTS]
BASE = GPTConfig(vocab_size=23, block_size=8, n_layer=2, n_head=2, n_embd=16)


def config_of(norm, residual, **overrides):
    return dataclasses.replace(BASE, norm=norm, residual=residual, **overrides)


def perturbed(config, dtype=np.float64, precision="fp32", seed=0, scale=0.3):
    """A GPT whose parameters are off their initial values (biases 0 and layer-norm weights 1
    would hide a wrong gradient)."""
    model = GPT(config, seed=seed, dtype=dtype, precision=precision)
    noise = np.random.default_rng(seed + 1).normal(0, scale, model.flat_params.shape)
    model.flat_params += noise.astype(dtype)
    model.params["wte.weight"][config.vocab_size :] = 0
    return model


def batch(config, B=2, T=6, seed=0):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, config.vocab_size, size=(B, T))
    return idx, rng.integers(0, config.vocab_size, size=(B, T))


# --------------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("norm, residual", VARIANTS, ids=IDS)
def test_fused_gradient_equals_the_autograd_witness_in_float64(norm, residual, kernels):
    config = config_of(norm, residual, padded_vocab_size=25)
    model = perturbed(config)
    idx, targets = batch(config)
    targets[0, 1] = -100
    assert_engines_agree(model, idx, targets, kernels, rtol=1e-9, atol=1e-12, loss_rtol=1e-12)


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("norm, residual", VARIANTS, ids=IDS)
def test_fused_gradient_matches_finite_differences_in_float64(norm, residual, kernels):
    config = config_of(norm, residual)
    model = perturbed(config)
    idx, targets = batch(config, T=5, seed=1)
    check_model_gradient(model, idx, targets, kernels)


@pytest.mark.parametrize("norm, residual", VARIANTS, ids=IDS)
def test_fused_gradient_equals_pytorch(norm, residual):
    torch = pytest.importorskip("torch")
    from tinygradlm.testing.torch_gpt2 import gpt2_loss

    config = config_of(norm, residual)
    model = perturbed(config)
    idx, targets = batch(config, seed=2)
    loss, grads = model.forward_backward(idx, targets)
    sd = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in model.state_dict().items()}
    ref = gpt2_loss(torch, sd, torch.tensor(idx), torch.tensor(targets), config)
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    assert set(sd) == set(grads)
    for name, t in sd.items():
        np.testing.assert_allclose(grads[name], t.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def test_the_variants_compute_different_functions():
    # each wiring is a different model: the same parameters give six different losses
    idx, targets = batch(BASE)
    shared = perturbed(config_of("pre", True))
    losses = set()
    for norm, residual in VARIANTS:
        model = GPT(config_of(norm, residual), dtype=np.float64)
        model.load_state_dict({k: v for k, v in shared.state_dict().items() if k in model.params})
        losses.add(round(model.forward_backward(idx, targets)[0], 9))
    assert len(losses) == len(VARIANTS)


# --------------------------------------------------------------------------------------------
# parameters and memory
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm, residual", VARIANTS, ids=IDS)
def test_the_parameters_are_those_the_variant_reads(norm, residual):
    config = config_of(norm, residual)
    model = GPT(config)
    names = set(parameter_shapes(config))
    layer_norms = {n for n in names if n.startswith("ln_f") or ".ln_" in n}
    blocks = {
        f"h.{i}.{ln}.{p}" for i in range(2) for ln in ("ln_1", "ln_2") for p in ("weight", "bias")
    }
    final = {"ln_f.weight", "ln_f.bias"}
    assert layer_norms == {"pre": blocks | final, "post": blocks, "none": set()}[norm]
    default = set(parameter_shapes(BASE))
    assert names - layer_norms == {n for n in default if "ln_" not in n}  # the rest as GPT-2's
    assert config.parameter_count() == model.flat_params.size
    missing = (2 * config.n_layer + 1) * 2 * config.n_embd - sum(
        np.prod(parameter_shapes(config)[n]) for n in layer_norms
    )
    assert model.num_params == GPT(BASE).num_params - missing
    # every parameter gets a gradient: none is left that nothing reads
    idx, targets = batch(config)
    _, grads = perturbed(config).forward_backward(idx, targets)
    assert all(np.any(g) for g in grads.values())


@pytest.mark.parametrize("norm, residual", VARIANTS, ids=IDS)
def test_the_activation_buffers_and_the_estimate_follow_the_variant(norm, residual):
    config = config_of(norm, residual)
    B, T, C, L = 2, 6, config.n_embd, config.n_layer
    model = GPT(config)
    acts = model._activations(B, T)
    # x, the blocks' own (qkv 3C, atty, x2, fch 4C; post-LN's two sums), the shared ln and fcg
    # (4C), the shared proj with a residual, ln_f (the head's copy without ln_f)
    block = 9 + (2 if norm == "post" else 0)
    units = (L + 1) + L * block + 1 + 4 + (1 if residual else 0) + 1
    assert model.activation_bytes(B, T) == units * B * T * C * 4
    assert (acts.shared.proj is None) == (not residual)
    # the estimate counts these buffers: it moves from GPT-2's by their difference and by the
    # parameters' (p, g, m, v)
    difference = training_bytes(config, B, T) - training_bytes(BASE, B, T)
    params = (config.parameter_count() - BASE.parameter_count()) * 4 * 4
    assert difference == params + model.activation_bytes(B, T) - GPT(BASE).activation_bytes(B, T)


# --------------------------------------------------------------------------------------------
# mixed precision: the stream is never rounded in place
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("norm", ["post", "none"])
def test_bf16_leaves_the_residual_stream_in_float32(norm, kernels):
    config = config_of(norm, True)
    model = perturbed(config, dtype=np.float32, precision="bf16")
    idx, targets = batch(config, T=8)
    with backend.use_kernels(kernels):
        model.forward_backward(idx, targets)
        first = model.flat_grads.copy()
        acts = model._acts
        # the embedding's output, recomputed on its own from the compute weights the layers read
        w = model._compute_views
        np.testing.assert_array_equal(acts.x[0], w["wte.weight"][idx] + w["wpe.weight"][:8])
        # the linear layers and the head read the streams: none of them was rounded to bf16
        for i, x in enumerate(acts.x):
            assert not np.array_equal(round_to_bf16(x), x), f"stream {i} was rounded"
        # the backward's recomputation found the same inputs: a second step, the same gradient
        model.forward_backward(idx, targets)
    np.testing.assert_array_equal(model.flat_grads, first)
    # and bf16 is an approximation of the fp32 model, not another model
    fp32 = perturbed(config, dtype=np.float32)
    loss32, _ = fp32.forward_backward(idx, targets)
    loss16, _ = model.forward_backward(idx, targets)
    assert loss16 == pytest.approx(loss32, rel=2e-2)


# --------------------------------------------------------------------------------------------
# decoding with a KV cache
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm, residual", VARIANTS, ids=IDS)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_prefill_then_decode_steps_match_the_full_logits(norm, residual, precision):
    config = config_of(norm, residual)
    dtype = np.float64 if precision == "fp32" else np.float32
    model = perturbed(config, dtype=dtype, precision=precision)
    tokens = np.random.default_rng(1).integers(0, config.vocab_size, size=(2, config.block_size))
    full = model.logits(tokens)
    logits, cache = model.prefill(tokens[:, :3])
    steps = [logits]
    for t in range(3, config.block_size):
        steps.append(model.decode_step(tokens[:, t], cache))
    cached = np.stack(steps, axis=1)  # (B, T - 2, V)
    if precision == "fp32":
        np.testing.assert_allclose(cached, full[:, 2:], atol=1e-12, rtol=0)
    else:  # the same roundings, up to a rare flip of one unit (test_model_kvcache)
        _assert_same_up_to_rounding_flips(cached, full[:, 2:], precision)


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm, residual", VARIANTS, ids=IDS)
def test_a_checkpoint_round_trips_the_variant(tmp_path, norm, residual):
    config = config_of(norm, residual)
    model = perturbed(config, dtype=np.float32)
    optimizer = AdamW.for_model(model, lr=1e-3)
    idx, targets = batch(config)
    model.forward_backward(idx, targets)
    optimizer.step()
    path = save_checkpoint(tmp_path / "run", 1, model, optimizer, {"note": "x"})
    hf = json.loads((path / "config.json").read_text())
    assert hf["tinygradlm"]["norm"] == norm and hf["tinygradlm"]["residual"] == residual
    gpt2 = norm == "pre" and residual
    assert (path / MODEL_FILE).exists() == gpt2
    assert (path / VARIANT_MODEL_FILE).exists() != gpt2
    assert (hf["model_type"] == "gpt2") == gpt2
    ckpt = load_checkpoint(path)
    assert ckpt.config == config
    fresh = GPT(config, seed=5)
    fresh_opt = AdamW.for_model(fresh, lr=1.0)
    restore(fresh, fresh_opt, ckpt)
    np.testing.assert_array_equal(fresh.flat_params, model.flat_params)
    np.testing.assert_array_equal(fresh_opt.m, optimizer.m)
    np.testing.assert_array_equal(fresh.logits(idx), model.logits(idx))
    # the model-only form too
    only = save_model(tmp_path / "model", model)
    np.testing.assert_array_equal(load_model(only).logits(idx), model.logits(idx))


def test_a_checkpoint_of_a_variant_refuses_a_model_of_another(tmp_path):
    model = GPT(config_of("post", True))
    path = save_model(tmp_path / "post", model)
    with pytest.raises(CheckpointError, match="norm"):
        restore(GPT(config_of("pre", True)), None, load_checkpoint(path))


def test_a_config_json_without_the_new_keys_loads_as_gpt2(tmp_path):
    model = perturbed(BASE, dtype=np.float32)
    path = save_model(tmp_path / "old", model)
    config_file = path / "config.json"
    hf = json.loads(config_file.read_text())
    del hf["tinygradlm"]["norm"], hf["tinygradlm"]["residual"]  # as written before them
    config_file.write_text(json.dumps(hf))
    manifest = json.loads((path / "manifest.json").read_text())
    data = config_file.read_bytes()
    manifest["files"]["config.json"] = {
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_model(path)
    assert (loaded.config.norm, loaded.config.residual) == ("pre", True)
    idx, _ = batch(BASE)
    np.testing.assert_array_equal(loaded.logits(idx), model.logits(idx))


def test_a_resumed_post_ln_run_ends_bit_identical(tmp_path):
    make_data(tmp_path / "data")
    model = {"preset": "tiny", "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 32}
    model |= {"norm": "post", "residual": False}

    def run(out, steps):
        config = tiny_config(
            tmp_path, out_dir=str(tmp_path / out), model=model, max_steps=steps,
            warmup_steps=2, checkpoint_interval=2,
        )  # fmt: skip
        trainer = Trainer(config, log=lambda _m: None)
        trainer.resume()
        trainer.train()
        return trainer

    straight = run("straight", 4)
    assert straight.model.config.norm == "post" and "ln_f.weight" not in straight.model.params
    run("split", 2)
    resumed = run("split", 4)
    assert resumed.step == 4
    np.testing.assert_array_equal(resumed.model.flat_params, straight.model.flat_params)
    np.testing.assert_array_equal(resumed.optimizer.v, straight.optimizer.v)


@pytest.mark.parametrize("norm, residual", [v for v in VARIANTS if v != ("pre", True)])
def test_transformers_refuses_a_variant_checkpoint(tmp_path, norm, residual):
    transformers = pytest.importorskip("transformers")
    path = save_model(tmp_path / "m", GPT(config_of(norm, residual)))
    with pytest.raises(OSError, match=r"model\.safetensors"):
        transformers.GPT2LMHeadModel.from_pretrained(path)
    with pytest.raises(ValueError, match="tinygradlm"):
        transformers.AutoModelForCausalLM.from_pretrained(path)


def test_transformers_still_loads_the_default(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = perturbed(BASE, dtype=np.float32)
    path = save_model(tmp_path / "m", model)
    hf = transformers.GPT2LMHeadModel.from_pretrained(path).eval()
    idx, _ = batch(BASE)
    with torch.no_grad():
        logits = hf(torch.tensor(idx)).logits.numpy()
    np.testing.assert_allclose(logits, model.logits(idx), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("norm, residual", [("post", True), ("none", False)])
def test_export_refuses_a_variant_naming_it(tmp_path, norm, residual):
    path = save_model(tmp_path / "m", GPT(config_of(norm, residual)))
    with pytest.raises(CheckpointError) as err:
        export(path, tmp_path / "out")
    message = str(err.value)
    assert f"norm={norm!r}, residual={residual}" in message and "pre-LN" in message
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("norm", "side", "norm must be one of 'pre', 'post', 'none', got 'side'"),
        ("residual", "yes", "residual must be true or false, got 'yes'"),
        ("residual", 1, "residual must be true or false"),
    ],
)
def test_bad_variant_settings_are_config_errors(field, value, message):
    with pytest.raises(ConfigError, match=message):
        GPTConfig(**{field: value})
    with pytest.raises(ConfigError, match=message):
        GPTConfig.from_dict({field: value})
    with pytest.raises(ConfigError, match=r"model\." + field):
        tiny_config(Path("/nonexistent"), model={"preset": "tiny", field: value})


def test_a_train_config_takes_the_variant_from_model_overrides(tmp_path):
    from tinygradlm.train import load_config

    path = tmp_path / "run.toml"
    path.write_text('[model]\npreset = "tiny"\n')
    config = load_config(str(path), ["model.residual=false", 'model.norm="none"'])
    assert config.model == {"preset": "tiny", "residual": False, "norm": "none"}
    gpt = config.gpt_config()
    assert (gpt.norm, gpt.residual, gpt.n_layer) == ("none", False, 2)
    assert list(itertools.islice(GPT(gpt).params, 3)) == [
        "wte.weight", "wpe.weight", "h.0.attn.c_attn.weight"
    ]  # fmt: skip
