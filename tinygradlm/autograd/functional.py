"""Neural-network functions on Tensors: softmax, cross-entropy, embedding, layer norm, dropout,
and the multi-tensor ops (concatenate, stack, split, where).

cross_entropy is a single op with a hand-written backward (as are ``Tensor.softmax`` and
``Tensor.log_softmax``, which ``softmax`` and ``log_softmax`` call): one node instead of a
dozen, and no log of an underflowed probability. These fused ops are the fast path; the
independent witness of the hand-derived layers (``tinygradlm.model.witness``) does not use them,
and ``tests/test_model_witness.py`` checks each against its composition from primitive ops.

As in ``tensor.py``, every backward here computes with Tensor ops, so it can be recorded and
differentiated again (``backward(create_graph=True)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from .shapes import describe, normalize_axes
from .tensor import Tensor, forward_value


def _tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _same_float_dtype(tensors: Sequence[Tensor], op: str) -> None:
    floats = {t.dtype for t in tensors if t.dtype.kind == "f"}
    if len(floats) > 1:
        described = ", ".join(describe(t) for t in tensors)
        raise TypeError(
            f"{op}: tensors have different float dtypes ({described}); cast explicitly with "
            f".float() or .double()"
        )


# --------------------------------------------------------------------------------------------
# softmax family
# --------------------------------------------------------------------------------------------


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / Σ exp(x) along ``axis``: :meth:`Tensor.softmax`, as a function."""
    return _tensor(x).softmax(axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x - log Σ exp(x) along ``axis``: :meth:`Tensor.log_softmax`, as a function."""
    return _tensor(x).log_softmax(axis)


def cross_entropy(logits: Tensor, targets: Any, ignore_index: int = -100) -> Tensor:
    """Mean negative log-likelihood of ``targets`` under softmax(``logits``).

    ``logits`` is (..., V) and ``targets`` integer (...). Positions whose target equals
    ``ignore_index`` contribute neither loss nor gradient, and the mean is over the others.
    When every target is ignored the mean is 0/0 = NaN (as in PyTorch).
    """
    t = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integers, got dtype {t.dtype}")
    if logits.ndim < 1 or t.shape != logits.shape[:-1]:
        raise ValueError(
            f"cross_entropy: targets of shape {t.shape} do not match logits of shape "
            f"{logits.shape} (expected targets of shape {logits.shape[:-1]})"
        )
    V = logits.shape[-1]
    valid = t != ignore_index
    bad = valid & ((t < 0) | (t >= V))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise IndexError(
            f"cross_entropy: target {int(t[where])} at index {where} is outside [0, {V}) "
            f"and is not ignore_index={ignore_index}"
        )
    safe = np.where(valid, t, 0)[..., None]
    target_index = (*np.indices(t.shape, sparse=True), safe[..., 0])  # each position's target
    logp = log_softmax(logits.detach(), axis=-1).data
    picked = np.take_along_axis(logp, safe, axis=-1)[..., 0]
    count = int(valid.sum())
    dtype = logits.dtype
    with np.errstate(invalid="ignore", divide="ignore"):
        # np.where, not a product: a masked -inf logit at an ignored position must not give NaN
        loss = np.asarray(-np.where(valid, picked, 0).sum() / dtype.type(count), dtype=dtype)

    def backward(g: Tensor) -> tuple[Tensor]:
        # d loss / d logits = (softmax - onehot(target)) / count on the valid positions
        probs = forward_value(logp, lambda: logits.log_softmax(axis=-1)).exp()
        probs_minus_onehot = probs.index_add(target_index, -np.ones(t.shape, dtype=dtype))
        weight = (valid / dtype.type(max(count, 1)))[..., None].astype(dtype)
        return (probs_minus_onehot * (Tensor(weight) * g),)  # (..., V) times (..., 1)

    return Tensor._make(loss, (logits,), backward, "cross_entropy")


# --------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------


def embedding(indices: Any, weight: Tensor) -> Tensor:
    """Rows of ``weight`` (V, C) picked by integer ``indices`` (...): output (..., C).

    The backward scatters into ``weight`` with accumulation (a repeated index adds up).
    """
    idx = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got dtype {idx.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (V, C), got shape {weight.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= weight.shape[0]):
        bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
        raise IndexError(f"embedding: index {bad} is outside [0, {weight.shape[0]})")
    return weight[idx]


def layer_norm(
    x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    """Normalize over the last axis: (x - mean) / sqrt(var + eps) · weight + bias.

    Composed from primitive ops (biased variance, eps inside the square root, as GPT-2).
    """
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    out = (x - mean) / (var + eps).sqrt()
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def dropout(
    x: Tensor, p: float, generator: np.random.Generator | None, training: bool = True
) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p).

    The random mask comes from the explicit ``generator`` (there is no hidden global seed), so
    a run is reproducible. Identity when ``training`` is False or ``p`` is 0.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    if not isinstance(generator, np.random.Generator):
        raise TypeError(
            "dropout: pass an explicit np.random.Generator (e.g. np.random.default_rng(0))"
        )
    keep = generator.random(x.shape) >= p
    return x * (keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p)))


# --------------------------------------------------------------------------------------------
# several tensors
# --------------------------------------------------------------------------------------------


def concatenate(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis; the backward splits the gradient back."""
    ts = [_tensor(t) for t in tensors]
    if not ts:
        raise ValueError("concatenate: need at least one tensor")
    _same_float_dtype(ts, "concatenate")
    try:
        out = np.concatenate([t.data for t in ts], axis=axis)
    except ValueError as e:
        shapes = ", ".join(str(t.shape) for t in ts)
        raise ValueError(f"concatenate along axis {axis}: shapes {shapes}: {e}") from None
    ax = normalize_axes(axis, out.ndim)[0]
    bounds = np.cumsum([t.shape[ax] for t in ts])[:-1]

    def backward(g: Tensor) -> list[Tensor]:
        return split(g, bounds, axis=ax)

    return Tensor._make(out, ts, backward, "concatenate")


def stack(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    """Join same-shaped tensors along a new axis."""
    ts = [_tensor(t) for t in tensors]
    if not ts:
        raise ValueError("stack: need at least one tensor")
    _same_float_dtype(ts, "stack")
    if len({t.shape for t in ts}) > 1:
        raise ValueError(f"stack: all shapes must match, got {[t.shape for t in ts]}")
    out = np.stack([t.data for t in ts], axis=axis)
    ax = normalize_axes(axis, out.ndim)[0]

    def backward(g: Tensor) -> list[Tensor]:
        prefix = (slice(None),) * ax
        return [g[(*prefix, i)] for i in range(len(ts))]

    return Tensor._make(out, ts, backward, "stack")


def split(x: Tensor, indices_or_sections: int | Sequence[int], axis: int = 0) -> list[Tensor]:
    """Split like ``np.split``: into equal sections, or at the given indices. Each piece is a
    slice of ``x``, so gradients flow back through ordinary indexing."""
    ax = normalize_axes(axis, x.ndim)[0]
    n = x.shape[ax]
    if isinstance(indices_or_sections, (int, np.integer)):
        k = int(indices_or_sections)
        if k <= 0 or n % k:
            raise ValueError(f"split: axis {ax} of length {n} does not divide into {k} sections")
        cuts = [i * (n // k) for i in range(1, k)]
    else:
        cuts = [int(i) for i in indices_or_sections]
    edges = [0, *cuts, n]
    prefix = (slice(None),) * ax
    return [x[(*prefix, slice(lo, hi))] for lo, hi in pairwise(edges)]


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """Elementwise ``a`` where ``condition`` is true, else ``b`` (all three broadcast)."""
    cond = np.asarray(condition.data if isinstance(condition, Tensor) else condition, dtype=bool)
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = Tensor(a)
    ta, tb = a._operands(b, "where") if isinstance(a, Tensor) else b._operands(a, "where")[::-1]
    try:
        out = np.where(cond, ta.data, tb.data)
    except ValueError:
        raise ValueError(
            f"where: shapes do not broadcast: condition {cond.shape}, {ta.shape} and {tb.shape}"
        ) from None
    zero = ta.dtype.type(0)

    def backward(g: Tensor) -> tuple[Tensor | None, Tensor | None]:
        ga = where(cond, g, zero) if ta.requires_grad else None
        gb = where(cond, zero, g) if tb.requires_grad else None
        return ga, gb

    return Tensor._make(out, (ta, tb), backward, "where")


def masked_fill(x: Tensor, mask: Any, value: float) -> Tensor:
    """``x`` with ``value`` where ``mask`` is true (e.g. -inf above the causal diagonal)."""
    return where(mask, value, x)
