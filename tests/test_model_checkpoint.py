"""tinygradlm.checkpoint.load_model: a checkpoint directory back to a GPT, weights exact, LoRA
adapters attached (not merged) when it has them, at the precision asked for."""

import numpy as np
import pytest

from tinygradlm.checkpoint import (
    load_checkpoint,
    load_model,
    model_from_checkpoint,
    save_checkpoint,
    save_model,
)
from tinygradlm.lora import LoRAConfig
from tinygradlm.model import GPT, GPTConfig
from tinygradlm.optim import AdamW

CONFIG = GPTConfig(vocab_size=50, block_size=8, n_layer=2, n_head=2, n_embd=8)
IDX = np.array([[1, 2, 3, 4]])


def test_load_model_restores_the_weights_of_a_training_checkpoint(tmp_path):
    model = GPT(CONFIG, seed=3)
    path = save_checkpoint(tmp_path, 7, model, AdamW.for_model(model, lr=1e-3), {})
    loaded = load_model(path)
    assert loaded.config == CONFIG and loaded.dtype == np.float32 and loaded.lora is None
    np.testing.assert_array_equal(loaded.flat_params, model.flat_params)
    assert loaded.precision.precision == "fp32"


def test_load_model_attaches_the_adapters_unmerged(tmp_path):
    model = GPT(CONFIG, seed=3)
    model.add_lora(LoRAConfig(rank=2, alpha=4.0), seed=1)
    model.lora.flat_params[...] = np.random.default_rng(0).normal(0, 0.3, model.lora.num_params)
    optimizer = AdamW(model.lora.flat_params, model.lora.flat_grads, lr=1e-3)
    path = save_checkpoint(tmp_path, 1, model, optimizer, {})
    loaded = load_model(path, precision="bf16")
    assert loaded.lora is not None and loaded.lora.config == model.lora.config
    np.testing.assert_array_equal(loaded.flat_params, model.flat_params)  # the base, as it was
    np.testing.assert_array_equal(loaded.lora.flat_params, model.lora.flat_params)
    assert loaded.precision.precision == "bf16"
    model.set_precision("bf16")
    np.testing.assert_array_equal(loaded.logits(IDX), model.logits(IDX))


def test_model_from_checkpoint_takes_what_load_checkpoint_read(tmp_path):
    model = GPT(CONFIG, seed=3, dtype=np.float64)
    path = save_model(tmp_path / "export", model)
    loaded = model_from_checkpoint(load_checkpoint(path))
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded.logits(IDX), model.logits(IDX))
    with pytest.raises(ValueError, match="needs a float32 model"):
        model_from_checkpoint(load_checkpoint(path), precision="bf16")
