"""Training on a mixture: the [data] mix setting, per-source epochs and validation losses in the
metrics, exact resumption with the mixture's position, and errors that name the source."""

import json
from pathlib import Path

import numpy as np
import pytest

from tinygradlm.checkpoint import latest_checkpoint, load_checkpoint
from tinygradlm.data.mixture import MixtureLoader
from tinygradlm.data.shards import write_shards
from tinygradlm.errors import DataError
from tinygradlm.monitor import read_metrics
from tinygradlm.train import TrainConfig, Trainer

V = 32


def write_source(path: Path, step: int, n_tokens: int, seed: int) -> None:
    """A learnable stream: each token is the previous plus ``step`` or ``step + 1`` (mod V)."""
    rng = np.random.default_rng(seed)
    tokens = (np.cumsum(rng.integers(step, step + 2, size=n_tokens)) % V).astype(np.uint16)
    cut = int(0.85 * n_tokens)
    write_shards([tokens[:cut]], path, split="train", vocab_size=V, shard_tokens=700)
    write_shards([tokens[cut:]], path, split="val", vocab_size=V)


@pytest.fixture
def mixed(tmp_path) -> Path:
    """A prepared-style directory with two sources, "prose" (3000 tokens) and "code" (1200)."""
    root = tmp_path / "data"
    write_source(root / "prose", 1, 3000, seed=0)
    write_source(root / "code", 3, 1200, seed=1)
    return root


def config(tmp_path: Path, **overrides) -> TrainConfig:
    values = {
        "data_dir": str(tmp_path / "data"),
        "out_dir": str(tmp_path / "run"),
        "data": {"mix": {"prose": 0.75, "code": 0.25}},
        "model": {"preset": "tiny", "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 32},
        "batch_size": 8,
        "seq_len": 16,
        "max_steps": 12,
        "lr": 1e-2,
        "min_lr": 1e-3,
        "warmup_steps": 2,
        "eval_interval": 6,
        "eval_batches": 2,
        "sample_interval": 0,
        "checkpoint_interval": 0,
        "log_interval": 1000,
        "kernels": "numpy",
    }
    values.update(overrides)
    return TrainConfig.from_dict(values)


def flat(trainer: Trainer) -> np.ndarray:
    return trainer.optimizer.params.copy()


def test_metrics_hold_each_sources_epochs_and_validation_loss(tmp_path, mixed):
    trainer = Trainer(config(tmp_path), log=lambda _m: None)
    assert isinstance(trainer.train_loader, MixtureLoader)
    trainer.train()
    records = read_metrics(tmp_path / "run")
    train = [r for r in records if r["kind"] == "train"]
    assert len(train) == 12
    # 12 steps of 8 sequences at 3:1, each source's count within 1 − 1/2 of its share
    loader = trainer.train_loader
    assert loader.counts == [72, 24]
    windows = {"prose": (2550 - 1) // 16, "code": (1020 - 1) // 16}
    assert train[-1]["epochs"] == {
        "prose": 72 / windows["prose"],
        "code": 24 / windows["code"],
    }
    assert train[0]["epochs"] == {"prose": 6 / windows["prose"], "code": 2 / windows["code"]}

    val = [r for r in records if r["kind"] == "val"]
    assert [r["step"] for r in val] == [6, 12]
    by_source = val[-1]["sources"]
    assert set(by_source) == {"prose", "code"}
    assert val[-1]["loss"] == pytest.approx(0.75 * by_source["prose"] + 0.25 * by_source["code"])
    assert by_source["prose"] != by_source["code"]  # two different streams, evaluated apart


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, mixed):
    straight = Trainer(config(tmp_path, out_dir=str(tmp_path / "straight")), log=lambda _m: None)
    straight.train()

    split_dir = str(tmp_path / "split")
    first = Trainer(config(tmp_path, out_dir=split_dir), log=lambda _m: None)
    for _ in range(5):
        first.train_step()
    first.save()  # as the loop does at a checkpoint_interval, then the process ends
    state = load_checkpoint(latest_checkpoint(split_dir)).trainer_state["loader"]
    assert {name: s["seen"] for name, s in state["mixture"].items()} == {"prose": 30, "code": 10}

    second = Trainer(config(tmp_path, out_dir=split_dir), log=lambda _m: None)
    assert second.resume() and second.step == 5
    second.train()
    assert np.array_equal(flat(second), flat(straight))
    assert second.train_loader.counts == straight.train_loader.counts


def test_a_new_mix_resumes_only_when_asked(tmp_path, mixed):
    Trainer(config(tmp_path, max_steps=3, checkpoint_interval=3), log=lambda _m: None).train()
    changed = Trainer(
        config(tmp_path, max_steps=6, data={"mix": {"prose": 0.5, "code": 0.5}}),
        log=lambda _m: None,
    )
    with pytest.raises(DataError, match=r"'prose' has weight 0.75 in the state but 0.5 here"):
        changed.resume()
    single = Trainer(
        config(tmp_path, max_steps=6, data={}, data_dir=str(mixed / "prose")),
        log=lambda _m: None,
    )
    with pytest.raises(DataError, match=r"a mixture's \(sources prose, code\).* one source"):
        single.resume()

    # data.remix: the new weights from the next batch on, and the change is in the next state
    remix = {"mix": {"prose": 0.5, "code": 0.5}, "remix": True}
    remixed = Trainer(
        config(tmp_path, max_steps=6, checkpoint_interval=6, data=remix), log=lambda _m: None
    )
    assert remixed.resume() and remixed.train_loader.since == [18, 6]
    remixed.train()
    assert remixed.train_loader.counts == [18 + 12, 6 + 12]  # 3 steps of 8 at 1:1
    state = load_checkpoint(latest_checkpoint(tmp_path / "run")).trainer_state["loader"]
    assert {n: s["since"] for n, s in state["mixture"].items()} == {"prose": 18, "code": 6}


def test_the_prepared_weights_are_the_default_and_the_megatron_form_works(tmp_path, mixed):
    (mixed / "report.json").write_text(json.dumps({"mixture": {"code": 0.4, "prose": 0.6}}))
    trainer = Trainer(config(tmp_path, data={}), log=lambda _m: None)
    assert trainer.train_loader.names == ["code", "prose"]
    assert trainer.train_loader.weights == pytest.approx([0.4, 0.6])

    paths = f"3 {mixed / 'prose'} 1 {mixed / 'code'}"
    megatron = Trainer(config(tmp_path, data={"mix": paths}), log=lambda _m: None)
    by_name = Trainer(config(tmp_path), log=lambda _m: None)
    assert megatron.train_loader.names == ["prose", "code"]
    for _ in range(3):
        assert np.array_equal(
            megatron.train_loader.next_batch()[0], by_name.train_loader.next_batch()[0]
        )


def test_setting_errors_name_the_key_and_the_source(tmp_path, mixed):
    with pytest.raises(ValueError, match=r"unknown key data\.mixx \(known: mix, remix\)"):
        config(tmp_path, data={"mixx": {"prose": 1}})
    with pytest.raises(ValueError, match="'code' has weight 0"):
        config(tmp_path, data={"mix": {"prose": 1, "code": 0}})
    with pytest.raises(
        DataError, match=r"'poetry' is neither a source .* \(its sources: code, prose\)"
    ):
        Trainer(config(tmp_path, data={"mix": {"prose": 1, "poetry": 1}}), log=lambda _m: None)


def test_sources_tokenized_differently_are_refused(tmp_path, mixed):
    from tinygradlm.tokenizer import Tokenizer

    one = Tokenizer.train(["abc abd abe " * 20], 260)
    other = Tokenizer.train(["xyz xyw " * 20], 260)
    one.save(mixed / "prose" / "tokenizer.txt")
    other.save(mixed / "code" / "tokenizer.txt")
    with pytest.raises(DataError, match=r"source 'code' was tokenized with .*code/tokenizer.txt"):
        Trainer(config(tmp_path), log=lambda _m: None)
    one.save(mixed / "code" / "tokenizer.txt")  # the same tokenizer everywhere: fine
    trainer = Trainer(config(tmp_path), log=lambda _m: None)
    assert trainer.tokenizer_path == mixed / "prose" / "tokenizer.txt"


def test_a_source_that_repeats_is_told_by_epoch_events(tmp_path):
    root = tmp_path / "data"
    write_source(root / "prose", 1, 3000, seed=0)
    write_source(root / "code", 3, 400, seed=1)  # 340 training tokens: 21 windows of 16
    trainer = Trainer(config(tmp_path, eval_interval=0), log=lambda _m: None)
    trainer.train()
    records = read_metrics(tmp_path / "run")
    events = [r for r in records if r["kind"] == "event" and r["event"] == "epoch"]
    train = {r["step"]: r["epochs"] for r in records if r["kind"] == "train"}
    crossings = [
        step
        for step in sorted(train)
        if int(train[step]["code"]) > int(train.get(step - 1, {"code": 0})["code"])
    ]
    assert crossings and [e["step"] for e in events] == crossings  # prose never finishes one
    assert events[0]["message"] == "source 'code' began epoch 2"
    assert trainer.train_loader.counts[1] == 24 and trainer.train_loader.n_windows[1] == 21


def test_eval_of_a_prepared_mixture_gives_each_source_and_the_weighted_mean(tmp_path, mixed):
    from tinygradlm.train import evaluate_checkpoint

    (mixed / "report.json").write_text(json.dumps({"mixture": {"prose": 0.75, "code": 0.25}}))
    Trainer(
        config(tmp_path, data={}, max_steps=4, checkpoint_interval=4), log=lambda _m: None
    ).train()
    result = evaluate_checkpoint(latest_checkpoint(tmp_path / "run"), mixed, seq_len=16)
    sources = result["sources"]
    assert list(sources) == ["prose", "code"]
    assert result["loss"] == pytest.approx(
        0.75 * sources["prose"]["loss"] + 0.25 * sources["code"]["loss"]
    )
    alone = evaluate_checkpoint(latest_checkpoint(tmp_path / "run"), mixed / "code", seq_len=16)
    assert alone["loss"] == sources["code"]["loss"]
    assert result["tokens"] == sources["prose"]["tokens"] + sources["code"]["tokens"]


def test_a_single_source_run_counts_its_epochs_too(tmp_path, mixed):
    data = {"data": {}, "data_dir": str(mixed / "prose"), "max_steps": 25, "eval_interval": 0}
    Trainer(config(tmp_path, **data), log=lambda _m: None).train()
    records = read_metrics(tmp_path / "run")
    batches_per_epoch = (2550 - 1) // 16 // 8  # 19
    epochs = {r["step"]: r["epoch"] for r in records if r["kind"] == "train"}
    assert epochs[12] == pytest.approx(12 / batches_per_epoch)
    assert epochs[25] == pytest.approx(1 + 6 / batches_per_epoch)
    events = [r for r in records if r["kind"] == "event" and r["event"] == "epoch"]
    assert [(e["step"], e["message"]) for e in events] == [(19, "the training data began epoch 2")]


@pytest.mark.parametrize("kind", ["link loop", "dangling link", "directory"])
def test_a_broken_tokenizer_file_is_an_error_not_taken_for_absent(tmp_path, kind):
    from tinygradlm.train.setup import find_tokenizer, tokenizer_present

    assert find_tokenizer(tmp_path, None) == tmp_path / "tokenizer.txt"
    assert not tokenizer_present(tmp_path / "tokenizer.txt")
    path = tmp_path / "tokenizer.txt"
    if kind == "link loop":
        path.symlink_to(path)
    elif kind == "dangling link":
        path.symlink_to(tmp_path / "absent.txt")
    else:
        path.mkdir()
    with pytest.raises(DataError, match=f"{path}: is a .*, not a tokenizer file"):
        find_tokenizer(tmp_path, None)
