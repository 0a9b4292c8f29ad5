"""The Hugging Face user's round trip, end to end through the command line: a GPT-2 saved by
transformers (with a tokenizer.json) is LoRA-fine-tuned by `tinygradlm finetune --from`, its
adapters exported in PEFT's format, and PEFT, transformers and tinygradlm then compute the same
logits from the same files, and encode text to the same ids.

Each piece has its own tests (test_hf_import.py, test_tokenizer_hf.py, test_peft.py); this one
checks that they compose: the base found again through base_model_name_or_path is the HF
directory, the tokenizer carried by the run is the one the HF directory had, and the adapters
trained (so the comparison is not between two copies of the base)."""

import json

import numpy as np
import pytest

from tinygradlm import backend
from tinygradlm.checkpoint import latest_checkpoint, load_checkpoint
from tinygradlm.cli import main
from tinygradlm.model import GPT
from tinygradlm.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
torch = pytest.importorskip("torch")

TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog. " * 20


def sft_data(path):
    path.mkdir()
    words = ["cat", "dog", "mat", "log", "sat"]
    for split, n in (("train", 24), ("val", 6)):
        records = [{"prompt": f"{w} =", "response": f" {w[::-1]}"} for w in words * n]
        (path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def hf_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.numpy()


def test_hf_model_to_lora_to_peft_and_back(tmp_path, capsys):
    # 1. a GPT-2 as transformers saves it, with a Hugging Face tokenizer beside it
    tokenizer = Tokenizer.train(TEXT, vocab_size=300, special_tokens=["<|endoftext|>"])
    hf_dir = tmp_path / "hf-gpt2"
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer.ranks) + 1, n_positions=64, n_embd=32, n_layer=2, n_head=4
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(hf_dir)
    tokenizer.save_hf(hf_dir)
    assert not (hf_dir / "tokenizer.txt").exists()  # only HF's files: the run must read them

    # 2. LoRA fine-tuning from it, through the command line
    run = tmp_path / "sft"
    settings = [f"out_dir='{run}'", "lora_rank=4", "lora_alpha=8", "lr=1e-2", "max_steps=6"]
    settings += ["batch_size=4", "seq_len=16", "warmup_steps=1", "eval_interval=0"]
    data = sft_data(tmp_path / "data")
    with backend.use_kernels(backend.kernels_name()):  # the CLI sets kernels: restore after
        assert main(["finetune", "--from", str(hf_dir), "--data", str(data), *settings]) == 0
    ckpt = latest_checkpoint(run)
    names = {p.name for p in load_checkpoint(ckpt).tokenizer_files}
    assert {"tokenizer.txt", "tokenizer.json"} <= names

    # the run's tokenizer is the HF directory's: same ids from AutoTokenizer on both
    sample = "the cat sat on the log. <|endoftext|> a dog"
    ours = tokenizer.encode(sample, allowed_special="all")
    for where in (hf_dir, ckpt):
        auto = transformers.AutoTokenizer.from_pretrained(where)
        assert auto(sample)["input_ids"] == ours, where

    # 3. the adapters alone, in PEFT's format, pointing at the HF directory as their base
    adapters = tmp_path / "adapters"
    assert main(["export", "--ckpt", str(run), "--out", str(adapters), "--adapters"]) == 0
    adapter_config = json.loads((adapters / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(hf_dir.resolve())

    # 4. PEFT on transformers' base, and tinygradlm on the adapter directory alone, agree
    ids = np.array([ours[:12], ours[-12:]])
    base = transformers.GPT2LMHeadModel.from_pretrained(hf_dir).eval()
    base_logits = hf_logits(base, ids)
    adapted = peft.PeftModel.from_pretrained(base, adapters).eval()
    peft_logits = hf_logits(adapted, ids)
    model = GPT.from_pretrained(adapters)
    assert model.lora is not None
    np.testing.assert_allclose(model.logits(ids), peft_logits, rtol=1e-4, atol=1e-5)
    assert np.abs(peft_logits - base_logits).max() > 1e-3  # the adapters trained

    # and sampling reads the adapter directory, its base and the base's tokenizer
    capsys.readouterr()
    command = ["sample", "--ckpt", str(adapters), "--prompt", "cat =", "--max-new-tokens", "3"]
    assert main(command) == 0
    assert capsys.readouterr().out.startswith("cat =")
