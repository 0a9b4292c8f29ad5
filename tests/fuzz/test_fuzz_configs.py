"""Fuzzing the config readers: train, finetune and prepare TOML files and ``KEY=VALUE``
overrides. Any byte string, any structurally mutated valid config and any list of overrides
either loads to a config object or raises ConfigError: never another exception, never a hang
(a config is checked, nothing is allocated for it: the model's memory is estimated in closed
form)."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.data.clean import CleanConfig
from tinygradlm.data.dedup import DedupConfig
from tinygradlm.data.prepare import PrepareConfig
from tinygradlm.errors import ConfigError
from tinygradlm.train import FinetuneConfig, TrainConfig, load_config, load_finetune_config
from tinygradlm.train.config import read_settings

TIME_LIMIT_S = 5.0  # one example: reading and checking a config is milliseconds

VALID_TRAIN = {
    "out_dir": "runs/x",
    "data_dir": "runs/data",
    "batch_size": 4,
    "seq_len": 32,
    "max_steps": 10,
    "warmup_steps": 2,
    "lr": 1e-3,
    "min_lr": 1e-4,
    "sample_prompt": "Once",
    "precision": "fp32",
    "model": {"preset": "tiny", "n_layer": 2, "n_embd": 64, "n_head": 2},
    "data": {"remix": False},
}
VALID_FINETUNE = {
    "init_from": "runs/train/ckpt_00000100",
    "data": "sft.jsonl",
    "lora_rank": 4,
    "lora_alpha": 8.0,
    "lora_targets": ["attn.c_attn"],
    "max_steps": 10,
}
VALID_PREPARE = {
    "vocab_size": 512,
    "pattern": "gpt4",
    "val_fraction": 0.1,
    "seed": 1,
    "shard_tokens": 1000,
    "clean": {"min_words": 5, "stop_words": False, "stop_word_list": ["the"]},
    "dedup": {"ngram": 3, "bands": 4, "rows": 2, "verify": "estimate"},
}

keys = st.sampled_from(
    [
        *VALID_TRAIN,
        *VALID_FINETUNE,
        *VALID_PREPARE,
        *CleanConfig().to_dict(),
        *DedupConfig().to_dict(),
        "preset",
        "n_layer",
        "vocab_size",
        "block_size",
        "padded_vocab_size",
        "mix",
        "remix",
    ]
) | st.text(max_size=8)
scalars = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.text(max_size=12)
    | st.sampled_from([0, 1, 2, 257, 10**9, 10**18, 0.5, 300.0, "fp16", "bf16", "tiny", "gpt2"])
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)


def toml_value(value: Any) -> str:
    """``value`` in TOML syntax (inline tables and arrays)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(table: dict[str, Any]) -> bytes:
    return "\n".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items()).encode()


@st.composite
def mutated(draw: st.DrawFn, valid: dict[str, Any]) -> dict[str, Any]:
    """``valid`` with a few keys replaced, removed or added, at the top or one table down."""
    table = json.loads(json.dumps(valid))
    for _ in range(draw(st.integers(1, 3))):
        target = table
        nested = [k for k, v in table.items() if isinstance(v, dict)]
        if nested and draw(st.booleans()):
            target = table[draw(st.sampled_from(nested))]
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action != "add" and target:
            key = draw(st.sampled_from(sorted(target)))
            if action == "remove":
                del target[key]
            else:
                target[key] = draw(values)
        else:
            target[draw(keys)] = draw(values)
    return table


def load_within_bound(load: Any, kind: type, *args: Any) -> None:
    start = time.perf_counter()
    try:
        config = load(*args)
    except ConfigError:
        pass
    else:
        assert isinstance(config, kind)
    assert time.perf_counter() - start < TIME_LIMIT_S


def load_prepare(path: str) -> PrepareConfig:
    return PrepareConfig.from_dict(read_settings(path))


LOADERS = {
    "train": (lambda path: load_config(path), TrainConfig, VALID_TRAIN),
    "finetune": (lambda path: load_finetune_config(path), FinetuneConfig, VALID_FINETUNE),
    "prepare": (load_prepare, PrepareConfig, VALID_PREPARE),
}


def test_the_valid_configs_load(tmp_path):
    for name, (load, kind, valid) in LOADERS.items():
        path = tmp_path / f"{name}.toml"
        path.write_bytes(toml_document(valid))
        assert isinstance(load(str(path)), kind)


@given(st.sampled_from(sorted(LOADERS)), st.binary(max_size=300))
def test_any_bytes_load_or_raise_config_error(tmp_path_factory, name, data):
    path = tmp_path_factory.mktemp("bytes") / "config.toml"
    path.write_bytes(data)
    load, kind, _ = LOADERS[name]
    load_within_bound(load, kind, str(path))


@given(st.data())
def test_mutated_configs_load_or_raise_config_error(tmp_path_factory, data):
    name = data.draw(st.sampled_from(sorted(LOADERS)))
    load, kind, valid = LOADERS[name]
    path = tmp_path_factory.mktemp("mutated") / "config.toml"
    path.write_bytes(toml_document(data.draw(mutated(valid))))
    load_within_bound(load, kind, str(path))


overrides = st.lists(
    st.tuples(
        keys | st.sampled_from(["model.n_layer", "model.n_embd", "data.mix", "a..b"]), values
    ).map(lambda kv: f"{kv[0]}={toml_value(kv[1])}")
    | st.text(max_size=20),
    max_size=4,
)


@given(overrides)
def test_overrides_load_or_raise_config_error(items):
    load_within_bound(load_config, TrainConfig, "tiny", items)
    load_within_bound(
        lambda: load_finetune_config(None, items, init_from="a", data="b"), FinetuneConfig
    )


def test_deeply_nested_config_and_override_raise_config_error(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text("model = " + "[" * 100_000 + "]" * 100_000)
    load_within_bound(load_config, TrainConfig, str(path))
    load_within_bound(load_config, TrainConfig, "tiny", ["model.n_layer=" + "[" * 100_000])
