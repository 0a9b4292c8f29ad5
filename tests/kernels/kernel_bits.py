"""Every Numba kernel's outputs on fixed inputs, saved to an .npz file: run as a script in a
subprocess (``python tests/kernels/kernel_bits.py OUT.npz``), once with an empty
``NUMBA_CACHE_DIR`` (every kernel freshly compiled) and again with the same directory (every
kernel loaded from Numba's cache), and compare the files bit for bit
(tests/kernels/test_kernels_exact.py)."""

from __future__ import annotations

import json
import sys

import numpy as np
from numba.core.registry import CPUDispatcher as Dispatcher

from tinygradlm import kernels
from tinygradlm.kernels import adamw, attention, crossentropy, encoder, gelu, layernorm, rounding


def normal(rng: np.random.Generator, shape: tuple[int, ...], dtype) -> np.ndarray:
    return rng.normal(size=shape).astype(dtype)


def layer_outputs(dtype) -> dict[str, np.ndarray]:
    """Forward and backward of each fused layer, at shapes large enough for several blocks of
    each parallel loop and for the vectorized loops' remainders (odd sizes)."""
    rng = np.random.default_rng(0)
    B, T, C, NH, V, Vp, maxT = 2, 67, 36, 4, 1001, 1024, 80
    results: dict[str, np.ndarray] = {}

    def record(layer, args):
        forward = getattr(kernels, f"{layer}_forward")
        backward = getattr(kernels, f"{layer}_backward")
        out, cache = forward(*args)
        dout = np.asarray(rng.normal(size=np.shape(out)), dtype=dtype)
        results[f"{layer}.out"] = np.asarray(out)
        for i, grad in enumerate(backward(dout, cache)):
            results[f"{layer}.grad{i}"] = grad

    idx = rng.integers(0, V, size=(B, T))
    record("encoder", [idx, normal(rng, (Vp, C), dtype), normal(rng, (maxT, C), dtype)])
    weight, bias = normal(rng, (C,), dtype), normal(rng, (C,), dtype)
    record("layernorm", [normal(rng, (B, T, C), dtype), weight, bias])
    record("attention", [normal(rng, (B, T, 3 * C), dtype), NH])
    # the backward's recomputation of the forward's probabilities, from its row statistics
    scores, datt = normal(rng, (B * NH, T, T), dtype), normal(rng, (B * NH, T, T), dtype)
    scale, run = dtype(0.125), attention._causal_blocks(T)[0][1]
    att, shift, inv = scores.copy(), np.empty((B * NH, T), dtype), np.empty((B * NH, T), dtype)
    attention._causal_softmax_rows(att, scale, run, shift, inv)
    recomputed, d = scores.copy(), datt.copy()
    attention._causal_softmax_backward_rows(d, recomputed, scale, run, shift, inv)
    results["attention.softmax_rows"], results["attention.dscores"] = att, d
    results["attention.recomputed"] = recomputed
    gelu_x = normal(rng, (B, T, 4 * C + 3), dtype) * dtype(3)
    record("gelu", [gelu_x])
    targets = rng.integers(0, V, size=(B, T))
    targets[1, 2] = -100
    record("crossentropy", [normal(rng, (B, T, Vp), dtype) * dtype(3), targets, V])
    return results


def adamw_outputs(dtype) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    n = 10_007
    results = {}
    for masked in (False, True):
        params, m = normal(rng, (n,), dtype), normal(rng, (n,), dtype)
        v = rng.random(n).astype(dtype)
        ranges = np.array([[0, 3001], [3007, 9000]]) if masked else None
        for step in (1, 2, 3):
            grads = normal(rng, (n,), dtype)
            kernels.adamw_update(params, grads, m, v, step, 1e-3, 0.9, 0.95, 1e-8, 0.1, ranges)
        for name, value in (("params", params), ("m", m), ("v", v)):
            results[f"adamw.masked={masked}.{name}"] = value.copy()
    return results


def rounding_outputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    bits = rng.integers(0, 2**32, size=20_011, dtype=np.uint64).astype(np.uint32)
    x = np.concatenate([bits.view(np.float32), normal(rng, (5_003,), np.float32) * 1e-5])
    return {"round_to_bf16": kernels.round_to_bf16(x), "round_to_fp16": kernels.round_to_fp16(x)}


def all_outputs() -> dict[str, np.ndarray]:
    results = rounding_outputs()
    for dtype in (np.float32, np.float64):
        name = np.dtype(dtype).name
        for key, value in {**layer_outputs(dtype), **adamw_outputs(dtype)}.items():
            results[f"{name}.{key}"] = value
    return results


def compile_counts() -> dict[str, int]:
    """How many kernel signatures this process compiled and how many it loaded from the cache."""
    counts = {"compiled": 0, "loaded": 0}
    for module in (adamw, attention, crossentropy, encoder, gelu, layernorm, rounding):
        for value in vars(module).values():
            if isinstance(value, Dispatcher) and value.__module__ == module.__name__:
                counts["compiled"] += sum(value.stats.cache_misses.values())
                counts["loaded"] += sum(value.stats.cache_hits.values())
    return counts


if __name__ == "__main__":
    np.savez(sys.argv[1], **all_outputs())
    print(json.dumps(compile_counts()))
