"""Fuzzing the checkpoint reader: a checkpoint directory with any one file mutated (its bytes,
or for the JSON files any value at any path) loads to a checkpoint that builds its model, or is
refused with a CheckpointError, within the time and memory bounds, and no file changes. Half of
the examples rewrite manifest.json to agree with the mutated file, so that the layers behind
the hashes (JSON, config, safetensors headers, tensors) are reached too.
"""

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.numpy
from fuzz_support import mutated_bytes, mutated_json, read_within_bounds, snapshot
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from tinygradlm.errors import CheckpointError
from tinygradlm.lora import LoRAConfig
from tinygradlm.model import GPT, GPTConfig
from tinygradlm.optim import AdamW

CONFIG = GPTConfig(vocab_size=40, block_size=8, n_layer=1, n_head=2, n_embd=8)
JSON_FILES = ["manifest.json", "config.json", "trainer.json", "adapter_config.json"]
BINARY_FILES = ["model.safetensors", "optimizer.safetensors", "adapter_model.safetensors"]


def _save(root: Path, lora: bool) -> Path:
    model = GPT(CONFIG, seed=0)
    if lora:
        model.add_lora(LoRAConfig(rank=2, alpha=4.0, targets=("attn.c_attn",)))
        optimizer = AdamW(model.lora.flat_params, model.lora.flat_grads, lr=1e-3)
    else:
        optimizer = AdamW.for_model(model, lr=1e-3)
    state = {"step": 3, "rng": {"seed": 1}, "config": {"max_lr": 1e-3, "name": "x"}}
    return save_checkpoint(root / ("lora" if lora else "plain"), 3, model, optimizer, state)


# The two valid checkpoints every mutation starts from, written once per module into a folder
# pytest owns (the strategy below reads them when it draws, after the fixture has run).
VALID: dict[str, Path] = {}


@pytest.fixture(scope="module", autouse=True)
def valid_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-checkpoint")
    VALID.update(plain=_save(root, lora=False), lora=_save(root, lora=True))


ADAPTERS = "adapter_model.safetensors"
LORA_HEADER = f"{ADAPTERS} (its 'tinygradlm' header entry)"


def _adapters(path: Path):
    """The adapters file's tensors and header metadata."""
    with safetensors.safe_open(path / ADAPTERS, framework="np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def _rewrite_manifest(path: Path) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        data = (path / name).read_bytes()
        entry["bytes"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (path / "manifest.json").write_text(json.dumps(manifest))


@st.composite
def mutated_checkpoint(draw):
    """(which checkpoint, file name, new bytes, whether the manifest is made to agree)."""
    kind = draw(st.sampled_from(sorted(VALID)))
    names = [n for n in JSON_FILES + BINARY_FILES if (VALID[kind] / n).exists()]
    name = draw(st.sampled_from(names + ([LORA_HEADER] if kind == "lora" else [])))
    if name == LORA_HEADER:  # the LoRA config, JSON inside the adapters file's header
        text = draw(mutated_json(json.loads(_adapters(VALID[kind])[1]["tinygradlm"])))
        return kind, name, text, True
    valid = (VALID[kind] / name).read_bytes()
    if name.endswith(".json") and draw(st.booleans()):
        data = draw(mutated_json(json.loads(valid)))
    else:
        data = draw(mutated_bytes(valid))
    return kind, name, data, name != "manifest.json" and draw(st.booleans())


@given(case=mutated_checkpoint())
def test_a_mutated_checkpoint_loads_to_a_valid_model_or_is_refused(case):
    kind, name, data, agree = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt_00000003"
        shutil.copytree(VALID[kind], path)
        if name == LORA_HEADER:
            tensors, metadata = _adapters(path)
            metadata["tinygradlm"] = data.decode("utf-8", errors="replace")
            safetensors.numpy.save_file(tensors, path / ADAPTERS, metadata=metadata)
        else:
            (path / name).write_bytes(data)
        if agree:
            _rewrite_manifest(path)
        before = snapshot(path)
        loaded = read_within_bounds(lambda: load_checkpoint(path), CheckpointError)
        if loaded is not None:
            model = read_within_bounds(lambda: model_from_checkpoint(loaded), CheckpointError)
            if model is not None:
                assert model.config == loaded.config
                assert all(np.isfinite(v).all() for v in loaded.model_state.values())
        assert snapshot(path) == before
