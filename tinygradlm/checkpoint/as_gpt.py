"""A loaded checkpoint as a GPT: :func:`load_model` and :func:`model_from_checkpoint`.

Apart from load.py, which reads checkpoints and builds no model, so that ``GPT.from_pretrained``
(in tinygradlm.model) can read one without an import cycle.
"""

from __future__ import annotations

import os

from ..model import GPT
from .layout import Checkpoint
from .load import load_checkpoint


def load_model(path: str | os.PathLike[str], precision: str = "fp32") -> GPT:
    """The GPT saved in the checkpoint directory ``path`` (a training checkpoint, a model-only
    one or a Hugging Face GPT-2 directory), in the checkpoint's config and dtype, computing at
    ``precision``, with its LoRA adapters attached (unmerged) when it has them. See
    :func:`model_from_checkpoint`; ``GPT.from_pretrained`` also takes a run directory."""
    return model_from_checkpoint(load_checkpoint(path), precision)


def model_from_checkpoint(checkpoint: Checkpoint, precision: str = "fp32") -> GPT:
    """A new GPT holding what :func:`load_checkpoint` read: the checkpoint's config, dtype and
    weights, and its LoRA adapters attached when it has them (``model.lora``; fold them in with
    ``model.merge_lora()``), computing at ``precision`` (``GPT.from_checkpoint``)."""
    return GPT.from_checkpoint(checkpoint, precision)
