"""The checker ``gradcheck`` and ``check_vjp`` share: a function reduced to NumPy, checked
against finite differences in one of three modes.

A :class:`CheckTarget` holds the two callables both entry points reduce the function to:

- ``evaluate(*inputs) -> outputs``, for the numeric side (central differences in float64), and
- ``pullback(output_index, cotangent) -> grads``, one backward pass (a vector-Jacobian product).

:func:`run_check` chooses the tolerances, runs the mode (full Jacobians, a random projection, or
one given cotangent) and builds the report. The modes are described in :mod:`.checks`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .numerical import as_output_tuple, directional_derivative, jacobian_columns
from .report import GradcheckError, GradcheckResult, compare_jacobians, compare_projection

MODES = ("auto", "full", "fast")


@dataclass(frozen=True)
class Tolerances:
    """The finite-difference step ``eps`` and the allowed error: an entry passes when
    |analytic − numeric| ≤ atol + rtol·|numeric|."""

    eps: float
    atol: float
    rtol: float


# Keyed by the dtype the function under check computes in: float32 when an output is float32, or
# (gradcheck only, which can see the graph) when any tensor on the way to an output is.
DEFAULT_TOLERANCES = {
    "float64": Tolerances(eps=1e-6, atol=1e-5, rtol=1e-3),
    "float32": Tolerances(eps=1e-3, atol=1e-2, rtol=1e-2),
}


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


def run_check(
    target: CheckTarget,
    *,
    eps: float | None,
    atol: float | None,
    rtol: float | None,
    mode: str,
    seed: int,
    raise_exception: bool,
    check_kinks: bool,
    notes: list[str],
    cotangents: tuple[np.ndarray, ...] | None = None,
) -> GradcheckResult:
    """Check ``target`` in ``mode`` (or against ``cotangents``, when given) and report; raise
    GradcheckError on failure if ``raise_exception``. ``notes`` lead the report's notes."""
    __tracebackhide__ = True  # pytest shows the report, not the checker's frames
    tol = _choose_tolerances(target, eps, atol, rtol, notes)
    if not target.argnums:
        notes.append("there is no floating input: nothing was checked")
    for o in target.checked_outputs:
        bad = int(np.count_nonzero(~np.isfinite(target.outputs[o])))
        if bad:
            target.problems.append(
                f"output {o} has {bad} non-finite value(s) at the given inputs: "
                "choose inputs inside the function's domain"
            )
    if cotangents is not None:
        result = _vjp_check(target, tol, cotangents, check_kinks)
    elif mode == "full":
        result = _full_check(target, tol, check_kinks)
    else:
        result = _fast_check(target, tol, seed)
        if result.failed_pairs and (mode == "auto" or check_kinks):
            failed = ", ".join(
                f"input {p.input_index} -> output {p.output_index}" for p in result.failed_pairs
            )
            fast_note = f"the fast check (a random projection vᵀJu) failed for {failed}"
            result = _full_check(target, tol, check_kinks)
            verdict = "and the full Jacobian check passed" if result.ok else "full Jacobians shown"
            notes = [f"{fast_note}; {verdict}", *notes]
    result.notes = notes + result.notes
    if raise_exception and not result.ok:
        raise GradcheckError(result)
    return result


def check_mode(mode: str) -> None:
    """ValueError unless ``mode`` is one of MODES."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def aborted_result(checker: str, problem: str, raise_exception: bool) -> GradcheckResult:
    """The report of a check that could not run, raised as GradcheckError if asked."""
    __tracebackhide__ = True
    tol = DEFAULT_TOLERANCES["float64"]
    result = GradcheckResult(checker, "none", tol.eps, tol.atol, tol.rtol, problems=[problem])
    if raise_exception:
        raise GradcheckError(result)
    return result


def cotangents_for(cotangent: Any, outputs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """``cotangent`` as one array per output, or CheckAborted if the shapes do not match."""
    cots = as_output_tuple(cotangent)
    if len(cots) != len(outputs) or any(
        c.shape != o.shape for c, o in zip(cots, outputs, strict=True)
    ):
        raise CheckAborted(
            f"cotangent shapes {[c.shape for c in cots]} do not match the output shapes "
            f"{[o.shape for o in outputs]}"
        )
    return cots


def _choose_tolerances(
    target: CheckTarget, eps: float | None, atol: float | None, rtol: float | None, notes: list[str]
) -> Tolerances:
    default = DEFAULT_TOLERANCES["float32" if target.low_precision else "float64"]
    if target.low_precision:
        notes.append(
            f"{target.low_precision}, so the looser float32 defaults apply; compute in float64 "
            "for a sharper check"
        )
    return Tolerances(
        eps=default.eps if eps is None else eps,
        atol=default.atol if atol is None else atol,
        rtol=default.rtol if rtol is None else rtol,
    )


def _checked_grads(target: CheckTarget, output_index: int, cotangent: np.ndarray) -> dict[int, Any]:
    """One backward pass; the grad for each checked input as float64 of the input's shape, or
    None for an input whose grad had the wrong shape (recorded as a problem)."""
    grads = target.pullback(output_index, cotangent)
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
                + _shape_hint(g.shape, x.shape)
            )
            if problem not in target.problems:
                target.problems.append(problem)
            result[i] = None
            continue
        result[i] = g.astype(np.float64)
    return result


def _shape_hint(grad_shape: tuple[int, ...], input_shape: tuple[int, ...]) -> str:
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


def _full_check(target: CheckTarget, tol: Tolerances, check_kinks: bool) -> GradcheckResult:
    result = GradcheckResult(target.checker, "full", tol.eps, tol.atol, tol.rtol)
    analytic: dict[tuple[int, int], np.ndarray] = {}
    for o in target.checked_outputs:
        out = target.outputs[o]
        for i in target.argnums:
            analytic[i, o] = np.zeros((out.size, target.inputs[i].size))
        for k in range(out.size):
            one_hot = np.zeros(out.shape)
            one_hot.flat[k] = 1.0
            for i, g in _checked_grads(target, o, one_hot).items():
                if g is None:  # a grad of the wrong shape: a problem, and no values to compare
                    analytic.pop((i, o), None)
                elif (i, o) in analytic:
                    analytic[i, o][k] = g.reshape(-1)
    for i in target.argnums:
        x = target.inputs[i]
        if not any((i, o) in analytic for o in target.checked_outputs):
            continue  # its grad had the wrong shape: a problem is recorded, values are moot
        numeric = jacobian_columns(target.evaluate, target.inputs, i, tol.eps, target.outputs)
        for o in target.checked_outputs:
            if (i, o) not in analytic:
                continue
            result.pairs.append(
                compare_jacobians(
                    analytic[i, o],
                    numeric.central[o],
                    numeric.left[o],
                    numeric.right[o],
                    input_index=i,
                    output_index=o,
                    input_shape=x.shape,
                    input_dtype=str(x.dtype),
                    output_shape=target.outputs[o].shape,
                    atol=tol.atol,
                    rtol=tol.rtol,
                    check_kinks=check_kinks,
                )
            )
    result.problems = list(target.problems)
    return result


def _unit(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A random unit vector whose entries have random signs and magnitudes in [0.5, 1] before
    normalising: no element gets a weight near zero, so one wrong element always moves vᵀJu."""
    v = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 1.0, size=shape)
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else v


def _fast_check(target: CheckTarget, tol: Tolerances, seed: int) -> GradcheckResult:
    result = GradcheckResult(target.checker, "fast", tol.eps, tol.atol, tol.rtol)
    rng = np.random.default_rng(seed)
    u = {i: _unit(rng, target.inputs[i].shape) for i in target.argnums}
    v = {o: _unit(rng, target.outputs[o].shape) for o in target.checked_outputs}
    analytic: dict[tuple[int, int], float] = {}
    for o in target.checked_outputs:
        for i, g in _checked_grads(target, o, v[o]).items():
            if g is not None:
                analytic[i, o] = float(np.vdot(g, u[i]))
    for i in target.argnums:
        if not any((i, o) in analytic for o in target.checked_outputs):
            continue
        x = target.inputs[i]
        jvp = directional_derivative(target.evaluate, target.inputs, i, u[i], tol.eps)
        for o in target.checked_outputs:
            if (i, o) not in analytic:
                continue
            result.pairs.append(
                compare_projection(
                    analytic[i, o],
                    float(np.vdot(v[o], jvp[o])),
                    input_index=i,
                    output_index=o,
                    input_shape=x.shape,
                    input_dtype=str(x.dtype),
                    output_shape=target.outputs[o].shape,
                    atol=tol.atol,
                    rtol=tol.rtol,
                )
            )
    result.problems = list(target.problems)
    return result


def _vjp_check(
    target: CheckTarget, tol: Tolerances, cotangents: tuple[np.ndarray, ...], check_kinks: bool
) -> GradcheckResult:
    """Compare backward(cotangent) with the numeric vector-Jacobian product, element by element
    of each input's grad (one backward per output; two evaluations per input element)."""
    result = GradcheckResult(target.checker, "vjp", tol.eps, tol.atol, tol.rtol)
    analytic = {}
    for o in target.checked_outputs:
        for i, g in _checked_grads(target, o, cotangents[o]).items():
            if g is not None:
                analytic[i, o] = g.reshape(1, -1)

    def projected(*args: Any) -> tuple[np.ndarray, ...]:
        outs = target.evaluate(*args)
        return tuple(np.array(np.vdot(c, out)) for c, out in zip(cotangents, outs, strict=True))

    at_x = projected(*target.inputs)
    for i in target.argnums:
        if not any((i, o) in analytic for o in target.checked_outputs):
            continue
        x = target.inputs[i]
        numeric = jacobian_columns(projected, target.inputs, i, tol.eps, at_x)
        for o in target.checked_outputs:
            if (i, o) not in analytic:
                continue
            pair = compare_jacobians(
                analytic[i, o],
                numeric.central[o],
                numeric.left[o],
                numeric.right[o],
                input_index=i,
                output_index=o,
                input_shape=x.shape,
                input_dtype=str(x.dtype),
                output_shape=(),  # one row: the projection onto the cotangent
                atol=tol.atol,
                rtol=tol.rtol,
                check_kinks=check_kinks,
            )
            pair.mode, pair.output_shape = "vjp", target.outputs[o].shape
            result.pairs.append(pair)
    result.problems = list(target.problems)
    return result
