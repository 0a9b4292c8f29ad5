"""A run's settings: the loop's settings, defined once (:class:`LoopSettings`), and the two
runs built on them, pretraining (:class:`TrainConfig`) and fine-tuning
(:class:`FinetuneConfig`), each with the rules its values must follow
(:mod:`tinygradlm.schema`); and the one settings loader (a preset or a TOML file,
then ``KEY=VALUE`` overrides) that ``train``, ``finetune`` and ``prepare`` read their configs
with, and the overrides of the ``TINYGRADLM_OVERRIDES`` environment variable, applied last to
every train and finetune config. Every setting and its meaning: docs/training.md and
docs/finetuning.md."""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from .. import backend
from ..data.mix import parse_mix
from ..errors import ConfigError
from ..lora import TARGETS, LoRAConfig
from ..memory import check_fits
from ..model import PRESETS as GPT_PRESETS
from ..model import GPTConfig, training_bytes
from ..model.config import RULES as GPT_RULES
from ..parse import parse_toml, read_toml
from ..precision import Precision
from ..schema import Problem, Rule, Settings, check_table, problems_message
from .presets import PRESETS
from .run_folder import default_out_dir


@dataclass
class LoopSettings:
    """The settings of the training loop, which pretraining and fine-tuning share. Sizes are
    global: ``batch_size`` sequences of ``seq_len`` tokens per micro-step, across all ranks."""

    WHAT: ClassVar[str] = "config"  # how error messages name the config
    RULES: ClassVar[dict[str, Rule]]  # what each setting may be (below the class)

    out_dir: str = "runs/train"  # checkpoints, metrics.jsonl
    batch_size: int = 8
    seq_len: int = 64
    grad_accum_steps: int = 1
    max_steps: int = 200
    lr: float = 3e-3
    # the schedule follows max_steps and lr unless set: warmup_steps = warmup_ratio × max_steps
    # (rounded), min_lr = lr / 10; set, they are checked against max_steps and lr
    min_lr: float | None = None
    warmup_steps: int | None = None
    warmup_ratio: float = 0.1
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
    # a "layers" metrics record (per-layer gradient, update and parameter norms, the residual
    # stream's RMS) every N steps and at the last; 0: none
    diagnostics_interval: int = 50
    seed: int = 0
    kernels: str = "numba"  # "numba" or "numpy" (tinygradlm.backend)
    engine: str = "fused"  # "fused" or "autograd"
    max_bad_steps: int = 5  # non-finite steps in a row before rolling back
    precision: str = "fp32"  # "fp32", "bf16" or "fp16" (emulated: tinygradlm.precision)
    # compute each block's x2 and c_fc output again in the backward instead of keeping them
    # (GPT.recompute_mlp): the same bits in 5/9 of a block's activation memory less, for two
    # more matmuls a block (attn.c_proj's, C×C, and mlp.c_fc's, C×4C)
    recompute_mlp: bool = False
    loss_scale_init: float = 65536.0  # fp16 only: the first loss scale
    loss_scale_growth_interval: int = 2000  # fp16 only: clean steps before the scale doubles
    # data parallel (tinygradlm.dist): gradients are averaged in fixed-order buckets of this many
    # MiB (0: one fused buffer; with overlap_comm, one layer); deterministic_reduce makes the
    # step bitwise identical for any number of ranks, at a cost in speed
    bucket_size_mb: float = 0
    deterministic_reduce: bool = False
    # start each bucket's reduction during the backward, as soon as its layers' gradients are
    # final (with overlap the buckets are whole layers, bucket_size_mb the least size of one)
    overlap_comm: bool = True
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
        unset = {name for name in SCHEDULE_DEFAULTS if getattr(self, name) is None}
        values = {k: v for k, v in self.to_dict().items() if k not in unset}
        problems = self.check_values(values)
        if problems:
            raise ConfigError(problems_message(problems, self.WHAT))
        self.resolve_schedule()
        self.check_combinations()

    def resolve_schedule(self) -> None:
        """The schedule's settings left unset, from the ones they follow (``SCHEDULE_DEFAULTS``):
        ``warmup_steps`` = round(``warmup_ratio`` × ``max_steps``) and ``min_lr`` = ``lr`` / 10,
        divided in decimal, so that lr = 3e-3 gives the 3e-4 a person would write (the float
        3e-3 / 10 is one ulp above it, which would change a run's losses)."""
        if self.warmup_steps is None:
            self.warmup_steps = round(self.warmup_ratio * self.max_steps)
        if self.min_lr is None:
            self.min_lr = float(Decimal(repr(float(self.lr))) / 10)

    def check_combinations(self) -> None:
        """The rules between settings (each setting's own rule holds already)."""
        what = self.WHAT
        if self.warmup_steps > self.max_steps:
            raise ConfigError(
                f"{what}: warmup_steps ({self.warmup_steps}) exceeds max_steps ({self.max_steps}):"
                " lower it, or leave it unset to follow max_steps (warmup_ratio * max_steps)"
            )
        if self.min_lr > self.lr:
            raise ConfigError(
                f"{what}: min_lr ({self.min_lr}) exceeds lr ({self.lr}): lower it, or leave it "
                "unset to follow lr (lr / 10)"
            )
        if self.precision != "fp32" and self.engine != "fused":
            raise ConfigError(f"{what}: precision {self.precision} needs engine 'fused'")
        if self.zero_stage and self.deterministic_reduce:
            raise ConfigError(f"{what}: zero_stage 1 does not combine with deterministic_reduce")
        if self.zero_stage and self.precision != "fp32":
            raise ConfigError(f"{what}: zero_stage 1 needs precision 'fp32'")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Any:
        """Build from a table of settings (what :func:`read_settings` returns), checking every
        value against ``RULES`` first: one ConfigError lists every problem, each naming the
        file or override it came from, the dotted key, the value and what was expected."""
        where = values.where if isinstance(values, Settings) else cls.WHAT
        problems = cls.check_values(values)
        if problems:
            raise ConfigError(problems_message(problems, where))
        try:
            return cls(**values)
        except ConfigError as e:
            source = values.source if isinstance(values, Settings) else ""
            raise ConfigError(f"{source}: {e}" if source else str(e)) from None

    @classmethod
    def check_values(cls, values: Any) -> list[Problem]:
        """Every problem of ``values`` against the settings' rules (nested tables included)."""
        return check_table(values, cls.RULES)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_LOOP_RULES: dict[str, Rule] = {
    "out_dir": Rule("path", doc="checkpoints, metrics.jsonl"),
    "batch_size": Rule("int", 1, doc="sequences per micro-step, over all ranks (B)"),
    "seq_len": Rule("int", 1, doc="tokens per sequence (T), at most the model's block_size"),
    "grad_accum_steps": Rule("int", 1, doc="micro-steps per optimizer step"),
    "max_steps": Rule("int", 1, doc="optimizer steps of the run"),
    "lr": Rule("number", 0, doc="the peak learning rate"),
    "min_lr": Rule("number", 0, doc="the learning rate at the end of the cosine decay"),
    "warmup_steps": Rule("int", 0, doc="steps of linear warm-up, at most max_steps"),
    "warmup_ratio": Rule("number", 0, 1, doc="warmup_steps as a share of max_steps, when unset"),
    "weight_decay": Rule("number", 0, doc="AdamW's decoupled weight decay"),
    "beta1": Rule("number", 0, 1, open_high=True, doc="AdamW's first-moment decay"),
    "beta2": Rule("number", 0, 1, open_high=True, doc="AdamW's second-moment decay"),
    "eps": Rule("number", 0, doc="AdamW's epsilon"),
    "grad_clip": Rule("number", 0, doc="the gradient norm clipped to (0: no clipping)"),
    "eval_interval": Rule("int", 0, doc="steps between validation losses (0: none)"),
    "eval_batches": Rule("int", 1, doc="batches per validation loss"),
    "sample_interval": Rule("int", 0, doc="steps between samples (0: none)"),
    "sample_tokens": Rule("int", 0, 100_000, doc="tokens per sample (each costs a forward)"),
    "sample_prompt": Rule("str", doc="the text a sample continues"),
    "temperature": Rule("number", 0, doc="sampling temperature"),
    "top_k": Rule("int", 1, doc="sample from the k likeliest tokens"),
    "checkpoint_interval": Rule(
        "int", 0, doc="a checkpoint every N steps and at the last (0: none)"
    ),
    "keep_last": Rule("int", 1, doc="checkpoints kept"),
    "log_interval": Rule("int", 1, doc="steps between progress lines"),
    "diagnostics_interval": Rule(
        "int", 0, doc="steps between per-layer diagnostics records, and the last (0: none)"
    ),
    "seed": Rule("int", 0, doc="initialisation and data order"),
    "kernels": Rule("str", choices=tuple(sorted(backend.KERNELS)), doc="the layer kernels"),
    "engine": Rule("str", choices=("fused", "autograd"), doc="the hand-derived step or autograd"),
    "max_bad_steps": Rule("int", 0, doc="non-finite steps in a row before rolling back"),
    "precision": Rule("str", choices=tuple(p.value for p in Precision), doc="compute precision"),
    "recompute_mlp": Rule(
        "bool", doc="compute x2 and c_fc's outputs again in backward, not keep them"
    ),
    "loss_scale_init": Rule("number", 0, 3e38, open_low=True, doc="fp16: the first loss scale"),
    "loss_scale_growth_interval": Rule("int", 1, doc="fp16: clean steps before scale doubles"),
    "bucket_size_mb": Rule("number", 0, doc="MiB per gradient bucket (0: a layer, or one buffer)"),
    "deterministic_reduce": Rule("bool", doc="bitwise identical steps for any rank count"),
    "overlap_comm": Rule("bool", doc="gradients reduced during the backward"),
    "collective_timeout_s": Rule("number", 0, doc="the watchdog's timeout (0: no watchdog)"),
    "collective_timeout_abort": Rule("bool", doc="abort the job when the watchdog fires"),
    "zero_stage": Rule("int", 0, 1, doc="1: AdamW's moments sharded over the ranks"),
    "trace_steps": Rule("int", 0, doc="steps recorded in a Chrome trace (0: off)"),
}
LoopSettings.RULES = _LOOP_RULES
# the settings that follow others when unset (LoopSettings.resolve_schedule)
SCHEDULE_DEFAULTS = {"warmup_steps": "warmup_ratio * max_steps", "min_lr": "lr / 10"}


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
        self.gpt_config()  # the model's combinations, and its memory at this batch shape

    @classmethod
    def check_values(cls, values: Any) -> list[Problem]:
        """The loop's rules, and those of the [model] and [data] tables."""
        problems = check_table(values, cls.RULES)
        if not isinstance(values, Mapping):
            return problems
        if isinstance(values.get("model"), Mapping):
            problems += check_table(values["model"], MODEL_RULES, "model.")
        if isinstance(values.get("data"), Mapping):
            problems += check_table(values["data"], DATA_RULES, "data.", allow_unknown=True)
            problems += _mix_problems(values["data"])
        return problems

    def gpt_config(self, vocab_size: int | None = None) -> GPTConfig:
        """The model: a preset with the [model] table's fields on top (vocab from the data),
        refused with a ConfigError when training it at (batch_size, seq_len) would not fit in
        the machine's memory (``tinygradlm.model.training_bytes``), before anything is built."""
        fields = dict(self.model)
        preset = fields.pop("preset", None)
        if vocab_size is not None:
            fields["vocab_size"] = vocab_size
        try:
            base = GPTConfig.preset(preset) if preset else GPTConfig()
            config = GPTConfig.from_dict({**base.to_dict(), **fields})
        except ValueError as e:
            raise ConfigError(f"{self.WHAT}: [model]: {e}") from None
        nbytes = training_bytes(
            config,
            self.batch_size,
            self.seq_len,
            precision=self.precision,
            recompute_mlp=self.recompute_mlp,
        )
        shape = ", ".join(f"{k}={v}" for k, v in config.to_dict().items() if v is not None)
        check_fits(
            nbytes,
            f"{self.WHAT}: training the model ({shape}) at batch_size={self.batch_size}, "
            f"seq_len={self.seq_len}",
            ConfigError,
        )
        return config


MODEL_RULES: dict[str, Rule] = {
    "preset": Rule("str", choices=tuple(GPT_PRESETS), doc="the named shape the table starts from"),
    **GPT_RULES,
}
# data.mix is a table, a string or a list: parse_mix checks it (_mix_problems)
DATA_RULES: dict[str, Rule] = {"remix": Rule("bool", doc="a resumed run takes the new weights")}
TrainConfig.RULES = {
    **_LOOP_RULES,
    "data_dir": Rule("path", doc="the output of `tinygradlm prepare`"),
    "data": Rule("table", doc="[data]: mix and remix"),
    "model": Rule("table", doc="[model]: a preset and GPTConfig fields"),
}


def _mix_problems(data: Any) -> list[Problem]:
    """``data.mix`` (a table or a string: ``parse_mix``'s two forms), and no other key."""
    if not isinstance(data, Mapping):
        return []
    problems = [
        Problem(f"data.{key}", f"unknown key data.{key} (known: mix, remix)")
        for key in sorted(map(str, data))
        if key not in (*DATA_RULES, "mix")
    ]
    if "mix" in data:
        try:
            parse_mix(data["mix"])
        except ValueError as e:
            problems.append(Problem("data.mix", str(e)))  # parse_mix names data.mix
    return problems


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
    weight_decay: float = 0.0
    eval_interval: int = 25
    sample_interval: int = 0
    checkpoint_interval: int = 50

    init_from: str = ""  # the pretrained model (required; a run directory: its newest checkpoint)
    data: str = ""  # a JSON Lines file, or a directory with train.jsonl (and val.jsonl)
    val_data: str = ""  # JSON Lines for validation (default: val.jsonl beside train.jsonl)
    tokenizer: str = ""  # a tokenizer.txt, tokenizer.json or vocab.json (default: init_from's)
    prompt_key: str = "prompt"
    response_key: str = "response"
    # 0: no adapters, train the base model (less `freeze`); unset: the adapters of init_from,
    # if it has any, go on training (tinygradlm.train.finetune.keep_or_merge_adapters)
    lora_rank: int | None = None
    lora_alpha: float = 16.0
    lora_targets: list[str] = field(default_factory=lambda: list(TARGETS))
    freeze: list[str] = field(default_factory=list)  # parameter-name prefixes held fixed

    def check_combinations(self) -> None:
        super().check_combinations()
        what = self.WHAT
        for name in ("init_from", "data"):
            if not getattr(self, name):
                raise ConfigError(f"{what}: {name} is required (a path)")
        if self.lora_rank and self.freeze:
            raise ConfigError(
                f"{what}: freeze applies without LoRA; with lora_rank > 0 the whole base is "
                "frozen already"
            )
        if self.lora_rank:
            try:
                self.lora_config()
            except ValueError as e:
                raise ConfigError(f"{what}: {e}") from None

    def lora_config(self) -> LoRAConfig | None:
        """The adapters' config, or None without LoRA."""
        if not self.lora_rank:
            return None
        return LoRAConfig(self.lora_rank, self.lora_alpha, tuple(self.lora_targets))


FinetuneConfig.RULES = {
    **_LOOP_RULES,
    "init_from": Rule(
        "path",
        doc="the pretrained model (required): a checkpoint, a run directory (its newest "
        "checkpoint) or a Hugging Face GPT-2 directory",
    ),
    "data": Rule("path", doc="JSON Lines, or a directory with train.jsonl (required)"),
    "val_data": Rule("path", doc="JSON Lines for validation"),
    "tokenizer": Rule(
        "path", doc="a tokenizer.txt, tokenizer.json or vocab.json (default: the checkpoint's)"
    ),
    "prompt_key": Rule("str", doc="the prompt's key in each record"),
    "response_key": Rule("str", doc="the response's key in each record"),
    "lora_rank": Rule(
        "optional_int", 0, doc="0: no adapters, train the base model; unset: init_from's adapters"
    ),
    "lora_alpha": Rule("number", 0, open_low=True, doc="the adapters' scale is alpha / rank"),
    "lora_targets": Rule("str_list", doc="the linear layers that get adapters"),
    "freeze": Rule("str_list", doc="parameter-name prefixes held fixed"),
}


def load_config(source: str | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """A preset name or a TOML file, then ``key=value`` overrides (values in TOML syntax, dotted
    keys for tables: ``model.n_layer=6``; a bare word is a string). Without ``out_dir``, the run
    goes to ``runs/<config>`` (``tinygradlm.train.run_folder``)."""
    values = read_settings(source, overrides, PRESETS)
    if source and "out_dir" not in values:
        values["out_dir"] = default_out_dir(source)
    apply_environment_overrides(values)
    return TrainConfig.from_dict(values)


def load_finetune_config(
    source: str | None = None, overrides: Sequence[str] = (), **settings: Any
) -> FinetuneConfig:
    """A TOML file (or none), then ``key=value`` overrides as for ``tinygradlm train``, then
    ``settings`` (the command line's ``--from`` and ``--data``) on top. Without ``out_dir``, the
    run goes to ``runs/<TOML file's stem>``, or ``runs/finetune`` without a file."""
    values = read_settings(source, overrides)
    if source and "out_dir" not in values:
        values["out_dir"] = default_out_dir(source)
    for key, value in settings.items():
        if value is not None:
            values[key] = value
            values.origins[key] = _COMMAND_LINE_FLAGS.get(key, key)
    apply_environment_overrides(values)
    return FinetuneConfig.from_dict(values)


_COMMAND_LINE_FLAGS = {"init_from": "--from", "data": "--data"}  # tinygradlm finetune's


def read_settings(
    source: str | Path | None,
    overrides: Sequence[str] = (),
    presets: Mapping[str, Any] | None = None,
) -> Settings:
    """The settings of a preset (a key of ``presets``) or a TOML file, with ``key=value``
    overrides on top: a dict that remembers where each value came from
    (:class:`tinygradlm.schema.Settings`), for the error messages of the config's
    ``from_dict``. An unreadable or invalid file, or an override that is not ``KEY=VALUE``
    (KEY dotted: ``model.n_layer``) into tables, is a ConfigError."""
    values = Settings(source=f"config {source}" if source else "settings")
    if source:
        if presets and source in presets:
            values.update(_deep_copy(presets[source]))
            values.source = f"preset {source}"
        else:
            values.update(read_toml(source, ConfigError))
    for item in overrides:
        _apply_override(values, item)
    return values


# scripts and CI shorten every train and finetune run with it (max_steps=4 eval_interval=2)
OVERRIDES_VARIABLE = "TINYGRADLM_OVERRIDES"


def environment_overrides() -> list[str]:
    """The ``KEY=VALUE`` words of the ``TINYGRADLM_OVERRIDES`` environment variable, split as a
    shell splits them (quote a value with spaces: ``'data.mix={a = 1, b = 1}'``); none when it
    is unset or empty. An unbalanced quote is a ConfigError naming the variable."""
    text = os.environ.get(OVERRIDES_VARIABLE, "")
    try:
        return shlex.split(text)
    except ValueError as e:
        raise ConfigError(f"{OVERRIDES_VARIABLE}={text[:80]!r}: {e}") from None


def apply_environment_overrides(values: Settings) -> None:
    """``TINYGRADLM_OVERRIDES``'s words on top of everything else (the config, the command
    line's overrides and flags), so that one variable shortens every documented command
    (the docs' tests run them with ``max_steps=4``). Each key it set names the variable in
    error messages (``TINYGRADLM_OVERRIDES max_steps=0: …``), like a command-line override."""
    for item in environment_overrides():
        _apply_override(values, item, OVERRIDES_VARIABLE)


def _apply_override(values: Settings, item: str, origin: str = "override") -> None:
    """``KEY=VALUE`` into ``values``: the value in TOML syntax (a bare word is a string)."""
    where = f"{origin} {item[:80]}"
    key, sep, raw = item.partition("=")
    names = [name.strip() for name in key.split(".")]
    if not sep or not all(names):
        raise ConfigError(f"{where}: not KEY=VALUE (KEY a name or a dotted name: model.n_layer)")
    try:
        value = parse_toml(f"v = {raw}", where, ConfigError)["v"]
    except ConfigError:
        value = raw  # a bare word (or no TOML value at all): a string
    target: Any = values
    for depth, table in enumerate(names[:-1]):
        target = target.setdefault(table, {})
        if not isinstance(target, dict):
            dotted = ".".join(names[: depth + 1])
            raise ConfigError(f"{where}: {dotted} is not a table")
    target[names[-1]] = value
    values.origins[".".join(names)] = where


def _deep_copy(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in d.items()}
