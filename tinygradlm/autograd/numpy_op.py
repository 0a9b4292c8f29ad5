"""Lifting a NumPy ``forward``/``backward`` pair (a hand-derived layer) into the graph."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .grad_mode import is_grad_enabled
from .tensor import Tensor


def numpy_op(
    forward: Callable[..., tuple[np.ndarray, Any]],
    backward: Callable[[np.ndarray, Any], Sequence[np.ndarray | None] | np.ndarray],
    name: str | None = None,
) -> Callable[..., Tensor]:
    """Lift a NumPy ``forward``/``backward`` pair into an op of the graph.

    ``forward(*inputs) -> (out, cache)`` and ``backward(dout, cache) -> grads`` — the
    convention of the hand-derived layers in ``tinygradlm.ref``. ``grads`` has one entry per
    input (``None`` where there is none), or one per floating-point array input (integer
    indices and plain Python values such as ``n_head`` skipped); a bare array stands for a
    1-tuple. Tensors and arrays reach ``forward`` as arrays, anything else as it was given.

    The returned function takes Tensors or arrays and returns a Tensor, so a hand-written
    layer can sit inside a larger autograd computation and be checked there with
    ``tinygradlm.testing.gradcheck``.

    Higher order: ``backward`` is NumPy code, which the engine cannot record, so the op's
    gradient cannot be differentiated again. ``backward(create_graph=True)`` through the op
    raises a ``RuntimeError`` naming it, rather than returning a second derivative that would
    silently treat the op's gradient as a constant. For higher-order use, write the layer with
    Tensor ops instead.
    """
    op_name = name or getattr(forward, "__name__", "numpy_op")

    def apply(*inputs: Any) -> Tensor:
        def is_array_like(x: Any) -> bool:
            return isinstance(x, (Tensor, np.ndarray))

        is_array = [is_array_like(x) for x in inputs]
        args = [x.data if isinstance(x, Tensor) else x for x in inputs]
        tensors = [x if isinstance(x, Tensor) else Tensor(x) for x in inputs if is_array_like(x)]
        floating = [i for i, t in enumerate(tensors) if t.dtype.kind == "f"]
        out, cache = forward(*args)
        out = np.asarray(out)

        def grad_fn(g: Tensor) -> list[Tensor | None]:
            if is_grad_enabled():  # the engine is recording this backward: create_graph=True
                raise RuntimeError(
                    f"{op_name}: a numpy_op's backward is NumPy code and cannot be "
                    f"differentiated, so backward(create_graph=True) cannot pass through it; "
                    f"write {op_name} with Tensor ops for higher-order gradients"
                )
            grads = backward(np.ascontiguousarray(g.data), cache)
            grads = (grads,) if isinstance(grads, np.ndarray) else tuple(grads)
            if len(grads) == len(inputs):  # one per input: keep those of array inputs
                grads = tuple(gi for gi, a in zip(grads, is_array, strict=True) if a)
            elif len(grads) == len(floating):  # one per floating input
                full: list[Any] = [None] * len(tensors)
                for i, gi in zip(floating, grads, strict=True):
                    full[i] = gi
                grads = tuple(full)
            else:
                raise ValueError(
                    f"{op_name}: backward returned {len(grads)} gradients for {len(inputs)} "
                    f"inputs ({len(floating)} of them floating-point arrays)"
                )
            checked: list[Tensor | None] = []
            for i, (t, gi) in enumerate(zip(tensors, grads, strict=True)):
                if gi is not None and t.requires_grad:
                    gi = np.asarray(gi)
                    if gi.shape != t.shape:
                        raise ValueError(
                            f"{op_name}: backward returned a gradient of shape {gi.shape} for "
                            f"input {i} of shape {t.shape}"
                        )
                    gi = Tensor(gi.astype(t.dtype, copy=False))
                else:
                    gi = None
                checked.append(gi)
            return checked

        return Tensor._make(out, tensors, grad_fn, op_name)

    apply.__name__ = op_name
    apply.__doc__ = forward.__doc__
    return apply
