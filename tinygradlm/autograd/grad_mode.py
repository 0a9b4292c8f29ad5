"""Grad mode: whether operations record the graph (per thread); ``no_grad`` to stop them,
``enable_grad`` and ``set_grad_enabled`` to choose."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

_state = threading.local()


def is_grad_enabled() -> bool:
    """True unless inside :func:`no_grad` (per thread)."""
    return getattr(_state, "grad_enabled", True)


@contextmanager
def set_grad_enabled(enabled: bool) -> Iterator[None]:
    """Context manager in which operations record the graph exactly when ``enabled`` is true.

    The engine's backward runs under it: off for a first-order backward, on for
    ``backward(create_graph=True)``, whose gradients are then graphs themselves.
    """
    previous = is_grad_enabled()
    _state.grad_enabled = bool(enabled)
    try:
        yield
    finally:
        _state.grad_enabled = previous


def no_grad() -> AbstractContextManager[None]:
    """Context manager (also usable as a decorator) in which operations record no graph."""
    return set_grad_enabled(False)


def enable_grad() -> AbstractContextManager[None]:
    """Context manager (also a decorator) in which operations record the graph, even inside
    :func:`no_grad`: a function that differentiates, called from code that does not."""
    return set_grad_enabled(True)
