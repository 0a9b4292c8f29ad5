"""The Numba attention keeps no (B, NH, T, T) probabilities for its backward, only two (B, NH, T)
row statistics from which the backward recomputes them bit for bit, a chunk of (T, T) matrices
at a time (tinygradlm/kernels/attention.py). These tests pin what that must not change: the
results against ref's (which keeps att), whatever the chunks, and the memory kept."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from layer_inputs import upstream_gradient
from test_kernels_match_ref import assert_close, assert_kernel_matches_ref

from tinygradlm import kernels, ref
from tinygradlm.kernels import attention

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])


def qkv_example(B: int, T: int, n_head: int, head_size: int, dtype, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(B, T, 3 * n_head * head_size)) * 2).astype(dtype)


def chunk_bytes(T: int, itemsize: int) -> dict[str, int]:
    """CHUNK_BYTES giving each kind of chunk at (B, NH) = (3, 5): one head, a run of two heads
    (the last run one), one batch element, two batch elements (the last one)."""
    matrix = T * T * itemsize
    return {"head": 1, "2 heads": 2 * matrix, "element": 5 * matrix, "2 elements": 10 * matrix}


@DTYPES
@pytest.mark.parametrize("chunk", ["head", "2 heads", "element", "2 elements"])
def test_attention_matches_ref_whatever_the_chunks(monkeypatch, dtype, chunk):
    B, T, NH = 3, 70, 5  # two causal runs of positions, the second shorter
    monkeypatch.setattr(attention, "CHUNK_BYTES", chunk_bytes(T, np.dtype(dtype).itemsize)[chunk])
    chunks = attention._chunks(B, NH, T, np.dtype(dtype).itemsize)
    sizes = {(b.stop - b.start, h.stop - h.start) for b, h in chunks}
    expected_sizes = {
        "head": {(1, 1)},
        "2 heads": {(1, 2), (1, 1)},
        "element": {(1, 5)},
        "2 elements": {(2, 5), (1, 5)},
    }
    assert sizes == expected_sizes[chunk]
    qkv = qkv_example(B, T, NH, 4, dtype)
    assert_kernel_matches_ref("attention", [qkv, NH], dtype)
    # the probabilities the backward recomputes are the forward's, to ref's within tolerance
    _, cache = kernels.attention_forward(qkv, NH)
    _, (_, expected, _) = ref.attention_forward(qkv, NH)
    assert_close(attention.attention_probabilities(cache), expected, dtype, "probabilities")


@DTYPES
def test_attention_gives_the_same_bits_whatever_the_chunks(monkeypatch, dtype):
    # BLAS is called per (T, T) matrix with the same sizes, and the row kernels per row: how the
    # matrices are grouped must not move a bit (the step's gradients do not depend on B)
    B, T, NH = 3, 130, 5
    qkv = qkv_example(B, T, NH, 8, dtype, seed=1)
    dout = upstream_gradient(qkv[..., : NH * 8])
    results = []
    for size in chunk_bytes(T, np.dtype(dtype).itemsize).values():
        monkeypatch.setattr(attention, "CHUNK_BYTES", size)
        out, cache = kernels.attention_forward(qkv, NH)
        (dqkv,) = kernels.attention_backward(dout, cache)
        results.append((out, dqkv, attention.attention_probabilities(cache)))
    for result in results[1:]:
        for actual, expected in zip(result, results[0], strict=True):
            np.testing.assert_array_equal(actual, expected)


def test_attention_cache_holds_no_probabilities():
    B, T, NH = 4, 256, 4
    qkv = qkv_example(B, T, NH, 4, np.float32)
    _, cache = kernels.attention_forward(qkv, NH)
    arrays = [a for a in cache if isinstance(a, np.ndarray) and a is not qkv]
    assert arrays and all(a.size <= B * NH * T for a in arrays)


def test_attention_memory_is_a_chunk_not_the_probabilities():
    B, T, NH = 8, 256, 4  # att would be (8, 4, 256, 256) float32: 8 MiB
    probabilities = B * NH * T * T * 4
    qkv = qkv_example(B, T, NH, 4, np.float32)
    out, cache = kernels.attention_forward(qkv, NH)  # compiled outside the measurement
    kernels.attention_backward(upstream_gradient(out), cache)
    del out, cache
    tracemalloc.start()
    try:
        out, cache = kernels.attention_forward(qkv, NH)
        kept, forward_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        (dqkv,) = kernels.attention_backward(upstream_gradient(out), cache)
        _, backward_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # kept for backward: out and two (B, NH, T) row statistics
    assert kept - out.nbytes <= 2 * B * NH * T * 4 + 4096
    # a chunk's scratch at a time (one forward, two backward), not every (T, T) matrix
    assert forward_peak - kept <= attention.CHUNK_BYTES + 4096
    assert backward_peak - kept <= 2 * attention.CHUNK_BYTES + 2 * dqkv.nbytes + 4096
    assert 2 * attention.CHUNK_BYTES + 2 * dqkv.nbytes < probabilities / 2


def test_attention_chunk_is_1_mib():
    # tinygradlm.model.training_bytes counts a chunk of this size (and docs/verification.md's
    # table of block sizes names it)
    assert attention.CHUNK_BYTES == 1 << 20
