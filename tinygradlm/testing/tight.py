"""Tight mode: every element of vᵀJ against a Richardson-extrapolated finite difference, within
that difference's own error estimate.

For each output a random cotangent v (entries ±[1/2, 1]; or the caller's) gives one backward
pass, g = vᵀJ. For each input element j the numeric ∂(v·f)/∂x_j comes from central differences
with steps h, 2h and 4h (six evaluations of ``f``) extrapolated twice (:mod:`.stencils`): its
truncation error is O(h⁶), measured by the tableau, and its rounding error is bounded by
ε·Σ|v|·max(|f|, max|x|)/h — rounding at the scale of the input as well as of the output, since
a function may cancel inside (GELU's 1 + tanh u for x below −4 keeps a few digits of a result
near 1e-13). With h = 2⁻¹⁰ (times the element's magnitude, rounded to a power of two) both are
around 1e-12 of the gradient for a smooth, well-scaled float64 function, so an element passes
when

    |g_j − numeric_j| ≤ τ_j = truncation estimate + rounding bound + rounding of g
                              (+ atol + rtol·|numeric_j| if the caller gave them),

and an error larger than 2τ_j in element j cannot pass. The report states 2·max τ_j per pair:
the smallest error the check was sure to see. Near a kink or where ``f`` varies on a scale
shorter than 4h the estimate grows, and so does the stated threshold: the check says what it
could not resolve instead of raising a false alarm.
"""

from __future__ import annotations

import numpy as np

from .projections import ANALYTIC_MARGIN, projected
from .report import GradcheckResult, compare_jacobians
from .stencils import extrapolated_derivative, power_of_two_step, random_signs_and_weights
from .target import CheckTarget, Tolerances, grads_by_pair

TIGHT_STEP = 2.0**-10  # the base step h; each element's is h times its magnitude (power of two)
TIGHT_LEVELS = 3  # steps h, 2h, 4h: two Richardson levels, the second measuring the first


def tight_check(
    target: CheckTarget,
    tol: Tolerances,
    *,
    seed: int,
    step: float,
    cotangents: tuple[np.ndarray, ...] | None,
) -> GradcheckResult:
    """Compare backward(v) with the extrapolated numeric vᵀJ element by element, per pair."""
    result = GradcheckResult(target.checker, "tight", step, tol.atol, tol.rtol)
    rng = np.random.default_rng(seed)
    step = power_of_two_step(step)
    if cotangents is None:
        cotangents = tuple(random_signs_and_weights(rng, o.shape) for o in target.outputs)
    v = {o: cotangents[o] * target.finite[o] for o in target.checked_outputs}
    grads = grads_by_pair(target, v)
    for i in target.argnums:
        outs = [o for o in target.checked_outputs if (i, o) in grads]
        if not outs:
            continue
        x = target.inputs[i]
        value, error = _numeric_gradient(target, i, step, {o: v[o] for o in outs})
        for k, o in enumerate(outs):
            g = grads[i, o].reshape(1, -1)
            numeric = value[k].reshape(1, -1)
            scale = float(np.max(np.abs(g), initial=0.0))
            allowed = (
                error[k].reshape(1, -1)
                + ANALYTIC_MARGIN * target.unit_roundoff * scale
                + tol.atol
                + tol.rtol * np.abs(numeric)
            )
            pair = compare_jacobians(
                g,
                numeric,
                numeric,
                numeric,
                input_index=i,
                output_index=o,
                input_shape=x.shape,
                input_dtype=str(x.dtype),
                output_shape=(),
                atol=tol.atol,
                rtol=tol.rtol,
                check_kinks=False,
                allowed=allowed,
            )
            pair.mode, pair.output_shape = "tight", target.outputs[o].shape
            pair.threshold = 2.0 * float(np.max(allowed, initial=0.0))
            pair.gradient_scale = scale
            result.pairs.append(pair)
    result.problems = list(target.problems)
    return result


def _numeric_gradient(
    target: CheckTarget, argnum: int, step: float, cotangents: dict[int, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """∂(v_o·f_o)/∂x_j for every element j and output o, with error bounds: two arrays of shape
    (len(cotangents), x.size)."""
    x = target.inputs[argnum]
    value = np.zeros((len(cotangents), x.size))
    error = np.zeros((len(cotangents), x.size))
    # the rounding bound assumes intermediates as large as the input's largest element
    intermediate_scale = float(np.max(np.abs(x), initial=0.0))
    for j in range(x.size):
        magnitude = abs(float(x.reshape(-1)[j]))
        element_step = step * 2.0 ** max(0.0, np.ceil(np.log2(magnitude))) if magnitude else step
        unit = np.zeros(x.shape)
        unit.reshape(-1)[j] = 1.0
        phi = projected(target, argnum, unit, cotangents, intermediate_scale)
        estimate = extrapolated_derivative(phi, element_step, TIGHT_LEVELS, target.unit_roundoff)
        value[:, j], error[:, j] = estimate.value, estimate.error
    return value, error
