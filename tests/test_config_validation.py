"""The one validation layer of settings (tinygradlm.schema): every config and override of the
wrong type or out of range is a ConfigError naming where it came from, the dotted key, the value
and what was expected, every problem at once; a model too large for the machine is refused from
its closed-form estimate before anything is allocated."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from tinygradlm.data.prepare import PrepareConfig
from tinygradlm.errors import ConfigError
from tinygradlm.model import GPT, GPTConfig, model_bytes, training_bytes
from tinygradlm.optim import AdamW
from tinygradlm.schema import Rule, check_table, check_value
from tinygradlm.train import (
    FinetuneConfig,
    TrainConfig,
    evaluate_checkpoint,
    load_config,
    load_finetune_config,
)
from tinygradlm.train.config import read_settings


def write(tmp_path, text, name="config.toml"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


# -- the rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, rule, valid",
    [
        (3, Rule("int", 1), True),
        (True, Rule("int", 0), False),  # a bool is not an integer
        (300.0, Rule("int", 1), False),  # a float is not an integer, even a whole one
        (np.int64(3), Rule("int", 1), True),
        (0, Rule("int", 1), False),
        (0.5, Rule("number", 0, 1, open_high=True), True),
        (1.0, Rule("number", 0, 1, open_high=True), False),
        (float("nan"), Rule("number"), False),
        (float("inf"), Rule("number", 0), False),
        ("x", Rule("path"), True),
        (5, Rule("path"), False),
        (["a"], Rule("str_list"), True),
        ("a", Rule("str_list"), False),
        ("fp16", Rule("str", choices=("fp32", "fp16")), True),
        ("fp8", Rule("str", choices=("fp32", "fp16")), False),
        (None, Rule("optional_int", 1), True),
        ({}, Rule("table"), True),
        ([1], Rule("table"), False),
    ],
)
def test_a_rule_accepts_exactly_its_kind_and_range(value, rule, valid):
    assert (check_value(value, rule) is None) == valid


def test_check_table_reports_every_problem_and_unknown_key():
    rules = {"a": Rule("int", 1), "b": Rule("bool")}
    problems = check_table({"a": "1", "b": 1, "c": 0}, rules, "t.")
    assert [p.key for p in problems] == ["t.c", "t.a", "t.b"]
    assert "t.a must be a positive integer, got '1'" in [p.text for p in problems]
    assert check_table(5, rules, "t.")[0].text == "t must be a table, got 5"


# -- train, finetune, overrides -------------------------------------------------------------------


def test_a_train_file_names_the_file_and_every_key(tmp_path):
    path = write(tmp_path, 'seed = "3"\nmax_steps = true\n[model]\nvocab_size = 300.5\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith("3 problems:")
    assert f"config {path}: seed must be an integer ≥ 0, got '3'" in message
    assert f"config {path}: max_steps must be a positive integer, got True" in message
    assert "model.vocab_size must be a positive integer ≤ 2147483647, got 300.5" in message


@pytest.mark.parametrize(
    "override, key",
    [
        ("model=5", "model must be a table"),
        ("data_dir=5", "data_dir must be a path"),
        ('out_dir=["a"]', "out_dir must be a path"),
        ("sample_prompt=5", "sample_prompt must be a string"),
        ("model.n_layer=2.0", "model.n_layer must be a positive integer"),
        ("top_k=0", "top_k must be a positive integer"),
        ("precision=fp8", "precision must be one of"),
        ("data.mix=5", "data.mix"),
    ],
)
def test_an_override_of_the_wrong_type_names_the_override(override, key):
    with pytest.raises(ConfigError, match=rf"override {override.split('=')[0]}=.*{key}"):
        load_config("tiny", [override])


def test_overrides_that_are_not_key_value_or_not_into_tables_are_refused():
    for item in ["novalue", "=3", "a..b=1", "model.n_layer.x=3"]:
        with pytest.raises(ConfigError, match="override"):
            load_config("tiny", [item])


def test_a_non_utf8_or_deeply_nested_config_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"config.toml: not UTF-8 text \(invalid byte at"):
        load_config(write(tmp_path, b"max_steps = 3\n# \xff\n"))
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(write(tmp_path, "model = " + "[" * 50_000 + "]" * 50_000))


def test_finetune_settings_are_checked_by_the_same_rules():
    with pytest.raises(ConfigError, match=r"override lora_rank=true: lora_rank must be an int"):
        load_finetune_config(None, ["lora_rank=true"], init_from="a", data="b")
    with pytest.raises(ConfigError, match=r"--from: init_from must be a path"):
        load_finetune_config(None, [], init_from=5, data="b")
    with pytest.raises(ConfigError, match="freeze must be a list of strings"):
        FinetuneConfig.from_dict({"init_from": "a", "data": "b", "freeze": "h.0"})


def test_a_config_built_in_code_is_checked_too():
    with pytest.raises(ConfigError, match="batch_size must be a positive integer, got '8'"):
        TrainConfig(batch_size="8")
    with pytest.raises(ConfigError, match=r"GPTConfig\.n_embd must be a positive integer"):
        GPTConfig(n_embd=64.0)


# -- prepare --------------------------------------------------------------------------------------


def test_a_prepare_file_names_every_problem_of_its_tables(tmp_path):
    path = write(
        tmp_path,
        'vocab_size = "300"\nseed = "1"\nclean = 5\ndedup = [1]\n',
    )
    with pytest.raises(ConfigError) as err:
        PrepareConfig.from_dict(read_settings(path))
    message = str(err.value)
    for text in (
        "vocab_size must be an integer in [257, 2147483647], got '300'",
        "seed must be an integer ≥ 0, got '1'",
        "clean must be a table, got 5",
        "dedup must be a table, got [1]",
    ):
        assert f"config {path}: {text}" in message
    path = write(tmp_path, "vocab_size = 300.5\n[clean]\nmin_words = 1.5\n[dedup]\nrows = 0\n")
    with pytest.raises(ConfigError) as err:
        PrepareConfig.from_dict(read_settings(path))
    for text in ("vocab_size must be", "clean.min_words must be", "dedup.rows must be"):
        assert text in str(err.value)


# -- sizes ----------------------------------------------------------------------------------------


def test_a_model_too_large_is_refused_with_its_estimate_before_it_is_built():
    tracemalloc.start()
    with pytest.raises(ConfigError, match=r"model.*n_layer=1000000000.* needs about .*TiB"):
        load_config("tiny", ["model.n_layer=1000000000"])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50 * 2**20
    with pytest.raises(ConfigError, match="needs about"):
        load_config("tiny", ["model.n_embd=1048576", "model.n_head=1"])
    with pytest.raises(ConfigError, match="sample_tokens must be an integer in"):
        load_config("tiny", ["sample_tokens=1000000000"])


def test_model_bytes_is_the_parameters_and_gradients():
    config = GPTConfig.preset("tiny")
    model = GPT(config)
    assert model_bytes(config, np.float32) == model.flat_params.nbytes + model.flat_grads.nbytes


@pytest.mark.parametrize("norm, residual", [("pre", True), ("post", True), ("none", False)])
def test_training_bytes_is_close_to_the_measured_peak(norm, residual):
    config = GPTConfig(
        vocab_size=512, block_size=64, n_layer=2, n_head=2, n_embd=64, norm=norm, residual=residual
    )
    B, T = 4, 64
    idx = np.zeros((B, T), np.int64)
    GPT(config).forward_backward(idx, idx)  # compile the kernels outside the measurement
    tracemalloc.start()
    model = GPT(config)
    optimizer = AdamW.for_model(model, lr=1e-3)
    for _ in range(2):
        model.forward_backward(idx, idx)
        optimizer.step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    estimate = training_bytes(config, B, T)
    assert 0.75 * peak < estimate < 1.5 * peak
    assert training_bytes(config, B, T, precision="bf16") > estimate


# -- eval -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("batches", [0, -1, 1.5])
def test_eval_refuses_a_count_of_batches_that_is_not_positive(tmp_path, batches):
    with pytest.raises(ConfigError, match="eval: batches must be a positive integer"):
        evaluate_checkpoint(tmp_path / "missing", tmp_path, batches=batches)


def test_the_eval_command_refuses_batches_0(capsys):
    from tinygradlm.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["eval", "--ckpt", "x", "--data", "y", "--batches", "0"])
    assert exit_.value.code == 2
    assert "--batches: must be a positive integer, got '0'" in capsys.readouterr().err


def test_the_sample_command_bounds_max_new_tokens(capsys):
    from tinygradlm.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["sample", "--ckpt", "x", "--max-new-tokens", str(10**12)])
    assert exit_.value.code == 2
    assert "--max-new-tokens: must be an integer in [0, 1,000,000]" in capsys.readouterr().err


@pytest.mark.parametrize("pattern", ["", "x*", r"\d"])
def test_a_split_pattern_that_loses_text_is_refused_with_the_prepare_config(pattern):
    # checked when the config is built, before any document is read
    with pytest.raises(ConfigError, match="split pattern"):
        PrepareConfig.from_dict({"pattern": pattern})
