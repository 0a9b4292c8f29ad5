"""LoRA adapters in PEFT's format, both ways: what a checkpoint and ``export --adapters`` write
is what ``peft`` writes and reads (same logits), what ``peft`` writes loads as a checkpoint and
fine-tunes further, every unsupported PEFT option is refused by name, and checkpoints of the
older layout (adapters.safetensors) still load and resume exactly."""

import json
import shutil

import numpy as np
import pytest

from tinygradlm.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    restore,
    save_checkpoint,
    save_model,
)
from tinygradlm.checkpoint.layout import sha256, write_safetensors
from tinygradlm.checkpoint.load import checkpoint_in
from tinygradlm.checkpoint.peft import adapter_config, lora_config_from_peft
from tinygradlm.cli import main
from tinygradlm.lora import TARGETS, LoRAConfig
from tinygradlm.model import GPT, GPTConfig
from tinygradlm.optim import AdamW
from tinygradlm.tokenizer import Tokenizer
from tinygradlm.train import FinetuneConfig, Trainer, export_adapters

CONFIG = GPTConfig(vocab_size=257, block_size=16, n_layer=2, n_head=2, n_embd=16)
SUBSET = ("attn.c_attn", "attn.c_proj")  # attn.c_proj without mlp.c_proj


def idx(seed=0):
    return np.random.default_rng(seed).integers(0, CONFIG.vocab_size, size=(2, 10))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A model-only checkpoint of a GPT with non-trivial weights and a byte tokenizer."""
    root = tmp_path_factory.mktemp("base")
    tokenizer = Tokenizer(
        {bytes([i]): i for i in range(256)}, special_tokens={"<|endoftext|>": 256}
    )
    tokenizer.save(root / "tokenizer.txt")
    model = GPT(CONFIG, seed=0)
    model.flat_params += (
        np.random.default_rng(1).normal(0, 0.05, model.flat_params.shape).astype(np.float32)
    )
    return save_model(root / "model", model, tokenizer_files=[root / "tokenizer.txt"])


def lora_checkpoint(base, out, targets=TARGETS, rank=2, alpha=4.0, step=3):
    """A training checkpoint of adapters (random, B ≠ 0) on ``base``, as a run writes it."""
    start = load_checkpoint(base)
    model = model_from_checkpoint(start)
    lora = model.add_lora(LoRAConfig(rank, alpha, targets), seed=2)
    lora.flat_params[...] = np.random.default_rng(3).normal(0, 0.5, lora.flat_params.shape)
    lora.base_model = str(base)
    opt = AdamW(lora.flat_params, lora.flat_grads, lr=1e-2)
    files = start.tokenizer_files
    return save_checkpoint(out, step, model, opt, {}, tokenizer_files=files), model, opt


def sft_data(directory):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(16):
        word = "".join(rng.choice(list("abc"), size=3))
        lines.append(json.dumps({"prompt": word + "=", "response": word[::-1]}) + "\n")
    (directory / "train.jsonl").write_text("".join(lines))
    return directory


def finetune(init_from, data, out, **overrides):
    values = {
        "init_from": str(init_from),
        "data": str(data),
        "out_dir": str(out),
        "batch_size": 4,
        "seq_len": 10,
        "max_steps": 2,
        "warmup_steps": 1,
        "eval_interval": 0,
        "checkpoint_interval": 2,
        "log_interval": 1000,
        **overrides,
    }
    lines = []
    trainer = Trainer(FinetuneConfig.from_dict(values), log=lines.append)
    trainer.train()
    return trainer, lines


# --------------------------------------------------------------------------------------------
# with peft: our files in PEFT, PEFT's files in ours
# --------------------------------------------------------------------------------------------


def peft_modules():
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return peft, transformers, torch


def torch_logits(torch, model, tokens):
    model.eval()
    with torch.no_grad():
        return model(torch.tensor(tokens)).logits.numpy()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("targets", [TARGETS, SUBSET], ids=["all", "attn"])
def test_peft_opens_our_checkpoint_with_our_logits(base, tmp_path, targets):
    peft, transformers, torch = peft_modules()
    path, model, _ = lora_checkpoint(base, tmp_path / "run", targets)
    ours = model_from_checkpoint(load_checkpoint(path)).logits(idx())
    np.testing.assert_array_equal(ours, model.logits(idx()))

    hf = transformers.GPT2LMHeadModel.from_pretrained(path)  # peft installed: adapters loaded
    wrapped = peft.PeftModel.from_pretrained(
        transformers.GPT2LMHeadModel.from_pretrained(path), path
    )
    plain_base = transformers.GPT2LMHeadModel.from_pretrained(base)
    separate = peft.PeftModel.from_pretrained(plain_base, path)
    for adapted in (hf, wrapped, separate):
        np.testing.assert_allclose(torch_logits(torch, adapted, idx()), ours, rtol=1e-5, atol=1e-5)
    adapted_names = {n for n, _ in separate.named_modules() if n.endswith(".lora_A")}
    assert len(adapted_names) == CONFIG.n_layer * len(targets)
    assert not any("mlp.c_proj" in n for n in adapted_names) or "mlp.c_proj" in targets
    base_logits = torch_logits(torch, transformers.GPT2LMHeadModel.from_pretrained(base), idx())
    assert np.abs(base_logits - ours).max() > 1e-2  # the adapters do change the function


@pytest.mark.filterwarnings("ignore")
def test_our_adapter_files_are_what_peft_writes(base, tmp_path):
    peft, transformers, _ = peft_modules()
    path, _, _ = lora_checkpoint(base, tmp_path / "run", SUBSET, rank=2, alpha=4.0)
    hf = transformers.GPT2LMHeadModel.from_pretrained(base)
    config = peft.LoraConfig(
        r=2, lora_alpha=4, target_modules=list(SUBSET), fan_in_fan_out=True, task_type="CAUSAL_LM"
    )
    peft.get_peft_model(hf, config).save_pretrained(tmp_path / "peft")
    theirs = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    ours = json.loads((path / "adapter_config.json").read_text())
    assert list(ours) == sorted(theirs)
    assert {k: v for k, v in ours.items()} == {**theirs, "target_modules": list(SUBSET)}
    assert sorted(theirs["target_modules"]) == sorted(SUBSET)

    import safetensors

    def header(file):
        with safetensors.safe_open(file, framework="np") as f:
            return {k: (f.get_slice(k).get_dtype(), f.get_slice(k).get_shape()) for k in f.keys()}

    peft_header = header(tmp_path / "peft" / "adapter_model.safetensors")
    assert header(path / "adapter_model.safetensors") == peft_header
    assert "base_model.model.transformer.h.0.attn.c_proj.lora_A.weight" in peft_header


@pytest.mark.filterwarnings("ignore")
def test_adapters_peft_wrote_load_with_peft_logits_and_fine_tune_further(base, tmp_path):
    peft, transformers, torch = peft_modules()
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel.from_pretrained(base)  # base_model_name_or_path: base
    # PEFT's defaults: no task_type, fan_in_fan_out false (PEFT sets it true for Conv1D)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"])
    adapted = peft.get_peft_model(hf, config)
    for name, p in adapted.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    adapted.save_pretrained(tmp_path / "peft")
    assert not (tmp_path / "peft" / "config.json").exists()
    want = torch_logits(torch, adapted, idx())

    assert checkpoint_in(tmp_path / "peft") == (tmp_path / "peft", None)
    ckpt = load_checkpoint(tmp_path / "peft")
    # "c_proj" is both attn.c_proj and mlp.c_proj, as PEFT matches it
    assert ckpt.lora == LoRAConfig(4, 8.0, ("attn.c_attn", "attn.c_proj", "mlp.c_proj"))
    assert ckpt.base_model == str(base) and ckpt.optimizer_state is None
    np.testing.assert_allclose(
        model_from_checkpoint(ckpt).logits(idx()), want, rtol=1e-5, atol=1e-5
    )

    # continue training those adapters, on the original base, unmerged
    trainer, lines = finetune(tmp_path / "peft", sft_data(tmp_path / "sft"), tmp_path / "run")
    assert any("continuing its LoRA adapters" in line for line in lines)
    assert trainer.model.lora.config == ckpt.lora
    for name, weight in load_checkpoint(base).model_state.items():
        np.testing.assert_array_equal(trainer.model.params[name][: weight.shape[0]], weight)
    out = latest_checkpoint(tmp_path / "run")
    written = json.loads((out / "adapter_config.json").read_text())
    assert written["base_model_name_or_path"] == str(base)
    # the new adapters still apply to the original base, in PEFT as in ours
    again = peft.PeftModel.from_pretrained(transformers.GPT2LMHeadModel.from_pretrained(base), out)
    np.testing.assert_allclose(
        torch_logits(torch, again, idx()), trainer.model.logits(idx()), rtol=1e-5, atol=1e-5
    )


@pytest.mark.filterwarnings("ignore")
def test_export_adapters_writes_a_peft_directory_of_the_original_base(base, tmp_path, capsys):
    peft, transformers, torch = peft_modules()
    _, model, _ = lora_checkpoint(base, tmp_path / "run")
    out = tmp_path / "adapters"
    assert main(["export", "--ckpt", str(tmp_path / "run"), "--out", str(out), "--adapters"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    want = model.logits(idx())
    for adapted in (
        peft.PeftModel.from_pretrained(transformers.GPT2LMHeadModel.from_pretrained(base), out),
        transformers.GPT2LMHeadModel.from_pretrained(out),  # the base from base_model_name_or_path
    ):
        np.testing.assert_allclose(torch_logits(torch, adapted, idx()), want, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# without peft: the round trip, continuing or merging, refusals, the older layout
# --------------------------------------------------------------------------------------------


def test_adapters_round_trip_through_an_adapter_directory_exactly(base, tmp_path):
    path, model, _ = lora_checkpoint(base, tmp_path / "run", SUBSET)
    ckpt = load_checkpoint(path)
    assert ckpt.base_model == str(base) and ckpt.lora == model.lora.config
    fresh = GPT(CONFIG, seed=9)
    fresh.add_lora(ckpt.lora, seed=9)
    fresh_opt = AdamW(fresh.lora.flat_params, fresh.lora.flat_grads, lr=1.0)
    restore(fresh, fresh_opt, ckpt)
    np.testing.assert_array_equal(fresh.lora.flat_params, model.lora.flat_params)

    out = export_adapters(path, tmp_path / "adapters")
    values = json.loads((out / "adapter_config.json").read_text())
    assert values["base_model_name_or_path"] == str(base) and values["r"] == 2
    assert values["target_modules"] == list(SUBSET) and values["fan_in_fan_out"] is True
    again = load_checkpoint(out)
    assert again.step == 3 and again.lora == ckpt.lora and again.optimizer_state is None
    names = [p.name for p in again.tokenizer_files]  # ours, and HF's made from it
    assert names == ["tokenizer.txt", "tokenizer.json", "tokenizer_config.json"]
    for name, array in ckpt.adapter_state.items():
        np.testing.assert_array_equal(again.adapter_state[name], array)
    np.testing.assert_array_equal(model_from_checkpoint(again).logits(idx()), model.logits(idx()))
    with pytest.raises(CheckpointError, match="already exists"):
        export_adapters(path, out)
    with pytest.raises(CheckpointError, match="no LoRA adapters to export"):
        export_adapters(base, tmp_path / "none")
    (path / "config.json").unlink()  # a damaged checkpoint, not an adapter directory
    with pytest.raises(CheckpointError, match=r"config\.json: missing"):
        load_checkpoint(path)


def test_other_lora_settings_merge_and_start_new_adapters(base, tmp_path):
    path, _, _ = lora_checkpoint(base, tmp_path / "lora", SUBSET)
    data = sft_data(tmp_path / "sft")
    trainer, lines = finetune(path, data, tmp_path / "run", lora_rank=3, lora_targets=["mlp.c_fc"])
    assert any("merged into the base weights" in line for line in lines)
    assert trainer.model.lora.config.targets == ("mlp.c_fc",)
    out = latest_checkpoint(tmp_path / "run")
    # no directory holds the merged base: the checkpoint's own model.safetensors is it
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] is None
    exported = export_adapters(out, tmp_path / "adapters")
    values = json.loads((exported / "adapter_config.json").read_text())
    assert values["base_model_name_or_path"] == str(out.resolve())
    np.testing.assert_allclose(
        model_from_checkpoint(load_checkpoint(exported)).logits(idx()),
        trainer.model.logits(idx()),
        rtol=1e-6,
        atol=1e-6,
    )
    # equal settings continue the adapters: lora_rank=2, alpha 4, the same targets
    trainer, lines = finetune(
        path, data, tmp_path / "same", lora_rank=2, lora_alpha=4.0, lora_targets=list(SUBSET)
    )
    assert any("continuing its LoRA adapters" in line for line in lines)
    # lora_rank=0 trains the merged base itself
    trainer, lines = finetune(path, data, tmp_path / "full", lora_rank=0)
    assert trainer.model.lora is None and any("merged" in line for line in lines)


def exported(base, tmp_path, targets=TARGETS):
    path, _, _ = lora_checkpoint(base, tmp_path / "run", targets)
    return export_adapters(path, tmp_path / "adapters")


def edit_config(directory, **changes):
    file = directory / "adapter_config.json"
    values = json.loads(file.read_text())
    values.update(changes)
    file.write_text(json.dumps(values))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"use_dora": True}, "use_dora is True"),
        ({"rank_pattern": {"c_attn": 4}}, "rank_pattern is"),
        ({"alpha_pattern": {"c_attn": 4}}, "alpha_pattern is"),
        ({"layers_to_transform": [0]}, "layers_to_transform is"),
        ({"bias": "all"}, "bias is 'all'"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save is"),
        ({"fan_in_fan_out": False}, "fan_in_fan_out is False: GPT-2's projections are Conv1D"),
        ({"use_rslora": True}, "use_rslora is True"),
        ({"peft_type": "IA3"}, "peft_type is 'IA3'"),
        ({"task_type": "SEQ_CLS"}, "task_type is 'SEQ_CLS'"),
        ({"init_lora_weights": "pissa"}, "init_lora_weights is 'pissa'"),
        ({"target_modules": ["wte"]}, r"'wte' adapts transformer.wte"),
        ({"target_modules": ["c_attn", "lm_head"]}, r"'lm_head' adapts lm_head"),
        ({"target_modules": ["h.0.attn.c_attn"]}, r"blocks \[0\] of 2"),
        ({"target_modules": ["q_proj"]}, "'q_proj' names no module"),
        ({"a_future_option": 3}, "a_future_option is 3: not supported"),
        ({"base_model_name_or_path": "gpt2"}, "'gpt2' is not a local directory .*downloads"),
        ({"base_model_name_or_path": None}, "base_model_name_or_path is None"),
        ({"r": 3}, r"lora_A.weight: shape \(2, 16\), expected \(3, 16\)"),
    ],
)
def test_unsupported_adapters_are_refused_by_name(base, tmp_path, changes, message):
    out = exported(base, tmp_path)
    edit_config(out, **changes)
    with pytest.raises(CheckpointError, match=message) as caught:
        load_checkpoint(out)
    assert "adapter" in str(caught.value)


def test_what_peft_accepts_and_we_model_is_accepted(base, tmp_path):
    out = exported(base, tmp_path)
    edit_config(out, lora_dropout=0.1, target_modules="all-linear", inference_mode=False)
    assert load_checkpoint(out).lora.targets == TARGETS
    # a run directory as the base: its newest checkpoint, whose model.safetensors is the base
    edit_config(out, base_model_name_or_path=str(tmp_path / "run"))
    assert load_checkpoint(out).base_model == str(latest_checkpoint(tmp_path / "run"))
    edit_config(out, target_modules=r"transformer\.h\.\d+\.(attn|mlp)\.c_(attn|proj|fc)")
    assert load_checkpoint(out).lora.targets == TARGETS
    values = adapter_config(LoRAConfig(2, 2.5, ("mlp.c_proj",)), None)
    assert values["lora_alpha"] == 2.5 and values["target_modules"] == ["mlp.c_proj"]
    assert lora_config_from_peft(out, values, 2) == LoRAConfig(2, 2.5, ("mlp.c_proj",))


def test_a_different_base_or_damaged_tensors_are_refused(base, tmp_path):
    out = exported(base, tmp_path)
    other = save_model(tmp_path / "other", GPT(CONFIG, seed=5))
    edit_config(out, base_model_name_or_path=str(other))
    with pytest.raises(CheckpointError, match="holds other weights than these adapters"):
        load_checkpoint(out)
    edit_config(out, base_model_name_or_path=str(out))
    with pytest.raises(CheckpointError, match="is itself an adapter directory"):
        load_checkpoint(out)
    edit_config(out, base_model_name_or_path=str(base))
    file = out / "adapter_model.safetensors"
    with open(file, "r+b") as f:  # the last float of the last tensor: NaN
        f.seek(-4, 2)
        f.write(np.array([np.nan], dtype=np.float32).tobytes())
    with pytest.raises(CheckpointError, match="non-finite"):
        load_checkpoint(out)
    file.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(out)


def test_a_checkpoint_of_the_older_layout_loads_and_resumes_exactly(base, tmp_path):
    """adapters.safetensors (our names, the LoRAConfig in the header) as written before the
    PEFT files: built here from a new checkpoint, the manifest resealed."""
    path, model, opt = lora_checkpoint(base, tmp_path / "run", SUBSET)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (path / name).unlink()
    tensors = {k: v.copy() for k, v in model.lora.state_dict().items()}
    metadata = {"format": "pt", "lora": json.dumps(model.lora.config.to_dict())}
    write_safetensors(path / "adapters.safetensors", tensors, metadata)
    manifest = json.loads((path / "manifest.json").read_text())
    files = {k: v for k, v in manifest["files"].items() if not k.startswith("adapter_")}
    file = path / "adapters.safetensors"
    files["adapters.safetensors"] = {"bytes": file.stat().st_size, "sha256": sha256(file)}
    manifest["files"] = files
    (path / "manifest.json").write_text(json.dumps(manifest))

    ckpt = load_checkpoint(path)
    assert ckpt.lora == model.lora.config and ckpt.base_model is None
    fresh = GPT(CONFIG, seed=7)
    fresh.add_lora(ckpt.lora, seed=7)
    fresh_opt = AdamW(fresh.lora.flat_params, fresh.lora.flat_grads, lr=1e-2)
    restore(fresh, fresh_opt, ckpt)
    x = np.random.default_rng(0).integers(0, CONFIG.vocab_size, size=(2, 6))
    for m, o in ((model, opt), (fresh, fresh_opt)):  # one more step each: identical
        m.forward_backward(x[:, :-1], x[:, 1:])
        o.step()
    np.testing.assert_array_equal(fresh.lora.flat_params, model.lora.flat_params)
    np.testing.assert_array_equal(fresh.flat_params, model.flat_params)
    np.testing.assert_array_equal(fresh_opt.v, opt.v)
    # its adapters export with the checkpoint itself as the base
    out = export_adapters(path, tmp_path / "adapters")
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        path.resolve()
    )
    np.testing.assert_array_equal(
        model_from_checkpoint(load_checkpoint(out)).logits(idx()),
        model_from_checkpoint(ckpt).logits(idx()),
    )
    shutil.rmtree(out)


def test_the_commands_take_an_adapter_directory_where_they_take_a_checkpoint(
    base, tmp_path, capsys
):
    from tinygradlm import backend

    path, _, _ = lora_checkpoint(base, tmp_path / "run", SUBSET)
    out = export_adapters(path, tmp_path / "adapters")
    data = sft_data(tmp_path / "sft")
    capsys.readouterr()
    for command in (["sample", "--prompt", "abc="], ["eval", "--data", str(data / "train.jsonl")]):
        assert main([*command, "--ckpt", str(out)]) == 0
        from_dir = capsys.readouterr().out
        assert main([*command, "--ckpt", str(path)]) == 0
        assert from_dir == capsys.readouterr().out  # the same model: the same sample and loss
    with backend.use_kernels(backend.kernels_name()):  # the CLI sets kernels: restore after
        argv = ["finetune", "--from", str(out), "--data", str(data), f"out_dir='{tmp_path / 'ft'}'"]
        settings = ["max_steps=2", "batch_size=4", "seq_len=10", "eval_interval=0"]
        assert main(argv + settings) == 0
    assert "continuing its LoRA adapters" in capsys.readouterr().out
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "ft"))
    assert ckpt.lora.targets == SUBSET and ckpt.base_model == str(base)
