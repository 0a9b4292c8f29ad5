"""One transformer block, forward and backward, as llm.c writes it: ten layer calls.

GPT-2's block (norm "pre", with residual connections):

    x2 = x + c_proj(attention(c_attn(ln_1(x))))
    out = x2 + c_proj(gelu(c_fc(ln_2(x2))))

Each of the two sublayers (f = attention's, g = the MLP's) is wired in two steps that the
config's ``norm`` and ``residual`` decide (``GPTConfig``): its *input* (:func:`sublayer_input`:
pre-LN normalizes the stream; post-LN and no norm read the stream itself) and its *output*
(:func:`sublayer_output`: the residual add or not, then post-LN's layer norm or not). So post-LN
is x2 = ln_1(x + f(x)), no norm x2 = x + f(x), and without a residual the ``x +`` is gone.

The layer calls are :class:`~tinygradlm.model.layers.ModelLayers`' (precision rounding and LoRA
inside the linear layer). The same forward serves training (it returns the caches backward
needs), ``GPT.logits`` and decoding with a KV cache (nanochat's pattern: attention appends to
the cache when one is given).

As llm.c's ``recompute``, a block keeps for backward only what is expensive to recompute (its
input, qkv, attention's output, x2, c_fc's output, and post-LN's sums): ln_1, ln_2 and the GELU
write into buffers every block shares (``SharedActivations``), and the backward writes them
again from the kept inputs just before the linear layer that reads them needs them, with the
same functions and the same rounding: the same bits as the forward wrote. With
``GPT.recompute_mlp`` the MLP sublayer keeps nothing of its own: its input stream x2 and c_fc's
output (B, T, 4C, the largest a block keeps) are shared too, and the backward computes them
again, x2 from attention's output and the block's input (:func:`attention_output`), c_fc's
output from ln_2's, at the price of those two matrix products (attn.c_proj's and mlp.c_fc's).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .layers import LayerCache, ModelLayers
from .workspace import BlockActivations

BlockCache = tuple[Any, ...]


def sublayer_input(
    layers: ModelLayers, x: np.ndarray, module: str, norm: str, out: np.ndarray | None
) -> tuple[np.ndarray, LayerCache | None]:
    """What a sublayer's first linear layer (or the head) reads from the stream x (B, T, C):
    for norm "pre" the layer norm ``module`` of x, written into ``out``, and its cache; else x
    itself and None. The linear layer rounds its input in place under bf16/fp16, and the stream
    must keep its float32 values (the residual add and the backward read them): then x is
    copied into ``out`` (a new array when None) first."""
    if norm == "pre":
        return layers.layernorm(x, module, out=out)
    if not layers.precision.enabled:
        return x, None
    if out is None:
        return x.copy(), None
    np.copyto(out, x)
    return out, None


def sublayer_output(
    layers: ModelLayers,
    x: np.ndarray,
    branch: np.ndarray,
    total: np.ndarray,
    module: str,
    acts: BlockActivations,
    out: np.ndarray,
) -> tuple[np.ndarray, LayerCache | None]:
    """The stream after a sublayer, from its input x and its c_proj output ``branch`` (both
    (B, T, C)), into ``out``: ``total`` = x + branch (with a residual; ``branch`` itself is
    ``total`` without one, see ``BlockActivations.outputs``), then for post-LN the layer norm
    ``module`` of it. Returns ``out`` and the layer norm's cache (None without one)."""
    if acts.residual:
        layers.L.residual_forward(x, branch, out=total)
    if acts.norm == "post":
        return layers.layernorm(total, module, out=out)
    return total, None


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
    h, L, norm = f"h.{layer}.", layers.L, acts.norm
    ln1, c1 = sublayer_input(layers, x, h + "ln_1", norm, out=acts.ln1)  # (B, T, C)
    qkv, c2 = layers.linear(ln1, h + "attn.c_attn", out=acts.qkv, keep=keep)  # (B, T, 3C)
    atty, c3 = layers.attention(qkv, layer, kv_cache, out=acts.atty)  # (B, T, C)
    x2, c4, c5 = attention_output(layers, x, atty, h, acts, keep)  # (B, T, C)
    ln2, c6 = sublayer_input(layers, x2, h + "ln_2", norm, out=acts.ln2)  # (B, T, C)
    fch, c7 = layers.linear(ln2, h + "mlp.c_fc", out=acts.fch, keep=keep)  # (B, T, 4C)
    fcg, c8 = L.gelu_forward(fch, out=acts.fcg)  # (B, T, 4C)
    branch, total = acts.outputs(acts.sum2, out)
    fcproj, c9 = layers.linear(fcg, h + "mlp.c_proj", out=branch, keep=keep)  # (B, T, C)
    out, c10 = sublayer_output(layers, x2, fcproj, total, h + "ln_2", acts, out)  # (B, T, C)
    return out, ((x, h, acts, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10) if keep else None)


def attention_output(
    layers: ModelLayers, x: np.ndarray, atty: np.ndarray, h: str, acts: BlockActivations, keep: bool
) -> tuple[np.ndarray, LayerCache, LayerCache | None]:
    """The stream after the attention sublayer, x2 (B, T, C), into ``acts.x2``: attn.c_proj of
    attention's output ``atty`` (B, T, C), then :func:`sublayer_output` with the block's input
    x. Returns x2 and the two caches (c_proj's, and post-LN's layer norm's or None). With
    ``recompute_mlp`` the backward calls it again (``keep`` False) to write x2 back, the same
    products of the same inputs: the same bits."""
    branch, total = acts.outputs(acts.sum1, acts.x2)
    attproj, c4 = layers.linear(atty, h + "attn.c_proj", out=branch, keep=keep)  # (B, T, C)
    x2, c5 = sublayer_output(layers, x, attproj, total, h + "ln_1", acts, acts.x2)
    return x2, c4, c5


def recompute_input(
    layers: ModelLayers, x: np.ndarray, module: str, norm: str, out: np.ndarray
) -> np.ndarray:
    """A sublayer's input (:func:`sublayer_input`) into ``out`` again, as the forward left it:
    computed from the same stream, then rounded in place as the linear layer reading it
    rounded its input."""
    return layers.linear_input(sublayer_input(layers, x, module, norm, out)[0])


def recompute_gelu(layers: ModelLayers, fch: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The GELU's output into ``out`` again, as the forward left it (rounded in place by
    mlp.c_proj, which reads it)."""
    layers.L.gelu_forward(fch, out=out)
    return layers.linear_input(out)


def input_backward(layers: ModelLayers, dinput: np.ndarray, cache: LayerCache | None) -> np.ndarray:
    """The stream's gradient through :func:`sublayer_input`, from that of its output."""
    return dinput if cache is None else layers.layernorm_backward(dinput, cache)


def output_backward(layers: ModelLayers, dout: np.ndarray, cache: LayerCache | None) -> np.ndarray:
    """The gradient of :func:`sublayer_output`'s ``total`` (the sum, or the c_proj output
    without a residual), from that of its output: through post-LN's layer norm, else dout."""
    return dout if cache is None else layers.layernorm_backward(dout, cache)


def block_backward(layers: ModelLayers, dout: np.ndarray, cache: BlockCache) -> np.ndarray:
    """The gradient (B, T, C) of the block's input, from that of its output ``dout`` (B, T, C);
    every parameter gradient is added (+=) into the model's flat buffers. The shared buffers
    (ln_1, ln_2, the GELU's output) are written again from the block's kept inputs before the
    linear layers that read them."""
    L, P = layers.L, layers.precision
    x, h, acts, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10 = cache
    # in the forward pass this was: out = [post-LN] (x2 + mlp(input(x2))); with the residual the
    # sum passes its gradient to both
    dtotal = output_backward(layers, dout, c10)  # (B, T, C)
    dtotal_16 = P.matmul_input(dtotal)  # a copy: dtotal itself goes on, in float32, to dx2
    if acts.recompute_mlp:  # the MLP's input stream was not kept: the forward's, again
        attention_output(layers, x, acts.atty, h, acts, keep=False)  # x2 (B, T, C)
    ln2 = recompute_input(layers, acts.x2, h + "ln_2", acts.norm, out=acts.ln2)  # c_fc's input
    if acts.recompute_mlp:  # c_fc's output was not kept: the forward's product, again
        layers.linear(ln2, h + "mlp.c_fc", out=acts.fch, keep=False)  # (B, T, 4C)
    recompute_gelu(layers, acts.fch, out=acts.fcg)  # mlp.c_proj's input (B, T, 4C)
    dfcg = layers.linear_backward(dtotal_16, c9)  # (B, T, 4C)
    (dfch,) = L.gelu_backward(dfcg, c8, out=dfcg)  # over dfcg: one (B, T, 4C) transient
    dln2 = layers.linear_backward(P.gradient(dfch), c7)  # (B, T, C)
    del dfcg, dfch, dtotal_16  # each gradient goes as soon as it is used: the block's
    dx2 = input_backward(layers, dln2, c6)  # (B, T, C)  transients do not pile up
    del dln2
    if acts.residual:
        dx2 += dtotal
    # and before that: x2 = [post-LN] (x + attn(input(x)))
    dtotal = output_backward(layers, dx2, c5)  # (B, T, C)
    dtotal_16 = P.matmul_input(dtotal)  # a copy: dtotal goes on, in float32, to dx
    datty = layers.linear_backward(dtotal_16, c4)  # (B, T, C)
    del dx2, dtotal_16
    (dqkv,) = L.attention_backward(datty, c3)
    del datty
    recompute_input(layers, x, h + "ln_1", acts.norm, out=acts.ln1)  # attn.c_attn's input
    dln1 = layers.linear_backward(P.gradient(dqkv), c2)  # (B, T, C)
    del dqkv
    dx = input_backward(layers, dln1, c1)  # (B, T, C)
    if acts.residual:
        dx += dtotal
    return dx
