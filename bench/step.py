"""A full training forward+backward of GPT-2 at named configurations, against PyTorch eager.

For each engine — the fused layer chain with the Numba kernels, the same with the NumPy
reference layers, the autograd engine, and PyTorch eager CPU (when installed) — it reports
tokens/s, achieved GFLOP/s, that rate as a fraction of the machine's float32 GEMM rate
measured in the same run at the model's own matmul shapes, and the peak memory a step adds on
top of the model (resident set high-water mark minus the resident set before the first step).

Each engine runs in a fresh subprocess with the same thread count (BLAS, Numba and PyTorch),
so memory is measured cleanly and one engine's warm caches do not help another.

    python bench/step.py                  # "small": 4 layers, 4 heads, C=256, T=256, B=8, V=4096
    python bench/step.py --config tiny --threads 1 --steps 5
    python bench/step.py --config gpt2 --batch 1 --seq 1024 --steps 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ENGINES = ["fused-numba", "fused-numpy", "autograd", "torch"]


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def gemm_gflops(config, B: int, T: int, repeats: int = 3) -> float:
    """float32 GEMM rate at the model's shapes: (B·T, C) by (C, 3C), (C, 4C), (4C, C), (C, Vp)."""
    import numpy as np

    rng = np.random.default_rng(0)
    C, N = config.n_embd, B * T
    shapes = [(C, 3 * C), (C, 4 * C), (4 * C, C), (C, config.Vp)]
    total_flops, total_time = 0, 0.0
    for k, n in shapes:
        a = rng.standard_normal((N, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        out = np.empty((N, n), np.float32)
        np.matmul(a, b, out=out)
        best = min(
            _timed(lambda a=a, b=b, out=out: np.matmul(a, b, out=out)) for _ in range(repeats)
        )
        total_flops += 2 * N * k * n
        total_time += best
    return total_flops / total_time / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def worker(engine: str, preset: str, B: int, T: int, steps: int) -> dict:
    """Time ``steps`` forward+backward steps (after one warm-up) in this process."""
    import numpy as np

    from tinygradlm import backend
    from tinygradlm.model import GPT, GPTConfig

    config = GPTConfig.preset(preset)
    model = GPT(config, seed=0)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, config.vocab_size, size=(B, T))
    targets = rng.integers(0, config.vocab_size, size=(B, T))

    if engine == "torch":
        import torch

        from tinygradlm.testing.torch_gpt2 import gpt2_loss

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        sd = {k: torch.tensor(v, requires_grad=True) for k, v in model.state_dict().items()}
        tidx, ttargets = torch.tensor(idx), torch.tensor(targets)

        def step() -> None:
            for p in sd.values():
                p.grad = None
            gpt2_loss(torch, sd, tidx, ttargets, config).backward()
    else:
        kind, _, kernels = engine.partition("-")
        backend.set_kernels(kernels or "numpy")
        backend.layers()  # import the layer set (Numba itself) now: not part of a step's memory
        engine_name = "fused" if kind == "fused" else "autograd"

        def step() -> None:
            model.forward_backward(idx, targets, engine=engine_name)

    rss_before = _status_kib("VmRSS")
    step()  # warm-up: JIT compilation, buffer allocation
    times = [_timed(step) for _ in range(steps)]
    peak = _status_kib("VmHWM")
    result = {
        "engine": engine,
        "seconds": min(times),
        "median_seconds": sorted(times)[len(times) // 2],
        "peak_step_mib": (peak - rss_before) / 1024,
        "flops_per_step": model.flops_per_token(T) * B * T,
    }
    if engine.startswith("fused"):
        result["activation_mib"] = model.activation_bytes(B, T) / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small", help="a GPTConfig preset")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=None, help="T (default: the block size)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    from tinygradlm.model import GPTConfig

    config = GPTConfig.preset(args.config)
    T = args.seq or config.block_size
    if args.worker == "gemm":
        print(json.dumps({"engine": "gemm", "gemm_gflops": gemm_gflops(config, args.batch, T)}))
        return
    if args.worker:
        print(json.dumps(worker(args.worker, args.config, args.batch, T, args.steps)))
        return

    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(args.threads)
    results = []
    for engine in ["gemm", *args.engines.split(",")]:
        if engine == "torch":
            try:
                import torch  # noqa: F401
            except ImportError:
                print("(PyTorch not installed: no torch row)")
                continue
        cmd = [sys.executable, __file__, "--worker", engine, "--config", args.config,
               "--batch", str(args.batch), "--seq", str(T), "--steps", str(args.steps)]  # fmt: skip
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if out.returncode:
            print(f"{engine} failed:\n{out.stderr}", file=sys.stderr)
            continue
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))

    gemm = (
        results.pop(0)["gemm_gflops"]
        if results and results[0]["engine"] == "gemm"
        else float("nan")
    )
    print(
        f"config {args.config}: n_layer={config.n_layer} n_head={config.n_head} "
        f"C={config.n_embd} V={config.vocab_size}, B={args.batch} T={T}, {args.threads} thread(s), "
        f"best of {args.steps} steps; float32 GEMM rate at these shapes: {gemm:.1f} GFLOP/s"
    )
    anchor = next((r["seconds"] for r in results if r["engine"] == "torch"), float("nan"))
    header = f"{'engine':<14}{'ms/step':>10}{'tokens/s':>11}{'GFLOP/s':>9}{'of GEMM':>9}"
    print(header + f"{'peak MiB':>10}{'vs torch':>10}")
    for r in results:
        t = r["seconds"]
        gflops = r["flops_per_step"] / t / 1e9
        print(
            f"{r['engine']:<14}{1e3 * t:>10.1f}{args.batch * T / t:>11.0f}{gflops:>9.1f}"
            f"{gflops / gemm:>9.0%}{r['peak_step_mib']:>10.0f}{anchor / t:>10.2f}"
        )
    for r in results:
        if "activation_mib" in r:
            print(f"(fused activation buffers: {r['activation_mib']:.0f} MiB)")
            break


if __name__ == "__main__":
    main()
