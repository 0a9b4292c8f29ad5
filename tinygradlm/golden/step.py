"""The golden file of a whole training step: a small GPT with GPT-2's structure, one batch, the
loss, every parameter's gradient and the parameters after one AdamW step.

The model has everything that makes GPT-2's step hard to get exactly right: a vocabulary padded
to a round size (the padding rows get no gradient), the LM head tied to the token embedding (its
gradient is the sum of the embedding's and the head's), two blocks with pre-norm residuals, two
heads, an ignored target, and weight decay on the 2-D weights only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..model import GPT, GPTConfig
from ..optim import AdamW
from .layers import tolerance

CONFIG = GPTConfig(
    vocab_size=67, padded_vocab_size=72, block_size=16, n_layer=2, n_head=2, n_embd=16
)
B, T = 2, 13
SEED = 0
IGNORE_INDEX = -100  # GPT.forward_backward's default
ADAMW = {"lr": 1e-2, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.1}


def batch() -> tuple[np.ndarray, np.ndarray]:
    """The step's (idx, targets), both (B, T) int64; one target is ignored."""
    rng = np.random.default_rng(SEED)
    tokens = rng.integers(0, CONFIG.vocab_size, size=(B, T + 1))
    idx, targets = tokens[:, :-1].copy(), tokens[:, 1:].copy()
    targets[1, 3] = IGNORE_INDEX
    return idx, targets


def run_step(
    params: dict[str, np.ndarray], dtype: Any, engine: str = "fused"
) -> dict[str, np.ndarray]:
    """The step from ``params`` in ``dtype``: logits, loss, ``grad.<name>`` and ``updated.<name>``
    for every parameter (HF GPT-2 names)."""
    model = GPT(CONFIG, seed=SEED, dtype=dtype)
    model.load_state_dict({name: p.astype(dtype) for name, p in params.items()})
    idx, targets = batch()
    results = {"logits": model.logits(idx)}
    loss, grads = model.forward_backward(idx, targets, engine=engine, ignore_index=IGNORE_INDEX)
    results["loss"] = np.array(loss, dtype=dtype)  # 0-d, shape [] in the file
    results.update({f"grad.{name}": g.copy() for name, g in grads.items()})
    AdamW.for_model(model, **ADAMW).step()
    results.update({f"updated.{name}": p.copy() for name, p in model.state_dict().items()})
    return results


def training_step_file(dtype: str) -> dict[str, Any]:
    """The training step in ``dtype`` as ``{"name", "tensors", "entry"}``.

    float32: expected values from the same step in float64 on the same (float32) parameters, the
    measured error that of the float32 step. float64: expected values from the hand-derived
    layers, the measured error their distance from the autograd witness's step.
    """
    params = {n: p.copy() for n, p in GPT(CONFIG, seed=SEED, dtype=dtype).state_dict().items()}
    if dtype == "float32":
        expected, other = run_step(params, np.float64), run_step(params, np.float32)
        measured = "the float32 step's distance from the same step in float64"
    else:
        expected, other = run_step(params, np.float64), run_step(params, np.float64, "autograd")
        measured = "the distance between two float64 implementations: hand-derived and autograd"
    idx, targets = batch()
    tensors = {"idx": idx, "targets": targets}
    tensors.update({f"param.{name}": p for name, p in params.items()})
    outputs = {}
    for name, value in expected.items():
        error = float(np.max(np.abs(other[name].astype(np.float64) - value), initial=0.0))
        tensors[name] = value.astype(dtype)
        outputs[name] = tolerance(tensors[name], error, dtype)
    decayed = [name for name, p in params.items() if p.ndim == 2]
    entry = {
        "file": f"train_step_{dtype}.safetensors",
        "layer": "train_step",
        "dtype": dtype,
        "config": CONFIG.to_dict(),
        "call": (
            "logits = GPT(param.*)(idx) (B, T, V); loss = mean cross-entropy of targets "
            f"(ignore_index {IGNORE_INDEX}); grad.* = d loss / d param.* (the LM head is tied "
            "to wte.weight: its gradient is in grad.wte.weight); updated.* = param.* after one "
            "AdamW step (step 1) on grad.*, no gradient clipping"
        ),
        "arguments": {**ADAMW, "betas": list(ADAMW["betas"]), "decayed": decayed},
        "inputs": {
            name: {"shape": list(t.shape), "dtype": t.dtype.name}
            for name, t in tensors.items()
            if name in ("idx", "targets") or name.startswith("param.")
        },
        "measured_error": measured,
        "outputs": outputs,
    }
    return {"name": entry["file"], "tensors": tensors, "entry": entry}
