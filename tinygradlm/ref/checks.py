"""Cheap argument checks shared by the reference layers and their Numba twins.

Each check costs O(1) (shapes and dtypes; the index range checks in the encoder and
cross-entropy are one pass over an integer array) and raises an error that names the function,
the argument and what was expected, so a caller sees ``layernorm_forward: weight has shape (7,)
but x has C=8 channels`` instead of a broadcasting error from deep inside NumPy, or, worse, a
silent float32 → float64 promotion.

Each layer gathers its own checks in one function named after the function it checks
(``check_encoder_forward``, ``check_adamw_update``, ...), at the end of the layer's module; the
forward calls it on its first line, and so does its twin in ``tinygradlm.kernels``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def float_array(fn: str, name: str, a: Any) -> np.dtype:
    """``a`` is a floating NumPy array; returns its dtype."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a NumPy array, got {type(a).__name__}")
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{fn}: {name} has dtype {a.dtype}; expected float32 or float64")
    return a.dtype


def int_array(fn: str, name: str, a: Any) -> None:
    """``a`` is an integer NumPy array (token ids, targets)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a NumPy array, got {type(a).__name__}")
    if a.dtype.kind not in "iu":
        raise TypeError(f"{fn}: {name} has dtype {a.dtype}; expected integers")


def same_dtype(fn: str, name: str, a: np.ndarray, ref_name: str, dtype: np.dtype) -> None:
    """``a`` has the dtype of ``ref_name``: mixing float32 and float64 would silently promote."""
    if a.dtype != dtype:
        raise TypeError(
            f"{fn}: {name} is {a.dtype} but {ref_name} is {dtype}; cast explicitly "
            f"(mixed dtypes would silently promote to the wider one)"
        )


def out_array(
    fn: str,
    out: np.ndarray | None,
    shape: tuple[int, ...],
    dtype: np.dtype,
    *,
    contiguous: bool = False,
    kept: tuple[tuple[str, np.ndarray], ...] = (),
) -> np.ndarray:
    """The array a forward writes its output into: ``out`` after checking it, or a new one.

    ``contiguous``: the forward writes through a reshaped view of ``out``, which is only a view
    (and not a silently discarded copy) when ``out`` is C-contiguous. ``kept``: inputs the cache
    keeps for the backward, which ``out`` must not overwrite.
    """
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{fn}: out must be a NumPy array, got {type(out).__name__}")
    if out.shape != tuple(shape) or out.dtype != dtype:
        raise ValueError(
            f"{fn}: out has shape {out.shape} and dtype {out.dtype}; expected shape "
            f"{tuple(shape)} and dtype {dtype}"
        )
    if contiguous and not out.flags.c_contiguous:
        raise ValueError(f"{fn}: out must be C-contiguous (it is written through a reshape)")
    for name, a in kept:
        if np.may_share_memory(out, a):
            raise ValueError(
                f"{fn}: out overlaps {name}, which the cache keeps for the backward; use a "
                f"separate buffer"
            )
    return out


def upstream(fn: str, dout: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """``dout`` has the shape and dtype of the forward's output."""
    if not isinstance(dout, np.ndarray):
        raise TypeError(f"{fn}: dout must be a NumPy array, got {type(dout).__name__}")
    if dout.shape != tuple(shape):
        raise ValueError(
            f"{fn}: dout has shape {dout.shape} but the forward's output had shape {tuple(shape)}"
        )
    if dout.dtype != dtype:
        raise TypeError(
            f"{fn}: dout is {dout.dtype} but the forward ran in {dtype}; cast dout explicitly"
        )
