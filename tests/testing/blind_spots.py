"""The gradient checker's known blind spots, each planted once: prints, per case, whether the
default check and (where the checker has it) tight mode catch it. Runs against whichever
tinygradlm is on PYTHONPATH, so the same script measures the checker before and after a change:

    PYTHONPATH=. python tests/testing/blind_spots.py

"caught" means the check failed on the planted bug; for a correct backward (marked "correct")
the wanted answer is "passed". With ``--margins N`` it also runs tight mode on every reference
layer over N hypothesis draws and prints, per layer, the largest error seen as a fraction of
the error allowed (well below 1: no false alarm is near) and the largest stated threshold
relative to the gradient. Not collected by pytest (no test_ prefix): the properties are
asserted in test_tight_mode.py, test_default_coverage.py, test_backward_properties.py and
test_kinks_and_infinities.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: layer_inputs
sys.path.insert(0, str(Path(__file__).resolve().parent))  # planted_bugs

import layer_inputs as ri
import planted_bugs as pb

from tinygradlm import ref
from tinygradlm.ref.gelu import GELU_CUBIC
from tinygradlm.testing import check_vjp


def gelu_backward_0_7978(dout, cache):
    (x,) = cache
    tanh_u = np.tanh(0.7978 * (x + GELU_CUBIC * x**3))
    du_dx = 0.7978 * (1.0 + 3.0 * GELU_CUBIC * x * x)
    return (dout * (0.5 * (1.0 + tanh_u) + 0.5 * x * (1.0 - tanh_u**2) * du_dx),)


def layernorm_backward_eps_outside(dout, cache):
    x, mean, _, weight = cache
    var = ((x - mean[..., None]) ** 2).mean(axis=-1)
    return ref.layernorm_backward(dout, (x, mean, 1.0 / (np.sqrt(var) + 1e-5), weight))


def attention_backward_scaled(dout, cache):
    return tuple(g * (1 + 1e-6) for g in ref.attention_backward(dout, cache))


def matmul_forward(a, w):
    return a @ w, (a, w)


def matmul_backward_one_wrong(dout, cache):
    a, w = cache
    dw = a.T @ dout
    dw[100, 7] *= 1.5
    return dout @ w.T, dw


def row_max_forward(x):
    return x.max(axis=1), x


def row_max_backward_full_to_each_tie(dout, x):
    return ((x == x.max(axis=1, keepdims=True)) * dout[:, None],)


CAUSAL = np.triu(np.ones((4, 4), dtype=bool), k=1)


def masked_forward(x):
    return np.where(CAUSAL, -np.inf, x), None


def masked_backward(dout, cache):
    return (np.where(CAUSAL, 0.0, dout),)


def leaking_masked_backward(dout, cache):
    return (dout,)


def kept_state_backward():
    kept = {}

    def backward(dout, x):
        kept["grad"] = kept.get("grad", 0.0) + 2 * x * dout
        return (kept["grad"].copy(),)

    return backward


def sum_of_squares(x):
    return (x * x).sum(), x


def storage_order_linear_backward(dout, cache):
    x, w = cache
    return dout @ w.ravel(order="K").reshape(w.shape).T, x.T @ dout, dout.sum(axis=0)


def product_forward(x, y):
    return x * y, (x, y)


def product_backward_keyed_by_identity(dout, cache):
    x, y = cache
    grads = {}
    grads[id(x)] = grads.get(id(x), 0.0) + dout * y
    grads[id(y)] = grads.get(id(y), 0.0) + dout * x
    return grads[id(x)], grads[id(y)]


def cases():
    rng = np.random.default_rng(0)
    big = rng.normal(size=(1024, 1024))
    a, w = rng.normal(size=(256, 256)), rng.normal(size=(256, 256))
    x34, w42, b2 = rng.normal(size=(3, 4)), rng.normal(size=(4, 2)), rng.normal(size=2)
    tied = np.array([[1.0, 3.0, 3.0, -2.0], [0.5, 0.5, 0.5, -1.0]])
    x44 = rng.normal(size=(4, 4))
    return [
        ("GELU constant 0.7978", ref.gelu_forward, gelu_backward_0_7978, ri.example("gelu"), {}),
        (
            "layer norm eps outside the root",
            ref.layernorm_forward,
            layernorm_backward_eps_outside,
            ri.example("layernorm", seed=3),
            {},
        ),
        (
            "attention backward x (1 + 1e-6)",
            ref.attention_forward,
            attention_backward_scaled,
            ri.example("attention"),
            {},
        ),
        (
            "one element x 1.5, 1024x1024 x²",
            pb.square_forward,
            pb.square_backward_wrong_at(517 * 1024 + 33),
            [big],
            {},
        ),
        (
            "one element x 1.5, 256x256 matmul",
            matmul_forward,
            matmul_backward_one_wrong,
            [a, w],
            {},
        ),
        (
            "tied maxima each given the full gradient",
            row_max_forward,
            row_max_backward_full_to_each_tie,
            [tied],
            {"check_kinks": True},
        ),
        ("causal -inf mask (correct)", masked_forward, masked_backward, [x44], {}),
        ("causal -inf mask leaking gradient", masked_forward, leaking_masked_backward, [x44], {}),
        (
            "backward keeping state between calls",
            pb.square_forward,
            kept_state_backward(),
            [x34],
            {},
        ),
        ("backward ignoring dout (scalar loss)", sum_of_squares, lambda d, x: (2 * x,), [x34], {}),
        (
            "backward reading memory in storage order",
            pb.linear_forward,
            storage_order_linear_backward,
            [x34, w42, b2],
            {},
        ),
        (
            "backward mishandling one array passed twice",
            product_forward,
            product_backward_keyed_by_identity,
            [x34, x34],
            {},
        ),
    ]


def verdict(forward, backward, args, **kwargs) -> str:
    try:
        result = check_vjp(forward, backward, args, raise_exception=False, **kwargs)
    except ValueError as e:  # an older checker without this mode
        return f"n/a ({str(e)[:24]}…)"
    return "passed" if result.ok else "caught"


def tight_margins(draws: int) -> None:
    """Per reference layer: the worst |analytic − numeric| / allowed, and threshold / scale."""
    print("| layer | draws | worst error / allowed | worst threshold / largest gradient |")
    print("| --- | --- | --- | --- |")
    for layer in ri.LAYERS:
        worst = _worst_tight_margins(layer, draws)
        print(f"| {layer} | {draws} | {worst['ratio']:.1e} | {worst['threshold']:.1e} |")


def _worst_tight_margins(layer: str, draws: int) -> dict[str, float]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    forward, backward = ri.PAIRS[layer]
    worst = {"ratio": 0.0, "threshold": 0.0}

    @settings(max_examples=draws, deadline=None, suppress_health_check=list(HealthCheck))
    @given(ri.STRATEGIES[layer], st.integers(0, 2**16))
    def run(args, seed):
        result = check_vjp(forward, backward, args, mode="tight", seed=seed)
        for p in result.pairs:
            worst["ratio"] = max(worst["ratio"], p.max_abs_err / (p.threshold / 2))
            if p.gradient_scale:
                worst["threshold"] = max(worst["threshold"], p.threshold / p.gradient_scale)

    run()
    return worst


def main() -> None:
    if "--margins" in sys.argv:
        tight_margins(int(sys.argv[sys.argv.index("--margins") + 1]))
        print()
    print("| case | default check | tight mode | seconds |")
    print("| --- | --- | --- | --- |")
    for name, forward, backward, args, kwargs in cases():
        start = time.perf_counter()
        default = verdict(forward, backward, args, **kwargs)
        elapsed = time.perf_counter() - start
        small = all(a.size <= 4096 for a in args if isinstance(a, np.ndarray))
        tight = verdict(forward, backward, args, mode="tight", **kwargs) if small else "(too big)"
        print(f"| {name} | {default} | {tight} | {elapsed:.2f} |")


if __name__ == "__main__":
    main()
