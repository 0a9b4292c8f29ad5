"""The tied LM head and the loss, forward and backward: the unfused layers against the fused
row-chunked pass (``head_crossentropy_forward_backward``) at several chunk sizes.

For each variant, alternated over rounds in one process: the median time, and the memory it
allocates on top of its inputs and the gradient buffer (tracemalloc's peak, a separate
untimed call). The unfused variant is what training ran before: linear_forward into a reused
logits buffer, crossentropy_forward/backward (probabilities and dlogits, (N, Vp) each) and
linear_backward (a new (C, Vp) dweight) added into the gradient.

    python bench/head_loss.py                          # GPT-2's vocabulary and C, N = 1024 rows
    python bench/head_loss.py --rows 4096 --chunks 128,256,512 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1024, help="N = B·T positions")
    parser.add_argument("--n-embd", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--padded-vocab", type=int, default=50304)
    parser.add_argument("--chunks", default="64,256,1024", help="chunk_rows values to time")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--kernels", default="numba", choices=["numba", "numpy"])
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np  # after the thread counts are set

    from tinygradlm import backend

    L = backend.layers(args.kernels)
    N, C, V, Vp = args.rows, args.n_embd, args.vocab, args.padded_vocab
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, C)).astype(np.float32)
    wte = (0.02 * rng.normal(size=(Vp, C))).astype(np.float32)
    wte[V:] = 0
    targets = rng.integers(0, V, N)
    grad = np.zeros((Vp, C), np.float32)
    logits_buffer = np.empty((N, Vp), np.float32)  # the workspace buffer training reused

    def unfused() -> None:
        logits, cache = L.linear_forward(x, wte.T, out=logits_buffer)
        _, cache_ce = L.crossentropy_forward(logits, targets, V)
        (dlogits,) = L.crossentropy_backward(np.float32(1.0), cache_ce)
        _, dweight = L.linear_backward(dlogits, cache)
        grad_t = grad.T
        grad_t += dweight

    def fused(rows: int):
        return lambda: L.head_crossentropy_forward_backward(
            x, wte, targets, V, chunk_rows=rows, dwte=grad
        )

    variants = {"unfused": unfused}
    for rows in (int(r) for r in args.chunks.split(",")):
        variants[f"fused, {rows} rows"] = fused(rows)
    peaks = {}
    for name, run in variants.items():
        run()  # compiled, pages touched
        tracemalloc.start()
        run()
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    base_time, base_peak = float(np.median(times["unfused"])), peaks["unfused"]
    print(f"N={N} C={C} V={V} Vp={Vp}, {args.threads} thread(s), {args.kernels} kernels")
    header = ("variant", "median s", "time ratio", "alloc MiB", "mem ratio")
    print("{:20s} {:>9s} {:>10s} {:>10s} {:>10s}".format(*header))
    for name in variants:
        t = float(np.median(times[name]))
        print(
            f"{name:20s} {t:9.3f} {t / base_time:10.2f} {peaks[name] / 2**20:10.1f} "
            f"{peaks[name] / base_peak:10.2f}"
        )


if __name__ == "__main__":
    main()
