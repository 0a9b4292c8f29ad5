"""The KV cache for incremental decoding, and attention of a new query to it.

A forward pass over T positions costs O(T) work per position (attention reads every earlier
key), so recomputing the whole sequence for each new token costs O(T²) per token. But attention
is causal: the keys and values of positions 0..t-1 do not depend on anything after them, so once
computed they never change. :class:`KVCache` keeps them, per layer, in arrays (B, NH, maxT, HS)
allocated once; ``GPT.forward(idx, kv_cache)`` appends the keys and values of the new positions
and lets a new query attend to the cache (:func:`attend_to_cache`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .config import GPTConfig
from .workspace import Activations


class KVCache:
    """Every layer's keys and values for the positions seen so far.

    ``keys[i]`` and ``values[i]`` are (B, NH, maxT, HS) for layer i, allocated once (maxT =
    ``block_size``); positions 0..length-1 are filled. Memory: 2·L·B·maxT·C numbers (GPT-2
    124M, B=1, float32: 75 MB). It also keeps the activation buffers of its forward passes, so a
    decoding step allocates nothing per layer.
    """

    def __init__(self, config: GPTConfig, batch_size: int, dtype: Any = np.float32) -> None:
        shape = (batch_size, config.n_head, config.block_size, config.head_size)
        self.config = config
        self.batch_size = batch_size
        self.dtype = np.dtype(dtype)
        self.keys = [np.zeros(shape, dtype=self.dtype) for _ in range(config.n_layer)]
        self.values = [np.zeros(shape, dtype=self.dtype) for _ in range(config.n_layer)]
        self.length = 0
        self._workspaces: dict[int, Activations] = {}

    @property
    def capacity(self) -> int:
        """The most positions the cache holds: ``block_size``."""
        return self.config.block_size

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (*self.keys, *self.values))

    def workspace(self, T: int) -> Activations:
        """Activation buffers for a forward pass of T new positions (kept per T: a prompt's and
        a decoding step's)."""
        if T not in self._workspaces:
            self._workspaces[T] = Activations(
                self.config, self.batch_size, T, self.dtype, head=False
            )
        return self._workspaces[T]

    def store(self, layer: int, qkv: np.ndarray) -> None:
        """Write the keys and values of qkv (B, T, 3C) at positions length..length+T-1."""
        B, T, C3 = qkv.shape
        C, NH = C3 // 3, self.config.n_head
        start = self.length
        for cache, part in ((self.keys[layer], 1), (self.values[layer], 2)):
            heads = qkv[..., part * C : (part + 1) * C].reshape(B, T, NH, C // NH)
            cache[:, :, start : start + T] = heads.transpose(0, 2, 1, 3)  # (B, NH, T, HS)

    def attend(self, layer: int, qkv: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The attention output (B, 1, C) of the one new position in qkv (B, 1, 3C), whose key
        and value :meth:`store` has already appended: its query against positions 0..length."""
        B, _, C3 = qkv.shape
        C, NH = C3 // 3, self.config.n_head
        end = self.length + 1
        q = qkv[..., :C].reshape(B, 1, NH, C // NH).transpose(0, 2, 1, 3)  # (B, NH, 1, HS)
        y = attend_to_cache(q, self.keys[layer][:, :, :end], self.values[layer][:, :, :end])
        out[...] = y.transpose(0, 2, 1, 3).reshape(B, 1, C)  # heads side by side again
        return out


def attend_to_cache(q: np.ndarray, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Attention of one new query per head to every cached position, itself included.

    Shapes: q (B, NH, 1, HS), keys and values (B, NH, t+1, HS) -> out (B, NH, 1, HS).

    att = softmax(q·kᵀ/sqrt(HS)) over positions 0..t, out = att·v. No mask: the cache holds
    only positions up to the query's own, exactly the row t of the causal attention in
    ``tinygradlm.ref.attention_forward``.
    """
    HS = q.shape[-1]
    scores = q @ keys.swapaxes(-1, -2)  # (B, NH, 1, t+1)
    scores *= 1.0 / math.sqrt(HS)  # a Python float: float32 stays float32
    scores -= scores.max(axis=-1, keepdims=True)  # softmax is shift-invariant; exp can't overflow
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores @ values  # (B, NH, 1, HS)
