"""``gradcheck`` and ``check_vjp``: compare a backward pass with finite differences.

Both reduce the function under check to the same two NumPy callables and share one checker
(:mod:`.checker`):

- ``evaluate(*inputs) -> outputs``, for the numeric side (central differences in float64), and
- ``pullback(output_index, cotangent) -> grads``, one backward pass (a vector-Jacobian product).

``gradcheck`` builds them from a function on autograd Tensors; ``check_vjp`` from a hand-written
NumPy forward/backward pair. Four modes:

- ``"full"``: the whole Jacobian of each output with respect to each input, analytic (one backward
  per output element, with a one-hot cotangent) against numeric (two evaluations per input
  element), entry by entry within atol + rtol·|numeric|. Slow for large inputs, but the report
  names every wrong element.
- ``"fast"``: K = ``projections`` (default 2) random projections vᵀJu per (input, output) pair
  (:mod:`.projections`): one backward per output with a cotangent v, dotted with K directions u,
  against directional derivatives extrapolated from steps h and 2h (four evaluations per
  direction). The allowed difference is the finite difference's own error estimate plus
  ``atol``, not a fraction of vᵀJu, so the check does not weaken with size: every entry of u and
  v is ±[1/2, 1], and an error in one element of vᵀJ (one wrong Jacobian entry, or a whole
  column) larger than the threshold the report states (4× the allowed difference) fails with
  certainty; errors spread over many elements are missed with probability below 40⁻ᴷ once one
  of them is 100× the threshold.
- ``"auto"`` (the default): fast first, and on failure full where the Jacobians have at most
  2²² entries, else a bisection of the input's elements with the same projections, so a failing
  report names a wrong element.
- ``"tight"``: every element of vᵀJ for a random v against a finite difference extrapolated from
  steps h, 2h and 4h (h = 2⁻¹⁰; six evaluations per input element, :mod:`.tight`), within that
  difference's estimated truncation and rounding error. In float64 it sees relative errors of
  1e-6 and far below on smooth functions, and states the threshold per pair.

Every mode then checks the backward's properties (:mod:`.properties`; ``check_properties=False``
skips them): the same grads when run twice (bitwise, or within ``nondet_tol``), linearity in
dout, the same grads for non-contiguous and (as passed) aliased inputs, and no gradient through
constant infinite outputs, which the value checks compare as constants.

The module runs past 400 lines mostly in the two entry points' docstrings: they are the manual
a user reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .checker import aborted_result, check_mode, cotangents_for, run_check
from .numerical import as_output_tuple, float64_inputs, is_floating, resolve_argnums
from .report import GradcheckResult
from .target import CheckAborted, CheckTarget

__all__ = ["check_vjp", "gradcheck"]


# --------------------------------------------------------------------------------------------
# check_vjp: a NumPy forward/backward pair
# --------------------------------------------------------------------------------------------


def _snapshot(obj: Any) -> Any:
    """A copy of every ndarray inside tuples, lists and dicts (other objects kept as they are)."""
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, (tuple, list)):
        return type(obj)(_snapshot(x) for x in obj)
    if isinstance(obj, dict):
        return {k: _snapshot(x) for k, x in obj.items()}
    return obj


def _unchanged(before: Any, after: Any) -> bool:
    if isinstance(before, np.ndarray):
        return (
            isinstance(after, np.ndarray)
            and before.shape == after.shape
            and bool(np.array_equal(before, after, equal_nan=before.dtype.kind in "fc"))
        )
    if isinstance(before, (tuple, list)):
        return len(before) == len(after) and all(map(_unchanged, before, after))
    if isinstance(before, dict):
        return before.keys() == after.keys() and all(
            _unchanged(before[k], after[k]) for k in before
        )
    return True


def _grads_for_argnums(grads: Any, n_inputs: int, argnums: tuple[int, ...]) -> list[Any]:
    """Accept one grad per input or one per checked input; a bare array for a single input."""
    if not isinstance(grads, (tuple, list)):
        if len(argnums) != 1:
            raise CheckAborted(
                f"backward returned a single {type(grads).__name__}, but {len(argnums)} inputs "
                f"are checked ({', '.join(map(str, argnums))}): return a tuple of grads"
            )
        return [grads]
    if len(grads) == n_inputs:
        return [grads[i] for i in argnums]
    if len(grads) == len(argnums):
        return list(grads)
    raise CheckAborted(
        f"backward returned {len(grads)} grads; expected one per input ({n_inputs}) or one per "
        f"checked input ({len(argnums)}: inputs {', '.join(map(str, argnums))})"
    )


def alias_groups(inputs: Sequence[Any], argnums: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """The checked input positions the caller passed as one array (the same memory, shape,
    strides and dtype), in groups of two or more."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i in argnums:
        x = inputs[i]
        if isinstance(x, np.ndarray) and x.size:
            key = (x.__array_interface__["data"][0], x.shape, x.strides, x.dtype.str)
            groups.setdefault(key, []).append(i)
    return tuple(tuple(g) for g in groups.values() if len(g) > 1)


def check_vjp(
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    inputs: Sequence[Any],
    *,
    cache: bool = True,
    argnums: int | Sequence[int] | None = None,
    cotangent: np.ndarray | Sequence[np.ndarray] | None = None,
    eps: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    mode: str = "auto",
    seed: int = 0,
    raise_exception: bool = True,
    check_kinks: bool = False,
    projections: int = 2,
    nondet_tol: float = 0.0,
    check_properties: bool = True,
) -> GradcheckResult:
    """Check a hand-written NumPy backward against finite differences of its forward.

    The convention of the project's hand-derived layers (``cache=True``)::

        out, cache = forward(*inputs)
        grads = backward(dout, cache)      # one grad per input, or per checked input

    and with ``cache=False``::

        out = forward(*inputs)
        grads = backward(dout, *inputs)

    ``out`` may be a tuple of arrays; ``dout`` is then a tuple of the same shapes. A bare array
    is accepted for ``grads`` when one input is checked, and ``None`` for an input the output does
    not depend on. Floating inputs are checked (or those in ``argnums``); integer inputs (indices)
    are passed through unchanged. The check runs on float64 copies of the inputs: the caller's
    arrays are never modified.

    Besides the values, the check fails when a grad's shape differs from its input's (the classic
    broadcast-not-reduced bug) and when ``backward`` modifies ``dout``, the cache or the inputs in
    place.

    Given a ``cotangent`` (a ``dout``; a tuple for several outputs), the check compares
    ``backward(cotangent, ...)`` with :func:`numerical_vjp`, element by element of each input's
    grad: the product a training step computes, for one backward per output and two evaluations
    per input element (``mode`` is then ``"vjp"`` and the argument is ignored).

    Modes (see the module docstring): ``"full"`` compares whole Jacobians (one backward per output
    element); ``"fast"`` ``projections`` random projections vᵀJu per pair (seeded by ``seed``),
    within their finite-difference error estimate, sure to see one wrong element of vᵀJ above
    the threshold the report states, at any size; ``"auto"`` fast, then full on failure so the
    report names elements; ``"tight"`` every element of vᵀJ against an extrapolated difference
    within its own error estimate (``atol`` and ``rtol`` default to 0 there), for errors of 1e-6
    relative and below. A ``cotangent`` in tight mode is used as v. A given ``eps`` is the step
    of every mode (rounded down to a power of two in fast and tight mode; their defaults are
    2⁻¹⁴, and 2⁻¹⁰ times each element's magnitude).

    Then the backward's properties (``check_properties=False`` skips them): run twice on the same
    cotangent it must give the same grads, bitwise or within ``nondet_tol``; it must be linear in
    dout; rerun on inputs and dout that are not C-contiguous (stored transposed, with gaps) it
    must give the same outputs and grads, and likewise where the caller passed one array at two
    positions. Outputs with constant infinite entries (a causal mask's -inf) are compared on
    their finite entries, and a cotangent on the infinite ones alone must give zero grads.

    Default tolerances, chosen by the dtype ``forward`` computes in (the dtype of ``out``); an
    entry passes when |analytic − numeric| ≤ atol + rtol·|numeric|:

    ========  ======  ======  ======
    computes  eps     atol    rtol
    ========  ======  ======  ======
    float64   1e-6    1e-5    1e-3
    float32   1e-3    1e-2    1e-2
    ========  ======  ======  ======

    A ``forward`` that computes in float32 but returns float64 cannot be told apart from a
    float64 one: pass the float32 row's values yourself.

    With ``check_kinks=True`` an entry where the one-sided differences disagree (relu or abs at
    0, a tie in max) is accepted when the analytic value lies between them (a subgradient), and
    listed as a kink in the report instead of failing; where several kinks meet in one output
    element (a tie), their gradients together must also match the derivative along the
    direction that moves them all at once (so the tied maxima cannot each take the full
    gradient).

    Returns a :class:`GradcheckResult` (truthy when the check passed); on failure raises
    :class:`GradcheckError` (an ``AssertionError``) carrying it, unless ``raise_exception=False``.

    Example: a linear layer, and the same layer with the bias gradient left unreduced.

        >>> import numpy as np
        >>> def linear_forward(x, w, b):
        ...     return x @ w + b, (x, w)
        >>> def linear_backward(dout, cache):
        ...     x, w = cache
        ...     return dout @ w.T, x.T @ dout, dout.sum(axis=0)
        >>> rng = np.random.default_rng(0)
        >>> x, w, b = rng.normal(size=(3, 4)), rng.normal(size=(4, 2)), rng.normal(size=2)
        >>> bool(check_vjp(linear_forward, linear_backward, [x, w, b]))
        True
        >>> def buggy_backward(dout, cache):
        ...     x, w = cache
        ...     return dout @ w.T, x.T @ dout, dout
        >>> result = check_vjp(linear_forward, buggy_backward, [x, w, b], raise_exception=False)
        >>> result.ok
        False
        >>> print(result)  # doctest: +ELLIPSIS
        check_vjp failed (mode=fast, eps=1e-06, atol=1e-05, rtol=0.001)
          backward returned grad of shape (3, 2) for input 2 of shape (2,) (broadcast not reduced?)
          2 input/output pair(s) within tolerance (max abs err ...)
    """
    __tracebackhide__ = True
    check_mode(mode)
    xs = float64_inputs(inputs)
    nums = resolve_argnums(xs, argnums)
    problems: list[str] = []

    def evaluate(*args: Any) -> tuple[np.ndarray, ...]:
        return as_output_tuple(forward(*args)[0] if cache else forward(*args))

    inputs_before = _snapshot(xs)
    raw = forward(*xs)
    raw_out, state_cache = (raw[0], raw[1]) if cache else (raw, None)
    if not _unchanged(inputs_before, xs):
        problems.append("forward modified its inputs in place")
        xs = float64_inputs(inputs)
    single_output = not isinstance(raw_out, (tuple, list))
    outputs = as_output_tuple(raw_out)
    dtypes = tuple(np.asarray(o).dtype for o in (raw_out if not single_output else (raw_out,)))
    cache_before = _snapshot(state_cache)
    fresh_cache_each_call = False

    def pullback(output_index: int, cot: np.ndarray) -> list[Any]:
        nonlocal fresh_cache_each_call
        douts = [np.zeros(o.shape, dtype=dt) for o, dt in zip(outputs, dtypes, strict=True)]
        douts[output_index] = cot.astype(dtypes[output_index])
        dout = douts[0] if single_output else tuple(douts)
        dout_before = _snapshot(dout)
        args_before = _snapshot(xs)
        if cache:
            c = forward(*float64_inputs(xs))[1] if fresh_cache_each_call else state_cache
            grads = backward(dout, c)
            if not fresh_cache_each_call and not _unchanged(cache_before, state_cache):
                # Later calls get a fresh cache (from copies: the cache may hold the inputs
                # themselves), so the values are still checked.
                problems.append("backward modified the cache in place")
                fresh_cache_each_call = True
                xs[:] = float64_inputs(inputs)
        else:
            grads = backward(dout, *xs)
            if not _unchanged(args_before, xs):
                problems.append("backward modified its inputs in place")
                xs[:] = float64_inputs(inputs)
        if not _unchanged(dout_before, dout) and "backward modified dout in place" not in problems:
            problems.append("backward modified dout in place")
        return _grads_for_argnums(grads, len(xs), nums)

    def rerun(args: list[Any], output_index: int, cot: np.ndarray) -> tuple[Any, list[Any]]:
        raw = forward(*args)
        out, rerun_cache = (raw[0], raw[1]) if cache else (raw, None)
        douts = [np.zeros(o.shape, dtype=dt) for o, dt in zip(outputs, dtypes, strict=True)]
        douts[output_index] = cot.astype(dtypes[output_index], copy=False)  # keeps its layout
        dout = douts[0] if single_output else tuple(douts)
        grads = backward(dout, rerun_cache) if cache else backward(dout, *args)
        return as_output_tuple(out), _grads_for_argnums(grads, len(args), nums)

    target = CheckTarget(
        checker="check_vjp",
        evaluate=evaluate,
        pullback=pullback,
        inputs=xs,
        argnums=nums,
        outputs=outputs,
        checked_outputs=tuple(range(len(outputs))),
        problems=problems,
        low_precision=next(
            (f"forward returns {d}" for d in dtypes if d.kind == "f" and d != np.float64), None
        ),
        rerun=rerun,
        alias_groups=alias_groups(inputs, nums),
    )
    try:
        return run_check(
            target,
            eps=eps,
            atol=atol,
            rtol=rtol,
            mode=mode,
            seed=seed,
            raise_exception=raise_exception,
            check_kinks=check_kinks,
            notes=[],
            cotangents=None if cotangent is None else cotangents_for(cotangent, outputs),
            projections=projections,
            nondet_tol=nondet_tol,
            check_properties=check_properties,
        )
    except CheckAborted as e:
        return aborted_result("check_vjp", str(e), raise_exception)


# --------------------------------------------------------------------------------------------
# gradcheck: a function on autograd Tensors
# --------------------------------------------------------------------------------------------


def _low_precision_in_graph(outputs: list[Any]) -> str | None:
    """Why float32 tolerances apply: an output, or a tensor on the way to it, that is narrower
    than float64 (``fn`` casts inside, as in ``x.float().double()``), or None.

    Walks the graph the engine recorded, through ``Tensor.parents``.
    """
    for k, out in enumerate(outputs):
        if out.dtype != np.float64:
            return f"output {k} is {out.dtype}"
    seen: set[int] = set()
    stack = list(outputs)
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.dtype.kind == "f" and node.dtype != np.float64:
            return f"fn computes in {node.dtype} inside (a {node.dtype} tensor is in its graph)"
        stack.extend(node.parents)
    return None


def gradcheck(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    *,
    eps: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    mode: str = "auto",
    seed: int = 0,
    raise_exception: bool = True,
    check_kinks: bool = False,
    projections: int = 2,
    nondet_tol: float = 0.0,
    check_properties: bool = True,
) -> GradcheckResult:
    """Check the autograd engine's gradients of ``fn`` against finite differences.

    ``fn`` maps Tensors to a Tensor or a tuple of Tensors. ``inputs`` are NumPy arrays, Tensors
    or Python scalars: floating ones are checked, as float64 Tensors with ``requires_grad=True``
    (the engine keeps float64 end to end); integer ones (indices) are passed as integer Tensors and
    not checked; scalars are passed as they are. Analytic gradients come from ``.backward(grad)``
    on a freshly built graph; numeric ones are central differences in float64.

    Modes: ``"full"`` compares whole Jacobians (one backward per output element, two evaluations
    of ``fn`` per input element); ``"fast"`` compares ``projections`` random projections vᵀJu
    per (input, output) pair within their finite-difference error estimate (one backward per
    output, four evaluations per projection; u and v drawn from ``seed``), for large inputs;
    ``"auto"`` runs fast, then full on failure so the report names the wrong elements;
    ``"tight"`` compares every element of vᵀJ with an extrapolated difference within its own
    error estimate. ``nondet_tol`` and ``check_properties`` as in :func:`check_vjp` (an input
    passed twice is one leaf there, whose grad is the sum).

    Default tolerances, chosen by the dtype ``fn`` computes in (the dtype of its outputs); an
    entry passes when |analytic − numeric| ≤ atol + rtol·|numeric|:

    ========  ======  ======  ======  ==============================================
    computes  eps     atol    rtol
    ========  ======  ======  ======  ==============================================
    float64   1e-6    1e-5    1e-3    as torch.autograd.gradcheck
    float32   1e-3    1e-2    1e-2    ``fn`` casts to float32 inside; a loose check
    ========  ======  ======  ======  ==============================================

    With ``check_kinks=True`` an entry where the one-sided differences disagree (relu or abs at
    0, a tie in max) is accepted when the analytic value lies between them (a subgradient), and
    listed as a kink in the report instead of failing. In fast mode a failing projection is then
    redone in full mode, which is where kinks are found.

    Returns a :class:`GradcheckResult` (truthy when the check passed); on failure raises
    :class:`GradcheckError` (an ``AssertionError``) carrying it, unless ``raise_exception=False``.

    Example:
        >>> import numpy as np
        >>> from tinygradlm.autograd import Tensor
        >>> x = np.array([[0.5, -1.0], [2.0, 0.3]])
        >>> w = np.array([1.5, -0.5])
        >>> result = gradcheck(lambda x, w: ((x @ w).tanh() * 2.0).sum(), [x, w], mode="full")
        >>> result.ok
        True
        >>> idx = np.array([1, 1, 0])  # integer: passed through, not checked
        >>> bool(gradcheck(lambda idx, x: (x[idx] * x[idx]).sum(), [idx, x]))
        True
    """
    __tracebackhide__ = True
    from tinygradlm.autograd import Tensor, no_grad

    check_mode(mode)
    arrays = [x.data if isinstance(x, Tensor) else x for x in inputs]
    xs = float64_inputs(arrays)
    nums = resolve_argnums(xs, None)

    def wrap(x: Any) -> Any:
        return Tensor(x) if isinstance(x, np.ndarray) else x

    def outputs_of(out: Any) -> tuple[Any, ...]:
        outs = out if isinstance(out, (tuple, list)) else (out,)
        for k, o in enumerate(outs):
            if not isinstance(o, Tensor):
                raise TypeError(
                    f"gradcheck: fn must return a Tensor or a tuple of Tensors; output {k} is a "
                    f"{type(o).__name__}"
                )
        return tuple(outs)

    def evaluate(*args: Any) -> tuple[np.ndarray, ...]:
        with no_grad():
            return as_output_tuple([o.data for o in outputs_of(fn(*map(wrap, args)))])

    def leaves_at(arrays: list[Any]) -> list[Any]:
        return [
            Tensor(x.copy(), requires_grad=True) if i in nums else wrap(x)
            for i, x in enumerate(arrays)
        ]

    def pullback(output_index: int, cot: np.ndarray) -> list[Any]:
        leaves = leaves_at(xs)
        out = outputs_of(fn(*leaves))[output_index]
        if out.requires_grad:  # otherwise no checked input reaches this output
            out.backward(cot.astype(out.dtype))
        return [leaves[i].grad for i in nums]

    def rerun(args: list[Any], output_index: int, cot: np.ndarray) -> tuple[Any, list[Any]]:
        made: dict[int, Any] = {}  # one leaf per array object: aliased positions share it
        leaves = [
            made.setdefault(id(x), Tensor(x, requires_grad=True)) if i in nums else wrap(x)
            for i, x in enumerate(args)
        ]
        outs = outputs_of(fn(*leaves))
        if outs[output_index].requires_grad:
            outs[output_index].backward(cot.astype(outs[output_index].dtype, copy=False))
        return as_output_tuple([o.data for o in outs]), [leaves[i].grad for i in nums]

    raw = outputs_of(fn(*leaves_at(xs)))
    dtypes = tuple(o.dtype for o in raw)
    checked_outputs = tuple(k for k, d in enumerate(dtypes) if is_floating(np.empty(0, d)))
    low_precision = _low_precision_in_graph([raw[k] for k in checked_outputs])
    notes = [
        f"output {k} ({dtypes[k]}) is not floating: not checked"
        for k in range(len(raw))
        if k not in checked_outputs
    ]
    target = CheckTarget(
        checker="gradcheck",
        evaluate=evaluate,
        pullback=pullback,
        inputs=xs,
        argnums=nums,
        outputs=as_output_tuple([o.data for o in raw]),
        checked_outputs=checked_outputs,
        problems=[],
        low_precision=low_precision,
        rerun=rerun,
        alias_groups=alias_groups(arrays, nums),
        aliased_grads_add=True,
    )
    return run_check(
        target,
        eps=eps,
        atol=atol,
        rtol=rtol,
        mode=mode,
        seed=seed,
        raise_exception=raise_exception,
        check_kinks=check_kinks,
        notes=notes,
        projections=projections,
        nondet_tol=nondet_tol,
        check_properties=check_properties,
    )
