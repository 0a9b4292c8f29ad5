"""Check gradients against finite differences: for the engine, the hand-derived layers, and yours.

- :func:`gradcheck` checks a function on autograd Tensors (the engine's ``.backward``).
- :func:`check_vjp` checks a hand-written NumPy ``forward``/``backward`` pair (your kernel).
- :func:`gradgradcheck` checks second derivatives: the engine's ``backward(create_graph=True)``
  against finite differences of the first-order gradient.
- :func:`check_layer` holds your implementation of a GPT-2 layer (forward and backward) to the
  reference in :mod:`tinygradlm.ref` over hypothesis-drawn shapes and values, with
  FlashAttention's precision rule, and prints a shrunk reproducer when it fails.
- :func:`numerical_jacobian` and :func:`numerical_vjp` are the float64 central differences
  underneath, for use on their own.
- :class:`GradcheckResult` is what a check found; :class:`GradcheckError` (an ``AssertionError``)
  carries it when a check fails, so a failing check reads as a pytest failure message.

``gradcheck`` and ``check_vjp`` run in four modes (``"auto"``, ``"fast"``, ``"full"``, and
``"tight"``, which catches errors of about 1e-9 of the gradient) and also check the backward's
properties: reentrant, linear in the cotangent, independent of memory layout and aliasing
(docs/autograd.md, "Checking gradients"; what each mode guarantees is in docs/verification.md).

Hypothesis strategies for well-conditioned test inputs live in :mod:`tinygradlm.testing.strategies`
(imported separately: only it needs hypothesis).

Example:
    >>> import numpy as np
    >>> from tinygradlm.testing import check_vjp
    >>> def square_forward(x):
    ...     return x * x, x
    >>> def square_backward(dout, x):
    ...     return 2 * x * dout
    >>> bool(check_vjp(square_forward, square_backward, [np.array([1.0, -2.0, 3.0])]))
    True
"""

from .checker import DEFAULT_TOLERANCES, Tolerances
from .checks import check_vjp, gradcheck
from .gradgrad import gradgradcheck
from .layers import check_layer
from .numerical import numerical_jacobian, numerical_vjp
from .report import GradcheckError, GradcheckResult, Kink, PairResult

# shown in pytest failures as tinygradlm.testing.GradcheckError, the name users import
GradcheckError.__module__ = __name__

__all__ = [
    "DEFAULT_TOLERANCES",
    "GradcheckError",
    "GradcheckResult",
    "Kink",
    "PairResult",
    "Tolerances",
    "check_layer",
    "check_vjp",
    "gradcheck",
    "gradgradcheck",
    "numerical_jacobian",
    "numerical_vjp",
]
