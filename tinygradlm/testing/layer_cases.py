"""The test cases of :func:`tinygradlm.testing.check_layer`: each GPT-2 layer's arguments, built
from a few integers, and the hypothesis strategies that draw those integers.

A case is ``(layer, dims, seed, scale)``: ``dims`` the layer's sizes (``{"B": 1, "T": 1, "C":
65}``), ``seed`` the NumPy seed of the values and ``scale`` their magnitude. :func:`layer_inputs`
turns a case into the argument list of ``<layer>_forward`` with NumPy alone, so a failing case
prints as three literals and one call that anyone can paste (the reproducer), and hypothesis
shrinks the integers (smaller sizes, seed 0, scale 1) rather than thousands of floats.

The sizes drawn are the ones kernels get wrong: 1 (T = 1, a head of one channel, a batch of one),
small primes, and the sizes just below, at and above the blocks kernels tile by (64 and 128: the
Numba encoder's column blocks, the attention's runs of positions, SIMD lanes that divide them).
The magnitudes go from 0.01 to 1000 (per layer, as far as the layer's float32 arithmetic stays
finite). Cross-entropy targets include ``ignore_index`` positions and a padded vocabulary whose
padding holds large garbage, which must change nothing.

Only :func:`case_strategy` needs hypothesis, and it imports it when called.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["IGNORE_INDEX", "LAYER_NAMES", "case_strategy", "cotangent", "layer_inputs"]

IGNORE_INDEX = -100  # the cross-entropy cases' ignored target (PyTorch's default)
BOUNDARY_SIZES = (63, 64, 65, 127, 128, 129)  # around the 64- and 128-wide blocks of kernels

# what each layer's forward and backward return, in order: the names a report uses
OUTPUT_NAMES: dict[str, tuple[str, ...]] = {
    "encoder": ("out", "dwte", "dwpe"),
    "layernorm": ("out", "dx", "dweight", "dbias"),
    "linear": ("out", "dx", "dweight", "dbias"),  # no dbias when the case has no bias
    "attention": ("out", "dqkv"),
    "gelu": ("out", "dx"),
    "residual": ("out", "da", "db"),
    "crossentropy": ("loss", "dlogits"),
    "adamw": ("params", "m", "v"),  # an update in place: the three buffers after it
}
LAYER_NAMES = tuple(OUTPUT_NAMES)

# the magnitudes drawn per layer, the first the one hypothesis shrinks to
SCALES: dict[str, tuple[float, ...]] = {
    "encoder": (1.0, 1e3, 1e-2),
    "layernorm": (1.0, 1e3, 1e-2),
    "linear": (1.0, 1e3, 1e-2),
    "attention": (1.0, 10.0, 1e-2),  # scores grow as scale²: at 10 the softmax is near one-hot
    "gelu": (1.0, 10.0, 1e3),  # far into both tails
    "residual": (1.0, 1e3, 1e-2),
    "crossentropy": (1.0, 100.0, 1e-2),
    "adamw": (1.0, 1e3, 1e-6),  # the gradients' magnitude: 1e-6 is near AdamW's eps
}


def layer_inputs(
    layer: str, dims: dict[str, int], seed: int = 0, scale: float = 1.0, dtype: Any = np.float64
) -> list[Any]:
    """The argument list of ``<layer>_forward`` (``adamw_update`` for "adamw") for one case.

    Floating arrays are standard normal times ``scale``, drawn from ``seed`` in float64 and then
    cast to ``dtype``, so the float32 and float64 cases hold the same numbers up to rounding.
    """
    if layer not in _BUILDERS:
        raise ValueError(f"layer_inputs: unknown layer {layer!r}; choose one of {LAYER_NAMES}")
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)

    def normal(*shape: int) -> np.ndarray:
        return (rng.normal(size=shape) * scale).astype(dtype)

    return _BUILDERS[layer](dims, rng, normal, dtype)


def cotangent(shape: tuple[int, ...], dtype: Any, seed: int = 0) -> np.ndarray:
    """The upstream gradient a case's backward gets: standard normal of ``shape`` (0-d for the
    loss), from ``seed + 1`` so that it is not the inputs' first numbers again."""
    rng = np.random.default_rng(seed + 1)
    return np.asarray(rng.normal(size=shape), dtype=dtype)


def _encoder(d: dict[str, int], rng: np.random.Generator, normal: Any, dtype: Any) -> list[Any]:
    # ids from a small range: repeated tokens are what a scatter-add must get right
    idx = rng.integers(0, min(d["Vp"], 5), size=(d["B"], d["T"]))
    return [idx, normal(d["Vp"], d["C"]), normal(d["T"] + d["extra_T"], d["C"])]


def _layernorm(d: dict[str, int], rng: np.random.Generator, normal: Any, dtype: Any) -> list[Any]:
    return [normal(d["B"], d["T"], d["C"]), normal(d["C"]), normal(d["C"])]


def _linear(d: dict[str, int], rng: np.random.Generator, normal: Any, dtype: Any) -> list[Any]:
    args = [normal(d["B"], d["T"], d["C"]), normal(d["C"], d["OC"])]
    return [*args, normal(d["OC"])] if d["bias"] else args


def _attention(d: dict[str, int], rng: np.random.Generator, normal: Any, dtype: Any) -> list[Any]:
    return [normal(d["B"], d["T"], 3 * d["NH"] * d["HS"]), d["NH"]]


def _gelu(d: dict[str, int], rng: np.random.Generator, normal: Any, dtype: Any) -> list[Any]:
    return [normal(d["B"], d["T"], d["C"])]


def _residual(d: dict[str, int], rng: np.random.Generator, normal: Any, dtype: Any) -> list[Any]:
    return [normal(d["B"], d["T"], d["C"]), normal(d["B"], d["T"], d["C"])]


def _crossentropy(
    d: dict[str, int], rng: np.random.Generator, normal: Any, dtype: Any
) -> list[Any]:
    B, T, V = d["B"], d["T"], d["V"]
    logits = normal(B, T, V + d["pad"])
    logits[..., V:] = dtype.type(1e3)  # garbage in the padding: exp would overflow in float32
    targets = rng.integers(0, V, size=(B, T))
    targets[rng.random((B, T)) < 0.25] = IGNORE_INDEX
    targets.reshape(-1)[0] = 0  # at least one valid target (none: the loss is 0/0 = NaN)
    return [logits, targets, V, IGNORE_INDEX]


def _adamw(d: dict[str, int], rng: np.random.Generator, normal: Any, dtype: Any) -> list[Any]:
    N = d["N"]
    params, grads = rng.normal(size=N).astype(dtype), normal(N)
    m = normal(N)
    v = (rng.random(N) * np.square(grads.astype(np.float64))).astype(dtype)  # v ≥ 0
    # two decayed [start, end) ranges, possibly empty or touching, the rest not decayed
    decay_ranges = np.sort(rng.integers(0, N + 1, size=4)).reshape(2, 2)
    return [params, grads, m, v, d["step"], 1e-3, 0.9, 0.95, 1e-8, 0.1, decay_ranges]


_BUILDERS = {
    "encoder": _encoder,
    "layernorm": _layernorm,
    "linear": _linear,
    "attention": _attention,
    "gelu": _gelu,
    "residual": _residual,
    "crossentropy": _crossentropy,
    "adamw": _adamw,
}


def case_strategy(layer: str, max_size: int = 129) -> Any:
    """A hypothesis strategy of ``(dims, seed, scale)`` for ``layer``.

    Each size is a small integer or one of the block-boundary sizes up to ``max_size`` (63, 64,
    65, 127, 128, 129); hypothesis shrinks towards the small ones, so a kernel wrong only past
    64 channels shrinks to C = 65, and one wrong only at T = 1 to T = 1.
    """
    from hypothesis import strategies as st

    if layer not in _BUILDERS:
        raise ValueError(f"check_layer: unknown layer {layer!r}; choose one of {LAYER_NAMES}")
    boundary = [n for n in BOUNDARY_SIZES if n <= max_size]

    def size(small: int) -> Any:
        primes = st.sampled_from([n for n in (2, 3, 5, 7, 13, 31) if n <= small])
        options = [st.integers(1, small), primes]
        return st.one_of(*options, st.sampled_from(boundary)) if boundary else st.one_of(*options)

    batch = st.integers(1, 3)
    dims = {
        "encoder": dict(B=batch, T=size(8), C=size(8), Vp=size(8), extra_T=st.integers(0, 2)),
        "layernorm": dict(B=batch, T=size(8), C=size(16)),
        "linear": dict(B=batch, T=size(8), C=size(8), OC=size(8), bias=st.integers(0, 1)),
        "attention": dict(B=st.integers(1, 2), T=size(9), NH=st.integers(1, 3), HS=size(4)),
        "gelu": dict(B=batch, T=size(8), C=size(16)),
        "residual": dict(B=batch, T=size(8), C=size(8)),
        "crossentropy": dict(B=batch, T=size(8), V=size(16), pad=st.integers(0, 3)),
        "adamw": dict(N=size(16), step=st.sampled_from([1, 2, 10, 1000])),
    }[layer]
    return st.tuples(
        st.fixed_dictionaries(dims),
        st.integers(0, 2**16),
        st.sampled_from(SCALES[layer]),
    )
