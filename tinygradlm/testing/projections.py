"""The default screen: several random projections vᵀJu per (input, output) pair, each compared
within the error of its own finite difference.

One backward pass per output, with a cotangent v, gives the whole row vector g = vᵀJ; each of K
directions u then costs only g·u on the analytic side and a directional derivative of
φ(x) = v·f(x) on the numeric side, by Richardson's extrapolation of central differences with
steps h and 2h (four evaluations of ``f``; :mod:`.stencils`). The allowed difference is that
derivative's error estimate, plus the rounding of g·u and ``atol`` — not a fraction of the
projection, which grows with the size of the arrays while one element's share of it does not.

What this guarantees (the entries of u and v are ±[1/2, 1], never near zero):

- an error confined to one element j of the backward's result g (one wrong Jacobian entry, or a
  whole column, as a kernel that mishandles one index gives) moves every projection by at least
  |error|/2, so any such error above 4τ (τ the largest allowed difference) fails the check with
  certainty, at any size: the report states 4τ as the threshold;
- an error spread over several elements moves a projection by Σ u_j·error_j (plus the finite
  difference's own error, at most τ); if some element's error c exceeds 100× the threshold
  (400τ), the projection passes only for u_j in an interval of length 4τ/|c| ≤ 1/100, which
  holds at most 11 of the 513 weights u_j can take: each projection misses with probability
  below 1/40 over the draw of u_j, and K projections (independent u) below 40⁻ᴷ.

Where auto mode cannot afford the full Jacobians, :func:`localize` bisects the input's elements
with the same projections (O(log n) directional derivatives) to name one wrong element.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .report import GradcheckResult, compare_projections
from .stencils import extrapolated_derivative, power_of_two_step, random_signs_and_weights
from .target import CheckTarget, Tolerances, checked_grads, grads_by_pair

ANALYTIC_MARGIN = 64.0  # rounding of the backward's sums, in ulps of the terms' magnitude


def projected(
    target: CheckTarget,
    argnum: int,
    direction: np.ndarray,
    cotangents: dict[int, np.ndarray],
    intermediate_scale: float = 0.0,
):
    """φ(t): the outputs at inputs[argnum] + t·direction, projected onto ``cotangents``: one
    value and one magnitude per output in ``cotangents``' order. The magnitude, which bounds the
    rounding error of the value, is Σ|v_k|·max(|f_k|, ``intermediate_scale``): a function may
    round at the scale of its intermediates rather than of its result (1 + tanh u near 0)."""
    x = target.inputs[argnum]
    order = list(cotangents)

    def phi(t: float) -> tuple[np.ndarray, np.ndarray]:
        args = list(target.inputs)
        args[argnum] = np.asarray(x + t * direction)  # asarray: x may be 0-d
        outs = target.evaluate(*args)
        values = np.array([np.vdot(cotangents[o], outs[o]) for o in order])
        magnitudes = np.array(
            [
                np.vdot(np.abs(cotangents[o]), np.maximum(np.abs(outs[o]), intermediate_scale))
                for o in order
            ]
        )
        return values, magnitudes

    return phi


def fast_check(
    target: CheckTarget,
    tol: Tolerances,
    *,
    seed: int,
    projections: int,
    step: float,
    rtol: float,
) -> GradcheckResult:
    """K = ``projections`` random projections per pair, tolerance from the error estimate (plus
    ``tol.atol``, and ``rtol``·|numeric| where the caller asked for a relative tolerance)."""
    result = GradcheckResult(target.checker, "fast", tol.eps, tol.atol, tol.rtol)
    rng = np.random.default_rng(seed)
    step = power_of_two_step(step)
    v = {
        o: random_signs_and_weights(rng, target.outputs[o].shape) * target.finite[o]
        for o in target.checked_outputs
    }
    grads = grads_by_pair(target, v)
    for i in target.argnums:
        outs = [o for o in target.checked_outputs if (i, o) in grads]
        if not outs:
            continue
        x = target.inputs[i]
        analytic, numeric, allowed = [], [], []
        for _ in range(projections):
            u = random_signs_and_weights(rng, x.shape)
            phi = projected(target, i, u, {o: v[o] for o in outs})
            estimate = extrapolated_derivative(phi, step, 2, target.unit_roundoff)
            analytic.append([float(np.vdot(grads[i, o], u)) for o in outs])
            rounding = [
                ANALYTIC_MARGIN * target.unit_roundoff * float(np.abs(grads[i, o] * u).sum())
                for o in outs
            ]
            numeric.append(estimate.value)
            allowed.append(estimate.error + np.array(rounding) + tol.atol)
        analytic_, numeric_, allowed_ = map(np.array, (analytic, numeric, allowed))
        allowed_ = allowed_ + rtol * np.abs(numeric_)
        for k, o in enumerate(outs):
            pair = compare_projections(
                analytic_[:, k],
                numeric_[:, k],
                allowed_[:, k],
                input_index=i,
                output_index=o,
                input_shape=x.shape,
                input_dtype=str(x.dtype),
                output_shape=target.outputs[o].shape,
            )
            # one element's error e moves a projection by |u_j·e| ≥ e/2: seen once over 2τ
            pair.threshold = 4.0 * float(np.max(allowed_[:, k]))
            pair.gradient_scale = float(np.max(np.abs(grads[i, o]), initial=0.0))
            result.pairs.append(pair)
    result.problems = list(target.problems)
    return result


def describe(pairs: list[Any]) -> str:
    """'input i -> output o, …' for a list of pairs, in a note."""
    return ", ".join(f"input {p.input_index} -> output {p.output_index}" for p in pairs)


def localize(
    target: CheckTarget, i: int, o: int, *, seed: int, step: float, atol: float
) -> str | None:
    """Bisect input i's elements for one whose entry of vᵀJ (output o) is wrong: compare the
    projection onto u restricted to each half, keep a half that fails, until one element is
    left (about 2·log₂(size) directional derivatives). A sentence naming it, or None if no half
    fails on its own (errors that cancel between halves)."""
    rng = np.random.default_rng(seed + 2)
    v = random_signs_and_weights(rng, target.outputs[o].shape) * target.finite[o]
    g = checked_grads(target, o, v)[i]
    if g is None:
        return None
    x = target.inputs[i]
    u, flat_g = random_signs_and_weights(rng, x.shape).reshape(-1), g.reshape(-1)
    step = power_of_two_step(step)

    def numeric_over(lo: int, hi: int) -> tuple[float, float, bool]:
        direction = np.zeros(x.size)
        direction[lo:hi] = u[lo:hi]
        phi = projected(target, i, direction.reshape(x.shape), {o: v})
        estimate = extrapolated_derivative(phi, step, 2, target.unit_roundoff)
        terms = flat_g[lo:hi] * u[lo:hi]
        rounding = ANALYTIC_MARGIN * target.unit_roundoff * float(np.abs(terms).sum())
        allowed = float(estimate.error[0]) + rounding + atol
        numeric = float(estimate.value[0])
        return float(terms.sum()), numeric, not abs(terms.sum() - numeric) <= allowed

    lo, hi = 0, x.size
    if not numeric_over(lo, hi)[2]:
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        halves = [(a, b) for a, b in ((lo, mid), (mid, hi)) if numeric_over(a, b)[2]]
        if not halves:
            return None
        lo, hi = halves[0]
    analytic, numeric, _ = numeric_over(lo, hi)
    index = tuple(int(n) for n in np.unravel_index(lo, x.shape))
    return (
        f"bisection names input {i} at index {index} (output {o}): element {index} of vᵀJ is "
        f"{analytic / u[lo]:.6e} by the backward, {numeric / u[lo]:.6e} by finite differences"
    )
