"""Starting from a Hugging Face GPT-2 directory: config.json and safetensors (single or sharded,
F32/F64/F16/BF16) read as a model-only checkpoint that computes what transformers computes;
every config key or tensor this GPT cannot represent refused by name; the commands that take
--ckpt/--from accept such a directory; init_from may name a run directory.

The reader's core tests build the HF directory by hand (config.json and safetensors written
here), so they run without transformers; the oracle tests save real GPT2LMHeadModels."""

import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygradlm import backend
from tinygradlm.checkpoint import load_checkpoint, save_model
from tinygradlm.checkpoint.hf import GELU_TANH, config_from_hf_gpt2
from tinygradlm.checkpoint.layout import read_json
from tinygradlm.cli import main
from tinygradlm.errors import CheckpointError
from tinygradlm.model import GPT, GPTConfig
from tinygradlm.ref.gelu import gelu_forward
from tinygradlm.tokenizer import Tokenizer
from tinygradlm.train import FinetuneConfig, Trainer

CONFIG = GPTConfig(vocab_size=97, block_size=64, n_layer=2, n_head=4, n_embd=32)


def hf_config_json(config=CONFIG, **changes):
    """config.json as transformers writes it for ``config``, with ``changes`` (None: drop)."""
    values = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "activation_function": "gelu_new",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "layer_norm_epsilon": 1e-5,
        "attn_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "resid_pdrop": 0.1,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "tie_word_embeddings": True,
        "dtype": "float32",
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None or k == "n_inner"}


def to_bf16_bits(array):
    """float32 → BF16 bit patterns (round to nearest even), as torch stores them."""
    bits = np.asarray(array, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def from_bf16_bits(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def write_safetensors_raw(file, tensors):
    """A safetensors file of ``{name: (dtype name, array)}``, written by hand (any dtype name:
    BF16 is a uint16 array of bit patterns)."""
    header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, (dtype, array) in tensors.items():
        data = np.ascontiguousarray(array).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    file.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(chunks))


def hf_tensors(model, dtype="F32", prefix="transformer.", head=True):
    """The model's state dict as transformers saves it: the prefix, the causal-mask buffers,
    and (``head``) the tied lm_head.weight."""
    L, T = model.config.n_layer, model.config.block_size
    tensors = {}
    for name, value in model.state_dict().items():
        value = np.asarray(value, dtype=np.float32)
        if dtype == "F16":
            tensors[prefix + name] = ("F16", value.astype(np.float16))
        elif dtype == "BF16":
            tensors[prefix + name] = ("BF16", to_bf16_bits(value))
        else:
            tensors[prefix + name] = (dtype, value.astype({"F32": "<f4", "F64": "<f8"}[dtype]))
    for i in range(L):
        mask = np.tril(np.ones((T, T), dtype=np.float32))[None, None]
        tensors[f"{prefix}h.{i}.attn.bias"] = ("F32", mask)
    if head:
        tensors["lm_head.weight"] = tensors[prefix + "wte.weight"]
    return tensors


def make_hf_dir(path, model=None, config=None, tensors=None, **changes):
    """An HF GPT-2 directory: config.json and model.safetensors, written by hand."""
    model = model if model is not None else random_model()
    path.mkdir(parents=True, exist_ok=True)
    values = config if config is not None else hf_config_json(model.config, **changes)
    (path / "config.json").write_text(json.dumps(values))
    write_safetensors_raw(path / "model.safetensors", tensors or hf_tensors(model))
    return path


def random_model(config=CONFIG, seed=0):
    model = GPT(config, seed=seed)
    rng = np.random.default_rng(seed)  # layer norms and biases away from 1 and 0
    model.flat_params += rng.normal(0, 0.05, model.flat_params.shape).astype(np.float32)
    return model


TOKENS = np.random.default_rng(1).integers(0, 97, size=(2, 16))


# --------------------------------------------------------------------------------------------
# the reader, on directories built by hand
# --------------------------------------------------------------------------------------------


def test_an_hf_directory_is_a_model_only_checkpoint_computing_the_same_function(tmp_path):
    model = random_model()
    path = make_hf_dir(tmp_path / "hf", model)
    (path / "tokenizer.json").write_text("{}")
    (path / "generation_config.json").write_text("{}")
    ckpt = load_checkpoint(path)
    assert ckpt.step == 0 and ckpt.optimizer_state is None and ckpt.trainer_state == {"step": 0}
    assert ckpt.config == CONFIG and ckpt.lora is None
    assert [p.name for p in ckpt.tokenizer_files] == ["tokenizer.json"]
    for name, value in model.state_dict().items():
        assert np.array_equal(ckpt.model_state[name], value), name
    loaded = GPT.from_pretrained(path)
    assert loaded.dtype == np.float32
    assert np.array_equal(loaded.logits(TOKENS), model.logits(TOKENS))
    assert GPT.from_pretrained(path, precision="bf16").precision.precision == "bf16"


def test_names_without_the_transformer_prefix_and_without_a_head_load_too(tmp_path):
    model = random_model()
    path = make_hf_dir(tmp_path / "hf", model, tensors=hf_tensors(model, prefix="", head=False))
    assert np.array_equal(GPT.from_pretrained(path).flat_params, model.flat_params)


def test_a_key_left_out_of_config_json_takes_gpt2_configs_default(tmp_path):
    values = hf_config_json(activation_function=None, tie_word_embeddings=None)
    values.pop("layer_norm_epsilon")
    values["hidden_size"] = values.pop("n_embd")  # GPT2Config's other name for it
    path = make_hf_dir(tmp_path / "hf", config=values)
    assert load_checkpoint(path).config == CONFIG


@pytest.mark.parametrize("dtype", ["F16", "BF16"])
def test_half_precision_weights_are_widened_to_float32_exactly(tmp_path, dtype):
    model = random_model()
    path = make_hf_dir(tmp_path / "hf", model, tensors=hf_tensors(model, dtype=dtype))
    ckpt = load_checkpoint(path)
    assert dtype in ckpt.trainer_state["notes"][0]
    for name, value in model.state_dict().items():
        if dtype == "F16":
            stored = value.astype(np.float16).astype(np.float32)
        else:
            stored = from_bf16_bits(to_bf16_bits(value))
        assert ckpt.model_state[name].dtype == np.float32
        assert np.array_equal(ckpt.model_state[name], stored), name
    logits = GPT.from_checkpoint(ckpt).logits(TOKENS)
    assert np.abs(logits - model.logits(TOKENS)).max() < 0.05


def test_float64_weights_make_a_float64_model(tmp_path):
    model = random_model()
    path = make_hf_dir(tmp_path / "hf", model, tensors=hf_tensors(model, dtype="F64"))
    loaded = GPT.from_pretrained(path)
    assert loaded.dtype == np.float64
    assert np.allclose(loaded.logits(TOKENS), model.logits(TOKENS), atol=1e-5)


def write_sharded(path, model, n_shards=3, weight_map_changes=None):
    """model.safetensors.index.json and ``n_shards`` shards, the tensors dealt round-robin."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(hf_config_json(model.config)))
    tensors = hf_tensors(model, head=False)
    shards = [{} for _ in range(n_shards)]
    weight_map = {}
    for i, (name, value) in enumerate(sorted(tensors.items())):
        shard = f"model-{i % n_shards + 1:05d}-of-{n_shards:05d}.safetensors"
        shards[i % n_shards][name] = value
        weight_map[name] = shard
    for i, shard in enumerate(shards):
        write_safetensors_raw(path / f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors", shard)
    for name, shard in (weight_map_changes or {}).items():
        if shard == "another shard":
            number = int(weight_map[name][6:11]) % n_shards + 1
            shard = f"model-{number:05d}-of-{n_shards:05d}.safetensors"
        weight_map[name] = shard
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    return path


def test_sharded_weights_load_as_one_file_does(tmp_path):
    model = random_model()
    path = write_sharded(tmp_path / "hf", model)
    assert np.array_equal(GPT.from_pretrained(path).flat_params, model.flat_params)


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"transformer.wpe.weight": "../model-00001-of-00003.safetensors"}, "not a plain file"),
        ({"transformer.wpe.weight": "/etc/passwd"}, "not a plain file"),
        ({"transformer.wpe.weight": "model-00009-of-00003.safetensors"}, "is missing"),
        ({"transformer.wpe.weight": "another shard"}, "which the index"),
        ({"transformer.h.9.ln_1.weight": "model-00001-of-00003.safetensors"}, "missing from"),
    ],
)
def test_a_malformed_index_is_refused_naming_the_tensor(tmp_path, change, names):
    path = write_sharded(tmp_path / "hf", random_model(), weight_map_changes=change)
    with pytest.raises(CheckpointError, match=re.escape("model.safetensors.index.json")) as error:
        load_checkpoint(path)
    assert names in str(error.value) and next(iter(change)) in str(error.value)


def test_a_missing_shard_is_named(tmp_path):
    path = write_sharded(tmp_path / "hf", random_model())
    (path / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(
        CheckpointError, match=re.escape("'model-00002-of-00003.safetensors' is missing")
    ):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("model_type", "llama"),
        ("model_type", "gpt_neox"),
        ("activation_function", "relu"),
        ("activation_function", "gelu"),
        ("n_inner", 64),
        ("scale_attn_weights", False),
        ("scale_attn_by_inverse_layer_idx", True),
        ("add_cross_attention", True),
        ("tie_word_embeddings", False),
        ("quantization_config", {"quant_method": "gptq"}),
    ],
)
def test_a_config_this_gpt_cannot_represent_is_refused_by_name(tmp_path, key, value):
    path = make_hf_dir(tmp_path / "hf", **{key: value})
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert str(path / "config.json") in message and key in message
    if key != "quantization_config":
        assert repr(value) in message
    if key == "model_type":
        assert "learned absolute positions only" in message


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=5,
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    changes=st.dictionaries(
        st.sampled_from([*sorted(hf_config_json()), "hidden_size", "quantization_config"]),
        JSON_VALUES,
        max_size=3,
    )
)
def test_any_config_json_values_load_or_raise_a_checkpoint_error(changes):
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "config.json"
        values = {**hf_config_json(), **changes}
        file.write_text(json.dumps(values))
        try:
            config = config_from_hf_gpt2(file, read_json(file))
        except CheckpointError as error:
            assert str(file) in str(error)
        else:
            assert config.n_embd == values.get("n_embd", values.get("hidden_size"))


def test_the_mlp_width_4_n_embd_may_be_spelled_out(tmp_path):
    path = make_hf_dir(tmp_path / "hf", n_inner=4 * CONFIG.n_embd)
    assert load_checkpoint(path).config == CONFIG


def test_an_untied_head_that_differs_from_wte_is_refused(tmp_path):
    model = random_model()
    tensors = hf_tensors(model)
    tensors["lm_head.weight"] = ("F32", tensors["lm_head.weight"][1] + np.float32(1.0))
    path = make_hf_dir(tmp_path / "hf", model, tensors=tensors)
    with pytest.raises(
        CheckpointError, match=re.escape("tensor lm_head.weight differs from wte.weight")
    ):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("edit", "names"),
    [
        (lambda t: t.pop("transformer.h.1.mlp.c_fc.bias"), "missing tensor h.1.mlp.c_fc.bias"),
        (
            lambda t: t.update(score=("F32", np.zeros((2, 32), np.float32))),
            "tensor score: unexpected",
        ),
        (
            lambda t: t.update({"transformer.wpe.weight": ("F32", np.zeros((8, 32), np.float32))}),
            "tensor transformer.wpe.weight: shape (8, 32), config.json implies (64, 32)",
        ),
        (
            lambda t: t.update({"wpe.weight": t["transformer.wpe.weight"]}),
            "wpe.weight is stored twice",
        ),
        (
            lambda t: t.update({"transformer.wpe.weight": ("I32", np.zeros((64, 32), np.int32))}),
            "tensor transformer.wpe.weight: dtype I32",
        ),
    ],
)
def test_tensors_that_do_not_match_config_json_are_named(tmp_path, edit, names):
    model = random_model()
    tensors = hf_tensors(model)
    edit(tensors)
    path = make_hf_dir(tmp_path / "hf", model, tensors=tensors)
    with pytest.raises(CheckpointError, match=re.escape("do not match config.json")) as error:
        load_checkpoint(path)
    assert names in str(error.value)


def test_non_finite_weights_are_named(tmp_path):
    model = random_model()
    tensors = hf_tensors(model)
    tensors["transformer.ln_f.bias"][1][3] = np.nan
    path = make_hf_dir(tmp_path / "hf", model, tensors=tensors)
    with pytest.raises(
        CheckpointError, match=re.escape("tensor transformer.ln_f.bias has non-finite")
    ):
        load_checkpoint(path)


def test_a_pickle_is_never_loaded_and_missing_weights_are_said(tmp_path):
    path = make_hf_dir(tmp_path / "hf")
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=re.escape("config.json but no weights")):
        load_checkpoint(path)
    (path / "pytorch_model.bin").write_bytes(b"\x80\x04 not to be unpickled")
    with pytest.raises(CheckpointError, match=re.escape("pytorch_model.bin: a pickle")) as error:
        load_checkpoint(path)
    assert "safe_serialization=True" in str(error.value)


def test_a_memory_check_refuses_a_huge_config_before_reading(tmp_path):
    path = make_hf_dir(tmp_path / "hf", n_layer=10**6, n_embd=4096, n_head=32)
    with pytest.raises(CheckpointError, match=re.escape("config.json: the model")):
        load_checkpoint(path)


def test_our_checkpoint_without_its_manifest_is_still_incomplete(tmp_path):
    path = save_model(tmp_path / "ours", random_model())
    (path / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match=re.escape("manifest.json: missing (an incomplete")):
        load_checkpoint(path)


def test_from_pretrained_takes_our_checkpoints_and_run_directories(tmp_path):
    model = random_model()
    save_model(tmp_path / "run" / "ckpt_00000003", model)
    assert np.array_equal(GPT.from_pretrained(tmp_path / "run").flat_params, model.flat_params)
    ckpt = tmp_path / "run" / "ckpt_00000003"
    assert np.array_equal(GPT.from_pretrained(ckpt).flat_params, model.flat_params)


# --------------------------------------------------------------------------------------------
# runs and commands
# --------------------------------------------------------------------------------------------

BYTES = GPTConfig(vocab_size=257, block_size=32, n_layer=1, n_head=2, n_embd=16)


def byte_tokenizer_file(path):
    """256 byte tokens and <|endoftext|> = 256, as tokenizer.txt in ``path``."""
    tok = Tokenizer({bytes([i]): i for i in range(256)}, special_tokens={"<|endoftext|>": 256})
    tok.save(path / "tokenizer.txt")
    return path / "tokenizer.txt"


def sft_task(path):
    path.mkdir()
    for split in ("train", "val"):
        records = [{"prompt": f"{w}=", "response": w[::-1]} for w in ("ab", "abc", "ba", "cab")]
        (path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def finetune_settings(tmp_path, init_from, **changes):
    values = {
        "init_from": str(init_from),
        "data": str(sft_task(tmp_path / "task")),
        "out_dir": str(tmp_path / "out"),
        "batch_size": 2,
        "seq_len": 8,
        "max_steps": 2,
        "warmup_steps": 1,
        "eval_interval": 0,
        "checkpoint_interval": 0,
        "log_interval": 1000,
    }
    return FinetuneConfig.from_dict({**values, **changes})


def test_init_from_a_run_directory_starts_from_its_newest_checkpoint(tmp_path):
    tokenizer = byte_tokenizer_file(tmp_path)
    run = tmp_path / "pretrain"
    save_model(run / "ckpt_00000001", random_model(BYTES, seed=1), tokenizer_files=[tokenizer])
    save_model(run / "ckpt_00000002", random_model(BYTES, seed=2), tokenizer_files=[tokenizer])
    lines = []
    config = finetune_settings(tmp_path, run, checkpoint_interval=2)
    Trainer(config, log=lines.append).train()
    newest = str(run / "ckpt_00000002")
    assert any("taking its newest complete checkpoint, ckpt_00000002" in line for line in lines)
    saved = load_checkpoint(tmp_path / "out" / "ckpt_00000002")
    assert saved.trainer_state["config"]["init_from"] == newest  # what the run started from


def test_the_commands_take_an_hf_directory(tmp_path, capsys):
    model = random_model(BYTES)
    hf = make_hf_dir(tmp_path / "hf", model)
    byte_tokenizer_file(hf)
    with backend.use_kernels(backend.kernels_name()):  # the CLI sets kernels: restore after
        data = sft_task(tmp_path / "task")
        settings = [f"out_dir='{tmp_path / 'ft'}'", "max_steps=2", "batch_size=2", "seq_len=8"]
        settings += ["warmup_steps=1", "eval_interval=0", "log_interval=100"]
        code = main(["finetune", "--from", str(hf), "--data", str(data), *settings])
    assert code == 0
    assert load_checkpoint(tmp_path / "ft" / "ckpt_00000002").step == 2
    assert main(["export", "--ckpt", str(hf), "--out", str(tmp_path / "exported")]) == 0
    exported = load_checkpoint(tmp_path / "exported")
    assert (tmp_path / "exported" / "manifest.json").is_file()
    assert np.array_equal(GPT.from_checkpoint(exported).flat_params, model.flat_params)
    names = [p.name for p in exported.tokenizer_files]  # ours, and HF's made from it
    assert names == ["tokenizer.txt", "tokenizer.json", "tokenizer_config.json"]
    capsys.readouterr()
    assert main(["sample", "--ckpt", str(hf), "--prompt", "ab", "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.startswith("ab")
    assert main(["eval", "--ckpt", str(hf), "--data", str(tmp_path / "task")]) == 0
    assert capsys.readouterr().out.startswith("val: loss")


# --------------------------------------------------------------------------------------------
# against transformers
# --------------------------------------------------------------------------------------------


def hf_model(seed=0, **changes):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=4, vocab_size=97, n_positions=64, **changes
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # layer norms and biases away from their initial 1 and 0
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))
    return model


def hf_logits(model):
    import torch

    with torch.no_grad():
        return model(torch.tensor(TOKENS)).logits.float().numpy()


def test_logits_equal_transformers(tmp_path):
    model = hf_model()
    model.save_pretrained(tmp_path / "hf")
    ours = GPT.from_pretrained(tmp_path / "hf")
    assert np.abs(ours.logits(TOKENS) - hf_logits(model)).max() < 1e-5


def test_a_sharded_save_loads_identically(tmp_path):
    model = hf_model()
    model.save_pretrained(tmp_path / "one")
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert len(list((tmp_path / "sharded").glob("model-*.safetensors"))) > 1
    one = GPT.from_pretrained(tmp_path / "one")
    assert np.array_equal(GPT.from_pretrained(tmp_path / "sharded").flat_params, one.flat_params)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_saves_load_close(tmp_path, dtype):
    import torch

    model = hf_model()
    expected = hf_logits(model)
    model.to(getattr(torch, dtype)).save_pretrained(tmp_path / "hf")
    ours = GPT.from_pretrained(tmp_path / "hf")
    assert ours.dtype == np.float32
    widened = {k: v.float().numpy() for k, v in model.transformer.state_dict().items()}
    assert np.array_equal(ours.state_dict()["wpe.weight"], widened["wpe.weight"])  # exact
    assert np.abs(ours.logits(TOKENS) - expected).max() < 0.05


def test_the_accepted_activations_are_refs_gelu():
    pytest.importorskip("torch")
    activations = pytest.importorskip("transformers.activations")
    import torch

    x = np.linspace(-8, 8, 4001)
    ours, _ = gelu_forward(x)
    for name in GELU_TANH:
        theirs = activations.ACT2FN[name](torch.tensor(x)).numpy()
        assert np.abs(theirs - ours).max() < 1e-9, name
    exact = activations.ACT2FN["gelu"](torch.tensor(x)).numpy()  # erf: refused, and rightly
    assert np.abs(exact - ours).max() > 1e-4


def test_a_gelu_pytorch_tanh_model_computes_the_same(tmp_path):
    model = hf_model(activation_function="gelu_pytorch_tanh")
    model.save_pretrained(tmp_path / "hf")
    ours = GPT.from_pretrained(tmp_path / "hf")
    assert np.abs(ours.logits(TOKENS) - hf_logits(model)).max() < 1e-5


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"tie_word_embeddings": False}, "tie_word_embeddings"),
        ({"activation_function": "relu"}, "activation_function"),
        ({"activation_function": "gelu"}, "activation_function"),
        ({"n_inner": 48}, "n_inner"),
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    ],
)
def test_saved_models_this_gpt_cannot_represent_are_refused(tmp_path, changes, key):
    hf_model(**changes).save_pretrained(tmp_path / "hf")
    with pytest.raises(CheckpointError, match=key):
        load_checkpoint(tmp_path / "hf")


def test_another_model_type_is_refused(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=4, vocab_size=97,
    )  # fmt: skip
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path / "llama")
    with pytest.raises(CheckpointError, match=re.escape("model_type is 'llama'")):
        load_checkpoint(tmp_path / "llama")
    shutil.rmtree(tmp_path / "llama")
