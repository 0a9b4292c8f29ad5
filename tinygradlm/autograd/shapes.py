"""Shape helpers of the engine: broadcasting's gradient rule (:func:`unbroadcast`, the one place
broadcasting is handled), reduction axes, and how an operand is described in an error."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def describe(x: Any) -> str:
    """A Tensor's or an array's shape and dtype, as error messages show them."""
    return f"shape {tuple(x.shape)} {x.dtype}"


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` over the axes that broadcasting added or stretched, giving ``shape``.

    If ``x`` of ``shape`` was broadcast to ``grad.shape`` in the forward pass, each element of
    ``x`` fed every position it was copied to, so its gradient is the sum over those positions:
    leading axes that broadcasting prepended are summed away, and axes where ``x`` had size 1
    are summed with ``keepdims``.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra < 0:
        raise ValueError(f"cannot unbroadcast gradient of shape {grad.shape} to {shape}")
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    if grad.shape != shape:
        raise ValueError(f"cannot unbroadcast gradient of shape {grad.shape} to {shape}")
    return grad


def normalize_axes(axis: int | Sequence[int] | None, ndim: int) -> tuple[int, ...]:
    """``axis`` (None: all) as sorted non-negative axes of an ``ndim``-dimensional tensor."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise np.exceptions.AxisError(f"axis {a} is out of bounds for a tensor of {ndim} dims")
        out.append(int(a) % max(ndim, 1))
    return tuple(sorted(out))


def expand_reduced(g: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """Re-insert the reduced axes of ``g`` (as size 1) so it broadcasts against the input."""
    return g if keepdims else np.expand_dims(g, axes)
