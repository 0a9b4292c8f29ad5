"""What the autograd engine costs on top of the NumPy it runs.

Measures, in one run (so the ratios are fair on a shared machine):

1. an MLP step (forward + backward) at transformer-like shapes, three ways: hand-written NumPy
   forward/backward (the floor), the autograd engine, and PyTorch eager when installed;
2. the per-op overhead of recording and walking the graph, on a chain of tiny ops;
3. backward over a 100,000-op chain, to show linear time.

    python bench/autograd_overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from tinygradlm.autograd import Tensor, cross_entropy


def best_of(fn, repeats: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def mlp_numpy(x, w1, b1, w2, b2, targets):
    """Hand-written forward and backward of linear → gelu → linear → cross-entropy."""
    h = x @ w1 + b1
    u = 0.7978845608 * (h + 0.044715 * h**3)
    t = np.tanh(u)
    a = 0.5 * h * (1 + t)
    logits = a @ w2 + b2
    z = logits - logits.max(-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(-1, keepdims=True)
    n = len(targets)
    loss = -np.log(p[np.arange(n), targets]).mean()
    dlogits = p
    dlogits[np.arange(n), targets] -= 1
    dlogits /= n
    dw2 = a.T @ dlogits
    db2 = dlogits.sum(0)
    da = dlogits @ w2.T
    dh = da * (0.5 * (1 + t) + 0.5 * h * (1 - t * t) * 0.7978845608 * (1 + 3 * 0.044715 * h * h))
    dw1 = x.T @ dh
    db1 = dh.sum(0)
    return loss, (dw1, db1, dw2, db2)


def mlp_autograd(x, params, targets):
    w1, b1, w2, b2 = params
    for p in params:
        p.grad = None
    logits = (Tensor(x) @ w1 + b1).gelu() @ w2 + b2
    loss = cross_entropy(logits, targets)
    loss.backward()
    return loss


def mlp_torch(torch, x, params, targets):
    w1, b1, w2, b2 = params
    for p in params:
        p.grad = None
    logits = torch.nn.functional.gelu(x @ w1 + b1, approximate="tanh") @ w2 + b2
    loss = torch.nn.functional.cross_entropy(logits, targets)
    loss.backward()
    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=2048, help="B·T rows of the MLP input")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=4096)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    N, C, V = args.rows, args.width, args.vocab
    x = rng.normal(size=(N, C)).astype(np.float32)
    w1 = (0.02 * rng.normal(size=(C, 4 * C))).astype(np.float32)
    b1 = np.zeros(4 * C, np.float32)
    w2 = (0.02 * rng.normal(size=(4 * C, V))).astype(np.float32)
    b2 = np.zeros(V, np.float32)
    targets = rng.integers(0, V, size=N)
    params = [Tensor(p, requires_grad=True) for p in (w1, b1, w2, b2)]

    rows = []
    t_np = best_of(lambda: mlp_numpy(x, w1, b1, w2, b2, targets), args.repeats)
    rows.append(("hand-written NumPy", t_np))
    t_ag = best_of(lambda: mlp_autograd(x, params, targets), args.repeats)
    rows.append(("tinygradlm autograd", t_ag))
    try:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
        tp = [torch.tensor(p, requires_grad=True) for p in (w1, b1, w2, b2)]
        tx, tt = torch.tensor(x), torch.tensor(targets)
        rows.append(("PyTorch eager", best_of(lambda: mlp_torch(torch, tx, tp, tt), args.repeats)))
    except ImportError:
        rows.append(("PyTorch eager (not installed)", float("nan")))

    flops = 3 * 2 * N * (C * 4 * C + 4 * C * V)  # forward GEMMs and the two backward ones
    print(
        f"MLP step: ({N}, {C}) → gelu({4 * C}) → ({V}) → cross-entropy, float32, best of "
        f"{args.repeats}"
    )
    print(f"{'implementation':<32}{'ms':>10}{'GFLOP/s':>10}{'vs NumPy':>10}")
    for name, t in rows:
        print(f"{name:<32}{1e3 * t:>10.1f}{flops / t / 1e9:>10.1f}{t / t_np:>10.2f}")

    def tiny_chain(n: int) -> None:
        y = Tensor(np.ones(4, np.float32), requires_grad=True)
        z = y
        for _ in range(n):
            z = z * 1.0001
        z.sum().backward()

    n = 10_000
    t_chain = best_of(lambda: tiny_chain(n), args.repeats)
    print(f"\nper-op overhead (record + backward, 4-element tensors): {1e6 * t_chain / n:.1f} µs")

    def deep_chain() -> None:
        y = Tensor(np.array(1.0), requires_grad=True)
        z = y
        for _ in range(100_000):
            z = z * 1.0
        start = time.perf_counter()
        z.backward()
        deep_chain.seconds = time.perf_counter() - start

    deep_chain()
    print(f"backward over a 100,000-op chain: {deep_chain.seconds:.2f} s")


if __name__ == "__main__":
    main()
