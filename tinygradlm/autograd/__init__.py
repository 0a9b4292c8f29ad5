"""A reverse-mode autograd engine on NumPy.

``Tensor`` records the operations applied to it; ``Tensor.backward`` accumulates gradients into
the leaves. Every op's backward is written with Tensor ops, so ``backward(create_graph=True)``
gives gradients that can be differentiated again; ``gradients``, ``grad``, ``hvp``,
``jacobian`` and ``hessian`` build on that. See ``docs/autograd.md`` for how the graph, the
topological order and broadcasting work, and ``docs/higher_order.md`` for higher derivatives.
"""

from .functional import (
    concatenate,
    cross_entropy,
    dropout,
    embedding,
    layer_norm,
    log_softmax,
    masked_fill,
    softmax,
    split,
    stack,
    where,
)
from .grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .higher import grad, gradients, hessian, hvp, jacobian
from .numpy_op import numpy_op
from .shapes import unbroadcast
from .tensor import Tensor, matmul, scatter_add

__all__ = [
    "Tensor",
    "concatenate",
    "cross_entropy",
    "dropout",
    "embedding",
    "enable_grad",
    "grad",
    "gradients",
    "hessian",
    "hvp",
    "is_grad_enabled",
    "jacobian",
    "layer_norm",
    "log_softmax",
    "masked_fill",
    "matmul",
    "no_grad",
    "numpy_op",
    "scatter_add",
    "set_grad_enabled",
    "softmax",
    "split",
    "stack",
    "unbroadcast",
    "where",
]
