"""Data-parallel scaling: tokens/s of a full training step at P = 1, 2, … MPI ranks, allreduce
bandwidth, and PyTorch's single-process multi-threaded step beside them.

A step is what ``tinygradlm train`` does per optimizer step with one micro-batch: the fused
forward+backward (Numba kernels) of the rank's slice of a synthetic global batch (random token
ids, no data files), ``dist.allreduce_mean_`` of the full gradient, and one AdamW update. Each
configuration runs under ``mpiexec -n P`` in fresh processes with one thread per rank (BLAS,
Numba and OpenMP); a barrier starts every timed step, the slowest rank's time counts, and the
median of the timed steps (after warm-up) is reported. ``mpiexec`` is the one beside this Python
(the ``mpich`` wheel's) unless ``--mpiexec`` names another; ``--json`` also writes the results to
a file, rewritten after each part.

- weak scaling: a fixed batch per rank (``--batch``, 8), so the global batch grows with P;
- strong scaling: a fixed global batch (``--strong-batch``, default ``--batch``), so each rank
  gets ``batch / P``;
- allreduce: ``Allreduce`` of float32 buffers from 1 MB up to the model's gradient size, with
  bus bandwidth = 2(P−1)/P · bytes / time (as NCCL's tests define it);
- context: one process with ``--threads`` threads (PyTorch eager with its AdamW, and the same
  fused step), the way a single multi-threaded process would use the same cores.
- overlap (``--overlap-compare ROUNDS``, instead of the above): at each P > 1, the step with the
  gradient's allreduce after the backward (``dist.allreduce_mean_``, ``overlap_comm = false``)
  and with each layer's bucket started inside the backward (``dist.sync.BucketReduce``), tested
  at layer boundaries only (``layers``) or also by a thread every 0.5 ms (``on``, what
  ``overlap_comm = true`` does), alternated step by step in each of ROUNDS fresh runs; the medians
  of the step time, of the exposed communication (rank 0's time in the allreduce, or in
  ``Waitall`` after the backward) and of the ratio on / off within a run.

    python bench/scaling.py                      # "small": 4 layers, 4 heads, C=256, T=256, V=4096
    python bench/scaling.py --max-ranks 4        # also oversubscribe: more ranks than cores
    python bench/scaling.py --config tiny --steps 3
    python bench/scaling.py --ranks 1,2,4,8,16 --strong-batch 16 --json scaling.json
                                                 # chosen P; global B=16 splits over 16 ranks
    python bench/scaling.py --ranks 1,2,4,8,16 --strong-batch 16 --overlap-steps on
                                                 # the same, each step's allreduce overlapped
    python bench/scaling.py --ranks 2 --overlap-compare 5            # overlap on vs off
    python bench/scaling.py --ranks 2 --overlap-compare 5 --n-embd 512   # a wider "small"
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
MPIEXEC = Path(sys.executable).with_name("mpiexec")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _batch(config, global_batch: int, T: int, rank: int, per_rank: int):
    """Rank ``rank``'s slice of a synthetic global batch (the same global batch for any P)."""
    import numpy as np

    rng = np.random.default_rng(0)
    tokens = rng.integers(0, config.vocab_size, size=(global_batch, T + 1))
    rows = tokens[rank * per_rank : (rank + 1) * per_rank]
    return rows[:, :-1].copy(), rows[:, 1:].copy()


def _config(preset: str, n_embd: int | None):
    """The preset, with ``n_embd`` (and 64 per head) when given."""
    from tinygradlm.model import GPTConfig

    if n_embd is None:
        return GPTConfig.preset(preset)
    return GPTConfig.preset(preset, n_embd=n_embd, n_head=max(n_embd // 64, 1))


def step_worker(
    preset: str,
    per_rank: int,
    T: int,
    steps: int,
    warmup: int,
    n_embd: int | None = None,
    overlap: str = "off",
) -> dict | None:
    """Under mpiexec (or alone): time ``steps`` data-parallel steps; rank 0 returns the result.
    ``overlap``: "off", one ``Allreduce`` after the backward; "on", the buckets start inside the
    backward (one layer each), a thread tests them every ``POLL_S`` (as the sync does, from
    ``POLL_MIN_BYTES`` of gradient on), and the step waits for them after it; "layers", the
    same tested at layer boundaries only; "both", the three alternated step by step in this
    one run (``modes`` holds each one's medians)."""
    import numpy as np

    from tinygradlm import backend, dist
    from tinygradlm.dist.sync import POLL_MIN_BYTES, POLL_S, BucketReduce
    from tinygradlm.model import GPT
    from tinygradlm.optim import AdamW

    d = dist.init()
    P = d.world_size
    backend.set_kernels("numba")
    config = _config(preset, n_embd)
    model = GPT(config, seed=0)
    d.broadcast_(model.flat_params)
    opt = AdamW.for_model(model, lr=1e-4)
    idx, targets = _batch(config, per_rank * P, T, d.rank, per_rank)
    # "layers": tested at each layer boundary only; "on": as the sync does, with its thread
    at_layers = BucketReduce(d, model.shapes, model.flat_grads)
    poll_s = POLL_S if model.flat_grads.nbytes >= POLL_MIN_BYTES else 0.0
    polled = BucketReduce(d, model.shapes, model.flat_grads, poll_s=poll_s)
    modes = ["off", "layers", "on"] if overlap == "both" else [overlap]

    def step(mode: str) -> tuple[float, float]:
        d.barrier()
        t0 = time.perf_counter()
        if mode == "off":
            model.forward_backward(idx, targets, engine="fused")
            t1 = time.perf_counter()
            d.allreduce_mean_(model.flat_grads)
        else:
            b = at_layers if mode == "layers" else polled
            b.begin()
            model.forward_backward(idx, targets, engine="fused", on_grads_final=b.final)
            t1 = time.perf_counter()
            b.finish()  # the communication the backward did not hide
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        return t3 - t0, t2 - t1

    for _ in range(warmup):
        for mode in modes:
            step(mode)
    times = np.array([[step(m) for m in modes] for _ in range(steps)])  # (steps, modes, 2)
    slowest = np.ascontiguousarray(times[:, :, 0])
    if d.enabled:
        from mpi4py import MPI

        d.comm.Allreduce(MPI.IN_PLACE, slowest, op=MPI.MAX)
    if d.rank != 0:
        return None
    per_mode = {
        mode: {
            "seconds": float(np.median(slowest[:, i])),
            "best_seconds": float(slowest[:, i].min()),
            # rank 0's allreduce (or wait after the backward), inside the step
            "comm_seconds": float(np.median(times[:, i, 1])),
        }
        for i, mode in enumerate(modes)
    }
    return {
        "P": P,
        "overlap": overlap,
        "per_rank": per_rank,
        "global_batch": per_rank * P,
        **per_mode[modes[0]],
        "modes": per_mode,
        "grad_bytes": int(model.flat_grads.nbytes),
        "tokens": per_rank * P * T,
    }


def allreduce_worker(sizes: list[int], repeats: int) -> dict | None:
    """Under mpiexec: median time of an in-place float32 ``Allreduce`` (slowest rank) per size."""
    import numpy as np
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rows = []
    for nbytes in sizes:
        buf = np.ones(nbytes // 4, dtype=np.float32)
        comm.Allreduce(MPI.IN_PLACE, buf)  # warm-up: connection and page set-up
        times = np.empty(repeats)
        for i in range(repeats):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf)
            times[i] = time.perf_counter() - t0
        comm.Allreduce(MPI.IN_PLACE, times, op=MPI.MAX)
        rows.append({"bytes": buf.nbytes, "seconds": float(np.median(times))})
    if comm.Get_rank() != 0:
        return None
    return {"P": comm.Get_size(), "rows": rows}


def torch_worker(
    preset: str, B: int, T: int, steps: int, warmup: int, threads: int, n_embd: int | None = None
) -> dict:
    """One process: PyTorch eager forward+backward and ``torch.optim.AdamW`` on ``threads``."""
    import numpy as np
    import torch

    from tinygradlm.model import GPT
    from tinygradlm.testing.torch_gpt2 import gpt2_loss

    torch.set_num_threads(threads)
    config = _config(preset, n_embd)
    model = GPT(config, seed=0)
    sd = {k: torch.tensor(v, requires_grad=True) for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(list(sd.values()), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    idx, targets = _batch(config, B, T, 0, B)
    tidx, ttargets = torch.tensor(idx), torch.tensor(targets)

    def step() -> float:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        gpt2_loss(torch, sd, tidx, ttargets, config).backward()
        opt.step()
        return time.perf_counter() - t0

    for _ in range(warmup):
        step()
    times = [step() for _ in range(steps)]
    return {"seconds": float(np.median(times)), "tokens": B * T}


def _run(cmd: list[str], threads: int) -> dict:
    env = {**os.environ, **{v: str(threads) for v in THREAD_VARS}}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def _mpi(mpiexec: Path, P: int, args: list[str]) -> dict:
    return _run([str(mpiexec), "-n", str(P), sys.executable, __file__, *args], threads=1)


def _fmt_bytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small", help="a GPTConfig preset")
    parser.add_argument("--batch", type=int, default=8, help="per rank (weak), global (strong)")
    parser.add_argument("--seq", type=int, default=None, help="T (default: the block size)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-ranks", type=int, default=_cores())
    parser.add_argument("--ranks", help="comma-separated P to run (default: 1 … --max-ranks)")
    parser.add_argument("--strong-batch", type=int, help="global B, strong (default: --batch)")
    parser.add_argument("--threads", type=int, default=_cores(), help="for the one-process rows")
    parser.add_argument("--repeats", type=int, default=20, help="allreduce timings per size")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--mpiexec", type=Path, default=MPIEXEC, help="the MPI launcher")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--n-embd", type=int, help="the preset's width replaced (64 per head)")
    parser.add_argument(
        "--overlap-steps",
        choices=("off", "on"),
        default="off",
        help="the weak/strong rows' steps: allreduce after the backward (off) or overlapped (on)",
    )
    parser.add_argument(
        "--overlap-compare",
        type=int,
        metavar="ROUNDS",
        help="only compare the step with and without overlap, ROUNDS alternated runs per P",
    )
    parser.add_argument("--overlap", nargs="?", const="both", default="off", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--per-rank", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    args = parser.parse_args()

    config = _config(args.config, args.n_embd)
    T = args.seq or config.block_size
    if args.worker:
        if args.worker == "step":
            result = step_worker(
                args.config, args.per_rank, T, args.steps, args.warmup, args.n_embd, args.overlap
            )
        elif args.worker == "allreduce":
            sizes = [int(s) for s in args.sizes.split(",")]
            result = allreduce_worker(sizes, args.repeats)
        else:
            result = torch_worker(
                args.config, args.batch, T, args.steps, args.warmup, args.threads, args.n_embd
            )
        if result is not None:
            print(json.dumps(result), flush=True)
        return

    if not args.mpiexec.exists():
        sys.exit(f"no mpiexec at {args.mpiexec} (pip install mpich mpi4py, or --mpiexec PATH)")
    common = ["--config", args.config, "--seq", str(T), "--steps", str(args.steps),
              "--warmup", str(args.warmup)]  # fmt: skip
    if args.n_embd:
        common += ["--n-embd", str(args.n_embd)]
    steps_overlap = ["--overlap", args.overlap_steps]  # the weak and strong rows
    if args.ranks:
        ranks = sorted({int(p) for p in args.ranks.split(",")})
    else:
        ranks = list(range(1, args.max_ranks + 1))
    strong_batch = args.strong_batch or args.batch
    results: dict = {
        "config": args.config, "n_layer": config.n_layer, "n_head": config.n_head,
        "n_embd": config.n_embd, "T": T, "vocab_size": config.vocab_size, "cores": _cores(),
        "argv": sys.argv[1:], "steps": args.steps, "warmup": args.warmup,
    }  # fmt: skip

    def save(key: str, value) -> None:  # after each part, so a cut-off run keeps the rest
        results[key] = value
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n")

    def mpi(P: int, extra: list[str]) -> dict:
        return _mpi(args.mpiexec, P, extra)

    print(
        f"config {args.config}: n_layer={config.n_layer} n_head={config.n_head} "
        f"C={config.n_embd} T={T} V={config.vocab_size}; {_cores()} cores; fused step "
        f"(Numba kernels) + allreduce_mean_ + AdamW, median of {args.steps} steps after "
        f"{args.warmup} warm-up, slowest rank"
    )

    if args.overlap_compare:
        overlap_compare(args, ranks, common, save, mpi)
        return

    def table(title: str, rows: list[dict]) -> None:
        print(f"\n{title}")
        head = f"{'P':>3}{'thr/rank':>9}{'global B':>9}{'B/rank':>7}{'ms/step':>9}"
        print(head + f"{'tokens/s':>10}{'speedup':>9}{'effic.':>8}{'allreduce ms':>13}")
        base = rows[0]["tokens"] / rows[0]["seconds"]
        for r in rows:
            rate = r["tokens"] / r["seconds"]
            print(
                f"{r['P']:>3}{1:>9}{r['global_batch']:>9}{r['per_rank']:>7}"
                f"{1e3 * r['seconds']:>9.1f}{rate:>10.0f}{rate / base:>8.2f}x"
                f"{rate / base / r['P']:>8.0%}{1e3 * r['comm_seconds']:>13.2f}"
            )

    weak = []
    for P in ranks:
        weak.append(
            mpi(P, ["--worker", "step", "--per-rank", str(args.batch), *common, *steps_overlap])
        )
        save("weak", weak)
    table(f"weak scaling: B={args.batch} per rank", weak)
    strong = []
    rest = [*common, *steps_overlap]
    for P in ranks:
        if strong_batch % P:
            print(f"(strong scaling: global B={strong_batch} does not split over {P} ranks)")
        elif P == ranks[0] and strong_batch == args.batch:
            strong.append(weak[0])
        else:
            strong.append(mpi(P, ["--worker", "step", "--per-rank", str(strong_batch // P), *rest]))
        save("strong", strong)
    table(f"strong scaling: global B={strong_batch}", strong)

    grad_bytes = weak[0]["grad_bytes"]
    sizes = [s for s in (2**20, 2**21, 2**22, 2**23) if s < grad_bytes] + [grad_bytes]
    print(f"\nallreduce (in place, float32; gradient of {args.config}: {_fmt_bytes(grad_bytes)})")
    print(f"{'P':>3}{'size':>10}{'ms':>9}{'algbw GB/s':>12}{'busbw GB/s':>12}")
    allreduce = []
    for P in [p for p in ranks if p > 1]:
        res = mpi(P, ["--worker", "allreduce", "--sizes", ",".join(map(str, sizes)),
                      "--repeats", str(args.repeats)])  # fmt: skip
        allreduce.append(res)
        save("allreduce", allreduce)
        for r in res["rows"]:
            algbw = r["bytes"] / r["seconds"] / 1e9
            print(
                f"{P:>3}{_fmt_bytes(r['bytes']):>10}{1e3 * r['seconds']:>9.2f}{algbw:>12.2f}"
                f"{algbw * 2 * (P - 1) / P:>12.2f}"
            )

    print(f"\none process, {args.threads} threads, B={args.batch} (context)")
    print(f"{'engine':<28}{'ms/step':>9}{'tokens/s':>10}{'vs 1 rank x 1 thread':>22}")
    base = weak[0]["tokens"] / weak[0]["seconds"]
    one = [("tinygradlm fused (no MPI)", ["--worker", "step", "--per-rank", str(args.batch)])]
    if not args.no_torch:
        one.append(("PyTorch eager + AdamW", ["--worker", "torch", "--batch", str(args.batch)]))
    context = []
    for name, extra in one:
        cmd = [sys.executable, __file__, *extra, *common, "--threads", str(args.threads)]
        try:
            r = _run(cmd, threads=args.threads)
        except (RuntimeError, ImportError) as e:
            print(f"{name}: {str(e).splitlines()[0]}")
            continue
        rate = r["tokens"] / r["seconds"]
        print(f"{name:<28}{1e3 * r['seconds']:>9.1f}{rate:>10.0f}{rate / base:>21.2f}x")
        context.append({"name": name, "threads": args.threads, **r})
        save("one_process", context)


def overlap_compare(args, ranks: list[int], common: list[str], save, mpi) -> None:
    """At each P > 1: overlap off, at layer boundaries and on, alternated step by step within
    each of ROUNDS fresh runs (so all see the same load); the medians over the runs."""
    import numpy as np

    runs_n = args.overlap_compare
    print(f"\noverlap: B={args.batch} per rank, {runs_n} runs, off/layers/on alternated")
    head = f"{'P':>3}{'overlap':>9}{'ms/step':>9}{'exposed comm ms':>17}{'step vs off':>13}"
    print(head + f"{'grad MB':>9}")
    rows = []
    for P in [p for p in ranks if p > 1]:
        runs = [
            mpi(P, ["--worker", "step", "--per-rank", str(args.batch), *common, "--overlap"])
            for _ in range(args.overlap_compare)
        ]
        # the ratio on/off within each run, then its median over the runs
        ratios = {
            mode: float(np.median([r["modes"][mode]["seconds"] / r["seconds"] for r in runs]))
            for mode in ("off", "layers", "on")
        }
        for mode in ("off", "layers", "on"):
            m = {
                k: float(np.median([r["modes"][mode][k] for r in runs]))
                for k in ("seconds", "comm_seconds")
            }
            print(
                f"{P:>3}{mode:>9}{1e3 * m['seconds']:>9.1f}{1e3 * m['comm_seconds']:>17.2f}"
                f"{ratios[mode]:>12.3f}x{runs[0]['grad_bytes'] / 1e6:>9.1f}"
            )
            rows.append({"P": P, "overlap": mode, **m, "vs_off": ratios[mode]})
        rows[-1]["runs"] = runs
        save("overlap", rows)


if __name__ == "__main__":
    main()
