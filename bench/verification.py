"""The verification table: every gradient of a GPT-2-shaped model, checked by every independent
path, with the worst error each path measured (the tables in docs/verification.md).

A GPT-2-shaped model (GPT-2's blocks, tied LM head and padded vocabulary, at a width that crosses
the Numba kernels' 64-column blocks) is given random weights, and the gradient of its loss on one
batch is computed by the fused engine with the NumPy reference layers in float64: the gradient
under test. Each other path computes the same gradient its own way:

- finite differences: a fourth-order central stencil, (−f(x+2h) + 8f(x+h) − 8f(x−h) + f(x−2h)) / 12h
  with h = 1e-3, on sampled elements of every tensor (the largest-gradient ones and random ones);
  its own truncation and rounding error is about 1e-12 of the loss here;
- the primitive-composed autograd witness (``engine="autograd"``: softmax, cross-entropy, GELU and
  variance built from one-line VJPs, tinygradlm.model.witness);
- PyTorch's autograd on a GPT-2 written from its definition (tinygradlm.testing.torch_gpt2), when
  PyTorch is installed;
- the Numba twin (the fused engine with tinygradlm.kernels).

In float32 each path's gradient is compared with the float64 reference gradient: the error that
float32 arithmetic costs each implementation. Every figure is max |a − b| / max |b| over the
tensor (the worst error relative to the tensor's largest gradient).

    python bench/verification.py                    # both tables, as markdown
    python bench/verification.py --layers 1 --width 32 --samples 4    # a quick look
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tinygradlm import backend
from tinygradlm.model import GPT, GPTConfig

H = 1e-3  # the stencil's step: truncation O(h⁴) ≈ 1e-12, rounding ≈ 1e-16·|loss|/h ≈ 1e-13


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a − b| / max |b|: the worst error relative to the largest gradient of the tensor."""
    scale = float(np.abs(b).max())
    return float(np.abs(a.astype(np.float64) - b).max()) / (scale if scale > 0 else 1.0)


def build(args: argparse.Namespace) -> tuple[GPT, np.ndarray, np.ndarray]:
    config = GPTConfig(
        vocab_size=args.vocab,
        padded_vocab_size=args.vocab + (-args.vocab % 8),
        block_size=args.seq,
        n_layer=args.layers,
        n_head=args.heads,
        n_embd=args.width,
    )
    model = GPT(config, seed=0, dtype=np.float64)
    rng = np.random.default_rng(1)
    model.flat_params += rng.normal(0, 0.05, size=model.flat_params.shape)  # off the init
    idx = rng.integers(0, config.vocab_size, size=(args.batch, args.seq))
    targets = rng.integers(0, config.vocab_size, size=(args.batch, args.seq))
    targets[0, :3] = -100  # ignored positions, as padding in fine-tuning
    return model, idx, targets


def gradients(model: GPT, idx: np.ndarray, targets: np.ndarray, kernels: str, engine: str) -> dict:
    with backend.use_kernels(kernels):
        _, grads = model.forward_backward(idx, targets, engine=engine)
    return {name: g.copy() for name, g in grads.items()}


def finite_differences(
    model: GPT, idx: np.ndarray, targets: np.ndarray, name: str, picks: np.ndarray
) -> np.ndarray:
    """d loss / d params[name].flat[j] for each j in ``picks``, by the fourth-order stencil."""
    flat = model.params[name].reshape(-1)

    def loss() -> float:
        with backend.use_kernels("numpy"):
            return model.forward_backward(idx, targets)[0]

    out = np.empty(len(picks))
    for n, j in enumerate(picks):
        x = flat[j]
        values = []
        for step in (2 * H, H, -H, -2 * H):
            flat[j] = x + step
            values.append(loss())
        flat[j] = x
        out[n] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * H)
    return out


def torch_gradients(model: GPT, idx: np.ndarray, targets: np.ndarray) -> dict | None:
    try:
        import torch
    except ImportError:
        return None
    from tinygradlm.testing.torch_gpt2 import gpt2_loss

    sd = {k: torch.tensor(v, requires_grad=True) for k, v in model.state_dict().items()}
    gpt2_loss(torch, sd, torch.tensor(idx), torch.tensor(targets), model.config).backward()
    return {k: t.grad.numpy() for k, t in sd.items()}


def float32_twin(model: GPT) -> GPT:
    twin = GPT(model.config, seed=0, dtype=np.float32)
    twin.load_state_dict({k: v.astype(np.float32) for k, v in model.state_dict().items()})
    return twin


def table(args: argparse.Namespace) -> str:
    model, idx, targets = build(args)
    reference = gradients(model, idx, targets, "numpy", "fused")
    rng = np.random.default_rng(2)
    paths: dict[str, Callable[[str], Any]] = {}

    def fd_error(name: str) -> float:
        g = reference[name].reshape(-1)
        k = min(args.samples, g.size)
        largest = np.argsort(-np.abs(g))[:k]
        picks = np.unique(np.concatenate([largest, rng.choice(g.size, size=k, replace=False)]))
        numeric = finite_differences(model, idx, targets, name, picks)
        return float(np.abs(g[picks] - numeric).max()) / float(np.abs(g).max() or 1.0)

    witness = gradients(model, idx, targets, "numpy", "autograd")
    numba = gradients(model, idx, targets, "numba", "fused")
    torch64 = torch_gradients(model, idx, targets)
    paths["finite differences"] = fd_error
    paths["witness"] = lambda n: relative_error(reference[n], witness[n])
    if torch64 is not None:
        paths["PyTorch"] = lambda n: relative_error(reference[n], torch64[n])
    paths["Numba"] = lambda n: relative_error(numba[n], reference[n])

    m32 = float32_twin(model)
    f32 = {
        "NumPy f32": gradients(m32, idx, targets, "numpy", "fused"),
        "Numba f32": gradients(m32, idx, targets, "numba", "fused"),
        "witness f32": gradients(m32, idx, targets, "numpy", "autograd"),
    }
    torch32 = torch_gradients(m32, idx, targets)
    if torch32 is not None:
        f32["PyTorch f32"] = torch32
    for label, grads in f32.items():
        paths[label] = lambda n, g=grads: relative_error(g[n], reference[n])

    header = ["parameter", "shape", *paths]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    worst = dict.fromkeys(paths, 0.0)
    for name in reference:
        cells = []
        for label, measure in paths.items():
            err = measure(name)
            worst[label] = max(worst[label], err)
            cells.append(f"{err:.1e}")
        rows.append(f"| `{name}` | {tuple(reference[name].shape)} | " + " | ".join(cells) + " |")
    rows.append("| **worst** | | " + " | ".join(f"**{w:.1e}**" for w in worst.values()) + " |")
    c = model.config
    shape = (
        f"n_layer={c.n_layer}, n_head={c.n_head}, n_embd={c.n_embd}, vocab={c.vocab_size} "
        f"(padded {c.padded_vocab_size}), B={idx.shape[0]}, T={idx.shape[1]}"
    )
    return f"GPT-2-shaped model: {shape}.\n\n" + "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--vocab", type=int, default=131)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--samples", type=int, default=6, help="elements per tensor (x2) for FD")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    print(table(args))
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
