"""The tied LM head fused with the cross-entropy loss, forward and backward, in row chunks.

    logits = x @ wteᵀ                       (N, Vp), N = B·T positions
    loss   = mean over valid positions of −log softmax(logits[:, :V])[target]

and the gradients of ``dloss · loss`` with respect to x and wte, computed without ever holding
the (N, Vp) logits, probabilities or dlogits of the whole batch: the rows go through in chunks of
``chunk_rows``, and each chunk's (rows, Vp) block is the logits, then the probabilities, then
dlogits, in place, before its two gradient products. It computes exactly what ``linear_forward``
(with weight ``wte.T``) + ``crossentropy_forward`` + ``crossentropy_backward`` +
``linear_backward`` compute (tests/ref/test_ref_head_loss.py), in a fraction of the memory: at
GPT-2's vocabulary, B=4 and T=1024, each of those (N, Vp) arrays is 0.8 GB.

Derivation: docs/derivations.md, "The LM head fused with the loss".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import checks
from .crossentropy import check_crossentropy_backward, check_crossentropy_forward

# rows per chunk: a (256, 50304) float32 block is 51 MB at GPT-2's padded vocabulary (the
# (B, T, Vp) logits are 206 MB at B=4, T=256, 824 MB at T=1024), 4 MB at Vp=4096; fewer rows
# make the three products thinner and slower (at GPT-2's shapes, against the unfused head:
# 64 rows 0.75× its time on one thread, 1.29× on two; 256 rows 0.64× and 0.86×;
# docs/performance.md, "Memory", bench/head_loss.py)
HEAD_CHUNK_ROWS = 256
# vocabulary rows per block of the dwte accumulation: a (2048, 768) float32 block is 6 MB
VOCAB_BLOCK = 2048

# the rows of one chunk, in place: logits in, dlogits out; returns the rows' losses
RowsFunction = Any  # (logits, targets, valid, V, scale) -> losses


def head_crossentropy_forward_backward(
    x: np.ndarray,
    wte: np.ndarray,
    targets: np.ndarray,
    vocab_size: int | None = None,
    ignore_index: int = -100,
    dloss: Any = 1.0,
    *,
    dwte: np.ndarray | None = None,
    dx: np.ndarray | None = None,
    chunk_rows: int | None = None,
    rounding: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The loss of the tied head's logits and its gradients: (loss, dx, dwte).

    Shapes: x (B, T, C) (any leading axes: (..., C)), wte (Vp, C), targets (B, T) integer,
    ``vocab_size`` V <= Vp (None: V = Vp) -> loss a 0-d array of x's dtype, dx (B, T, C),
    dwte (Vp, C). The loss is :func:`~tinygradlm.ref.crossentropy_forward`'s of the logits
    x @ wteᵀ: the padded columns [V, Vp) get no probability and no gradient, positions whose
    target is ``ignore_index`` are left out of the mean (NaN when none is left) and get zero
    gradient. The gradients are those of ``dloss · loss``.

    ``dwte``, when given, is added into (+=) and returned: the gradient buffer itself, so no
    (Vp, C) array is made; otherwise a new zero array is. ``dx``, when given, is written and
    returned. ``chunk_rows`` positions go through at a time (None: ``HEAD_CHUNK_ROWS``).
    ``rounding``, when given, rounds an array in place (the precision emulation,
    tinygradlm.precision): each chunk's logits as the linear layer's stored output, and its
    dlogits as the gradient operand of the two products, the points where the unfused head
    rounds them; x and wte are used as they are given (round them before, as the linear
    layer's operands).

    Derivation: the chunks are independent in the forward (each row's softmax reads its own row
    only), and in the backward dx's rows are the chunks' dlogits @ wte, while dwte = dlogitsᵀ @ x
    is a sum over the rows, so it is the sum of the chunks' products (the weight is shared by
    every position). dlogits = (softmax − onehot(target))·dloss/n_valid, with n_valid counted
    over all the rows before the first chunk.
    """
    return head_loss_chunks(
        x, wte, targets, vocab_size, ignore_index, dloss, dwte, dx, chunk_rows, rounding,
        crossentropy_rows_in_place,
    )  # fmt: skip


def crossentropy_rows_in_place(
    logits: np.ndarray, targets: np.ndarray, valid: np.ndarray, V: int, scale: Any
) -> np.ndarray:
    """Rows of logits (n, Vp) replaced by their dlogits, (softmax − onehot)·scale, in place;
    returns the rows' losses −log softmax[target] (n,) (0 at rows not ``valid``).

    The same operations, in the same order, as crossentropy_forward + crossentropy_backward on
    these rows: the results are the same bits."""
    dtype = logits.dtype
    n = logits.shape[0]
    rows = np.arange(n)
    z = logits[:, :V]  # (n, V) a view: the padded columns never enter the softmax
    with np.errstate(invalid="ignore"):  # a row of -inf at an ignored position: NaN, unused
        z -= z.max(axis=1, keepdims=True)  # so that exp(.) <= 1
    shifted_target = z[rows, targets]  # (n,) a copy, read before z becomes probabilities
    np.exp(z, out=z)
    total = z.sum(axis=1, keepdims=True)  # (n, 1) >= 1
    z /= total  # probabilities
    losses = np.where(valid, np.log(total[:, 0]) - shifted_target, dtype.type(0))  # (n,)

    # in the forward pass this was: loss = (1/n_valid) Σ_valid (log Σ_j exp(z_j) - z[target]),
    # so now, at each valid row: dz_i = (p_i - [i == target]) · dloss / n_valid
    z[rows, targets] -= 1
    z *= scale
    logits[:, V:] = 0  # padding: never had probability, gets no gradient
    logits[~valid] = 0  # ignored rows: no gradient
    return losses


def head_loss_chunks(
    x: np.ndarray,
    wte: np.ndarray,
    targets: np.ndarray,
    vocab_size: int | None,
    ignore_index: int,
    dloss: Any,
    dwte: np.ndarray | None,
    dx: np.ndarray | None,
    chunk_rows: int | None,
    rounding: Any,
    rows_in_place: RowsFunction,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`head_crossentropy_forward_backward` with the row function given: NumPy's
    :func:`crossentropy_rows_in_place` here, a Numba kernel in tinygradlm.kernels."""
    chunk_rows = HEAD_CHUNK_ROWS if chunk_rows is None else int(chunk_rows)
    dx, dwte, V, valid = check_head_crossentropy(
        x, wte, targets, vocab_size, ignore_index, dloss, dwte, dx, chunk_rows
    )
    dtype = x.dtype
    Vp, C = wte.shape
    N = valid.size
    n_valid = int(np.count_nonzero(valid))
    scale = dtype.type(dtype.type(dloss) / dtype.type(max(n_valid, 1)))  # all ignored: 0 not NaN
    x2, dx2 = x.reshape(N, C), dx.reshape(N, C)  # (N, C)
    flat_targets = np.where(valid, targets, 0).reshape(N)  # ignored rows read column 0
    flat_valid = valid.reshape(N)

    block = np.empty((min(chunk_rows, N), Vp), dtype=dtype)  # the chunk's logits, then dlogits
    vocab_block = np.empty((min(VOCAB_BLOCK, Vp), C), dtype=dtype)
    dx_t = np.empty(C * min(chunk_rows, N), dtype=dtype)  # a chunk's dx, transposed
    losses = []
    for lo in range(0, N, chunk_rows):
        hi = min(lo + chunk_rows, N)
        xc, logits = x2[lo:hi], block[: hi - lo]  # (n, C), (n, Vp)
        np.matmul(xc, wte.T, out=logits)  # the head: (n, C) @ (C, Vp)
        if rounding is not None:
            rounding(logits)  # the linear layer's output, stored
        losses.append(rows_in_place(logits, flat_targets[lo:hi], flat_valid[lo:hi], V, scale))
        dlogits = logits  # (n, Vp), now the gradient
        if rounding is not None:
            rounding(dlogits)  # the gradient operand of the products below
        # in the forward pass this was: logits = x @ wteᵀ, so now:
        # dx[c] = dlogits @ wte (n, Vp) @ (Vp, C), computed as its transpose wteᵀ @ dlogitsᵀ:
        # the same products, in the orientation OpenBLAS splits across threads (the other ran
        # 2.5× slower on 2 threads at GPT-2's shapes, measured)
        part_t = dx_t[: C * (hi - lo)].reshape(C, hi - lo)
        np.matmul(wte.T, dlogits.T, out=part_t)  # (C, n)
        dx2[lo:hi] = part_t.T
        # dwte += dlogitsᵀ @ x, a block of vocabulary rows at a time so the product's
        # temporary stays small (NumPy's matmul cannot add into its output)
        for v in range(0, Vp, VOCAB_BLOCK):
            w = min(v + VOCAB_BLOCK, Vp)
            part = vocab_block[: w - v]
            np.matmul(dlogits[:, v:w].T, xc, out=part)  # (w−v, n) @ (n, C)
            dwte[v:w] += part
    total_loss = np.concatenate(losses).sum() if losses else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):  # no valid target: 0/0 = NaN
        loss = np.array(dtype.type(total_loss) / dtype.type(n_valid), dtype=dtype)  # 0-d
    return loss, dx, dwte


def check_head_crossentropy(
    x: np.ndarray,
    wte: np.ndarray,
    targets: np.ndarray,
    vocab_size: int | None,
    ignore_index: int,
    dloss: Any,
    dwte: np.ndarray | None,
    dx: np.ndarray | None,
    chunk_rows: int,
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """The argument checks of :func:`head_crossentropy_forward_backward` (and of its Numba
    twin); returns the arrays to write dx and add dwte into, V and the mask of valid
    positions."""
    fn = "head_crossentropy_forward_backward"
    dtype = checks.float_array(fn, "x", x)
    checks.float_array(fn, "wte", wte)
    checks.same_dtype(fn, "wte", wte, "x", dtype)
    if x.ndim == 0 or wte.ndim != 2 or wte.shape[1] != x.shape[-1]:
        raise ValueError(
            f"{fn}: x {x.shape} and wte {wte.shape} must be (..., C) and (Vp, C), the same C"
        )
    if not x.flags.c_contiguous:
        raise ValueError(f"{fn}: x must be C-contiguous (its rows are read as (B·T, C))")
    if int(chunk_rows) < 1:
        raise ValueError(f"{fn}: chunk_rows must be at least 1, got {chunk_rows}")
    # the logits' shape, without their memory: a (..., Vp) view of one element
    logits_shape = np.broadcast_to(np.zeros((), dtype), (*x.shape[:-1], wte.shape[0]))
    V, valid = check_crossentropy_forward(logits_shape, targets, vocab_size, ignore_index)
    check_crossentropy_backward(dloss)
    dx = checks.out_array(fn, dx, x.shape, dtype, contiguous=True, kept=(("x", x), ("wte", wte)))
    if dwte is None:
        dwte = np.zeros(wte.shape, dtype=dtype)  # rows that get no gradient stay zero
    else:
        checks.float_array(fn, "dwte", dwte)
        checks.same_dtype(fn, "dwte", dwte, "x", dtype)
        if dwte.shape != wte.shape:
            raise ValueError(f"{fn}: dwte has shape {dwte.shape} but wte {wte.shape}")
    return dx, dwte, V, valid
