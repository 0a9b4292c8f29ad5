"""One transformer block, forward and backward, as llm.c writes it: ten layer calls.

    x2 = x + c_proj(attention(c_attn(ln_1(x))))
    out = x2 + c_proj(gelu(c_fc(ln_2(x2))))

The layer calls are :class:`~tinygradlm.model.layers.ModelLayers`' (precision rounding and LoRA
inside the linear layer). The same forward serves training (it returns the caches backward
needs), ``GPT.logits`` and decoding with a KV cache (nanochat's pattern: attention appends to
the cache when one is given).

As llm.c's ``recompute``, a block keeps for backward only what is expensive to recompute (its
input, qkv, attention's output, x2 and c_fc's output): ln_1, ln_2 and the GELU write into
buffers every block shares (``SharedActivations``), and the backward writes them again from
the kept inputs just before the linear layer that reads them needs them, with the same
functions and the same rounding: the same bits as the forward wrote.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .layers import ModelLayers
from .workspace import BlockActivations

BlockCache = tuple[Any, ...]


def block_forward(
    layers: ModelLayers,
    x: np.ndarray,
    layer: int,
    acts: BlockActivations,
    out: np.ndarray,
    kv_cache: Any = None,
    keep: bool = False,
) -> tuple[np.ndarray, BlockCache | None]:
    """Block ``layer`` on the residual stream x (B, T, C), written into ``out`` (B, T, C); the
    layer outputs go into ``acts``. Returns ``out`` and, when ``keep``, the block's caches."""
    h, L = f"h.{layer}.", layers.L
    ln1, c1 = layers.layernorm(x, h + "ln_1", out=acts.ln1)  # (B, T, C)
    qkv, c2 = layers.linear(ln1, h + "attn.c_attn", out=acts.qkv, keep=keep)  # (B, T, 3C)
    atty, c3 = layers.attention(qkv, layer, kv_cache, out=acts.atty)  # (B, T, C)
    attproj, c4 = layers.linear(atty, h + "attn.c_proj", out=acts.proj, keep=keep)  # (B, T, C)
    x2, _ = L.residual_forward(x, attproj, out=acts.x2)  # (B, T, C)
    ln2, c5 = layers.layernorm(x2, h + "ln_2", out=acts.ln2)  # (B, T, C)
    fch, c6 = layers.linear(ln2, h + "mlp.c_fc", out=acts.fch, keep=keep)  # (B, T, 4C)
    fcg, c7 = L.gelu_forward(fch, out=acts.fcg)  # (B, T, 4C)
    fcproj, c8 = layers.linear(fcg, h + "mlp.c_proj", out=acts.proj, keep=keep)  # (B, T, C)
    out, _ = L.residual_forward(x2, fcproj, out=out)  # (B, T, C)
    return out, ((x, acts, c1, c2, c3, c4, c5, c6, c7, c8) if keep else None)


def recompute_layernorm(
    layers: ModelLayers, x: np.ndarray, module: str, out: np.ndarray
) -> np.ndarray:
    """The layer norm's output into ``out`` again, as the forward left it: computed from the
    same input, then rounded in place as the linear layer reading it rounded its input."""
    layers.layernorm(x, module, out=out)
    return layers.linear_input(out)


def recompute_gelu(layers: ModelLayers, fch: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The GELU's output into ``out`` again, as the forward left it (rounded in place by
    mlp.c_proj, which reads it)."""
    layers.L.gelu_forward(fch, out=out)
    return layers.linear_input(out)


def block_backward(layers: ModelLayers, dout: np.ndarray, cache: BlockCache) -> np.ndarray:
    """The gradient (B, T, C) of the block's input, from that of its output ``dout`` (B, T, C);
    every parameter gradient is added (+=) into the model's flat buffers. The shared buffers
    (ln_1, ln_2, the GELU's output) are written again from the block's kept inputs before the
    linear layers that read them."""
    L, P = layers.L, layers.precision
    x, acts, c1, c2, c3, c4, c5, c6, c7, c8 = cache  # c1, c5: (the layer norm's name, its cache)
    # in the forward pass this was: out = x2 + mlp(ln2(x2)); the residual passes dout to both
    dout_16 = P.matmul_input(dout)  # a copy: dout itself goes on, in float32, to dx2
    recompute_gelu(layers, acts.fch, out=acts.fcg)  # mlp.c_proj's input (B, T, 4C)
    dfcg = layers.linear_backward(dout_16, c8)  # (B, T, 4C)
    (dfch,) = L.gelu_backward(dfcg, c7)
    recompute_layernorm(layers, acts.x2, c5[0], out=acts.ln2)  # mlp.c_fc's input (B, T, C)
    dln2 = layers.linear_backward(P.gradient(dfch), c6)  # (B, T, C)
    dx2 = layers.layernorm_backward(dln2, c5)  # (B, T, C)
    dx2 += dout
    # and before that: x2 = x + attn(ln1(x))
    dx2_16 = P.matmul_input(dx2)  # a copy: dx2 goes on, in float32, to dx
    datty = layers.linear_backward(dx2_16, c4)  # (B, T, C)
    (dqkv,) = L.attention_backward(datty, c3)
    recompute_layernorm(layers, x, c1[0], out=acts.ln1)  # attn.c_attn's input (B, T, C)
    dln1 = layers.linear_backward(P.gradient(dqkv), c2)  # (B, T, C)
    dx = layers.layernorm_backward(dln1, c1)  # (B, T, C)
    dx += dx2
    return dx
