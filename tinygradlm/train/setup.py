"""A run's parts, built by composition for either kind of run: the model, the optimizer over
what trains, the loaders, the tokenizer and the gradient mask.

- pretraining (:class:`~tinygradlm.train.config.TrainConfig`): a freshly initialised model,
  AdamW over all of it, the prepared shards of ``data_dir`` (or a mixture of sources) and the
  tokenizer ``prepare`` wrote beside them;
- fine-tuning (:class:`~tinygradlm.train.config.FinetuneConfig`): the model of a checkpoint,
  AdamW over its LoRA adapters or its unfrozen parameters (``tinygradlm.train.finetune``), and
  prompt/response JSON Lines encoded with the checkpoint's tokenizer.

The loop (``tinygradlm.train.loop``) runs either set of parts the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import load_checkpoint, model_from_checkpoint
from ..checkpoint.load import checkpoint_in
from ..data.loader import DataLoader
from ..data.mix import resolve_sources
from ..data.mixture import MixtureLoader
from ..data.sft import SFTLoader, load_sft
from ..data.shards import find_shards, read_shard
from ..errors import ConfigError, DataError
from ..memory import check_fits
from ..model import GPT, GPTConfig, training_bytes
from ..optim import AdamW
from ..parse import ABSENT, file_problem
from ..tokenizer import TOKENIZER_FILE, Tokenizer, checkpoint_tokenizer, load_tokenizer
from .config import FinetuneConfig, TrainConfig
from .finetune import (
    keep_or_merge_adapters,
    record_lora_settings,
    sft_files,
    trainable_parameters,
)

Log = Callable[[str], None]


@dataclass
class RunParts:
    """What a run trains and reads. ``grad_mask`` is 0 on frozen parameters (None: none);
    ``val_sources`` is a mixture's validation loader per source (then ``val_loader`` is None);
    ``remix``: a resumed mixture takes the config's weights instead of the checkpoint's."""

    model: GPT
    optimizer: AdamW
    train_loader: Any
    val_loader: Any
    tokenizer_path: Path
    tokenizer: Tokenizer | None
    grad_mask: np.ndarray | None = None
    val_sources: dict[str, DataLoader] = field(default_factory=dict)
    remix: bool = False


def build_run(
    config: TrainConfig | FinetuneConfig, rank: int, world_size: int, log: Log
) -> RunParts:
    """The parts of a pretraining or a fine-tuning run, for this rank of ``world_size``."""
    if isinstance(config, FinetuneConfig):
        return build_finetuning(config, rank, world_size, log)
    return build_pretraining(config, rank, world_size, log)


def check_seq_len(config: Any, model: GPT) -> None:
    if config.seq_len > model.config.block_size:
        raise ValueError(
            f"{config.WHAT}: seq_len {config.seq_len} exceeds the model's block_size "
            f"{model.config.block_size}"
        )


# --------------------------------------------------------------------------------------------
# pretraining
# --------------------------------------------------------------------------------------------


def build_pretraining(config: TrainConfig, rank: int, world_size: int, log: Log) -> RunParts:
    data_dir = Path(config.data_dir)
    # None: data_dir's own shards; else the mixture's sources (tinygradlm.data.mixture)
    sources = resolve_sources(data_dir, config.data.get("mix"))
    if sources is None and (not data_dir.is_dir() or not find_shards(data_dir, "train")):
        raise DataError(
            f"{data_dir}: no training shards (train_*.bin); run `tinygradlm prepare --out "
            f"{data_dir}` first"
        )
    dirs = [data_dir] if sources is None else [s.path for s in sources]
    tokenizer_path = find_tokenizer(data_dir, sources)
    tokenizer = Tokenizer.load(tokenizer_path) if tokenizer_present(tokenizer_path) else None
    vocab_size = tokenizer.vocab_size if tokenizer is not None else largest_token(dirs) + 1
    model = GPT(
        config.gpt_config(vocab_size),
        seed=config.seed,
        precision=config.precision,
        recompute_mlp=config.recompute_mlp,
    )
    check_seq_len(config, model)
    optimizer = AdamW.for_model(
        model,
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        eps=config.eps,
        weight_decay=config.weight_decay,
    )
    loader_args = {
        "batch_size": config.batch_size,
        "seq_len": config.seq_len,
        "rank": rank,
        "world_size": world_size,
        "seed": config.seed,
        "vocab_size": model.config.vocab_size,
    }
    parts = RunParts(model, optimizer, None, None, tokenizer_path, tokenizer)
    if sources is None:
        parts.train_loader = DataLoader(data_dir, split="train", **loader_args)
        if find_shards(data_dir, "val"):
            parts.val_loader = DataLoader(data_dir, split="val", shuffle=False, **loader_args)
        return parts
    loader = MixtureLoader(sources, split="train", **loader_args)
    parts.train_loader = loader
    parts.val_sources = source_val_loaders(sources, loader_args, log)
    parts.remix = config.data.get("remix", False)
    mix = ", ".join(
        f"{name} {weight:.3g}" for name, weight in zip(loader.names, loader.weights, strict=True)
    )
    log(f"data: a mixture of {len(sources)} sources ({mix})")
    return parts


def tokenizer_present(path: Path) -> bool:
    """True for a tokenizer file, False when there is nothing at ``path``; a DataError when
    something is there but cannot be read (a symbolic link loop, a dangling link, a
    directory): taking it for absent would train with a vocabulary made up from the shards."""
    problem = file_problem(path)
    if problem is not None and problem != ABSENT:
        raise DataError(f"{path}: {problem}, not a tokenizer file")
    return problem is None


def find_tokenizer(data_dir: Path, sources: Sequence[Any] | None) -> Path:
    """The run's tokenizer file: data_dir's, else the first source's (in the source's
    directory or the one above it, where `prepare --source` writes it). A source whose
    directory carries a different tokenizer is a DataError: its token ids mean other text."""
    own = data_dir / TOKENIZER_FILE
    candidates = [
        (s.name, f)
        for s in sources or []
        for f in (s.path / TOKENIZER_FILE, s.path.parent / TOKENIZER_FILE)
        if tokenizer_present(f)
    ]
    chosen = own if tokenizer_present(own) or not candidates else candidates[0][1]
    if tokenizer_present(chosen):
        text = chosen.read_bytes()
        for name, f in candidates:
            if f.read_bytes() != text:
                raise DataError(
                    f"data.mix: source {name!r} was tokenized with {f}, which differs from "
                    f"the run's tokenizer {chosen}: prepare every source with one tokenizer"
                )
    return chosen


def largest_token(dirs: Sequence[Path]) -> int:
    """The largest token id in the training shards: the vocabulary when there is no tokenizer."""
    return max(int(read_shard(p).max(initial=0)) for d in dirs for p in find_shards(d, "train"))


def source_val_loaders(
    sources: Sequence[Any], loader_args: Mapping[str, Any], log: Log
) -> dict[str, DataLoader]:
    """Each mixture source's validation split, in order, as an unshuffled loader; a source
    without one, or with less than one batch of it, is left out and said so."""
    loaders = {}
    for source in sources:
        if not find_shards(source.path, "val"):
            log(f"data: source {source.name!r} has no validation shards")
            continue
        try:
            loaders[source.name] = DataLoader(
                source.path, split="val", shuffle=False, **loader_args
            )
        except DataError as e:
            log(f"data: source {source.name!r} is not validated: {e}")
    return loaders


# --------------------------------------------------------------------------------------------
# fine-tuning
# --------------------------------------------------------------------------------------------


def build_finetuning(config: FinetuneConfig, rank: int, world_size: int, log: Log) -> RunParts:
    resolve_init_from(config, log)
    base = load_checkpoint(config.init_from)
    for note in base.trainer_state.get("notes", []):  # e.g. F16 weights widened to float32
        log(note)
    # any format checkpoint_tokenizer reads; the run's checkpoints carry it as tokenizer.txt too
    if config.tokenizer:
        tokenizer_path = Path(config.tokenizer)
        tokenizer = load_tokenizer(tokenizer_path)
    else:
        tokenizer, tokenizer_path = checkpoint_tokenizer(base)
    check_training_fits(config, base.config, next(iter(base.model_state.values())).dtype)
    model = model_from_checkpoint(base, config.precision)
    model.recompute_mlp = config.recompute_mlp
    adapters, base_model = keep_or_merge_adapters(model, base, config)
    if adapters is not None:
        log(adapters)
    check_seq_len(config, model)
    optimizer, grad_mask, what = trainable_parameters(model, config)
    record_lora_settings(config, model)  # an unset lora_rank: what trains, as the run records
    if model.lora is not None:  # written with its checkpoints as base_model_name_or_path
        model.lora.base_model = base_model

    train_files, val_files = sft_files(config)
    encoding = {
        "tokenizer": tokenizer,
        "seq_len": config.seq_len,
        "prompt_key": config.prompt_key,
        "response_key": config.response_key,
    }
    train_data = load_sft(train_files, **encoding)
    log(f"fine-tuning {what}")
    log(f"train: {train_data.summary()}")
    slices = {"batch_size": config.batch_size, "rank": rank, "world_size": world_size}
    train_loader = SFTLoader(train_data, seed=config.seed, **slices)
    val_loader = None
    if val_files:
        val_data = load_sft(val_files, **encoding)
        log(f"val: {val_data.summary()}")
        val_loader = SFTLoader(val_data, shuffle=False, drop_last=False, **slices)
    return RunParts(
        model, optimizer, train_loader, val_loader, tokenizer_path, tokenizer, grad_mask
    )


def resolve_init_from(config: FinetuneConfig, log: Log) -> None:
    """Set ``init_from`` to the checkpoint it names, for ``--from`` and a TOML file alike: a
    checkpoint, a model-only or a Hugging Face directory as given, a run directory's newest
    complete checkpoint (``checkpoint_in``; said through ``log``). The run's trainer.json then
    records the checkpoint the run started from."""
    checkpoint, taken = checkpoint_in(config.init_from)
    if taken:
        log(taken)
    config.init_from = str(checkpoint)


def check_training_fits(config: FinetuneConfig, model: GPTConfig, dtype: np.dtype) -> None:
    """Refuse a fine-tuning run whose training at (batch_size, seq_len) would not fit in memory,
    before its model is built (the same estimate a pretraining config is checked with; an upper
    bound with LoRA, whose optimizer holds the adapters' moments only)."""
    check_fits(
        training_bytes(
            model,
            config.batch_size,
            config.seq_len,
            dtype,
            config.precision,
            config.recompute_mlp,
        ),
        f"finetune config: training the model of {config.init_from} (n_layer={model.n_layer}, "
        f"n_embd={model.n_embd}, vocab_size={model.vocab_size}) at batch_size="
        f"{config.batch_size}, seq_len={config.seq_len}",
        ConfigError,
    )
