"""What a backward must do besides giving the right numbers at one point: the checks torch's
gradcheck users rely on, for any backward.

For each checked output, with random cotangents v₁ and v₂ (entries ±[1/2, 1]):

- reentrant and deterministic: backward(v₁) twice gives the same grads, bitwise, or within
  ``nondet_tol`` (a backward that accumulates into a buffer it keeps, or races, fails);
- linear in the cotangent: backward(a·v₁ + b·v₂) = a·backward(v₁) + b·backward(v₂), with
  a = 2, b = −3/4 (a + b ≠ 1: a backward that ignores ``dout``, or adds a term that does not
  scale with it, fails; the difference allowed is √ε of the grads' size, rounding only);
- independent of memory layout: forward and backward rerun on copies of the inputs and of v₁
  stored transposed (axes in reverse order), with a gap between elements and the first axis
  running backwards give the same outputs and grads within √ε (a kernel that reads memory in
  storage order — ``ravel(order="K")``, a raw pointer — fails; one that refuses such arrays
  with an exception is noted, not failed);
- aliasing as the caller passed it: where the same array was passed at two positions, rerun
  with one array at both (a backward that writes into an input another position reads fails);
- no gradient through constant infinite outputs: a cotangent on the infinite entries alone
  (a causal mask's −inf) must give exactly zero grads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .stencils import random_signs_and_weights
from .target import CheckTarget, checked_grads, grads_as_float64

LINEAR_A, LINEAR_B = 2.0, -0.75


def scrambled(x: Any) -> Any:
    """An array equal to ``x`` stored another way: axes in reverse order in memory, every
    element two slots apart, the first axis running backwards (``x`` itself if not an array)."""
    if not isinstance(x, np.ndarray) or x.ndim == 0:
        return x.copy() if isinstance(x, np.ndarray) else x
    base = np.zeros((*x.shape[::-1], 2), dtype=x.dtype)
    view = base[..., 0].transpose()[::-1]
    view[...] = x
    return view


def property_problems(
    target: CheckTarget,
    *,
    seed: int,
    nondet_tol: float,
    notes: list[str],
    jacobians: dict[tuple[int, int], np.ndarray] | None = None,
) -> list[str]:
    """The problems found by every check above, for every checked output (notes appended).

    Given the analytic ``jacobians`` (full mode: rows from one-hot cotangents), linearity is
    checked as backward(v₁) = v₁ᵀJ, the same property for one backward pass instead of three.
    """
    rng = np.random.default_rng(seed + 1)
    problems: list[str] = []
    for o in target.checked_outputs:
        v1 = random_signs_and_weights(rng, target.outputs[o].shape) * target.finite[o]
        v2 = random_signs_and_weights(rng, target.outputs[o].shape) * target.finite[o]
        g1 = checked_grads(target, o, v1)
        again = checked_grads(target, o, v1)
        if jacobians is None:
            g2 = checked_grads(target, o, v2)
            combined = checked_grads(target, o, LINEAR_A * v1 + LINEAR_B * v2)
        for i in target.argnums:
            if g1[i] is None or again[i] is None:
                continue  # a grad of the wrong shape: already a problem
            where = f"input {i}, output {o}"
            diff = _max_diff(g1[i], again[i])
            if not diff <= nondet_tol:
                problems.append(
                    f"backward is not reentrant ({where}): run twice on the same cotangent it "
                    f"gave grads that differ by up to {diff:.1e} (nondet_tol={nondet_tol:g})"
                )
            if jacobians is not None and (i, o) in jacobians:
                jacobian = jacobians[i, o]
                got, expected = g1[i].reshape(-1), v1.reshape(-1) @ jacobian
                magnitude = np.abs(v1.reshape(-1)) @ np.abs(jacobian)
                what = "backward(v) differs from Σ_k v_k·backward(e_k)"
            elif jacobians is None and g2[i] is not None and combined[i] is not None:
                got, expected = combined[i], LINEAR_A * g1[i] + LINEAR_B * g2[i]
                magnitude = np.abs(LINEAR_A * g1[i]) + np.abs(LINEAR_B * g2[i])
                what = "backward(a·v₁ + b·v₂) differs from a·backward(v₁) + b·backward(v₂)"
            else:
                continue
            allowed = _rounding(target, magnitude)
            diff = _max_diff(got, expected)
            if not diff <= allowed + nondet_tol:
                problems.append(
                    f"backward is not linear in dout ({where}): {what} by up to {diff:.1e} "
                    f"(allowed {allowed:.1e}): does it ignore dout, or add a term that does "
                    "not scale with it?"
                )
        if target.rerun is not None:
            problems += _layout_problems(target, o, v1, g1, nondet_tol, notes)
        problems += _infinite_flow_problems(target, o, rng)
    return problems


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    """The largest |a − b|; 0 where both are the same non-finite value, inf where they differ."""
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(a - b))
    diff = np.where(np.isnan(diff), np.inf, diff)
    return float(np.max(diff, initial=0.0))


def _rounding(target: CheckTarget, magnitude: np.ndarray) -> float:
    """√ε times the largest magnitude: room for rounding, far below any real error."""
    return float(np.sqrt(target.unit_roundoff) * np.max(magnitude, initial=0.0))


def _layout_problems(
    target: CheckTarget,
    o: int,
    v1: np.ndarray,
    g1: dict[int, Any],
    nondet_tol: float,
    notes: list[str],
) -> list[str]:
    """Rerun with scrambled layouts, and with the caller's aliasing; compare with g1."""
    separate = {i: g for i, g in g1.items() if g is not None}
    variants = [
        (
            "when its inputs and dout are not C-contiguous",
            " — does it read memory in storage order?",
            list(map(scrambled, target.inputs)),
            scrambled(v1),
            separate,
        )
    ]
    for group in target.alias_groups:
        args = list(target.inputs)
        for i in group[1:]:
            args[i] = args[group[0]]
        expected = dict(separate)
        if target.aliased_grads_add:  # one leaf for the whole group: its grad is their sum
            total = sum(separate[i] for i in group if i in separate)
            expected.update({i: total for i in group if i in separate})
        what = f"when inputs {' and '.join(map(str, group))} are one array (as passed)"
        variants.append((what, "", args, v1, expected))
    problems = []
    for what, hint, args, cot, expected in variants:
        try:
            outputs, raw = target.rerun(args, o, cot)
        except Exception as e:  # a kernel may refuse such arrays: that is not a wrong answer
            notes.append(f"forward/backward raised {type(e).__name__} {what}: {e}")
            continue
        out = np.where(target.finite[o], np.asarray(outputs[o], dtype=np.float64), 0.0)
        diff = _max_diff(out, target.outputs[o])
        if not diff <= _rounding(target, np.abs(target.outputs[o])) + nondet_tol:
            problems.append(
                f"forward gives other outputs {what}: output {o} differs by up to {diff:.1e}"
            )
        grads = grads_as_float64(target, raw)
        for i, g in expected.items():
            diff = np.inf if grads[i] is None else _max_diff(grads[i], g)
            if not diff <= _rounding(target, np.abs(g)) + nondet_tol:
                problems.append(
                    f"backward gives other grads {what}: input {i} (output {o}) differs by up to "
                    f"{diff:.1e}{hint}"
                )
    return problems


def _infinite_flow_problems(target: CheckTarget, o: int, rng: np.random.Generator) -> list[str]:
    """A cotangent on the constant infinite entries of output o alone must give zero grads."""
    infinite = ~target.finite[o]
    if not infinite.any():
        return []
    v = random_signs_and_weights(rng, infinite.shape) * infinite
    problems = []
    for i, g in checked_grads(target, o, v).items():
        if g is not None and np.any(g != 0):
            leak = float(np.max(np.abs(np.nan_to_num(g, nan=np.inf))))
            problems.append(
                f"backward passes gradient through the {int(infinite.sum())} infinite entries of "
                f"output {o}: a cotangent on them alone gives input {i} grads up to {leak:.1e} "
                "(they are constant, so nothing may flow through them)"
            )
    return problems
