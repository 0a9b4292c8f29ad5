"""Fine-tuning: a pretrained checkpoint, prompt/response data, a fresh optimizer and schedule.

``tinygradlm finetune --from CKPT --data DATA`` runs the training loop of ``tinygradlm.train``
(the same step, clipping, divergence guard, validation, checkpoints and exact resume) with three
things changed:

- **the model** comes from the checkpoint ``init_from`` (its weights, config and tokenizer), not
  from an initialisation;
- **the data** is prompt/response JSON Lines (``tinygradlm.data.sft``), the loss on the response
  tokens only;
- **what trains**: either LoRA adapters (``lora_rank`` > 0, ``tinygradlm.lora``), with AdamW on
  the adapters' own flat buffer and the base untouched; or the base itself, less the parameters
  ``freeze`` names (prefixes such as ``"wte"`` or ``"h.0"``), whose gradients are zeroed before
  clipping and which get no weight decay, so AdamW leaves them bit-for-bit unchanged.

The optimizer, the learning-rate schedule and the step count start fresh. Checkpoints go to the
run's own ``out_dir``, with the adapters in ``adapters.safetensors``; ``export`` folds them into
the base weights and writes a plain model a ``GPT`` (or ``transformers``) loads. See
docs/finetuning.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import load_checkpoint, restore, save_model
from .data.sft import SFTLoader, load_sft
from .errors import DataError
from .lora import TARGETS, LoRAConfig, merged
from .model import GPT
from .optim import AdamW
from .tokenizer import Tokenizer
from .train import Trainer, check_loop_settings, checkpoint_tokenizer_file, read_settings

__all__ = ["FinetuneConfig", "FinetuneTrainer", "export", "finetune", "load_finetune_config"]


@dataclass
class FinetuneConfig:
    """Every setting of a fine-tuning run, with its default. The loop's settings mean what they
    mean in ``TrainConfig`` (docs/training.md); the defaults suit a short run from a trained
    model: a lower learning rate, no weight decay, fewer steps."""

    init_from: str = ""  # the pretrained checkpoint directory (required)
    data: str = ""  # a JSON Lines file, or a directory with train.jsonl (and val.jsonl)
    val_data: str = ""  # JSON Lines for validation (default: val.jsonl beside train.jsonl)
    out_dir: str = "runs/finetune"
    tokenizer: str = ""  # a tokenizer.txt (default: the one in init_from)
    prompt_key: str = "prompt"
    response_key: str = "response"
    lora_rank: int = 0  # 0: no adapters, train the base model (less `freeze`)
    lora_alpha: float = 16.0
    lora_targets: list[str] = field(default_factory=lambda: list(TARGETS))
    freeze: list[str] = field(default_factory=list)  # parameter-name prefixes held fixed
    batch_size: int = 8
    seq_len: int = 64
    grad_accum_steps: int = 1
    max_steps: int = 100
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 10
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    eval_interval: int = 25
    eval_batches: int = 8
    sample_interval: int = 0
    sample_tokens: int = 64
    sample_prompt: str = ""
    temperature: float = 1.0
    top_k: int = 40
    checkpoint_interval: int = 50
    keep_last: int = 3
    log_interval: int = 10
    seed: int = 0
    kernels: str = "numba"
    engine: str = "fused"
    max_bad_steps: int = 5
    precision: str = "fp32"  # "fp32", "bf16" or "fp16" (emulated: tinygradlm.precision)
    loss_scale_init: float = 65536.0  # fp16 only
    loss_scale_growth_interval: int = 2000  # fp16 only
    bucket_size_mb: float = 0  # data parallel: as in TrainConfig
    deterministic_reduce: bool = False

    def __post_init__(self) -> None:
        what = "finetune config"
        check_loop_settings(self, what)
        for name in ("init_from", "data"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{what}: {name} is required (a path)")
        rank = self.lora_rank
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
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

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FinetuneConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"finetune config: unknown key(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_finetune_config(
    source: str | None = None, overrides: Sequence[str] = (), **settings: Any
) -> FinetuneConfig:
    """A TOML file (or none), then ``key=value`` overrides as for ``tinygradlm train``, then
    ``settings`` (the command line's ``--from`` and ``--data``) on top."""
    values = read_settings(source, overrides)
    values.update({k: v for k, v in settings.items() if v is not None})
    return FinetuneConfig.from_dict(values)


def trainable_mask(model: GPT, freeze: Sequence[str]) -> np.ndarray:
    """1 on the parameters that train, 0 on those a prefix in ``freeze`` names: ``"wte"``,
    ``"h.0"``, ``"h.1.attn"``, ``"ln_f.bias"`` (whole dotted components: ``"h.1"`` is not
    ``"h.10"``). ``wte`` is also the LM head (tied). A prefix that names nothing is an error."""
    mask = np.ones(model.flat_params.size, dtype=model.dtype)
    views = model.buffer.views(mask)
    for prefix in freeze:
        names = [n for n in views if n == prefix or n.startswith(prefix + ".")]
        if not names:
            raise ValueError(f"freeze: {prefix!r} names no parameter (e.g. 'wte', 'h.0', 'ln_f')")
        for name in names:
            views[name][...] = 0
    if not mask.any():
        raise ValueError("freeze: every parameter is frozen: nothing would train")
    return mask


class FinetuneTrainer(Trainer):
    """The training loop of :class:`~tinygradlm.train.Trainer` on a pretrained model and SFT
    data: ``train()``, ``resume()``, ``save()``, ``evaluate()`` as there."""

    def __init__(
        self,
        config: FinetuneConfig,
        *,
        rank: int = 0,
        world_size: int = 1,
        log: Callable[[str], None] = print,
        dist: Any = None,
    ) -> None:
        # not Trainer.__init__: the model comes from a checkpoint and the data from JSON Lines
        self._init_run(config, rank, world_size, log, dist)
        rank, world_size = self.rank, self.world_size  # dist's, when given

        base = load_checkpoint(config.init_from)
        tokenizer = config.tokenizer
        self.tokenizer_path = Path(tokenizer) if tokenizer else checkpoint_tokenizer_file(base)
        self.tokenizer = Tokenizer.load(self.tokenizer_path)
        dtype = next(iter(base.model_state.values())).dtype
        self.model = GPT(base.config, dtype=dtype, precision=config.precision)
        restore(self.model, None, base)  # a LoRA checkpoint arrives merged: its function
        if config.seq_len > self.model.config.block_size:
            raise ValueError(
                f"finetune config: seq_len {config.seq_len} exceeds the model's block_size "
                f"{self.model.config.block_size}"
            )

        hyper = {
            "lr": config.lr,
            "betas": (config.beta1, config.beta2),
            "eps": config.eps,
            "weight_decay": config.weight_decay,
        }
        lora = config.lora_config()
        if lora is not None:
            adapters = self.model.add_lora(lora, seed=config.seed)
            self.optimizer = AdamW(
                adapters.flat_params, adapters.flat_grads, decay_mask=adapters.decay_mask(), **hyper
            )
            self.grad_mask = None
            what = (
                f"LoRA adapters (rank {lora.rank}, alpha {lora.alpha:g}, on "
                f"{', '.join(lora.targets)}): {adapters.num_params:,} parameters, the base's "
                f"{self.model.num_params:,} frozen"
            )
        else:
            mask = trainable_mask(self.model, config.freeze)
            decay = self.model.decay_mask() * mask  # frozen: no weight decay either
            self.optimizer = AdamW(
                self.model.flat_params, self.model.flat_grads, decay_mask=decay, **hyper
            )
            self.grad_mask = mask if config.freeze else None
            frozen = sum(
                value.size
                for name, value in self.model.state_dict().items()
                if any(name == p or name.startswith(p + ".") for p in config.freeze)
            )
            what = f"the base model: {self.model.num_params - frozen:,} parameters"
            if config.freeze:
                what += f" ({frozen:,} frozen: {', '.join(config.freeze)})"

        train_files, val_files = _sft_files(config)
        encoding = {
            "tokenizer": self.tokenizer,
            "seq_len": config.seq_len,
            "prompt_key": config.prompt_key,
            "response_key": config.response_key,
        }
        train_data = load_sft(train_files, **encoding)
        self.log(f"fine-tuning {what}")
        self.log(f"train: {train_data.summary()}")
        self.train_loader: Any = SFTLoader(
            train_data,
            batch_size=config.batch_size,
            rank=rank,
            world_size=world_size,
            seed=config.seed,
        )
        self.val_loader: Any = None
        self.val_sources, self.val_losses = {}, {}  # (a pretraining mixture's; none here)
        if val_files:
            val_data = load_sft(val_files, **encoding)
            self.log(f"val: {val_data.summary()}")
            self.val_loader = SFTLoader(
                val_data,
                batch_size=config.batch_size,
                rank=rank,
                world_size=world_size,
                shuffle=False,
                drop_last=False,
            )
        self._init_loop_state()

    def sample(self) -> str:
        # the KV-cache sampler reads the base weights directly: fold the adapters in meanwhile
        with merged(self.model):
            return super().sample()


def _sft_files(config: FinetuneConfig) -> tuple[list[Path], list[Path]]:
    """The training and validation JSON Lines files the config names."""
    data = Path(config.data)
    if data.is_dir():
        train = data / "train.jsonl"
        if not train.is_file():
            raise DataError(f"{data}: no train.jsonl in this directory")
        val = [data / "val.jsonl"] if (data / "val.jsonl").is_file() else []
    elif data.is_file():
        train, val = data, []
    else:
        raise DataError(f"{data}: no such file or directory")
    if config.val_data:
        val = [Path(config.val_data)]
    return [train], val


def finetune(config: FinetuneConfig, *, resume: bool = True) -> dict[str, Any]:
    """Run (or continue) a fine-tuning run; returns the last step's metrics."""
    trainer = FinetuneTrainer(config)
    if resume:
        trainer.resume()
    return trainer.train()


def export(ckpt_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the model of checkpoint ``ckpt_dir`` as a plain model-only checkpoint at
    ``out_dir``, LoRA adapters (if any) merged into the base weights (W + scale·A·B): HF GPT-2
    names and layouts, loadable as a ``GPT`` (``load_checkpoint`` + ``restore``), by ``tinygradlm
    sample`` / ``eval`` / ``finetune --from``, and by ``transformers``."""
    ckpt = load_checkpoint(ckpt_dir)
    dtype = next(iter(ckpt.model_state.values())).dtype
    model = GPT(ckpt.config, dtype=dtype)
    restore(model, None, ckpt)  # merges the adapters
    return save_model(out_dir, model, step=ckpt.step, tokenizer_files=ckpt.tokenizer_files)
