"""Checkpoint evaluation (``tinygradlm eval``): the mean loss over a split's target tokens, of
shards, SFT JSON Lines, or each source of a prepared mixture; and the loop's validation loss."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import backend
from ..checkpoint import load_checkpoint, model_from_checkpoint
from ..data.loader import DataLoader
from ..data.mix import mixture_loss, resolve_sources
from ..data.sft import IGNORE_INDEX, SFTLoader, load_sft
from ..data.shards import find_shards
from ..errors import ConfigError, DataError
from ..model import GPT
from ..schema import Rule, check_table, problems_message
from ..tokenizer import checkpoint_tokenizer
from .resume_state import run_seq_len

EVAL_RULES = {
    "batches": Rule("optional_int", 1, doc="batches to evaluate (None: the whole split)"),
    "batch_size": Rule("int", 1, doc="sequences per batch"),
    "seq_len": Rule("optional_int", 1, doc="tokens per sequence (None: the run's)"),
}


def evaluate_loss(model: GPT, loader: Any, batches: int | None = None) -> tuple[float, int]:
    """The mean cross-entropy over every target token of the loader's first ``batches`` batches
    (the whole split when None), and the number of those tokens. Targets equal to -100 (an SFT
    prompt, padding) are left out, so batches weigh by their target tokens."""
    loader.reset()
    n = loader.batches_per_epoch if batches is None else min(batches, loader.batches_per_epoch)
    total, tokens = 0.0, 0
    for _ in range(n):
        x, y = loader.next_batch()
        count = int((y != IGNORE_INDEX).sum())
        if count == 0:
            continue
        loss, _ = backend.layers().crossentropy_forward(model.logits(x), y)
        total += float(loss) * count
        tokens += count
    return (total / tokens if tokens else float("nan")), tokens


def evaluate_checkpoint(
    ckpt_dir: str | Path,
    data: str | Path,
    *,
    split: str = "val",
    batches: int | None = None,
    batch_size: int = 8,
    seq_len: int | None = None,
) -> dict[str, Any]:
    """Loss and perplexity of a checkpoint on a split: what ``tinygradlm eval`` prints.

    ``data`` is a directory of shards (``tinygradlm prepare``'s output: the split's windows of
    ``seq_len`` tokens, in order), or SFT JSON Lines: a ``.jsonl`` file or a directory with
    ``{split}.jsonl`` (the loss on the responses, encoded with the checkpoint's tokenizer).
    A directory prepared with several sources gives each source's loss under "sources" and,
    as "loss", their mean at the prepared weights.
    ``seq_len`` defaults to the run's, else the model's block_size. A checkpoint with LoRA
    adapters is evaluated with them, as during its training. ``batches``, ``batch_size`` and
    ``seq_len`` must be positive integers (a ConfigError before anything is read): a loss over
    no batches would be NaN, not a measurement.
    """
    problems = check_table(
        {"batches": batches, "batch_size": batch_size, "seq_len": seq_len}, EVAL_RULES
    )
    if problems:
        raise ConfigError(problems_message(problems, "eval"))
    ckpt = load_checkpoint(ckpt_dir)
    model = model_from_checkpoint(ckpt)
    if seq_len is None:
        seq_len = run_seq_len(ckpt.trainer_state, ckpt.path) or ckpt.config.block_size
    if seq_len > ckpt.config.block_size:
        raise ValueError(
            f"seq_len {seq_len} exceeds the model's block_size {ckpt.config.block_size}"
        )
    data = Path(data)
    jsonl = data if data.suffix == ".jsonl" else data / f"{split}.jsonl"
    if not jsonl.is_file():
        sizes = {"batches": batches, "batch_size": batch_size, "seq_len": seq_len}
        return {**evaluate_shards(model, data, split=split, **sizes), "step": ckpt.step}
    tokenizer, _ = checkpoint_tokenizer(ckpt)
    examples = load_sft(jsonl, tokenizer, seq_len)
    loader = SFTLoader(examples, batch_size=batch_size, shuffle=False, drop_last=False)
    loss, tokens = evaluate_loss(model, loader, batches)
    return {"loss": loss, "perplexity": _perplexity(loss), "tokens": tokens, "step": ckpt.step}


def evaluate_shards(
    model: GPT,
    data_dir: str | Path,
    *,
    split: str = "val",
    batches: int | None = None,
    batch_size: int = 8,
    seq_len: int,
    mix: Any = None,
) -> dict[str, Any]:
    """The loss of ``model`` on a split of a prepared directory, in order: its own shards, or,
    for a directory prepared with several sources (or with ``mix``, a ``data.mix`` setting as a
    run takes it), each source's loss under "sources" and their mean at the weights as "loss".
    A DataError names what is missing."""
    data = Path(data_dir)

    def shards(path: Path) -> DataLoader:
        return DataLoader(
            path,
            split=split,
            batch_size=batch_size,
            seq_len=seq_len,
            shuffle=False,
            vocab_size=model.config.vocab_size,
        )

    sources = split_sources(data, split, mix)
    if sources is not None:  # several sources: each on its own
        return _evaluate_sources(model, sources, split, shards, batches)
    loss, tokens = evaluate_loss(model, shards(data), batches)
    return {"loss": loss, "perplexity": _perplexity(loss), "tokens": tokens}


def split_sources(data_dir: str | Path, split: str = "val", mix: Any = None) -> list[Any] | None:
    """What :func:`evaluate_shards` reads of ``split``: None for ``data_dir``'s own shards, else
    the sources of its mixture (``mix``, or the prepared one). A DataError when there is nothing
    of that split to read, so a caller can ask before it spends time training."""
    data = Path(data_dir)
    if mix is None and find_shards(data, split):
        return None
    sources = resolve_sources(data, mix)
    if sources is None:
        raise DataError(f"{data}: no {split} shards ({split}_*.bin)")
    if not any(find_shards(source.path, split) for source in sources):
        names = ", ".join(source.name for source in sources)
        raise DataError(f"{data}: no source of the mixture ({names}) has {split} shards")
    return sources


def _evaluate_sources(
    model: GPT,
    sources: Sequence[Any],
    split: str,
    shards: Callable[[Path], DataLoader],
    batches: int | None,
) -> dict[str, Any]:
    """evaluate_shards on several sources: each source's loss on its split (read by ``shards``),
    and their mean at the sources' weights over the sources that have the split (at least one:
    :func:`split_sources` said so)."""
    results = {}
    for source in sources:
        if not find_shards(source.path, split):
            continue
        loss, tokens = evaluate_loss(model, shards(source.path), batches)
        results[source.name] = {
            "loss": loss,
            "perplexity": _perplexity(loss),
            "tokens": tokens,
            "weight": source.weight,
        }
    loss = mixture_loss(
        {name: r["loss"] for name, r in results.items()},
        {name: r["weight"] for name, r in results.items()},
    )
    return {
        "loss": loss,
        "perplexity": _perplexity(loss),
        "tokens": sum(r["tokens"] for r in results.values()),
        "sources": results,
    }


def _perplexity(loss: float) -> float:
    return math.exp(loss) if math.isfinite(loss) else float("nan")


def validation_loss(model: GPT, loader: Any, batches: int, dist: Any) -> float:
    """The loop's validation loss: :func:`evaluate_loss` over ``batches`` batches from the
    split's start; with several ranks a collective, over every rank's slice."""
    loss, tokens = evaluate_loss(model, loader, batches)
    if not dist.enabled:
        return loss
    both = np.array([loss * tokens if tokens else 0.0, tokens], dtype=np.float64)
    dist.allreduce_sum_(both)
    return float(both[0] / both[1]) if both[1] else float("nan")
