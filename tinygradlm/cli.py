"""The command line: ``python -m tinygradlm COMMAND`` (or ``tinygradlm COMMAND``).

Every command is a row of :data:`COMMANDS`: its help, the function that adds its arguments and
the handler that runs it. One wrapper (:func:`report_errors`) turns the errors a user can fix
(bad data, checkpoints, metrics, config values, files) into ``tinygradlm COMMAND: message`` on
stderr and exit status 1; ``train`` and ``finetune`` run under every MPI rank, where an error on
any rank ends the whole job (``tinygradlm.dist.run_or_abort``).

Ctrl-C (SIGINT) and SIGTERM end any command with one line and exit status 130 or 143 (128 + the
signal number, ``tinygradlm.signals``); outputs are written whole or not at all
(``tinygradlm.atomic``), so a stopped command leaves the earlier ones as they were. A training
run stops at a step boundary, on every rank together, SIGTERM after a checkpoint
(``tinygradlm.train.stop``). Every output directory is checked first
(``tinygradlm.atomic.writable_directory``): a file, a symlink loop or a path under a file is
named before any work.

``--help`` of every command shows its description, each option's default and an example;
``--version`` the package's version. A misspelled command, flag or ``KEY=VALUE`` setting names the
closest known one ("did you mean max_steps?"), and a command's own unknown flag is reported with
that command's usage. Every ``--ckpt`` (and ``finetune --from``) also takes a run directory: its
newest complete checkpoint, named on stderr.

The module is longer than most because it is one table: eleven commands, each with its arguments
and its handler side by side, so a reader finds a command's whole surface in one place.
"""

from __future__ import annotations

import argparse
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import writable_directory
from .errors import CheckpointError, DataError, DivergenceError, MetricsError
from .schema import closest
from .signals import Terminated, exit_status, sigterm_as_exception

# what a user can fix; DataError is a ValueError, and a config's bad value raises ValueError
USER_ERRORS = (DataError, CheckpointError, MetricsError, DivergenceError, ValueError, OSError)


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]
    description: str | None = None
    on_every_rank: bool = False  # under mpiexec: one process per rank, an error ends the job
    example: str = ""  # command lines for --help's epilog, one a line


# --------------------------------------------------------------------------------------------
# prepare and report
# --------------------------------------------------------------------------------------------

PREPARE_FLAGS = (
    "vocab_size",
    "pattern",
    "val_fraction",
    "seed",
    "shard_tokens",
    "tokenizer_sample_chars",
    "workers",
)


def _prepare(args: argparse.Namespace) -> int:
    from .data.prepare import PrepareConfig, prepare
    from .data.sources import sources_from_config, sources_from_specs
    from .train.config import read_settings

    settings = read_settings(args.config) if args.config else {}
    settings.update({k: getattr(args, k) for k in PREPARE_FLAGS if getattr(args, k) is not None})
    files = {k: getattr(args, k) for k in ("include", "exclude", "undecodable")}
    files["include_hidden"] = args.include_hidden or None
    files = {k: v for k, v in files.items() if v is not None}
    if files:  # the flags override the same keys of [files] in --config
        table = settings.get("files", {})
        settings["files"] = {**table, **files} if isinstance(table, dict) else table
    source_table = settings.pop("sources", None)
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
    return 0


def _add_prepare(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs",
        nargs="*",
        type=Path,
        metavar="INPUT",
        help="text files, directories of them, or JSONL files with a 'text' field",
    )
    p.add_argument(
        "--source",
        dest="sources",
        action="append",
        metavar="NAME=PATH[,WEIGHT]",
        help="a named source (a file, directory or JSONL) and its relative weight (default 1); "
        "repeat for more sources, or with the same NAME for more paths of one source",
    )
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--vocab-size", dest="vocab_size", type=int, help="default 4096")
    p.add_argument("--pattern", help="pre-tokenization split: gpt2, gpt4 (default) or a regex")
    p.add_argument("--val-fraction", dest="val_fraction", type=float, help="default 0.05")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--shard-tokens", dest="shard_tokens", type=int, help="default 10,000,000")
    p.add_argument(
        "--workers",
        type=int,
        help="processes that encode the documents (default 0: every available core; the "
        "shards are the same whatever the number)",
    )
    p.add_argument(
        "--tokenizer-sample-chars",
        dest="tokenizer_sample_chars",
        type=int,
        help="train the tokenizer on at most this many characters, shared by weight "
        "(default 0: as many as the weights allow)",
    )
    p.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="read only the files of a directory matching a GLOB (e.g. '*.md'; '*' crosses "
        "folders; repeat for more); default every file",
    )
    p.add_argument(
        "--exclude",
        action="append",
        metavar="GLOB",
        help="leave out the files of a directory matching GLOB (e.g. 'build/*'); repeatable",
    )
    p.add_argument(
        "--include-hidden",
        dest="include_hidden",
        action="store_true",
        help="also read names starting with '.' when walking a directory",
    )
    p.add_argument(
        "--undecodable",
        choices=("skip", "error", "replace"),
        help="a walked file that is binary or not UTF-8: skip it and count it in report.json "
        "(default), stop with an error, or (not UTF-8 only) read it with U+FFFD for bad bytes",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="a TOML file of these settings, with [clean], [dedup], [files] and [sources.NAME] "
        "tables",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace shards and tokenizer already in --out"
    )


def _report(args: argparse.Namespace) -> int:
    from .data.corpus import load_report, summary
    from .monitor import plot_report

    try:
        report = load_report(args.dir)
        if args.plot:
            writable_directory(args.dir, "report --plot: DIR")
        print(summary(report))
        paths = plot_report(report, args.dir) if args.plot else []
    except (KeyError, TypeError) as e:  # a report.json whose fields are not what prepare writes
        raise DataError(
            f"{args.dir / 'report.json'}: malformed corpus statistics ({e!r})"
        ) from None
    for path in paths:
        print(path)
    return 0


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, metavar="DIR", help="a prepare output directory")
    p.add_argument(
        "--plot", action="store_true", help="also write PNG histograms into DIR (matplotlib)"
    )


# --------------------------------------------------------------------------------------------
# --ckpt and --from: a checkpoint, or a run directory's newest
# --------------------------------------------------------------------------------------------

CKPT_HELP = "a checkpoint directory, or a run directory (its newest complete checkpoint)"


def resolve_checkpoint(path: Path, announce: bool = True) -> Path:
    """The checkpoint a ``--ckpt`` argument names (a run directory: its newest complete
    checkpoint, said on stderr, where it does not mix with a sample on stdout). ``finetune
    --from`` is resolved by the run's set-up (``train.setup.resolve_init_from``)."""
    from .checkpoint.load import checkpoint_in

    checkpoint, taken = checkpoint_in(path)
    if taken and announce:
        print(taken, file=sys.stderr, flush=True)
    return checkpoint


# --------------------------------------------------------------------------------------------
# train and finetune
# --------------------------------------------------------------------------------------------


def _run_loop(args: argparse.Namespace) -> int:
    """``train`` and ``finetune``: build the config and the run, resume, run the loop."""
    from .checkpoint import latest_checkpoint
    from .train import Trainer, load_config, load_finetune_config
    from .train.config import OVERRIDES_VARIABLE, environment_overrides
    from .train.stop import RunStopped, stopped_message

    if args.command == "train":
        config: Any = load_config(args.config, args.overrides)
    else:
        # a run directory as init_from is resolved by the run's set-up (train/setup.py)
        config = load_finetune_config(
            args.config, args.overrides, init_from=args.init_from, data=args.data
        )
    words = environment_overrides()
    if words and args.dist.rank == 0:  # said, so that a shortened run never surprises anyone
        print(f"settings from {OVERRIDES_VARIABLE}: {' '.join(words)}", flush=True)
    writable_directory(config.out_dir, "out_dir", ValueError)
    if args.no_resume and latest_checkpoint(config.out_dir) is not None:
        raise ValueError(
            f"{config.out_dir} already holds checkpoints: choose another out_dir to start "
            "from scratch (nothing there is overwritten)"
        )
    trainer = None
    try:
        trainer = Trainer(config, dist=args.dist, hooks=args.hooks)
        if not args.no_resume:
            trainer.resume()
        if trainer.step >= config.max_steps:
            print(
                f"{config.out_dir} already finished {trainer.step} of {config.max_steps} steps: "
                "raise max_steps to continue, or choose another out_dir"
            )
            return 0
        trainer.train()
    except KeyboardInterrupt as e:
        if isinstance(e, RunStopped):
            raise
        # not at a step boundary (Ctrl-C twice, or before the first step): the other ranks may
        # be inside a collective, so the job ends at once
        signum = signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT
        step = trainer.step if trainer is not None else 0
        message = stopped_message(step, signum, latest_checkpoint(config.out_dir), wrote=False)
        stopped = RunStopped(message, signum, announce=args.dist.rank == 0)
        if args.dist.enabled:
            report_stop(args.command, stopped)
            time.sleep(0.0 if args.dist.rank == 0 else 0.5)  # rank 0's line goes out first
            args.dist.abort(stopped.exit_status)
        raise stopped from None
    return 0


def _add_loop_arguments(p: argparse.ArgumentParser, example: str) -> None:
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help=f"settings on top of the config, e.g. {example} (docs/training.md lists them)",
    )
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="start from scratch even if out_dir has checkpoints",
    )


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        default="tiny",
        help="a preset (tiny, small, gpt2) or a TOML file (default: tiny)",
    )
    _add_loop_arguments(p, "max_steps=100 model.n_layer=2")


def _add_finetune(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from",
        dest="init_from",
        metavar="CKPT",
        help=f"the pretrained model (init_from): {CKPT_HELP}",
    )
    p.add_argument(
        "--data",
        help="a JSON Lines file, or a directory with train.jsonl (and val.jsonl); "
        "default: data in --config",
    )
    p.add_argument(
        "--config", default=None, help="a TOML file of settings (default: only KEY=VALUE ones)"
    )
    _add_loop_arguments(p, 'lora_rank=8 max_steps=200 freeze=\'["wte", "h.0"]\'')


# --------------------------------------------------------------------------------------------
# sweep
# --------------------------------------------------------------------------------------------


def _sweep(args: argparse.Namespace) -> int:
    """A grid of runs (this rank's share of them), then sweep.json and its figures (rank 0)."""
    from .sweep import load_sweep, plot_sweep, run_sweep, summary_lines
    from .train.config import OVERRIDES_VARIABLE, environment_overrides

    sweep = load_sweep(args.config, args.out, args.overrides)
    words = environment_overrides()
    if words and args.dist.rank == 0:  # every run of the sweep takes them, as train's does
        print(f"settings from {OVERRIDES_VARIABLE}: {' '.join(words)}", flush=True)
    writable_directory(sweep.out, "sweep --out", ValueError)
    summary = run_sweep(sweep, args.dist, hooks=args.hooks)
    if args.dist.rank != 0:
        return 0
    print("\n".join(summary_lines(summary)))
    print(sweep.out / "sweep.json")
    if not args.no_plot:
        paths, notes = plot_sweep(summary, sweep.out)
        print("\n".join([*map(str, paths), *notes]))
    return 0


def _add_sweep(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        default="depth",
        help="a sweep preset (depth, width, depth-cluster) or a TOML file with [base], [grid] and "
        "[sweep] tables",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the sweep's folder: runs/NAME, data (when [base] sets no data_dir), sweep.json "
        "(default: runs/sweep)",
    )
    p.add_argument("--no-plot", dest="no_plot", action="store_true", help="write sweep.json alone")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="settings on top of the sweep config, dotted into its tables, e.g. "
        "base.max_steps=100 'grid.n_layer=[1,2,4]' sweep.parallel=data",
    )


# --------------------------------------------------------------------------------------------
# checkpoints: export, eval, sample, plot
# --------------------------------------------------------------------------------------------


def _export(args: argparse.Namespace) -> int:
    from .train import export, export_adapters

    writable_directory(args.out, "export --out", CheckpointError)
    write = export_adapters if args.adapters else export
    print(write(resolve_checkpoint(args.ckpt), args.out))
    return 0


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, type=Path, help=CKPT_HELP)
    p.add_argument("--out", required=True, type=Path, help="the new model directory")
    p.add_argument(
        "--adapters",
        action="store_true",
        help="write the LoRA adapters alone, unmerged, as a PEFT adapter directory "
        "(adapter_config.json, adapter_model.safetensors)",
    )


def _eval(args: argparse.Namespace) -> int:
    from .train import evaluate_checkpoint

    result = evaluate_checkpoint(
        resolve_checkpoint(args.ckpt),
        args.data,
        split=args.split,
        batches=args.batches,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
    )
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


MAX_NEW_TOKENS = 1_000_000  # each one a forward pass: far past any useful sample


def _count(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argument type: an integer in [low, high]."""

    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            if high is not None:
                expected = f"an integer in [{low}, {high:,}]"
            else:
                expected = "a positive integer" if low == 1 else f"an integer ≥ {low}"
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    return count


def _add_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, type=Path, help=CKPT_HELP)
    p.add_argument(
        "--data",
        required=True,
        type=Path,
        help="shards (tinygradlm prepare's output), a .jsonl file or a directory of SPLIT.jsonl",
    )
    p.add_argument("--split", default="val", help="the split to measure: train or val")
    # a loss over 0 batches would be NaN, not a measurement
    p.add_argument(
        "--batches",
        type=_count(1),
        default=None,
        help="batches to average (default: the whole split)",
    )
    p.add_argument(
        "--batch-size", dest="batch_size", type=int, default=8, help="sequences per batch"
    )
    p.add_argument(
        "--seq-len",
        dest="seq_len",
        type=int,
        default=None,
        help="tokens per sequence (default: the run's)",
    )


def _sample(args: argparse.Namespace) -> int:
    from .generate import sample_from_checkpoint

    text = sample_from_checkpoint(
        resolve_checkpoint(args.ckpt),
        args.prompt,
        args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        seed=args.seed,
        top_p=args.top_p,
    )
    print(text)
    return 0


def _add_sample(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, type=Path, help=CKPT_HELP)
    p.add_argument("--prompt", default="", help="text to continue (default: from scratch)")
    # the new tokens are held in one (1, N) array: a bound keeps a typo from asking for terabytes
    p.add_argument(
        "--max-new-tokens",
        dest="max_new_tokens",
        type=_count(0, MAX_NEW_TOKENS),
        default=200,
        help="tokens to generate after the prompt",
    )
    p.add_argument(
        "--temperature", type=float, default=1.0, help="divides the logits; 0 for greedy"
    )
    p.add_argument(
        "--top-k",
        dest="top_k",
        type=int,
        default=None,
        help="sample among the k most likely tokens only (default: all)",
    )
    p.add_argument(
        "--top-p",
        dest="top_p",
        type=float,
        default=None,
        help="sample among the most likely tokens whose probabilities sum to p (default: all)",
    )
    p.add_argument("--seed", type=int, default=0, help="the sampling RNG's seed")


def _plot(args: argparse.Namespace) -> int:
    from .monitor import plot_run

    writable_directory(args.out if args.out is not None else args.run_dir, "plot --out")
    for path in plot_run(args.run_dir, args.out):
        print(path)
    return 0


def _add_plot(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run_dir", type=Path, metavar="RUN_DIR", help="a training run's out_dir (has metrics.jsonl)"
    )
    p.add_argument("--out", type=Path, default=None, help="where to write (default: run_dir)")


def _golden(args: argparse.Namespace) -> int:
    from .golden import write_golden

    writable_directory(args.out, "golden --out")
    index = write_golden(args.out, tuple(dict.fromkeys(args.dtype or ("float64", "float32"))))
    print(f"golden data for checking kernels in {args.out}; what each file holds: {index}")
    return 0


def _add_golden(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path, help="the directory to write")
    p.add_argument(
        "--dtype",
        action="append",
        choices=("float64", "float32"),
        help="only this precision; repeat for both (default: both)",
    )


def _check_demo(args: argparse.Namespace) -> int:
    from .demo import main as demo

    return demo()


# --------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------

COMMANDS: dict[str, Command] = {
    "check-demo": Command(
        "check a hand-written layer-norm backward with tinygradlm.testing",
        lambda p: None,
        _check_demo,
        "Check a hand-written layer-norm backward against finite differences with "
        "tinygradlm.testing, first a correct one and then one with a planted bug, and show "
        "the report that names the wrong input and element.",
        example="tinygradlm check-demo",
    ),
    "prepare": Command(
        "clean, deduplicate and tokenize text into shards",
        _add_prepare,
        _prepare,
        "Clean and deduplicate text, train a BPE tokenizer and write token shards. With no "
        "INPUT, uses the help topics that ship with Python (pydoc_data). With --source (or "
        "[sources.NAME] tables in --config), several named, weighted sources, each prepared on "
        "its own into OUT/NAME/, with one tokenizer.",
        example="tinygradlm prepare --out runs/demo/data",
    ),
    "report": Command(
        "print a prepared corpus's report again (and draw it with --plot)",
        _add_report,
        _report,
        "Print the corpus summary of DIR/report.json, written by `tinygradlm prepare --out "
        "DIR`: documents and tokens per source, removals per rule, length histogram, bytes per "
        "token, script mix and the most frequent tokens.",
        example="tinygradlm report runs/demo/data",
    ),
    "train": Command(
        "train a GPT on prepared shards",
        _add_train,
        _run_loop,
        "Train a GPT on the shards of `tinygradlm prepare`. Resumes from the newest checkpoint "
        "in out_dir unless --no-resume.",
        on_every_rank=True,
        example="tinygradlm train --config tiny data_dir=runs/demo/data out_dir=runs/demo/train "
        "max_steps=200",
    ),
    "finetune": Command(
        "fine-tune a trained GPT on prompt/response pairs (optionally with LoRA)",
        _add_finetune,
        _run_loop,
        "Fine-tune the model of a checkpoint on prompt/response JSON Lines, the loss on the "
        "responses only, with a fresh optimizer and schedule; LoRA adapters with lora_rank=R. "
        "Resumes from the newest checkpoint in out_dir unless --no-resume.",
        on_every_rank=True,
        example="tinygradlm finetune --from runs/demo/train --data sft.jsonl "
        "out_dir=runs/sft lora_rank=8 max_steps=100",
    ),
    "sweep": Command(
        "train a grid of runs (depth, residual, norm) and fit power laws to their losses",
        _add_sweep,
        _sweep,
        "Train every point of a grid of runs (each an ordinary run folder under OUT/runs, with "
        "the same seed, data order, tokens and learning rate unless the grid varies them), "
        "measure each on the same validation batches, fit L = a*x^(-alpha) + c over "
        "non-embedding parameters and over compute for each variant, and write OUT/sweep.json "
        "and its figures. A rerun continues a stopped sweep; a run that diverges is recorded "
        "and the sweep goes on. Under mpiexec the runs are spread over the ranks "
        "(docs/scaling.md).",
        on_every_rank=True,
        example="tinygradlm sweep --config depth --out runs/depth",
    ),
    "export": Command(
        "write a checkpoint's model, LoRA merged in, as a plain model directory",
        _add_export,
        _export,
        "Write the model of a checkpoint (LoRA adapters merged into the base weights) as a "
        "model-only directory: model.safetensors, config.json and the tokenizer, which "
        "transformers opens as GPT2LMHeadModel and `finetune --from` starts from. With "
        "--adapters, the LoRA adapters alone as PEFT writes them, for PeftModel.from_pretrained "
        "on their base.",
        example="tinygradlm export --ckpt runs/sft --out runs/sft-adapters --adapters",
    ),
    "eval": Command(
        "loss and perplexity of a checkpoint on a split",
        _add_eval,
        _eval,
        "Mean loss and perplexity of a checkpoint on a split of prepared shards, or on SFT JSON "
        "Lines (the loss on the responses).",
        example="tinygradlm eval --ckpt runs/demo/train --data runs/demo/data --batches 20",
    ),
    "sample": Command(
        "generate text from a checkpoint",
        _add_sample,
        _sample,
        "Continue a prompt with the model of a checkpoint (its tokenizer too), sampling with "
        "temperature, top-k and top-p through the KV cache; the text goes to stdout.",
        example='tinygradlm sample --ckpt runs/demo/train --prompt "The" --max-new-tokens 100 '
        "--temperature 0.8 --top-k 40",
    ),
    "plot": Command(
        "draw a run's curves as PNG files",
        _add_plot,
        _plot,
        "Draw the loss, learning rate, gradient norm and throughput of a run's metrics.jsonl as "
        "PNG files (needs matplotlib: the plot extra).",
        example="tinygradlm plot runs/demo/train",
    ),
    "golden": Command(
        "write reference inputs, outputs and gradients for checking a kernel in any language",
        _add_golden,
        _golden,
        "Write every GPT-2 layer's inputs, cotangent, output and gradients at several shapes, "
        "and a whole training step of a small GPT (loss, gradients, parameters after AdamW), as "
        "safetensors files with index.json: shapes, dtypes and each tensor's tolerance with "
        "its justification (docs/kernel_checking.md).",
        example="tinygradlm golden --out golden --dtype float32",
    ),
}


def report_errors(name: str, handler: Callable[[argparse.Namespace], int], args: Any) -> int:
    """``handler(args)``, with an error the user can fix (and a missing optional package, such
    as matplotlib) printed as ``tinygradlm NAME: message`` and exit status 1; Ctrl-C and SIGTERM
    as one line and 128 + the signal number."""
    try:
        return handler(args)
    except (*USER_ERRORS, ImportError) as e:
        print(f"tinygradlm {name}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        return report_stop(name, e, args)


def report_stop(name: str, stop: KeyboardInterrupt, args: Any = None) -> int:
    """The one line for a command stopped by a signal (printed by rank 0 alone under MPI), and
    its exit status."""
    dist = getattr(args, "dist", None)
    announce = getattr(stop, "announce", dist is None or dist.rank == 0)
    if announce:
        what = "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"
        print(f"tinygradlm {name}: {str(stop) or f'stopped ({what})'}", file=sys.stderr, flush=True)
    return exit_status(stop)


def package_version() -> str:
    """The installed distribution's version; the package's own in a source tree never installed."""
    from importlib import metadata

    try:
        return metadata.version("tinygradlm")
    except metadata.PackageNotFoundError:
        from . import __version__

        return __version__


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples kept one a line; each option's default appended to its help, unless the help
    already says it or there is none to show (None: the help says what absence means; False:
    an on/off flag)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default is None or default is False or default == argparse.SUPPRESS:
            return text
        return text if "default" in text else f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose mistakes point at the fix. A misspelled command names the closest
    one; a command's own unrecognized flag is reported with that command's usage (argparse's
    is the top level's, which shows none of its flags) and the closest flag, or, for a command
    that takes KEY=VALUE settings, the setting it may have meant. Abbreviated flags
    are refused (``allow_abbrev=False``): ``--max-new-token`` would silently stand for
    ``--max-new-tokens`` today and become an error the day a flag shares its prefix."""

    def __init__(self, *args: Any, commands: tuple[str, ...] = (), **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, allow_abbrev=False, **kwargs)
        self.commands = commands  # the top level's; empty for a command's own parser

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        words = sys.argv[1:] if args is None else list(args)
        word = next((w for w in words if not w.startswith("-")), None)
        if self.commands and word is not None and word not in self.commands:
            close = closest(word, self.commands)
            hint = f"; did you mean {close}?" if close else ""
            self.error(f"unknown command {word!r}{hint} (commands: {', '.join(self.commands)})")
        namespace, extras = super().parse_known_args(words, namespace)
        if extras and not self.commands:
            self.error(self.unrecognized(extras))
        return namespace, extras

    def unrecognized(self, extras: list[str]) -> str:
        """What argparse says of ``extras``, and the closest flag of each that looks like one."""
        flags = [s for action in self._actions for s in action.option_strings if s[:2] == "--"]
        takes_settings = any(action.dest == "overrides" for action in self._actions)
        hints = {}
        for extra in extras:
            name = extra.split("=")[0]
            close = closest(name, flags) if name[:2] == "--" else None
            if close:
                hints[extra] = close
            elif name[:2] == "--" and takes_settings:  # a setting given as a flag
                hints[extra] = f"the setting {name[2:].replace('-', '_')}=VALUE"
        message = f"unrecognized arguments: {' '.join(extras)}"
        if len(hints) == 1:
            return f"{message}; did you mean {next(iter(hints.values()))}?"
        return message + "".join(f"; {got}: did you mean {flag}?" for got, flag in hints.items())


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="tinygradlm",
        description="A small LLM-training system whose every gradient can be read and verified.",
        epilog="`tinygradlm COMMAND --help` describes a command, its defaults and an example.",
        commands=tuple(COMMANDS),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        description = command.description or command.help[0].upper() + command.help[1:] + "."
        sub = subparsers.add_parser(
            name,
            help=command.help,
            description=textwrap.fill(description, 78),
            epilog="example:\n  " + command.example if command.example else None,
        )
        command.add_arguments(sub)
    return parser


def main(argv: list[str] | None = None, *, hooks: Any = None) -> int:
    """Run a command; ``hooks`` (``tinygradlm.train.RunHooks``) reach a train/finetune run."""
    args = build_parser().parse_args(argv)
    command = COMMANDS[args.command]
    with sigterm_as_exception():
        try:
            if not command.on_every_rank:
                return report_errors(args.command, command.handler, args)
            # under mpiexec: threads per rank first (before Numba loads), then MPI
            from . import dist

            dist.default_threads()
            args.dist, args.hooks = dist.init(), hooks
            return dist.run_or_abort(args.dist, report_errors, args.command, command.handler, args)
        except KeyboardInterrupt as e:  # another signal while the first one's line went out
            return exit_status(e)


if __name__ == "__main__":
    sys.exit(main())
