"""One training run at fp32, bf16 and fp16 (emulated): loss curves, final losses, fp16's loss
scale, and the cost of the rounding.

It drives the trainer directly: ``TrainConfig(precision=..., loss_scale_init=...,
loss_scale_growth_interval=...)`` and ``Trainer.train_step()``, which returns the step's
``loss``, ``action`` and ``loss_scale``.

The three runs share everything but the precision: the data (the embedded corpus, prepared once
into ``--data``), the model's initialisation, the batch order, the schedule. The table gives the
mean training loss of the last ``--tail`` steps and the validation loss at the end; the figure
(``--png``, when matplotlib is installed) the training loss per step and fp16's loss scale.

    python bench/precision.py                                 # 300 steps, 4 layers, C=128
    python bench/precision.py --steps 100 --png /tmp/precision.png
    python bench/precision.py --rounding-only                 # the rounder timings alone
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

PRECISIONS = ["fp32", "bf16", "fp16"]


# --------------------------------------------------------------------------------------------
# the rounders' speed
# --------------------------------------------------------------------------------------------


def _best_ms(fn, repeats: int = 7) -> float:
    fn()  # warm-up: Numba compiles or loads its cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def rounding_table(n: int) -> list[dict]:
    """Milliseconds to round ``n`` float32 values (into a preallocated array), each
    implementation, with a plain copy and PyTorch's conversions (when installed) as anchors."""
    from tinygradlm import kernels, ref
    from tinygradlm.precision import LossScaler

    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    out = np.empty_like(x)
    rows = [{"what": "np.copyto (memory bound)", "ms": _best_ms(lambda: np.copyto(out, x))}]
    for name in ("bf16", "fp16"):
        reference = getattr(ref, f"round_to_{name}")
        twin = getattr(kernels, f"round_to_{name}")
        rows.append(
            {"what": f"ref.round_to_{name} (NumPy)", "ms": _best_ms(lambda r=reference: r(x, out))}
        )
        rows.append(
            {"what": f"kernels.round_to_{name} (Numba)", "ms": _best_ms(lambda k=twin: k(x, out))}
        )
    try:
        import torch

        t = torch.from_numpy(x)
        rows.append(
            {"what": "torch .bfloat16().float()", "ms": _best_ms(lambda: t.bfloat16().float())}
        )
        rows.append({"what": "torch .half().float()", "ms": _best_ms(lambda: t.half().float())})
    except ImportError:
        pass
    grads = x.copy()
    scaler = LossScaler(init_scale=2.0)  # halves grads per call: still normal after 8 calls
    rows.append(
        {
            "what": "LossScaler.unscale_and_check",
            "ms": _best_ms(lambda: scaler.unscale_and_check(grads)),
        }
    )
    return rows


# --------------------------------------------------------------------------------------------
# the training runs
# --------------------------------------------------------------------------------------------


def prepare_data(data_dir: Path, vocab_size: int) -> None:
    """The embedded corpus, cleaned, tokenized and sharded into ``data_dir`` (once)."""
    from tinygradlm.data.prepare import PrepareConfig, prepare

    if (data_dir / "report.json").exists():
        return
    print(f"preparing the embedded corpus into {data_dir} (once) ...", flush=True)
    prepare(None, data_dir, PrepareConfig(vocab_size=vocab_size), log=lambda _m: None)


def train_one(precision: str, args: argparse.Namespace, out_root: Path) -> dict:
    """``args.steps`` steps at ``precision``; the per-step records and the final val loss."""
    from tinygradlm.train import TrainConfig, Trainer

    settings = {
        "data_dir": str(args.data),
        "out_dir": str(out_root / precision),
        "model": {
            "preset": "tiny",
            "block_size": args.seq,
            "n_layer": args.layers,
            "n_head": args.heads,
            "n_embd": args.width,
        },
        "batch_size": args.batch,
        "seq_len": args.seq,
        "max_steps": args.steps,
        "lr": args.lr,
        "min_lr": args.lr / 10,
        "warmup_steps": min(30, args.steps),
        "eval_interval": 0,
        "sample_interval": 0,
        "checkpoint_interval": 0,
        "eval_batches": args.eval_batches,
        "seed": args.seed,
        "kernels": args.kernels,
        "precision": precision,
        "loss_scale_growth_interval": args.growth_interval,
    }
    config = TrainConfig.from_dict(settings)
    trainer = Trainer(config, log=lambda _m: None)
    records = []
    started = time.perf_counter()
    while trainer.step < config.max_steps:
        result = trainer.train_step()
        records.append(
            {
                "loss": float(result["loss"]),
                "action": str(result["action"]),
                "loss_scale": float(result.get("loss_scale", 1.0)),
            }
        )
    seconds = time.perf_counter() - started
    return {
        "precision": precision,
        "records": records,
        "val_loss": trainer.evaluate(),
        "seconds_per_step": seconds / config.max_steps,
    }


def summary_row(run: dict, baseline: dict | None, tail: int) -> dict:
    losses = np.array([r["loss"] for r in run["records"]])
    final = float(np.mean(losses[-tail:]))
    row = {
        "precision": run["precision"],
        "train_loss": final,
        "val_loss": run["val_loss"],
        "overflow_steps": sum(r["action"] == "overflow" for r in run["records"]),
        "final_scale": run["records"][-1]["loss_scale"],
        "s_per_step": run["seconds_per_step"],
    }
    if baseline is not None:
        base = np.array([r["loss"] for r in baseline["records"]])
        row["d_train"] = final - float(np.mean(base[-tail:]))
        row["d_val"] = run["val_loss"] - baseline["val_loss"]
    return row


def plot(runs: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no figure)")
        return False
    fig, (ax_loss, ax_scale) = plt.subplots(
        2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    for run in runs:
        losses = np.array([r["loss"] for r in run["records"]])
        window = min(10, len(losses))
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")  # moving mean
        steps = np.arange(window - 1, len(losses))
        ax_loss.plot(steps, smooth, label=run["precision"], linewidth=1.2)
        if run["precision"] == "fp16":
            steps = np.arange(len(run["records"]))
            scales = [r["loss_scale"] for r in run["records"]]
            ax_scale.semilogy(steps, scales, base=2, color="C2", linewidth=1.2)
            skipped = [s for s, r in enumerate(run["records"]) if r["action"] == "overflow"]
            ax_scale.plot(skipped, [scales[s] for s in skipped], "x", color="C3", label="overflow")
    ax_loss.set_ylabel("training loss (10-step mean)")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    ax_scale.set_ylabel("fp16 loss scale")
    ax_scale.set_xlabel("step")
    ax_scale.legend(loc="lower right")
    ax_scale.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--growth-interval", type=int, default=100, help="fp16 scale growth")
    parser.add_argument("--eval-batches", type=int, default=8)
    parser.add_argument("--tail", type=int, default=20, help="steps averaged for the table")
    parser.add_argument("--kernels", default="numba", choices=["numba", "numpy"])
    parser.add_argument("--data", type=Path, default=Path("runs/bench_precision/data"))
    parser.add_argument("--png", type=Path, default=None, help="write the figure here")
    parser.add_argument("--json", type=Path, default=None, help="write the curves here")
    parser.add_argument("--rounding-elements", type=int, default=7_300_000)
    parser.add_argument("--rounding-only", action="store_true")
    args = parser.parse_args()

    print(f"rounding {args.rounding_elements:,} float32 values (best of 7), ms:")
    for row in rounding_table(args.rounding_elements):
        print(f"  {row['what']:<32} {row['ms']:7.2f}")
    if args.rounding_only:
        return

    prepare_data(args.data, args.vocab)
    runs = []
    with tempfile.TemporaryDirectory(prefix="precision-bench-") as tmp:
        for name in PRECISIONS:
            print(f"training at {name} ({args.steps} steps) ...", flush=True)
            runs.append(train_one(name, args, Path(tmp)))

    print(
        f"\n{args.layers} layers, C={args.width}, B={args.batch}, T={args.seq}, "
        f"{args.steps} steps, seed {args.seed}; train loss = mean of the last {args.tail} steps"
    )
    header = (
        "| precision | train loss | Δ vs fp32 | val loss | Δ vs fp32 | overflow steps "
        "| final loss scale | s/step |"
    )
    print(header)
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        row = summary_row(run, runs[0] if run is not runs[0] else None, args.tail)
        d_train = f"{row['d_train']:+.4f}" if "d_train" in row else "—"
        d_val = f"{row['d_val']:+.4f}" if "d_val" in row else "—"
        print(
            f"| {row['precision']} | {row['train_loss']:.4f} | {d_train} | {row['val_loss']:.4f} "
            f"| {d_val} | {row['overflow_steps']} | {row['final_scale']:g} "
            f"| {row['s_per_step']:.3f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(runs))
    if args.png and plot(runs, args.png):
        print(f"figure: {args.png}")


if __name__ == "__main__":
    main()
