"""What higher-order support costs: first-order backward time, and a recorded backward and a
Hessian-vector product against a plain gradient.

Times are CPU time (``time.process_time``), best of ``--repeats``, so that other processes on a
shared machine move them less than wall time would. Run it on two checkouts to compare them
(the higher-order rows are skipped where the engine has no ``hvp``):

    PYTHONPATH=. python bench/higher_order.py
    PYTHONPATH=path/to/other/checkout python bench/higher_order.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import tinygradlm.autograd as ag
from tinygradlm.autograd import Tensor, cross_entropy

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for sharpness.py beside this file


def best_cpu_time(fn, repeats: int) -> float:
    """The smallest CPU time of ``fn()`` over ``repeats`` calls; ``fn`` may return its own."""
    fn()  # warm up
    times = []
    for _ in range(repeats):
        start = time.process_time()
        own = fn()
        times.append(own if own is not None else time.process_time() - start)
    return min(times)


def mlp_backward(rng: np.random.Generator, x_requires_grad: bool):
    """Backward alone of bench/autograd_overhead.py's MLP step (linear, gelu, linear, loss)."""
    N, C, V = 2048, 256, 4096
    x = rng.normal(size=(N, C)).astype(np.float32)
    shapes = [(C, 4 * C), (4 * C,), (4 * C, V), (V,)]
    arrays = [(0.02 * rng.normal(size=s)).astype(np.float32) for s in shapes]
    targets = rng.integers(0, V, size=N)

    def run() -> float:
        w1, b1, w2, b2 = (Tensor(a, requires_grad=True) for a in arrays)
        xt = Tensor(x, requires_grad=x_requires_grad)
        loss = cross_entropy((xt @ w1 + b1).gelu() @ w2 + b2, targets)
        start = time.process_time()
        loss.backward()
        return time.process_time() - start

    return run


def chain_backward(n: int, shape: tuple[int, ...]):
    """Backward alone over a chain of n multiplications by a constant."""

    def run() -> float:
        z = Tensor(np.ones(shape, np.float32), requires_grad=True)
        for _ in range(n):
            z = z * 1.0001
        z = z.sum()
        start = time.process_time()
        z.backward()
        return time.process_time() - start

    return run


def higher_order_rows(repeats: int) -> list[tuple[str, float]]:
    """Forward, gradient, recorded gradient and H·v of bench/sharpness.py's one-layer GPT."""
    from sharpness import B, T, V, gpt_loss, init_params

    rng = np.random.default_rng(0)
    params = init_params(rng)
    seq = (rng.integers(0, V, (B, 1)) + np.arange(T + 1)) % V
    idx, targets = seq[:, :-1], seq[:, 1:]
    names = sorted(params)
    vectors = [rng.normal(size=params[k].shape) for k in names]

    def loss():
        leaves = {k: Tensor(a, requires_grad=True) for k, a in params.items()}
        return leaves, gpt_loss(leaves, idx, targets)

    def forward():
        loss()

    def gradient():
        loss()[1].backward()

    def recorded():
        leaves, out = loss()
        ag.gradients(out, list(leaves.values()), create_graph=True)

    def product():
        ag.hvp(
            lambda *ps: gpt_loss(dict(zip(names, ps, strict=True)), idx, targets),
            [params[k] for k in names],
            vectors,
        )

    return [
        ("GPT forward (recording)", best_cpu_time(forward, repeats)),
        ("GPT forward + backward", best_cpu_time(gradient, repeats)),
        ("GPT forward + recorded backward", best_cpu_time(recorded, repeats)),
        ("GPT Hessian-vector product", best_cpu_time(product, repeats)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = [
        ("MLP backward (x constant)", best_cpu_time(mlp_backward(rng, False), args.repeats)),
        ("MLP backward (x requires grad)", best_cpu_time(mlp_backward(rng, True), args.repeats)),
        ("10,000-op chain backward, 4 elements", best_cpu_time(chain_backward(10_000, (4,)), 5)),
        ("100,000-op chain backward, scalar", best_cpu_time(chain_backward(100_000, ()), 5)),
    ]
    if hasattr(ag, "hvp"):
        rows += higher_order_rows(30)
    print(f"engine: {Path(ag.__file__).parent}; CPU time, best of {args.repeats} (30 for GPT)")
    print(f"{'measurement':<40}{'ms':>10}")
    for name, seconds in rows:
        print(f"{name:<40}{1e3 * seconds:>10.2f}")


if __name__ == "__main__":
    main()
