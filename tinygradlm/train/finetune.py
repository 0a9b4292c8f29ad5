"""What fine-tuning adds to a run: prompt/response data files, the mask of what trains (LoRA
adapters, or the base less ``freeze``), and ``export``, the model with its adapters merged in.

``tinygradlm finetune --from CKPT --data DATA`` is the training loop of ``tinygradlm.train``
(the same step, clipping, divergence guard, validation, checkpoints, exact resume, data
parallelism, ZeRO-1, tracing and watchdog) with three things changed, all chosen when the run
is set up (``tinygradlm.train.setup``):

- **the model** comes from the checkpoint ``init_from`` (its weights, config and tokenizer), not
  from an initialisation;
- **the data** is prompt/response JSON Lines (``tinygradlm.data.sft``), the loss on the response
  tokens only;
- **what trains**: either LoRA adapters (``lora_rank`` > 0, ``tinygradlm.lora``), with AdamW on
  the adapters' own flat buffer and the base untouched; or the base itself, less the parameters
  ``freeze`` names (prefixes such as ``"wte"`` or ``"h.0"``), whose gradients are zeroed before
  clipping and which get no weight decay, so AdamW leaves them bit-for-bit unchanged.

The optimizer, the learning-rate schedule and the step count start fresh. A checkpoint with
LoRA adapters as ``init_from`` (or a PEFT adapter directory) has them go on training when the
run's LoRA settings are theirs, and merged into the base otherwise
(:func:`keep_or_merge_adapters`). Checkpoints go to the run's own ``out_dir``, with the adapters
as PEFT writes them (``tinygradlm.checkpoint.peft``); :func:`export` folds them into the base
weights and writes a plain model a ``GPT`` (or ``transformers``) loads, :func:`export_adapters`
writes them alone, for PEFT. See docs/finetuning.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint, save_model
from ..checkpoint.peft import save_adapters
from ..errors import CheckpointError, DataError
from ..lora import LoRAAdapters
from ..model import GPT
from ..optim import AdamW
from ..params import ranges_of_mask
from .config import FinetuneConfig


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


def trainable_parameters(
    model: GPT, config: FinetuneConfig
) -> tuple[AdamW, np.ndarray | None, str]:
    """The optimizer over what trains, the gradient mask (0 on frozen parameters; None when
    nothing is frozen) and a line that says what trains: the adapters ``model`` has (those of
    its checkpoint, kept by :func:`keep_or_merge_adapters`), new ones if the config asks for
    them, or the base less ``freeze``."""
    hyper = {
        "lr": config.lr,
        "betas": (config.beta1, config.beta2),
        "eps": config.eps,
        "weight_decay": config.weight_decay,
    }
    if model.lora is not None or config.lora_config() is not None:
        adapters = model.lora or model.add_lora(config.lora_config(), seed=config.seed)
        lora = adapters.config
        optimizer = AdamW(
            adapters.flat_params, adapters.flat_grads, decay_ranges=adapters.decay_ranges(), **hyper
        )
        what = (
            f"LoRA adapters (rank {lora.rank}, alpha {lora.alpha:g}, on "
            f"{', '.join(lora.targets)}): {adapters.num_params:,} parameters, the base's "
            f"{model.num_params:,} frozen"
        )
        return optimizer, None, what
    mask = trainable_mask(model, config.freeze)
    decay = model.buffer.mask(lambda name, shape: len(shape) == 2, dtype=bool)
    decay &= mask != 0  # frozen: no weight decay either
    optimizer = AdamW(
        model.flat_params, model.flat_grads, decay_ranges=ranges_of_mask(decay), **hyper
    )
    frozen = sum(
        value.size
        for name, value in model.state_dict().items()
        if any(name == p or name.startswith(p + ".") for p in config.freeze)
    )
    what = f"the base model: {model.num_params - frozen:,} parameters"
    if config.freeze:
        what += f" ({frozen:,} frozen: {', '.join(config.freeze)})"
    return optimizer, (mask if config.freeze else None), what


def keep_or_merge_adapters(
    model: GPT, checkpoint: Checkpoint, config: FinetuneConfig
) -> tuple[str | None, str | None]:
    """What a run does with the LoRA adapters of the checkpoint it starts from (``model``, as
    ``model_from_checkpoint`` built it): a line that says so (None without adapters), and the
    directory holding the base weights the run's adapters apply to (PEFT's
    ``base_model_name_or_path``; None when merged adapters are part of the base).

    When the run's LoRA settings are the adapters' own (or ``lora_rank`` is unset and nothing
    is frozen), those adapters go on training on their frozen base, unmerged, so they still
    apply to the original base. Otherwise they are merged into the base weights, which then
    train as the config says (new adapters, or the base itself).
    """
    path = Path(checkpoint.path)
    own = str(path.resolve())  # a checkpoint's model.safetensors holds its adapters' base
    if model.lora is None:
        return None, own
    have = model.lora.config
    describe = f"rank {have.rank}, alpha {have.alpha:g}, on {', '.join(have.targets)}"
    if (config.lora_rank is None and not config.freeze) or config.lora_config() == have:
        line = f"{path}: continuing its LoRA adapters ({describe}) on their base, unmerged"
        return line, checkpoint.base_model or own
    model.merge_lora()
    line = (
        f"{path}: its LoRA adapters ({describe}) merged into the base weights, as the run's "
        "LoRA settings differ"
    )
    return line, None


def record_lora_settings(config: FinetuneConfig, model: GPT) -> None:
    """Resolve an unset ``lora_rank`` in ``config`` to what the run trains, so that its
    checkpoints record it (and a resume compares it, ``train.run_folder``): the continued
    adapters' rank, alpha and targets, or 0 when the base trains."""
    if config.lora_rank is not None:
        return
    if model.lora is None:
        config.lora_rank = 0
        return
    have = model.lora.config
    config.lora_rank, config.lora_alpha, config.lora_targets = (
        have.rank,
        have.alpha,
        list(have.targets),
    )


def sft_files(config: FinetuneConfig) -> tuple[list[Path], list[Path]]:
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


def export(ckpt_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the model of checkpoint ``ckpt_dir`` as a plain model-only checkpoint at
    ``out_dir``, LoRA adapters (if any) merged into the base weights (W + scale·A·B): HF GPT-2
    names and layouts, loadable as a ``GPT`` (``load_checkpoint`` + ``restore``), by ``tinygradlm
    sample`` / ``eval`` / ``finetune --from``, and by ``transformers``. A model HF GPT-2 does
    not compute (``GPTConfig.gpt2_layout`` false) is refused: its checkpoint already is the
    model-only form there is."""
    ckpt = load_checkpoint(ckpt_dir)
    if not ckpt.config.gpt2_layout:
        raise CheckpointError(
            f"{ckpt.path}: cannot export a model with {ckpt.config.variant} as a Hugging Face "
            "GPT-2 directory: HF GPT-2's blocks are pre-LN (norm='pre') with residual "
            "connections (residual=True), and transformers would load this model's weights "
            "into them as a different model"
        )
    model = model_from_checkpoint(ckpt)
    if model.lora is not None:
        model.merge_lora()
    return save_model(out_dir, model, step=ckpt.step, tokenizer_files=ckpt.tokenizer_files)


def export_adapters(ckpt_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the LoRA adapters of checkpoint ``ckpt_dir`` alone as a PEFT adapter directory at
    ``out_dir`` (adapter_config.json, adapter_model.safetensors): a few megabytes to share,
    which ``PeftModel.from_pretrained`` opens on the base model and ``finetune --from`` (or
    ``load_checkpoint``) reads back. ``base_model_name_or_path`` names the base the adapters
    were trained on: the directory the run started from, or the checkpoint itself when its
    base holds merged adapters (no other directory holds those weights)."""
    ckpt = load_checkpoint(ckpt_dir)
    if ckpt.lora is None:
        raise CheckpointError(
            f"{ckpt.path}: no LoRA adapters to export (export without --adapters writes the model)"
        )
    dtype = next(iter(ckpt.model_state.values())).dtype
    lora = LoRAAdapters(ckpt.config, ckpt.lora, dtype=dtype)
    lora.load_state_dict(ckpt.adapter_state)
    base_model = ckpt.base_model or str(Path(ckpt.path).resolve())
    return save_adapters(
        out_dir, lora, base_model=base_model, base_state=ckpt.model_state, step=ckpt.step
    )
