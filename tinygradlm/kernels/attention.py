"""Causal self-attention, forward and backward: BLAS matmuls around a fused Numba softmax.

The batched matmuls (q·kᵀ and att·v forward; dout·vᵀ, attᵀ·dout, dscores·k, dscoresᵀ·q
backward) are ``np.matmul`` on (B, NH, T, HS) views of qkv, as in ref, except that they skip the
blocks of the (T, T) matrices above the diagonal, where the mask leaves only zeros: with the
positions split into four runs, 6 of the 16 blocks (see :func:`_causal_blocks`). What Numba
fuses is everything between the matmuls, one row of the (T, T) score matrix at a time while it
sits in L1 cache:

- forward: scale by 1/sqrt(HS), causal mask, stable softmax (max, exp, sum, normalize): ref does
  this in about six passes over the whole (B, NH, T, T) array, each with a temporary;
- backward: the softmax Jacobian-vector shortcut datt_pre = att·(datt − Σ datt·att) and the scale,
  in place on the datt buffer the matmul just produced.

Row t only touches columns 0..t: the masked upper triangle is never exponentiated nor read, just
written with exact zeros (probabilities and gradients). Row sums accumulate in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from ..ref.attention import check_attention_forward
from . import _checks
from ._parts import part_threads, run_parts
from ._vecmath import exp_shifted_and_sum, row_dot, row_max


@njit(inline="always")
def _softmax_row(att, r, scale):
    """Row r of att (BH, T, T) in place: q·kᵀ scores in, softmax(mask(scores·scale)) out."""
    T = att.shape[1]
    zero, one = att.dtype.type(0.0), att.dtype.type(1.0)
    row = att[r // T, r % T]
    n = r % T + 1  # position t sees 0..t
    # scale > 0, so max(scores·scale) = max(scores)·scale
    m = row_max(row, n) * scale
    total = exp_shifted_and_sum(row, n, m, scale, row)
    inv = one / att.dtype.type(total)
    for j in range(n):
        row[j] *= inv
    for j in range(n, T):
        row[j] = zero  # masked: exactly zero probability


@njit(inline="always")
def _softmax_backward_row(datt, att, r, scale):
    """Row r of datt (BH, T, T) in place: d(att) in, d(scores) out (scores = q·kᵀ before the
    scale)."""
    T = datt.shape[1]
    zero = datt.dtype.type(0.0)
    b, t = r // T, r % T
    d_row, a_row = datt[b, t], att[b, t]
    n = t + 1
    d = datt.dtype.type(row_dot(d_row, a_row, n))
    # same as ref.attention_backward: datt_pre = att·(datt − Σ_j datt·att), times the scale
    for j in range(n):
        d_row[j] = a_row[j] * (d_row[j] - d) * scale
    for j in range(n, T):
        d_row[j] = zero  # masked positions: exactly zero gradient


@njit(cache=True, parallel=True)
def _causal_softmax_rows(att, scale):
    """In place on att (BH, T, T), every row, on Numba's threads."""
    for r in prange(att.shape[0] * att.shape[1]):
        _softmax_row(att, r, scale)


@njit(cache=True, nogil=True)
def _causal_softmax_rows_serial(att, scale):
    """:func:`_causal_softmax_rows` on the calling thread, without the GIL (for a part of the
    batch run by ``_parts.run_parts``): the same row code, the same bits."""
    for r in range(att.shape[0] * att.shape[1]):
        _softmax_row(att, r, scale)


@njit(cache=True, parallel=True)
def _causal_softmax_backward_rows(datt, att, scale):
    """In place on datt (BH, T, T), every row, on Numba's threads."""
    for r in prange(datt.shape[0] * datt.shape[1]):
        _softmax_backward_row(datt, att, r, scale)


@njit(cache=True, nogil=True)
def _causal_softmax_backward_rows_serial(datt, att, scale):
    """:func:`_causal_softmax_backward_rows` on the calling thread, without the GIL."""
    for r in range(datt.shape[0] * datt.shape[1]):
        _softmax_backward_row(datt, att, r, scale)


def _heads(qkv: np.ndarray, n_head: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """q, k, v as (B, NH, T, HS) views of qkv (B, T, 3C) (HF GPT-2's head layout)."""
    B, T, C3 = qkv.shape
    split = qkv.reshape(B, T, 3, n_head, C3 // 3 // n_head).transpose(2, 0, 3, 1, 4)
    return split[0], split[1], split[2]


def _causal_blocks(T: int) -> list[tuple[int, int]]:
    """At most four runs [lo, hi) of positions covering 0..T, each at least 64 long.

    A query in lo..hi only sees keys 0..hi, so the score matrix is computed block row by block
    row, skipping the blocks above the diagonal: 10 of the 16 blocks, 62.5% of the full matmul's
    work (more blocks skip more, but BLAS runs slower on the smaller products: measured).
    """
    size = max(64, -(-T // 4))
    return [(lo, min(T, lo + size)) for lo in range(0, T, size)]


def attention_forward(
    qkv: np.ndarray, n_head: int, *, out: np.ndarray | None = None
) -> tuple[np.ndarray, Any]:
    """Causal multi-head attention: out (B, T, C) from qkv (B, T, 3C) = [q | k | v].

    att = softmax(mask(q·kᵀ/sqrt(HS))) per head, out = att·v with the heads merged back;
    cache (qkv, att, n_head) with att (B, NH, T, T), as ref's. Hybrid: BLAS matmuls
    (``np.matmul``, skipping the blocks above the diagonal) around one fused Numba kernel for
    scale + causal mask + softmax (module docstring). With several Numba threads the batch is
    split between them, each part on one BLAS thread (``_parts``).
    """
    out = check_attention_forward(qkv, n_head, out)
    B, T, _ = out.shape
    n_head = int(n_head)
    att = np.empty((B, n_head, T, T), dtype=qkv.dtype)  # blocks above the diagonal unwritten
    parts = part_threads(B)

    def part(lo: int, hi: int, _: int) -> None:
        _forward(qkv[lo:hi], n_head, att[lo:hi], out[lo:hi], serial=parts > 1)

    run_parts(part, B, parts)
    return out, (qkv, att, n_head)


def _forward(qkv: np.ndarray, n_head: int, att: np.ndarray, out: np.ndarray, serial: bool) -> None:
    """:func:`attention_forward` of the sequences of qkv (b, T, 3C) into att (b, NH, T, T) and
    out (b, T, C); ``serial``: the softmax on the calling thread."""
    B, T, C = out.shape
    HS = C // n_head
    q, k, v = _heads(qkv, n_head)  # (B, NH, T, HS) each
    for lo, hi in _causal_blocks(T):
        # scores of queries lo..hi against the keys they may see, 0..hi
        np.matmul(q[:, :, lo:hi], k[:, :, :hi].swapaxes(-1, -2), out=att[:, :, lo:hi, :hi])
    # in place: scores -> probabilities, exact zeros above the diagonal (every block)
    softmax = _causal_softmax_rows_serial if serial else _causal_softmax_rows
    softmax(att.reshape(B * n_head, T, T), qkv.dtype.type(1.0 / np.sqrt(HS)))
    y = out.reshape(B, T, n_head, HS).transpose(0, 2, 1, 3)  # (B, NH, T, HS) view of out
    for lo, hi in _causal_blocks(T):
        np.matmul(att[:, :, lo:hi, :hi], v[:, :, :hi], out=y[:, :, lo:hi])  # y = att·v


def attention_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray]:
    """(dqkv,) of :func:`attention_forward`, dqkv (B, T, 3C).

    The four matmuls of the backward, each skipping the blocks above the diagonal, around the
    fused Numba softmax backward, which turns datt into d(scores) in place. dq, dk and dv are
    written straight into their thirds of dqkv. Split over threads as the forward is.
    """
    qkv, att, n_head = cache
    B, T, C3 = qkv.shape
    _checks.upstream("attention_backward", dout, (B, T, C3 // 3), qkv.dtype)
    dqkv = np.empty((B, T, C3), dtype=qkv.dtype)
    datt = np.empty((B, n_head, T, T), dtype=qkv.dtype)
    parts = part_threads(B)

    def part(lo: int, hi: int, _: int) -> None:
        _backward(dout[lo:hi], qkv[lo:hi], att[lo:hi], n_head, datt[lo:hi], dqkv[lo:hi], parts > 1)

    run_parts(part, B, parts)
    return (dqkv,)


def _backward(
    dout: np.ndarray,
    qkv: np.ndarray,
    att: np.ndarray,
    n_head: int,
    datt: np.ndarray,
    dqkv: np.ndarray,
    serial: bool,
) -> None:
    """:func:`attention_backward` of the sequences of dout (b, T, C) into dqkv (b, T, 3C), with
    datt (b, NH, T, T) as scratch; ``serial``: the softmax backward on the calling thread."""
    B, T, C3 = qkv.shape
    HS = C3 // 3 // n_head
    q, k, v = _heads(qkv, n_head)  # (B, NH, T, HS) each
    dy = dout.reshape(B, T, n_head, HS).transpose(0, 2, 1, 3)  # (B, NH, T, HS)
    dq, dk, dv = _heads(dqkv, n_head)  # (B, NH, T, HS) views into dqkv
    blocks = _causal_blocks(T)

    # in the forward pass this was: y = att·v, so now datt = dy·vᵀ and dv = attᵀ·dy, where key s
    # gets contributions from the queries t >= s only (att is zero above the diagonal)
    for lo, hi in blocks:
        np.matmul(dy[:, :, lo:hi], v[:, :, :hi].swapaxes(-1, -2), out=datt[:, :, lo:hi, :hi])
        np.matmul(att[:, :, lo:, lo:hi].swapaxes(-1, -2), dy[:, :, lo:], out=dv[:, :, lo:hi])

    # in place: datt -> d(scores·scale)·scale = d(scores), exact zeros above the diagonal
    backward = _causal_softmax_backward_rows_serial if serial else _causal_softmax_backward_rows
    backward(
        datt.reshape(B * n_head, T, T),
        att.reshape(B * n_head, T, T),
        qkv.dtype.type(1 / np.sqrt(HS)),
    )

    # in the forward pass this was: scores = q·kᵀ, so now dq = dscores·k and dk = dscoresᵀ·q
    for lo, hi in blocks:
        np.matmul(datt[:, :, lo:hi, :hi], k[:, :, :hi], out=dq[:, :, lo:hi])
        np.matmul(datt[:, :, lo:, lo:hi].swapaxes(-1, -2), q[:, :, lo:], out=dk[:, :, lo:hi])
