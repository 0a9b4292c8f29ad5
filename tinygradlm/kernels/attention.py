"""Causal self-attention, forward and backward: BLAS matmuls around a fused Numba softmax.

The batched matmuls (q·kᵀ and att·v forward; dout·vᵀ, attᵀ·dout, dscores·k, dscoresᵀ·q
backward) are ``np.matmul`` on (…, T, HS) views of qkv, as in ref, except that they skip the
blocks of the (T, T) matrices above the diagonal, where the mask leaves only zeros: with the
positions split into four runs, 6 of the 16 blocks (see :func:`_causal_blocks`). What Numba
fuses is everything between the matmuls, one row of the (T, T) score matrix at a time while it
sits in L1 cache:

- forward: scale by 1/sqrt(HS), causal mask, stable softmax (max, exp, sum, normalize): ref does
  this in about six passes over the whole (B, NH, T, T) array, each with a temporary;
- backward: the probabilities recomputed from the scores (below), then the softmax
  Jacobian-vector shortcut datt_pre = att·(datt − Σ datt·att) and the scale, in place on the
  datt buffer the matmul just produced.

What is kept for backward. Ref keeps the probabilities att (B, NH, T, T), the largest item of a
training step's memory (at GPT-2 124M, B=4, T=1024: 201 MB a layer, 2.4 GB for 12). Here the
cache keeps, per (batch element, head, row), only the softmax's shift (the row's largest
score·scale) and 1/sum: two (B, NH, T) arrays. The backward computes the scores q·kᵀ again with
the same matmuls (BLAS is called once per (T, T) matrix, with the same sizes, whatever else is
in the call) and turns them into exp(score·scale − shift)·(1/sum), the same operations in the
same order as the forward, so the probabilities, and every gradient, are bit-identical to
keeping them. The price is one more q·kᵀ matmul and one more exp per entry in the backward;
it is paid back by working on a chunk of (T, T) matrices of about
:data:`CHUNK_BYTES` at a time (:func:`_chunks`), a scratch reused across the chunks and
allocated once per call (so nothing is held between calls, and nothing is shared between
threads), which the matmul that writes it, the row kernel and the matmuls that read it find in
cache rather than in memory (measured at GPT-2's shapes, T = 256 and 1024: forward and backward
together faster than keeping att, whose allocation, a fresh (B, NH, T, T) array per layer and
step, cost time too).

Row t only touches columns 0..t: the masked upper triangle is never exponentiated nor read, just
written with exact zeros (probabilities and gradients) as far as the matmuls read, the end of
the row's causal run. Row sums accumulate in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

from ..ref.attention import check_attention_forward
from . import _checks
from ._vecmath import exp, exp_shifted_and_sum, row_dot, row_max

CHUNK_BYTES = 1 << 20  # the scratch of (T, T) matrices worked on at a time (see _chunks)


@njit(cache=True, parallel=True)
def _causal_softmax_rows(att, scale, run, shift, inv):
    """In place on att (BH, T, T): q·kᵀ scores in, softmax(mask(scores·scale)) out.

    Row r's probabilities are exp(score·scale − shift[r])·inv[r]: shift and inv (BH, T) are
    written out so that :func:`_recompute_causal_softmax_rows` gives these same bits again.
    Zeros go as far as the matmuls read: to the end of the row's causal run (``run`` long).
    """
    BH, T, _ = att.shape
    one = att.dtype.type(1.0)
    for r in prange(BH * T):
        b, t = r // T, r % T
        row = att[b, t]
        n = t + 1  # position t sees 0..t
        # scale > 0, so max(scores·scale) = max(scores)·scale
        m = row_max(row, n) * scale
        total = exp_shifted_and_sum(row, n, m, scale, row)
        inverse = one / att.dtype.type(total)
        shift[b, t], inv[b, t] = m, inverse
        for j in range(n):
            row[j] *= inverse
        _zero_masked(row, n, t, run)


@njit(inline="always")
def _zero_masked(row, n, t, run):
    """row[n:end] = 0 (masked: exactly zero probability or gradient), end the end of t's causal
    run (:func:`_causal_blocks`, ``run`` long): the matmuls read no further."""
    T = row.shape[0]
    for j in range(n, min(T, (t // run + 1) * run)):
        row[j] = row.dtype.type(0.0)


@njit(inline="always")
def _recompute_row(row, t, run, scale, m, inverse):
    """row[:t+1] scores -> the forward's probabilities, bit for bit, then the masked zeros."""
    n = t + 1
    for j in range(n):
        row[j] = exp(row[j] * scale - m) * inverse  # as exp_shifted_and_sum, then ·inverse
    _zero_masked(row, n, t, run)


@njit(cache=True, parallel=True)
def _recompute_causal_softmax_rows(att, scale, run, shift, inv):
    """In place on att (BH, T, T): the scores q·kᵀ in, the probabilities of
    :func:`_causal_softmax_rows` out, from its shift and inv (BH, T)."""
    BH, T, _ = att.shape
    for r in prange(BH * T):
        b, t = r // T, r % T
        _recompute_row(att[b, t], t, run, scale, shift[b, t], inv[b, t])


@njit(cache=True, parallel=True)
def _causal_softmax_backward_rows(datt, att, scale, run, shift, inv):
    """In place on both (BH, T, T): att holds the scores q·kᵀ and gets the forward's
    probabilities back (recomputed from shift and inv (BH, T)); datt holds d(att) and gets
    d(scores) (scores before the scale)."""
    BH, T, _ = datt.shape
    for r in prange(BH * T):
        b, t = r // T, r % T
        d_row, a_row = datt[b, t], att[b, t]
        n = t + 1
        _recompute_row(a_row, t, run, scale, shift[b, t], inv[b, t])
        d = datt.dtype.type(row_dot(d_row, a_row, n))
        # same as ref.attention_backward: datt_pre = att·(datt − Σ_j datt·att), times the scale
        for j in range(n):
            d_row[j] = a_row[j] * (d_row[j] - d) * scale
        _zero_masked(d_row, n, t, run)


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


def _chunks(B: int, n_head: int, T: int, itemsize: int) -> list[tuple[slice, slice]]:
    """(batch, heads) index pairs that split the B·NH (T, T) matrices into runs of about
    CHUNK_BYTES: whole batch elements while one fits, else runs of one element's heads.

    The scores of a chunk then stay in cache between the matmul that writes them, the row
    kernel and the matmuls that read them (measured: faster than whole batch elements at
    T = 256 and 1024), and the scratch is a few MB whatever B is.
    """
    per_head = max(1, CHUNK_BYTES // (T * T * itemsize))
    if per_head >= n_head:
        step = per_head // n_head
        return [(slice(b, min(B, b + step)), slice(0, n_head)) for b in range(0, B, step)]
    return [
        (slice(b, b + 1), slice(h, min(n_head, h + per_head)))
        for b in range(B)
        for h in range(0, n_head, per_head)
    ]


def _scratch(chunks: list, T: int, dtype: np.dtype) -> np.ndarray:
    """A flat buffer for the largest chunk's (T, T) matrices."""
    largest = max((b.stop - b.start) * (h.stop - h.start) for b, h in chunks)
    return np.empty(largest * T * T, dtype=dtype)


def _view(scratch: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The first prod(shape) entries of scratch, as an array of that shape (C-contiguous)."""
    return scratch[: int(np.prod(shape))].reshape(shape)


def _rows(stats: np.ndarray) -> np.ndarray:
    """A chunk's (nb, nh, T) slice of shift or inv as (nb·nh, T), the kernels' row order.

    Always a view (a chunk is whole batch elements or a run of one element's heads), which the
    forward's kernel writes through: a copy would lose what it writes.
    """
    rows = stats.reshape(-1, stats.shape[-1])
    if not np.may_share_memory(rows, stats):
        raise AssertionError("a chunk's row statistics must be a view")
    return rows


def _causal_scores(q: np.ndarray, k: np.ndarray, att: np.ndarray) -> None:
    """att (..., T, T) = q·kᵀ of q, k (..., T, HS), block row by block row, leaving the blocks
    above the diagonal unwritten."""
    for lo, hi in _causal_blocks(q.shape[-2]):
        # scores of queries lo..hi against the keys they may see, 0..hi
        np.matmul(q[..., lo:hi, :], k[..., :hi, :].swapaxes(-1, -2), out=att[..., lo:hi, :hi])


def attention_forward(
    qkv: np.ndarray, n_head: int, *, out: np.ndarray | None = None
) -> tuple[np.ndarray, Any]:
    """Causal multi-head attention: out (B, T, C) from qkv (B, T, 3C) = [q | k | v].

    att = softmax(mask(q·kᵀ/sqrt(HS))) per head, out = att·v with the heads merged back. Unlike
    ref's, the cache (qkv, shift, inv, n_head) keeps no (B, NH, T, T) probabilities, only each
    row's softmax shift (its largest score·scale) and 1/sum, shift and inv (B, NH, T), from which
    the backward recomputes them bit for bit (module docstring). Hybrid: BLAS matmuls
    (``np.matmul``, skipping the blocks above the diagonal) around one fused Numba kernel for
    scale + causal mask + softmax, a chunk of (T, T) matrices at a time (:func:`_chunks`).
    """
    out = check_attention_forward(qkv, n_head, out)
    B, T, C = out.shape
    dtype = qkv.dtype
    n_head = int(n_head)
    HS = C // n_head
    scale = dtype.type(1.0 / np.sqrt(HS))
    run = _causal_blocks(T)[0][1]  # the length of a causal run (the last may be shorter)

    q, k, v = _heads(qkv, n_head)  # (B, NH, T, HS) each
    y = out.reshape(B, T, n_head, HS).transpose(0, 2, 1, 3)  # (B, NH, T, HS) view of out
    shift = np.empty((B, n_head, T), dtype=dtype)
    inv = np.empty((B, n_head, T), dtype=dtype)
    chunks = _chunks(B, n_head, T, dtype.itemsize)
    scratch = _scratch(chunks, T, dtype)
    for b, h in chunks:
        qc = q[b, h]  # (nb, nh, T, HS)
        att = _view(scratch, (*qc.shape[:2], T, T))  # blocks above the diagonal stay unwritten
        _causal_scores(qc, k[b, h], att)
        # in place: scores -> probabilities, exact zeros above the diagonal as far as att·v reads
        flat = att.reshape(-1, T, T)
        _causal_softmax_rows(flat, scale, run, _rows(shift[b, h]), _rows(inv[b, h]))
        for lo, hi in _causal_blocks(T):
            np.matmul(att[..., lo:hi, :hi], v[b, h, :hi], out=y[b, h, lo:hi])  # y = att·v
    return out, (qkv, shift, inv, n_head)


def attention_probabilities(cache: Any) -> np.ndarray:
    """The forward's probabilities att (B, NH, T, T) recomputed from its cache, the same bits
    the backward uses (for tests and inspection: training never holds them all)."""
    qkv, shift, inv, n_head = cache
    B, T, C3 = qkv.shape
    dtype = qkv.dtype
    q, k, _ = _heads(qkv, n_head)
    att = np.zeros((B, n_head, T, T), dtype=dtype)
    _causal_scores(q, k, att)
    scale = dtype.type(1 / np.sqrt(C3 // 3 // n_head))
    run = _causal_blocks(T)[0][1]
    _recompute_causal_softmax_rows(att.reshape(-1, T, T), scale, run, _rows(shift), _rows(inv))
    return att


def attention_backward(dout: np.ndarray, cache: Any) -> tuple[np.ndarray]:
    """(dqkv,) of :func:`attention_forward`, dqkv (B, T, 3C).

    A chunk of (T, T) matrices at a time: the forward's scores q·kᵀ again, then the four
    matmuls of the backward, each skipping the blocks above the diagonal, around one fused Numba
    kernel that turns the scores back into the forward's probabilities and datt into d(scores),
    in place. dq, dk and dv are written straight into their thirds of dqkv.
    """
    qkv, shift, inv, n_head = cache
    B, T, C3 = qkv.shape
    C, HS = C3 // 3, C3 // 3 // n_head
    _checks.upstream("attention_backward", dout, (B, T, C), qkv.dtype)
    dtype = qkv.dtype
    scale = dtype.type(1 / np.sqrt(HS))
    run = _causal_blocks(T)[0][1]  # the length of a causal run (the last may be shorter)
    q, k, v = _heads(qkv, n_head)  # (B, NH, T, HS) each
    dy = dout.reshape(B, T, n_head, HS).transpose(0, 2, 1, 3)  # (B, NH, T, HS)
    dqkv = np.empty((B, T, C3), dtype=dtype)
    dq, dk, dv = _heads(dqkv, n_head)  # (B, NH, T, HS) views into dqkv
    blocks = _causal_blocks(T)
    chunks = _chunks(B, n_head, T, dtype.itemsize)
    att_scratch, datt_scratch = _scratch(chunks, T, dtype), _scratch(chunks, T, dtype)

    for b, h in chunks:
        qc, kc, vc, dyc = q[b, h], k[b, h], v[b, h], dy[b, h]  # (nb, nh, T, HS)
        shape = (*qc.shape[:2], T, T)
        att, datt = _view(att_scratch, shape), _view(datt_scratch, shape)
        _causal_scores(qc, kc, att)  # the forward's matmuls: the same bits
        # in the forward pass this was: y = att·v, so now datt = dy·vᵀ (and dv = attᵀ·dy below)
        for lo, hi in blocks:
            np.matmul(
                dyc[..., lo:hi, :], vc[..., :hi, :].swapaxes(-1, -2), out=datt[..., lo:hi, :hi]
            )

        # in place: att's scores -> the forward's probabilities, and
        # datt -> d(scores·scale)·scale = d(scores), exact zeros above the diagonal in both (as
        # far as the matmuls below read)
        flat = (datt.reshape(-1, T, T), att.reshape(-1, T, T))
        _causal_softmax_backward_rows(*flat, scale, run, _rows(shift[b, h]), _rows(inv[b, h]))

        # key s gets contributions from the queries t >= s only (att is zero above the diagonal);
        # in the forward pass this was: scores = q·kᵀ, so now dq = dscores·k and dk = dscoresᵀ·q
        for lo, hi in blocks:
            np.matmul(att[..., lo:, lo:hi].swapaxes(-1, -2), dyc[..., lo:, :], out=dv[b, h, lo:hi])
            np.matmul(datt[..., lo:hi, :hi], kc[..., :hi, :], out=dq[b, h, lo:hi])
            np.matmul(datt[..., lo:, lo:hi].swapaxes(-1, -2), qc[..., lo:, :], out=dk[b, h, lo:hi])
    return (dqkv,)
