"""The cost of drawing a batch: the single-source DataLoader and a MixtureLoader of several
sources, on synthetic uint16 shards (memory-mapped, in the OS page cache after the first pass).

A mixture batch costs the single-source batch's reads plus Tijdeman's rule for B rows (a loop
over the k sources per row) and one permutation per source epoch. The table gives the median
milliseconds per global batch over ``--repeats`` batches, after one warm-up batch, and the
ratio mixture / single; a training step on the same batch takes seconds.

    python bench/loader.py                        # T=1024, B = 8, 64, 512, 4 sources
    python bench/loader.py --sources 8 --seq-len 256
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tinygradlm.data.loader import DataLoader
from tinygradlm.data.mix import Source
from tinygradlm.data.mixture import MixtureLoader
from tinygradlm.data.shards import write_shard


def _median_ms(loader, repeats: int) -> float:
    loader.next_batch()  # warm-up: the first permutations, the first page faults
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loader.next_batch()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=4, help="sources in the mixture")
    parser.add_argument("--tokens", type=int, default=2_000_000, help="tokens per source")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 64, 512])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tinygradlm-bench-loader-"))
    raw = np.arange(1, args.sources + 1, dtype=np.float64)[::-1]  # weights k, k − 1, …, 1
    sources = []
    for i, weight in enumerate(raw / raw.sum()):
        directory = root / f"s{i}"
        directory.mkdir()
        tokens = np.random.default_rng(i).integers(0, 50_257, size=args.tokens)
        write_shard(directory / "train_000000.bin", tokens, vocab_size=50_257)
        sources.append(Source(f"s{i}", directory, float(weight)))

    print(f"{args.sources} sources of {args.tokens:,} tokens, T={args.seq_len}")
    print(f"{'B':>5} {'single ms':>10} {'mixture ms':>11} {'ratio':>6}")
    for B in args.batch_sizes:
        common = {"batch_size": B, "seq_len": args.seq_len}
        single = _median_ms(DataLoader(sources[0].path, **common), args.repeats)
        mixture = _median_ms(MixtureLoader(sources, **common), args.repeats)
        print(f"{B:>5} {single:>10.3f} {mixture:>11.3f} {mixture / single:>6.2f}")


if __name__ == "__main__":
    main()
