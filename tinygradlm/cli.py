"""The command line: ``python -m tinygradlm COMMAND`` (or ``tinygradlm COMMAND``)."""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import Any


def _prepare(args: argparse.Namespace) -> int:
    from .data.prepare import PrepareConfig, prepare
    from .data.sources import sources_from_config, sources_from_specs
    from .errors import DataError

    settings: dict = {}
    if args.config:
        try:
            with open(args.config, "rb") as f:
                settings = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            print(f"tinygradlm prepare: cannot read {args.config}: {e}", file=sys.stderr)
            return 2
    for key in (
        "vocab_size",
        "pattern",
        "val_fraction",
        "seed",
        "shard_tokens",
        "tokenizer_sample_chars",
    ):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    source_table = settings.pop("sources", None)
    try:
        sources = None
        if args.sources:
            if source_table is not None:
                raise DataError(
                    f"sources come from --source or from [sources] in {args.config}, not both"
                )
            sources = sources_from_specs(args.sources)
        elif source_table is not None:
            sources = sources_from_config(source_table, base=args.config.parent)
        if sources is not None and args.inputs:
            raise DataError(
                "INPUT paths cannot be mixed with named sources: give every input as "
                "--source NAME=PATH[,WEIGHT] (or in [sources]), or none that way"
            )
        config = PrepareConfig.from_dict(settings)
        prepare(args.inputs, args.out, config, sources=sources, overwrite=args.overwrite)
    except (DataError, ValueError) as e:
        print(f"tinygradlm prepare: {e}", file=sys.stderr)
        return 1
    return 0


def _run_loop(command: str, args: argparse.Namespace, dist: Any) -> int:
    """``train`` and ``finetune``: build the config and trainer, resume, run the loop."""
    from .checkpoint import latest_checkpoint
    from .errors import CheckpointError, DataError

    try:
        if command == "train":
            from .train import Trainer, load_config

            config = load_config(args.config, args.overrides)
            make_trainer = Trainer
        else:
            from .finetune import FinetuneTrainer, load_finetune_config

            config = load_finetune_config(
                args.config, args.overrides, init_from=args.init_from, data=args.data
            )
            make_trainer = FinetuneTrainer
        if args.no_resume and latest_checkpoint(config.out_dir) is not None:
            raise ValueError(
                f"{config.out_dir} already holds checkpoints: choose another out_dir to start "
                "from scratch (nothing there is overwritten)"
            )
        trainer = make_trainer(config, dist=dist)
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
        print(f"tinygradlm {command}: {e}", file=sys.stderr)
        return 1
    return 0


def _export(args: argparse.Namespace) -> int:
    from .errors import CheckpointError
    from .finetune import export

    try:
        path = export(args.ckpt, args.out)
    except (CheckpointError, ValueError) as e:
        print(f"tinygradlm export: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .errors import CheckpointError, DataError
    from .train import evaluate_checkpoint

    try:
        result = evaluate_checkpoint(
            args.ckpt,
            args.data,
            split=args.split,
            batches=args.batches,
            batch_size=args.batch_size,
            seq_len=args.seq_len,
        )
    except (DataError, CheckpointError, ValueError) as e:
        print(f"tinygradlm eval: {e}", file=sys.stderr)
        return 1
    for name, part in result.get("sources", {}).items():  # a prepared mixture's sources
        print(
            f"{args.split} {name} (weight {part['weight']:.3g}): loss {part['loss']:.4f}, "
            f"perplexity {part['perplexity']:.2f} ({part['tokens']:,} tokens)"
        )
    print(
        f"{args.split}{' (the weighted mean)' if 'sources' in result else ''}: loss "
        f"{result['loss']:.4f}, perplexity {result['perplexity']:.2f} "
        f"({result['tokens']:,} tokens, checkpoint step {result['step']})"
    )
    return 0


def _sample(args: argparse.Namespace) -> int:
    from .errors import CheckpointError, DataError
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
    from .errors import MetricsError
    from .monitor import plot_run

    try:
        paths = plot_run(args.run_dir, args.out)
    except (MetricsError, ImportError, FileNotFoundError) as e:
        print(f"tinygradlm plot: {e}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


def _report(args: argparse.Namespace) -> int:
    from .data.corpus import load_report, summary
    from .errors import DataError
    from .monitor import plot_report

    try:
        report = load_report(args.dir)
        print(summary(report))
        if args.plot:
            for path in plot_report(report, args.dir):
                print(path)
    except (DataError, ImportError, KeyError, TypeError) as e:
        if isinstance(e, (KeyError, TypeError)):
            e = DataError(f"{args.dir / 'report.json'}: malformed corpus statistics ({e!r})")
        print(f"tinygradlm report: {e}", file=sys.stderr)
        return 1
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
        "With no INPUT, uses the help topics that ship with Python (pydoc_data). With "
        "--source (or [sources.NAME] tables in --config), several named, weighted sources, "
        "each prepared on its own into OUT/NAME/, with one tokenizer.",
    )
    prep.add_argument(
        "inputs",
        nargs="*",
        type=Path,
        metavar="INPUT",
        help="text files, directories of them, or JSONL files with a 'text' field",
    )
    prep.add_argument(
        "--source",
        dest="sources",
        action="append",
        metavar="NAME=PATH[,WEIGHT]",
        help="a named source (a file, directory or JSONL) and its relative weight (default 1); "
        "repeat for more sources, or with the same NAME for more paths of one source",
    )
    prep.add_argument("--out", required=True, type=Path, help="output directory")
    prep.add_argument("--vocab-size", dest="vocab_size", type=int, help="default 4096")
    prep.add_argument("--pattern", help="pre-tokenization split: gpt2, gpt4 (default) or a regex")
    prep.add_argument("--val-fraction", dest="val_fraction", type=float, help="default 0.05")
    prep.add_argument("--seed", type=int, help="default 0")
    prep.add_argument("--shard-tokens", dest="shard_tokens", type=int, help="default 10,000,000")
    prep.add_argument(
        "--tokenizer-sample-chars",
        dest="tokenizer_sample_chars",
        type=int,
        help="train the tokenizer on at most this many characters, shared by weight "
        "(default 0: as many as the weights allow)",
    )
    prep.add_argument(
        "--config",
        type=Path,
        help="a TOML file of these settings, with [clean], [dedup] and [sources.NAME] tables",
    )
    prep.add_argument(
        "--overwrite", action="store_true", help="replace shards and tokenizer already in --out"
    )
    rep = commands.add_parser(
        "report",
        help="print a prepared corpus's report again (and draw it with --plot)",
        description="Print the corpus summary of DIR/report.json, written by `tinygradlm "
        "prepare --out DIR`: documents and tokens per source, removals per rule, length "
        "histogram, bytes per token, script mix and the most frequent tokens.",
    )
    rep.add_argument("dir", type=Path, metavar="DIR", help="a prepare output directory")
    rep.add_argument(
        "--plot", action="store_true", help="also write PNG histograms into DIR (matplotlib)"
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
    tune = commands.add_parser(
        "finetune",
        help="fine-tune a trained GPT on prompt/response pairs (optionally with LoRA)",
        description="Fine-tune the model of a checkpoint on prompt/response JSON Lines, the loss "
        "on the responses only, with a fresh optimizer and schedule; LoRA adapters with "
        "lora_rank=R. Resumes from the newest checkpoint in out_dir unless --no-resume.",
    )
    tune.add_argument(
        "--from",
        dest="init_from",
        metavar="CKPT",
        help="the pretrained checkpoint directory (init_from)",
    )
    tune.add_argument(
        "--data", help="a JSON Lines file, or a directory with train.jsonl (and val.jsonl)"
    )
    tune.add_argument("--config", default=None, help="a TOML file of settings")
    tune.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="settings on top of the config, e.g. lora_rank=8 max_steps=200 "
        'freeze=\'["wte", "h.0"]\'',
    )
    tune.add_argument(
        "--no-resume",
        action="store_true",
        help="start from scratch even if out_dir has checkpoints",
    )
    export = commands.add_parser(
        "export",
        help="write a checkpoint's model, LoRA merged in, as a plain model directory",
    )
    export.add_argument("--ckpt", required=True, type=Path, help="a checkpoint directory")
    export.add_argument("--out", required=True, type=Path, help="the new model directory")
    evaluate = commands.add_parser(
        "eval",
        help="loss and perplexity of a checkpoint on a split",
        description="Mean loss and perplexity of a checkpoint on a split of prepared shards, or "
        "on SFT JSON Lines (the loss on the responses).",
    )
    evaluate.add_argument("--ckpt", required=True, type=Path, help="a checkpoint directory")
    evaluate.add_argument(
        "--data",
        required=True,
        type=Path,
        help="shards (tinygradlm prepare's output), a .jsonl file or a directory of SPLIT.jsonl",
    )
    evaluate.add_argument("--split", default="val", help="default: val")
    evaluate.add_argument("--batches", type=int, default=None, help="default: the whole split")
    evaluate.add_argument("--batch-size", dest="batch_size", type=int, default=8)
    evaluate.add_argument(
        "--seq-len", dest="seq_len", type=int, default=None, help="default: the run's"
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
    if args.command == "report":
        return _report(args)
    if args.command in ("train", "finetune"):
        # under mpiexec: threads per rank, then MPI; any error on any rank ends the whole job
        from . import dist as dist_module

        dist_module.default_threads()
        dist = dist_module.init()
        return dist_module.run_or_abort(dist, _run_loop, args.command, args, dist)
    if args.command == "export":
        return _export(args)
    if args.command == "eval":
        return _eval(args)
    if args.command == "sample":
        return _sample(args)
    if args.command == "plot":
        return _plot(args)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
