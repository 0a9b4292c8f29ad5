"""``gradgradcheck``: second derivatives of the autograd engine against finite differences.

Done as ``torch.autograd.gradgradcheck`` does it: the first-order gradient, computed with
``create_graph=True``, is itself a function of the inputs and of the cotangent,

    first_order(x, v) = vᵀ · ∂fn/∂x,

and :func:`gradcheck` is run on that function. Its analytic side is then the engine's double
backward, its numeric side central differences of the first-order gradient, and the checker,
tolerances and report are the ones every other check uses. The numeric side evaluates the
gradient with ``create_graph=False`` (the first-order path, checked by ``gradcheck`` itself), so
an op whose recorded backward computes something else than its first-order one (a forward
value recomputed wrongly) is caught too. Differentiating with respect to v
too checks that the backward is linear in its cotangent and records it as a graph (a backward
that returned a constant would pass a first-order check and fail here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tinygradlm.autograd import Tensor, enable_grad, gradients, is_grad_enabled

from .checks import gradcheck
from .numerical import as_output_tuple, float64_inputs, is_floating
from .report import GradcheckError, GradcheckResult

__all__ = ["gradgradcheck"]


def gradgradcheck(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    grad_outputs: np.ndarray | Sequence[np.ndarray] | None = None,
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
    """Check the engine's second derivatives of ``fn`` (its backward's backward).

    ``fn`` and ``inputs`` are as for :func:`gradcheck`. ``grad_outputs`` is the cotangent v of
    ``fn``'s floating outputs (one array per output, of its shape); by default it is drawn from
    a standard normal with ``seed``. The check runs :func:`gradcheck` on

        (*inputs, *grad_outputs) -> the gradients of vᵀ·fn(inputs) with respect to each
                                    floating input, computed with ``create_graph=True``

    so the report's inputs 0 … n−1 are ``fn``'s and the ones after them are the cotangents.
    Every other argument is :func:`gradcheck`'s and is passed on (``mode="tight"`` included).
    A ``numpy_op`` in ``fn`` cannot be differentiated twice: the check raises the op's
    ``RuntimeError``.

    Example: tanh (second derivative −2·tanh·(1 − tanh²)) and a layer-norm-like composition,
    both with respect to the inputs and to the cotangent.

        >>> import numpy as np
        >>> x = np.array([0.3, -1.2, 2.0])
        >>> bool(gradgradcheck(lambda t: t.tanh(), [x]))
        True
        >>> bool(gradgradcheck(lambda t: (t - t.mean()) / (t.var() + 1e-5).sqrt(), [x]))
        True
    """
    __tracebackhide__ = True
    arrays = float64_inputs([x.data if isinstance(x, Tensor) else x for x in inputs])
    n = len(arrays)
    checked_inputs = [i for i, x in enumerate(arrays) if is_floating(x)]
    with enable_grad():
        outs = _outputs(fn(*[Tensor(x) if isinstance(x, np.ndarray) else x for x in arrays]))
    checked_outputs = [k for k, o in enumerate(outs) if o.dtype.kind == "f"]
    cotangents = _cotangents(grad_outputs, [outs[k] for k in checked_outputs], seed)

    def first_order(*args: Any) -> tuple[Tensor, ...]:
        # gradcheck evaluates under no_grad (the numeric side) and differentiates with grad mode
        # on (the analytic side): record the backward only for the latter
        record = is_grad_enabled()
        xs, vs = list(args[:n]), args[n:]
        with enable_grad():
            for i in checked_inputs:
                xs[i] = xs[i] if xs[i].requires_grad else Tensor(xs[i].data, requires_grad=True)
            ys = _outputs(fn(*xs))
            return gradients(
                [ys[k] for k in checked_outputs],
                [xs[i] for i in checked_inputs],
                list(vs),
                create_graph=record,
            )

    result = gradcheck(
        first_order,
        [*arrays, *cotangents],
        eps=eps,
        atol=atol,
        rtol=rtol,
        mode=mode,
        seed=seed,
        raise_exception=False,
        check_kinks=check_kinks,
        projections=projections,
        nondet_tol=nondet_tol,
        check_properties=check_properties,
    )
    result.checker = "gradgradcheck"
    result.notes.insert(
        0,
        f"checked: gradcheck of (inputs, cotangents) -> vᵀ·∂fn/∂inputs; {_span(0, n)} of fn, "
        f"{_span(n, n + len(cotangents))} the cotangent(s) v of its floating outputs",
    )
    if raise_exception and not result.ok:
        raise GradcheckError(result)
    return result


def _span(start: int, stop: int) -> str:
    """How the report names inputs start … stop−1."""
    return f"input {start}" if stop - start == 1 else f"inputs {start}-{stop - 1}"


def _outputs(out: Any) -> tuple[Tensor, ...]:
    outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    for k, o in enumerate(outs):
        if not isinstance(o, Tensor):
            raise TypeError(
                f"gradgradcheck: fn must return a Tensor or a tuple of Tensors; output {k} is a "
                f"{type(o).__name__}"
            )
    return outs


def _cotangents(given: Any, outs: list[Tensor], seed: int) -> list[np.ndarray]:
    """The cotangent of each floating output: ``given`` (checked) or standard normal draws."""
    if given is None:
        rng = np.random.default_rng(seed)
        return [rng.normal(size=o.shape) for o in outs]
    cots = [np.asarray(c, dtype=np.float64) for c in as_output_tuple(given)]
    shapes = [o.shape for o in outs]
    if [c.shape for c in cots] != shapes:
        raise ValueError(
            f"gradgradcheck: grad_outputs of shapes {[c.shape for c in cots]} do not match the "
            f"floating outputs of fn, of shapes {shapes}"
        )
    return cots
