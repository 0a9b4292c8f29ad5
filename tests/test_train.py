"""The training loop: it learns, accumulation equals a larger batch, configs are validated, a
run killed with SIGKILL resumes bit-identically (from an empty Numba cache too), and two runs of
one command write byte-identical checkpoints."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tinygradlm.checkpoint import latest_checkpoint, load_checkpoint
from tinygradlm.data.shards import write_shards
from tinygradlm.optim import lr_schedule
from tinygradlm.train import TrainConfig, Trainer, load_config

V = 32


def make_data(path: Path, n_tokens: int = 4000, seed: int = 0) -> Path:
    """Shards of a learnable stream: each token is the previous plus 1 or 2 (mod V)."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(1, 3, size=n_tokens)
    tokens = (np.cumsum(steps) % V).astype(np.uint16)
    cut = int(0.9 * n_tokens)
    write_shards([tokens[:cut]], path, split="train", vocab_size=V, shard_tokens=1000)
    write_shards([tokens[cut:]], path, split="val", vocab_size=V)
    return path


def tiny_config(tmp_path: Path, **overrides) -> TrainConfig:
    values = {
        "data_dir": str(tmp_path / "data"),
        "out_dir": str(tmp_path / "run"),
        "model": {"preset": "tiny", "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 32},
        "batch_size": 8,
        "seq_len": 16,
        "max_steps": 60,
        "lr": 1e-2,
        "min_lr": 1e-3,
        "warmup_steps": 5,
        "eval_interval": 0,
        "sample_interval": 0,
        "checkpoint_interval": 0,
        "log_interval": 1000,
    }
    values.update(overrides)
    return TrainConfig.from_dict(values)


@pytest.fixture
def data(tmp_path):
    return make_data(tmp_path / "data")


def test_training_learns_the_stream(tmp_path, data):
    trainer = Trainer(tiny_config(tmp_path), log=lambda _m: None)
    initial = trainer.evaluate()
    trainer.train()
    final = trainer.evaluate()
    assert initial == pytest.approx(np.log(V), rel=0.1)
    # each next token is one of two: the best possible loss is log 2
    assert final < np.log(2) + 0.15


def test_overfitting_one_batch_drives_the_loss_near_zero(tmp_path):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, V, size=8 * 16 + 1).astype(np.uint16)  # exactly one batch of windows
    write_shards([tokens], tmp_path / "data", split="train", vocab_size=V)
    config = tiny_config(tmp_path, max_steps=150, warmup_steps=10, weight_decay=0.0, grad_clip=0.0)
    trainer = Trainer(config, log=lambda _m: None)
    last = trainer.train()
    assert last["loss"] < 0.05


def test_gradient_accumulation_equals_the_larger_batch(tmp_path, data):
    big = Trainer(tiny_config(tmp_path, max_steps=5), log=lambda _m: None)
    big.train()
    accumulated = Trainer(
        tiny_config(tmp_path, max_steps=5, batch_size=4, grad_accum_steps=2), log=lambda _m: None
    )
    accumulated.train()
    # same windows, same gradient up to rounding; the attention key bias has an exactly-zero true
    # gradient (softmax ignores a constant shift of a row), so AdamW moves it by rounding noise
    # normalised to about lr·noise/eps: allow for that in absolute terms
    np.testing.assert_allclose(
        accumulated.model.flat_params, big.model.flat_params, rtol=1e-4, atol=5e-5
    )


def test_same_config_gives_the_same_run(tmp_path, data):
    a = Trainer(tiny_config(tmp_path, max_steps=4, warmup_steps=2), log=lambda _m: None)
    b = Trainer(tiny_config(tmp_path, max_steps=4, warmup_steps=2), log=lambda _m: None)
    a.train()
    b.train()
    np.testing.assert_array_equal(a.model.flat_params, b.model.flat_params)


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key.*max_step"):
        TrainConfig.from_dict({"max_step": 3})
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        TrainConfig.from_dict({"batch_size": 0})
    with pytest.raises(ValueError, match=r"warmup_steps \(9\) exceeds max_steps \(5\)"):
        TrainConfig.from_dict({"warmup_steps": 9, "max_steps": 5})
    with pytest.raises(ValueError, match=r"beta2 must be a number in \[0, 1\)"):
        TrainConfig.from_dict({"beta2": 1.5})
    with pytest.raises(ValueError, match=r"\[model\].*n_embd"):
        TrainConfig.from_dict({"model": {"n_embd": 10, "n_head": 4}})
    with pytest.raises(ValueError, match=r"missing.toml: no such file"):
        load_config(str(tmp_path / "missing.toml"))


def test_overrides_parse_toml_values_and_dotted_keys(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('max_steps = 7\nwarmup_steps = 2\n[model]\npreset = "tiny"\n')
    config = load_config(str(path), ["lr=0.002", "model.n_layer=3", "sample_prompt=hello"])
    assert config.max_steps == 7 and config.lr == 0.002
    assert config.model == {"preset": "tiny", "n_layer": 3}
    assert config.sample_prompt == "hello"
    assert config.gpt_config().n_layer == 3
    assert load_config("tiny").max_steps > 0


def test_missing_data_says_to_prepare(tmp_path):
    from tinygradlm.errors import DataError

    with pytest.raises(DataError, match="tinygradlm prepare"):
        Trainer(tiny_config(tmp_path))


def run_cli(tmp_path, steps, *extra, wait=True, numba_cache=None):
    """``tinygradlm train`` of the tiny model on ``tmp_path``/data into ``tmp_path``/run; with
    ``numba_cache``, Numba's cache lives there (an empty directory: every kernel compiles)."""
    args = [
        sys.executable,
        "-m",
        "tinygradlm",
        "train",
        "--config",
        "tiny",
        f"data_dir='{tmp_path / 'data'}'",
        f"out_dir='{tmp_path / 'run'}'",
        "model.block_size=16",
        "model.n_layer=2",
        "model.n_head=2",
        "model.n_embd=32",
        "batch_size=8",
        "seq_len=16",
        f"max_steps={steps}",
        "warmup_steps=3",
        "checkpoint_interval=4",
        "eval_interval=0",
        "sample_interval=0",
        "log_interval=1",
        *extra,
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "NUMBA_NUM_THREADS": "1",
    }
    if numba_cache is not None:
        env["NUMBA_CACHE_DIR"] = str(numba_cache)
    if wait:
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def file_hashes(checkpoint: Path) -> dict[str, str]:
    """Every file of a checkpoint directory and its SHA-256."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(checkpoint.iterdir())
    }


def test_two_runs_of_one_command_write_byte_identical_checkpoints(tmp_path):
    make_data(tmp_path / "data")
    hashes = []
    for _ in range(2):
        done = run_cli(tmp_path, 8)
        assert done.returncode == 0, done.stderr
        hashes.append({c.name: file_hashes(c) for c in (tmp_path / "run").glob("ckpt_*")})
        shutil.rmtree(tmp_path / "run")
    assert sorted(hashes[0]) == ["ckpt_00000004", "ckpt_00000008"]
    assert hashes[0] == hashes[1]


def test_a_run_killed_with_sigkill_resumes_bit_identically(tmp_path):
    """The uninterrupted run starts with an empty Numba cache (every kernel freshly compiled),
    the killed and the resumed runs load the kernels from that cache: the same command in the
    same directory, so every file of the last checkpoint must be byte-identical."""
    make_data(tmp_path / "data")
    numba_cache = tmp_path / "numba-cache"
    numba_cache.mkdir()
    run, straight = tmp_path / "run", tmp_path / "straight"

    steps = 80
    done = run_cli(tmp_path, steps, numba_cache=numba_cache)
    assert done.returncode == 0, done.stderr
    run.rename(straight)

    proc = run_cli(tmp_path, steps, wait=False, numba_cache=numba_cache)
    deadline = time.time() + 240
    while latest_checkpoint(run) is None and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(0.02)  # a little after the first checkpoint: mid-step, or mid-way through a save
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted_at = load_checkpoint(latest_checkpoint(run)).step
    assert interrupted_at < steps, "the run finished before it was killed: nothing was tested"
    resumed = run_cli(tmp_path, steps, numba_cache=numba_cache)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at step {interrupted_at}" in resumed.stdout  # it did resume, from there

    a = load_checkpoint(latest_checkpoint(straight))
    b = load_checkpoint(latest_checkpoint(run))
    assert a.step == b.step == steps
    for name, value in a.model_state.items():
        np.testing.assert_array_equal(value, b.model_state[name], err_msg=name)
    for name in ("m", "v"):
        np.testing.assert_array_equal(a.optimizer_state[name], b.optimizer_state[name])
    assert a.trainer_state["loader"] == b.trainer_state["loader"]
    assert file_hashes(a.path) == file_hashes(b.path)


def poison(trainer, bad_calls):
    """Make the given forward_backward calls (0-based) return a NaN loss and NaN gradients."""
    real = trainer.model.forward_backward
    calls = {"n": 0}

    def forward_backward(*args, **kwargs):
        loss, grads = real(*args, **kwargs)
        n = calls["n"]
        calls["n"] += 1
        if n in bad_calls:
            trainer.model.flat_grads[:] = np.nan
            return float("nan"), grads
        return loss, grads

    trainer.model.forward_backward = forward_backward


def test_a_non_finite_step_is_skipped_and_logged(tmp_path, data):
    from tinygradlm.monitor import read_metrics

    trainer = Trainer(tiny_config(tmp_path, max_steps=6, warmup_steps=1), log=lambda _m: None)
    poison(trainer, {3})  # the 4th step
    trainer.train()
    assert trainer.step == 6 and trainer.optimizer.step_count == 5  # one update skipped
    records = read_metrics(tmp_path / "run")
    skips = [r["step"] for r in records if r["kind"] == "event" and r["event"] == "skip"]
    assert skips == [4]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_repeated_non_finite_steps_roll_back_at_a_lower_learning_rate(tmp_path, data):
    from tinygradlm.monitor import read_metrics

    config = tiny_config(
        tmp_path, max_steps=10, warmup_steps=1, checkpoint_interval=4, max_bad_steps=3
    )
    trainer = Trainer(config, log=lambda _m: None)
    poison(trainer, {5, 6, 7})  # steps 6, 7 and 8 fail; the checkpoint at step 4 is restored
    trainer.train()
    assert trainer.step == 10 and trainer.guard.rollbacks == 1
    assert trainer.guard.lr_factor == 0.5
    assert np.isfinite(trainer.model.flat_params).all()
    events = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "event"]
    rollback = next(r for r in events if r["event"] == "rollback")
    assert rollback["step"] == 4 and rollback["from_step"] == 8
    last = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "train"][-1]
    expected = lr_schedule(9, max_lr=1e-2, min_lr=1e-3, warmup_steps=1, max_steps=10)
    assert last["lr"] == pytest.approx(0.5 * expected, rel=1e-6)  # the schedule, halved


def test_metrics_file_has_train_and_val_records(tmp_path, data):
    from tinygradlm.monitor import read_metrics

    Trainer(
        tiny_config(tmp_path, max_steps=4, warmup_steps=1, eval_interval=2), log=lambda _m: None
    ).train()
    records = read_metrics(tmp_path / "run")
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert all(r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1.5 for r in train)
    assert set(train[0]["time"]) >= {"data", "fwd_bwd", "optim"}
    assert [r["step"] for r in records if r["kind"] == "val"] == [2, 4]


def test_trace_steps_writes_a_chrome_trace_of_the_step_sections(tmp_path, data):
    import json

    Trainer(
        tiny_config(tmp_path, max_steps=3, warmup_steps=1, trace_steps=3), log=lambda _m: None
    ).train()
    trace = json.loads((tmp_path / "run" / "trace_rank0.json").read_text())
    events = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    names = {e["name"] for e in events}
    assert {"data", "fwd_bwd", "optim"} <= names
    assert all(e["dur"] >= 0 and e["ts"] >= 0 and e["pid"] == 0 for e in events)
    starts = [e["ts"] for e in events if e["name"] == "fwd_bwd"]
    assert len(starts) == 3 and starts == sorted(starts)
    with pytest.raises(ValueError, match="trace_steps must be an integer"):
        tiny_config(tmp_path, trace_steps=-1)


def test_the_run_calls_its_hooks_at_each_step_before_the_gradients_travel(tmp_path, data):
    from tinygradlm.train import RunHooks

    class Record(RunHooks):
        def __init__(self):
            self.calls = []

        def before_step(self, step, rank):
            self.calls.append(("step", step, rank))

        def before_gradient_sync(self, step, rank):
            self.calls.append(("sync", step, rank))

    hooks = Record()
    trainer = Trainer(
        tiny_config(tmp_path, max_steps=2, warmup_steps=1), log=lambda _m: None, hooks=hooks
    )
    trainer.train()
    assert hooks.calls == [("step", 1, 0), ("sync", 1, 0), ("step", 2, 0), ("sync", 2, 0)]
