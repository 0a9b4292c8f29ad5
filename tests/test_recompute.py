"""recompute_mlp: the MLP's input stream x2 and c_fc's outputs computed again in the backward
instead of kept. The same bits as keeping them (every kernel set, precision, block variant, with
LoRA, through AdamW steps and a whole training run), (L - 1) blocks' (B, T, C) and (B, T, 4C)
buffers less in the workspace, in the measured peak and in the closed-form estimate, and a
setting checked like every other."""

import tracemalloc

import numpy as np
import pytest
from test_train import make_data, tiny_config

from tinygradlm import backend
from tinygradlm.errors import ConfigError
from tinygradlm.lora import LoRAConfig
from tinygradlm.model import GPT, GPTConfig, training_bytes
from tinygradlm.monitor import read_metrics
from tinygradlm.optim import AdamW
from tinygradlm.train import Trainer


def config_of(norm="pre", residual=True, n_layer=3):
    return GPTConfig(
        vocab_size=96, block_size=16, n_layer=n_layer, n_head=2, n_embd=32, norm=norm,
        residual=residual,
    )  # fmt: skip


def steps(config, recompute_mlp, precision="fp32", lora=False, n=3):
    """Losses, gradients and final weights (and adapter weights) of n AdamW steps."""
    rng = np.random.default_rng(0)
    idx = rng.integers(0, config.vocab_size, size=(2, 16))
    targets = rng.integers(0, config.vocab_size, size=(2, 16))
    model = GPT(config, seed=0, precision=precision, recompute_mlp=recompute_mlp)
    flat = model.flat_params
    if lora:
        model.add_lora(LoRAConfig(rank=2, alpha=4.0), seed=1)
        model.lora.flat_params[...] = rng.normal(0, 0.02, size=model.lora.flat_params.size)
        flat = model.lora.flat_params
    optimizer = AdamW(flat, model.lora.flat_grads if lora else model.flat_grads, lr=1e-2)
    seen = []
    for _ in range(n):
        loss, _ = model.forward_backward(idx, targets)
        grads = model.lora.flat_grads if lora else model.flat_grads
        seen += [np.float64(loss), grads.copy()]
        optimizer.step()
    return [*seen, model.flat_params.copy(), flat.copy()]


@pytest.mark.parametrize("kernels", ["numba", "numpy"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize(
    "norm, residual", [("pre", True), ("post", True), ("none", True), ("pre", False)]
)
def test_recomputing_x2_and_c_fc_gives_the_same_bits(kernels, precision, norm, residual):
    config = config_of(norm, residual)
    with backend.use_kernels(kernels):
        kept, again = steps(config, False, precision), steps(config, True, precision)
    for k, (a, b) in enumerate(zip(kept, again, strict=True)):
        assert np.array_equal(a, b), k


@pytest.mark.parametrize("kernels", ["numba", "numpy"])
def test_recomputing_with_lora_adapters_gives_the_same_bits(kernels):
    # the recomputed attn.c_proj and c_fc outputs include their adapters' terms, as the
    # forward's did
    with backend.use_kernels(kernels):
        kept, again = steps(config_of(), False, lora=True), steps(config_of(), True, lora=True)
    for k, (a, b) in enumerate(zip(kept, again, strict=True)):
        assert np.array_equal(a, b), k


def test_the_workspace_the_peak_and_the_estimate_lose_the_kept_x2_and_c_fc_outputs():
    config = config_of(n_layer=6)
    B, T = 4, 16
    mlp_kept = B * T * (1 + 4) * config.n_embd * 4  # bytes of a (B, T, C) and a (B, T, 4C) buffer
    idx = np.zeros((B, T), np.int64)
    GPT(config).forward_backward(idx, idx)  # compile the kernels outside the measurement
    peaks, workspaces = [], []
    for recompute_mlp in (False, True):
        tracemalloc.start()
        model = GPT(config, recompute_mlp=recompute_mlp)
        optimizer = AdamW.for_model(model, lr=1e-3)
        for _ in range(2):
            model.forward_backward(idx, idx)
            optimizer.step()
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        workspaces.append(model._acts.nbytes)
    saved = (config.n_layer - 1) * mlp_kept  # L blocks' buffers become one shared set
    assert workspaces[0] - workspaces[1] == saved
    assert 0.8 * saved < peaks[0] - peaks[1] < 1.2 * saved
    estimates = [training_bytes(config, B, T, recompute_mlp=r) for r in (False, True)]
    assert estimates[0] - estimates[1] == saved
    assert 0.75 * peaks[1] < estimates[1] < 1.5 * peaks[1]


@pytest.mark.parametrize("precision, accumulate", [("fp32", 1), ("fp16", 3)])
def test_a_training_run_is_the_same_with_the_setting_and_it_is_checked(
    tmp_path, precision, accumulate
):
    # fp16 with its loss scale, and micro-steps whose gradients add up before each update
    make_data(tmp_path / "data")
    losses = []
    for recompute_mlp in (False, True):
        config = tiny_config(
            tmp_path, max_steps=6, log_interval=1, out_dir=str(tmp_path / f"run{recompute_mlp}"),
            recompute_mlp=recompute_mlp, precision=precision, grad_accum_steps=accumulate,
        )  # fmt: skip
        trainer = Trainer(config, log=lambda _m: None)
        assert trainer.model.recompute_mlp is recompute_mlp
        trainer.train()
        records = read_metrics(config.out_dir)
        losses.append([r["loss"] for r in records if r["kind"] == "train"])
    assert losses[0] == losses[1] and len(losses[0]) > 0
    with pytest.raises(ConfigError, match="recompute_mlp"):
        tiny_config(tmp_path, recompute_mlp="yes")


def test_a_blocks_backward_frees_each_gradient_once_it_is_used():
    # the gradients of a block's layer outputs do not pile up: at most the MLP's (B, T, 4C) one
    # and a few of width C are alive at once, not all of them until the block returns
    import tinygradlm.model.gpt as gpt

    config = config_of(n_layer=2)
    B, T, C = 4, 16, config.n_embd
    unit = B * T * C * 4  # bytes of one (B, T, C) float32 array
    model = GPT(config)
    idx = np.zeros((B, T), np.int64)
    model.forward_backward(idx, idx)  # buffers made, kernels compiled
    peaks = []
    original = gpt.block_backward

    def measured(*args):
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        result = original(*args)
        peaks.append(tracemalloc.get_traced_memory()[1] - start)
        return result

    gpt.block_backward = measured
    try:
        tracemalloc.start()
        model.forward_backward(idx, idx)
        tracemalloc.stop()
    finally:
        gpt.block_backward = original
    assert len(peaks) == config.n_layer
    # kept to the end, the gradients would be 12 units (dfcg 4, dqkv 3, five of width 1)
    assert max(peaks) < 9 * unit, [p / unit for p in peaks]
