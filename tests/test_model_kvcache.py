"""The KV cache (tinygradlm.model.kvcache) and GPT's decoding through it: prefill and decode
steps give the logits of a full recomputation at fp32, bf16 and fp16, with and without LoRA
adapters, across the block_size crop; the cache holds c_attn's keys and values; a decode step
does one position's work."""

import time

import numpy as np
import pytest

from tinygradlm import backend
from tinygradlm.generate import Context
from tinygradlm.lora import LoRAConfig
from tinygradlm.model import GPT, GPTConfig, KVCache
from tinygradlm.model.kvcache import attend_to_cache
from tinygradlm.precision import Precision
from tinygradlm.ref import attention_forward

CONFIG = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)
KERNELS = ["numpy", "numba"]


def perturbed(dtype=np.float32, config=CONFIG, seed=0, scale=0.3, precision="fp32"):
    """A GPT whose parameters are far from the initialisation (biases and layer norms nonzero
    and non-one), so every parameter matters to the logits."""
    model = GPT(config, seed=seed, dtype=dtype, precision=precision)
    noise = np.random.default_rng(seed + 1).normal(0.0, scale, model.flat_params.shape)
    model.flat_params += noise.astype(dtype)
    return model


def with_adapters(model, seed=1):
    """``model`` with LoRA adapters on every projection, B nonzero (so they change the logits)."""
    adapters = model.add_lora(LoRAConfig(rank=2, alpha=4.0), seed=seed)
    noise = np.random.default_rng(seed + 10).normal(0.0, 0.3, adapters.flat_params.shape)
    adapters.flat_params[...] = noise.astype(model.dtype)
    return model


@pytest.mark.parametrize("kernels", KERNELS)
def test_prefill_then_decode_steps_match_logits_of_every_prefix(kernels):
    model = perturbed(np.float64)
    tokens = np.random.default_rng(1).integers(0, CONFIG.vocab_size, size=(3, CONFIG.block_size))
    with backend.use_kernels(kernels):
        full = model.logits(tokens)  # (B, T, V): row t is the prediction after t+1 tokens
        logits, cache = model.prefill(tokens[:, :4])
        np.testing.assert_allclose(logits, full[:, 3], atol=1e-12, rtol=0)
        for t in range(4, CONFIG.block_size):
            logits = model.decode_step(tokens[:, t], cache)
            assert cache.length == t + 1
            np.testing.assert_allclose(logits, full[:, t], atol=1e-12, rtol=0)


def test_padded_vocabulary_rows_are_never_logits():
    config = GPTConfig(
        vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=8, padded_vocab_size=64
    )
    model = perturbed(np.float64, config=config)
    logits, cache = model.prefill([[1, 2]])
    assert logits.shape == (1, 50)
    np.testing.assert_allclose(model.decode_step([3], cache), model.logits([[1, 2, 3]])[:, -1])


def test_cache_holds_the_keys_and_values_of_c_attn():
    model = perturbed(np.float64)
    tokens = np.arange(10)[None, :]
    _, cache = model.prefill(tokens[:, :6])
    for t in range(6, 10):
        model.decode_step(tokens[:, t], cache)
    # layer 0's keys and values are c_attn of ln_1 of the embeddings: recompute them directly
    p, C, NH = model.params, CONFIG.n_embd, CONFIG.n_head
    x = p["wte.weight"][tokens[0]] + p["wpe.weight"][:10]  # (T, C)
    xhat = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    qkv = (xhat * p["h.0.ln_1.weight"] + p["h.0.ln_1.bias"]) @ p["h.0.attn.c_attn.weight"]
    qkv += p["h.0.attn.c_attn.bias"]
    k = qkv[:, C : 2 * C].reshape(10, NH, C // NH).transpose(1, 0, 2)  # (NH, T, HS)
    v = qkv[:, 2 * C :].reshape(10, NH, C // NH).transpose(1, 0, 2)
    np.testing.assert_allclose(cache.keys[0][0, :, :10], k, atol=1e-12)
    np.testing.assert_allclose(cache.values[0][0, :, :10], v, atol=1e-12)
    assert cache.keys[0].shape == (1, NH, CONFIG.block_size, C // NH)
    assert not cache.keys[0][:, :, 10:].any()  # the rest is untouched


def test_attend_to_cache_is_the_last_row_of_causal_attention():
    rng = np.random.default_rng(2)
    B, T, NH, HS = 2, 7, 3, 4
    qkv = rng.normal(size=(B, T, 3 * NH * HS))
    full, _ = attention_forward(qkv, NH)  # (B, T, C)

    def heads(a):
        return a.reshape(B, -1, NH, HS).transpose(0, 2, 1, 3)

    C = NH * HS
    q = heads(qkv[:, -1:, :C])
    y = attend_to_cache(q, heads(qkv[..., C : 2 * C]), heads(qkv[..., 2 * C :]))
    np.testing.assert_allclose(y.transpose(0, 2, 1, 3).reshape(B, C), full[:, -1], atol=1e-13)


def test_attend_to_cache_keeps_float32():
    q = np.ones((1, 2, 1, 4), dtype=np.float32)
    kv = np.ones((1, 2, 3, 4), dtype=np.float32)
    assert attend_to_cache(q, kv, kv).dtype == np.float32


def test_prefill_reuses_a_given_cache():
    model = perturbed()
    logits, cache = model.prefill([[1, 2, 3]])
    keys = cache.keys[0]
    logits2, cache2 = model.prefill([[1, 2, 3]], cache)
    assert cache2 is cache and cache.keys[0] is keys and cache.length == 3
    np.testing.assert_array_equal(logits, logits2)
    assert cache.nbytes == 2 * CONFIG.n_layer * CONFIG.block_size * CONFIG.n_embd * 4


def test_decode_step_refuses_a_full_or_empty_cache():
    model = perturbed()
    _, cache = model.prefill(np.zeros((1, CONFIG.block_size), dtype=np.int64))
    with pytest.raises(ValueError, match="cache is full"):
        model.decode_step([0], cache)
    with pytest.raises(ValueError, match="cache is empty"):
        model.decode_step([0], KVCache(CONFIG, 1))
    _, cache = model.prefill([[1, 2]])
    with pytest.raises(ValueError, match="batch size 1"):
        model.decode_step([1, 2], cache)
    with pytest.raises(ValueError, match="token id 50"):
        model.decode_step([50], cache)


def test_prefill_checks_its_prompt():
    model = perturbed()
    with pytest.raises(ValueError, match="block_size"):
        model.prefill(np.zeros((1, CONFIG.block_size + 1), dtype=np.int64))
    with pytest.raises(TypeError, match="integer token ids"):
        model.prefill([[1.0, 2.0]])
    with pytest.raises(ValueError, match="batch size 1"):
        model.prefill([[1], [2]], KVCache(CONFIG, 1))


def test_cached_decode_step_does_constant_work_per_token():
    """At T = block_size a decode step costs one position's work; a full forward T positions'.
    The ratio measured is 25-50×; asking for 4× leaves room for a busy machine."""
    config = GPTConfig(vocab_size=512, block_size=256, n_layer=2, n_head=4, n_embd=128)
    model = GPT(config)
    idx = np.random.default_rng(0).integers(0, config.vocab_size, size=(1, config.block_size))
    with backend.use_kernels("numpy"):
        _, cache = model.prefill(idx[:, :-1])
        model.logits(idx)  # warm up

        def best_of(n, fn):
            times = []
            for _ in range(n):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            return min(times)

        def step():
            cache.length = config.block_size - 1  # rewrite the last position each time
            model.decode_step(idx[:, -1], cache)

        full = best_of(3, lambda: model.logits(idx))
        cached = best_of(10, step)
    assert cached * 4 < full, f"decode step {cached * 1e3:.2f} ms, full {full * 1e3:.2f} ms"


# ---- low precision and LoRA: the cache computes what the full forward computes ---------------
#
# Decoding runs the same chain as GPT.logits: the same rounded compute weights, the same rounding
# points, the adapters applied unmerged. At fp32 the two differ only by float32 rounding of
# different GEMM shapes (one position against the cache, or all T): ~1e-6 on these logits. At
# bf16/fp16 every stored activation and the logits are rounded to the format, so the two agree
# bit for bit unless a float32 difference upstream puts one value on the other side of a
# rounding boundary; that moves it by one unit of the format (2u relative, u = unit roundoff)
# and the logits by at most a few units of theirs. We allow 1% of the logits to differ, each by
# at most 8u of the row's largest logit. The fp32 masters (what decoding once read, unrounded)
# give logits off the format's grid: nearly every one differs, so the old drift fails this.


def _trajectory(model, steps=20):
    """(cached, full) next-token logits (steps, B, V) of a Context and of GPT.logits on its
    window, over a generation that crosses block_size (5 prompt tokens + 20 more)."""
    rng = np.random.default_rng(0)
    context = Context(model, rng.integers(0, CONFIG.vocab_size, size=(2, 5)))
    cached, full = [], []
    for _ in range(steps):
        cached.append(context.logits)
        full.append(model.logits(context.window)[:, -1])
        context.append(rng.integers(0, CONFIG.vocab_size, size=2))
    return np.array(cached), np.array(full)


def _assert_same_up_to_rounding_flips(cached, full, precision):
    u = Precision(precision).unit_roundoff
    differ = cached != full
    assert differ.mean() <= 0.01, f"{differ.mean():.1%} of the logits differ"
    bound = 8 * u * np.abs(full).max(axis=-1, keepdims=True)  # (steps, B, 1)
    assert (np.abs(cached - full) <= bound).all()


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("lora", [False, True], ids=["base", "lora"])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cached_logits_equal_full_logits_at_every_precision(precision, lora, kernels):
    model = perturbed(precision=precision)
    if lora:
        with_adapters(model)
    with backend.use_kernels(kernels):
        cached, full = _trajectory(model)  # 5 + 20 tokens: the window slides after 16
        if precision == "fp32":
            scale = np.abs(full).max()
            np.testing.assert_allclose(cached, full, rtol=0, atol=1e-6 * max(scale, 1.0))
            return
        _assert_same_up_to_rounding_flips(cached, full, precision)
        # the old drift: decoding from the fp32 masters differs almost everywhere, and in all by
        # far more than the rare rounding flips (compared in total: one flip can be as large as
        # a typical drift entry, so the maxima alone would say little)
        masters = perturbed(precision="fp32")
        if lora:
            with_adapters(masters)
        _, fp32_full = _trajectory(masters)
        assert (fp32_full != full).mean() > 0.5
        assert np.abs(fp32_full - full).sum() > 10 * np.abs(cached - full).sum()


def test_adapters_apply_unmerged_and_change_the_cached_logits():
    base = perturbed()
    adapted = with_adapters(perturbed())
    cached_base, _ = _trajectory(base, steps=3)
    cached, full = _trajectory(adapted, steps=3)
    assert np.abs(cached - cached_base).max() > 1e-2  # the adapters matter
    np.testing.assert_allclose(cached, full, rtol=0, atol=1e-5)
    assert adapted.lora is not None  # nothing was merged or detached
