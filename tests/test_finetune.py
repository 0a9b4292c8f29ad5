"""Fine-tuning: SFT data (the template, the loss mask, errors that name file:line, a resumable
loader), the finetune loop (it learns, frozen parameters stay bit-identical, resume is exact),
export (the merged model computes what the adapted one did) and the eval command."""

import json
import math
import shutil

import numpy as np
import pytest

from tinygradlm import backend
from tinygradlm.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_model,
    save_model,
)
from tinygradlm.cli import main
from tinygradlm.data.sft import (
    IGNORE_INDEX,
    SFTLoader,
    encode_example,
    example_row,
    load_sft,
    read_sft,
)
from tinygradlm.data.shards import write_shards
from tinygradlm.errors import CheckpointError, ConfigError, DataError
from tinygradlm.model import GPT, GPTConfig
from tinygradlm.monitor import read_metrics
from tinygradlm.tokenizer import Tokenizer
from tinygradlm.train import FinetuneConfig, Trainer, export, load_finetune_config

EOT = 256


def byte_tokenizer():
    """256 byte tokens and <|endoftext|> = 256: a token per character of ASCII text."""
    return Tokenizer({bytes([i]): i for i in range(256)}, special_tokens={"<|endoftext|>": EOT})


def write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def task(directory, respond, n_train=32, n_val=16, seed=0):
    """train.jsonl and val.jsonl: prompts "<2–4 of abcde>=", responses respond(word)."""
    rng = np.random.default_rng(seed)
    for name, n in (("train", n_train), ("val", n_val)):
        words = ["".join(rng.choice(list("abcde"), size=rng.integers(2, 5))) for _ in range(n)]
        write_jsonl(
            directory / f"{name}.jsonl",
            [{"prompt": w + "=", "response": respond(w)} for w in words],
        )
    return directory


def settings(root, **overrides):
    values = {
        "data": str(root / "task"),
        "out_dir": str(root / "out"),
        "batch_size": 8,
        "seq_len": 12,
        "max_steps": 20,
        "lr": 1e-2,
        "min_lr": 1e-3,
        "warmup_steps": 3,
        "eval_interval": 0,
        "checkpoint_interval": 0,
        "log_interval": 1000,
    }
    return FinetuneConfig.from_dict({**values, **overrides})


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny GPT over bytes, trained (the whole model) to answer every prompt with "ab": the
    base the tests fine-tune to answer "ba" instead."""
    root = tmp_path_factory.mktemp("pretrained")
    byte_tokenizer().save(root / "tokenizer.txt")
    model = GPT(GPTConfig(vocab_size=257, block_size=16, n_layer=2, n_head=2, n_embd=32), seed=0)
    save_model(root / "init", model, tokenizer_files=[root / "tokenizer.txt"])
    task(root / "ab", lambda w: "ab")
    config = settings(
        root,
        init_from=str(root / "init"),
        data=str(root / "ab"),
        max_steps=40,
        checkpoint_interval=40,
    )
    Trainer(config, log=lambda _m: None).train()
    return latest_checkpoint(root / "out")


@pytest.fixture
def root(tmp_path, pretrained):
    task(tmp_path / "task", lambda w: "ba", seed=1)
    return tmp_path


def quiet(config):
    return Trainer(config, log=lambda _m: None)


# --------------------------------------------------------------------------------------------
# SFT data
# --------------------------------------------------------------------------------------------


def test_the_template_masks_the_prompt_and_pads_with_ignored_targets():
    tokens, n_prompt = encode_example(byte_tokenizer(), "ab=", "ba")
    assert tokens == [EOT, *b"ab=", *b"ba", EOT] and n_prompt == 3
    x, y, cut = example_row(tokens, n_prompt, seq_len=8, pad=EOT)
    assert x.tolist() == [EOT, *b"ab=", *b"ba", EOT, EOT]
    ignored = IGNORE_INDEX
    assert y.tolist() == [ignored, ignored, ignored, *b"ba", EOT, ignored, ignored]
    assert not cut
    x, y, cut = example_row(tokens, n_prompt, seq_len=4, pad=EOT)  # cut after the first "b"
    assert x.tolist() == [EOT, *b"ab="] and y.tolist() == [ignored] * 3 + [ord("b")] and cut


def test_the_loss_is_the_mean_over_response_tokens(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [{"prompt": "abc=", "response": "cba"}, {"prompt": "a=", "response": "a"}],
    )
    data = load_sft(path, byte_tokenizer(), seq_len=10)
    model = GPT(GPTConfig(vocab_size=257, block_size=16, n_layer=1, n_head=2, n_embd=16), seed=1)
    model.flat_params += (
        np.random.default_rng(0).normal(0, 0.2, model.flat_params.shape).astype(np.float32)
    )
    loss, _ = model.forward_backward(data.x, data.y)

    logits = model.logits(data.x).astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    by_hand = []
    for row, (prompt, response) in enumerate([("abc=", "cba"), ("a=", "a")]):
        targets = [*response.encode(), EOT]  # the response and the closing eot, nothing else
        for k, target in enumerate(targets):
            position = len(prompt) + k  # predicted from the last prompt token onwards
            by_hand.append(-log_probs[row, position, target])
    assert data.target_tokens == len(by_hand) == 6
    assert loss == pytest.approx(np.mean(by_hand), rel=1e-5)

    # the prompt's targets are what the mask leaves out: counting them changes the loss
    y = data.y.copy()
    y[y == IGNORE_INDEX] = 7
    assert model.forward_backward(data.x, y)[0] != pytest.approx(loss, rel=1e-3)


def test_long_examples_are_cut_and_those_without_a_response_token_left_out(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"prompt": "ab=", "response": "ba"},
            {"prompt": "abcd=", "response": "dcba"},  # cut
            {"prompt": "abcdefgh=", "response": "x"},  # the prompt fills the window
        ],
    )
    data = load_sft(path, byte_tokenizer(), seq_len=7)
    assert len(data) == 2 and data.truncated == 2 and data.dropped == 1
    assert data.sources == [f"{path}:1", f"{path}:2"]
    assert "1 left out" in data.summary() and "2 cut to seq_len 7" in data.summary()


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"prompt": "a", "response": ', "d.jsonl:2: not valid JSON"),
        ('["a", "b"]', "d.jsonl:2: expected a JSON object, got list"),
        ('{"prompt": "a"}', "d.jsonl:2: field 'response' is missing"),
        ('{"prompt": 3, "response": "b"}', "d.jsonl:2: field 'prompt' is of type int"),
        ("[" * 100_000 + "]" * 100_000, "d.jsonl:2: not valid JSON: nested too deeply"),
        ('{"prompt": "a", "response": NaN}', "d.jsonl:2: not valid JSON: NaN"),
    ],
)
def test_bad_records_name_the_file_and_line(tmp_path, line, message):
    path = tmp_path / "d.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        read_sft(path)


def test_invalid_utf8_and_empty_files_are_refused(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"prompt": "a", "response": "b"}\n{"prompt": "\xff"}\n')
    with pytest.raises(DataError, match=r"invalid UTF-8 at byte \d+ \(line 2\)"):
        read_sft(path)
    path.write_text("\n\n")
    with pytest.raises(DataError, match="no records"):
        read_sft(path)
    path.write_text('{"question": "a", "answer": "b"}\n')
    assert read_sft(path, prompt_key="question", response_key="answer")[0][:2] == ("a", "b")


def test_the_loader_is_seeded_and_resumes_at_the_next_batch(tmp_path):
    task(tmp_path, lambda w: w[::-1], n_train=20)
    data = load_sft(tmp_path / "train.jsonl", byte_tokenizer(), seq_len=10)
    a = SFTLoader(data, batch_size=4, seed=3)
    batches = [a.next_batch() for _ in range(7)]  # 5 per epoch: into the second epoch
    assert not np.array_equal(batches[0][0], batches[5][0])  # a new order each epoch
    b = SFTLoader(data, batch_size=4, seed=3)
    for _ in range(3):
        b.next_batch()
    c = SFTLoader(data, batch_size=4, seed=3)
    c.load_state_dict(json.loads(json.dumps(b.state_dict())))
    for expected in batches[3:]:
        x, y = c.next_batch()
        np.testing.assert_array_equal(x, expected[0])
        np.testing.assert_array_equal(y, expected[1])
    # two ranks take the two halves of the same global batch
    halves = [SFTLoader(data, batch_size=4, seed=3, rank=r, world_size=2) for r in (0, 1)]
    np.testing.assert_array_equal(
        np.concatenate([h.next_batch()[0] for h in halves]), batches[0][0]
    )
    other = load_sft(tmp_path / "val.jsonl", byte_tokenizer(), seq_len=10)
    with pytest.raises(DataError, match="cannot resume"):
        SFTLoader(other, batch_size=4, seed=3).load_state_dict(b.state_dict())


def test_a_validation_loader_keeps_the_last_partial_batch(tmp_path):
    data = load_sft_records(tmp_path, [("a=", "b")] * 5)
    loader = SFTLoader(data, batch_size=4, shuffle=False, drop_last=False)
    assert loader.batches_per_epoch == 2
    loader.next_batch()
    _, y = loader.next_batch()
    assert (y[1:] == IGNORE_INDEX).all() and (y[0] != IGNORE_INDEX).any()


def load_sft_records(folder, pairs, seq_len=8):
    path = folder / "d.jsonl"
    write_jsonl(path, [{"prompt": p, "response": r} for p, r in pairs])
    return load_sft(path, byte_tokenizer(), seq_len=seq_len)


# --------------------------------------------------------------------------------------------
# the finetune loop
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lora_rank, precision", [(0, "fp32"), (8, "fp32"), (0, "bf16")])
def test_finetuning_lowers_the_response_loss(root, pretrained, lora_rank, precision):
    config = settings(
        root,
        init_from=str(pretrained),
        lora_rank=lora_rank,
        lora_alpha=32.0,
        max_steps=30,
        precision=precision,
    )
    trainer = quiet(config)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    assert before > 3.0  # the base answers "ab", so "ba" is unlikely
    assert after < 0.25 * before


def test_lora_and_frozen_parameters_stay_bit_identical(root, pretrained):
    base = load_checkpoint(pretrained)
    trainer = quiet(settings(root, init_from=str(pretrained), lora_rank=4, max_steps=5))
    trainer.train()
    for name, value in base.model_state.items():
        np.testing.assert_array_equal(trainer.model.state_dict()[name], value, err_msg=name)
    assert trainer.model.lora.flat_params.any()

    freeze = ["wte", "wpe", "h.0", "ln_f.bias"]
    trainer = quiet(
        settings(
            root,
            init_from=str(pretrained),
            freeze=freeze,
            weight_decay=0.1,
            out_dir=str(root / "frozen"),
            max_steps=5,
        )
    )
    trainer.train()
    after = trainer.model.state_dict()
    for name, value in base.model_state.items():
        frozen = any(name == p or name.startswith(p + ".") for p in freeze)
        if frozen:
            np.testing.assert_array_equal(after[name], value, err_msg=name)
        elif name.endswith("weight"):
            assert not np.array_equal(after[name], value), name


def finetune_run(root, pretrained, out, **overrides):
    values = {
        "init_from": str(pretrained),
        "out_dir": str(root / out),
        "max_steps": 8,
        "checkpoint_interval": 4,
        "eval_interval": 4,
        "keep_last": 5,
        **overrides,
    }
    return quiet(settings(root, **values))


@pytest.mark.parametrize("overrides", [{"lora_rank": 4}, {"freeze": ["h.0"]}])
def test_a_resumed_finetune_ends_bit_identical(root, pretrained, overrides):
    straight = finetune_run(root, pretrained, "straight", **overrides)
    straight.train()
    (root / "resumed").mkdir()
    shutil.copytree(root / "straight" / "ckpt_00000004", root / "resumed" / "ckpt_00000004")
    resumed = finetune_run(root, pretrained, "resumed", **overrides)
    assert resumed.resume() and resumed.step == 4
    resumed.train()
    np.testing.assert_array_equal(resumed.model.flat_params, straight.model.flat_params)
    np.testing.assert_array_equal(resumed.optimizer.m, straight.optimizer.m)
    np.testing.assert_array_equal(resumed.optimizer.v, straight.optimizer.v)
    if straight.model.lora is not None:
        np.testing.assert_array_equal(
            resumed.model.lora.flat_params, straight.model.lora.flat_params
        )
    assert resumed.train_loader.state_dict() == straight.train_loader.state_dict()


@pytest.mark.parametrize("recorded", [0, None], ids=["recorded-0", "unset"])
def test_an_unset_lora_rank_resumes_the_run_that_trained_the_base(root, pretrained, recorded):
    # runs record what they trained: an unset lora_rank is resolved to 0 (no adapters on the
    # base), so a run that recorded lora_rank = 0, as runs did before it could be unset, resumes
    first = finetune_run(root, pretrained, "run", lora_rank=recorded, max_steps=4)
    first.train()
    assert first.config.lora_rank == 0
    saved = load_checkpoint(root / "run" / "ckpt_00000004").trainer_state["config"]
    assert saved["lora_rank"] == 0
    again = finetune_run(root, pretrained, "run", max_steps=8)  # lora_rank unset
    assert again.resume() and again.step == 4 and again.model.lora is None
    # a different choice is still a different run
    with pytest.raises(CheckpointError, match=r"lora_rank 0 → 4"):
        finetune_run(root, pretrained, "run", lora_rank=4).resume()


def test_export_merges_the_adapters_into_a_plain_model(root, pretrained):
    trainer = finetune_run(root, pretrained, "run", lora_rank=4, max_steps=4)
    trainer.train()
    idx = np.random.default_rng(0).integers(0, 257, size=(2, 12))
    adapted = trainer.model.logits(idx)
    path = export(latest_checkpoint(root / "run"), root / "exported")
    ckpt = load_checkpoint(path)
    assert ckpt.lora is None and ckpt.optimizer_state is None and ckpt.step == 4
    names = [p.name for p in ckpt.tokenizer_files]
    assert names == ["tokenizer.txt", "tokenizer.json", "tokenizer_config.json"]
    plain = load_model(path)
    assert plain.lora is None
    np.testing.assert_allclose(plain.logits(idx), adapted, rtol=1e-5, atol=1e-5)
    base = load_checkpoint(pretrained).model_state["h.0.attn.c_attn.weight"]
    assert not np.array_equal(plain.params["h.0.attn.c_attn.weight"], base)  # merged


def test_config_errors_name_the_key(root, pretrained):
    with pytest.raises(ValueError, match="init_from is required"):
        FinetuneConfig.from_dict({"data": "x"})
    with pytest.raises(ValueError, match="freeze applies without LoRA"):
        FinetuneConfig.from_dict({"init_from": "a", "data": "x", "lora_rank": 4, "freeze": ["h.0"]})
    with pytest.raises(ValueError, match="LoRA targets must be"):
        FinetuneConfig.from_dict(
            {"init_from": "a", "data": "x", "lora_rank": 4, "lora_targets": ["attn"]}
        )
    with pytest.raises(ValueError, match=r"unknown key lora_rnak "):
        FinetuneConfig.from_dict({"init_from": "a", "data": "x", "lora_rnak": 4})
    with pytest.raises(ValueError, match=r"'h\.9' names no parameter"):
        quiet(settings(root, init_from=str(pretrained), freeze=["h.9"]))
    config = load_finetune_config(
        None, ["lora_rank=4", 'lora_targets=["mlp.c_fc"]'], init_from="a", data="x"
    )
    assert config.lora_config().targets == ("mlp.c_fc",) and config.init_from == "a"


def test_finetuning_shares_the_loops_settings(root, pretrained):
    """ZeRO-1, tracing and the watchdog are loop settings: a fine-tuning run has them too."""
    config = settings(
        root,
        init_from=str(pretrained),
        lora_rank=4,
        max_steps=3,
        trace_steps=3,
        zero_stage=1,  # one process: the plain update (the sharding needs several ranks)
        collective_timeout_s=30.0,
        collective_timeout_abort=False,
    )
    quiet(config).train()
    trace = json.loads((root / "out" / "trace_rank0.json").read_text())
    events = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert {"data", "fwd_bwd", "optim"} <= {e["name"] for e in events}
    assert len([e for e in events if e["name"] == "fwd_bwd"]) == 3
    with pytest.raises(ValueError, match="finetune config: zero_stage 1 needs precision 'fp32'"):
        settings(root, init_from=str(pretrained), zero_stage=1, precision="bf16")
    with pytest.raises(ValueError, match="finetune config: trace_steps must be an integer"):
        settings(root, init_from=str(pretrained), trace_steps=-1)


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------


def test_finetune_export_and_eval_commands(root, pretrained, capsys):
    with backend.use_kernels(backend.kernels_name()):  # the CLI sets kernels: restore after
        code = main(
            [
                "finetune",
                "--from",
                str(pretrained),
                "--data",
                str(root / "task"),
                f"out_dir='{root / 'cli'}'",
                "lora_rank=4",
                "max_steps=4",
                "warmup_steps=1",
                "batch_size=8",
                "seq_len=12",
                "eval_interval=0",
                "log_interval=100",
            ]
        )
    assert code == 0
    ckpt = latest_checkpoint(root / "cli")
    assert load_checkpoint(ckpt).lora is not None
    assert main(["export", "--ckpt", str(ckpt), "--out", str(root / "merged")]) == 0
    capsys.readouterr()

    # eval on SFT JSON Lines: the adapters' checkpoint and its export agree
    assert main(["eval", "--ckpt", str(ckpt), "--data", str(root / "task")]) == 0
    adapted = capsys.readouterr().out
    assert main(["eval", "--ckpt", str(root / "merged"), "--data", str(root / "task")]) == 0
    exported = capsys.readouterr().out
    loss = float(adapted.split("loss ")[1].split(",")[0])
    perplexity = float(adapted.split("perplexity ")[1].split(" ")[0])
    assert adapted.startswith("val: loss") and perplexity == pytest.approx(math.exp(loss), rel=1e-3)
    assert float(exported.split("loss ")[1].split(",")[0]) == pytest.approx(loss, abs=1e-3)

    # eval on shards, a number of batches of the chosen split
    tokens = np.random.default_rng(0).integers(0, 257, size=2000).astype(np.uint16)
    write_shards([tokens], root / "shards", split="val", vocab_size=257)
    args = ["eval", "--ckpt", str(ckpt), "--data", str(root / "shards"), "--batches", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "val: loss" in out and "perplexity" in out and "(192 tokens" in out
    assert main(["eval", "--ckpt", str(ckpt), "--data", str(root / "nowhere")]) == 1
    assert "tinygradlm eval:" in capsys.readouterr().err


def test_a_run_that_cannot_fit_in_memory_is_refused_before_its_model_is_built(
    root, pretrained, monkeypatch
):
    import tinygradlm.memory

    monkeypatch.setattr(tinygradlm.memory, "available_bytes", lambda: 10 * 2**20)  # 10 MiB
    built = []
    monkeypatch.setattr(GPT, "__init__", lambda *a, **k: built.append(1))
    with pytest.raises(ConfigError, match=r"finetune config: training the model of .* needs about"):
        finetune_run(root, pretrained, "run", batch_size=4096)
    assert not built


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_fine_tuning_with_recompute_mlp_gives_the_same_run(root, pretrained, lora_rank):
    losses = []
    for recompute_mlp in (False, True):
        trainer = finetune_run(
            root, pretrained, f"rc{recompute_mlp}", recompute_mlp=recompute_mlp,
            lora_rank=lora_rank, log_interval=1,
        )  # fmt: skip
        assert trainer.model.recompute_mlp is recompute_mlp
        trainer.train()
        records = read_metrics(root / f"rc{recompute_mlp}")
        losses.append([(r["kind"], r["loss"]) for r in records if r["kind"] in ("train", "val")])
    assert losses[0] == losses[1] and len(losses[0]) >= 8
