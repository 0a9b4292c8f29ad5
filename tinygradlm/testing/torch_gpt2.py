"""A straightforward PyTorch GPT-2, written from its definition, as an independent oracle.

It takes a state dict in HF GPT-2 names and layouts (``GPT.state_dict()``, as torch tensors) and
returns the mean cross-entropy, so its autograd gives every gradient to compare with ours. Used
by the tests (skipped without PyTorch) and by ``bench/step.py`` as the speed anchor. PyTorch is
imported by the caller: it is never a dependency of tinygradlm.
"""

from __future__ import annotations

import math
from typing import Any


def gpt2_loss(
    torch: Any, sd: dict[str, Any], idx: Any, targets: Any, config: Any, ignore_index: int = -100
) -> Any:
    """Mean cross-entropy of GPT-2 (HF layout: Conv1D weights are (in, out), ``x @ W + b``),
    or of the block wiring ``config.norm`` / ``config.residual`` says (pre-LN x + f(LN(x)),
    post-LN LN(x + f(x)), no norm x + f(x); without a residual no ``x +``)."""
    F = torch.nn.functional
    B, T = idx.shape
    C, NH = config.n_embd, config.n_head
    eps = config.layer_norm_epsilon
    x = sd["wte.weight"][idx] + sd["wpe.weight"][:T]
    future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
    norm, residual = config.norm, config.residual

    def ln(x: Any, module: str) -> Any:
        return F.layer_norm(x, (C,), sd[module + ".weight"], sd[module + ".bias"], eps)

    def attn(a: Any, h: str) -> Any:
        q, k, v = (a @ sd[h + "attn.c_attn.weight"] + sd[h + "attn.c_attn.bias"]).split(C, dim=2)
        q, k, v = (t.view(B, T, NH, C // NH).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // NH)
        y = (att.masked_fill(future, float("-inf")).softmax(-1) @ v).transpose(1, 2)
        return y.reshape(B, T, C) @ sd[h + "attn.c_proj.weight"] + sd[h + "attn.c_proj.bias"]

    def mlp(m: Any, h: str) -> Any:
        m = F.gelu(m @ sd[h + "mlp.c_fc.weight"] + sd[h + "mlp.c_fc.bias"], approximate="tanh")
        return m @ sd[h + "mlp.c_proj.weight"] + sd[h + "mlp.c_proj.bias"]

    for i in range(config.n_layer):
        h = f"h.{i}."
        for f, module in ((attn, h + "ln_1"), (mlp, h + "ln_2")):
            y = f(ln(x, module) if norm == "pre" else x, h)
            total = x + y if residual else y
            x = ln(total, module) if norm == "post" else total
    if norm == "pre":
        x = ln(x, "ln_f")
    logits = x @ sd["wte.weight"].T  # the LM head is tied to the token embedding
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=ignore_index
    )
