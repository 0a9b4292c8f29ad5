"""Checkpoints: a directory of safetensors and JSON files, written atomically, read without pickle.

    run_dir/ckpt_00001000/
      model.safetensors      the parameters, HF GPT-2 names (wte.weight, h.0.attn.c_attn.weight, …);
                             tinygradlm_model.safetensors for a model GPT-2 cannot compute
                             (post-LN, no layer norms, no residual: GPTConfig.gpt2_layout)
      config.json            HF GPT2Config, plus our GPTConfig under the key "tinygradlm"
      optimizer.safetensors  AdamW's m and v (flat, like the parameters) and step
      trainer.json           the trainer's state: step, RNG states, loader position, run config
      adapter_config.json    LoRA adapters, when the model has them (tinygradlm.lora), as PEFT
      adapter_model.safetensors  writes them (peft.py); AdamW's m and v are then the
                             adapters', the base being frozen
      <tokenizer files>      copied as given
      manifest.json          every other file's size and SHA-256, written last

:func:`save_model` writes a model-only directory (model.safetensors, config.json, tokenizer
files, manifest.json with ``"contents": "model"``): what ``tinygradlm export`` writes, which
loads as a GPT and starts a fine-tuning run but cannot resume one. :func:`load_checkpoint` also
reads a Hugging Face GPT-2 directory (``save_pretrained``'s config.json and safetensors) as a
model-only checkpoint.

A checkpoint is built in a temporary directory beside its final name and renamed into place: a
reader sees a complete checkpoint or none. :func:`load_checkpoint` checks every layer of it and
says which file is wrong; nothing is ever unpickled. The layout, and how to open a checkpoint in
``transformers``, are in docs/checkpoints.md.

    layout.py   file names, the manifest's format, config.json both ways, ``latest_checkpoint``
    save.py     ``save_checkpoint``, ``save_model``: atomic, sealed by the manifest
    load.py     ``load_checkpoint``, ``restore``, ``checkpoint_in`` (a run directory's newest)
    hf.py       a Hugging Face GPT-2 directory read as a model-only checkpoint
    as_gpt.py   ``load_model``, ``model_from_checkpoint``: a checkpoint as a GPT
    peft.py     LoRA adapters in PEFT's files: written, checked, and a PEFT adapter directory
                read as its base model with the adapters attached
"""

from ..errors import CheckpointError
from .as_gpt import load_model, model_from_checkpoint
from .layout import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_MODEL_FILE,
    ADAPTERS_FILE,
    CONFIG_FILE,
    FORMAT,
    MANIFEST_FILE,
    MODEL_FILE,
    MODEL_FILES,
    MODEL_ONLY_FILES,
    OPTIMIZER_FILE,
    REQUIRED_FILES,
    TRAINER_FILE,
    VERSION,
    Checkpoint,
    hf_config,
    latest_checkpoint,
    model_file,
)
from .load import load_checkpoint, restore
from .save import save_checkpoint, save_model

__all__ = [
    "ADAPTERS_FILE",
    "ADAPTER_CONFIG_FILE",
    "ADAPTER_MODEL_FILE",
    "CONFIG_FILE",
    "FORMAT",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "MODEL_FILES",
    "MODEL_ONLY_FILES",
    "OPTIMIZER_FILE",
    "REQUIRED_FILES",
    "TRAINER_FILE",
    "VERSION",
    "Checkpoint",
    "CheckpointError",
    "hf_config",
    "latest_checkpoint",
    "load_checkpoint",
    "load_model",
    "model_file",
    "model_from_checkpoint",
    "restore",
    "save_checkpoint",
    "save_model",
]
