"""tinygradlm.generate: the sampling context's logits equal a full recomputation across the
block_size crop (the KV cache itself: tests/test_model_kvcache.py); greedy, top-k, top-p and
temperature draw from the distributions docs/sampling.md defines; a seed reproduces a sample;
bad arguments are named; a checkpoint on disk samples to text."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm import backend
from tinygradlm.checkpoint import save_checkpoint
from tinygradlm.errors import DataError
from tinygradlm.generate import (
    Context,
    generate,
    sample_from_checkpoint,
    sample_next,
    sampling_distribution,
)
from tinygradlm.model import GPT, GPTConfig
from tinygradlm.optim import AdamW

CONFIG = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)
KERNELS = ["numpy", "numba"]
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


def perturbed(dtype=np.float32, config=CONFIG, seed=0, scale=0.3):
    """A GPT whose parameters are far from the initialisation (biases and layer norms nonzero
    and non-one), so every parameter matters to the logits."""
    model = GPT(config, seed=seed, dtype=dtype)
    noise = np.random.default_rng(seed + 1).normal(0.0, scale, model.flat_params.shape)
    model.flat_params += noise.astype(dtype)
    return model


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ---- the decoding context -------------------------------------------------------------------


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cached_logits_match_full_recomputation_across_the_crop(dtype, kernels):
    model = perturbed(dtype)
    rng = np.random.default_rng(0)
    with backend.use_kernels(kernels):
        context = Context(model, rng.integers(0, CONFIG.vocab_size, size=(2, 5)))
        # 5 prompt tokens + 20 more: 11 decode steps fill the window, then 9 re-prefills
        for _ in range(20):
            full = model.logits(context.window)[:, -1]  # (B, V) recomputed from scratch
            assert context.logits.dtype == dtype
            np.testing.assert_allclose(context.logits, full, rtol=0, atol=TOLERANCE[dtype])
            context.append(rng.integers(0, CONFIG.vocab_size, size=2))
        assert context.tokens.shape == (2, 25)
        assert context.window.shape == (2, CONFIG.block_size)
        np.testing.assert_allclose(
            context.logits, model.logits(context.window)[:, -1], rtol=0, atol=TOLERANCE[dtype]
        )


# ---- choosing the next token -----------------------------------------------------------------


def test_greedy_generation_is_argmax_of_full_recomputation_across_the_crop():
    model = perturbed()
    prompt = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
    new = generate(model, prompt, 12, temperature=0)  # 10 + 12 > block_size 16
    assert len(new) == 12
    sequence = list(prompt)
    for token in new:
        window = np.array([sequence[-CONFIG.block_size :]])
        assert token == int(np.argmax(model.logits(window)[0, -1]))
        sequence.append(token)


def test_prompt_longer_than_block_size_is_cropped_to_its_end():
    model = perturbed()
    prompt = list(np.random.default_rng(3).integers(0, CONFIG.vocab_size, size=40))
    cropped = prompt[-CONFIG.block_size :]
    assert generate(model, prompt, 6, seed=5) == generate(model, cropped, 6, seed=5)
    assert generate(model, prompt, 6, temperature=0) == generate(model, cropped, 6, temperature=0)


def test_sampling_is_reproducible_for_a_seed_and_differs_for_another():
    model = perturbed()
    a = generate(model, [1, 2, 3], 20, seed=7, temperature=1.5)
    assert a == generate(model, [1, 2, 3], 20, seed=7, temperature=1.5)
    assert a != generate(model, [1, 2, 3], 20, seed=8, temperature=1.5)
    assert all(isinstance(t, int) and 0 <= t < CONFIG.vocab_size for t in a)


def test_top_k_1_is_greedy():
    model = perturbed()
    greedy = generate(model, [7], 15, temperature=0)
    for seed in range(3):
        assert generate(model, [7], 15, top_k=1, seed=seed, temperature=2.0) == greedy


def test_batched_prompts_generate_like_single_ones_when_greedy():
    model = perturbed()
    prompts = np.array([[1, 2, 3, 4], [9, 8, 7, 6], [0, 0, 0, 0]])
    batch = generate(model, prompts, 14, temperature=0)
    assert isinstance(batch, np.ndarray) and batch.shape == (3, 14)
    for row, prompt in zip(batch, prompts, strict=True):
        assert row.tolist() == generate(model, prompt, 14, temperature=0)


def test_top_k_never_samples_outside_the_k_largest():
    logits = np.random.default_rng(4).normal(0.0, 2.0, size=30)
    k, draws = 5, 20_000
    rows = np.broadcast_to(logits, (draws, logits.size))
    tokens = sample_next(rows, np.random.default_rng(0), temperature=1.0, top_k=k)
    top = set(np.argsort(logits)[-k:].tolist())
    assert set(tokens.tolist()) == top  # every one of the k drawn, nothing else
    # and in proportion to the renormalized probabilities (5 standard errors at most)
    expected = softmax(np.where(np.isin(np.arange(30), list(top)), logits, -np.inf))
    frequency = np.bincount(tokens, minlength=30) / draws
    assert np.all(np.abs(frequency - expected) <= 5 * np.sqrt(expected * (1 - expected) / draws))


def test_draws_follow_the_distribution():
    probs = np.array([0.5, 0.25, 0.125, 0.0625, 0.0625])
    draws = 40_000
    rows = np.broadcast_to(np.log(probs), (draws, 5))
    tokens = sample_next(rows, np.random.default_rng(1))
    frequency = np.bincount(tokens, minlength=5) / draws
    assert np.all(np.abs(frequency - probs) < 5 * np.sqrt(probs * (1 - probs) / draws))


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = np.log(np.array([0.05, 0.5, 0.15, 0.3]))
    for top_p, kept in [(0.4, {1}), (0.7, {1, 3}), (0.9, {1, 3, 2}), (1.0, {0, 1, 2, 3})]:
        probs = sampling_distribution(logits, top_p=top_p)
        assert set(np.flatnonzero(probs).tolist()) == kept, top_p
        assert math.isclose(probs.sum(), 1.0)
        original = softmax(logits)[list(kept)]
        np.testing.assert_allclose(probs[list(kept)], original / original.sum())


@given(
    logits=st.lists(st.floats(-5, 5), min_size=2, max_size=12),
    top_p=st.floats(0.01, 1.0),
)
def test_top_p_set_is_minimal_and_reaches_p(logits, top_p):
    logits = np.array(logits)
    full = softmax(logits)
    probs = sampling_distribution(logits, top_p=top_p)
    kept = probs > 0
    # every kept token is at least as likely as every dropped one
    if not kept.all():
        assert full[kept].min() >= full[~kept].max()
    mass = full[kept].sum()
    assert mass >= top_p - 1e-12 or kept.all()  # the set reaches p ...
    assert mass - full[kept].min() < top_p + 1e-12  # ... and no smaller one does
    np.testing.assert_allclose(probs[kept], full[kept] / mass, rtol=1e-12)


def test_top_k_then_top_p_apply_in_that_order():
    logits = np.log(np.array([0.4, 0.3, 0.2, 0.1]))
    # top_k=2 leaves (0.4, 0.3)/0.7 = (0.571, 0.429): top_p=0.5 then keeps the first alone
    probs = sampling_distribution(logits, top_k=2, top_p=0.5)
    np.testing.assert_array_equal(probs, [1.0, 0.0, 0.0, 0.0])


def test_temperature_divides_the_logits():
    logits = np.random.default_rng(5).normal(size=(3, 10)).astype(np.float32)
    for temperature in (0.25, 1.0, 3.0):
        np.testing.assert_allclose(
            sampling_distribution(logits, temperature),
            softmax(logits.astype(np.float64) / temperature),
            rtol=1e-12,
        )
    # low temperature concentrates on the argmax, high spreads towards uniform
    assert np.all(sampling_distribution(logits, 0.01).max(-1) > 0.99)
    assert np.all(np.ptp(sampling_distribution(logits, 1e4), axis=-1) < 1e-3)
    greedy = sample_next(logits, np.random.default_rng(0), temperature=0)
    np.testing.assert_array_equal(greedy, logits.argmax(-1))


def test_stop_token_stops_generation():
    model = perturbed()
    free = generate(model, [1, 2], 12, temperature=0.8, seed=3)
    stop = free[4]
    first = free.index(stop)
    stopped = generate(model, [1, 2], 12, temperature=0.8, seed=3, stop_token=stop)
    assert stopped == free[: first + 1]  # the stop token is included, nothing after it


def test_stop_token_in_a_batch_pads_finished_rows():
    model = perturbed()
    prompts = np.array([[1, 2], [3, 4]])
    free = generate(model, prompts, 10, temperature=0)
    stop = int(free[0, 2])
    stopped = generate(model, prompts, 10, temperature=0, stop_token=stop)
    for row_free, row in zip(free, stopped, strict=True):
        hits = np.flatnonzero(row_free == stop)
        end = hits[0] + 1 if hits.size else len(row_free)
        np.testing.assert_array_equal(row[:end], row_free[:end])
        assert np.all(row[end:] == stop)
    assert stopped.shape[1] <= 10


def test_no_new_tokens():
    assert generate(perturbed(), [1], 0) == []


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_new_tokens": -1}, "max_new_tokens"),
        ({"prompt_ids": []}, "prompt_ids"),
        ({"prompt_ids": [1, 99]}, "prompt_ids: token id 99"),
        ({"stop_token": 50}, "stop_token"),
    ],
)
def test_invalid_arguments_raise_naming_the_argument(kwargs, name):
    arguments = {"prompt_ids": [1, 2], "max_new_tokens": 3, **kwargs}
    with pytest.raises(ValueError, match=name):
        generate(perturbed(), **arguments)


def test_sampling_distribution_refuses_temperature_0():
    with pytest.raises(ValueError, match="greedy"):
        sampling_distribution(np.zeros(3), temperature=0)


# ---- from a checkpoint on disk ---------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    # the tokenizer is a separate piece of work: these tests wait for it rather than fail
    tokenizer_module = pytest.importorskip("tinygradlm.tokenizer")
    root = tmp_path_factory.mktemp("sample")
    texts = ["the cat sat on the mat. the dog sat on the log."] * 4
    tokenizer = tokenizer_module.Tokenizer.train(texts, vocab_size=280)
    tokenizer.save(root / "tokenizer.txt")
    config = GPTConfig(
        vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16
    )
    model = perturbed(config=config, scale=0.5)
    optimizer = AdamW.for_model(model, lr=1e-3)
    path = save_checkpoint(
        root / "run", 1, model, optimizer, {}, tokenizer_files=[root / "tokenizer.txt"]
    )
    return path, model, tokenizer


def test_sample_from_checkpoint_continues_the_prompt(checkpoint_dir):
    path, model, tokenizer = checkpoint_dir
    text = sample_from_checkpoint(path, "the cat", 8, temperature=0, stop_at_eot=False)
    ids = tokenizer.encode("the cat")
    expected = generate(model, ids, 8, temperature=0)
    assert text == tokenizer.decode(ids + expected)
    assert text.startswith("the cat")


def test_sample_from_checkpoint_is_reproducible(checkpoint_dir):
    path, _, _ = checkpoint_dir
    a = sample_from_checkpoint(path, "the", 10, temperature=1.0, top_k=20, seed=1)
    assert a == sample_from_checkpoint(path, "the", 10, temperature=1.0, top_k=20, seed=1)


def test_empty_prompt_starts_from_the_eot_token(checkpoint_dir):
    path, model, tokenizer = checkpoint_dir
    eot = tokenizer.eot_token
    new = generate(model, [eot], 12, seed=4, stop_token=eot)
    if new and new[-1] == eot:
        new = new[:-1]
    text = sample_from_checkpoint(path, "", 12, seed=4, top_p=None)
    assert text == tokenizer.decode(new)
    assert "<|endoftext|>" not in text


def test_sample_from_checkpoint_without_a_tokenizer_file(checkpoint_dir, tmp_path):
    path, model, _ = checkpoint_dir
    bare = save_checkpoint(tmp_path, 1, model, AdamW.for_model(model, lr=1e-3), {})
    with pytest.raises(DataError, match=r"ckpt_00000001: no tokenizer .*tokenizer\.txt"):
        sample_from_checkpoint(bare, "the", 3)
    text = sample_from_checkpoint(
        bare, "the", 3, temperature=0, tokenizer_path=path / "tokenizer.txt"
    )
    assert text == sample_from_checkpoint(path, "the", 3, temperature=0)


def test_generate_applies_lora_adapters():
    from tinygradlm.lora import LoRAConfig

    config = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)
    model = GPT(config, seed=0)
    model.add_lora(LoRAConfig(rank=2, alpha=4.0), seed=1)
    rng = np.random.default_rng(3)
    model.lora.flat_params[...] = rng.normal(0, 0.5, size=model.lora.flat_params.shape)
    adapted = generate(model, [1, 2, 3], 8, temperature=0.0)
    merged_model = GPT(config, seed=0)
    merged_model.flat_params[...] = model.flat_params
    model.lora.merge_into(merged_model.params)
    assert adapted == generate(merged_model, [1, 2, 3], 8, temperature=0.0)
    base = GPT(config, seed=0)
    assert adapted != generate(base, [1, 2, 3], 8, temperature=0.0)  # the adapters mattered
