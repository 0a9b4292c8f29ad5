"""A function under check, reduced to NumPy, and the tolerances a check runs with.

``gradcheck`` and ``check_vjp`` each build a :class:`CheckTarget` from what they are given; every
mode and every property check (:mod:`.checker`, :mod:`.projections`, :mod:`.tight`,
:mod:`.properties`) works on the target alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Tolerances:
    """The finite-difference step ``eps`` and the allowed error: an entry passes when
    |analytic − numeric| ≤ atol + rtol·|numeric|."""

    eps: float
    atol: float
    rtol: float


class CheckAborted(Exception):
    """A problem that stops the check (the backward's results cannot be interpreted)."""


@dataclass
class CheckTarget:
    """A function under check, reduced to NumPy."""

    checker: str  # "gradcheck" or "check_vjp", for the report's first line
    evaluate: Callable[..., tuple[np.ndarray, ...]]  # (*inputs) -> float64 outputs
    pullback: Callable[[int, np.ndarray], Sequence[Any]]  # raw grads, one per argnum
    inputs: list[Any]  # float64 copies of the checked inputs, the rest as given
    argnums: tuple[int, ...]
    outputs: tuple[np.ndarray, ...]  # evaluate(*inputs), float64
    checked_outputs: tuple[int, ...]
    problems: list[str]  # filled by pullback too (a backward that modifies its arguments)
    low_precision: str | None = None  # why the float32 defaults apply, when they do
    # forward and backward afresh at other inputs (another memory layout, aliased arrays):
    # (inputs, output index, cotangent) -> (outputs, raw grads one per argnum); None: not offered
    rerun: Callable[[list[Any], int, np.ndarray], tuple[tuple[Any, ...], Sequence[Any]]] | None = (
        None
    )
    # input positions the caller passed as one array, and whether the backward then gives the
    # sum of the positions' grads (one autograd leaf) rather than one grad per position
    alias_groups: tuple[tuple[int, ...], ...] = ()
    aliased_grads_add: bool = False
    # per checked output: False at its constant infinite entries (compared as constants)
    finite: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def unit_roundoff(self) -> float:
        """The machine epsilon of the dtype the function computes in."""
        return float(np.finfo(np.float32 if self.low_precision else np.float64).eps)


def checked_grads(target: CheckTarget, output_index: int, cotangent: np.ndarray) -> dict[int, Any]:
    """One backward pass; the grad for each checked input as float64 of the input's shape, or
    None for an input whose grad had the wrong shape (recorded as a problem)."""
    grads = target.pullback(output_index, cotangent)
    return grads_as_float64(target, grads)


def grads_by_pair(
    target: CheckTarget, cotangents: dict[int, np.ndarray]
) -> dict[tuple[int, int], np.ndarray]:
    """One backward per checked output, with that output's cotangent: the grads of the right
    shape, keyed (input, output) (a grad of the wrong shape is left out and recorded)."""
    grads: dict[tuple[int, int], np.ndarray] = {}
    for o in target.checked_outputs:
        for i, g in checked_grads(target, o, cotangents[o]).items():
            if g is not None:
                grads[i, o] = g
    return grads


def grads_as_float64(target: CheckTarget, grads: Sequence[Any]) -> dict[int, Any]:
    """Raw grads (one per argnum) as float64 arrays of the inputs' shapes; None (and a problem)
    for a grad of the wrong shape; zeros for an input the output does not depend on."""
    result: dict[int, Any] = {}
    for i, g in zip(target.argnums, grads, strict=True):
        x = target.inputs[i]
        if g is None:  # the input does not influence this output
            result[i] = np.zeros(x.shape)
            continue
        g = np.asarray(g)
        if g.shape != x.shape:
            problem = (
                f"backward returned grad of shape {g.shape} for input {i} of shape {x.shape}"
                + shape_hint(g.shape, x.shape)
            )
            if problem not in target.problems:
                target.problems.append(problem)
            result[i] = None
            continue
        result[i] = g.astype(np.float64)
    return result


def shape_hint(grad_shape: tuple[int, ...], input_shape: tuple[int, ...]) -> str:
    """The likely cause of a grad of the wrong shape, as a short parenthesis."""
    if np.prod(grad_shape) == np.prod(input_shape):
        return " (needs a reshape?)"
    try:
        common = np.broadcast_shapes(grad_shape, input_shape)
    except ValueError:
        return ""
    if common == grad_shape:
        return " (broadcast not reduced?)"
    if common == input_shape:
        return " (summed over an axis too many?)"
    return ""
