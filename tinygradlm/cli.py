"""The command line: ``python -m tinygradlm COMMAND`` (or ``tinygradlm COMMAND``)."""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path


def _prepare(args: argparse.Namespace) -> int:
    from .data.errors import DataError
    from .data.prepare import PrepareConfig, prepare

    settings: dict = {}
    if args.config:
        try:
            with open(args.config, "rb") as f:
                settings = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            print(f"tinygradlm prepare: cannot read {args.config}: {e}", file=sys.stderr)
            return 2
    for key in ("vocab_size", "pattern", "val_fraction", "seed", "shard_tokens"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    try:
        config = PrepareConfig.from_dict(settings)
        prepare(args.inputs, args.out, config, overwrite=args.overwrite)
    except (DataError, ValueError) as e:
        print(f"tinygradlm prepare: {e}", file=sys.stderr)
        return 1
    return 0


def _train(args: argparse.Namespace) -> int:
    from .checkpoint import CheckpointError, latest_checkpoint
    from .data.errors import DataError
    from .train import Trainer, load_config

    try:
        config = load_config(args.config, args.overrides)
        if args.no_resume and latest_checkpoint(config.out_dir) is not None:
            raise ValueError(
                f"{config.out_dir} already holds checkpoints: choose another out_dir to start "
                "from scratch (nothing there is overwritten)"
            )
        trainer = Trainer(config)
        if not args.no_resume:
            trainer.resume()
        if trainer.step >= config.max_steps:
            print(
                f"{config.out_dir} already finished {trainer.step} of {config.max_steps} steps: "
                "raise max_steps to continue, or choose another out_dir"
            )
            return 0
        trainer.train()
    except (DataError, CheckpointError, ValueError) as e:
        print(f"tinygradlm train: {e}", file=sys.stderr)
        return 1
    return 0


def _sample(args: argparse.Namespace) -> int:
    from .checkpoint import CheckpointError
    from .data.errors import DataError
    from .generate import sample_from_checkpoint

    try:
        text = sample_from_checkpoint(
            args.ckpt,
            args.prompt,
            args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            seed=args.seed,
            top_p=args.top_p,
        )
    except (DataError, CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"tinygradlm sample: {e}", file=sys.stderr)
        return 1
    print(text)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .monitor import MetricsError, plot_run

    try:
        paths = plot_run(args.run_dir, args.out)
    except (MetricsError, ImportError, FileNotFoundError) as e:
        print(f"tinygradlm plot: {e}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tinygradlm",
        description="A small LLM-training system whose every gradient can be read and verified.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "check-demo", help="check a hand-written layer-norm backward with tinygradlm.testing"
    )
    prep = commands.add_parser(
        "prepare",
        help="clean, deduplicate and tokenize text into shards",
        description="Clean and deduplicate text, train a BPE tokenizer and write token shards. "
        "With no INPUT, uses the help topics that ship with Python (pydoc_data).",
    )
    prep.add_argument(
        "inputs",
        nargs="*",
        type=Path,
        metavar="INPUT",
        help="text files, directories of them, or JSONL files with a 'text' field",
    )
    prep.add_argument("--out", required=True, type=Path, help="output directory")
    prep.add_argument("--vocab-size", dest="vocab_size", type=int, help="default 4096")
    prep.add_argument("--pattern", help="pre-tokenization split: gpt2, gpt4 (default) or a regex")
    prep.add_argument("--val-fraction", dest="val_fraction", type=float, help="default 0.05")
    prep.add_argument("--seed", type=int, help="default 0")
    prep.add_argument("--shard-tokens", dest="shard_tokens", type=int, help="default 10,000,000")
    prep.add_argument(
        "--config", type=Path, help="a TOML file of these settings, with [clean] and [dedup] tables"
    )
    prep.add_argument(
        "--overwrite", action="store_true", help="replace shards and tokenizer already in --out"
    )
    train = commands.add_parser(
        "train",
        help="train a GPT on prepared shards",
        description="Train a GPT on the shards of `tinygradlm prepare`. Resumes from the newest "
        "checkpoint in out_dir unless --no-resume.",
    )
    train.add_argument(
        "--config",
        default="tiny",
        help="a preset (tiny, small, gpt2) or a TOML file (default: tiny)",
    )
    train.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="settings on top of the config, e.g. max_steps=100 model.n_layer=2",
    )
    train.add_argument(
        "--no-resume",
        action="store_true",
        help="start from scratch even if out_dir has checkpoints",
    )
    sample = commands.add_parser("sample", help="generate text from a checkpoint")
    sample.add_argument("--ckpt", required=True, type=Path, help="a checkpoint directory")
    sample.add_argument("--prompt", default="", help="text to continue (default: from scratch)")
    sample.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=200)
    sample.add_argument("--temperature", type=float, default=1.0, help="0 for greedy")
    sample.add_argument("--top-k", dest="top_k", type=int, default=None)
    sample.add_argument("--top-p", dest="top_p", type=float, default=None)
    sample.add_argument("--seed", type=int, default=0)
    plot = commands.add_parser("plot", help="draw a run's curves as PNG files")
    plot.add_argument("run_dir", type=Path, help="a training run's out_dir (has metrics.jsonl)")
    plot.add_argument("--out", type=Path, default=None, help="where to write (default: run_dir)")
    args = parser.parse_args(argv)
    if args.command == "check-demo":
        from .demo import main as demo

        return demo()
    if args.command == "prepare":
        return _prepare(args)
    if args.command == "train":
        return _train(args)
    if args.command == "sample":
        return _sample(args)
    if args.command == "plot":
        return _plot(args)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
