"""Each Numba kernel against its NumPy twin (tinygradlm.ref) and PyTorch, forward and backward.

For every thread count asked for, a fresh subprocess pins BLAS, Numba and PyTorch to that many
threads and times the three implementations of each layer (best of ``--repeats``, the repeats of
the three taken in turns), so the ratios in one row are measured under the same conditions.
PyTorch is the anchor when installed (its column is left empty otherwise): F.embedding,
F.layer_norm, F.scaled_dot_product_attention(is_causal=True), F.gelu(approximate="tanh"),
F.cross_entropy, and torch.optim.AdamW (fused); backward times are torch.autograd.grad of the
forward's graph.

``--variants`` adds the measurements behind the kernels' design choices: NumPy's SIMD exp/tanh
against Numba's libm calls and against the vectorized exp in tinygradlm/kernels/_vecmath.py, and
GELU as pure Numba vs a NumPy/Numba hybrid.

    python bench/kernels.py                               # "small": B=8 T=256 C=256 NH=4 V=4096
    python bench/kernels.py --config gpt2                 # B=4 T=1024 C=768 NH=12 V=50257
    python bench/kernels.py --threads 1 --repeats 3 --variants
    python bench/kernels.py --reuse-memory                # without page faults on new arrays

New arrays above 32 MB (the cross-entropy's probabilities and gradient, GPT-2's attention
matrices) come from a fresh mmap every call under glibc's defaults, and the first touch of each
page costs a kernel page fault: at the small config a third of the cross-entropy kernel's time,
and on a VM two threads faulting at once are sometimes ten times slower. ``--reuse-memory``
measures without that cost, as a training process that keeps its memory would run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

CONFIGS = {
    # the development model of bench/step.py; Vp = V (4096 is already a round number)
    "small": {"B": 8, "T": 256, "C": 256, "NH": 4, "V": 4096, "Vp": 4096, "L": 4, "maxT": 256},
    # GPT-2 small's widths at its full context, with half the usual micro-batch to fit 2 cores'
    # patience (the cross-entropy's logits alone are B·T·Vp·4 bytes = 0.8 GB)
    "gpt2": {"B": 4, "T": 1024, "C": 768, "NH": 12, "V": 50257, "Vp": 50304, "L": 12, "maxT": 1024},
}
LAYERS = ["encoder", "layernorm", "attention", "gelu", "crossentropy", "adamw"]


def best_of(fn, repeats: int) -> float:
    fn()  # warm up (and compile)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def best_of_interleaved(calls: dict[str, Any], repeats: int) -> dict[str, float]:
    """Best time of each callable, the repeats taken in turns (a, b, c, a, b, c, ...): a slow
    spell of a shared machine then slows every implementation, not just the one it hit."""
    for fn in calls.values():
        fn()  # warm up (and compile)
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


# --------------------------------------------------------------------------------------------
# inputs and the three implementations of each layer
# --------------------------------------------------------------------------------------------


def make_inputs(cfg: dict[str, int]) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    B, T, C, V, Vp = cfg["B"], cfg["T"], cfg["C"], cfg["V"], cfg["Vp"]

    def normal(*shape: int, scale: float = 1.0) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)

    n_params = 12 * cfg["L"] * C * C + Vp * C + cfg["maxT"] * C
    targets = rng.integers(0, V, size=(B, T))
    targets[:, :4] = -100  # a few ignored positions, as fine-tuning masks prompts
    logits = normal(B, T, Vp, scale=2.0)
    logits[..., V:] = 0.0
    return {
        "encoder": [rng.integers(0, V, size=(B, T)), normal(Vp, C), normal(cfg["maxT"], C)],
        "layernorm": [normal(B, T, C), normal(C), normal(C)],
        "attention": [normal(B, T, 3 * C), cfg["NH"]],
        "gelu": [normal(B, T, 4 * C)],
        "crossentropy": [logits, targets, V],
        "adamw": [normal(n_params), normal(n_params, scale=1e-2), n_params],
    }


def layer_calls(mod, layer: str, args: list[Any]) -> dict[str, Any]:
    """{"forward": f, "backward": f} (AdamW: {"update": f}) of one layer module, ref or kernels."""
    import numpy as np

    if layer == "adamw":
        params, grads, n = args
        params, m, v = params.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32)
        # decayed ranges as a model's: most of the buffer, with undecayed gaps (biases, norms)
        cuts = np.linspace(0, n, 9).astype(np.int64)
        ranges = np.stack([cuts[:-1], cuts[1:] - np.minimum(1000, n // 100)], axis=1)

        def update():
            mod.adamw_update(params, grads, m, v, 10, 1e-3, weight_decay=0.1, decay_ranges=ranges)

        return {"update": update}
    forward = getattr(mod, f"{layer}_forward")
    backward = getattr(mod, f"{layer}_backward")
    out, cache = forward(*args)
    dout = np.ones_like(out) if layer != "crossentropy" else np.float32(1.0)
    return {"forward": lambda: forward(*args), "backward": lambda: backward(dout, cache)}


def torch_calls(layer: str, args: list[Any], cfg: dict[str, int]) -> dict[str, Any]:
    """The same as :func:`layer_calls` with PyTorch's functions (backward: autograd.grad)."""
    import torch
    import torch.nn.functional as F

    def t(a):
        return torch.from_numpy(a).requires_grad_(a.dtype.kind == "f")

    if layer == "adamw":
        params, grads, _ = args
        p = torch.from_numpy(params.copy()).requires_grad_()
        p.grad = torch.from_numpy(grads)
        try:
            opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
            opt.step()
        except (RuntimeError, TypeError):  # no fused CPU AdamW in this build
            opt = torch.optim.AdamW([p], lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
        return {"update": opt.step}

    B, T, C, NH = cfg["B"], cfg["T"], cfg["C"], cfg["NH"]
    if layer == "encoder":
        idx, wte, wpe = torch.from_numpy(args[0]), t(args[1]), t(args[2])
        inputs = [wte, wpe]

        def fwd():
            return F.embedding(idx, wte) + wpe[:T]
    elif layer == "layernorm":
        inputs = [t(a) for a in args]

        def fwd():
            return F.layer_norm(inputs[0], (C,), inputs[1], inputs[2], 1e-5)
    elif layer == "attention":
        inputs = [t(args[0])]

        def fwd():
            q, k, v = inputs[0].view(B, T, 3, NH, C // NH).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return y.transpose(1, 2).reshape(B, T, C)
    elif layer == "gelu":
        inputs = [t(args[0])]

        def fwd():
            return F.gelu(inputs[0], approximate="tanh")
    elif layer == "crossentropy":
        logits, targets, V = args
        inputs = [t(logits)]
        tt = torch.from_numpy(targets).reshape(-1)

        def fwd():
            z = inputs[0][..., :V].reshape(-1, V)
            return F.cross_entropy(z, tt, ignore_index=-100)
    else:
        raise ValueError(layer)

    def forward_no_grad():
        with torch.no_grad():
            return fwd()

    out = fwd()
    dout = torch.ones_like(out)
    return {
        "forward": forward_no_grad,
        "backward": lambda: torch.autograd.grad(out, inputs, dout, retain_graph=True),
    }


# --------------------------------------------------------------------------------------------
# --variants: the measurements behind the design choices
# --------------------------------------------------------------------------------------------


def time_variants(cfg: dict[str, int], repeats: int) -> list[dict[str, Any]]:
    import math

    import numpy as np
    from numba import njit, prange

    from tinygradlm import kernels, ref
    from tinygradlm.kernels._vecmath import exp

    @njit(parallel=True)
    def libm_exp(x, out):
        for i in prange(x.size):
            out[i] = math.exp(x[i])

    @njit(parallel=True)
    def vector_exp(x, out):
        for i in prange(x.size):
            out[i] = exp(x[i])

    @njit(parallel=True)
    def libm_tanh(x, out):
        for i in prange(x.size):
            out[i] = math.tanh(x[i])

    k, c = np.float32(kernels.GELU_SCALE), np.float32(kernels.GELU_CUBIC)
    half, one = np.float32(0.5), np.float32(1.0)

    @njit(parallel=True)
    def gelu_libm_tanh(x, out):
        for i in prange(x.size):
            out[i] = half * x[i] * (one + math.tanh(k * (x[i] + c * x[i] * x[i] * x[i])))

    @njit(parallel=True)
    def tanh_argument(x, u):
        for i in prange(x.size):
            u[i] = k * (x[i] + c * x[i] * x[i] * x[i])

    @njit(parallel=True)
    def gelu_combine(x, t, out):
        for i in prange(x.size):
            out[i] = half * x[i] * (one + t[i])

    def gelu_hybrid(x, out):  # Numba, np.tanh in place, Numba: three passes
        tanh_argument(x, out)
        np.tanh(out, out=out)
        gelu_combine(x, out, out)

    x = np.random.default_rng(0).standard_normal(cfg["B"] * cfg["T"] * 4 * cfg["C"]) * 3
    x = x.astype(np.float32)
    out, t = np.empty_like(x), np.empty_like(x)
    rows = [
        ("exp", "np.exp (SIMD)", lambda: np.exp(x, out=out)),
        ("exp", "Numba math.exp (libm)", lambda: libm_exp(x, out)),
        ("exp", "Numba _vecmath.exp", lambda: vector_exp(x, out)),
        ("tanh", "np.tanh (SIMD)", lambda: np.tanh(x, out=out)),
        ("tanh", "Numba math.tanh (libm)", lambda: libm_tanh(x, out)),
        ("gelu forward", "ref (NumPy)", lambda: ref.gelu_forward(x)),
        ("gelu forward", "Numba, libm tanh", lambda: gelu_libm_tanh(x, out)),
        ("gelu forward", "hybrid: Numba + np.tanh", lambda: gelu_hybrid(x, t)),
        ("gelu forward", "Numba, sigmoid + _vecmath.exp", lambda: kernels.gelu_forward(x)),
    ]
    return [
        {"what": what, "how": how, "ms": 1e3 * best_of(fn, repeats), "n": x.size}
        for what, how, fn in rows
    ]


# --------------------------------------------------------------------------------------------
# one thread count, in a subprocess
# --------------------------------------------------------------------------------------------


def worker(config: str, repeats: int, layers: list[str], variants: bool, threads: int) -> None:
    from tinygradlm import kernels, ref

    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    cfg = CONFIGS[config]
    inputs = make_inputs(cfg)
    for layer in layers:
        calls = {
            "numpy": layer_calls(ref, layer, inputs[layer]),
            "numba": layer_calls(kernels, layer, inputs[layer]),
        }
        if torch:
            calls["torch"] = torch_calls(layer, inputs[layer], cfg)
        for direction in calls["numba"]:
            best = best_of_interleaved({k: c[direction] for k, c in calls.items()}, repeats)
            print(json.dumps({"layer": layer, "pass": direction, **best}), flush=True)
    if variants:
        for row in time_variants(cfg, repeats):
            print(json.dumps({"variant": row}), flush=True)


def run_worker(args: argparse.Namespace, threads: int) -> list[dict[str, Any]]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    if args.reuse_memory:
        # glibc then serves large arrays from its heap and keeps freed ones for reuse, instead of
        # a fresh mmap (zeroed by the kernel, page by page, on first touch) for every array above
        # 32 MB: what remains is the kernels' own time
        env["MALLOC_MMAP_THRESHOLD_"] = str(2**32)
        env["MALLOC_TRIM_THRESHOLD_"] = str(2**33)
    command = [
        sys.executable,
        __file__,
        "--worker",
        str(threads),
        "--config",
        args.config,
        "--repeats",
        str(args.repeats),
        "--layers",
        ",".join(args.layers),
    ] + (["--variants"] if args.variants else [])
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode:
        sys.exit(f"worker with {threads} thread(s) failed:\n{result.stderr}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def fmt_ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{1e3 * seconds:.2f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    return "" if a is None or b is None else f"{a / b:.1f}×"  # noqa: RUF001


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many (default 5)")
    parser.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2 (default)")
    parser.add_argument("--layers", default=",".join(LAYERS), help="subset, comma-separated")
    parser.add_argument("--variants", action="store_true", help="also time the design variants")
    parser.add_argument(
        "--reuse-memory",
        action="store_true",
        help="keep freed memory in glibc's heap (no page faults on new arrays)",
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.layers = [name for name in args.layers.split(",") if name]
    unknown = set(args.layers) - set(LAYERS)
    if unknown:
        parser.error(f"unknown layers {sorted(unknown)}; choose from {', '.join(LAYERS)}")
    if args.worker:
        worker(args.config, args.repeats, args.layers, args.variants, args.worker)
        return

    cfg = CONFIGS[args.config]
    print(f"config {args.config}: " + " ".join(f"{k}={v}" for k, v in cfg.items()))
    print(f"float32, best of {args.repeats}; ms per call; ratios are NumPy/Numba and torch/Numba")
    if args.reuse_memory:
        print("glibc keeps freed memory for reuse (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_)")
    for threads in [int(n) for n in args.threads.split(",")]:
        rows = run_worker(args, threads)
        print(f"\n{threads} thread(s) (BLAS, Numba and PyTorch)\n")
        print("| layer | pass | NumPy ref | Numba | PyTorch | NumPy / Numba | PyTorch / Numba |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for row in rows:
            if "layer" not in row:
                continue
            numpy_s, numba_s, torch_s = row["numpy"], row["numba"], row.get("torch")
            print(
                f"| {row['layer']} | {row['pass']} | {fmt_ms(numpy_s)} | {fmt_ms(numba_s)} | "
                f"{fmt_ms(torch_s)} | {fmt_ratio(numpy_s, numba_s)} | "
                f"{fmt_ratio(torch_s, numba_s)} |"
            )
        variants = [row["variant"] for row in rows if "variant" in row]
        if variants:
            print(f"\nvariants, {variants[0]['n']:,} float32 elements\n")
            print("| what | how | ms | ns per element |")
            print("| --- | --- | ---: | ---: |")
            for v in variants:
                print(
                    f"| {v['what']} | {v['how']} | {v['ms']:.2f} | {1e6 * v['ms'] / v['n']:.2f} |"
                )


if __name__ == "__main__":
    main()
