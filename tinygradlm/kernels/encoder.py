"""Token + position embedding, forward and backward (Numba).

The forward writes wte[idx[b, t]] + wpe[t] in one pass (ref gathers into a temporary, then adds).
The backward scatter-adds dout into dwte: repeated tokens add up, so two threads must never own the
same row of dwte. Splitting the work by token would race; it is split by columns instead (each
thread owns a block of channels of every row of dwte and visits the tokens in order), which adds
in the same order as a serial loop: the result is the same for any number of threads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from ..ref.encoder import check_encoder_forward, check_encoder_into
from . import _checks

COLUMNS_PER_BLOCK = 64  # 256 bytes of float32: a few cache lines per (token, block)


@njit(cache=True, parallel=True)
def _encoder_forward_rows(idx, wte, wpe, out):
    """idx (B, T) int64, wte (Vp, C), wpe (maxT, C) -> out (B, T, C) written."""
    B, T = idx.shape
    C = wte.shape[1]
    for r in prange(B * T):
        b, t = r // T, r % T
        token = idx[b, t]
        for c in range(C):
            out[b, t, c] = wte[token, c] + wpe[t, c]


@njit(cache=True, parallel=True)
def _encoder_backward_scatter(dout, idx, dwte, dwpe):
    """dout (B, T, C); dwte (Vp, C) and dwpe (maxT, C) accumulated into (+=)."""
    B, T, C = dout.shape
    n_blocks = (C + COLUMNS_PER_BLOCK - 1) // COLUMNS_PER_BLOCK
    for block in prange(n_blocks):
        lo, hi = block * COLUMNS_PER_BLOCK, min(C, (block + 1) * COLUMNS_PER_BLOCK)
        for b in range(B):
            for t in range(T):
                token = idx[b, t]
                # in the forward pass this was: out[b, t] = wte[token] + wpe[t], so now
                # both rows receive dout[b, t], summed over every (b, t) that used them
                for c in range(lo, hi):
                    dwte[token, c] += dout[b, t, c]
                    dwpe[t, c] += dout[b, t, c]


def encoder_forward(
    idx: np.ndarray, wte: np.ndarray, wpe: np.ndarray, *, out: np.ndarray | None = None
) -> tuple[np.ndarray, Any]:
    """out (B, T, C) = wte[idx] + wpe[:T] from idx (B, T) integer, wte (Vp, C), wpe (maxT, C).

    cache (idx, wte.shape, wpe.shape, dtype), as ref's. One pass, parallel over positions (Numba).
    """
    out = check_encoder_forward(idx, wte, wpe, out)  # (B, T, C)
    work = _checks.work_buffer(out)
    _encoder_forward_rows(
        np.ascontiguousarray(idx, dtype=np.int64),
        np.ascontiguousarray(wte),
        np.ascontiguousarray(wpe),
        work,
    )
    _checks.copy_back(out, work)
    return out, (idx, wte.shape, wpe.shape, wte.dtype)


def encoder_backward(
    dout: np.ndarray, cache: Any, *, into: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(dwte, dwpe) of :func:`encoder_forward`: dwte (Vp, C) scatter-adds dout by token (repeated
    tokens add up), dwpe (maxT, C) sums dout over the batch (rows >= T get nothing). ``into``: a
    pair of arrays to add into and return instead of new zero arrays, as ref's."""
    idx, wte_shape, wpe_shape, dtype = cache
    B, T = idx.shape
    _checks.upstream("encoder_backward", dout, (B, T, wte_shape[1]), dtype)
    dwte, dwpe = check_encoder_into(into, wte_shape, wpe_shape, dtype)
    # the kernel adds into C-contiguous arrays: a strided one is added into through a copy
    work_wte, work_wpe = np.ascontiguousarray(dwte), np.ascontiguousarray(dwpe)
    _encoder_backward_scatter(
        np.ascontiguousarray(dout), np.ascontiguousarray(idx, dtype=np.int64), work_wte, work_wpe
    )
    _checks.copy_back(dwte, work_wte)
    _checks.copy_back(dwpe, work_wpe)
    return dwte, dwpe
