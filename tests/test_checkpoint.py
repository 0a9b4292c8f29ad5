"""tinygradlm.checkpoint: round trips are bit-identical, writes are atomic (a crash or a SIGKILL
leaves the previous checkpoint intact), non-finite state is never written, and missing,
truncated, tampered or pickled files are refused with the file named, without running code."""

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from safetensors import safe_open

import tinygradlm.atomic as atomic
from tinygradlm.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    restore,
    save_checkpoint,
)
from tinygradlm.checkpoint.layout import write_safetensors
from tinygradlm.model import GPT, GPTConfig
from tinygradlm.optim import AdamW, clip_grad_norm, lr_schedule

CONFIG = GPTConfig(
    vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16, padded_vocab_size=56
)


def train(model, opt, rng, steps):
    """``steps`` training steps on batches drawn from ``rng``, lr from the schedule."""
    for _ in range(steps):
        x = rng.integers(0, CONFIG.vocab_size, size=(2, 9))
        model.forward_backward(x[:, :-1], x[:, 1:])
        clip_grad_norm(model.flat_grads, 1.0)
        lr = lr_schedule(opt.step_count, max_lr=1e-2, min_lr=1e-3, warmup_steps=2, max_steps=8)
        opt.step(lr=lr)


def trained(steps=2, seed=0):
    model = GPT(CONFIG, seed=seed)
    opt = AdamW.for_model(model, lr=1e-2)
    rng = np.random.default_rng(seed)
    train(model, opt, rng, steps)
    return model, opt, rng


def trainer_state(rng, step):
    return {
        "step": step,
        "rng": rng.bit_generator.state,
        "loader": {"shard": 1, "position": np.int64(4096)},
        "config": {"max_lr": 1e-2, "name": "test run", "tags": ["a", "b"]},
    }


def save(run_dir, step=2, **kwargs):
    model, opt, rng = trained(steps=step)
    path = save_checkpoint(run_dir, step, model, opt, trainer_state(rng, step), **kwargs)
    return path, model, opt


def rewrite_manifest(path):
    """Make manifest.json agree with the files as they are now (to test the layer below)."""
    manifest = json.loads((path / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        data = (path / name).read_bytes()
        entry["bytes"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (path / "manifest.json").write_text(json.dumps(manifest))


def refused(path, *fragments):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


# --------------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------------


def test_checkpoint_round_trip_is_bit_identical(tmp_path):
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text('{"vocab": {}}')
    path, model, opt = save(tmp_path / "run", tokenizer_files=[tokenizer])
    assert path == tmp_path / "run" / "ckpt_00000002"
    assert sorted(os.listdir(path)) == [
        "config.json",
        "manifest.json",
        "model.safetensors",
        "optimizer.safetensors",
        "tokenizer.json",
        "trainer.json",
    ]
    ckpt = load_checkpoint(path)
    assert ckpt.step == 2 and ckpt.config == CONFIG
    assert ckpt.tokenizer_files == [path / "tokenizer.json"]
    assert (path / "tokenizer.json").read_text() == '{"vocab": {}}'

    fresh = GPT(CONFIG, seed=99)
    fresh_opt = AdamW.for_model(fresh, lr=123.0, weight_decay=0.0)
    restore(fresh, fresh_opt, ckpt)
    np.testing.assert_array_equal(fresh.flat_params, model.flat_params)  # padding rows too
    np.testing.assert_array_equal(fresh_opt.m, opt.m)
    np.testing.assert_array_equal(fresh_opt.v, opt.v)
    assert fresh_opt.step_count == opt.step_count == 2
    assert (fresh_opt.lr, fresh_opt.weight_decay, fresh_opt.eps) == (opt.lr, 0.1, 1e-8)

    _, _, rng = trained(steps=2)
    expected = json.loads(json.dumps(trainer_state(rng, 2), default=int))
    assert ckpt.trainer_state == expected
    restored_rng = np.random.default_rng()
    restored_rng.bit_generator.state = ckpt.trainer_state["rng"]
    assert restored_rng.random() == rng.random()


def checkpoint_bytes(path):
    return {file.name: file.read_bytes() for file in sorted(path.iterdir())}


def test_the_same_state_is_written_as_the_same_bytes(tmp_path):
    """Canonical files: safetensors headers with sorted metadata (safetensors' own writer takes
    their order from a Rust HashMap, which varies), one JSON format; no timestamps."""
    model, opt, rng = trained(steps=2)
    written = []
    for run in ("a", "b"):
        path = save_checkpoint(tmp_path / run, 2, model, opt, trainer_state(rng, 2))
        written.append(checkpoint_bytes(path))
    assert written[0] == written[1]
    data = written[0]["optimizer.safetensors"]
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    assert list(header)[1:] == ["m", "step", "v"]


def test_checkpoints_written_by_safetensors_own_writer_still_load(tmp_path):
    path, model, opt = save(tmp_path)
    for name in ("model.safetensors", "optimizer.safetensors"):
        with safe_open(path / name, "np") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}
            metadata = f.metadata()
        safetensors.numpy.save_file(tensors, path / name, metadata=metadata)
    rewrite_manifest(path)
    ckpt = load_checkpoint(path)
    fresh = GPT(CONFIG, seed=99)
    fresh_opt = AdamW.for_model(fresh, lr=123.0)
    restore(fresh, fresh_opt, ckpt)
    np.testing.assert_array_equal(fresh.flat_params, model.flat_params)
    np.testing.assert_array_equal(fresh_opt.v, opt.v)
    assert (fresh_opt.lr, fresh_opt.beta2) == (opt.lr, opt.beta2)


def test_resumed_run_ends_bit_identical_to_an_uninterrupted_one(tmp_path):
    model, opt, rng = trained(steps=5)

    first, first_opt, first_rng = trained(steps=2)
    path = save_checkpoint(tmp_path, 2, first, first_opt, trainer_state(first_rng, 2))
    del first, first_opt, first_rng  # "killed"
    ckpt = load_checkpoint(latest_checkpoint(tmp_path))
    resumed = GPT(CONFIG, seed=7)
    resumed_opt = AdamW.for_model(resumed, lr=1.0)
    restore(resumed, resumed_opt, ckpt)
    resumed_rng = np.random.default_rng()
    resumed_rng.bit_generator.state = ckpt.trainer_state["rng"]
    train(resumed, resumed_opt, resumed_rng, 3)

    assert path == latest_checkpoint(tmp_path)
    np.testing.assert_array_equal(resumed.flat_params, model.flat_params)
    np.testing.assert_array_equal(resumed_opt.v, opt.v)
    assert resumed_rng.random() == rng.random()  # the data stream continues where it was


def test_restore_refuses_a_model_of_another_config(tmp_path):
    path, _, _ = save(tmp_path)
    other = GPT(GPTConfig(**{**CONFIG.to_dict(), "n_layer": 1}))
    with pytest.raises(CheckpointError, match="n_layer: model 1, checkpoint 2"):
        restore(other, None, load_checkpoint(path))


def test_config_json_is_hf_gpt2_config_with_ours_inside(tmp_path):
    path, _, _ = save(tmp_path, extra_config={"bos_token_id": 49, "eos_token_id": 49})
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["architectures"] == ["GPT2LMHeadModel"]
    assert (config["n_positions"], config["n_embd"], config["n_layer"]) == (16, 16, 2)
    assert config["vocab_size"] == 50 and config["activation_function"] == "gelu_new"
    assert config["tie_word_embeddings"] is True and config["bos_token_id"] == 49
    assert config["tinygradlm"] == CONFIG.to_dict()
    with safetensors.safe_open(path / "model.safetensors", framework="np") as f:
        assert "lm_head.weight" not in f.keys()  # tied to wte
        assert f.get_slice("wte.weight").get_shape() == [50, 16]  # padding rows not stored
        assert f.metadata() == {"format": "pt"}
    with pytest.raises(CheckpointError, match="may not set n_embd"):
        save(tmp_path, step=3, extra_config={"n_embd": 32})


# --------------------------------------------------------------------------------------------
# atomic writes, keep_last, leftovers
# --------------------------------------------------------------------------------------------


def test_keep_last_deletes_the_oldest(tmp_path):
    model, opt, rng = trained(steps=1)
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, model, opt, trainer_state(rng, step), keep_last=2)
    assert sorted(os.listdir(tmp_path)) == ["ckpt_00000004", "ckpt_00000005"]
    save_checkpoint(tmp_path, 6, model, opt, trainer_state(rng, 6), keep_last=None)
    assert len(os.listdir(tmp_path)) == 3


def test_an_existing_checkpoint_is_not_overwritten(tmp_path):
    path, model, opt = save(tmp_path)
    before = (path / "manifest.json").read_bytes()
    with pytest.raises(CheckpointError, match="already exists"):
        save_checkpoint(tmp_path, 2, model, opt, {})
    assert (path / "manifest.json").read_bytes() == before


@pytest.mark.parametrize("crash_at", ["trainer.json", "rename"])
def test_a_crash_mid_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch, crash_at):
    previous, model, opt = save(tmp_path)

    def crash(*args, **kwargs):
        raise OSError("disk on fire")

    if crash_at == "rename":  # every file written and synced, the rename never happens
        monkeypatch.setattr(atomic.os, "replace", crash)
    else:  # model.safetensors and optimizer.safetensors are written, the JSON is not
        real = Path.write_text

        def write_then_crash(path, text, *args, **kwargs):
            if path.name == crash_at:
                crash()
            return real(path, text, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", write_then_crash)
    with pytest.raises(OSError, match="disk on fire"):
        save_checkpoint(tmp_path, 3, model, opt, {})
    monkeypatch.undo()

    assert sorted(os.listdir(tmp_path)) == ["ckpt_00000002"]  # no ckpt_3, no temporary left
    assert latest_checkpoint(tmp_path) == previous
    load_checkpoint(previous)


def test_latest_checkpoint_ignores_leftovers_and_the_next_save_removes_them(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / "absent") is None
    previous, model, opt = save(tmp_path)
    # a crashed writer's temporary directory (complete but never renamed) and a ckpt_ directory
    # without a manifest (not one we write, but a copy interrupted by hand)
    leftover = tmp_path / ".tmp-ckpt_00000009-999999999"
    leftover.mkdir()
    (leftover / "manifest.json").write_text("{}")
    (tmp_path / "ckpt_00000010").mkdir()
    (tmp_path / "ckpt_00000010" / "model.safetensors").write_bytes(b"partial")
    (tmp_path / "ckpt_notastep").mkdir()
    assert latest_checkpoint(tmp_path) == previous
    save_checkpoint(tmp_path, 3, model, opt, {})
    assert not leftover.exists()
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt_00000003"


def test_a_sigkill_mid_write_leaves_the_previous_checkpoint(tmp_path):
    previous, _, _ = save(tmp_path)
    # a child process writes step 3 and is SIGKILLed just before the manifest is synced
    script = textwrap.dedent(
        f"""
        import os, signal
        import tinygradlm.checkpoint as checkpoint
        from tinygradlm.model import GPT, GPTConfig
        from tinygradlm.optim import AdamW

        real = checkpoint.save.fsync_file
        def fsync_then_die(path):
            if path.name == "manifest.json":
                os.kill(os.getpid(), signal.SIGKILL)
            real(path)
        checkpoint.save.fsync_file = fsync_then_die
        model = GPT(GPTConfig(**{CONFIG.to_dict()!r}))
        optimizer = AdamW.for_model(model, lr=1.0)
        checkpoint.save_checkpoint({str(tmp_path)!r}, 3, model, optimizer, {{}})
        """
    )
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    names = os.listdir(tmp_path)
    assert "ckpt_00000003" not in names
    assert any(name.startswith(".tmp-ckpt_00000003-") for name in names)
    assert latest_checkpoint(tmp_path) == previous
    load_checkpoint(previous)


# --------------------------------------------------------------------------------------------
# refusing to write
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["parameters", "AdamW m", "AdamW v"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_state_is_never_written(tmp_path, where, value):
    model, opt, rng = trained(steps=1)
    array = {"parameters": model.flat_params, "AdamW m": opt.m, "AdamW v": opt.v}[where]
    array[17] = value
    with pytest.raises(CheckpointError, match=f"{where} has 1 non-finite value.*index 17"):
        save_checkpoint(tmp_path / "run", 1, model, opt, trainer_state(rng, 1))
    assert not (tmp_path / "run").exists()


def test_a_non_finite_learning_rate_is_never_written(tmp_path):
    model, opt, rng = trained(steps=1)
    opt.lr = float("inf")
    with pytest.raises(CheckpointError, match="AdamW lr is inf"):
        save_checkpoint(tmp_path / "run", 1, model, opt, trainer_state(rng, 1))
    assert not (tmp_path / "run").exists()


def test_unwritable_trainer_state_is_refused_before_writing(tmp_path):
    model, opt, _ = trained(steps=1)
    for state, match in [
        ({"loss": float("nan")}, "Out of range float"),
        ({"weights": np.zeros(3)}, "ndarray is not JSON-able"),
        ({"step": 5}, "trainer_state\\['step'\\] is 5"),
    ]:
        with pytest.raises(CheckpointError, match=match):
            save_checkpoint(tmp_path, 1, model, opt, state)
    with pytest.raises(CheckpointError, match="does not exist"):
        save_checkpoint(tmp_path, 1, model, opt, {}, tokenizer_files=[tmp_path / "nope.json"])
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------------
# refusing to read
# --------------------------------------------------------------------------------------------


def test_a_truncated_file_is_refused_naming_it(tmp_path):
    path, _, _ = save(tmp_path)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    refused(path, "model.safetensors: truncated", f"{len(data) // 2} bytes")
    rewrite_manifest(path)  # the manifest agrees: the safetensors reader notices
    refused(path, "model.safetensors: not a valid safetensors file")


def test_a_flipped_byte_is_refused_by_its_hash(tmp_path):
    path, _, _ = save(tmp_path)
    data = bytearray((path / "optimizer.safetensors").read_bytes())
    data[-5] ^= 0x01
    (path / "optimizer.safetensors").write_bytes(bytes(data))
    refused(path, "optimizer.safetensors: SHA-256 differs")


def test_bad_json_is_refused_naming_the_file_at_both_layers(tmp_path):
    path, _, _ = save(tmp_path)
    (path / "trainer.json").write_text('{"step": 2, "rng": ')
    refused(path, "trainer.json: truncated")
    rewrite_manifest(path)
    refused(path, "trainer.json: not valid JSON: Expecting value: line 1")
    (path / "trainer.json").write_text('{"step": 2, "x": NaN}')
    rewrite_manifest(path)
    refused(path, "trainer.json: not valid JSON: NaN is not a JSON value")
    (path / "trainer.json").write_text('{"step": 7}')
    rewrite_manifest(path)
    refused(path, "trainer.json: step is 7 but manifest.json says 2")


def test_a_missing_or_wrong_shaped_tensor_is_refused_listing_every_difference(tmp_path):
    path, model, _ = save(tmp_path)
    tensors = {k: v.copy() for k, v in model.state_dict().items()}
    del tensors["h.1.ln_1.bias"]
    tensors["wpe.weight"] = np.zeros((8, 16), np.float32)
    tensors["h.0.mlp.c_fc.weight"] = tensors["h.0.mlp.c_fc.weight"].astype(np.float64)
    tensors["lm_head.weight"] = tensors["wte.weight"]
    safetensors.numpy.save_file(tensors, path / "model.safetensors")
    rewrite_manifest(path)
    refused(
        path,
        "model.safetensors: tensors do not match the config",
        "missing tensor h.1.ln_1.bias",
        "wpe.weight: shape (8, 16), expected (16, 16)",
        "h.0.mlp.c_fc.weight: dtype F64, expected float32",
        "unexpected tensor lm_head.weight",
    )


def test_non_finite_tensors_in_a_consistent_checkpoint_are_refused(tmp_path):
    path, _, opt = save(tmp_path)
    v = opt.v.copy()
    v[3] = np.inf
    step = np.array([2], np.int64)
    safetensors.numpy.save_file({"m": opt.m, "v": v, "step": step}, path / "optimizer.safetensors")
    rewrite_manifest(path)
    refused(path, "optimizer.safetensors: tensor v has non-finite values")


def test_missing_files_are_refused_naming_them(tmp_path):
    path, _, _ = save(tmp_path)
    (path / "config.json").unlink()
    refused(path, "config.json: missing")
    (path / "manifest.json").unlink()
    refused(path, "manifest.json: missing (an incomplete checkpoint")
    refused(tmp_path / "nowhere", "no such checkpoint directory")


def test_a_malformed_manifest_is_refused(tmp_path):
    path, _, _ = save(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text("{")
    refused(path, "manifest.json: not valid JSON")
    del manifest["files"]["trainer.json"]
    manifest["files"]["../../etc/passwd"] = {"bytes": 1, "sha256": "0"}
    (path / "manifest.json").write_text(json.dumps(manifest))
    refused(path, "manifest.json: malformed", "does not list trainer.json", "not a plain file")


def test_an_inconsistent_config_is_refused_naming_it(tmp_path):
    path, _, _ = save(tmp_path)
    config = json.loads((path / "config.json").read_text())
    config["n_embd"] = 32
    (path / "config.json").write_text(json.dumps(config))
    rewrite_manifest(path)
    refused(path, "config.json: inconsistent", "n_embd is 32")
    config["tinygradlm"]["n_embd"] = 17
    (path / "config.json").write_text(json.dumps(config))
    rewrite_manifest(path)
    refused(path, "config.json: invalid 'tinygradlm' config", "divisible by n_head")


class _Exploit:
    """Unpickling this calls open(marker, "w"): a marker file appears if the code ever runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_is_never_unpickled(tmp_path, monkeypatch):
    path, _, _ = save(tmp_path / "run")
    marker = tmp_path / "code-ran"
    payload = pickle.dumps(_Exploit(marker))
    pickle.loads(pickle.dumps(_Exploit(tmp_path / "control")))  # the payload does work...
    assert (tmp_path / "control").exists()

    # ...but not here: in place of optimizer.safetensors, as is and behind a matching manifest
    (path / "optimizer.safetensors").write_bytes(payload)
    refused(path, "optimizer.safetensors: truncated")
    rewrite_manifest(path)
    refused(path, "optimizer.safetensors: not a valid safetensors file")
    assert not marker.exists()

    # pickles beside the real files, even listed in the manifest, are only hashed
    good, _, _ = save(tmp_path / "good")
    (good / "tokenizer.pkl").write_bytes(payload)
    np.save(good / "optimizer.npy", np.array([_Exploit(marker)], dtype=object), allow_pickle=True)
    manifest = json.loads((good / "manifest.json").read_text())
    manifest["files"]["tokenizer.pkl"], manifest["files"]["optimizer.npy"] = {}, {}
    (good / "manifest.json").write_text(json.dumps(manifest))
    rewrite_manifest(good)

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint reader called a pickle loader")

    for module, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (np, "load")]:
        monkeypatch.setattr(module, name, forbidden)
    ckpt = load_checkpoint(good)
    assert sorted(p.name for p in ckpt.tokenizer_files) == ["optimizer.npy", "tokenizer.pkl"]
    assert not marker.exists()


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


# --------------------------------------------------------------------------------------------
# the wider ecosystem
# --------------------------------------------------------------------------------------------


def test_transformers_loads_the_checkpoint_with_the_same_logits(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    path, model, _ = save(tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(path)
    hf.eval()
    idx = np.random.default_rng(0).integers(0, CONFIG.vocab_size, size=(2, CONFIG.block_size))
    with torch.no_grad():
        theirs = hf(torch.tensor(idx)).logits.numpy()
    np.testing.assert_allclose(model.logits(idx), theirs, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------
# validation before allocation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["manifest.json", "config.json", "trainer.json"])
def test_deeply_nested_json_is_refused_naming_the_file(tmp_path, name):
    path, _, _ = save(tmp_path)
    (path / name).write_text("[" * 100_000 + "]" * 100_000)
    if name != "manifest.json":
        rewrite_manifest(path)
    refused(path, f"{name}: not valid JSON: nested too deeply")


def test_a_config_too_large_for_memory_is_refused_with_an_estimate_before_allocating(tmp_path):
    import time
    import tracemalloc

    path, _, _ = save(tmp_path)
    hf = json.loads((path / "config.json").read_text())
    hf["n_layer"] = hf["tinygradlm"]["n_layer"] = 10**9
    (path / "config.json").write_text(json.dumps(hf))
    rewrite_manifest(path)
    tracemalloc.start()
    start = time.perf_counter()
    message = refused(path, "config.json: the model (n_layer=1000000000", "needs about")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - start < 2 and peak < 16 << 20, message


def test_a_config_larger_than_its_model_file_is_refused(tmp_path):
    path, _, _ = save(tmp_path)
    hf = json.loads((path / "config.json").read_text())
    hf["n_layer"] = hf["tinygradlm"]["n_layer"] = 50
    (path / "config.json").write_text(json.dumps(hf))
    rewrite_manifest(path)
    refused(path, "config.json: describes a model of", "but model.safetensors has only")


def test_an_untied_lm_head_is_refused_and_a_tied_one_accepted():
    model = GPT(CONFIG, seed=0)
    state = {f"transformer.{k}": v.copy() for k, v in GPT(CONFIG, seed=1).state_dict().items()}
    state["lm_head.weight"] = state["transformer.wte.weight"].copy()
    model.load_state_dict(state)
    np.testing.assert_array_equal(
        model.params["h.0.attn.c_attn.weight"], state["transformer.h.0.attn.c_attn.weight"]
    )
    state["lm_head.weight"][3, 1] += 1.0
    with pytest.raises(ValueError, match=r"lm_head\.weight differs from wte\.weight"):
        GPT(CONFIG, seed=0).load_state_dict(state)


def test_a_deeply_nested_lora_header_is_refused(tmp_path):
    from tinygradlm.lora import LoRAConfig

    model, opt, rng = trained()
    model.add_lora(LoRAConfig(rank=2, alpha=4.0))
    opt = AdamW(model.lora.flat_params, model.lora.flat_grads, lr=1e-2)
    path = save_checkpoint(tmp_path, 2, model, opt, trainer_state(rng, 2))
    file = path / "adapter_model.safetensors"
    tensors = safetensors.numpy.load_file(file)
    with safetensors.safe_open(file, framework="np") as f:
        metadata = dict(f.metadata())
    metadata["tinygradlm"] = "[" * 100_000 + "]" * 100_000
    safetensors.numpy.save_file(tensors, file, metadata=metadata)
    rewrite_manifest(path)
    refused(path, "adapter_model.safetensors: the 'tinygradlm' header entry: not valid JSON")


def test_the_safetensors_writer_keeps_every_shape_and_value_the_library_reads(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "scalar": np.array(1.5, dtype=np.float32),  # 0-d: shape [], not [1]
        "empty": np.zeros((0, 3), dtype=np.float64),
        "strided": rng.normal(size=(4, 6))[:, ::2],  # not contiguous
        "transposed": rng.normal(size=(3, 5)).astype(np.float32).T,
        "ids": np.arange(7, dtype=np.int64).reshape(7, 1),
    }
    write_safetensors(tmp_path / "t.safetensors", tensors, {})
    back = safetensors.numpy.load_file(tmp_path / "t.safetensors")
    assert back.keys() == tensors.keys()
    for name, value in tensors.items():
        assert back[name].shape == value.shape, name
        assert back[name].dtype == value.dtype, name
        np.testing.assert_array_equal(back[name], value, err_msg=name)
