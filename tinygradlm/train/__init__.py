"""Training: one run for pretraining and fine-tuning, a file per job.

    config.py    the loop's settings (once), TrainConfig, FinetuneConfig, presets, the loader
    setup.py     a run's parts by composition: model, optimizer, loaders, tokenizer, mask
    finetune.py  what fine-tuning adds: SFT files, what trains (LoRA / freeze), export(_adapters)
    step.py      one optimizer step, one path (the gradient sync is tinygradlm.dist.sync)
    loop.py      the Trainer: the loop, periodic events, checkpoints, resume and rollback
    guard.py     the divergence guard: skip non-finite steps, roll back after N in a row
    evaluate.py  checkpoint evaluation (tinygradlm eval) and the validation loss
    hooks.py     the no-op hook points a test overrides to inject faults

See docs/training.md and docs/finetuning.md.
"""

from .config import (
    PRESETS,
    FinetuneConfig,
    LoopSettings,
    TrainConfig,
    load_config,
    load_finetune_config,
    read_settings,
)
from .evaluate import evaluate_checkpoint, evaluate_loss
from .finetune import export, export_adapters, trainable_mask
from .guard import Action, DivergenceGuard
from .hooks import RunHooks
from .loop import Trainer, finetune, train

__all__ = [
    "PRESETS",
    "Action",
    "DivergenceGuard",
    "FinetuneConfig",
    "LoopSettings",
    "RunHooks",
    "TrainConfig",
    "Trainer",
    "evaluate_checkpoint",
    "evaluate_loss",
    "export",
    "export_adapters",
    "finetune",
    "load_config",
    "load_finetune_config",
    "read_settings",
    "train",
    "trainable_mask",
]
