"""The autograd witness: GPT-2 composed from the ``Tensor`` engine's primitive ops.

It shares nothing with the hand-derived chain (``tinygradlm.model.block``) but the parameter
values, so when ``GPT.forward_backward(..., engine="autograd")`` and the fused engine agree on
the loss and every gradient, neither derivation is wrong in a way the other repeats (tinygrad's
habit: the gradients of compositions come from about twenty primitive rules).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..autograd import Tensor, cross_entropy, embedding, layer_norm, masked_fill, softmax


def autograd_forward_backward(
    model: Any, idx: np.ndarray, targets: np.ndarray, ignore_index: int, scale: float
) -> float:
    """The mean cross-entropy of ``model`` (a GPT, LoRA adapters included) on idx, targets
    (B, T); the gradient of ``scale`` times it is added into ``model.grads`` (and
    ``model.lora.grads``)."""
    cfg = model.config
    B, T = idx.shape
    C, NH, HS = cfg.n_embd, cfg.n_head, cfg.head_size
    eps = cfg.layer_norm_epsilon
    p = {name: Tensor(view, requires_grad=True) for name, view in model.params.items()}
    lora = model.lora
    adapters = {}
    if lora is not None:
        adapters = {name: Tensor(v, requires_grad=True) for name, v in lora.params.items()}

    def linear(x: Any, module: str) -> Any:  # x·W + b, and an adapter's scale·(x·A)·B
        y = x @ p[module + ".weight"] + p[module + ".bias"]
        if module + ".lora_A.weight" in adapters:
            A = adapters[module + ".lora_A.weight"].T  # (C_in, r)
            B = adapters[module + ".lora_B.weight"].T  # (r, C_out)
            y = y + ((x @ A) * lora.scale) @ B
        return y

    future = np.triu(np.ones((T, T), dtype=bool), k=1)  # position t must not see t' > t

    x = embedding(idx, p["wte.weight"]) + p["wpe.weight"][:T]  # (B, T, C)
    for i in range(cfg.n_layer):
        h = f"h.{i}."
        a = layer_norm(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"], eps)
        qkv = linear(a, h + "attn.c_attn")  # (B, T, 3C)
        q, k, v = (
            qkv[..., j * C : (j + 1) * C].reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
            for j in range(3)
        )  # (B, NH, T, HS)
        att = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(HS))  # (B, NH, T, T)
        att = softmax(masked_fill(att, future, -np.inf), axis=-1)
        y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        x = x + linear(y, h + "attn.c_proj")
        m = layer_norm(x, p[h + "ln_2.weight"], p[h + "ln_2.bias"], eps)
        m = linear(m, h + "mlp.c_fc").gelu()
        x = x + linear(m, h + "mlp.c_proj")
    x = layer_norm(x, p["ln_f.weight"], p["ln_f.bias"], eps)
    logits = x @ p["wte.weight"].T  # (B, T, Vp)
    loss = cross_entropy(logits[..., : cfg.vocab_size], targets, ignore_index=ignore_index)
    (loss * scale).backward()
    for name, t in p.items():
        if t.grad is not None:
            model.grads[name] += t.grad
    for name, t in adapters.items():
        if t.grad is not None:
            lora.grads[name] += t.grad
    return float(loss.item())
