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
from tinygradlm.autograd import Tensor
from tinygradlm.model import GPT, GPTConfig, witness
from tinygradlm.testing.layer_cases import OUTPUT_NAMES, cotangent, layer_inputs

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


# --------------------------------------------------------------------------------------------
# each layer on its own
# --------------------------------------------------------------------------------------------


def layer_dims(args: argparse.Namespace) -> dict[str, dict[str, int]]:
    """Each layer's sizes inside the model of :func:`build`."""
    B, T, C, NH = args.batch, args.seq, args.width, args.heads
    return {
        "encoder": {"B": B, "T": T, "C": C, "Vp": args.vocab, "extra_T": 0},
        "layernorm": {"B": B, "T": T, "C": C},
        "linear": {"B": B, "T": T, "C": C, "OC": 3 * C, "bias": 1},
        "attention": {"B": B, "T": T, "NH": NH, "HS": C // NH},
        "gelu": {"B": B, "T": T, "C": 4 * C},
        "residual": {"B": B, "T": T, "C": C},
        "crossentropy": {"B": B, "T": T, "V": args.vocab, "pad": -args.vocab % 8},
    }


def layer_gradients(layer: str, path: str, args: list, dout: np.ndarray) -> list:
    """The output and the gradient of each floating input by one path (None: not available)."""
    if path in ("NumPy", "Numba"):
        L = backend.layers("numpy" if path == "NumPy" else "numba")
        out, cache = getattr(L, f"{layer}_forward")(*args)
        return [out, *getattr(L, f"{layer}_backward")(dout, cache)]
    if path == "witness":
        leaves = [Tensor(a, requires_grad=True) if is_float(a) else a for a in args]
        out = witness.LAYERS[layer](*leaves)
        out.backward(dout)
        return [out.data, *(t.grad for t in leaves if isinstance(t, Tensor))]
    try:
        import torch
    except ImportError:
        return [None] * (1 + sum(map(is_float, args)))
    from tinygradlm.testing.torch_layers import torch_layers

    leaves = [torch.tensor(a, requires_grad=is_float(a)) if is_array(a) else a for a in args]
    out = torch_layers(torch)[layer](*leaves)
    out.backward(torch.tensor(dout))
    floats = [t for t in leaves if isinstance(t, torch.Tensor) and t.requires_grad]
    return [out.detach().numpy(), *(t.grad.numpy() for t in floats)]


def is_array(a: Any) -> bool:
    return isinstance(a, np.ndarray)


def is_float(a: Any) -> bool:
    return is_array(a) and a.dtype.kind == "f"


def layer_fd(layer: str, args: list, dout: np.ndarray, reference: list, samples: int) -> list:
    """For each floating input, the worst error of the reference gradient against the
    fourth-order stencil of Σ dout·forward(x) on sampled elements."""
    forward = getattr(backend.layers("numpy"), f"{layer}_forward")
    rng = np.random.default_rng(3)
    errors = []
    for k, i in enumerate(i for i, a in enumerate(args) if is_float(a)):
        g = reference[1 + k].reshape(-1)
        flat = args[i].reshape(-1)  # a view: perturbing it perturbs the input
        picks = np.unique(
            np.concatenate(
                [
                    np.argsort(-np.abs(g))[:samples],
                    rng.choice(g.size, min(samples, g.size), replace=False),
                ]
            )
        )
        worst = 0.0
        for j in picks:
            x, values = flat[j], []
            for step in (2 * H, H, -H, -2 * H):
                flat[j] = x + step
                values.append(float(np.vdot(dout, forward(*args)[0])))
            flat[j] = x
            numeric = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * H)
            worst = max(worst, abs(g[j] - numeric))
        errors.append(worst / float(np.abs(g).max() or 1.0))
    return errors


def layer_table(args: argparse.Namespace) -> str:
    paths = ["witness", "PyTorch", "Numba"]
    f32_paths = ["NumPy", "Numba", "witness", "PyTorch"]
    header = ["layer", "tensor", "finite differences", *paths, *(f"{p} f32" for p in f32_paths)]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for layer, dims in layer_dims(args).items():
        inputs = layer_inputs(layer, dims, seed=0, dtype=np.float64)
        dout = cotangent(
            np.shape(getattr(backend.layers("numpy"), f"{layer}_forward")(*inputs)[0]),
            np.float64,
            seed=0,
        )
        reference = layer_gradients(layer, "NumPy", inputs, dout)
        columns = [[None, *layer_fd(layer, inputs, dout, reference, args.samples)]]
        for path in paths:
            columns.append(
                [
                    relative(v, r)
                    for v, r in zip(
                        layer_gradients(layer, path, inputs, dout), reference, strict=True
                    )
                ]
            )
        args32 = [a.astype(np.float32) if is_float(a) else a for a in inputs]
        for path in f32_paths:
            got = layer_gradients(layer, path, args32, dout.astype(np.float32))
            columns.append([relative(v, r) for v, r in zip(got, reference, strict=True)])
        for n, name in enumerate(OUTPUT_NAMES[layer][: len(reference)]):
            cells = ["" if c[n] is None else f"{c[n]:.1e}" for c in columns]
            rows.append(f"| {layer} | `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def relative(value: np.ndarray | None, reference: np.ndarray) -> float | None:
    return None if value is None else relative_error(np.asarray(value), np.asarray(reference))


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
    print("\nEach layer at the model's shapes (the output's row: forward values; the others: the")
    print("gradient of each floating input; finite differences check the gradients only).\n")
    print(layer_table(args))
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
