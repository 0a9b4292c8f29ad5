"""Training's fused head and loss (ModelLayers.head_loss, in row chunks) against the plain head
the model runs for GPT.logits: forward with the (B, T, Vp) logits, cross-entropy, and
GPT.backward from dlogits. Same loss and gradients, at every precision, with ignored targets,
with LoRA adapters, with either kernels; and no (B, T, Vp) array is made."""

import tracemalloc

import numpy as np
import pytest

from tinygradlm import backend
from tinygradlm.lora import LoRAConfig
from tinygradlm.model import GPT, GPTConfig
from tinygradlm.ref import head_loss

CONFIG = GPTConfig(vocab_size=29, block_size=16, n_layer=2, n_head=2, n_embd=16)  # Vp = 64


def batch(B=3, T=11, seed=0):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, CONFIG.vocab_size, size=(B, T))
    targets = rng.integers(0, CONFIG.vocab_size, size=(B, T))
    targets[0, 2] = targets[2, 10] = -100
    return idx, targets


def plain_head_step(model, idx, targets, loss_scale):
    """The unfused composition: logits, cross-entropy, backward from dlogits."""
    model.flat_grads[...] = 0
    if model.lora is not None:
        model.lora.flat_grads[...] = 0
    L = backend.layers()
    logits, caches = model.forward(idx, keep=True)
    loss, cache_ce = L.crossentropy_forward(logits, targets, CONFIG.vocab_size)
    (dlogits,) = L.crossentropy_backward(model.dtype.type(loss_scale), cache_ce)
    model.backward(dlogits, caches)
    return float(loss)


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("lora", [False, True])
def test_fused_head_loss_gives_the_plain_heads_loss_and_gradients(
    kernels, precision, lora, monkeypatch
):
    monkeypatch.setattr(head_loss, "HEAD_CHUNK_ROWS", 4)  # 33 rows: chunks of 4 and a last of 1
    with backend.use_kernels(kernels):
        model = GPT(CONFIG, seed=3, precision=precision)
        if lora:
            adapters = model.add_lora(LoRAConfig(rank=2, alpha=4.0), seed=1)
            adapters.flat_params[...] = np.random.default_rng(2).normal(
                0, 0.1, adapters.flat_params.shape
            )
        idx, targets = batch()
        expected_loss = plain_head_step(model, idx, targets, 8.0)
        expected = model.flat_grads.copy()
        expected_lora = None if model.lora is None else model.lora.flat_grads.copy()
        loss, _ = model.forward_backward(idx, targets, loss_scale=8.0)
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    # fp32: summation order only; bf16/fp16: a rounding flip here and there moves an entry
    # by one 16-bit step, so compare the gradients as a whole
    tol = 1e-5 if precision == "fp32" else 1e-2
    assert np.linalg.norm(model.flat_grads - expected) <= tol * np.linalg.norm(expected)
    if expected_lora is not None:
        diff = np.linalg.norm(model.lora.flat_grads - expected_lora)
        assert diff <= tol * np.linalg.norm(expected_lora)


def test_the_fused_head_makes_no_logits_sized_array(monkeypatch):
    monkeypatch.setattr(head_loss, "HEAD_CHUNK_ROWS", 32)  # 8 chunks of the 256 rows
    config = GPTConfig(vocab_size=2000, block_size=64, n_layer=1, n_head=2, n_embd=16)
    model = GPT(config, seed=0)
    idx = np.zeros((4, 64), np.int64)
    model.forward_backward(idx, idx)  # buffers made, kernels compiled
    tracemalloc.start()
    model.forward_backward(idx, idx)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    logits_bytes = 4 * 64 * config.Vp * 4  # one (B, T, Vp) float32 array
    assert peak < logits_bytes / 2
    assert model._acts.logits is None  # the plain head's buffer was never made
