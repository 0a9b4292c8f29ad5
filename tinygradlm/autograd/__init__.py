"""A reverse-mode autograd engine on NumPy.

``Tensor`` records the operations applied to it; ``Tensor.backward`` accumulates gradients into
the leaves. See ``docs/autograd.md`` for how the graph, the topological order and broadcasting
work.
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
from .grad_mode import is_grad_enabled, no_grad
from .numpy_op import numpy_op
from .shapes import unbroadcast
from .tensor import Tensor, matmul

__all__ = [
    "Tensor",
    "concatenate",
    "cross_entropy",
    "dropout",
    "embedding",
    "is_grad_enabled",
    "layer_norm",
    "log_softmax",
    "masked_fill",
    "matmul",
    "no_grad",
    "numpy_op",
    "softmax",
    "split",
    "stack",
    "unbroadcast",
    "where",
]
