"""Inputs for the layer tests, shared by tests/ref (the NumPy reference) and tests/kernels (the
Numba twins), so both are held to the same cases.

- ``STRATEGIES[layer]``: hypothesis strategies of float64 argument lists for ``<layer>_forward``,
  drawn with :mod:`tinygradlm.testing.strategies` and kept away from trouble (layer-norm rows
  with a variance floor, at least one valid cross-entropy target), with the cases the kernels
  treat specially drawn on purpose: repeated tokens, T = 1, padded vocabularies with garbage in
  the padding, ignored targets, GELU inputs far into the tails.
- ``cast(args, dtype)``: the same arguments with every floating array in ``dtype``.
- ``example(layer, dtype)``: one fixed argument list at GPT-like shapes.
- ``IMPLEMENTATIONS``: the names ``tinygradlm.backend.layers`` takes.
- ``PAIRS[layer]``: the reference's (forward, backward) pair.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinygradlm import ref
from tinygradlm.testing import strategies as tst

IMPLEMENTATIONS = ["numpy", "numba"]
LAYERS = ["encoder", "layernorm", "linear", "attention", "gelu", "residual", "crossentropy"]
FUSED = ["encoder", "layernorm", "attention", "gelu", "crossentropy"]  # Numba's own kernels
IGNORE = -1  # the ignore_index the cross-entropy strategy uses (the default elsewhere)
PAIRS = {
    layer: (getattr(ref, f"{layer}_forward"), getattr(ref, f"{layer}_backward")) for layer in LAYERS
}

leading_shapes = tst.shapes(min_dims=0, max_dims=2, min_side=1, max_side=4)  # the (B, T) part


@st.composite
def encoder_args(draw: st.DrawFn) -> list[Any]:
    config = draw(tst.gpt_configs())
    B, T = draw(st.integers(1, 3)), draw(tst.seq_lens(config))
    Vp = config["vocab_size"] + draw(st.integers(0, 3))
    C, maxT = config["n_embd"], config["block_size"]
    # few distinct ids: repeated tokens are what the scatter-add must get right
    idx = draw(hnp.arrays(np.int64, (B, T), elements=st.integers(0, min(Vp - 1, 3))))
    return [idx, draw(tst.arrays((Vp, C))), draw(tst.arrays((maxT, C)))]


@st.composite
def layernorm_args(draw: st.DrawFn) -> list[Any]:
    C = draw(st.integers(2, 16))
    x = draw(tst.arrays((*draw(leading_shapes), C), min_std=0.2))
    return [x, draw(tst.arrays(C)), draw(tst.arrays(C))]


@st.composite
def linear_args(draw: st.DrawFn) -> list[Any]:
    C, OC = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    args = [draw(tst.arrays((*draw(leading_shapes), C))), draw(tst.arrays((C, OC)))]
    if draw(st.booleans()):
        args.append(draw(tst.arrays(OC)))
    return args


@st.composite
def attention_args(draw: st.DrawFn) -> list[Any]:
    config = draw(tst.gpt_configs(max_block_size=9, max_heads=3, max_head_size=4))
    B, T = draw(st.integers(1, 2)), draw(tst.seq_lens(config))
    qkv = draw(tst.arrays((B, T, 3 * config["n_embd"])))
    return [qkv, config["n_head"]]


@st.composite
def gelu_args(draw: st.DrawFn) -> list[Any]:
    # to ±7: past x ≈ −4, 1 + tanh(u) cancels in the tanh form; the kernel uses a sigmoid form
    return [draw(tst.arrays(tst.shapes(min_dims=1), low=-7.0, high=7.0))]


@st.composite
def residual_args(draw: st.DrawFn) -> list[Any]:
    shape = draw(tst.shapes(min_dims=1))
    return [draw(tst.arrays(shape)), draw(tst.arrays(shape))]


@st.composite
def crossentropy_args(draw: st.DrawFn) -> list[Any]:
    lead = draw(leading_shapes)
    V, pad = draw(st.integers(1, 12)), draw(st.integers(0, 4))
    logits = draw(tst.arrays((*lead, V + pad), low=-4.0, high=4.0))
    if pad and draw(st.booleans()):
        logits[..., V:] = 1e3  # garbage in the padding (exp would overflow): must change nothing
    targets = draw(
        hnp.arrays(np.int64, lead, elements=st.one_of(st.integers(0, V - 1), st.just(IGNORE)))
    )
    if (targets == IGNORE).all():
        targets.reshape(-1)[0] = 0  # at least one valid target (all ignored: loss is NaN)
    vocab_size = None if pad == 0 and draw(st.booleans()) else V
    return [logits, targets, vocab_size, IGNORE]


STRATEGIES = {
    "encoder": encoder_args(),
    "layernorm": layernorm_args(),
    "linear": linear_args(),
    "attention": attention_args(),
    "gelu": gelu_args(),
    "residual": residual_args(),
    "crossentropy": crossentropy_args(),
}


def cast(args: list[Any], dtype: Any) -> list[Any]:
    """``args`` with every floating array converted to ``dtype`` (indices and ints unchanged)."""
    return [
        a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a for a in args
    ]


def floating(args: list[Any]) -> list[np.ndarray]:
    """The floating-point array arguments: the ones a backward returns a gradient for."""
    return [a for a in args if isinstance(a, np.ndarray) and a.dtype.kind == "f"]


def upstream_gradient(out: np.ndarray, seed: int = 1) -> np.ndarray:
    """A random dout of ``out``'s shape and dtype (0-d for the cross-entropy loss)."""
    rng = np.random.default_rng(seed)
    return np.asarray(rng.normal(size=out.shape), dtype=out.dtype)


def example(layer: str, dtype: Any = np.float64, seed: int = 0, scale: int = 1) -> list[Any]:
    """A fixed argument list for ``<layer>_forward`` at GPT-like shapes (``scale`` > 1: larger,
    with T = 64·scale, enough rows for several blocks of the kernels' parallel loops)."""
    rng = np.random.default_rng(seed)
    B, T, C, NH, V, Vp, maxT = 2, 5, 8, 2, 11, 16, 7
    if scale > 1:
        B, T, C, NH, V, Vp, maxT = 2, 64 * scale, 32, 4, 1000, 1024, 64 * scale

    def normal(*shape: int) -> np.ndarray:
        return rng.normal(size=shape).astype(dtype)

    if layer == "encoder":
        return [rng.integers(0, V, size=(B, T)), normal(Vp, C), normal(maxT, C)]
    if layer == "layernorm":
        return [normal(B, T, C), normal(C), normal(C)]
    if layer == "linear":
        return [normal(B, T, C), normal(C, 3 * C), normal(3 * C)]
    if layer == "attention":
        return [normal(B, T, 3 * C), NH]
    if layer == "gelu":
        return [normal(B, T, 4 * C)]
    if layer == "residual":
        return [normal(B, T, C), normal(B, T, C)]
    if layer == "crossentropy":
        targets = rng.integers(0, V, size=(B, T))
        targets[1, 2] = -100  # the default ignore_index
        return [normal(B, T, Vp) * dtype(3), targets, V]
    raise ValueError(f"no example for {layer!r}")
