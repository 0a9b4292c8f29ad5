"""Shape helpers of the engine: broadcasting's gradient rule (:func:`unbroadcast`, the one place
broadcasting is handled), reduction axes, the kind of an index, and how an operand is described
in an error."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def describe(x: Any) -> str:
    """A Tensor's or an array's shape and dtype, as error messages show them."""
    return f"shape {tuple(x.shape)} {x.dtype}"


def unbroadcast(grad: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``grad`` over the axes that broadcasting added or stretched, giving ``shape``.

    ``grad`` is an ndarray or a Tensor (the engine passes Tensors, so that in a recorded
    backward the sum is itself differentiable); only ``.shape``, ``.ndim`` and ``.sum`` are used.

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


def reduced_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` with the reduced ``axes`` kept as size 1: the shape in which a reduction's
    result broadcasts back against its input."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def is_advanced_index(index: Any) -> bool:
    """True when ``index`` holds an integer or boolean array (NumPy's advanced indexing: a
    gather, whose adjoint must accumulate over repeated positions)."""
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, (np.ndarray, list)) for i in items)
