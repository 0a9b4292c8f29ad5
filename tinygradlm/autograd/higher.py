"""Gradients as functions: ``gradients`` (the engine's backward, returned rather than stored),
``grad`` (JAX style), Hessian-vector products, and small Jacobians and Hessians.

All of them rest on ``backward(create_graph=True)``: every op's backward is written with Tensor
ops, so a gradient computed with grad mode on is a graph itself, and differentiating it again
gives second derivatives. A Hessian-vector product is then two backward passes,

    H·v = ∇ₓ (∇ₓf(x) · v),

at the cost of about two gradients, without ever forming the n×n Hessian (Pearlmutter, 1994).
See ``docs/higher_order.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .grad_mode import enable_grad, is_grad_enabled
from .tensor import Tensor, backpropagate


def gradients(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Any = None,
    *,
    create_graph: bool = False,
) -> tuple[Tensor, ...]:
    """The vector-Jacobian product Σₖ grad_outputsₖ · ∂outputsₖ/∂inputs, one Tensor per input.

    Like ``torch.autograd.grad``: nothing is written to ``.grad``. ``grad_outputs`` (one per
    output: arrays or Tensors) defaults to ones for single-element outputs. ``inputs`` may be
    leaves or intermediate tensors of the graph; an input that no output depends on gets zeros.
    With ``create_graph=True`` the results carry their own graph (through the inputs and through
    ``grad_outputs`` given as Tensors that require a gradient), so they can be differentiated.

    >>> x = Tensor([1.0, 2.0], requires_grad=True)
    >>> (dx,) = gradients((x * x * x).sum(), x, create_graph=True)
    >>> dx.data                           # 3x²
    array([ 3., 12.], dtype=float32)
    >>> gradients(dx.sum(), x)[0].data    # 6x
    array([ 6., 12.], dtype=float32)
    """
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    ins = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outs)
    elif isinstance(grad_outputs, (Tensor, np.ndarray)):
        grad_outputs = [grad_outputs]
    if len(grad_outputs) != len(outs):
        raise ValueError(f"gradients: {len(grad_outputs)} grad_outputs for {len(outs)} outputs")
    for t in [*outs, *ins]:
        if not isinstance(t, Tensor):
            raise TypeError(f"gradients: outputs and inputs must be Tensors, got a {type(t)}")
    roots, seeds = [], []
    for out, cot in zip(outs, grad_outputs, strict=True):
        if out.requires_grad:  # an output that does not depend on any input adds nothing
            roots.append(out)
            seeds.append(out._seed(cot))
    found = backpropagate(roots, seeds, create_graph=create_graph, inputs=ins)
    return tuple(found.get(id(t), Tensor(np.zeros(t.shape, dtype=t.dtype))) for t in ins)


def grad(
    f: Callable[..., Tensor], argnums: int | Sequence[int] = 0, create_graph: bool | None = None
) -> Callable[..., Any]:
    """The gradient of a scalar-valued ``f`` as a function (``jax.grad``).

    ``grad(f, argnums)(*args)`` is ∂f/∂args[argnums] (a tuple when ``argnums`` is a sequence).
    Arguments may be arrays, Python numbers or Tensors; the result has the argument's kind: an
    ndarray for an array or a number, a Tensor for a Tensor.

    Nesting works: when an argument already takes part in a recorded computation (it requires a
    gradient, as inside an outer ``grad``), the gradient is computed with ``create_graph=True``,
    so the outer ``grad`` can differentiate it. ``create_graph`` forces the choice.

    >>> f = lambda x: (x * x * x).sum()   # x³
    >>> grad(f)(np.array(2.0))            # 3x²
    array(12.)
    >>> grad(grad(f))(np.array(2.0))      # 6x
    array(12.)
    >>> grad(grad(grad(f)))(np.array(2.0))  # 6
    array(6.)
    """
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)

    def gradient(*args: Any) -> Any:
        if any(not -len(args) <= i < len(args) for i in nums):
            raise IndexError(f"grad: argnums {argnums} out of range for {len(args)} arguments")
        xs = list(args)
        nested = is_grad_enabled() and any(
            isinstance(xs[i], Tensor) and xs[i].requires_grad for i in nums
        )
        record = nested if create_graph is None else create_graph
        for i in nums:
            xs[i] = _differentiable(xs[i])
        with enable_grad():
            out = f(*xs)
            if not isinstance(out, Tensor) or out.size != 1:
                raise ValueError(
                    f"grad: f must return a single-element Tensor, got "
                    f"{getattr(out, 'shape', type(out))}; for a vector output use jacobian"
                )
            gs = gradients(out, [xs[i] for i in nums], create_graph=record)
        result = tuple(
            g if isinstance(args[i], Tensor) else np.asarray(g.data)
            for i, g in zip(nums, gs, strict=True)
        )
        return result[0] if isinstance(argnums, int) else result

    return gradient


def hvp(f: Callable[..., Tensor], xs: Any, vs: Any) -> Any:
    """The Hessian-vector product H·v of a scalar ``f`` at ``xs``, by double backward.

    ``xs`` is one array (``f(x)``) or a sequence of arrays (``f(*xs)``, the Hessian then being
    that of all arguments together), and ``vs`` has the same structure and shapes. Returns
    H·v in that structure, as float arrays of the inputs' dtype:

        (H·v)ᵢ = Σⱼ ∂²f/∂xᵢ∂xⱼ · vⱼ = ∂/∂xᵢ (Σⱼ ∂f/∂xⱼ · vⱼ)

    >>> f = lambda x: (x * x * x).sum()   # Hessian diag(6x)
    >>> hvp(f, np.array([1.0, 2.0]), np.array([1.0, 1.0]))
    array([ 6., 12.])
    """
    single = not isinstance(xs, (list, tuple))
    xs_list = [xs] if single else list(xs)
    vs_list = [vs] if single else list(vs)
    if len(xs_list) != len(vs_list):
        raise ValueError(f"hvp: {len(vs_list)} vectors for {len(xs_list)} inputs")
    leaves = [Tensor(np.asarray(x), requires_grad=True) for x in xs_list]
    for x, v in zip(leaves, vs_list, strict=True):
        if np.shape(v) != x.shape:
            raise ValueError(f"hvp: vector of shape {np.shape(v)} for an input of shape {x.shape}")
    with enable_grad():
        out = f(*leaves)
        first = gradients(out, leaves, create_graph=True)
        dot = sum(
            (g * Tensor(np.asarray(v, dtype=g.dtype))).sum()
            for g, v in zip(first, vs_list, strict=True)
        )
        second = gradients(dot, leaves) if dot.requires_grad else first
    hv = [np.asarray(s.data) if dot.requires_grad else np.zeros(s.shape, s.dtype) for s in second]
    return hv[0] if single else hv


def jacobian(f: Callable[..., Tensor], argnum: int = 0) -> Callable[..., np.ndarray]:
    """The Jacobian ∂f/∂args[argnum] as an array of shape f's shape + the argument's shape.

    One backward per output element: for small functions (tests, Hessians of a few
    parameters). Nested Tensors arguments are differentiated through, so
    ``jacobian(grad(f))`` is the Hessian (:func:`hessian`).

    >>> jacobian(lambda x: x * x)(np.array([1.0, 3.0]))
    array([[2., 0.],
           [0., 6.]])
    """

    def jac(*args: Any) -> np.ndarray:
        xs = list(args)
        xs[argnum] = _differentiable(xs[argnum])
        with enable_grad():
            out = f(*xs)
            x = xs[argnum]
            rows = []
            for k in range(out.size):
                onehot = np.zeros(out.size, dtype=out.dtype)
                onehot[k] = 1
                seed = onehot.reshape(out.shape)
                rows.append(gradients(out, x, seed)[0].data.reshape(-1))
        return np.stack(rows).reshape(*out.shape, *x.shape)

    return jac


def hessian(f: Callable[..., Tensor], argnum: int = 0) -> Callable[..., np.ndarray]:
    """The Hessian of a scalar ``f`` with respect to ``args[argnum]``: shape x.shape + x.shape.

    >>> hessian(lambda x: (x[0] * x[1] * x[1]))(np.array([2.0, 3.0]))   # x·y²
    array([[0., 6.],
           [6., 4.]])
    """
    return jacobian(grad(f, argnum, create_graph=True), argnum)


def _differentiable(x: Any) -> Tensor:
    """``x`` as a Tensor that requires a gradient: itself when it already does (so an outer
    differentiation sees through), else a fresh leaf on its data."""
    if isinstance(x, Tensor):
        return x if x.requires_grad else Tensor(x.data, requires_grad=True)
    return Tensor(np.asarray(x), requires_grad=True)
