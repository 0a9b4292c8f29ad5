"""The checker ``gradcheck`` and ``check_vjp`` share: a function reduced to NumPy, checked
against finite differences in one of four modes, then for the properties every backward needs.

Both entry points reduce the function to a :class:`~.target.CheckTarget` holding

- ``evaluate(*inputs) -> outputs``, for the numeric side (finite differences in float64), and
- ``pullback(output_index, cotangent) -> grads``, one backward pass (a vector-Jacobian product).

:func:`run_check` chooses the tolerances, sets constant infinite outputs aside (compared as
constants), runs the mode (full Jacobians and one given cotangent here, random projections in
:mod:`.projections`, the extrapolated element-by-element check in :mod:`.tight`), then the
property checks (:mod:`.properties`), and builds the report. The modes are described in
:mod:`.checks`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from .numerical import as_output_tuple, jacobian_columns
from .projections import describe, fast_check, localize
from .properties import property_problems
from .report import GradcheckError, GradcheckResult, PairResult, compare_jacobians
from .target import CheckAborted, CheckTarget, Tolerances, checked_grads
from .tight import TIGHT_STEP, tight_check

MODES = ("auto", "full", "fast", "tight")

# Keyed by the dtype the function under check computes in: float32 when an output is float32, or
# (gradcheck only, which can see the graph) when any tensor on the way to an output is.
DEFAULT_TOLERANCES = {
    "float64": Tolerances(eps=1e-6, atol=1e-5, rtol=1e-3),
    "float32": Tolerances(eps=1e-3, atol=1e-2, rtol=1e-2),
}
# The base step of the projections' extrapolated differences (a power of two): larger than the
# full check's eps, since the extrapolation removes the h² error that a larger step brings and
# the rounding error falls as 1/h.
PROJECTION_STEP = {"float64": 2.0**-14, "float32": 2.0**-7}
# auto mode redoes a failed projection in full only while that stays affordable
FULL_CHECK_LIMIT = 2**22  # Jacobian entries, over all pairs
__all__ = ["DEFAULT_TOLERANCES", "MODES", "CheckAborted", "CheckTarget", "Tolerances", "run_check"]


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
    projections: int = 2,
    nondet_tol: float = 0.0,
    check_properties: bool = True,
) -> GradcheckResult:
    """Check ``target`` in ``mode`` (or against ``cotangents``, when given) and report; raise
    GradcheckError on failure if ``raise_exception``. ``notes`` lead the report's notes."""
    __tracebackhide__ = True  # pytest shows the report, not the checker's frames
    if projections < 1:
        raise ValueError(f"projections must be at least 1, got {projections}")
    if mode == "tight":
        tol = Tolerances(eps=TIGHT_STEP if eps is None else eps, atol=atol or 0.0, rtol=rtol or 0.0)
        _choose_tolerances(target, eps, atol, rtol, notes)  # the float32 note, when it applies
    else:
        tol = _choose_tolerances(target, eps, atol, rtol, notes)
    if not target.argnums:
        notes.append("there is no floating input: nothing was checked")
    target = _set_infinite_entries_aside(target, notes)
    jacobians = None  # the analytic Jacobians, where the full check built them
    if mode == "tight" and check_kinks:
        notes.append("check_kinks does not apply in tight mode (it has no one-sided differences)")
    if mode == "tight":
        result = tight_check(target, tol, seed=seed, step=tol.eps, cotangents=cotangents)
    elif cotangents is not None:
        result = _vjp_check(target, tol, cotangents, check_kinks)
    elif mode == "full":
        result, jacobians = _full_check(target, tol, check_kinks)
    else:
        result, jacobians = _screen(target, tol, mode, seed, projections, eps, rtol, check_kinks)
        notes = result.notes + notes
        result.notes = []
    if check_properties and target.argnums and not target.problems:
        result.problems += property_problems(
            target, seed=seed, nondet_tol=nondet_tol, notes=notes, jacobians=jacobians
        )
    result.notes = notes + result.notes
    if raise_exception and not result.ok:
        raise GradcheckError(result)
    return result


def _screen(
    target: CheckTarget,
    tol: Tolerances,
    mode: str,
    seed: int,
    projections: int,
    eps: float | None,
    rtol: float | None,
    check_kinks: bool,
) -> tuple[GradcheckResult, dict[tuple[int, int], np.ndarray] | None]:
    """Fast mode; in auto mode (or with check_kinks) a failure is redone in full where that is
    affordable, so the report names elements, and otherwise bisected to one wrong element. The
    result's notes say what happened."""
    dtype = "float32" if target.low_precision else "float64"
    step = PROJECTION_STEP[dtype] if eps is None else eps
    result = fast_check(
        target,
        tol,
        seed=seed,
        projections=projections,
        step=step,
        rtol=0.0 if rtol is None else rtol,
    )
    if not result.failed_pairs or not (mode == "auto" or check_kinks):
        return result, None
    fast_note = (
        f"the fast check (a random projection vᵀJu, {projections} per pair) failed for "
        + describe(result.failed_pairs)
    )
    entries = sum(
        target.inputs[i].size * target.outputs[o].size
        for i in target.argnums
        for o in target.checked_outputs
    )
    if entries <= FULL_CHECK_LIMIT:
        result, jacobians = _full_check(target, tol, check_kinks)
        verdict = "and the full Jacobian check passed" if result.ok else "full Jacobians shown"
        result.notes.append(f"{fast_note}; {verdict}")
        return result, jacobians
    result.notes.append(
        f"{fast_note}; the full Jacobians ({entries} entries) were not computed: check a smaller "
        "input, or pass cotangent= to compare vᵀJ element by element"
    )
    for pair in result.failed_pairs:
        found = localize(
            target, pair.input_index, pair.output_index, seed=seed, step=step, atol=tol.atol
        )
        if found:
            result.notes.append(found)
    return result, None


def _set_infinite_entries_aside(target: CheckTarget, notes: list[str]) -> CheckTarget:
    """The target with its outputs' infinite entries replaced by 0 (in ``evaluate`` too, where
    an entry that is no longer the same infinity becomes NaN, so it fails), and ``finite`` set.
    NaN outputs are a problem."""
    finite: dict[int, np.ndarray] = {}
    for o in target.checked_outputs:
        out = target.outputs[o]
        n_nan = int(np.count_nonzero(np.isnan(out)))
        if n_nan:
            target.problems.append(
                f"output {o} has {n_nan} non-finite value(s) at the given inputs: "
                "choose inputs inside the function's domain"
            )
        finite[o] = ~np.isinf(out)
    n_inf = {o: int(np.count_nonzero(~f)) for o, f in finite.items()}
    if not any(n_inf.values()):
        return replace(target, finite=finite)
    for o, n in n_inf.items():
        if n:
            notes.append(
                f"output {o} has {n} infinite entries: compared as constants (zero derivative, "
                "and no gradient may flow through them); the rest compared as usual"
            )
    at_x = target.outputs
    original = target.evaluate

    def evaluate(*args: Any) -> tuple[np.ndarray, ...]:
        outs = list(original(*args))
        for o, f in finite.items():
            moved = ~f & (outs[o] != at_x[o])  # an infinite entry that is no longer the same
            outs[o] = np.where(f, outs[o], np.where(moved, np.nan, 0.0))
        return tuple(outs)

    outputs = tuple(
        np.where(finite[o], out, 0.0) if o in finite else out for o, out in enumerate(at_x)
    )
    return replace(target, evaluate=evaluate, outputs=outputs, finite=finite)


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


def _full_check(
    target: CheckTarget, tol: Tolerances, check_kinks: bool
) -> tuple[GradcheckResult, dict[tuple[int, int], np.ndarray]]:
    """Whole Jacobians compared entry by entry; also returns the analytic ones."""
    result = GradcheckResult(target.checker, "full", tol.eps, tol.atol, tol.rtol)
    analytic: dict[tuple[int, int], np.ndarray] = {}
    for o in target.checked_outputs:
        out = target.outputs[o]
        for i in target.argnums:
            analytic[i, o] = np.zeros((out.size, target.inputs[i].size))
        for k in range(out.size):
            one_hot = np.zeros(out.shape)
            one_hot.flat[k] = 1.0
            for i, g in checked_grads(target, o, one_hot).items():
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
            pair = compare_jacobians(
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
            _check_tied_kinks(pair, analytic[i, o], target.evaluate, target, i, o, tol)
            result.pairs.append(pair)
    result.problems = list(target.problems)
    return result, analytic


def _vjp_check(
    target: CheckTarget, tol: Tolerances, cotangents: tuple[np.ndarray, ...], check_kinks: bool
) -> GradcheckResult:
    """Compare backward(cotangent) with the numeric vector-Jacobian product, element by element
    of each input's grad (one backward per output; two evaluations per input element)."""
    result = GradcheckResult(target.checker, "vjp", tol.eps, tol.atol, tol.rtol)
    analytic = {}
    for o in target.checked_outputs:
        for i, g in checked_grads(target, o, cotangents[o]).items():
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
            _check_tied_kinks(pair, analytic[i, o], projected, target, i, o, tol)
            pair.mode, pair.output_shape = "vjp", target.outputs[o].shape
            result.pairs.append(pair)
    result.problems = list(target.problems)
    return result


def _check_tied_kinks(
    pair: PairResult,
    analytic: np.ndarray,
    f: Any,
    target: CheckTarget,
    i: int,
    o: int,
    tol: Tolerances,
) -> None:
    """Where an output element has two or more accepted kinks (a tie in max), require their
    gradients together to be a subgradient too: along the direction that moves every kink's
    input element at once (a tie moved together stays a tie, so the output is smooth there)
    the sum of their analytic entries must match the numeric derivative, or lie between the
    one-sided ones if the output still has a kink along it. Failures go into ``pair``."""
    rows: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
    for kink in pair.kinks:
        rows.setdefault(kink.output_index, []).append(kink.index)
    tied = {row: indices for row, indices in rows.items() if len(indices) >= 2}
    if not tied:
        return
    x = target.inputs[i]
    direction = np.zeros(x.shape)
    for kink in pair.kinks:
        direction[kink.index] = 1.0
    moved = direction.reshape(-1) == 1.0
    args = list(target.inputs)
    at_x, up, down = (
        as_output_tuple(f(*args[:i], x + step * direction, *args[i + 1 :]))[o].reshape(-1)
        for step in (0.0, tol.eps, -tol.eps)
    )
    for row, indices in tied.items():
        k = int(np.ravel_multi_index(row, pair.output_shape)) if row else 0
        right, left = (up[k] - at_x[k]) / tol.eps, (at_x[k] - down[k]) / tol.eps
        total = float(analytic[k, moved].sum())
        allowed = tol.atol * int(moved.sum()) + tol.rtol * max(abs(left), abs(right))
        if abs(right - left) <= allowed:  # smooth along the tie: one value is right
            valid = abs(total - (left + right) / 2) <= allowed
        else:
            valid = min(left, right) - allowed <= total <= max(left, right) + allowed
        if valid:
            continue
        pair.kinks = [kink for kink in pair.kinks if kink.output_index != row]
        new = [index for index in indices if index not in pair.failed_indices]
        pair.failed_indices += new
        pair.n_failed += len(new)
        where = f" (output element {row})" if row else ""
        pair.subgradient_failures.append(
            f"the tied kinks at index {', '.join(map(str, indices))}{where} have gradients "
            f"summing to {total:.6e}, but moving them together changes the output at rate "
            f"{left:.6e} (left), {right:.6e} (right): together they are no subgradient"
        )
