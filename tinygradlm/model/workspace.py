"""The activation buffers of a forward pass, allocated once per batch shape (B, T) and reused.

This is workspace, not state: a forward writes every layer's output into these arrays (the
layers' ``out=`` argument), and the caches it returns for backward point into them, so a step
allocates nothing large. The next forward of the same shape overwrites them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .config import GPTConfig


class Activations:
    """The residual stream at each block boundary (``x``, L+1 of (B, T, C)), every block's
    layer outputs (``blocks``), the final layer norm (B, T, C) and the logits (B, T, Vp).

    ``head=False`` leaves out the last two (``lnf`` and ``logits`` are then None): decoding
    computes them for the last position only."""

    def __init__(
        self, config: GPTConfig, B: int, T: int, dtype: np.dtype, head: bool = True
    ) -> None:
        C = config.n_embd
        self.shape = (B, T)

        def buf(*shape: int) -> np.ndarray:
            return np.empty((B, T, *shape), dtype=dtype)

        self.x = [buf(C) for _ in range(config.n_layer + 1)]  # residual stream
        self.blocks = [BlockActivations(buf, C) for _ in range(config.n_layer)]
        self.lnf = buf(C) if head else None
        self.logits = buf(config.Vp) if head else None

    @property
    def nbytes(self) -> int:
        arrays = [*self.x] + ([self.lnf, self.logits] if self.lnf is not None else [])
        for block in self.blocks:
            arrays += list(vars(block).values())
        return sum(a.nbytes for a in arrays)


class BlockActivations:
    """One block's layer outputs, named after the layer that writes them."""

    def __init__(self, buf: Callable[..., np.ndarray], C: int) -> None:
        self.ln1 = buf(C)
        self.qkv = buf(3 * C)
        self.atty = buf(C)
        self.proj = buf(C)  # c_proj outputs: read by the residual add only, so shared
        self.x2 = buf(C)
        self.ln2 = buf(C)
        self.fch = buf(4 * C)
        self.fcg = buf(4 * C)
