"""Finite differences in float64: the numeric side of every gradient check.

Plain NumPy, no Tensor involved. ``f`` maps NumPy arrays to one array or a tuple of arrays; the
inputs are differentiated one element at a time with central differences

    ∂f/∂x_j ≈ (f(x + h e_j) − f(x − h e_j)) / 2h,

whose error is O(h²) from truncation plus O(ε_machine·|f| / h) from rounding. In float64 the
default h = 1e-6 balances the two at about 1e-10 for well-scaled functions. The step actually
taken is ``(x + h) − (x − h)`` as the floating-point numbers store it, not ``2h``, which removes
one source of rounding error.

Integer inputs (indices) are never differentiated; ``argnums=None`` means "every floating input".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["numerical_jacobian", "numerical_vjp"]


def is_floating(x: Any) -> bool:
    """True for a floating NumPy array (the only kind of input that is differentiated)."""
    return isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating)


def as_output_tuple(out: Any) -> tuple[np.ndarray, ...]:
    """``f``'s result as a tuple of float64 copies (copies, because ``f`` may return a view of an
    input that the next perturbation changes)."""
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return tuple(np.array(o, dtype=np.float64, copy=True) for o in outs)


def float64_inputs(inputs: Sequence[Any]) -> list[Any]:
    """Float64 copies of the floating inputs, C-contiguous (the perturbations write through a flat
    view, which a transposed array would not give); everything else passed through as it is."""
    return [
        np.array(x, dtype=np.float64, copy=True, order="C") if is_floating(x) else x for x in inputs
    ]


def resolve_argnums(inputs: Sequence[Any], argnums: int | Sequence[int] | None) -> tuple[int, ...]:
    """The indices of the inputs to differentiate; checks that each one is a floating array."""
    if argnums is None:
        return tuple(i for i, x in enumerate(inputs) if is_floating(x))
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for i in nums:
        if not 0 <= i < len(inputs):
            raise ValueError(f"argnums contains {i}, but there are {len(inputs)} inputs")
        if not is_floating(inputs[i]):
            kind = type(inputs[i]).__name__
            if isinstance(inputs[i], np.ndarray):
                kind = f"{inputs[i].dtype} array"
            raise ValueError(
                f"input {i} is a {kind}, not a floating array: it cannot be differentiated"
            )
    return nums


@dataclass
class JacobianColumns:
    """The numeric Jacobian of every output with respect to one input, three ways.

    Each list has one (out.size, in.size) array per output. ``left`` and ``right`` are the
    one-sided differences; where they disagree the function has a kink at that element.
    """

    central: list[np.ndarray]
    left: list[np.ndarray]
    right: list[np.ndarray]


def jacobian_columns(
    f: Callable[..., Any],
    inputs: list[Any],
    argnum: int,
    eps: float,
    outputs_at_x: tuple[np.ndarray, ...],
) -> JacobianColumns:
    """Perturb each element of ``inputs[argnum]`` by ±eps (in place, then restored) and difference.

    ``inputs`` must hold a float64 array at ``argnum`` that this function may modify temporarily;
    ``outputs_at_x`` is ``f(*inputs)`` at the unperturbed point, used for the one-sided differences.
    """
    x = inputs[argnum]
    flat = x.reshape(-1)  # a view: writing into it perturbs x
    shapes = [(o.size, x.size) for o in outputs_at_x]
    central = [np.zeros(s) for s in shapes]
    left = [np.zeros(s) for s in shapes]
    right = [np.zeros(s) for s in shapes]
    for j in range(x.size):
        original = flat[j]
        flat[j] = original + eps
        step_up = flat[j] - original
        plus = as_output_tuple(f(*inputs))
        flat[j] = original - eps
        step_down = original - flat[j]
        minus = as_output_tuple(f(*inputs))
        flat[j] = original
        for o, (fp, fm, f0) in enumerate(zip(plus, minus, outputs_at_x, strict=True)):
            fp, fm, f0 = fp.reshape(-1), fm.reshape(-1), f0.reshape(-1)
            central[o][:, j] = (fp - fm) / (step_up + step_down)
            right[o][:, j] = (fp - f0) / step_up
            left[o][:, j] = (f0 - fm) / step_down
    return JacobianColumns(central, left, right)


def numerical_jacobian(
    f: Callable[..., Any],
    inputs: Sequence[Any],
    *,
    eps: float = 1e-6,
    argnums: int | Sequence[int] | None = None,
) -> Any:
    """The Jacobian of ``f`` at ``inputs`` by central differences in float64.

    ``f(*inputs)`` returns one array or a tuple of arrays. Floating inputs are cast to float64
    copies (the caller's arrays are never modified); integer inputs are passed through unchanged.

    Returns, for each differentiated input (a tuple in ``argnums`` order, or a single entry when
    ``argnums`` is an int), the Jacobian as a 2-D array of shape ``(out.size, in.size)``: row
    ``k`` is output element ``k`` in C (row-major) order, column ``j`` is input element ``j``.
    When ``f`` returns a tuple, each entry is instead a tuple of such arrays, one per output.

    Example:
        >>> import numpy as np
        >>> x = np.array([1.0, 2.0, 3.0])
        >>> (J,) = numerical_jacobian(lambda x: x**2, [x])
        >>> np.round(J, 6)
        array([[2., 0., 0.],
               [0., 4., 0.],
               [0., 0., 6.]])
        >>> W, idx = np.ones((4, 2)), np.array([3, 0])  # the integer idx is not differentiated
        >>> (J_W,) = numerical_jacobian(lambda idx, W: W[idx], [idx, W])
        >>> J_W.shape  # (out.size, in.size) = (2*2, 4*2)
        (4, 8)
    """
    xs = float64_inputs(inputs)
    nums = resolve_argnums(xs, argnums)
    raw_out = f(*xs)
    f0 = as_output_tuple(raw_out)
    single_output = not isinstance(raw_out, (tuple, list))
    jacobians = []
    for i in nums:
        central = jacobian_columns(f, xs, i, eps, f0).central
        jacobians.append(central[0] if single_output else tuple(central))
    return jacobians[0] if isinstance(argnums, int) else tuple(jacobians)


def numerical_vjp(
    f: Callable[..., Any],
    inputs: Sequence[Any],
    cotangent: np.ndarray | Sequence[np.ndarray],
    *,
    eps: float = 1e-6,
    argnums: int | Sequence[int] | None = None,
) -> Any:
    """The vector-Jacobian product vᵀJ (what a backward pass returns) by central differences.

    ``cotangent`` has the shape of ``f``'s output (a tuple of arrays when ``f`` returns a tuple).
    Each input element costs two evaluations of ``f``:

        ∂(v·f)/∂x_j ≈ (v·f(x + h e_j) − v·f(x − h e_j)) / 2h.

    Returns one gradient per differentiated input, each with that input's shape (a tuple in
    ``argnums`` order, or a single array when ``argnums`` is an int).

    Example:
        >>> import numpy as np
        >>> x, y = np.array([1.0, 2.0]), np.array([3.0, 4.0])
        >>> dx, dy = numerical_vjp(lambda x, y: x * y, [x, y], np.array([1.0, 10.0]))
        >>> np.round(dx, 6), np.round(dy, 6)
        (array([ 3., 40.]), array([ 1., 20.]))
    """
    xs = float64_inputs(inputs)
    nums = resolve_argnums(xs, argnums)
    cotangents = as_output_tuple(cotangent)
    outputs = as_output_tuple(f(*xs))
    if len(cotangents) != len(outputs):
        raise ValueError(
            f"f returned {len(outputs)} outputs but {len(cotangents)} cotangents given"
        )
    for k, (v, o) in enumerate(zip(cotangents, outputs, strict=True)):
        if v.shape != o.shape:
            raise ValueError(
                f"cotangent {k} has shape {v.shape}, but output {k} has shape {o.shape}"
            )

    def projected(*args: Any) -> np.ndarray:
        outs = as_output_tuple(f(*args))
        return np.array(sum(float(np.vdot(v, o)) for v, o in zip(cotangents, outs, strict=True)))

    grads = []
    for i in nums:
        (row,) = jacobian_columns(projected, xs, i, eps, (projected(*xs),)).central
        grads.append(row.reshape(xs[i].shape))
    return grads[0] if isinstance(argnums, int) else tuple(grads)
