"""Which implementation of the layers runs: the NumPy reference or the Numba kernels.

Both modules export the same functions with the same signatures (``tinygradlm.ref`` and
``tinygradlm.kernels``; the kernels module re-exports the reference where Numba would not help,
e.g. ``linear_forward``, whose work is a BLAS matmul either way). The choice is read once from the
``TINYGRADLM_KERNELS`` environment variable (``numpy`` or ``numba``; default ``numba``) and can be
changed at run time with :func:`set_kernels` or, for a block, :func:`use_kernels`.

    >>> from tinygradlm import backend
    >>> with backend.use_kernels("numpy"):
    ...     layers = backend.layers()     # tinygradlm.ref
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

KERNELS = {"numpy": "tinygradlm.ref", "numba": "tinygradlm.kernels"}
ENV_VAR = "TINYGRADLM_KERNELS"


def _validated(name: str) -> str:
    key = name.strip().lower()
    if key not in KERNELS:
        raise ValueError(f"unknown kernels {name!r}: choose one of {', '.join(sorted(KERNELS))}")
    return key


_active = _validated(os.environ.get(ENV_VAR, "numba") or "numba")


def kernels_name() -> str:
    """The active implementation: ``"numpy"`` or ``"numba"``."""
    return _active


def set_kernels(name: str) -> None:
    """Switch every later layer call to ``name`` (``"numpy"`` or ``"numba"``)."""
    global _active
    _active = _validated(name)


@contextmanager
def use_kernels(name: str) -> Iterator[ModuleType]:
    """Use ``name`` inside a ``with`` block, then restore the previous choice."""
    previous = _active
    set_kernels(name)
    try:
        yield layers()
    finally:
        set_kernels(previous)


def layers(name: str | None = None) -> ModuleType:
    """The module of layer functions for ``name`` (default: the active one)."""
    return importlib.import_module(KERNELS[_validated(name or _active)])
