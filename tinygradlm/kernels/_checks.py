"""Input checks for the kernels' Python wrappers.

The kernels check their arguments exactly as ``tinygradlm.ref`` does, before any jitted code runs:
each forward calls its ref layer's own check (``check_encoder_forward`` in ``ref/encoder.py``, and
so on: one place for each check and its messages) and each backward ref's ``upstream``, so a wrong
shape, dtype or index raises an error naming the function and the argument, never a crash or a
garbage read inside a Numba loop (which does no bounds checking). The two helpers here are the
kernels' own: a jitted loop writes through a flat or (rows, C) view, which is only a view of a
C-contiguous ``out``.
"""

from __future__ import annotations

import numpy as np

from ..ref.checks import upstream

__all__ = ["copy_back", "upstream", "work_buffer"]


def work_buffer(out: np.ndarray) -> np.ndarray:
    """Where a kernel writes ``out``: ``out`` itself when C-contiguous, else a temporary that
    :func:`copy_back` copies into it."""
    return out if out.flags.c_contiguous else np.empty(out.shape, dtype=out.dtype)


def copy_back(out: np.ndarray, work: np.ndarray) -> None:
    """Finish :func:`work_buffer`: copy the kernel's result into a non-contiguous ``out``."""
    if work is not out:
        out[...] = work
