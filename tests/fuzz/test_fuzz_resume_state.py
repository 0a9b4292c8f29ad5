"""Fuzzing the resume state: a checkpoint whose trainer.json is mutated (its hash in the manifest
updated, so the mutation reaches the trainer state's checks rather than the manifest's) either
resumes or raises CheckpointError (DataError where the loader's position does not fit the data),
and on an error nothing of the run changed: parameters, AdamW's moments, the loader's position,
the guard, the loss scaler and the step are as before."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.checkpoint import MANIFEST_FILE, TRAINER_FILE, latest_checkpoint
from tinygradlm.data.shards import write_shards
from tinygradlm.errors import CheckpointError, DataError
from tinygradlm.train import TrainConfig, Trainer

V = 64


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A trained tiny run with one checkpoint, and the checkpoint's original trainer.json."""
    root = tmp_path_factory.mktemp("resume")
    tokens = (np.arange(3000) % V).astype(np.uint16)
    write_shards([tokens[:2700]], root / "data", split="train", vocab_size=V, shard_tokens=1000)
    write_shards([tokens[2700:]], root / "data", split="val", vocab_size=V)
    config = TrainConfig.from_dict(
        {
            "data_dir": str(root / "data"),
            "out_dir": str(root / "run"),
            "model": {"preset": "tiny", "block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 16},
            "batch_size": 2,
            "seq_len": 8,
            "max_steps": 2,
            "warmup_steps": 1,
            "eval_interval": 0,
            "sample_interval": 0,
            "log_interval": 1000,
        }
    )
    trainer = Trainer(config, log=lambda _m: None)
    trainer.train()
    path = latest_checkpoint(config.out_dir)
    original = json.loads((path / TRAINER_FILE).read_text())
    fresh = Trainer(config, log=lambda _m: None)
    return fresh, path, original


def write_trainer_state(path: Path, state_text: str) -> None:
    """trainer.json replaced, and the manifest's size and SHA-256 of it to match."""
    data = state_text.encode()
    (path / TRAINER_FILE).write_bytes(data)
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest["files"][TRAINER_FILE] = {
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))


def snapshot(trainer: Trainer) -> dict[str, Any]:
    return {
        "params": trainer.model.flat_params.copy(),
        "m": trainer.optimizer.m.copy(),
        "v": trainer.optimizer.v.copy(),
        "loader": copy.deepcopy(trainer.train_loader.state_dict()),
        "guard": trainer.guard.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "step": trainer.step,
    }


def assert_unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    for name in ("params", "m", "v"):
        np.testing.assert_array_equal(before[name], after[name])
    assert json.dumps(before["loader"], sort_keys=True, default=str) == json.dumps(
        after["loader"], sort_keys=True, default=str
    )
    assert before["guard"] == after["guard"] and before["step"] == after["step"]
    assert json.dumps(before["scaler"]) == json.dumps(after["scaler"])


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def mutated_state(draw: st.DrawFn, original: dict[str, Any]) -> dict[str, Any]:
    """``original`` with one to three values replaced, removed or added, at any depth (the
    ``step`` kept, so the manifest's step still matches and the mutation reaches the state)."""
    state = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        table = state
        while True:
            nested = [k for k, v in table.items() if isinstance(v, dict) and v]
            if not nested or draw(st.booleans()):
                break
            table = table[draw(st.sampled_from(sorted(nested)))]
        keys = sorted(k for k in table if not (table is state and k == "step"))
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "add" or not keys:
            table[draw(st.text(max_size=6))] = draw(json_values)
        elif action == "remove":
            del table[draw(st.sampled_from(keys))]
        else:
            table[draw(st.sampled_from(keys))] = draw(json_values)
    state["step"] = original["step"]
    return state


def resume_or_refuse(trainer: Trainer) -> None:
    before = snapshot(trainer)
    try:
        trainer.resume()
    except (CheckpointError, DataError):
        assert_unchanged(before, snapshot(trainer))


def test_the_shapes_the_issue_names_are_checkpoint_errors(run):
    trainer, path, original = run
    for key, value in [("guard", 5), ("scaler", 5), ("config", [1]), ("loader", "x")]:
        write_trainer_state(path, json.dumps({**original, key: value}))
        before = snapshot(trainer)
        with pytest.raises(CheckpointError, match=rf"trainer.json: .*{key}"):
            trainer.resume()
        assert_unchanged(before, snapshot(trainer))
    bad_config = {**original, "config": {**original["config"], "seq_len": "8"}}
    write_trainer_state(path, json.dumps(bad_config))
    with pytest.raises(CheckpointError, match=r"trainer.json: config.seq_len must be"):
        trainer.resume()
    write_trainer_state(path, json.dumps(original))
    assert trainer.resume()


@given(st.data())
def test_mutated_trainer_state_resumes_or_raises_leaving_the_run_unchanged(run, data):
    trainer, path, original = run
    state = data.draw(mutated_state(original))
    write_trainer_state(path, json.dumps(state))
    try:
        resume_or_refuse(trainer)
    finally:
        write_trainer_state(path, json.dumps(original))


@given(st.binary(max_size=200))
def test_any_trainer_json_bytes_resume_or_raise(run, data):
    trainer, path, original = run
    (path / TRAINER_FILE).write_bytes(data)
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest["files"][TRAINER_FILE] = {
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))
    try:
        resume_or_refuse(trainer)
    finally:
        write_trainer_state(path, json.dumps(original))
