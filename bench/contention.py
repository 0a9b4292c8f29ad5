"""A full training step with more threads than cores: is it still no slower than one thread?

A busy cluster node gives a rank fewer cores than it asked threads for (ranks bound to the same
core, or OMP_NUM_THREADS set for a bigger machine). Threads that busy-wait for work instead of
sleeping then take the core from the one thread that has work, and a step slows far more than
the lost parallelism explains. This bench runs the training step the Trainer runs — the fused
forward/backward, global-norm clipping, AdamW (``tinygradlm.optim``) — in fresh processes:

    1t/1core   1 thread (BLAS and Numba), pinned to one core: the baseline
    2t/1core   2 threads, pinned to the same single core: the oversubscribed step
    2t/1core*  the same, OpenBLAS told 2 threads after it started (as a launcher's setting or
               ``threadpoolctl`` does), so both its threads share the core
    2t/2cores  2 threads on 2 cores, for reference (``--two-cores``, when there are 2)

and prints per-section seconds (forward, backward, clip, optimizer, step) as medians over the
rounds, the modes alternating round by round, and the ratio 2t/1core ÷ 1t/1core (target ≤ 1.3).
The threads come from the environment (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
``NUMBA_NUM_THREADS``) and the core from ``os.sched_setaffinity``, set before NumPy starts.

    python bench/contention.py                       # "small", B=8, T=256
    python bench/contention.py --config gpt2 --batch 4 --seq 64 --steps 2 --modes 2t/1core
    python bench/contention.py --norm 124000000 --steps 3   # the clip's norm at GPT-2 size
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SECTIONS = ("forward", "backward", "clip", "optimizer", "step")


def worker(preset: str, B: int, T: int, steps: int) -> dict:
    """Time ``steps`` training steps (after one warm-up) in this process; seconds per section,
    the median over the steps."""
    import numpy as np

    from tinygradlm import backend
    from tinygradlm.model import GPT, GPTConfig
    from tinygradlm.optim import AdamW, clip_to_norm, grad_norm

    config = GPTConfig.preset(preset)
    model = GPT(config, seed=0)
    opt = AdamW.for_model(model, lr=1e-4, weight_decay=0.1)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, config.vocab_size, size=(B, T))
    targets = rng.integers(0, config.vocab_size, size=(B, T))
    backend.set_kernels("numba")
    if os.environ.get("BENCH_FORCE_BLAS_THREADS"):
        force_blas_threads(int(os.environ["BENCH_FORCE_BLAS_THREADS"]))

    def one_step() -> dict[str, float]:
        t0 = time.perf_counter()
        model.forward(idx)  # forward alone, outside the step: the step's forward takes as long
        t1 = time.perf_counter()
        model.forward_backward(idx, targets, engine="fused")  # what the Trainer's step runs
        t2 = time.perf_counter()
        clip_to_norm(model.flat_grads, grad_norm(model.flat_grads), 1.0)
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        fwd_bwd = t2 - t1
        return {
            "forward": t1 - t0,
            "backward": fwd_bwd - (t1 - t0),
            "clip": t3 - t2,
            "optimizer": t4 - t3,
            "step": t4 - t1,
        }

    one_step()  # warm-up: compilation, buffers
    times = [one_step() for _ in range(steps)]
    return {k: median([t[k] for t in times]) for k in SECTIONS}


def norm_worker(n: int, repeats: int) -> dict:
    """Seconds (median of ``repeats``) of ``grad_norm`` over ``n`` float32 entries, and of the
    BLAS dot product over float64 chunks it replaced, in this process."""
    import numpy as np

    from tinygradlm.optim import grad_norm

    def blas_norm(grads: np.ndarray) -> float:
        total = 0.0
        for start in range(0, grads.size, 1 << 20):
            chunk = grads[start : start + (1 << 20)].astype(np.float64)
            total += float(np.dot(chunk, chunk))
        return total**0.5

    grads = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    times: dict[str, list[float]] = {"grad_norm": [], "blas_dot": []}
    for _ in range(repeats):  # alternated
        for name, fn in (("grad_norm", grad_norm), ("blas_dot", blas_norm)):
            t = time.perf_counter()
            fn(grads)
            times[name].append(time.perf_counter() - t)
    return {k: median(v) for k, v in times.items()}


def force_blas_threads(threads: int) -> None:
    """Tell the loaded OpenBLAS ``threads`` threads whatever the cores (its own setter does not
    cap; ``tinygradlm.dist.threads.set_blas_threads`` does): what a launcher's thread setting,
    or ``threadpoolctl``, does after OpenBLAS started."""
    import ctypes

    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    for path in paths:
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads"):
            if hasattr(lib, name):
                getattr(lib, name)(ctypes.c_int(threads))
                return
    raise RuntimeError("no OpenBLAS found to set")


def median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def norm_main(args: argparse.Namespace) -> None:
    cpus = os.sched_getaffinity(0)
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for threads in runs:
            runs[threads].append(run_mode(args, threads, cpus, False, ("--norm", str(args.norm))))
    print(
        f"norm over {args.norm} float32 entries, seconds, medians of {args.rounds} process(es) "
        f"x {args.steps}; {len(cpus)} core(s), load average {os.getloadavg()[0]:.2f}"
    )
    for threads, rs in runs.items():
        ours, dot = (median([r[k] for r in rs]) for k in ("grad_norm", "blas_dot"))
        print(f"{threads} thread(s): grad_norm {ours:.3f}  BLAS dot {dot:.3f}  ({dot / ours:.2f}x)")


def run_mode(
    args: argparse.Namespace, threads: int, cpus: set[int], force: bool, extra: tuple[str, ...] = ()
) -> dict:
    """One fresh worker process with ``threads`` threads, bound to ``cpus``; ``force``: OpenBLAS
    told ``threads`` after it started (it caps what it reads at start to the cores)."""
    env = dict(os.environ)
    env.pop("BENCH_FORCE_BLAS_THREADS", None)
    if force:
        env["BENCH_FORCE_BLAS_THREADS"] = str(threads)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    cmd = [sys.executable, __file__, "--worker", "--config", args.config, "--batch",
           str(args.batch), "--seq", str(args.seq), "--steps", str(args.steps), *extra]  # fmt: skip
    out = subprocess.run(
        cmd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )
    if out.returncode:
        raise RuntimeError(f"worker failed ({threads} threads on {sorted(cpus)}):\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small", help="a GPTConfig preset")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=None, help="T (default: the block size)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per process")
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes per mode")
    parser.add_argument("--two-cores", action="store_true", help="also 2 threads on 2 cores")
    parser.add_argument("--modes", help="only these modes besides 1t/1core, e.g. 2t/1core")
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    parser.add_argument(
        "--norm",
        type=int,
        metavar="N",
        help="instead: the clip's norm over N entries, grad_norm against a BLAS dot product, "
        "1 and 2 threads on every core this process may use",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.seq is None:
        from tinygradlm.model import GPTConfig

        args.seq = GPTConfig.preset(args.config).block_size
    if args.worker and args.norm:
        print(json.dumps(norm_worker(args.norm, args.steps)))
        return
    if args.worker:
        print(json.dumps(worker(args.config, args.batch, args.seq, args.steps)))
        return
    if args.norm:
        norm_main(args)
        return

    cores = sorted(os.sched_getaffinity(0))
    modes = {
        "1t/1core": (1, {cores[0]}, False),
        "2t/1core": (2, {cores[0]}, False),
        "2t/1core*": (2, {cores[0]}, True),
    }
    if args.two_cores and len(cores) >= 2:
        modes["2t/2cores"] = (2, set(cores[:2]), False)
    if args.modes:
        keep = {"1t/1core", *args.modes.split(",")}
        modes = {m: v for m, v in modes.items() if m in keep}
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for _ in range(args.rounds):  # the modes alternate, so load from elsewhere hits them alike
        for mode, (threads, cpus, force) in modes.items():
            runs[mode].append(run_mode(args, threads, cpus, force))
    result = {m: {k: median([r[k] for r in rs]) for k in SECTIONS} for m, rs in runs.items()}
    base = result["1t/1core"]
    ratios = {m: {k: r[k] / base[k] for k in SECTIONS if base[k] > 0} for m, r in result.items()}
    if args.json:
        print(json.dumps({"seconds": result, "ratios": ratios}))
        return
    print(
        f"config {args.config}, B={args.batch} T={args.seq}: medians of {args.rounds} round(s) "
        f"x {args.steps} step(s), seconds; load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{'mode':<11}" + "".join(f"{k:>11}" for k in SECTIONS))
    for mode, secs in result.items():
        print(f"{mode:<11}" + "".join(f"{secs[k]:>11.4f}" for k in SECTIONS))
    print("÷ 1t/1core:")
    for mode, rs in ratios.items():
        if mode != "1t/1core":
            print(f"{mode:<11}" + "".join(f"{rs.get(k, float('nan')):>11.2f}" for k in SECTIONS))


if __name__ == "__main__":
    main()
