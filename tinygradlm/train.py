"""The training loop: one loop for pretraining and fine-tuning (``tinygradlm.finetune``), on the
flat buffers.

A step is: for each of ``grad_accum_steps`` micro-batches, forward and backward with the
gradient of ``loss / grad_accum_steps`` added into ``flat_grads``; then global-norm clipping,
the divergence guard, and one AdamW update at the scheduled learning rate. Every
``eval_interval`` steps the validation loss, every ``sample_interval`` a sample, every
``checkpoint_interval`` an atomic checkpoint; the last step does all three.

Determinism: the model's initialisation, the loader's order and the samples all come from
``seed``, and nothing else is random, so the same config gives the same run. A checkpoint holds
the parameters, AdamW's moments, the step and the loader's position, so a run resumed from it
continues bit-identically (``tests/test_train.py`` kills a run with SIGKILL to check).

Data parallel (``mpiexec -n P tinygradlm train ...``, ``tinygradlm.dist``): every rank trains
on its slice of each global batch. Before the first step the ranks compare a digest of the
parameter layout and config and take rank 0's parameters and optimizer state. Each micro-batch's
loss is the mean over the targets of all ranks' slices, as one process computes it; only after
the last micro-step are the gradients averaged (buffer ``Allreduce`` in fixed-order buckets of
``bucket_size_mb``, under the step timer's "comm"), so P ranks reach one process's parameters
within float32 rounding (bitwise with ``deterministic_reduce``). Validation is collective; rank 0
alone logs, samples and writes checkpoints, which any number of ranks can resume from. With
``zero_stage = 1`` (ZeRO-1) the gradients are reduce-scattered instead, each rank runs AdamW on
its shard of the buffer (its moments only) and the shards are allgathered; the moments are
gathered to rank 0 for a checkpoint, whose format does not change. Train records carry
``comm_bytes`` and ``imbalance`` under MPI (docs/distributed.md). Test
hook: ``TINYGRADLM_FAIL_RANK=r`` (with ``TINYGRADLM_FAIL_STEP=s``, default 1) makes rank r raise
at step s, to check that an error on one rank ends the whole job; ``TINYGRADLM_STALL_RANK=r``
(``TINYGRADLM_STALL_STEP=s``, ``TINYGRADLM_STALL_SECONDS=t``) makes rank r sleep t seconds before
the gradient allreduce of step s, to check the collective watchdog (``collective_timeout_s``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import backend
from .checkpoint import latest_checkpoint, load_checkpoint, restore, save_checkpoint
from .data.loader import DataLoader
from .data.mix import mixture_loss, parse_mix, resolve_sources
from .data.mixture import MixtureLoader
from .data.sft import IGNORE_INDEX
from .data.shards import find_shards
from .errors import DataError
from .model import GPT, GPTConfig
from .monitor import (
    Action,
    ChromeTrace,
    DivergenceGuard,
    MetricsLogger,
    ProgressLine,
    StepTimer,
    measure_gemm_flops,
    mfu,
)
from .optim import AdamW, clip_grad_norm, grad_norm, lr_schedule
from .precision import Precision
from .tokenizer import TOKENIZER_FILE


@dataclass
class TrainConfig:
    """Every setting of a training run, with its default. Sizes are global: ``batch_size``
    sequences of ``seq_len`` tokens per micro-step, across all ranks."""

    data_dir: str = "runs/data"  # the output of `tinygradlm prepare`
    # [data] mix: several sources in proportion (tinygradlm.data.mixture), as a table
    # {name = weight, …} of data_dir's sources or paths, or "weight path weight path …";
    # without it, a directory prepared with several sources is read at its prepared weights;
    # remix = true lets a resumed run take new weights from its next batch on
    data: dict[str, Any] = field(default_factory=dict)
    out_dir: str = "runs/train"  # checkpoints, metrics.jsonl
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "tiny"})
    batch_size: int = 8
    seq_len: int = 64
    grad_accum_steps: int = 1
    max_steps: int = 200
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 20
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0 disables clipping
    eval_interval: int = 50
    eval_batches: int = 8
    sample_interval: int = 100
    sample_tokens: int = 64
    sample_prompt: str = ""
    temperature: float = 1.0
    top_k: int = 40
    checkpoint_interval: int = 100
    keep_last: int = 3
    log_interval: int = 10
    seed: int = 0
    kernels: str = "numba"  # "numba" or "numpy" (tinygradlm.backend)
    engine: str = "fused"  # "fused" or "autograd"
    max_bad_steps: int = 5  # non-finite steps in a row before rolling back
    precision: str = "fp32"  # "fp32", "bf16" or "fp16" (emulated: tinygradlm.precision)
    loss_scale_init: float = 65536.0  # fp16 only: the first loss scale
    loss_scale_growth_interval: int = 2000  # fp16 only: clean steps before the scale doubles
    # data parallel (tinygradlm.dist): gradients are averaged in fixed-order buckets of this many
    # MiB (0: one fused buffer); deterministic_reduce makes the step bitwise identical for any
    # number of ranks, at a cost in speed
    bucket_size_mb: float = 0
    deterministic_reduce: bool = False
    # the watchdog (tinygradlm.dist): report a collective that has not returned in this many
    # seconds (0: no watchdog) and, unless collective_timeout_abort is false, abort the job
    collective_timeout_s: float = 300.0
    collective_timeout_abort: bool = True
    # ZeRO-1 (1): AdamW's moments sharded over the ranks, gradients reduce-scattered and the
    # updated parameters allgathered; 0: every rank holds the whole optimizer state
    zero_stage: int = 0
    # a Chrome-trace timeline of the step sections, per rank (out_dir/trace_rank{r}.json); 0: off
    trace_steps: int = 0

    def __post_init__(self) -> None:
        check_loop_settings(self, "train config")
        self.gpt_config()  # validates the model table
        if not isinstance(self.data, dict):
            raise ValueError(f"train config: [data] must be a table, got {self.data!r}")
        unknown = sorted(set(self.data) - {"mix", "remix"})
        if unknown:
            raise ValueError(
                f"train config: [data]: unknown key(s) {', '.join(unknown)} (known: mix, remix)"
            )
        if not isinstance(self.data.get("remix", False), bool):
            raise ValueError(
                f"train config: data.remix must be true or false, got {self.data['remix']!r}"
            )
        if "mix" in self.data:
            parse_mix(self.data["mix"])  # a DataError (a ValueError) names what is wrong

    def gpt_config(self, vocab_size: int | None = None) -> GPTConfig:
        """The model: a preset with the [model] table's fields on top (vocab from the data)."""
        fields = dict(self.model)
        preset = fields.pop("preset", None)
        if vocab_size is not None:
            fields["vocab_size"] = vocab_size
        try:
            base = GPTConfig.preset(preset) if preset else GPTConfig()
            return GPTConfig.from_dict({**base.to_dict(), **fields})
        except (TypeError, ValueError) as e:
            raise ValueError(f"train config: [model]: {e}") from None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"train config: unknown key(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_loop_settings(config: Any, what: str) -> None:
    """The checks of the settings every run has (TrainConfig's and FinetuneConfig's); errors
    start with ``what`` and name the key."""
    positive = (
        "batch_size",
        "seq_len",
        "grad_accum_steps",
        "max_steps",
        "eval_batches",
        "log_interval",
        "keep_last",
    )
    for name in positive:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{what}: {name} must be a positive integer, got {value!r}")
    for name in (
        "warmup_steps",
        "eval_interval",
        "sample_interval",
        "checkpoint_interval",
        "sample_tokens",
        "seed",
        "max_bad_steps",
    ):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{what}: {name} must be an integer ≥ 0, got {value!r}")
    for name in ("lr", "min_lr", "weight_decay", "eps", "grad_clip", "temperature"):
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{what}: {name} must be a number ≥ 0, got {value!r}")
    for name in ("beta1", "beta2"):
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"{what}: {name} must be in [0, 1), got {value!r}")
    if config.warmup_steps > config.max_steps:
        raise ValueError(
            f"{what}: warmup_steps ({config.warmup_steps}) exceeds max_steps ({config.max_steps})"
        )
    if config.min_lr > config.lr:
        raise ValueError(f"{what}: min_lr ({config.min_lr}) exceeds lr ({config.lr})")
    if config.kernels not in backend.KERNELS:
        raise ValueError(f"{what}: kernels must be one of {sorted(backend.KERNELS)}")
    if config.engine not in ("fused", "autograd"):
        raise ValueError(f"{what}: engine must be 'fused' or 'autograd'")
    precision = config.precision
    try:
        precision = Precision.parse(precision)
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None
    if precision != Precision.FP32 and config.engine != "fused":
        raise ValueError(f"{what}: precision {precision} needs engine 'fused'")
    bucket = config.bucket_size_mb
    if isinstance(bucket, bool) or not isinstance(bucket, (int, float)) or not bucket >= 0:
        raise ValueError(f"{what}: bucket_size_mb must be a number ≥ 0, got {bucket!r}")
    if not isinstance(config.deterministic_reduce, bool):
        raise ValueError(f"{what}: deterministic_reduce must be true or false")
    timeout = getattr(config, "collective_timeout_s", 0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise ValueError(f"{what}: collective_timeout_s must be a number ≥ 0, got {timeout!r}")
    if not isinstance(getattr(config, "collective_timeout_abort", True), bool):
        raise ValueError(f"{what}: collective_timeout_abort must be true or false")
    zero = getattr(config, "zero_stage", 0)
    if isinstance(zero, bool) or zero not in (0, 1):
        raise ValueError(f"{what}: zero_stage must be 0 or 1, got {zero!r}")
    if zero and config.deterministic_reduce:
        raise ValueError(f"{what}: zero_stage 1 does not combine with deterministic_reduce")
    if zero and Precision.parse(config.precision) != Precision.FP32:
        raise ValueError(f"{what}: zero_stage 1 needs precision 'fp32'")
    trace = getattr(config, "trace_steps", 0)
    if isinstance(trace, bool) or not isinstance(trace, int) or trace < 0:
        raise ValueError(f"{what}: trace_steps must be an integer ≥ 0, got {trace!r}")
    interval = config.loss_scale_growth_interval
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise ValueError(f"{what}: loss_scale_growth_interval must be an integer >= 1")
    scale = config.loss_scale_init
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < 3e38:
        raise ValueError(f"{what}: loss_scale_init must be a number > 0, got {scale!r}")


PRESETS: dict[str, dict[str, Any]] = {
    # a couple of minutes on 2 cores: the README's demo
    "tiny": {
        "model": {"preset": "tiny", "block_size": 128, "n_layer": 4, "n_head": 4, "n_embd": 128},
        "batch_size": 16,
        "seq_len": 128,
        "max_steps": 500,
        "lr": 3e-3,
        "min_lr": 3e-4,
        "warmup_steps": 30,
        "eval_interval": 50,
        "sample_interval": 150,
        "checkpoint_interval": 100,
    },
    # the benchmark model: 4 layers, 4 heads, width 256, T=256
    "small": {
        "model": {"preset": "small"},
        "batch_size": 8,
        "seq_len": 256,
        "max_steps": 2000,
        "lr": 1e-3,
        "min_lr": 1e-4,
        "warmup_steps": 100,
        "eval_interval": 200,
        "sample_interval": 500,
        "checkpoint_interval": 500,
    },
    # GPT-2 124M's shape (nanoGPT's schedule, scaled to what a CPU cluster can run)
    "gpt2": {
        "model": {"preset": "gpt2", "padded_vocab_size": 50304},
        "batch_size": 8,
        "seq_len": 1024,
        "grad_accum_steps": 8,
        "max_steps": 5000,
        "lr": 6e-4,
        "min_lr": 6e-5,
        "warmup_steps": 700,
        "eval_interval": 250,
        "sample_interval": 1000,
        "checkpoint_interval": 500,
    },
}


def load_config(source: str | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """A preset name or a TOML file, then ``key=value`` overrides (values in TOML syntax, dotted
    keys for tables: ``model.n_layer=6``; a bare word is a string)."""
    return TrainConfig.from_dict(read_settings(source, overrides, PRESETS))


def read_settings(
    source: str | None, overrides: Sequence[str] = (), presets: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The settings of a preset (a key of ``presets``) or a TOML file, with ``key=value``
    overrides on top, as a plain dict (what ``load_config`` validates into a TrainConfig)."""
    values: dict[str, Any] = {}
    if source:
        if presets and source in presets:
            values = _deep_copy(presets[source])
        else:
            try:
                with open(source, "rb") as f:
                    values = tomllib.load(f)
            except OSError as e:
                raise ValueError(f"cannot read config {source!r}: {e.strerror}") from None
            except tomllib.TOMLDecodeError as e:
                raise ValueError(f"config {source}: {e}") from None
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not KEY=VALUE")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # a bare word: a string
        *tables, last = key.strip().split(".")
        target = values
        for table in tables:
            target = target.setdefault(table, {})
            if not isinstance(target, dict):
                raise ValueError(f"override {item!r}: {table} is not a table")
        target[last] = value
    return values


def _deep_copy(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in d.items()}


# --------------------------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------------------------


class Trainer:
    """Holds a run's model, optimizer, loaders and position; :meth:`train` runs the loop."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        rank: int = 0,
        world_size: int = 1,
        log: Callable[[str], None] = print,
        dist: Any = None,
    ) -> None:
        self._init_run(config, rank, world_size, log, dist)
        rank, world_size = self.rank, self.world_size  # dist's, when given
        data_dir = Path(config.data_dir)
        # None: data_dir's own shards; else the mixture's sources (tinygradlm.data.mixture)
        self.sources = resolve_sources(data_dir, config.data.get("mix"))
        if self.sources is None and (not data_dir.is_dir() or not find_shards(data_dir, "train")):
            raise DataError(
                f"{data_dir}: no training shards (train_*.bin); run `tinygradlm prepare --out "
                f"{data_dir}` first"
            )
        dirs = [data_dir] if self.sources is None else [s.path for s in self.sources]
        self.tokenizer_path = self._find_tokenizer(data_dir)
        vocab_size = self._vocab_size(dirs)
        self.model = GPT(
            config.gpt_config(vocab_size), seed=config.seed, precision=config.precision
        )
        if config.seq_len > self.model.config.block_size:
            raise ValueError(
                f"train config: seq_len {config.seq_len} exceeds the model's block_size "
                f"{self.model.config.block_size}"
            )
        self.optimizer = AdamW.for_model(
            self.model,
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
            "vocab_size": self.model.config.vocab_size,
        }
        self.val_sources: dict[str, DataLoader] = {}  # a mixture's validation split per source
        self.val_losses: dict[str, float] = {}  # their losses at the last evaluation
        if self.sources is None:
            self.train_loader: Any = DataLoader(data_dir, split="train", **loader_args)
            self.val_loader = (
                DataLoader(data_dir, split="val", shuffle=False, **loader_args)
                if find_shards(data_dir, "val")
                else None
            )
        else:
            self.train_loader = MixtureLoader(self.sources, split="train", **loader_args)
            self.val_loader = None
            self.val_sources = self._source_val_loaders(loader_args)
            mix = ", ".join(
                f"{name} {weight:.3g}"
                for name, weight in zip(
                    self.train_loader.names, self.train_loader.weights, strict=True
                )
            )
            self.log(f"data: a mixture of {len(self.sources)} sources ({mix})")
        self.grad_mask: np.ndarray | None = None  # 0 on frozen parameters (fine-tuning)
        self._init_loop_state()

    def _init_loop_state(self) -> None:
        """The loop's own state, the same for every kind of run (FinetuneTrainer calls it too,
        after building its model, optimizer and loaders)."""
        self.step = 0
        if getattr(self, "dist", None) is None:
            from .dist import Dist

            self.dist = Dist()
        self._synced = False
        # a test hook: raise at this step on this rank (TINYGRADLM_FAIL_RANK, TINYGRADLM_FAIL_STEP)
        fail_rank = os.environ.get("TINYGRADLM_FAIL_RANK")
        self._fail_step = (
            int(os.environ.get("TINYGRADLM_FAIL_STEP", "1"))
            if fail_rank is not None and int(fail_rank) == self.rank
            else None
        )
        # a test hook: rank r sleeps before the gradient allreduce of step s, for the watchdog
        # (TINYGRADLM_STALL_RANK, TINYGRADLM_STALL_STEP default 1, TINYGRADLM_STALL_SECONDS)
        stall_rank = os.environ.get("TINYGRADLM_STALL_RANK")
        self._stall = (
            (
                int(os.environ.get("TINYGRADLM_STALL_STEP", "1")),
                float(os.environ.get("TINYGRADLM_STALL_SECONDS", "60")),
            )
            if stall_rank is not None and int(stall_rank) == self.rank
            else None
        )
        self.out_dir = Path(self.config.out_dir)
        self.guard = DivergenceGuard(max(self.config.max_bad_steps, 1))
        self.scaler = self.model.precision.loss_scaler(
            init_scale=self.config.loss_scale_init,
            growth_interval=self.config.loss_scale_growth_interval,
        )
        trace_steps = getattr(self.config, "trace_steps", 0)
        self.trace = (
            ChromeTrace(self.out_dir / f"trace_rank{self.rank}.json", self.rank, 6 * trace_steps)
            if trace_steps
            else None
        )
        self.timer = StepTimer(trace=self.trace)
        self.shard_optimizer: AdamW | None = None  # ZeRO-1: AdamW on this rank's shard
        self.metrics: MetricsLogger | None = None  # opened by train(), after a resume

    def _init_run(
        self, config: Any, rank: int, world_size: int, log: Callable[[str], None], dist: Any
    ) -> None:
        """What every run sets first: its config, its place among the ranks (from ``dist`` when
        given), a log that only rank 0 prints, and the layer implementation."""
        self.config = config
        if dist is not None:
            rank, world_size = dist.rank, dist.world_size
        self.dist = dist
        self.rank, self.world_size = rank, world_size
        self.log = log if rank == 0 else (lambda _msg: None)
        backend.set_kernels(config.kernels)

    def _find_tokenizer(self, data_dir: Path) -> Path:
        """The run's tokenizer file: data_dir's, else the first source's (in the source's
        directory or the one above it, where `prepare --source` writes it). A source whose
        directory carries a different tokenizer is a DataError: its token ids mean other text."""
        own = data_dir / TOKENIZER_FILE
        candidates = (
            []
            if self.sources is None
            else [
                (s.name, f)
                for s in self.sources
                for f in (s.path / TOKENIZER_FILE, s.path.parent / TOKENIZER_FILE)
                if f.is_file()
            ]
        )
        chosen = own if own.is_file() or not candidates else candidates[0][1]
        if chosen.is_file():
            text = chosen.read_bytes()
            for name, f in candidates:
                if f.read_bytes() != text:
                    raise DataError(
                        f"data.mix: source {name!r} was tokenized with {f}, which differs from "
                        f"the run's tokenizer {chosen}: prepare every source with one tokenizer"
                    )
        return chosen

    def _vocab_size(self, dirs: Sequence[Path]) -> int:
        """The vocabulary of the prepared data: from its tokenizer, else the largest token id."""
        if self.tokenizer_path.exists():
            from .tokenizer import Tokenizer

            self.tokenizer = Tokenizer.load(self.tokenizer_path)
            return self.tokenizer.vocab_size
        self.tokenizer = None
        from .data.shards import read_shard

        return 1 + max(
            int(read_shard(p).max(initial=0)) for d in dirs for p in find_shards(d, "train")
        )

    def _source_val_loaders(self, loader_args: Mapping[str, Any]) -> dict[str, DataLoader]:
        """Each mixture source's validation split, in order, as an unshuffled loader; a source
        without one, or with less than one batch of it, is left out and said so."""
        loaders = {}
        for source in self.sources or []:
            if not find_shards(source.path, "val"):
                self.log(f"data: source {source.name!r} has no validation shards")
                continue
            try:
                loaders[source.name] = DataLoader(
                    source.path, split="val", shuffle=False, **loader_args
                )
            except DataError as e:
                self.log(f"data: source {source.name!r} is not validated: {e}")
        return loaders

    # -- state ---------------------------------------------------------------------------------

    def trainer_state(self) -> dict[str, Any]:
        return {
            "loader": self.train_loader.state_dict(),
            "guard": self.guard.state_dict(),
            "scaler": self.scaler.state_dict(),
            "config": self.config.to_dict(),
        }

    def resume(self) -> bool:
        """Continue from the newest checkpoint in ``out_dir``, if there is one."""
        path = latest_checkpoint(self.out_dir)
        if path is None:
            return False
        self._restore(path)
        guard = self._checkpoint_state.get("guard")
        if guard is not None:
            self.guard.load_state_dict(guard)
        self.log(f"resumed from {path} at step {self.step}")
        return True

    def _restore(self, path: Path) -> None:
        """Parameters, moments, step and data position from the checkpoint at ``path``."""
        ckpt = load_checkpoint(path)
        restore(self.model, self.optimizer, ckpt)
        state = ckpt.trainer_state["loader"]
        if isinstance(self.train_loader, MixtureLoader):
            remix = self.config.data.get("remix", False)
            self.train_loader.load_state_dict(state, new_weights=remix)
        else:
            self.train_loader.load_state_dict(state)
        if "scaler" in ckpt.trainer_state:
            self.scaler.load_state_dict(ckpt.trainer_state["scaler"])
        self.step = ckpt.step
        self._checkpoint_state = ckpt.trainer_state
        if self.shard_optimizer is not None:  # a rollback under ZeRO-1: every rank reads it
            self._shard_optimizer_state()

    def rollback(self) -> None:
        """After repeated non-finite steps: back to the last checkpoint, at a lower learning rate
        (the guard's ``lr_factor``, which a rollback does not restore)."""
        path = latest_checkpoint(self.out_dir)
        if path is None:
            raise RuntimeError(
                f"{self.guard.max_bad_steps} non-finite steps in a row at step {self.step} and "
                f"no checkpoint in {self.out_dir} to roll back to"
            )
        failed_at = self.step
        self._restore(path)
        message = (
            f"{self.guard.max_bad_steps} non-finite steps in a row at step {failed_at}: rolled "
            f"back to step {self.step}, learning rate scaled by {self.guard.lr_factor:g}"
        )
        self.log(message)
        if self.metrics is not None:
            self.metrics.log_event(self.step, "rollback", message, from_step=failed_at)

    def save(self) -> Path:
        files = [self.tokenizer_path] if self.tokenizer_path.exists() else []
        path = save_checkpoint(
            self.out_dir,
            self.step,
            self.model,
            self.optimizer,
            self.trainer_state(),
            tokenizer_files=files,
            keep_last=self.config.keep_last,
        )
        if self.metrics is not None:
            self.metrics.log_event(self.step, "checkpoint", str(path))
        return path

    # -- the loop ------------------------------------------------------------------------------

    def train_step(self) -> dict[str, Any]:
        """One optimizer step: accumulate micro-batch gradients, clip, check, update."""
        cfg, timer = self.config, self.timer
        timer.reset()
        self.dist.set_step(self.step + 1)
        if self._fail_step is not None and self.step + 1 >= self._fail_step:
            raise RuntimeError(
                f"injected failure at step {self.step + 1} on rank {self.rank} "
                "(the TINYGRADLM_FAIL_RANK / TINYGRADLM_FAIL_STEP test hook)"
            )
        loss_sum = 0.0
        scale = self.scaler.scale  # 1 unless fp16
        comm: dict[str, Any] = {}
        if cfg.deterministic_reduce:
            loss_sum = self._deterministic_micro_steps(scale)
        elif self.shard_optimizer is not None:
            loss_sum = self._parallel_micro_steps(scale)
            comm = self._comm_metrics()
            return self._zero_update(loss_sum, comm)
        elif self.dist.enabled:
            loss_sum = self._parallel_micro_steps(scale)
        else:
            for micro in range(cfg.grad_accum_steps):
                with timer("data"):
                    x, y = self.train_loader.next_batch()
                with timer("fwd_bwd"), self._quiet():
                    loss, _ = self.model.forward_backward(
                        x,
                        y,
                        engine=cfg.engine,
                        accumulate=micro > 0,
                        loss_scale=scale / cfg.grad_accum_steps,
                    )
                loss_sum += loss
        if self.dist.enabled:
            comm = self._comm_metrics()
        with timer("optim"):
            lr = self._lr()
            if self.grad_mask is not None:  # frozen parameters get no gradient, so no update
                self.optimizer.grads *= self.grad_mask
            loss = loss_sum / cfg.grad_accum_steps
            # the buffer the optimizer trains: the model's, or its LoRA adapters'
            found_finite = self.scaler.unscale_and_check(self.optimizer.grads)
            if self.scaler.is_overflow(loss, found_finite):
                # fp16 gradients overflowed the scale: skip, back off; the guard is not told
                self.scaler.update(False)
                self.step += 1
                return {
                    "loss": loss,
                    "lr": lr,
                    "grad_norm": None,
                    "action": Action.OVERFLOW,
                    "loss_scale": scale,
                    **comm,
                }
            norm = clip_grad_norm(self.optimizer.grads, cfg.grad_clip)
            action = self.guard.check(loss, norm)
            if action == Action.OK:
                self.optimizer.step(lr)
            if math.isfinite(loss):
                self.scaler.update(found_finite)
        self.step += 1
        return {
            "loss": loss,
            "lr": lr,
            "grad_norm": norm,
            "action": action,
            "loss_scale": scale,
            **comm,
        }

    def _lr(self) -> float:
        """This step's learning rate: the schedule, scaled down after a rollback."""
        cfg = self.config
        return self.guard.lr_factor * lr_schedule(
            self.step,
            max_lr=cfg.lr,
            min_lr=cfg.min_lr,
            warmup_steps=cfg.warmup_steps,
            max_steps=cfg.max_steps,
        )

    def _comm_metrics(self) -> dict[str, Any]:
        """Several ranks: the step's gradient traffic per rank and the compute imbalance.

        ``comm_bytes``: the bytes each rank sends in a ring allreduce of the gradient buffer S,
        2(P − 1)/P · S (it receives as many); with ``deterministic_reduce``, the chain's traffic
        per micro-step, S received and S sent plus the final broadcast's S, as an estimate.
        ``imbalance``: max over ranks / min over ranks of this step's forward/backward seconds
        (one Allreduce MAX of two floats), 1.0 when perfectly balanced."""
        P = self.world_size
        size = self.optimizer.grads.nbytes
        if self.config.deterministic_reduce:
            comm_bytes = 3 * size * self.config.grad_accum_steps
        else:
            comm_bytes = 2 * (P - 1) / P * size
        seconds = self.timer.split().get("fwd_bwd", 0.0)
        with self.timer("comm"):
            both = self.dist.allreduce_max_(np.array([seconds, -seconds], dtype=np.float64))
        slowest, fastest = float(both[0]), float(-both[1])
        imbalance = slowest / fastest if fastest > 0 else float("inf")
        return {"comm_bytes": int(comm_bytes), "imbalance": imbalance}

    def _zero_update(self, loss_sum: float, comm: dict[str, Any]) -> dict[str, Any]:
        """ZeRO-1's optimizer step (fp32): clip by the global norm (the shards' squared norms
        summed over the ranks), AdamW on this rank's shard, then the shards allgathered."""
        cfg, timer, shard = self.config, self.timer, self.shard_optimizer
        assert shard is not None
        with timer("optim"):
            lr = self._lr()
            if self.grad_mask is not None:
                shard.grads *= self.grad_mask[self._shard[0] : self._shard[1]]
            loss = loss_sum / cfg.grad_accum_steps
            squares = np.array([grad_norm(shard.grads) ** 2], dtype=np.float64)
        with timer("comm"):
            self.dist.allreduce_sum_(squares)
        with timer("optim"):
            norm = math.sqrt(float(squares[0]))
            if cfg.grad_clip > 0 and math.isfinite(norm) and norm > cfg.grad_clip:
                shard.grads *= shard.grads.dtype.type(cfg.grad_clip / norm)
            action = self.guard.check(loss, norm)  # the same on every rank: global numbers
            if action == Action.OK:
                shard.step(lr)
                self.optimizer.step_count, self.optimizer.lr = shard.step_count, shard.lr
        if action == Action.OK:
            with timer("comm"):
                self.dist.allgather_shards_(self.optimizer.params)
        self.step += 1
        return {"loss": loss, "lr": lr, "grad_norm": norm, "action": action, "loss_scale": 1.0}

    def _shard_optimizer_state(self) -> None:
        """ZeRO-1: (re)build this rank's AdamW on its shard from the full optimizer's moments
        and step, then let the full moments go (they are only filled again on rank 0 to save)."""
        opt = self.optimizer
        lo, hi = self._shard = self.dist.shard_range(opt.params.size)
        mask = opt.decay_mask
        shard = AdamW(
            opt.params[lo:hi],
            np.zeros(hi - lo, dtype=opt.grads.dtype),
            lr=opt.lr,
            betas=(opt.beta1, opt.beta2),
            eps=opt.eps,
            weight_decay=opt.weight_decay,
            decay_mask=None if mask is None else np.ascontiguousarray(mask[lo:hi]),
        )
        shard.m[...] = opt.m[lo:hi]
        shard.v[...] = opt.v[lo:hi]
        shard.step_count = opt.step_count
        self.shard_optimizer = shard
        opt.m, opt.v = np.zeros_like(opt.m), np.zeros_like(opt.v)  # untouched pages: no memory

    def _gather_optimizer_state(self) -> None:
        """ZeRO-1, every rank, before rank 0 saves: the moments' shards into rank 0's full
        buffers, so the checkpoint is the same as without ZeRO."""
        shard, opt = self.shard_optimizer, self.optimizer
        if shard is None:
            return
        self.dist.gather_shards(shard.m, opt.m)
        self.dist.gather_shards(shard.v, opt.v)

    def _quiet(self) -> Any:
        # fp16 overflows are expected and handled in train_step: no NumPy warnings for them
        if self.scaler.enabled:
            return np.errstate(over="ignore", invalid="ignore")
        return nullcontext()

    def _micro_batches(self) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """This rank's slices of the step's micro-batches and, per micro-batch, the target tokens
        of all ranks together (one Allreduce of grad_accum_steps numbers)."""
        with self.timer("data"):
            batches = [self.train_loader.next_batch() for _ in range(self.config.grad_accum_steps)]
        counts = np.array([(y != IGNORE_INDEX).sum() for _, y in batches], dtype=np.float64)
        with self.timer("comm"):
            totals = self.dist.allreduce_sum_(counts.copy())
        return batches, totals

    def _parallel_micro_steps(self, scale: float) -> float:
        """Several ranks: each micro-batch's loss is the mean over the targets of all ranks' slices
        (as one process computes it), so a rank weighs its slice's mean by its share of the
        targets; only after the last micro-step are the gradients averaged (fixed-order buckets).
        Returns the sum of the micro-steps' losses."""
        cfg, timer = self.config, self.timer
        grads = self.optimizer.grads
        batches, totals = self._micro_batches()
        P = self.world_size
        local = np.zeros(1, dtype=np.float64)
        written = False
        for (x, y), total in zip(batches, totals, strict=True):
            n = int((y != IGNORE_INDEX).sum())
            if n == 0:
                continue  # no targets in this rank's slice: it adds nothing
            weight = P * n / total  # 1.0 exactly when every slice has the same targets
            with timer("fwd_bwd"), self._quiet():
                loss, _ = self.model.forward_backward(
                    x,
                    y,
                    engine=cfg.engine,
                    accumulate=written,
                    loss_scale=scale / cfg.grad_accum_steps * weight,
                )
            local[0] += loss * weight
            written = True
        if not written:
            grads[...] = 0
        if self._stall is not None and self.step + 1 == self._stall[0]:
            time.sleep(self._stall[1])
        with timer("comm"):
            if self.shard_optimizer is not None:  # ZeRO-1: the mean of this rank's shard only
                self.dist.reduce_scatter_mean_(grads, self.shard_optimizer.grads)
            else:
                mb = cfg.bucket_size_mb
                elems = max(int(mb * 2**20) // grads.itemsize, 1) if mb else 0
                self.dist.allreduce_mean_(grads, elems)
            self.dist.allreduce_sum_(local)
        return float(local[0]) / P

    def _deterministic_micro_steps(self, scale: float) -> float:
        """``deterministic_reduce``: the gradient of every sequence on its own (weighed by its
        share of the micro-batch's targets), summed in float32 in the global batch's order through
        the ranks (tinygradlm.dist's docstring); returns the sum of the micro-steps' losses."""
        cfg, timer = self.config, self.timer
        grads = self.optimizer.grads
        acc = np.zeros_like(grads)
        batches, totals = self._micro_batches()
        loss_sum = 0.0
        for (x, y), total in zip(batches, totals, strict=True):
            rows = np.zeros((x.shape[0], grads.size), dtype=grads.dtype)
            weighted = np.zeros(x.shape[0], dtype=np.float64)
            with timer("fwd_bwd"), self._quiet():
                for i in range(x.shape[0]):
                    n = int((y[i] != IGNORE_INDEX).sum())
                    if n == 0:
                        continue
                    loss, _ = self.model.forward_backward(
                        x[i : i + 1],
                        y[i : i + 1],
                        engine=cfg.engine,
                        loss_scale=scale / cfg.grad_accum_steps * (n / total),
                    )
                    rows[i] = grads
                    weighted[i] = loss * (n / total)
            with timer("comm"):
                self.dist.ordered_sum_(acc, rows)
                all_weighted = self.dist.allgather(weighted)
            for w in all_weighted:  # in the global order: the same sum for any P
                loss_sum += float(w)
        grads[...] = acc
        return loss_sum

    def _sync_start(self) -> None:
        """With several ranks, before the first step: the same layout and config everywhere,
        then rank 0's parameters and optimizer state on every rank."""
        if self._synced or not self.dist.enabled:
            return
        self._synced = True
        d = self.dist
        d.set_step(self.step)
        d.set_watchdog(
            getattr(self.config, "collective_timeout_s", 300.0),
            getattr(self.config, "collective_timeout_abort", True),
        )
        self.log(
            f"data parallel: {d.world_size} ranks ({d.local_size} on this node), "
            f"{self.config.batch_size // d.world_size} sequences per rank per micro-step"
            + (", deterministic reduce" if self.config.deterministic_reduce else "")
            + (", ZeRO-1" if getattr(self.config, "zero_stage", 0) == 1 else "")
        )
        self.dist.check_same(self.layout_digest(), "parameter layout and config")
        self.dist.broadcast_(self.model.flat_params)
        lora = self.model.lora
        if lora is not None:
            self.dist.broadcast_(lora.flat_params)
        opt = self.optimizer
        self.dist.broadcast_(opt.params)
        self.dist.broadcast_(opt.m)
        self.dist.broadcast_(opt.v)
        step = self.dist.broadcast_(np.array([opt.step_count, self.step], dtype=np.int64))
        opt.step_count, self.step = int(step[0]), int(step[1])
        if getattr(self.config, "zero_stage", 0) == 1:
            self._shard_optimizer_state()

    def layout_digest(self) -> str:
        """sha256 of the parameter layout (names, shapes, dtypes) and the run's config."""
        layout = [
            [name, list(view.shape), str(view.dtype)] for name, view in self.model.params.items()
        ]
        opt = self.optimizer
        text = json.dumps(
            {
                "layout": layout,
                "optimizer": [int(opt.params.size), str(opt.params.dtype)],
                "config": self.config.to_dict(),
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def evaluate(self) -> float:
        """Mean loss over the targets of ``eval_batches`` validation batches, from the split's
        start (with several ranks: a collective, over every rank's slice). For a mixture, each
        source's loss goes to ``val_losses`` and the result is their mean at the mixture's
        weights (renormalised over the sources with a validation split): the expected loss on
        a token drawn as training draws them."""
        if self.val_sources:
            self.val_losses = {
                name: self._val_loss(loader) for name, loader in self.val_sources.items()
            }
            weights = dict(zip(self.train_loader.names, self.train_loader.weights, strict=True))
            return mixture_loss(self.val_losses, weights)
        if self.val_loader is None:
            return float("nan")
        return self._val_loss(self.val_loader)

    def _val_loss(self, loader: Any) -> float:
        loss, tokens = evaluate_loss(self.model, loader, self.config.eval_batches)
        if not self.dist.enabled:
            return loss
        both = np.array([loss * tokens if tokens else 0.0, tokens], dtype=np.float64)
        self.dist.allreduce_sum_(both)
        return float(both[0] / both[1]) if both[1] else float("nan")

    def train(self) -> dict[str, Any]:
        """Run from the current step to ``max_steps``; returns the last step's record."""
        cfg = self.config
        model_cfg = self.model.config
        tokens_per_step = cfg.batch_size * cfg.seq_len * cfg.grad_accum_steps
        flops_per_step = self.model.flops_per_token(cfg.seq_len) * tokens_per_step
        rows = cfg.batch_size // self.world_size * cfg.seq_len
        peak = measure_gemm_flops(model_cfg.n_embd, rows, vocab_size=model_cfg.Vp)
        peak *= self.world_size
        self.metrics = MetricsLogger(
            self.out_dir, enabled=self.rank == 0, resume_step=self.step if self.step else None
        )
        progress = ProgressLine(cfg.max_steps, every=cfg.log_interval, enabled=self.rank == 0)
        record: dict[str, Any] = {}
        self._sync_start()
        try:
            while self.step < cfg.max_steps:
                epochs_before = self._epochs()
                started = time.perf_counter()
                result = self.train_step()
                seconds = time.perf_counter() - started
                if result["action"] == Action.ROLLBACK:
                    self.rollback()
                    continue
                record = self.metrics.log_train(
                    self.step,
                    loss=result["loss"],
                    lr=result["lr"],
                    grad_norm=result["grad_norm"],
                    tokens_per_s=tokens_per_step / seconds,
                    mfu=mfu(flops_per_step, seconds, peak),
                    time=self.timer.split(),
                    **({"loss_scale": result["loss_scale"]} if self.scaler.enabled else {}),
                    **{k: result[k] for k in ("comm_bytes", "imbalance") if k in result},
                    **self._epochs(),
                )
                self._log_new_epochs(epochs_before, record, progress)
                if result["action"] == Action.OVERFLOW:
                    message = (
                        f"fp16 gradient overflow at loss scale {result['loss_scale']:g}: update "
                        f"skipped, scale now {self.scaler.scale:g}"
                    )
                    self.metrics.log_event(self.step, "overflow", message)
                if result["action"] == Action.SKIP:
                    message = "non-finite loss or gradient norm: update skipped"
                    self.metrics.log_event(self.step, "skip", message)
                    progress.message(f"step {self.step}: {message}")
                progress.update(record)
                self._periodic(progress)
        finally:
            progress.close()
            self.metrics.close()
            if self.trace is not None:
                self.trace.write()
        return record

    def _periodic(self, progress: ProgressLine) -> None:
        """Validation, samples and checkpoints when their intervals (or the last step) come."""
        cfg, step = self.config, self.step
        done = step == cfg.max_steps
        if cfg.eval_interval and (step % cfg.eval_interval == 0 or done):
            val = self.evaluate()
            if math.isfinite(val):
                by_source = {"sources": dict(self.val_losses)} if self.val_losses else {}
                self.metrics.log_val(step, loss=val, **by_source)
                message = f"step {step}: val loss {val:.4f}, perplexity {math.exp(val):.2f}"
                if self.val_losses:
                    message += (
                        " ("
                        + ", ".join(f"{name} {loss:.4f}" for name, loss in self.val_losses.items())
                        + ")"
                    )
                progress.message(message)
        if cfg.sample_interval and (step % cfg.sample_interval == 0 or done) and self.rank == 0:
            progress.message(f"step {step}: sample: {self.sample()!r}")
        if cfg.checkpoint_interval and (step % cfg.checkpoint_interval == 0 or done):
            self._gather_optimizer_state()  # ZeRO-1: the moments to rank 0
            if self.rank == 0:
                progress.message(f"step {step}: checkpoint {self.save()}")
            self.dist.barrier()  # the checkpoint exists for every rank (a rollback reads it)

    def _epochs(self) -> dict[str, Any]:
        """The passes over the training data so far, for the metrics: ``epoch`` (one source) or
        ``epochs`` per source (a mixture)."""
        seen = getattr(self.train_loader, "epochs_seen", None)
        if seen is None:
            return {}
        value = seen()
        return {"epochs": value} if isinstance(value, dict) else {"epoch": value}

    def _log_new_epochs(
        self, before: Mapping[str, Any], after: Mapping[str, Any], progress: ProgressLine
    ) -> None:
        """An "epoch" event each time the training data, or a mixture's source, begins another
        pass: a source small for its weight shows up as repeated epochs."""
        if "epochs" in before:
            pairs = [
                (f"source {name!r}", before["epochs"][name], after["epochs"][name])
                for name in before["epochs"]
            ]
        elif "epoch" in before:
            pairs = [("the training data", before["epoch"], after["epoch"])]
        else:
            return
        for what, old, new in pairs:
            if math.floor(new) > math.floor(old):
                message = f"{what} began epoch {math.floor(new) + 1}"
                self.metrics.log_event(self.step, "epoch", message, epochs=new)
                progress.message(f"step {self.step}: {message}")

    def sample(self) -> str:
        """A sample from the current model (seeded by the run's seed and the step)."""
        if self.tokenizer is None:
            return "(no tokenizer in the data directory)"
        from .generate import generate

        tok = self.tokenizer
        prompt = tok.encode(self.config.sample_prompt) if self.config.sample_prompt else []
        new = generate(
            self.model,
            [tok.eot_token, *prompt],
            self.config.sample_tokens,
            temperature=self.config.temperature,
            top_k=self.config.top_k,
            seed=self.config.seed * 1_000_003 + self.step,
            stop_token=tok.eot_token,
        )
        if new and new[-1] == tok.eot_token:
            new = new[:-1]
        return tok.decode(prompt + list(new))


def train(config: TrainConfig, *, resume: bool = True) -> dict[str, Any]:
    """Run (or continue) a training run; returns the last step's metrics."""
    trainer = Trainer(config)
    if resume:
        trainer.resume()
    return trainer.train()


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------


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
    adapters is evaluated with them, as during its training.
    """
    from .data.sft import SFTLoader, load_sft
    from .tokenizer import Tokenizer

    ckpt = load_checkpoint(ckpt_dir)
    dtype = next(iter(ckpt.model_state.values())).dtype
    model = GPT(ckpt.config, dtype=dtype)
    if ckpt.lora is not None:
        model.add_lora(ckpt.lora)
    restore(model, None, ckpt)
    if seq_len is None:
        run_config = ckpt.trainer_state.get("config", {})
        seq_len = run_config.get("seq_len") or ckpt.config.block_size
    if seq_len > ckpt.config.block_size:
        raise ValueError(
            f"seq_len {seq_len} exceeds the model's block_size {ckpt.config.block_size}"
        )
    data = Path(data)
    jsonl = data if data.suffix == ".jsonl" else data / f"{split}.jsonl"
    if jsonl.is_file():
        tokenizer = Tokenizer.load(checkpoint_tokenizer_file(ckpt))
        examples = load_sft(jsonl, tokenizer, seq_len)
        loader: Any = SFTLoader(examples, batch_size=batch_size, shuffle=False, drop_last=False)
    else:

        def shards(path: Path) -> DataLoader:
            return DataLoader(
                path,
                split=split,
                batch_size=batch_size,
                seq_len=seq_len,
                shuffle=False,
                vocab_size=ckpt.config.vocab_size,
            )

        sources = None if find_shards(data, split) else resolve_sources(data)
        if sources is not None:  # a directory prepared with several sources: each on its own
            return {**_evaluate_sources(model, sources, split, shards, batches), "step": ckpt.step}
        loader = shards(data)
    loss, tokens = evaluate_loss(model, loader, batches)
    return {"loss": loss, "perplexity": _perplexity(loss), "tokens": tokens, "step": ckpt.step}


def _evaluate_sources(
    model: GPT,
    sources: Sequence[Any],
    split: str,
    shards: Callable[[Path], DataLoader],
    batches: int | None,
) -> dict[str, Any]:
    """evaluate_checkpoint on a prepared mixture: each source's loss on its split (read by
    ``shards``), and their mean at the prepared weights over the sources that have the split."""
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
    if not results:
        raise DataError(f"no source of the mixture has {split} shards")
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


def checkpoint_tokenizer_file(ckpt: Any) -> Path:
    """The tokenizer file a loaded checkpoint carries (its tokenizer.txt), or a DataError."""
    for path in ckpt.tokenizer_files:
        if path.name == TOKENIZER_FILE:
            return path
    raise DataError(
        f"{ckpt.path}: no {TOKENIZER_FILE} in the checkpoint, which encoding text needs; give "
        "the tokenizer the model was trained with"
    )
