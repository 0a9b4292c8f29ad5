"""The activation buffers of a forward pass, allocated once per batch shape (B, T) and reused,
and the closed-form estimates of what a model needs in memory (:func:`model_bytes`,
:func:`training_bytes`), so a config can be refused before anything is allocated.

This is workspace, not state: a forward writes every layer's output into these arrays (the
layers' ``out=`` argument), and the caches it returns for backward point into them, so a step
allocates nothing large. The next forward of the same shape overwrites them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import backend
from ..ref.head_loss import HEAD_CHUNK_ROWS, VOCAB_BLOCK
from .config import GPTConfig


class Activations:
    """The residual stream at each block boundary (``x``, L+1 of (B, T, C)), every block's
    layer outputs (``blocks``: those backward reads are the block's own, the others are the
    ``shared`` buffers every block writes), the final layer norm (B, T, C), and the logits
    (B, T, Vp) once a plain head has asked for them (:meth:`logits_buffer`; training never does).
    Without ln_f (norm "post" or "none") ``lnf`` is where the head's input is copied when the
    precision rounds it (the head must not round the stream in place).

    ``head=False`` leaves out ``lnf``: decoding computes ln_f and the head for the last
    position only. ``recompute_mlp``: x2 and c_fc's output are not kept per block but written
    into shared buffers, which each block's backward fills again (``GPT.recompute_mlp``)."""

    def __init__(
        self,
        config: GPTConfig,
        B: int,
        T: int,
        dtype: np.dtype,
        head: bool = True,
        recompute_mlp: bool = False,
    ) -> None:
        C = config.n_embd
        self.shape = (B, T)
        self.recompute_mlp = recompute_mlp

        def buf(*shape: int) -> np.ndarray:
            return np.empty((B, T, *shape), dtype=dtype)

        self.x = [buf(C) for _ in range(config.n_layer + 1)]  # residual stream
        self.shared = SharedActivations(buf, C, config, recompute_mlp)
        self.blocks = [BlockActivations(buf, C, self.shared, config) for _ in range(config.n_layer)]
        self.lnf = buf(C) if head else None
        self._logits_shape = (B, T, config.Vp)
        self._dtype = dtype
        self.logits: np.ndarray | None = None  # made by the first plain head (logits_buffer)

    def logits_buffer(self) -> np.ndarray:
        """The (B, T, Vp) logits buffer, made on first use: only the plain head (``GPT.logits``,
        a forward with the head) writes it; training's fused head and loss needs none."""
        if self.logits is None:
            self.logits = np.empty(self._logits_shape, dtype=self._dtype)
        return self.logits

    @property
    def nbytes(self) -> int:
        arrays = [*self.x] + ([self.lnf] if self.lnf is not None else [])
        arrays += [a for a in vars(self.shared).values() if a is not None]
        for block in self.blocks:
            arrays += block.own()
        return sum(a.nbytes for a in arrays)


class SharedActivations:
    """The layer outputs backward does not keep, one buffer each for all the blocks (llm.c's
    ``recompute``): ``ln`` holds a block's ln_1 output, then its ln_2 output (without pre-LN:
    the copy of the stream a linear layer reads when the precision rounds its input in place);
    ``proj`` both c_proj outputs, which only the residual adds read (None without residual
    connections: a c_proj output is then the next value itself); ``fcg`` the GELU's output
    (B, T, 4C); with ``recompute_mlp``, ``x2`` the stream after attention (B, T, C) and ``fch``
    c_fc's output (B, T, 4C) too (else None: each block keeps its own). A block's backward
    writes ln_1, ln_2 and the GELU (and x2 and c_fc's output) again from the inputs it keeps
    (``block.recompute_*``, ``block.attention_output``): the same functions of the same inputs,
    so the same bits."""

    def __init__(
        self, buf: Callable[..., np.ndarray], C: int, config: GPTConfig, recompute_mlp: bool
    ) -> None:
        self.ln = buf(C)
        self.proj = buf(C) if config.residual else None
        self.fcg = buf(4 * C)
        self.x2 = buf(C) if recompute_mlp else None
        self.fch = buf(4 * C) if recompute_mlp else None


class BlockActivations:
    """One block's layer outputs, named after the layer that writes them: ``qkv``, ``atty``,
    ``x2`` and ``fch`` are the block's own (its backward reads them; with ``recompute_mlp`` x2
    and fch are shared); ``ln1``, ``ln2``, ``proj`` and ``fcg`` are ``shared``'s, the same
    arrays in every block. Post-LN also keeps each sublayer's sum, the layer norm's input
    (``sum1`` = x + f(x), ``sum2``; None for the other norms), for the layer norm's backward.

    It is also the block's wiring (``norm``, ``residual``: the config's), which decides where
    each output goes (:meth:`outputs`)."""

    def __init__(
        self,
        buf: Callable[..., np.ndarray],
        C: int,
        shared: SharedActivations,
        config: GPTConfig,
    ) -> None:
        self.norm, self.residual = config.norm, config.residual
        post = config.norm == "post"
        self.ln1 = shared.ln  # recomputed in backward from the block's input
        self.qkv = buf(3 * C)
        self.atty = buf(C)
        self.proj = shared.proj  # c_proj outputs: read by the residual add only
        self.sum1 = buf(C) if post else None  # ln_1's input x + f(x)
        # the MLP's input stream and c_fc's output: the block's own, or the shared ones its
        # backward writes again (from atty and the block's input; from ln_2)
        self.recompute_mlp = shared.fch is not None
        self.x2 = shared.x2 if shared.x2 is not None else buf(C)
        self.ln2 = shared.ln  # recomputed in backward from x2
        self.fch = shared.fch if shared.fch is not None else buf(4 * C)
        self.fcg = shared.fcg  # recomputed in backward from fch
        self.sum2 = buf(C) if post else None  # ln_2's input x2 + g(x2)

    def outputs(self, kept: np.ndarray | None, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where a sublayer whose result goes into ``out`` writes its c_proj output and its
        sum (the residual add's output): (branch, total). Post-LN normalizes the sum into
        ``out``, so the sum goes into ``kept`` (``sum1``/``sum2``), which its backward reads;
        else the sum is ``out`` itself. Without a residual the sum is the c_proj output, written
        there directly; with one the c_proj output goes into the shared ``proj``."""
        total = kept if self.norm == "post" else out
        return (self.proj if self.residual else total), total

    def own(self) -> list[np.ndarray]:
        """The buffers this block alone holds (the others are shared by every block)."""
        sums = [a for a in (self.sum1, self.sum2) if a is not None]
        mlp = [] if self.recompute_mlp else [self.x2, self.fch]
        return [self.qkv, self.atty, *mlp, *sums]


# the buffers of one block in BlockActivations that are its own, in units of C: qkv (3C), atty,
# x2 and fch (1 + 4C: shared instead with recompute_mlp), and post-LN's two sums; and those of
# SharedActivations, one set for all blocks: ln, proj (with a residual), fcg (4C)
BLOCK_ACTIVATION_WIDTH = 3 + 1
MLP_KEPT_WIDTH = 1 + 4
POST_NORM_WIDTH = 2
SHARED_ACTIVATION_WIDTH = 1 + 4
RESIDUAL_WIDTH = 1
# the backward's transients of one block besides attention's, in units of C, an upper bound:
# the gradients of its layers' outputs, each dropped once used (block_backward), so at most
# dfcg (4C, which dfch overwrites) or dqkv (3C) with a few of width C and a weight gradient
# before it is added (tests/test_recompute.py measures under 9)
BLOCK_BACKWARD_WIDTH = 4 + 3 + 3


def activation_width(config: GPTConfig, recompute_mlp: bool = False) -> int:
    """The activation buffers of :class:`Activations` (with ``lnf``) per row, in units of C:
    the L+1 streams, every block's own buffers, the shared ones, and ln_f."""
    block = BLOCK_ACTIVATION_WIDTH + (POST_NORM_WIDTH if config.norm == "post" else 0)
    shared = SHARED_ACTIVATION_WIDTH + (RESIDUAL_WIDTH if config.residual else 0)
    if recompute_mlp:
        shared += MLP_KEPT_WIDTH
    else:
        block += MLP_KEPT_WIDTH
    return (config.n_layer + 1) + config.n_layer * block + shared + 1


def model_bytes(config: GPTConfig, dtype: np.dtype | type = np.float32) -> int:
    """Bytes of a model's parameters and gradients (the flat buffers ``GPT`` allocates first),
    in closed form: nothing is allocated."""
    return 2 * config.parameter_count() * np.dtype(dtype).itemsize


def training_bytes(
    config: GPTConfig,
    B: int,
    T: int,
    dtype: np.dtype | type = np.float32,
    precision: str = "fp32",
    recompute_mlp: bool = False,
) -> int:
    """About the bytes one process needs to train ``config`` on (B, T) batches, in closed form.

    Parameters and gradients (:func:`model_bytes`), AdamW's two moments, the rounded compute
    copy of the weights under bf16/fp16, the forward's activations (:class:`Activations`: L+1
    residual streams, the layer outputs each block keeps for backward, the buffers all blocks
    share, and ln_f; :func:`activation_width`; ``recompute_mlp``: x2 and c_fc's outputs are not
    kept), what attention keeps for backward (the Numba kernels: two (B, NH, T) row statistics
    per layer; the NumPy reference: the probabilities (B, NH, T, T) per layer), and the
    backward's largest transients (the fused head and loss's row chunk and, under bf16/fp16, its
    (Vp, C) scratch; one block's gradients; attention's scores and their gradient, for the Numba
    kernels a chunk of (T, T) matrices of about 1 MiB,
    ``tinygradlm.kernels.attention.CHUNK_BYTES``, per thread). No (B, T, Vp) array is made: the
    logits, probabilities and dlogits exist one row chunk at a time (tinygradlm.ref.head_loss).
    Measured with tracemalloc on the tiny and small presets it is within 10% of the peak."""
    itemsize = np.dtype(dtype).itemsize
    N, C, L, Vp = config.parameter_count(), config.n_embd, config.n_layer, config.Vp
    weights = 2 * N if precision == "fp32" else 3 * N  # AdamW's m and v (+ the compute copy)
    rows = B * T
    matrices = B * config.n_head * T * T  # (B, NH, T, T)
    if backend.kernels_name() == "numpy":  # the probabilities kept, then scores and datt whole
        attention_kept, attention_scratch = matrices, matrices
    else:  # shift and inv (B, NH, T); a chunk of (T, T) matrices, at least one
        attention_kept = 2 * B * config.n_head * T
        attention_scratch = max(T * T, min(matrices, (1 << 20) // itemsize))
    forward = rows * activation_width(config, recompute_mlp) * C + L * attention_kept
    head = min(HEAD_CHUNK_ROWS, rows) * Vp + min(VOCAB_BLOCK, Vp) * C
    if precision != "fp32":
        head += Vp * C  # dwte summed whole before it is rounded
    backward = rows * BLOCK_BACKWARD_WIDTH * C + 2 * attention_scratch + head
    return model_bytes(config, dtype) + (weights + forward + backward) * itemsize
