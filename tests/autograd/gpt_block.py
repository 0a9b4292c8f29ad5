"""A one-layer GPT (embedding, layer norm, causal self-attention, GELU MLP, tied head,
cross-entropy) written once against a tiny backend interface, so that our engine and PyTorch run
the same code: the oracle tests compare their gradients and their Hessian-vector products."""

import numpy as np

from tinygradlm.autograd import Tensor, cross_entropy, embedding, layer_norm, masked_fill, softmax


def block_loss(ops, p, idx, targets, B, T, C, NH):
    """Embedding → layer norm → causal self-attention → residual → GELU MLP → tied head → loss."""
    HS = C // NH
    x = ops.embed(idx, p["wte"]) + p["wpe"][:T]  # (B, T, C)
    h = ops.layer_norm(x, p["ln_w"], p["ln_b"])
    qkv = h @ p["attn_w"] + p["attn_b"]  # (B, T, 3C)
    q, k, v = qkv[..., :C], qkv[..., C : 2 * C], qkv[..., 2 * C :]
    q = ops.permute(q.reshape(B, T, NH, HS), 0, 2, 1, 3)  # (B, NH, T, HS)
    k = ops.permute(k.reshape(B, T, NH, HS), 0, 2, 1, 3)
    v = ops.permute(v.reshape(B, T, NH, HS), 0, 2, 1, 3)
    att = (q @ ops.permute(k, 0, 1, 3, 2)) * float(1.0 / np.sqrt(HS))  # (B, NH, T, T)
    att = ops.softmax(ops.masked_fill(att, np.triu(np.ones((T, T), bool), 1), -np.inf))
    y = ops.permute(att @ v, 0, 2, 1, 3).reshape(B, T, C)
    x = x + y @ p["proj_w"]
    x = x + ops.gelu(x @ p["fc_w"]) @ p["fc2_w"]
    logits = ops.layer_norm(x, p["lnf_w"], p["lnf_b"]) @ p["wte"].T  # (B, T, V)
    return ops.cross_entropy(logits, targets)


def block_problem(B=2, T=5, C=8, NH=2, V=11, seed=0):
    """Float64 parameters, token ids and targets (one ignored position) for :func:`block_loss`."""
    rng = np.random.default_rng(seed)
    shapes = {
        "wte": (V, C), "wpe": (T + 2, C), "ln_w": (C,), "ln_b": (C,), "attn_w": (C, 3 * C),
        "attn_b": (3 * C,), "proj_w": (C, C), "fc_w": (C, 4 * C), "fc2_w": (4 * C, C),
        "lnf_w": (C,), "lnf_b": (C,),
    }  # fmt: skip
    arrays = {k: rng.normal(scale=0.5, size=s) for k, s in shapes.items()}
    idx = rng.integers(0, V, size=(B, T))
    targets = rng.integers(0, V, size=(B, T))
    targets[0, 1] = -1  # one ignored position
    return arrays, idx, targets, (B, T, C, NH)


class Ours:
    permute = staticmethod(lambda x, *axes: x.transpose(axes))
    embed = staticmethod(embedding)
    layer_norm = staticmethod(layer_norm)
    softmax = staticmethod(lambda x: softmax(x, -1))
    masked_fill = staticmethod(masked_fill)
    gelu = staticmethod(lambda x: x.gelu())
    cross_entropy = staticmethod(lambda logits, t: cross_entropy(logits, t, ignore_index=-1))


def torch_ops(torch):
    """The same interface on PyTorch."""
    F = torch.nn.functional

    class Torch:
        permute = staticmethod(lambda x, *axes: x.permute(*axes))
        embed = staticmethod(lambda idx, w: w[torch.as_tensor(idx)])
        layer_norm = staticmethod(lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b))
        softmax = staticmethod(lambda x: torch.softmax(x, -1))
        masked_fill = staticmethod(lambda x, m, v: x.masked_fill(torch.as_tensor(m), v))
        gelu = staticmethod(lambda x: F.gelu(x, approximate="tanh"))
        cross_entropy = staticmethod(
            lambda logits, t: F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                torch.as_tensor(t).reshape(-1),
                ignore_index=-1,
            )
        )

    return Torch


def ours_params(arrays):
    return {k: Tensor(a, requires_grad=True) for k, a in arrays.items()}
