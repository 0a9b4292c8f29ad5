"""How :func:`tinygradlm.testing.check_layer` compares one tensor, and what it prints when a case
fails: which tensor, by how much against what allowance, the worst elements, and a reproducer
that rebuilds the case's inputs and calls your functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

WORST_SHOWN = 5  # elements listed per failing tensor


@dataclass
class Mismatch:
    """One tensor that failed (or one problem that stopped the case: an exception, a shape)."""

    name: str
    problem: str
    details: list[str]


def compare_tensor(
    name: str,
    yours: Any,
    oracle: np.ndarray,
    reference_error: float,
    dtype: np.dtype,
    factor: float,
    floor_ulps: float,
    input_scale: float = 0.0,
    term_scale: float = 0.0,
) -> tuple[Mismatch | None, float]:
    """FlashAttention's rule for one tensor; returns the mismatch (None if it passed) and the
    ratio max|yours − oracle| / allowed (above 1 fails).

    ``oracle`` is the reference in the wider type, ``reference_error`` the reference's own error
    in the case's precision (:func:`tinygradlm.testing.layers.reference_errors`); the allowance
    is factor·reference_error + floor_ulps·(eps·max|oracle| + eps_oracle·input_scale). The
    second part of the floor is the oracle's own rounding, which it cannot see in itself: a
    formula that cancels (GELU's 1 + tanh(u) far in the negative tail) leaves it an absolute
    error of about its eps times the magnitudes it computes with, ``input_scale`` (the largest
    input times the largest cotangent entry). ``term_scale``, when larger than max|oracle|,
    replaces it in the first part: for a tensor computed as a difference of larger terms
    (:func:`tinygradlm.testing.layers.term_scales`), an ulp of the terms is what any order of
    computing them may differ by. The differences are taken in the oracle's type, so no
    rounding of ours enters them.
    """
    yours = np.asarray(yours)
    if yours.shape != oracle.shape:
        problem = f"has shape {yours.shape}, the reference's has shape {oracle.shape}"
        return Mismatch(name, problem, []), np.inf
    if yours.ndim and yours.dtype != dtype:
        problem = f"has dtype {yours.dtype} for {dtype} inputs (float32 in must give float32 out)"
        return Mismatch(name, problem, []), np.inf
    wide = oracle.dtype
    error = np.asarray(np.abs(yours.astype(wide) - oracle))  # 0-d stays an array (the loss)
    error[np.isnan(error)] = np.inf  # a NaN where the oracle is finite is the worst error
    # where the oracle itself is infinite or NaN, yours must be the same value
    same_special = ~np.isfinite(oracle) & (
        (yours.astype(wide) == oracle) | (np.isnan(yours) & np.isnan(oracle))
    )
    error[same_special] = 0
    finite = np.isfinite(oracle)
    scale = max(float(np.max(np.abs(oracle[finite]), initial=0.0)), term_scale)
    resolution = float(np.finfo(dtype).eps) * scale + float(np.finfo(wide).eps) * input_scale
    floor = floor_ulps * resolution
    allowed = factor * reference_error + floor
    worst = float(np.max(error, initial=0.0))
    ratio = worst / allowed if allowed > 0 else (0.0 if worst == 0 else np.inf)
    if worst <= allowed:
        return None, ratio
    problem = (
        f"max |yours - oracle| = {worst:.3g}; allowed {factor:g} * {reference_error:.3g} (the "
        f"reference's own {dtype} error, the largest of its samples) + {floor:.3g} "
        f"({floor_ulps:g}-ulp floor) = {allowed:.3g}"
    )
    return Mismatch(name, problem, _worst_elements(yours, oracle, error, allowed)), ratio


def _worst_elements(
    yours: np.ndarray, oracle: np.ndarray, error: np.ndarray, allowed: float
) -> list[str]:
    over = int(np.count_nonzero(error > allowed))
    order = np.argsort(error, axis=None)[::-1][: min(WORST_SHOWN, over)]
    lines = [f"{over} of {error.size} elements over the tolerance; the largest:"]
    for flat in order:
        at = tuple(int(i) for i in np.unravel_index(flat, error.shape))
        lines.append(
            f"  at {at}: yours {float(yours[at]):.9g}, oracle {float(oracle[at]):.9g}, "
            f"|difference| {float(error[at]):.3g}"
        )
    return lines


def _import_line(fn: Callable[..., Any], alias: str) -> str:
    """``from module import name as alias`` when ``fn`` can be imported by name; otherwise a
    comment saying to define ``alias``."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if module and module != "__main__" and qualname and "<" not in qualname and "." not in qualname:
        return f"from {module} import {qualname} as {alias}"
    name = getattr(fn, "__name__", repr(fn))
    return f"{alias} = ...  # your {alias} ({name}: not importable by name)"


def reproducer(
    layer: str,
    case: tuple[dict[str, int], int, float],
    dtype: np.dtype,
    forward: Callable[..., Any],
    backward: Callable[..., Any] | None,
) -> str:
    """Python code that rebuilds ``case``'s inputs and runs your functions on them."""
    dims, seed, scale = case
    lines = [
        "import numpy as np",
        "from tinygradlm.testing.layer_cases import cotangent, layer_inputs",
        _import_line(forward, "forward"),
    ]
    if backward is not None:
        lines.append(_import_line(backward, "backward"))
    lines += [
        "",
        f"args = layer_inputs({layer!r}, {dims!r}, seed={seed}, scale={scale!r}, "
        f"dtype=np.{dtype.name})",
    ]
    if layer == "adamw":
        lines += ["forward(*args)  # in place", "params, m, v = args[0], args[2], args[3]"]
    else:
        lines += [
            "out, cache = forward(*args)",
            f"grads = backward(cotangent(np.shape(out), np.{dtype.name}, seed={seed}), cache)",
        ]
    return "\n".join("    " + line if line else "" for line in lines)


def failure_message(
    layer: str,
    case: tuple[dict[str, int], int, float],
    dtype: np.dtype,
    precision: str,
    oracle: str,
    mismatches: list[Mismatch],
    functions: tuple[Callable[..., Any], Callable[..., Any] | None],
) -> str:
    """The AssertionError's text for a failing case."""
    dims, seed, scale = case
    shape = ", ".join(f"{k}={v}" for k, v in dims.items())
    lines = [
        f"check_layer({layer!r}): your implementation differs from tinygradlm.ref at "
        f"{shape}, seed={seed}, scale={scale:g}, dtype {dtype}, precision {precision} "
        f"(oracle: the reference in {oracle})"
    ]
    for m in mismatches:
        lines.append(f"- {m.name}: {m.problem}")
        lines += ["    " + d for d in m.details]
    lines += ["", "Reproduce it with:", "", reproducer(layer, case, dtype, *functions), ""]
    return "\n".join(lines)
