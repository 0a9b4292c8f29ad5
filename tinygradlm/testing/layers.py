"""``check_layer``: differential testing of your implementation of a GPT-2 layer against the
reference in :mod:`tinygradlm.ref`.

Write ``layernorm_forward`` / ``layernorm_backward`` (or any other layer's pair) with the
reference's signatures and conventions (``tinygradlm.ref``'s docstring), and check them in one
call from a pytest test::

    check_layer("layernorm", my_layernorm_forward, my_layernorm_backward)

Hypothesis draws cases (sizes of 1, small primes, 63..65 and 127..129 around kernels' blocks;
magnitudes from 0.01 to 1000; ignored targets for the loss: :mod:`.layer_cases`), runs your
forward and backward on each with a random cotangent, and compares the output and every gradient
with the reference's. On a failure it shrinks to the smallest failing case and raises
AssertionError with a reproducer: the case, the code that rebuilds its inputs and calls your
functions, and which elements differ by how much.

The tolerance is FlashAttention's rule (Dao et al., 2022), the same for every dtype: an
*oracle* runs the reference in a wider type on the same inputs (float64 for float32 cases,
``np.longdouble`` for float64 cases where the platform has it wider, as on x86-64 Linux); the
*reference error* is the reference's own distance from the oracle in the case's dtype (the
largest over the case and three copies with every input moved by an ulp); yours may be at most
``factor`` times that, plus a floor of ``floor_ulps`` units in the last place of the tensor's
largest value, or of the largest term it sums or cancels (:func:`term_scales`), plus the
oracle's own rounding. Per tensor, as the largest absolute difference over its elements:

    max |yours − oracle| ≤ factor · max |reference − oracle| + floor_ulps · eps · scale + …

So the bar is not an arbitrary rtol: a kernel as accurate as a straightforward implementation in
its precision passes; one that loses precision (a float16 intermediate in a float32 kernel, a
constant with five digits) or gets anything wrong fails. For a kernel meant to compute in bf16
or fp16, ``precision="bf16"`` / ``"fp16"`` measures the reference error with the reference's
inputs and outputs rounded to that format, as the kernel's would be. docs/kernel_checking.md
has the whole workflow and what the rule was measured to separate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import ref
from .layer_cases import OUTPUT_NAMES, case_strategy, cotangent, layer_inputs
from .layer_report import Mismatch, compare_tensor, failure_message

__all__ = ["DEFAULT_FACTOR", "DEFAULT_FLOOR_ULPS", "LayerCheckResult", "check_layer"]

DEFAULT_FACTOR = 3.0  # FlashAttention's papers allow 2-3× the reference's error
DEFAULT_FLOOR_ULPS = 8.0
REFERENCE_SAMPLES = 4  # runs of the reference whose largest error sets the allowance
ROUNDERS = {"bf16": ref.round_to_bf16, "fp16": ref.round_to_fp16}


@dataclass
class LayerCheckResult:
    """What a passing :func:`check_layer` saw: the rule, the cases run, and per tensor the
    largest ``error / allowed`` ratio met (1.0 would be at the tolerance)."""

    layer: str
    dtype: str
    precision: str
    oracle: str
    factor: float
    floor_ulps: float
    examples: int = 0
    worst: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        ratios = ", ".join(f"{name} {r:.2g}" for name, r in self.worst.items())
        return (
            f"check_layer({self.layer!r}, {self.dtype}, precision {self.precision}): "
            f"{self.examples} cases passed against a {self.oracle} oracle with factor "
            f"{self.factor:g} and a {self.floor_ulps:g}-ulp floor; worst error/allowed: {ratios}"
        )


def check_layer(
    layer: str,
    forward: Callable[..., Any],
    backward: Callable[..., Any] | None = None,
    *,
    dtype: Any = np.float64,
    precision: str | None = None,
    factor: float = DEFAULT_FACTOR,
    floor_ulps: float = DEFAULT_FLOOR_ULPS,
    max_size: int = 129,
    max_examples: int | None = None,
    deadline: float | None = None,
    derandomize: bool | None = None,
    seed: int | None = None,
    hypothesis_settings: dict[str, Any] | None = None,
) -> LayerCheckResult:
    """Check your ``forward`` / ``backward`` of GPT-2 ``layer`` against ``tinygradlm.ref``.

    ``layer``: "encoder", "layernorm", "linear", "attention", "gelu", "residual",
    "crossentropy", or "adamw" (``forward`` is then your ``adamw_update``, in place, and there
    is no backward). ``forward`` and ``backward`` take the reference's arguments and return what
    it returns (``tinygradlm.ref``'s docstring).

    ``dtype``: the inputs' dtype, float64 or float32. ``precision``: "bf16" or "fp16" for a
    kernel that computes in that format (float32 inputs and outputs): the reference error is
    then measured with the reference's inputs and outputs rounded to it. ``factor`` and
    ``floor_ulps``: the tolerance (module docstring). ``max_size``: the largest size drawn
    (the block-boundary sizes above it are left out).

    Hypothesis: ``max_examples`` and ``derandomize`` default to the active settings profile;
    ``deadline`` to None (a first call may compile); ``seed`` fixes the random cases;
    ``hypothesis_settings`` passes any other setting (``database=None``, ``phases``, …).

    Returns a :class:`LayerCheckResult`; raises AssertionError, with the smallest failing case
    and a reproducer, when a case fails.
    """
    __tracebackhide__ = True  # pytest shows the message, not the frames in here
    if layer not in OUTPUT_NAMES:
        raise ValueError(
            f"check_layer: unknown layer {layer!r}; choose one of {tuple(OUTPUT_NAMES)}"
        )
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"check_layer: dtype must be float32 or float64, got {dtype}")
    if precision is not None and (precision not in ROUNDERS or dtype != np.float32):
        raise ValueError(
            f"check_layer: precision must be None, or 'bf16' / 'fp16' with dtype float32; got "
            f"{precision!r} with {dtype}"
        )
    if (backward is None) != (layer == "adamw"):
        raise ValueError(f"check_layer: {layer!r} needs a backward unless it is 'adamw'")
    wide = oracle_dtype(dtype)
    result = LayerCheckResult(
        layer, dtype.name, precision or dtype.name, _oracle_name(wide, dtype), factor, floor_ulps
    )
    strategy = case_strategy(layer, max_size)

    def check_case(case: tuple[dict[str, int], int, float]) -> None:
        __tracebackhide__ = True
        mismatches = evaluate_case(layer, (forward, backward), case, result, dtype, precision)
        result.examples += 1
        if mismatches:
            message = failure_message(
                layer, case, dtype, result.precision, result.oracle, mismatches, (forward, backward)
            )
            raise AssertionError(message)

    settings = {"max_examples": max_examples, "derandomize": derandomize}
    settings = {"deadline": deadline, **{k: v for k, v in settings.items() if v is not None}}
    _run_cases(check_case, strategy, {**settings, **(hypothesis_settings or {})}, seed)
    return result


def evaluate_case(
    layer: str,
    functions: tuple[Callable[..., Any], Callable[..., Any] | None],
    case: tuple[dict[str, int], int, float],
    result: LayerCheckResult,
    dtype: np.dtype,
    precision: str | None,
) -> list[Mismatch]:
    """Run your pair, the reference in ``dtype`` and the oracle on one case; compare every
    tensor (recording the worst ratios in ``result``) and return what failed."""
    dims, seed, scale = case
    args = layer_inputs(layer, dims, seed, scale, dtype)
    before = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    try:
        with np.errstate(all="ignore"):  # non-finite results are reported as such below
            yours = run_pair(layer, *functions, args, seed, dtype, in_place=True)
    except Exception as err:  # yours may raise anything: report it with the case
        return [Mismatch("forward/backward", f"raised {type(err).__name__}: {err}", [])]
    if layer != "adamw":
        changed = [i for i, (a, b) in enumerate(zip(args, before, strict=True)) if not _same(a, b)]
        if changed:
            return [Mismatch("forward/backward", f"modified argument(s) {changed}", [])]
    wide = oracle_dtype(dtype)
    oracle = run_pair(layer, *reference_pair(layer), cast_args(before, wide), seed, dtype)
    if len(yours) != len(oracle):
        got = f"{len(yours) - 1} gradient(s)"
        return [Mismatch("backward", f"returned {got}, the reference {len(oracle) - 1}", [])]
    errors = reference_errors(layer, before, seed, dtype, precision, oracle)
    rule = (dtype, result.factor, result.floor_ulps, input_scale(before, seed, dtype, oracle[0]))
    terms = term_scales(layer, before, cotangent(np.shape(oracle[0]), dtype, seed))
    mismatches = []
    # not strict: OUTPUT_NAMES lists linear's dbias, returned only when the case has a bias
    for name, y, o, e in zip(OUTPUT_NAMES[layer], yours, oracle, errors, strict=False):
        mismatch, ratio = compare_tensor(name, y, o, e, *rule, terms.get(name, 0.0))
        result.worst[name] = max(result.worst.get(name, 0.0), ratio)
        if mismatch is not None:
            mismatches.append(mismatch)
    return mismatches


def reference_errors(
    layer: str,
    args: list[Any],
    seed: int,
    dtype: np.dtype,
    precision: str | None,
    oracle: tuple[np.ndarray, ...],
) -> list[float]:
    """Per output tensor, the reference's own error in ``dtype`` (in ``precision``'s rounding),
    max |reference − oracle|: the largest over the case itself and ``REFERENCE_SAMPLES − 1``
    copies of it with every input moved by one ulp up or down at random (each against its own
    oracle). Rounding noise varies from input to input, and a tensor of a few elements can be
    lucky once: layer norm's dx at C = 2 is exactly zero, so all it holds is noise, and one
    sample of the reference's noise was a third of the Numba kernel's in 1 case of 500."""
    rounder = ROUNDERS.get(precision or "")
    reference, wide = reference_pair(layer), oracle_dtype(dtype)
    rng = np.random.default_rng(seed)
    errors = [0.0] * len(oracle)
    for sample in range(REFERENCE_SAMPLES):
        moved = args if sample == 0 else [_one_ulp(a, rng) for a in args]
        sample_oracle = (
            oracle
            if sample == 0
            else run_pair(layer, *reference, cast_args(moved, wide), seed, dtype)
        )
        baseline = run_pair(
            layer, *reference, cast_args(moved, dtype, rounder), seed, dtype, rounder=rounder
        )
        for i, (b, o) in enumerate(zip(baseline, sample_oracle, strict=True)):
            b = rounder(b.astype(np.float32)) if rounder is not None else b
            finite = np.isfinite(o)
            error = np.max(np.abs(b.astype(o.dtype) - o)[finite], initial=0.0)
            errors[i] = max(errors[i], float(error))
    return errors


def input_scale(args: list[Any], seed: int, dtype: np.dtype, out: np.ndarray) -> float:
    """The largest |input| times the largest |cotangent entry| (at least 1): the magnitude the
    oracle's own rounding is relative to (:func:`.layer_report.compare_tensor`)."""
    inputs = [np.max(np.abs(a), initial=0.0) for a in args if _is_float_array(a)]
    dout = np.max(np.abs(cotangent(np.shape(out), dtype, seed)), initial=0.0)
    return float(max(inputs, default=0.0) * max(1.0, dout))


def term_scales(layer: str, args: list[Any], dout: np.ndarray) -> dict[str, float]:
    """Per tensor, the largest magnitude of the terms it is a sum or difference of, where that
    can exceed the tensor itself: an ulp of the terms is what any other order of adding them
    may differ by, however lucky the reference's order was.

    - Sums (a matmul, a bias or embedding gradient summed over positions, a residual add): the
      same layer on |inputs| and |dout| gives Σ|terms| for linear, encoder and residual, which
      are linear in each input; layer norm's dweight and dbias are Σ|dout·xhat| and Σ|dout|.
    - Layer norm's dx = rstd·(dxhat − mean(dxhat) − xhat·mean(dxhat·xhat)), dxhat = dout·weight,
      cancels to exactly zero at C ≤ 2: its terms are of size rstd·|dxhat|.
    - The loss gradient (p − onehot)·dloss/n cancels where p ≈ 1: its terms are of size dloss/n.
    """
    wide = [a.astype(np.float64) if _is_float_array(a) else a for a in args]
    if layer in ("linear", "encoder", "residual"):
        forward, backward = reference_pair(layer)
        out, cache = forward(*[np.abs(a) if _is_float_array(a) else a for a in wide])
        tensors = (out, *backward(np.abs(dout).astype(np.float64), cache))
        names = OUTPUT_NAMES[layer]  # not strict: linear's dbias only with a bias
        return {n: float(np.max(t, initial=0.0)) for n, t in zip(names, tensors, strict=False)}
    if layer == "layernorm":
        x, weight, bias = wide[:3]
        rstd = 1.0 / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-5)  # (B, T, 1)
        xhat = (x - x.mean(axis=-1, keepdims=True)) * rstd
        rows = (-1, x.shape[-1])
        return {
            "out": float(np.max(np.abs(xhat * weight) + np.abs(bias), initial=0.0)),
            "dx": float(np.max(rstd * np.abs(dout * weight), initial=0.0)),
            "dweight": float(np.max(np.abs(dout * xhat).reshape(rows).sum(0), initial=0.0)),
            "dbias": float(np.max(np.abs(dout).reshape(rows).sum(0), initial=0.0)),
        }
    if layer == "crossentropy":
        n_valid = max(1, int(np.count_nonzero(args[1] != args[3])))
        return {"dlogits": float(abs(dout)) / n_valid}
    return {}


def _is_float_array(a: Any) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind == "f"


def _one_ulp(a: Any, rng: np.random.Generator) -> Any:
    """A floating array with every element moved to a neighbouring float, up or down at random."""
    if not _is_float_array(a):
        return a
    direction = np.where(rng.random(a.shape) < 0.5, -np.inf, np.inf).astype(a.dtype)
    return np.nextafter(a, direction)


def run_pair(
    layer: str,
    forward: Callable[..., Any],
    backward: Callable[..., Any] | None,
    args: list[Any],
    seed: int,
    dtype: np.dtype,
    in_place: bool = False,
    rounder: Callable[..., Any] | None = None,
) -> tuple[np.ndarray, ...]:
    """``forward(*args)`` then ``backward(dout, cache)``, dout the case's cotangent (drawn in
    ``dtype``, then cast to the arguments' type, so every run gets the same numbers); returns
    the output and every gradient (for "adamw": params, m, v after the update). ``args`` is
    left unchanged unless ``in_place`` (yours: to see whether the forward wrote into it);
    ``rounder`` rounds dout (the reference emulating a 16-bit kernel)."""
    if not in_place:
        args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    if layer == "adamw":
        forward(*args)
        return tuple(np.array(args[i]) for i in (0, 2, 3))
    out, cache = forward(*args)
    out = np.asarray(out)
    dout = cotangent(out.shape, dtype, seed).astype(_float_dtype(args))
    if rounder is not None:
        dout = rounder(dout)
    dout_before = dout.copy()
    grads = backward(dout, cache)
    if not isinstance(grads, (tuple, list)):
        raise TypeError(f"the backward returned {type(grads).__name__}, not a tuple of arrays")
    if not np.array_equal(dout, dout_before):
        raise ValueError("the backward modified dout (backwards must leave it unchanged)")
    return (out, *(np.asarray(g) for g in grads))


def oracle_dtype(dtype: Any) -> np.dtype:
    """The wider type the oracle computes in: float64 for float32, long double for float64
    (float64 itself on platforms without a wider long double)."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float32 else np.dtype(np.longdouble)


def reference_pair(layer: str) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
    """The reference's forward and backward of ``layer`` (the update and None for "adamw")."""
    if layer == "adamw":
        return ref.adamw_update, None
    return getattr(ref, f"{layer}_forward"), getattr(ref, f"{layer}_backward")


def cast_args(args: list[Any], dtype: Any, rounder: Callable[..., Any] | None = None) -> list[Any]:
    """``args`` with every floating array in ``dtype`` (rounded by ``rounder`` first)."""
    cast = []
    for a in args:
        if _is_float_array(a):
            a = (rounder(a.astype(np.float32)) if rounder else a).astype(dtype)
        cast.append(a)
    return cast


def _float_dtype(args: list[Any]) -> np.dtype:
    return next(a.dtype for a in args if _is_float_array(a))


def _same(a: Any, b: Any) -> bool:
    return not isinstance(a, np.ndarray) or np.array_equal(a, b, equal_nan=True)


def _oracle_name(wide: np.dtype, dtype: np.dtype) -> str:
    if wide == np.longdouble and np.finfo(wide).eps >= np.finfo(dtype).eps:
        return "float64 (no wider long double on this platform: the floor alone applies)"
    return "long double" if wide == np.longdouble else wide.name


def _run_cases(
    check_case: Callable[..., None], strategy: Any, overrides: dict[str, Any], seed: int | None
) -> None:
    """Run ``check_case`` on hypothesis's draws from ``strategy``, under the active profile with
    ``overrides``; the one shrunk failure propagates."""
    __tracebackhide__ = True
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as fixed_seed

    chosen = dict(overrides)
    chosen.setdefault("report_multiple_bugs", False)
    chosen.setdefault("suppress_health_check", [HealthCheck.too_slow, HealthCheck.data_too_large])
    run = settings(**chosen)(given(strategy)(check_case))
    if seed is not None:
        run = fixed_seed(seed)(run)
    run()
