"""A full GPT-2 training step (forward, backward, gradient clipping, AdamW) against PyTorch.

Engines, each a full step from the same initial weights and batch:

    fused-numba       tinygradlm's fused layer chain with the Numba kernels (the default
                      backend), then ``clip_grad_norm`` and ``AdamW.step`` on the flat buffers,
                      the functions the Trainer's step calls
    fused-numba-recompute
                      fused-numba with ``recompute_mlp``: x2 and c_fc's outputs computed
                      again in the backward instead of kept (the same gradients, bit for bit,
                      in less memory, for two more matmuls per block)
    fused-numpy       the same with the NumPy reference layers and update
    autograd          the same gradient from the ``Tensor`` autograd engine
    torch             the headline baseline: a nanoGPT-style PyTorch ``nn.Module`` (token and
                      position embeddings, pre-LN blocks, ``F.scaled_dot_product_attention``
                      with ``is_causal=True``, GELU tanh, LM head tied to the embedding),
                      ``torch.nn.utils.clip_grad_norm_`` and ``torch.optim.AdamW`` with its
                      defaults on the CPU (decay on the 2-D weights, as nanoGPT groups them)
    torch-functional  PyTorch eager on the functional GPT-2 of ``tinygradlm.testing.torch_gpt2``
                      (explicit mask and softmax), the same clip and AdamW

Every engine runs in a fresh process with BLAS, Numba and PyTorch pinned to the same thread
count; the engines take turns, round after round (``--rounds``), and each figure is the median
over the rounds of a round's median step. For each engine it reports ms/step, tokens/s, the
achieved GFLOP/s (6·N + attention's FLOPs per token) and that rate as a fraction of the float32
GEMM rate measured in the same run at the step's own matmul shapes, the memory a step needs
("step MiB": the resident-set high-water mark of the steps minus the resident set after the
libraries were imported: weights, gradients, optimizer state, activations and temporaries),
the process's whole peak resident set, and the loss of the first step (the same weights give
the same loss in every engine: the check that the baseline is the same model).

``--config`` takes a benchmark preset (model, B, T) or any ``GPTConfig`` preset name with
``--batch`` / ``--seq``::

    tiny          tiny GPT (2 layers, C=64, V=512), B=4, T=64: the tests
    small         4 layers, 4 heads, C=256, V=4096, B=8, T=256: the development reference
    gpt2-t64      GPT-2 124M, B=4, T=64 (llm.c's default training shape)
    gpt2-t256     GPT-2 124M, B=4, T=256
    gpt2-t1024    GPT-2 124M, B=4, T=1024

    python bench/step.py                                   # "small", 1 and 2 threads
    python bench/step.py --engines all                     # every engine
    python bench/step.py --config gpt2-t256 --threads 1 --engines fused-numba,torch
    python bench/step.py --config tiny --threads 1 --steps 1 --rounds 1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

ENGINES = [
    "fused-numba",
    "fused-numba-recompute",
    "fused-numpy",
    "autograd",
    "torch",
    "torch-functional",
]
BASELINE = "torch"  # the engine the speed and memory ratios are taken against

# name -> (GPTConfig preset, B, T)
BENCH_PRESETS = {
    "tiny": ("tiny", 4, 64),
    "small": ("small", 8, 256),
    "gpt2-t64": ("gpt2", 4, 64),
    "gpt2-t256": ("gpt2", 4, 256),
    "gpt2-t1024": ("gpt2", 4, 1024),
}

# the step's hyperparameters: nanoGPT's / the Trainer's defaults; the schedule does not matter
LR, BETAS, EPS, WEIGHT_DECAY, GRAD_CLIP = 6e-4, (0.9, 0.95), 1e-8, 0.1, 1.0

# the LM head's columns in the GEMM-rate measurement: a slice of the vocabulary (the rate is the
# same, the time is not)
_GEMM_MAX_HEAD_COLUMNS = 8192


def resolve(name: str, batch: int | None, seq: int | None) -> tuple[str, int, int]:
    """(GPTConfig preset, B, T) of a benchmark preset or a model preset, with overrides."""
    from tinygradlm.model import GPTConfig

    if name in BENCH_PRESETS:
        model, B, T = BENCH_PRESETS[name]
    else:
        model = name
        B, T = 8, GPTConfig.preset(name).block_size  # raises on an unknown name
    return model, batch or B, seq or T


def status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS: resident now, VmHWM: its high-water mark)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peak_rss() -> bool:
    """Restart VmHWM from the current resident set (Linux: writing 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# the float32 GEMM rate at the step's shapes
# --------------------------------------------------------------------------------------------


def gemm_shapes(config: Any, B: int, T: int) -> list[tuple[str, int, int, int]]:
    """The step's projection GEMMs as (what, M, K, N): for each weight (K, N) the forward
    (rows, K)·(K, N), the input gradient (rows, N)·(N, K)ᵀ and the weight gradient
    (K, rows)·(rows, N), rows = B·T; the LM head with at most 8192 vocabulary columns."""
    C, rows = config.n_embd, B * T
    weights = [
        (C, 3 * C),
        (C, C),
        (C, 4 * C),
        (4 * C, C),
        (C, min(config.Vp, _GEMM_MAX_HEAD_COLUMNS)),
    ]
    shapes = []
    for K, N in weights:
        shapes += [("fwd", rows, K, N), ("dx", rows, N, K), ("dw", K, rows, N)]
    return shapes


def gemm_gflops(config: Any, B: int, T: int, repeats: int = 3, library: str = "numpy") -> float:
    """float32 GEMM rate (GFLOP/s) over :func:`gemm_shapes`: total FLOPs over the sum of each
    product's best time, operands laid out as the step has them (transposed views for the
    backward products). ``library``: ``numpy`` (its BLAS, which tinygradlm's layers call) or
    ``torch`` (PyTorch's matmul on the same arrays, the rate its engine can reach)."""
    import numpy as np

    if library == "torch":
        import torch

        def matmul(a: Any, b: Any, out: Any) -> None:
            torch.matmul(a, b, out=out)

        wrap = torch.from_numpy
    else:
        matmul, wrap = np.matmul, (lambda a: a)
    rng = np.random.default_rng(0)
    total_flops, total_time = 0, 0.0
    for what, M, K, N in gemm_shapes(config, B, T):
        if what == "fwd":  # x (M, K) @ w (K, N)
            a, b = rng.random((M, K), np.float32), rng.random((K, N), np.float32)
        elif what == "dx":  # dy (M, K) @ wᵀ, w stored (N, K)
            a, b = rng.random((M, K), np.float32), rng.random((N, K), np.float32).T
        else:  # xᵀ (M, K) @ dy (K, N), x stored (K, M)
            a, b = rng.random((K, M), np.float32).T, rng.random((K, N), np.float32)
        a, b, out = wrap(a), wrap(b), wrap(np.empty((M, N), np.float32))
        matmul(a, b, out)  # warm-up
        best = min(_timed(lambda a=a, b=b, out=out: matmul(a, b, out)) for _ in range(repeats))
        total_flops += 2 * M * K * N
        total_time += best
    return total_flops / total_time / 1e9


def blas_description() -> str:
    """NumPy's BLAS as the step runs it: ``OpenBLAS 0.3.31, SkylakeX kernels (chosen for this
    CPU)``; the kernel named by ``OPENBLAS_CORETYPE`` when the environment sets one."""
    import numpy as np

    from tinygradlm.machine import blas_kernel

    kernel = blas_kernel()
    if kernel is None:
        config = np.show_config(mode="dicts") or {}
        blas = config.get("Build Dependencies", {}).get("blas", {}).get("name", "unknown")
        return f"{blas} (kernels not known)"
    try:
        from threadpoolctl import threadpool_info

        version = next(
            (f" {d['version']}" for d in threadpool_info() if d["internal_api"] == "openblas"), ""
        )
    except ImportError:
        version = ""
    return f"OpenBLAS{version}, {kernel[0]} kernels ({kernel[1]})"


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------
# the nanoGPT-style PyTorch model
# --------------------------------------------------------------------------------------------


def nanogpt(torch: Any, config: Any) -> Any:
    """A GPT-2 ``nn.Module`` as nanoGPT writes it, for ``config`` (a GPTConfig, unpadded
    vocabulary); ``model(idx, targets)`` returns (logits, mean cross-entropy)."""
    nn, F = torch.nn, torch.nn.functional
    C, NH, V, eps = config.n_embd, config.n_head, config.vocab_size, config.layer_norm_epsilon

    class CausalSelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c_attn = nn.Linear(C, 3 * C)
            self.c_proj = nn.Linear(C, C)

        def forward(self, x: Any) -> Any:
            B, T, _ = x.size()
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (t.view(B, T, NH, C // NH).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c_fc = nn.Linear(C, 4 * C)
            self.gelu = nn.GELU(approximate="tanh")
            self.c_proj = nn.Linear(4 * C, C)

        def forward(self, x: Any) -> Any:
            return self.c_proj(self.gelu(self.c_fc(x)))

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln_1 = nn.LayerNorm(C, eps=eps)
            self.attn = CausalSelfAttention()
            self.ln_2 = nn.LayerNorm(C, eps=eps)
            self.mlp = MLP()

        def forward(self, x: Any) -> Any:
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = nn.ModuleDict(
                {
                    "wte": nn.Embedding(V, C),
                    "wpe": nn.Embedding(config.block_size, C),
                    "h": nn.ModuleList([Block() for _ in range(config.n_layer)]),
                    "ln_f": nn.LayerNorm(C, eps=eps),
                }
            )
            self.lm_head = nn.Linear(C, V, bias=False)
            self.transformer.wte.weight = self.lm_head.weight  # weight tying

        def forward(self, idx: Any, targets: Any) -> tuple[Any, Any]:
            T = idx.size(1)
            pos = torch.arange(0, T, dtype=torch.long)
            x = self.transformer.wte(idx) + self.transformer.wpe(pos)
            for block in self.transformer.h:
                x = block(x)
            logits = self.lm_head(self.transformer.ln_f(x))
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
            return logits, loss

    return GPT()


def load_into_nanogpt(torch: Any, module: Any, state: dict[str, Any]) -> None:
    """Copy a tinygradlm state dict (HF GPT-2 names; Conv1D weights (in, out)) into
    :func:`nanogpt`'s module (``nn.Linear`` weights (out, in))."""
    import numpy as np

    params = dict(module.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            target = params["transformer." + name]
            conv1d = name.endswith(".weight") and ("attn.c_" in name or "mlp.c_" in name)
            target.copy_(torch.from_numpy(np.ascontiguousarray(value.T if conv1d else value)))


def torch_adamw(torch: Any, params: list[Any]) -> Any:
    """``torch.optim.AdamW`` as nanoGPT configures it on the CPU: weight decay on the 2-D
    tensors only, the rest of the options PyTorch's defaults (no ``fused``, no ``foreach``)."""
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS)


# --------------------------------------------------------------------------------------------
# one engine in this process
# --------------------------------------------------------------------------------------------


def build(engine: str, config: Any, B: int, T: int) -> tuple[Any, Any]:
    """``engine``'s model and optimizer for ``config`` on one fixed (B, T) batch (seed 0 weights
    and tokens): returns ``step() -> loss`` and our GPT (None for the PyTorch engines)."""
    import numpy as np

    from tinygradlm import backend
    from tinygradlm.model import GPT

    model = GPT(config, seed=0)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, config.vocab_size, size=(B, T))
    targets = rng.integers(0, config.vocab_size, size=(B, T))

    if engine.startswith("torch"):
        import torch

        tidx, ttargets = torch.from_numpy(idx), torch.from_numpy(targets)
        if engine == "torch":
            module = nanogpt(torch, config)
            load_into_nanogpt(torch, module, model.state_dict())
            params = list(module.parameters())

            def loss_fn() -> Any:
                return module(tidx, ttargets)[1]

        else:
            from tinygradlm.testing.torch_gpt2 import gpt2_loss

            sd = {k: torch.tensor(v, requires_grad=True) for k, v in model.state_dict().items()}
            params = list(sd.values())

            def loss_fn() -> Any:
                return gpt2_loss(torch, sd, tidx, ttargets, config)

        del model  # its buffers go back to the system: only the torch weights stay
        opt = torch_adamw(torch, params)

        def step() -> float:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
            opt.step()
            return loss.item()

        return step, None

    from tinygradlm.optim import AdamW, clip_grad_norm

    kind, _, rest = engine.partition("-")
    kernels, _, recompute = rest.partition("-")
    backend.set_kernels(kernels or "numba")
    model.recompute_mlp = recompute == "recompute"
    name = "fused" if kind == "fused" else "autograd"
    opt = AdamW.for_model(model, lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)

    def step() -> float:  # what the Trainer's step does on one process (LocalSync)
        loss, _ = model.forward_backward(idx, targets, engine=name)
        clip_grad_norm(model.flat_grads, GRAD_CLIP)
        opt.step(LR)
        return loss

    return step, model


def worker(engine: str, preset: str, B: int, T: int, steps: int) -> dict[str, Any]:
    """Take one step of the tiny model first (JIT compilation, the libraries' first-call
    set-up: not a step's memory), then build ``engine`` at ``preset``, take one warm-up step
    (buffer allocation, the optimizer's state) and ``steps`` timed steps; all in this process."""
    import gc

    from tinygradlm.model import GPTConfig

    if engine.startswith("torch"):
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    warm, _ = build(engine, GPTConfig.preset("tiny"), 2, 16)
    warm()
    del warm
    gc.collect()
    rss_libraries = status_kib("VmRSS")

    step, model = build(engine, GPTConfig.preset(preset), B, T)
    hwm_reset = reset_peak_rss()  # setup's own transients (the copy of the weights) not counted
    start = time.perf_counter()
    losses = [step()]  # warm-up
    warmup = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - start)
    peak = status_kib("VmHWM")
    result = {
        "engine": engine,
        "step_seconds": times,
        "warmup_seconds": warmup,
        "losses": [float(x) for x in losses],
        "step_mib": (peak - rss_libraries) / 1024,
        "peak_rss_mib": peak / 1024,
        "libraries_rss_mib": rss_libraries / 1024,
        "peak_reset": hwm_reset,
    }
    if model is not None:
        result["activation_mib"] = model.activation_bytes(B, T) / 2**20
    return result


# --------------------------------------------------------------------------------------------
# the driver: fresh processes, rounds alternated
# --------------------------------------------------------------------------------------------


def thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    return env


def run_worker(args: list[str], env: dict[str, str]) -> dict[str, Any] | None:
    cmd = [sys.executable, os.path.abspath(__file__), *args]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        print(f"{' '.join(args)} failed:\n{out.stderr}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(
    name: str,
    engines: list[str],
    threads: int,
    rounds: int,
    steps: int,
    batch: int | None,
    seq: int | None,
    gemm_repeats: int,
    cpus: str | None = None,
) -> dict[str, Any]:
    """Every engine and the GEMM rate at ``threads``, ``rounds`` times in turns; the summary.
    ``cpus`` ("0" or "0,1"): the CPUs the workers may run on (all when None)."""
    from tinygradlm.model import GPT, GPTConfig

    preset, B, T = resolve(name, batch, seq)
    config = GPTConfig.preset(preset)
    common = ["--config", preset, "--batch", str(B), "--seq", str(T)]
    common += ["--cpus", cpus] if cpus else []
    env = thread_env(threads)
    per_engine: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
    gemm_rates: dict[str, list[float]] = {"gemm": [], "gemm-torch": []}
    blas: dict[str, str] = {}
    gemm_workers = ["gemm"] + (["gemm-torch"] if BASELINE in engines else [])
    for _ in range(rounds):
        for worker in gemm_workers:
            gemm_args = ["--worker", worker, *common, "--gemm-repeats", str(gemm_repeats)]
            rate = run_worker(gemm_args, env)
            if rate is not None:
                gemm_rates[worker].append(rate["gemm_gflops"])
                blas[worker] = rate["blas"]
        for engine in engines:
            r = run_worker(["--worker", engine, *common, "--steps", str(steps)], env)
            if r is not None:
                per_engine[engine].append(r)
    flops = GPT.flops_per_token.__get__(_Shape(config))(T) * B * T
    gemm, torch_gemm = (
        statistics.median(gemm_rates[w]) if gemm_rates[w] else float("nan")
        for w in ("gemm", "gemm-torch")
    )
    rows = []
    for engine, runs in per_engine.items():
        if not runs:
            continue
        seconds = statistics.median(statistics.median(r["step_seconds"]) for r in runs)
        rows.append(
            {
                "engine": engine,
                "ms_per_step": 1e3 * seconds,
                "tokens_per_s": B * T / seconds,
                "gflops": flops / seconds / 1e9,
                "of_gemm": flops / seconds / 1e9 / gemm,
                "step_mib": statistics.median(r["step_mib"] for r in runs),
                "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
                "loss_step0": runs[0]["losses"][0],
                "losses": runs[0]["losses"],
                "round_ms": [1e3 * statistics.median(r["step_seconds"]) for r in runs],
                **(
                    {"activation_mib": runs[0]["activation_mib"]}
                    if "activation_mib" in runs[0]
                    else {}
                ),
            }
        )
    base = next((r for r in rows if r["engine"] == BASELINE), None)
    for r in rows:
        r["speed_vs_torch"] = base["ms_per_step"] / r["ms_per_step"] if base else None
        r["memory_vs_torch"] = r["step_mib"] / base["step_mib"] if base else None
    return {
        "config": name,
        "model": preset,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_embd": config.n_embd,
        "vocab_size": config.vocab_size,
        "batch": B,
        "seq": T,
        "threads": threads,
        "cpus": cpus,
        "rounds": rounds,
        "steps": steps,
        "flops_per_step": flops,
        "gemm_gflops": gemm,
        "gemm_gflops_rounds": gemm_rates["gemm"],
        "blas": blas.get("gemm"),
        "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
        "torch_gemm_gflops": torch_gemm,
        "torch_gemm_gflops_rounds": gemm_rates["gemm-torch"],
        "torch_blas": blas.get("gemm-torch"),
        "engines": rows,
    }


class _Shape:
    """What ``GPT.flops_per_token`` reads, without allocating a model."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.num_params = config.parameter_count() - (config.Vp - config.vocab_size) * config.n_embd


def print_table(result: dict[str, Any]) -> None:
    r = result
    pinned = f" on CPUs {r['cpus']}" if r["cpus"] else ""
    print(
        f"\n{r['config']}: {r['model']} n_layer={r['n_layer']} n_head={r['n_head']} "
        f"C={r['n_embd']} V={r['vocab_size']}, B={r['batch']} T={r['seq']}, "
        f"{r['threads']} thread(s){pinned}, median of {r['rounds']} rounds x {r['steps']} steps"
    )
    print(
        f"float32 GEMM rate at the step's shapes: {r['gemm_gflops']:.1f} GFLOP/s with NumPy "
        f"({r['blas']})"
        + (
            f"; {r['torch_gemm_gflops']:.1f} GFLOP/s with PyTorch's matmul ({r['torch_blas']})"
            if r["torch_blas"]
            else ""
        )
    )
    head = f"{'engine':<17}{'ms/step':>10}{'tokens/s':>10}{'GFLOP/s':>9}{'of GEMM':>9}"
    print(head + f"{'step MiB':>10}{'peak RSS':>10}{'vs torch':>10}{'mem/torch':>10}{'loss0':>10}")
    for e in r["engines"]:
        speed = f"{e['speed_vs_torch']:.2f}" if e["speed_vs_torch"] else "-"
        mem = f"{e['memory_vs_torch']:.2f}" if e["memory_vs_torch"] else "-"
        print(
            f"{e['engine']:<17}{e['ms_per_step']:>10.1f}{e['tokens_per_s']:>10.0f}"
            f"{e['gflops']:>9.1f}{e['of_gemm']:>9.0%}{e['step_mib']:>10.0f}"
            f"{e['peak_rss_mib']:>10.0f}{speed:>10}{mem:>10}{e['loss_step0']:>10.5f}"
        )
    for e in r["engines"]:
        if "activation_mib" in e:
            print(f"(fused activation buffers: {e['activation_mib']:.0f} MiB)")
            break
    for e in r["engines"]:
        if e["engine"].startswith("torch") and r["torch_blas"]:
            own = e["gflops"] / r["torch_gemm_gflops"]
            print(f"({e['engine']}: {own:.0%} of PyTorch's own matmul rate)")
    if r["openblas_coretype_env"]:
        print(
            f"(OPENBLAS_CORETYPE={r['openblas_coretype_env']} is set: NumPy's OpenBLAS runs the "
            "kernels it names, not the ones it would choose for this CPU; unset it in this "
            "command to measure those)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="presets: "
        + ", ".join(f"{k} ({m}, B={b}, T={t})" for k, (m, b, t) in BENCH_PRESETS.items())
        + "; or a GPTConfig preset name with --batch/--seq",
    )
    parser.add_argument("--config", default="small", help="a benchmark preset or GPTConfig preset")
    parser.add_argument("--batch", type=int, default=None, help="B (default: the preset's)")
    parser.add_argument("--seq", type=int, default=None, help="T (default: the preset's)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per process")
    parser.add_argument(
        "--rounds", type=int, default=3, help="fresh processes per engine, in turns"
    )
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument(
        "--engines",
        default="fused-numba,torch",
        help="comma-separated, or all: " + ", ".join(ENGINES),
    )
    parser.add_argument("--gemm-repeats", type=int, default=3)
    parser.add_argument(
        "--cpus",
        help="run the workers on these CPUs only (e.g. 0: two threads sharing one core, as "
        "ranks on a busy node)",
    )
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        if args.cpus:  # before NumPy, Numba and PyTorch start their threads: they inherit it
            os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
        from tinygradlm.model import GPTConfig

        if args.worker in ("gemm", "gemm-torch"):
            config = GPTConfig.preset(args.config)
            if args.worker == "gemm-torch":
                import torch

                torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
                library, blas = "torch", "MKL" if torch.backends.mkl.is_available() else "?"
            else:
                library, blas = "numpy", blas_description()
            rate = gemm_gflops(config, args.batch, args.seq, args.gemm_repeats, library)
            print(json.dumps({"engine": args.worker, "gemm_gflops": rate, "blas": blas}))
        else:
            print(json.dumps(worker(args.worker, args.config, args.batch, args.seq, args.steps)))
        return

    engines = ENGINES if args.engines == "all" else args.engines.split(",")
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        parser.error(f"unknown engines {unknown}: choose from {', '.join(ENGINES)}")
    if any(e.startswith("torch") for e in engines):
        try:
            import torch
        except ImportError:
            print("(PyTorch not installed: no torch rows)")
            engines = [e for e in engines if not e.startswith("torch")]
    results = []
    for threads in (int(t) for t in args.threads.split(",")):
        result = measure(
            args.config,
            engines,
            threads,
            args.rounds,
            args.steps,
            args.batch,
            args.seq,
            args.gemm_repeats,
            args.cpus,
        )
        print_table(result)
        results.append(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
