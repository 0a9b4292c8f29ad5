"""Each GPT-2 layer of ``tinygradlm.ref`` on ``torch.nn.functional``, as an independent oracle.

``torch_layers(torch)[layer]`` takes the arguments of ``<layer>_forward`` as torch tensors (HF
layouts: a linear weight is (in, out)) and returns the output, so PyTorch's autograd gives every
gradient to compare with the hand-derived backward. Used by the tests (skipped without PyTorch)
and by ``bench/verification.py``. PyTorch is imported by the caller: it is never a dependency of
tinygradlm.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def torch_layers(torch: Any) -> dict[str, Callable[..., Any]]:
    """The layers by name, written with ``torch``'s functional API."""
    F = torch.nn.functional

    def attention(qkv: Any, n_head: int) -> Any:
        B, T, C3 = qkv.shape
        C = C3 // 3
        q, k, v = (
            qkv[..., i * C : (i + 1) * C].reshape(B, T, n_head, C // n_head).transpose(1, 2)
            for i in range(3)
        )  # (B, NH, T, HS)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # scale 1/sqrt(HS)
        return y.transpose(1, 2).reshape(B, T, C)

    def crossentropy(
        logits: Any, targets: Any, vocab_size: int | None = None, ignore_index: int = -100
    ) -> Any:
        V = logits.shape[-1] if vocab_size is None else vocab_size
        return F.cross_entropy(
            logits[..., :V].reshape(-1, V), targets.reshape(-1), ignore_index=ignore_index
        )

    return {
        "encoder": lambda idx, wte, wpe: F.embedding(idx, wte) + wpe[: idx.shape[1]],
        "layernorm": lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b, eps=1e-5),
        # torch keeps a linear weight as (out, in); ours is HF's (in, out)
        "linear": lambda x, weight, bias=None: F.linear(x, weight.T, bias),
        "attention": attention,
        "gelu": lambda x: F.gelu(x, approximate="tanh"),
        "residual": lambda a, b: a + b,
        "crossentropy": crossentropy,
    }
