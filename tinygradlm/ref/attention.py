"""Causal multi-head self-attention (Vaswani et al., 2017), as in GPT-2.

    att = softmax(mask(q kᵀ / sqrt(HS)))      per head; position t sees positions 0..t
    out = att @ v                             heads merged back side by side

The input is the output of the c_attn linear layer, qkv (B, T, 3C) = [q | k | v]; the output
projection (c_proj) is a separate linear layer. Derivation: docs/derivations.md, "Attention".
"""

from __future__ import annotations

import math

import numpy as np

from . import checks

AttentionCache = tuple[np.ndarray, np.ndarray, int]


def _heads(a: np.ndarray, n_head: int) -> np.ndarray:
    """(B, T, C) -> (B, NH, T, HS): head h is channels h·HS..(h+1)·HS, as in HF GPT-2.

    A view whenever a's last axis has unit stride (a slice of qkv, a contiguous buffer), so the
    same call reads the heads of q, k, v and writes the heads of out and dqkv in place.
    """
    B, T, C = a.shape
    return a.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3)


def _split_qkv(qkv: np.ndarray, n_head: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """q, k, v, each (B, NH, T, HS), as views of qkv (B, T, 3C)."""
    C = qkv.shape[-1] // 3
    q, k, v = (_heads(qkv[..., i * C : (i + 1) * C], n_head) for i in range(3))
    return q, k, v


def attention_forward(
    qkv: np.ndarray, n_head: int, *, out: np.ndarray | None = None
) -> tuple[np.ndarray, AttentionCache]:
    """Causal self-attention of every head, all batches and heads at once.

    Shapes: qkv (B, T, 3C), the query, key and value of each position side by side, each split
    into NH = n_head heads of HS = C / NH channels -> out (B, T, C), the heads' outputs side by
    side. ``out``, when given, must be C-contiguous. The cache is (qkv, att, n_head) with att
    (B, NH, T, T) the attention weights.

    Derivation: per head, preatt = q kᵀ/sqrt(HS) (T, T); entries above the diagonal (a key in
    the future) are set to −inf, a constant, so softmax gives them weight exactly 0; att =
    softmax(preatt) along each row; y = att v. Backward, in reverse: datt = dy vᵀ and dv = attᵀ
    dy (from y = att v); the softmax's Jacobian for a row is diag(a) − a aᵀ, so dpreatt =
    att ⊙ (datt − Σ_s datt ⊙ att) without forming a (T, T) matrix per row, and it is exactly 0
    where att is 0 (the masked entries); then dq = dpreatt k/sqrt(HS) and dk = dpreattᵀ
    q/sqrt(HS) (from preatt = q kᵀ/sqrt(HS)).
    """
    out = check_attention_forward(qkv, n_head, out)
    T, C = out.shape[1:]  # out is (B, T, C)
    HS = C // n_head

    q, k, v = _split_qkv(qkv, n_head)  # (B, NH, T, HS) each
    preatt = q @ k.swapaxes(-1, -2)  # (B, NH, T, T) preatt[.., t, s] = q_t · k_s
    preatt *= 1.0 / math.sqrt(HS)  # keeps the logits' variance near 1 whatever HS is
    future = np.triu(np.ones((T, T), dtype=bool), k=1)  # (T, T) True where s > t
    np.copyto(preatt, -np.inf, where=future)  # t must not see later positions: exp(-inf) = 0

    # softmax along s. Subtracting the row maximum changes nothing mathematically and keeps exp
    # from overflowing; the diagonal is never masked, so every row's maximum is finite.
    att = preatt - preatt.max(axis=-1, keepdims=True)  # (B, NH, T, T)
    np.exp(att, out=att)
    att /= att.sum(axis=-1, keepdims=True)  # rows sum to 1

    # y = att @ v for every head, written straight into out through the (B, NH, T, HS) view,
    # which merges the heads back side by side
    np.matmul(att, v, out=_heads(out, n_head))
    return out, (qkv, att, n_head)


def attention_backward(dout: np.ndarray, cache: AttentionCache) -> tuple[np.ndarray]:
    """Gradient dqkv (B, T, 3C), a new array, from dout (B, T, C).

    Uses the softmax Jacobian-vector shortcut, never a per-row (T, T) Jacobian; masked entries
    get exactly zero gradient. See :func:`attention_forward` for the derivation.
    """
    qkv, att, n_head = cache
    B, T, C3 = qkv.shape
    C = C3 // 3
    checks.upstream("attention_backward", dout, (B, T, C), qkv.dtype)
    scale = 1.0 / math.sqrt(C // n_head)

    q, k, v = _split_qkv(qkv, n_head)  # (B, NH, T, HS) each
    dy = _heads(dout, n_head)  # (B, NH, T, HS)
    dqkv = np.empty(qkv.shape, dtype=qkv.dtype)  # (B, T, 3C)
    dq, dk, dv = _split_qkv(dqkv, n_head)  # (B, NH, T, HS) each, views into dqkv

    # in the forward pass this was: y = att @ v, so now:
    datt = dy @ v.swapaxes(-1, -2)  # (B, NH, T, T)
    np.matmul(att.swapaxes(-1, -2), dy, out=dv)  # (B, NH, T, HS)

    # in the forward pass this was: att = softmax(preatt) along s, whose Jacobian for one row a
    # is diag(a) - a aᵀ, so now: dpreatt = a ⊙ (datt - (datt · a)) row by row. Where the mask
    # put -inf, a = 0 and so dpreatt = 0 exactly: the mask is a constant, not a function of q, k.
    dpreatt = att * (datt - (datt * att).sum(axis=-1, keepdims=True))  # (B, NH, T, T)

    # in the forward pass this was: preatt = (q @ kᵀ) * scale, so now:
    dpreatt *= scale
    np.matmul(dpreatt, k, out=dq)  # (B, NH, T, HS)
    np.matmul(dpreatt.swapaxes(-1, -2), q, out=dk)  # (B, NH, T, HS)
    return (dqkv,)


def check_attention_forward(qkv: np.ndarray, n_head: int, out: np.ndarray | None) -> np.ndarray:
    """The argument checks of :func:`attention_forward` (and of its twin in tinygradlm.kernels);
    returns the array to write the output into, ``out`` or a new (B, T, C) one."""
    fn = "attention_forward"
    dtype = checks.float_array(fn, "qkv", qkv)
    if qkv.ndim != 3:
        raise ValueError(f"{fn}: qkv must be (B, T, 3C), got shape {qkv.shape}")
    B, T, C3 = qkv.shape
    if C3 % 3:
        raise ValueError(
            f"{fn}: qkv's last axis has {C3} channels, not 3C (q, k and v side by side)"
        )
    C = C3 // 3
    if not isinstance(n_head, (int, np.integer)) or n_head < 1 or C % n_head:
        raise ValueError(f"{fn}: C={C} channels do not split into n_head={n_head!r} heads")
    return checks.out_array(fn, out, (B, T, C), dtype, contiguous=True, kept=(("qkv", qkv),))
