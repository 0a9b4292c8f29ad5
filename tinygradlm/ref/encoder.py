"""The encoder: token embedding plus position embedding, GPT-2's first layer.

    out[b, t] = wte[idx[b, t]] + wpe[t]

Derivation: docs/derivations.md, "Encoder".
"""

from __future__ import annotations

import numpy as np

from . import checks

EncoderCache = tuple[np.ndarray, tuple[int, int], tuple[int, int], np.dtype]


def encoder_forward(
    idx: np.ndarray, wte: np.ndarray, wpe: np.ndarray, *, out: np.ndarray | None = None
) -> tuple[np.ndarray, EncoderCache]:
    """Look up each token's embedding row and add its position's row.

    Shapes: idx (B, T) integer token ids in [0, Vp), wte (Vp, C) token embeddings, wpe (maxT, C)
    position embeddings with T <= maxT -> out (B, T, C). The cache is (idx, wte.shape, wpe.shape,
    dtype): the backward needs where each row went, not the tables' values.

    Derivation: out is a sum of two row lookups, each linear in its table. The gradient of a
    lookup is a scatter: dout[b, t] goes back to row idx[b, t] of wte, and a token that occurs at
    several positions receives the sum of their gradients (scatter-add, not assignment). Row t of
    wpe was added at position t in every sequence, so dwpe[t] = Σ_b dout[b, t]; rows t >= T were
    not used and get zero.
    """
    out = check_encoder_forward(idx, wte, wpe, out)  # (B, T, C)
    T = idx.shape[1]

    np.take(wte, idx, axis=0, out=out)  # (B, T, C) the token's row
    out += wpe[:T]  # (T, C) broadcast over B: the position's row
    return out, (idx, wte.shape, wpe.shape, wte.dtype)


def encoder_backward(
    dout: np.ndarray, cache: EncoderCache, *, into: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of the two embedding tables: dwte (Vp, C), dwpe (maxT, C), new arrays.

    dout is (B, T, C). ``into``, when given, is a pair (dwte, dwpe) of arrays of those shapes
    (the model's gradient buffers) that the gradients are added into (+=) and returned, so no
    table-sized array is made. See :func:`encoder_forward` for the derivation.
    """
    idx, wte_shape, wpe_shape, dtype = cache
    B, T = idx.shape
    checks.upstream("encoder_backward", dout, (B, T, wte_shape[1]), dtype)
    dwte, dwpe = check_encoder_into(into, wte_shape, wpe_shape, dtype)

    # in the forward pass this was: out[b, t] = wte[idx[b, t]] + wpe[t], so now:
    # add.at accumulates when a token repeats; dwte[idx] += dout would keep only one of them
    np.add.at(dwte, idx, dout)  # (Vp, C) tokens that never occur get nothing
    dwpe[:T] += dout.sum(axis=0)  # (T, C) position t was added in every sequence; rows T.. not
    return dwte, dwpe


def check_encoder_into(
    into: tuple[np.ndarray, np.ndarray] | None,
    wte_shape: tuple[int, int],
    wpe_shape: tuple[int, int],
    dtype: np.dtype,
) -> tuple[np.ndarray, np.ndarray]:
    """The arrays :func:`encoder_backward` (and its Numba twin) adds into: ``into`` after
    checking it, or two new zero arrays."""
    if into is None:
        return np.zeros(wte_shape, dtype=dtype), np.zeros(wpe_shape, dtype=dtype)
    dwte, dwpe = into
    for name, a, shape in (("dwte", dwte, wte_shape), ("dwpe", dwpe, wpe_shape)):
        checks.float_array("encoder_backward", name, a)
        checks.same_dtype("encoder_backward", name, a, "dout", dtype)
        if a.shape != tuple(shape):
            raise ValueError(f"encoder_backward: {name} has shape {a.shape}, expected {shape}")
    return dwte, dwpe


def check_encoder_forward(
    idx: np.ndarray, wte: np.ndarray, wpe: np.ndarray, out: np.ndarray | None
) -> np.ndarray:
    """The argument checks of :func:`encoder_forward` (and of its Numba twin in
    tinygradlm.kernels); returns the array to write the output into, ``out`` or a new one."""
    fn = "encoder_forward"
    checks.int_array(fn, "idx", idx)
    dtype = checks.float_array(fn, "wte", wte)
    checks.float_array(fn, "wpe", wpe)
    checks.same_dtype(fn, "wpe", wpe, "wte", dtype)
    if idx.ndim != 2:
        raise ValueError(f"{fn}: idx must be (B, T), got shape {idx.shape}")
    if wte.ndim != 2 or wpe.ndim != 2:
        raise ValueError(
            f"{fn}: wte must be (Vp, C) and wpe (maxT, C), got shapes {wte.shape} and {wpe.shape}"
        )
    B, T = idx.shape
    Vp, C = wte.shape
    maxT = wpe.shape[0]
    if wpe.shape[1] != C:
        raise ValueError(f"{fn}: wpe has shape {wpe.shape} but wte has C={C} channels")
    if T > maxT:
        raise ValueError(f"{fn}: T={T} positions but wpe has only maxT={maxT} rows")
    # NumPy would read a negative id from the end of wte, and a jitted loop does no bounds
    # checking at all: an id outside the table must stop here
    if idx.size and (idx.min() < 0 or idx.max() >= Vp):
        position = tuple(int(i) for i in np.argwhere((idx < 0) | (idx >= Vp))[0])
        raise IndexError(
            f"{fn}: token id {int(idx[position])} at position {position} is outside [0, {Vp})"
        )
    return checks.out_array(fn, out, (B, T, C), dtype)
