"""The defaults a newcomer meets: one override of ``max_steps`` or ``lr`` is enough (the schedule
follows them), the presets keep their schedules, a run's folder is named after its config and
a folder holding a different run is refused naming what differs, exported config.json carries
the end-of-text token ids, and the package's license is an SPDX string."""

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from tinygradlm.checkpoint import latest_checkpoint, save_checkpoint, save_model
from tinygradlm.errors import CheckpointError, ConfigError
from tinygradlm.model import GPT, GPTConfig
from tinygradlm.optim import AdamW
from tinygradlm.tokenizer import Tokenizer
from tinygradlm.train import (
    PRESETS,
    FinetuneConfig,
    TrainConfig,
    Trainer,
    load_config,
    load_finetune_config,
)
from tinygradlm.train.run_folder import check_same_run

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------
# the schedule follows max_steps and lr
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_one_override_of_max_steps_or_lr_is_enough_on_every_preset(preset):
    short = load_config(preset, ["max_steps=12"])
    assert 0 <= short.warmup_steps <= 12
    assert short.warmup_steps == round(short.warmup_ratio * 12)
    low = load_config(preset, ["lr=1e-4"])
    assert low.min_lr == 1e-5  # lr / 10, as a person writes it


# the presets' schedules as they were written out before they followed max_steps and lr
# (warmup_steps, min_lr): the demo's losses depend on them bit for bit
WRITTEN_OUT = {"tiny": (30, 3e-4), "small": (100, 1e-4), "gpt2": (700, 6e-5)}


@pytest.mark.parametrize("preset", sorted(WRITTEN_OUT))
def test_the_presets_keep_their_schedules_exactly(preset):
    config = load_config(preset)
    assert (config.warmup_steps, config.min_lr) == WRITTEN_OUT[preset]


def test_the_configs_own_defaults_keep_their_schedules():
    assert (TrainConfig().warmup_steps, TrainConfig().min_lr) == (20, 3e-4)
    finetune = FinetuneConfig(init_from="ckpt", data="train.jsonl")
    assert (finetune.warmup_steps, finetune.min_lr) == (10, 1e-4)


@pytest.mark.parametrize(
    ("lr", "min_lr"), [(3e-3, 3e-4), (6e-4, 6e-5), (7e-3, 7e-4), (1.5e-4, 1.5e-5), (1, 0.1)]
)
def test_min_lr_is_a_tenth_of_lr_as_written(lr, min_lr):
    assert TrainConfig(lr=lr).min_lr == min_lr


def test_an_explicit_inconsistent_pair_still_fails_naming_both():
    with pytest.raises(ConfigError, match=r"warmup_steps \(30\) exceeds max_steps \(12\).*unset"):
        load_config("tiny", ["max_steps=12", "warmup_steps=30"])
    with pytest.raises(ConfigError, match=r"min_lr \(0.001\) exceeds lr \(0.0001\).*unset"):
        load_config("tiny", ["lr=1e-4", "min_lr=1e-3"])
    with pytest.raises(ConfigError, match=r"warmup_ratio must be a number in \[0, 1\]"):
        load_config("tiny", ["warmup_ratio=1.5"])


def test_a_set_warmup_steps_wins_over_the_ratio():
    assert load_config("tiny", ["warmup_steps=7", "max_steps=12"]).warmup_steps == 7
    assert load_config("tiny", ["warmup_ratio=0.5", "max_steps=12"]).warmup_steps == 6


# --------------------------------------------------------------------------------------------
# the run folder
# --------------------------------------------------------------------------------------------


def test_the_default_run_folder_is_named_after_the_config(tmp_path):
    assert load_config("tiny").out_dir == "runs/tiny"
    assert load_config("small").out_dir == "runs/small"
    toml = tmp_path / "long_context.toml"
    toml.write_text("max_steps = 7\n")
    assert load_config(str(toml)).out_dir == "runs/long_context"
    assert load_config("tiny", ["out_dir=elsewhere"]).out_dir == "elsewhere"
    toml.write_text('out_dir = "mine"\n')
    assert load_config(str(toml)).out_dir == "mine"
    ft = tmp_path / "ft.toml"
    ft.write_text('init_from = "ckpt"\ndata = "d.jsonl"\n')
    assert load_finetune_config(str(ft)).out_dir == "runs/ft"
    assert load_finetune_config(None, init_from="c", data="d").out_dir == "runs/finetune"


def make_run(tmp_path: Path, **overrides) -> TrainConfig:
    """A two-step pretraining config on a learnable stream, checkpointing at its last step."""
    from tinygradlm.data.shards import write_shards

    tokens = (np.arange(3000) % 32).astype(np.uint16)
    if not (tmp_path / "data").exists():
        write_shards([tokens], tmp_path / "data", split="train", vocab_size=32, shard_tokens=1000)
    values = {
        "data_dir": str(tmp_path / "data"),
        "out_dir": str(tmp_path / "run"),
        "model": {"preset": "tiny", "block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 16},
        "batch_size": 2,
        "seq_len": 8,
        "max_steps": 2,
        "eval_interval": 0,
        "sample_interval": 0,
        "checkpoint_interval": 2,
        "kernels": "numpy",
    }
    return TrainConfig.from_dict({**values, **overrides})


def test_a_folder_holding_a_different_run_is_refused_naming_what_differs(tmp_path):
    Trainer(make_run(tmp_path), log=lambda _m: None).train()
    other = Trainer(
        make_run(
            tmp_path,
            seed=3,
            model={"preset": "tiny", "block_size": 8, "n_layer": 2, "n_head": 2, "n_embd": 16},
        ),
        log=lambda _m: None,
    )
    before = other.model.flat_params.copy()
    with pytest.raises(CheckpointError) as refused:
        other.resume()
    message = str(refused.value)
    assert f"{tmp_path / 'run'} holds a different run" in message
    assert "model.n_layer 1 → 2" in message and "seed 0 → 3" in message
    assert "max_steps" not in message  # the same in both
    assert "another out_dir" in message and f"delete {tmp_path / 'run'}" in message
    assert other.step == 0 and np.array_equal(other.model.flat_params, before)


def test_the_same_run_resumes_with_new_max_steps_and_says_what_changed(tmp_path):
    Trainer(make_run(tmp_path), log=lambda _m: None).train()
    lines = []
    longer = Trainer(make_run(tmp_path, max_steps=3), log=lines.append)
    assert longer.resume() and longer.step == 2
    assert any("changed settings: max_steps 2 → 3" in line for line in lines)


def test_a_fine_tuning_config_does_not_resume_a_pretraining_run(tmp_path):
    Trainer(make_run(tmp_path), log=lambda _m: None).train()
    finetune = FinetuneConfig(init_from="base", data="d.jsonl", out_dir=str(tmp_path / "run"))
    with pytest.raises(CheckpointError, match=r"init_from \(unset\) → 'base'"):
        check_same_run(finetune, latest_checkpoint(tmp_path / "run"))


# --------------------------------------------------------------------------------------------
# config.json's token ids; the license
# --------------------------------------------------------------------------------------------

EOT = 256


def model_and_tokenizer(tmp_path: Path) -> tuple[GPT, Path]:
    tokenizer = Tokenizer(
        {bytes([i]): i for i in range(256)}, special_tokens={"<|endoftext|>": EOT}
    )
    tokenizer.save(tmp_path / "tokenizer.txt")
    model = GPT(GPTConfig(vocab_size=257, block_size=8, n_layer=1, n_head=2, n_embd=16), seed=0)
    return model, tmp_path / "tokenizer.txt"


def test_exported_config_json_carries_the_end_of_text_id_and_hf_reads_it(tmp_path):
    model, tokenizer = model_and_tokenizer(tmp_path)
    exported = save_model(tmp_path / "export", model, tokenizer_files=[tokenizer])
    optimizer = AdamW.for_model(model, lr=1e-3)
    ckpt = save_checkpoint(tmp_path / "run", 1, model, optimizer, {}, tokenizer_files=[tokenizer])
    bare = save_model(tmp_path / "bare", model)
    for path in (exported, ckpt):
        config = json.loads((path / "config.json").read_text())
        assert (config["bos_token_id"], config["eos_token_id"]) == (EOT, EOT)
    config = json.loads((bare / "config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"]) == (None, None)  # no tokenizer
    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2Config.from_pretrained(exported)
    assert (hf.bos_token_id, hf.eos_token_id) == (EOT, EOT)


def test_pyproject_license_is_an_spdx_string_with_a_setuptools_that_reads_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    # setuptools reads the SPDX string (PEP 639) from version 77 on
    assert "setuptools>=77" in project["build-system"]["requires"]
