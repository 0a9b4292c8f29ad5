"""A run's settings: the loop's settings, defined once (:class:`LoopSettings`), and the two
runs built on them, pretraining (:class:`TrainConfig`) and fine-tuning
(:class:`FinetuneConfig`); the presets; and the one settings loader (a preset or a TOML file,
then ``KEY=VALUE`` overrides) that ``train``, ``finetune`` and ``prepare`` read their configs
with. Every setting and its meaning: docs/training.md and docs/finetuning.md."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .. import backend
from ..data.mix import parse_mix
from ..lora import TARGETS, LoRAConfig
from ..model import GPTConfig
from ..precision import Precision


@dataclass
class LoopSettings:
    """The settings of the training loop, which pretraining and fine-tuning share. Sizes are
    global: ``batch_size`` sequences of ``seq_len`` tokens per micro-step, across all ranks."""

    WHAT: ClassVar[str] = "config"  # how error messages name the config

    out_dir: str = "runs/train"  # checkpoints, metrics.jsonl
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
        what = self.WHAT
        _check_counts(self, what)
        _check_numbers(self, what)
        _check_choices(self, what)
        _check_parallel(self, what)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Any:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"{cls.WHAT}: unknown key(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_counts(config: LoopSettings, what: str) -> None:
    positive = (
        "batch_size",
        "seq_len",
        "grad_accum_steps",
        "max_steps",
        "eval_batches",
        "log_interval",
        "keep_last",
        "loss_scale_growth_interval",
    )
    for name in positive:
        value = getattr(config, name)
        if not _is_int(value) or value < 1:
            raise ValueError(f"{what}: {name} must be a positive integer, got {value!r}")
    non_negative = (
        "warmup_steps",
        "eval_interval",
        "sample_interval",
        "checkpoint_interval",
        "sample_tokens",
        "seed",
        "max_bad_steps",
        "trace_steps",
    )
    for name in non_negative:
        value = getattr(config, name)
        if not _is_int(value) or value < 0:
            raise ValueError(f"{what}: {name} must be an integer ≥ 0, got {value!r}")
    if config.warmup_steps > config.max_steps:
        raise ValueError(
            f"{what}: warmup_steps ({config.warmup_steps}) exceeds max_steps ({config.max_steps})"
        )


def _check_numbers(config: LoopSettings, what: str) -> None:
    for name in ("lr", "min_lr", "weight_decay", "eps", "grad_clip", "temperature"):
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{what}: {name} must be a number ≥ 0, got {value!r}")
    for name in ("beta1", "beta2"):
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"{what}: {name} must be in [0, 1), got {value!r}")
    if config.min_lr > config.lr:
        raise ValueError(f"{what}: min_lr ({config.min_lr}) exceeds lr ({config.lr})")
    for name in ("bucket_size_mb", "collective_timeout_s"):
        value = getattr(config, name)
        if not _is_number(value) or not value >= 0:
            raise ValueError(f"{what}: {name} must be a number ≥ 0, got {value!r}")
    scale = config.loss_scale_init
    if not _is_number(scale) or not 0 < scale < 3e38:
        raise ValueError(f"{what}: loss_scale_init must be a number > 0, got {scale!r}")


def _check_choices(config: LoopSettings, what: str) -> None:
    if config.kernels not in backend.KERNELS:
        raise ValueError(f"{what}: kernels must be one of {sorted(backend.KERNELS)}")
    if config.engine not in ("fused", "autograd"):
        raise ValueError(f"{what}: engine must be 'fused' or 'autograd'")
    try:
        precision = Precision.parse(config.precision)
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None
    if precision != Precision.FP32 and config.engine != "fused":
        raise ValueError(f"{what}: precision {precision} needs engine 'fused'")
    for name in ("deterministic_reduce", "collective_timeout_abort"):
        if not isinstance(getattr(config, name), bool):
            raise ValueError(f"{what}: {name} must be true or false")


def _check_parallel(config: LoopSettings, what: str) -> None:
    zero = config.zero_stage
    if isinstance(zero, bool) or zero not in (0, 1):
        raise ValueError(f"{what}: zero_stage must be 0 or 1, got {zero!r}")
    if zero and config.deterministic_reduce:
        raise ValueError(f"{what}: zero_stage 1 does not combine with deterministic_reduce")
    if zero and Precision.parse(config.precision) != Precision.FP32:
        raise ValueError(f"{what}: zero_stage 1 needs precision 'fp32'")


@dataclass
class TrainConfig(LoopSettings):
    """Pretraining: the loop's settings, the prepared data and the model to initialise."""

    WHAT: ClassVar[str] = "train config"

    data_dir: str = "runs/data"  # the output of `tinygradlm prepare`
    # [data] mix: several sources in proportion (tinygradlm.data.mixture), as a table
    # {name = weight, …} of data_dir's sources or paths, or "weight path weight path …";
    # without it, a directory prepared with several sources is read at its prepared weights;
    # remix = true lets a resumed run take new weights from its next batch on
    data: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=lambda: {"preset": "tiny"})

    def __post_init__(self) -> None:
        super().__post_init__()
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


@dataclass
class FinetuneConfig(LoopSettings):
    """Fine-tuning: the loop's settings (their defaults suit a short run from a trained model:
    a lower learning rate, no weight decay, fewer steps), the checkpoint to start from, the
    prompt/response data, and what trains (LoRA adapters, or the base less ``freeze``)."""

    WHAT: ClassVar[str] = "finetune config"

    # the loop's defaults for fine-tuning
    out_dir: str = "runs/finetune"
    max_steps: int = 100
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 10
    weight_decay: float = 0.0
    eval_interval: int = 25
    sample_interval: int = 0
    checkpoint_interval: int = 50

    init_from: str = ""  # the pretrained checkpoint directory (required)
    data: str = ""  # a JSON Lines file, or a directory with train.jsonl (and val.jsonl)
    val_data: str = ""  # JSON Lines for validation (default: val.jsonl beside train.jsonl)
    tokenizer: str = ""  # a tokenizer.txt (default: the one in init_from)
    prompt_key: str = "prompt"
    response_key: str = "response"
    lora_rank: int = 0  # 0: no adapters, train the base model (less `freeze`)
    lora_alpha: float = 16.0
    lora_targets: list[str] = field(default_factory=lambda: list(TARGETS))
    freeze: list[str] = field(default_factory=list)  # parameter-name prefixes held fixed

    def __post_init__(self) -> None:
        super().__post_init__()
        what = self.WHAT
        for name in ("init_from", "data"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{what}: {name} is required (a path)")
        rank = self.lora_rank
        if not _is_int(rank) or rank < 0:
            raise ValueError(f"{what}: lora_rank must be an integer ≥ 0, got {rank!r}")
        for name in ("freeze", "lora_targets"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{what}: {name} must be a list of strings, got {value!r}")
        if rank and self.freeze:
            raise ValueError(
                f"{what}: freeze applies without LoRA; with lora_rank > 0 the whole base is "
                "frozen already"
            )
        if rank:
            try:
                self.lora_config()
            except ValueError as e:
                raise ValueError(f"{what}: {e}") from None

    def lora_config(self) -> LoRAConfig | None:
        """The adapters' config, or None without LoRA."""
        if not self.lora_rank:
            return None
        return LoRAConfig(self.lora_rank, self.lora_alpha, tuple(self.lora_targets))


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


def load_finetune_config(
    source: str | None = None, overrides: Sequence[str] = (), **settings: Any
) -> FinetuneConfig:
    """A TOML file (or none), then ``key=value`` overrides as for ``tinygradlm train``, then
    ``settings`` (the command line's ``--from`` and ``--data``) on top."""
    values = read_settings(source, overrides)
    values.update({k: v for k, v in settings.items() if v is not None})
    return FinetuneConfig.from_dict(values)


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
