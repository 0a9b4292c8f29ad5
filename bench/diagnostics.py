"""What a diagnostic step costs (``diagnostics_interval``, ``tinygradlm.train.diagnostics``):
the Trainer's full step with and without the per-layer record, alternated in one process so
that both see the same load, and the extra time amortised over the interval.

The data is random tokens in the preset's vocabulary (the cost does not depend on what they
are), written to a temporary directory.

    python bench/diagnostics.py                        # the "small" preset, 12 rounds
    python bench/diagnostics.py --config tiny --rounds 20 --interval 10
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from tinygradlm.data.shards import write_shards
from tinygradlm.train import PRESETS, Trainer, load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="small", choices=sorted(PRESETS))
    parser.add_argument("--rounds", type=int, default=12, help="pairs of steps timed")
    parser.add_argument("--interval", type=int, default=50, help="the interval amortised over")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        V = load_config(args.config).gpt_config().vocab_size
        tokens = np.random.default_rng(0).integers(0, V, size=400_000).astype(np.uint16)
        write_shards([tokens[:380_000]], data, split="train", vocab_size=V)
        write_shards([tokens[380_000:]], data, split="val", vocab_size=V)
        config = load_config(args.config, [f'data_dir="{data}"', f'out_dir="{tmp}/out"'])
        trainer = Trainer(config, log=lambda _m: None)
        for _ in range(3):  # warm-up (and any compilation)
            trainer.train_step()
        seconds: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for diagnose in (True, False):
                trainer.diagnostics.interval = 1 if diagnose else 0
                started = time.perf_counter()
                result = trainer.train_step()
                seconds[diagnose].append(time.perf_counter() - started)
                assert (result["layers"] is not None) == diagnose
    on, off = np.median(seconds[True]), np.median(seconds[False])
    extra = on / off - 1
    print(f"| preset | plain step | diagnostic step | extra | over {args.interval} steps |")
    print("| --- | --- | --- | --- | --- |")
    print(
        f"| {args.config} | {off * 1e3:.1f} ms | {on * 1e3:.1f} ms | {100 * extra:.2f}% "
        f"| {100 * extra / args.interval:.3f}% |"
    )


if __name__ == "__main__":
    main()
