"""The autograd witness: GPT-2 composed from the ``Tensor`` engine's primitive ops only.

It shares nothing with the hand-derived chain (``tinygradlm.model.block``) but the parameter
values, so when ``GPT.forward_backward(..., engine="autograd")`` and the fused engine agree on
the loss and every gradient, neither derivation is wrong in a way the other repeats.

For that to hold, every gradient here must come from rules a reader can check in one line each:
the witness uses only the ops in :data:`PRIMITIVE_OPS` (add, mul, div, exp, log, tanh, pow,
max, sum, matmul, reshape, transpose, indexing, where, …). The engine's fused ops —
``Tensor.softmax``, ``log_softmax``, ``gelu``, ``var`` and ``cross_entropy``, each a second hand
derivation of a formula the reference layers also derive by hand — are not used: softmax is
written as exp(x − max) / Σ, cross-entropy as the negative log-softmax gathered at the targets,
GELU from tanh, and layer norm's variance as the mean of the squared deviations. The GELU
constants are written out here from their definition rather than imported from ``ref``, so a
wrong constant there is not repeated here. ``tests/test_model_witness.py`` walks the graph of the
witness's loss and fails on any op outside the list, and checks each fused op against the
composition below.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..autograd import Tensor, where

# The ops whose vector-Jacobian products are one line each (their ``Tensor.op`` names; pow is
# recorded as "pow(p)").
PRIMITIVE_OPS = frozenset(
    {
        "add", "sub", "mul", "div", "neg", "exp", "log", "tanh", "sqrt", "pow", "max", "sum",
        "matmul", "reshape", "transpose", "broadcast_to", "getitem", "where",
    }
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# the layers, from primitives
# --------------------------------------------------------------------------------------------


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x − max x) / Σ exp(x − max x). The maximum stays in the graph: softmax does not
    change when every input moves by the same amount, so its gradient through the max is zero
    up to rounding."""
    e = (x - x.max(axis=axis, keepdims=True)).exp()
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """(x − max x) − log Σ exp(x − max x)."""
    z = x - x.max(axis=axis, keepdims=True)
    return z - z.exp().sum(axis=axis, keepdims=True).log()


def cross_entropy(logits: Tensor, targets: np.ndarray, ignore_index: int = -100) -> Tensor:
    """Mean of −log softmax(logits) at the targets over the positions not ``ignore_index``."""
    valid = targets != ignore_index
    safe = np.where(valid, targets, 0)
    rows = np.indices(targets.shape)
    picked = log_softmax(logits, axis=-1)[(*rows, safe)]  # a gather: (B, T)
    return -where(valid, picked, 0.0).sum() / float(valid.sum())


def gelu(x: Tensor) -> Tensor:
    """GPT-2's tanh GELU: ½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))."""
    return 0.5 * x * (1.0 + (math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)).tanh())


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """(x − mean) / √(mean((x − mean)²) + eps) · weight + bias over the last axis."""
    n = x.shape[-1]
    centered = x - x.sum(axis=-1, keepdims=True) * (1.0 / n)
    variance = (centered * centered).sum(axis=-1, keepdims=True) * (1.0 / n)
    return centered / (variance + eps).sqrt() * weight + bias


def attention(qkv: Tensor, n_head: int) -> Tensor:
    """Causal multi-head attention of (B, T, 3C) packed q, k, v: (B, T, C)."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    HS = C // n_head
    q, k, v = (
        qkv[..., j * C : (j + 1) * C].reshape(B, T, n_head, HS).transpose(0, 2, 1, 3)
        for j in range(3)
    )  # (B, NH, T, HS)
    att = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(HS))  # (B, NH, T, T)
    future = np.triu(np.ones((T, T), dtype=bool), k=1)  # position t must not see t' > t
    att = softmax(where(future, -np.inf, att), axis=-1)
    return (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)


def _crossentropy_layer(
    logits: Tensor, targets: np.ndarray, vocab_size: int | None = None, ignore_index: int = -100
) -> Tensor:
    V = logits.shape[-1] if vocab_size is None else vocab_size  # the padding is left out
    return cross_entropy(logits[..., :V], targets, ignore_index=ignore_index)


# Each layer of ``tinygradlm.ref`` with the arguments of its ``<layer>_forward`` (Tensors for the
# floating ones), composed from the primitives above: the witness of each hand-derived layer.
LAYERS = {
    "encoder": lambda idx, wte, wpe: wte[idx] + wpe[: idx.shape[1]],
    "layernorm": lambda x, weight, bias: layer_norm(x, weight, bias, eps=1e-5),
    "linear": lambda x, weight, bias=None: x @ weight if bias is None else x @ weight + bias,
    "attention": attention,
    "gelu": gelu,
    "residual": lambda a, b: a + b,
    "crossentropy": _crossentropy_layer,
}


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------


def witness_loss(
    model: Any, idx: np.ndarray, targets: np.ndarray, ignore_index: int
) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """The mean cross-entropy of ``model`` (a GPT, LoRA adapters included) on idx, targets
    (B, T) as a graph, with the leaf Tensors of the parameters and of the adapters (keyed like
    ``model.params`` and ``model.lora.params``), which share memory with the model's."""
    cfg = model.config
    T = idx.shape[1]
    eps = cfg.layer_norm_epsilon
    p = {name: Tensor(view, requires_grad=True) for name, view in model.params.items()}
    lora = model.lora
    adapters = {}
    if lora is not None:
        adapters = {name: Tensor(v, requires_grad=True) for name, v in lora.params.items()}

    def linear(x: Tensor, module: str) -> Tensor:  # x·W + b, and an adapter's scale·(x·A)·B
        y = x @ p[module + ".weight"] + p[module + ".bias"]
        if module + ".lora_A.weight" in adapters:
            A = adapters[module + ".lora_A.weight"].T  # (C_in, r)
            B = adapters[module + ".lora_B.weight"].T  # (r, C_out)
            y = y + ((x @ A) * lora.scale) @ B
        return y

    def ln(x: Tensor, module: str) -> Tensor:
        return layer_norm(x, p[module + ".weight"], p[module + ".bias"], eps)

    def attn(x: Tensor, h: str) -> Tensor:
        y = attention(linear(x, h + "attn.c_attn"), cfg.n_head)  # (B, T, C)
        return linear(y, h + "attn.c_proj")

    def mlp(x: Tensor, h: str) -> Tensor:
        return linear(gelu(linear(x, h + "mlp.c_fc")), h + "mlp.c_proj")

    x = p["wte.weight"][idx] + p["wpe.weight"][:T]  # (B, T, C)
    for i in range(cfg.n_layer):
        h = f"h.{i}."
        for f, norm in ((attn, h + "ln_1"), (mlp, h + "ln_2")):  # the block's two sublayers
            if cfg.norm == "pre":  # x + f(LN(x))
                y = f(ln(x, norm), h)
                x = x + y if cfg.residual else y
            elif cfg.norm == "post":  # LN(x + f(x))
                y = f(x, h)
                x = ln(x + y if cfg.residual else y, norm)
            else:  # x + f(x)
                y = f(x, h)
                x = x + y if cfg.residual else y
    if cfg.norm == "pre":
        x = ln(x, "ln_f")
    logits = x @ p["wte.weight"].T  # (B, T, Vp): the LM head is tied to the token embedding
    loss = cross_entropy(logits[..., : cfg.vocab_size], targets, ignore_index=ignore_index)
    return loss, p, adapters


def autograd_forward_backward(
    model: Any, idx: np.ndarray, targets: np.ndarray, ignore_index: int, scale: float
) -> float:
    """The mean cross-entropy of ``model`` on idx, targets (B, T); the gradient of ``scale``
    times it is added into ``model.grads`` (and ``model.lora.grads``)."""
    loss, p, adapters = witness_loss(model, idx, targets, ignore_index)
    (loss * scale).backward()
    for name, t in p.items():
        if t.grad is not None:
            model.grads[name] += t.grad
    for name, t in adapters.items():
        if t.grad is not None:
            model.lora.grads[name] += t.grad
    return float(loss.item())
