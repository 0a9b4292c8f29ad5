"""A sharpness monitor: the top Hessian eigenvalue of a small GPT's loss during training.

The largest eigenvalue λ_max of the loss Hessian ("sharpness") says how curved the loss is along
its steepest direction. Plain gradient descent with step η is stable on a quadratic only while
λ_max < 2/η, and in practice training drives λ_max up to about 2/η and holds it there (the "edge
of stability", Cohen et al., 2021). Computing λ_max needs no Hessian: power iteration only
needs products H·v, and each is one double backward through the engine
(``tinygradlm.autograd.hvp``, see docs/higher_order.md).

The model is a one-layer GPT (token and position embeddings, layer norm, causal self-attention,
GELU MLP, final layer norm, tied head) written with Tensor ops, in float64, trained by full-batch
gradient descent on a fixed batch of a learnable toy sequence task. Every ``--every`` steps it
prints the loss, λ_max (power iteration to a relative change below 1e-6, shifted when the
dominant eigenvalue is negative) and the residual |H·v − λ·v| / |λ| of the final vector, which
checks the estimate.

    python bench/sharpness.py [--steps 200] [--lr 0.5] [--every 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tinygradlm.autograd import Tensor, cross_entropy, embedding, hvp, layer_norm, masked_fill

B, T, C, V = 8, 8, 16, 12  # batch, sequence length, width, vocabulary


def init_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    shapes = {
        "wte": (V, C), "wpe": (T, C), "ln_w": (C,), "ln_b": (C,), "attn_w": (C, 3 * C),
        "proj_w": (C, C), "fc_w": (C, 4 * C), "fc2_w": (4 * C, C), "lnf_w": (C,), "lnf_b": (C,),
    }  # fmt: skip
    params = {k: rng.normal(scale=0.3, size=s) for k, s in shapes.items()}
    for k in ("ln_w", "lnf_w"):
        params[k] = 1.0 + params[k] * 0.1
    return params


def gpt_loss(p: dict[str, Tensor], idx: np.ndarray, targets: np.ndarray) -> Tensor:
    """One-layer GPT with a single attention head: (B, T) token ids -> mean cross-entropy."""
    x = embedding(idx, p["wte"]) + p["wpe"]  # (B, T, C)
    q, k, v = np.split(np.arange(3 * C), 3)
    qkv = layer_norm(x, p["ln_w"], p["ln_b"]) @ p["attn_w"]  # (B, T, 3C)
    att = (qkv[..., q] @ qkv[..., k].transpose(0, 2, 1)) * float(1 / np.sqrt(C))  # (B, T, T)
    att = masked_fill(att, np.triu(np.ones((T, T), bool), 1), -np.inf).softmax(-1)
    x = x + (att @ qkv[..., v]) @ p["proj_w"]
    x = x + (x @ p["fc_w"]).gelu() @ p["fc2_w"]
    logits = layer_norm(x, p["lnf_w"], p["lnf_b"]) @ p["wte"].T  # (B, T, V)
    return cross_entropy(logits, targets)


def power_iteration(hv_of, v, shift=0.0, max_iters=300, tol=1e-6):
    """The dominant eigenvalue of H − shift·I and its vector, from products H·v alone.

    Returns (λ + shift, the vector, |H·v − λ·v| / |λ| for the returned λ, iterations).
    """
    lam = 0.0
    for iters in range(1, max_iters + 1):  # noqa: B007 (returned)
        hv = [h - shift * u for h, u in zip(hv_of(v), v, strict=True)]
        new = sum((a * b).sum() for a, b in zip(v, hv, strict=True))  # Rayleigh quotient vᵀHv
        residual = np.sqrt(sum(((h - new * u) ** 2).sum() for h, u in zip(hv, v, strict=True)))
        norm = np.sqrt(sum((h * h).sum() for h in hv))
        v = [h / norm for h in hv]
        done = abs(new - lam) < tol * abs(new)
        lam = new
        if done:
            break
    return lam + shift, v, residual / abs(lam + shift), iters


def top_eigenvalue(loss_of, params, rng):
    """λ_max, the largest (not the largest in magnitude) Hessian eigenvalue at ``params``.

    Power iteration finds the eigenvalue of largest magnitude, λ₁. If that is negative (a
    saddle direction dominates), the largest one is found by a second run on H − λ₁·I, whose
    eigenvalues λ − λ₁ are all ≥ 0 with the largest at λ_max.
    """
    names = sorted(params)
    xs = [params[k] for k in names]

    def hv_of(v):
        return hvp(lambda *ps: loss_of(dict(zip(names, ps, strict=True))), xs, v)

    v = [rng.normal(size=x.shape) for x in xs]
    lam, _, residual, iters = power_iteration(hv_of, v)
    if lam < 0:
        lam, _, residual, more = power_iteration(hv_of, v, shift=lam)
        iters += more
    return lam, residual, iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    params = init_params(rng)
    # the toy task: each sequence counts up by a fixed stride from a random start, mod V
    start, stride = rng.integers(0, V, size=(B, 1)), rng.integers(1, 4, size=(B, 1))
    seq = (start + stride * np.arange(T + 1)) % V
    idx, targets = seq[:, :-1], seq[:, 1:]

    def loss_of(p):
        return gpt_loss(p, idx, targets)

    n = sum(a.size for a in params.values())
    print(f"one-layer GPT, {n} parameters, float64, full-batch GD with lr {args.lr} "
          f"(stable while λ_max < 2/lr = {2 / args.lr:.2f})")  # fmt: skip
    print(f"{'step':>5}{'loss':>10}{'λ_max':>10}{'residual':>10}{'iters':>7}{'s':>7}")
    start_time = time.perf_counter()
    for step in range(args.steps + 1):
        leaves = {k: Tensor(a, requires_grad=True) for k, a in params.items()}
        loss = loss_of(leaves)
        if step % args.every == 0:
            t0 = time.perf_counter()
            lam, residual, iters = top_eigenvalue(loss_of, params, rng)
            seconds = time.perf_counter() - t0
            print(f"{step:>5}{loss.item():>10.4f}{lam:>10.3f}{residual:>10.1e}{iters:>7}"
                  f"{seconds:>7.2f}")  # fmt: skip
        loss.backward()
        params = {k: a - args.lr * leaves[k].grad for k, a in params.items()}
    print(f"total {time.perf_counter() - start_time:.1f} s")


if __name__ == "__main__":
    main()
