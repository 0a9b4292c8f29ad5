"""Hugging Face's tokenizer files both ways (tinygradlm/tokenizer/hf.py), the one resolver of a
checkpoint's tokenizer (tinygradlm/tokenizer/load.py), and the files checkpoints carry.

The oracles are HF's own libraries: ``tokenizers`` (the Rust tokenizer, with Oniguruma as its
regex engine) and ``transformers.AutoTokenizer``. GPT-2's published files would need a
download, so the tokenizers compared are trained here on the standard library's help topics,
by us and by HF's own trainer.
"""

from __future__ import annotations

import json
import os
import pydoc_data.topics
import types
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.checkpoint import load_checkpoint, save_checkpoint, save_model
from tinygradlm.errors import DataError
from tinygradlm.model import GPT, GPTConfig
from tinygradlm.optim import AdamW
from tinygradlm.tokenizer import (
    ENDOFTEXT,
    PATTERNS,
    Tokenizer,
    checkpoint_tokenizer,
    find_tokenizer_file,
    load_tokenizer,
)
from tinygradlm.tokenizer.hf import ONIGURUMA_PATTERNS, pattern_to_oniguruma

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TOPICS = [pydoc_data.topics.topics[name] for name in sorted(pydoc_data.topics.topics)]
TRAIN, HELD_OUT = TOPICS[:40], TOPICS[40:]
EDGE_CASES = [
    "12345678 1 22 333 4444",
    "it's IT'S we'LL you've \u017f \u212a x'y",  # long s and Kelvin fold to s and k
    "tabs\t\tand  spaces   \n\n  \r\n\r\n end  ",
    "trailing whitespace   ",
    "😀🎉 emoji, 東京2020 CJK, Ελληνικά, naïve café",
    "a<|endoftext|>b<|endoftext|><|endoftext|>",
    "x\u00a0y\u2003z\u3000w\x1c\x1dv\x85u",
    "",
]
# Text as HF and we both know it: Oniguruma's Unicode tables are newer than Python's, and the
# code points the two regex engines disagree on (docs/tokenizer.md, the Unicode version caveat)
# are all unassigned in Python 3.11's; surrogates are not text.
CHARACTERS = st.characters(blacklist_categories=("Cs", "Cn"))
SPECIAL_PIECES = st.sampled_from([ENDOFTEXT, " ", "  ", "\n", "\n\n", "123456", "'s", "😀", "東京"])
TEXT = st.lists(st.one_of(st.text(CHARACTERS, max_size=12), SPECIAL_PIECES), max_size=8).map(
    "".join
)


@pytest.fixture(scope="module", params=["gpt2", "gpt4"])
def trained(request) -> Tokenizer:
    return Tokenizer.train(TRAIN, vocab_size=700, pattern=request.param)


@pytest.fixture(scope="module")
def written(trained, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp(f"hf-{trained.pattern_name}")
    trained.save_hf(folder, model_max_length=64)
    return folder


def ours(tok: Tokenizer, text: str) -> list[int]:
    return tok.encode(text, allowed_special="all")


# --------------------------------------------------------------------------------------------
# writing: HF's libraries give our ids
# --------------------------------------------------------------------------------------------


def test_save_hf_writes_what_tokenizers_encodes_with_our_ids(trained, written):
    tokenizers = pytest.importorskip("tokenizers")
    hf = tokenizers.Tokenizer.from_file(str(written / "tokenizer.json"))
    for text in [*EDGE_CASES, *HELD_OUT[:8]]:
        ids = ours(trained, text)
        assert hf.encode(text).ids == ids, text[:80]
        assert hf.decode(ids, skip_special_tokens=False) == text


@given(text=TEXT)
def test_tokenizers_encodes_drawn_text_as_we_do(trained, written, text):
    pytest.importorskip("tokenizers")
    hf = _hf_tokenizer(written)
    assert hf.encode(text).ids == ours(trained, text)


_LOADED: dict[Path, object] = {}


def _hf_tokenizer(folder: Path):
    import tokenizers

    if folder not in _LOADED:
        _LOADED[folder] = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    return _LOADED[folder]


@given(text=st.lists(TEXT, min_size=1, max_size=4))
def test_auto_tokenizer_loads_the_folder_with_our_ids_and_text(trained, written, text):
    transformers = pytest.importorskip("transformers")
    key = written / "auto"
    if key not in _LOADED:
        _LOADED[key] = transformers.AutoTokenizer.from_pretrained(written)
    auto = _LOADED[key]
    assert auto.model_max_length == 64 and auto.eos_token == auto.bos_token == ENDOFTEXT
    assert auto.eos_token_id == trained.eot_token
    batch = auto(text)["input_ids"]
    assert batch == [ours(trained, t) for t in text]
    assert [auto.decode(ids) for ids in batch] == text


def test_read_back_gives_the_same_ranks_pattern_and_special_tokens(trained, written):
    back = Tokenizer.from_hf(written / "tokenizer.json")
    assert back.ranks == trained.ranks
    assert back.pattern == trained.pattern and back.pattern_name == trained.pattern_name
    assert back.special_tokens == trained.special_tokens
    assert Tokenizer.from_hf(written).ranks == trained.ranks  # the folder: tokenizer.json


def test_a_custom_pattern_is_written_as_the_split_regex_and_read_back(tmp_path):
    pattern = r"\p{L}+|\p{N}|\s+|[^\s\p{L}\p{N}]+"
    tok = Tokenizer.train(TRAIN[:5], vocab_size=300, pattern=pattern)
    tok.save_hf(tmp_path)
    back = Tokenizer.from_hf(tmp_path)
    assert back.pattern == pattern and back.ranks == tok.ranks
    tokenizers = pytest.importorskip("tokenizers")
    hf = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in EDGE_CASES:
        assert hf.encode(text).ids == ours(tok, text)


def test_several_special_tokens_are_added_tokens_both_ways(tmp_path):
    specials = (ENDOFTEXT, "<|im_start|>", "<|im_end|>")
    tok = Tokenizer.train(TRAIN[:5], vocab_size=300, special_tokens=specials)
    tok.save_hf(tmp_path)
    assert Tokenizer.from_hf(tmp_path).special_tokens == tok.special_tokens
    tokenizers = pytest.importorskip("tokenizers")
    hf = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    text = "<|im_start|>user\nhi<|im_end|><|endoftext|><|im_start|"
    assert hf.encode(text).ids == ours(tok, text)


def test_merges_written_as_strings_read_the_same(trained, written, tmp_path):
    document = json.loads((written / "tokenizer.json").read_text())
    document["model"]["merges"] = [" ".join(pair) for pair in document["model"]["merges"]]
    (tmp_path / "tokenizer.json").write_text(json.dumps(document))
    assert Tokenizer.from_hf(tmp_path / "tokenizer.json").ranks == trained.ranks


def test_tokenizer_config_names_the_fast_class_and_the_end_of_text_token(written):
    config = json.loads((written / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert config["bos_token"] == config["eos_token"] == ENDOFTEXT
    assert config["model_max_length"] == 64 and config["clean_up_tokenization_spaces"] is False


# --------------------------------------------------------------------------------------------
# the split patterns in Oniguruma
# --------------------------------------------------------------------------------------------


def _oniguruma_split(pattern: str, text: str) -> list[str]:
    tokenizers = pytest.importorskip("tokenizers")
    split = tokenizers.pre_tokenizers.Split(tokenizers.Regex(pattern), behavior="isolated")
    return [piece for piece, _ in split.pre_tokenize_str(text)]


@given(text=TEXT)
def test_our_patterns_as_written_for_oniguruma_split_as_ours(text):
    import regex

    for name in ("gpt2", "gpt4"):
        written = ONIGURUMA_PATTERNS.get(name, PATTERNS[name])
        assert _oniguruma_split(written, text) == regex.findall(PATTERNS[name], text), name


def test_a_counted_possessive_repeat_means_something_else_in_oniguruma():
    """Why ONIGURUMA_PATTERNS exists: `X{1,3}+` is "one or more of X{1,3}" there."""
    assert _oniguruma_split(PATTERNS["gpt4"], "12345") == ["12345"]
    assert _oniguruma_split(ONIGURUMA_PATTERNS["gpt4"], "12345") == ["123", "45"]
    with pytest.raises(ValueError, match=r"repeat count followed by '\+'"):
        pattern_to_oniguruma(r"\p{N}{1,2}+|\D+")
    custom = Tokenizer.train(TRAIN[:3], vocab_size=300, pattern=r"\p{N}{1,2}+|\D+|\d")
    with pytest.raises(ValueError, match="atomic group"):
        custom.save_hf(Path("never-written"))


# --------------------------------------------------------------------------------------------
# reading files HF wrote
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_trained(tmp_path_factory) -> tuple[object, Path]:
    """A byte-level BPE trained by HF's own trainer and saved by it."""
    tokenizers = pytest.importorskip("tokenizers")
    hf = tokenizers.Tokenizer(tokenizers.models.BPE())
    hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=800,
        special_tokens=[ENDOFTEXT],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(TRAIN, trainer)
    path = tmp_path_factory.mktemp("hf-trained") / "tokenizer.json"
    hf.save(str(path))
    return hf, path


def test_a_tokenizer_json_hf_trained_reads_with_its_ids(hf_trained):
    hf, path = hf_trained
    tok = Tokenizer.from_hf(path)
    assert tok.pattern_name == "gpt2" and tok.special_tokens == {ENDOFTEXT: 0}
    for text in [*EDGE_CASES, *HELD_OUT[:8]]:
        assert ours(tok, text) == hf.encode(text).ids, text[:80]


@given(text=TEXT)
def test_a_tokenizer_json_hf_trained_encodes_drawn_text_as_hf(hf_trained, text):
    hf, path = hf_trained
    if path not in _LOADED:
        _LOADED[path] = Tokenizer.from_hf(path)
    assert ours(_LOADED[path], text) == hf.encode(text).ids


def test_vocab_json_and_merges_txt_read_as_gpt2_tokenizer_reads_them(tmp_path):
    """GPT2Tokenizer's slow files are GPT-2's pair by other names; the special tokens come from
    tokenizer_config.json and special_tokens_map.json too."""
    trained = Tokenizer.train(TRAIN[:10], vocab_size=500, pattern="gpt2")
    trained.save_gpt2(tmp_path / "vocab.json", tmp_path / "merges.txt")
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"pad_token": "<pad>"}))
    back = Tokenizer.from_hf(tmp_path)
    assert back.ranks == trained.ranks and back.pattern == trained.pattern
    assert back.special_tokens == {**trained.special_tokens, "<pad>": trained.vocab_size}
    transformers = pytest.importorskip("transformers")
    gpt2 = transformers.GPT2Tokenizer(
        vocab=str(tmp_path / "vocab.json"), merges=str(tmp_path / "merges.txt")
    )
    for text in EDGE_CASES + HELD_OUT[:4]:
        assert gpt2(text)["input_ids"] == ours(back, text), text[:80]


# --------------------------------------------------------------------------------------------
# refusals, by name
# --------------------------------------------------------------------------------------------


def _edit(document: dict, change: str) -> None:
    model = document["model"]
    vocab = model["vocab"]
    if change == "model type":
        model["type"] = "WordPiece"
    elif change == "normalizer":
        document["normalizer"] = {"type": "NFC"}
    elif change == "lowercase":
        document["normalizer"] = {"type": "Lowercase"}
    elif change == "add_prefix_space":
        document["pre_tokenizer"]["add_prefix_space"] = True
    elif change == "byte_fallback":
        model["byte_fallback"] = True
    elif change == "dropout":
        model["dropout"] = 0.1
    elif change == "subword prefix":
        model["continuing_subword_prefix"] = "##"
    elif change == "post_processor":
        document["post_processor"] = {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": ENDOFTEXT, "type_id": 0}}],
        }
    elif change == "added token lstrip":
        document["added_tokens"][0]["lstrip"] = True
    elif change == "merge order":
        first, second = ("".join(pair) for pair in model["merges"][:2])
        vocab[first], vocab[second] = vocab[second], vocab[first]
    elif change == "unmade token":
        vocab["ĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠĠzq"] = max(vocab.values()) + 1
    elif change == "counted possessive":
        document["pre_tokenizer"] = {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": r"\p{N}{1,3}+|\D+"}, "behavior": "Isolated"},
                {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False},
            ],
        }


REFUSALS = {
    "model type": "'WordPiece'",
    "normalizer": "normalizer is 'NFC'",
    "lowercase": "normalizer is 'Lowercase'",
    "add_prefix_space": "add_prefix_space",
    "byte_fallback": "byte_fallback",
    "dropout": "dropout",
    "subword prefix": "continuing_subword_prefix",
    "post_processor": "post_processor .*adds tokens",
    "added token lstrip": "lstrip",
    "merge order": "not in merge order",
    "unmade token": "which no merge makes",
    "counted possessive": r"repeat count followed by '\+'",
}


@pytest.mark.parametrize("change", sorted(REFUSALS))
def test_what_cannot_be_represented_is_refused_by_name(hf_trained, tmp_path, change):
    document = json.loads(hf_trained[1].read_text())
    _edit(document, change)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(document))
    with pytest.raises(DataError, match=f"tokenizer.json: .*{REFUSALS[change]}"):
        Tokenizer.from_hf(path)


MALFORMED = {
    "added token not an object": ("added_tokens", [1]),
    "decoder a list": ("decoder", []),
    "pre_tokenizer a string": ("pre_tokenizer", "ByteLevel"),
    "merges not pairs": ("model", {"type": "BPE", "vocab": {}, "merges": [1]}),
    "vocab id a string": ("model", {"type": "BPE", "vocab": {"a": "0"}, "merges": []}),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_tokenizer_json_is_a_data_error_naming_the_file(hf_trained, tmp_path, case):
    document = json.loads(hf_trained[1].read_text())
    key, value = MALFORMED[case]
    document[key] = value
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(document))
    with pytest.raises(DataError, match=r"tokenizer\.json: "):
        Tokenizer.from_hf(path)


def test_merges_that_encoding_by_ids_would_make_otherwise_are_refused(tmp_path):
    """b+c before a+b: "abc" listed as ab+c, but encoding by ids reaches a,bc first."""
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {chr(c): i for i, c in enumerate(_alphabet())}
    n = len(vocab)
    vocab.update({"bc": n, "ab": n + 1, "abc": n + 2})
    hf = tokenizers.Tokenizer(tokenizers.models.BPE(vocab, [("b", "c"), ("a", "b"), ("ab", "c")]))
    hf.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.save(str(tmp_path / "tokenizer.json"))
    assert hf.encode("abc").ids == [vocab["a"], vocab["bc"]]  # HF never reaches "abc"
    with pytest.raises(DataError, match=r"make b'abc' .* from b'ab' \+ b'c'.*differently"):
        Tokenizer.from_hf(tmp_path / "tokenizer.json")


def _alphabet():
    from tinygradlm.tokenizer.files import gpt2_byte_alphabet

    return [ord(gpt2_byte_alphabet()[b]) for b in range(256)]


# --------------------------------------------------------------------------------------------
# one resolver
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> tuple[Path, dict[str, Tokenizer]]:
    """Three formats holding three different tokenizers, each in a folder of its own."""
    folder = tmp_path_factory.mktemp("three")
    tokenizers = {
        "tokenizer.txt": Tokenizer.train(TRAIN[:5], 270, "gpt2"),
        "tokenizer.json": Tokenizer.train(TRAIN[:5], 280, "gpt4"),
        "vocab.json": Tokenizer.train(TRAIN[:5], 290, "gpt2"),
    }
    for name in tokenizers:
        (folder / name).mkdir()
    tokenizers["tokenizer.txt"].save(folder / "tokenizer.txt" / "tokenizer.txt")
    tokenizers["tokenizer.json"].save_hf(folder / "tokenizer.json")
    hf_slow = folder / "vocab.json"
    tokenizers["vocab.json"].save_gpt2(hf_slow / "vocab.json", hf_slow / "merges.txt")
    return folder, tokenizers


@pytest.mark.parametrize("first", ["tokenizer.txt", "tokenizer.json", "vocab.json"])
def test_checkpoint_tokenizer_takes_the_first_format_present(three, first):
    folder, tokenizers = three
    order = ["tokenizer.txt", "tokenizer.json", "vocab.json"]
    # listed as a HF model folder lists its files
    names = [*order[order.index(first) :], "merges.txt", "tokenizer_config.json"]
    names.append("special_tokens_map.json")
    where = {"merges.txt": "vocab.json", "tokenizer_config.json": "tokenizer.json"}
    files = [folder / where.get(n, n) / n for n in names]
    ckpt = types.SimpleNamespace(path=folder, tokenizer_files=files)
    tok, path = checkpoint_tokenizer(ckpt)
    assert path == folder / first / first
    assert tok.ranks == tokenizers[first].ranks and tok.pattern == tokenizers[first].pattern
    assert load_tokenizer(path).ranks == tok.ranks


def test_load_tokenizer_reads_any_json_file_as_a_tokenizer_json(three, tmp_path):
    folder, tokenizers = three
    renamed = tmp_path / "my-tokenizer.json"
    renamed.write_bytes((folder / "tokenizer.json" / "tokenizer.json").read_bytes())
    assert load_tokenizer(renamed).ranks == tokenizers["tokenizer.json"].ranks


def test_checkpoint_tokenizer_without_one_names_the_folder_and_what_is_there(three, tmp_path):
    folder, _ = three
    merges = folder / "vocab.json" / "merges.txt"
    ckpt = types.SimpleNamespace(path=tmp_path / "ckpt", tokenizer_files=[merges])
    with pytest.raises(DataError, match=r"ckpt: no tokenizer .*found merges\.txt"):
        checkpoint_tokenizer(ckpt)
    (tmp_path / "vocab.json").write_text("{}")  # without merges.txt beside it: not a tokenizer
    with pytest.raises(DataError, match=r"found vocab\.json"):
        find_tokenizer_file([tmp_path / "vocab.json"], "here")


# --------------------------------------------------------------------------------------------
# checkpoints carry the HF files
# --------------------------------------------------------------------------------------------

CONFIG = GPTConfig(vocab_size=300, block_size=16, n_layer=1, n_head=2, n_embd=16)


@pytest.fixture(scope="module")
def model_and_tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    tok = Tokenizer.train(TRAIN[:5], CONFIG.vocab_size, "gpt4")
    tok.save(folder / "tokenizer.txt")
    return GPT(CONFIG, seed=0), tok, folder / "tokenizer.txt"


def test_a_checkpoint_carries_tokenizer_json_that_auto_tokenizer_loads(
    model_and_tokenizer, tmp_path
):
    model, tok, path = model_and_tokenizer
    optimizer = AdamW.for_model(model, lr=1e-3)
    ckpt_dir = save_checkpoint(tmp_path / "run", 3, model, optimizer, {}, tokenizer_files=[path])
    exported = save_model(tmp_path / "export", model, tokenizer_files=[path])
    for folder in (ckpt_dir, exported):
        manifest = json.loads((folder / "manifest.json").read_text())
        for name in ("tokenizer.txt", "tokenizer.json", "tokenizer_config.json"):
            assert name in manifest["files"], name
        ckpt = load_checkpoint(folder)
        assert checkpoint_tokenizer(ckpt)[1].name == "tokenizer.txt"
        assert Tokenizer.from_hf(folder / "tokenizer.json").ranks == tok.ranks
    transformers = pytest.importorskip("transformers")
    for folder in (ckpt_dir, exported):
        auto = transformers.AutoTokenizer.from_pretrained(folder)
        assert auto.model_max_length == CONFIG.block_size
        for text in EDGE_CASES:
            assert auto(text)["input_ids"] == ours(tok, text)


def test_a_checkpoint_given_only_tokenizer_json_carries_a_tokenizer_txt(
    model_and_tokenizer, tmp_path
):
    model, tok, _ = model_and_tokenizer
    (json_path, _) = tok.save_hf(tmp_path / "hf")
    exported = save_model(tmp_path / "export", model, tokenizer_files=[json_path])
    assert (exported / "tokenizer.json").read_bytes() == json_path.read_bytes()  # copied
    assert Tokenizer.load(exported / "tokenizer.txt").ranks == tok.ranks  # made
    config = json.loads((exported / "config.json").read_text())
    assert config["eos_token_id"] == config["bos_token_id"] == tok.eot_token


def test_an_older_checkpoint_without_hf_files_still_loads(model_and_tokenizer, tmp_path):
    model, tok, path = model_and_tokenizer
    folder = save_model(tmp_path / "old", model, tokenizer_files=[path])
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in ("tokenizer.json", "tokenizer_config.json"):
        del manifest["files"][name]
        (folder / name).unlink()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    ckpt = load_checkpoint(folder)
    assert [p.name for p in ckpt.tokenizer_files] == ["tokenizer.txt"]
    assert checkpoint_tokenizer(ckpt)[0].ranks == tok.ranks


def test_hf_files_this_package_cannot_read_are_copied_as_they_are(model_and_tokenizer, tmp_path):
    model, _, _ = model_and_tokenizer
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "WordPiece"}}')
    exported = save_model(tmp_path / "export", model, tokenizer_files=[tmp_path / "tokenizer.json"])
    assert sorted(p.name for p in exported.iterdir()) == [
        "config.json",
        "manifest.json",
        "model.safetensors",
        "tokenizer.json",
    ]


def test_a_finetuning_run_reads_a_tokenizer_json_and_its_checkpoints_carry_tokenizer_txt(
    model_and_tokenizer, tmp_path
):
    from tinygradlm.generate import sample_from_checkpoint
    from tinygradlm.train import FinetuneConfig, Trainer

    model, tok, path = model_and_tokenizer
    init = save_model(tmp_path / "init", model, tokenizer_files=[path])
    json_path, _ = tok.save_hf(tmp_path / "hf")
    (tmp_path / "task").mkdir()
    record = json.dumps({"prompt": "the ", "response": "print"}) + "\n"
    (tmp_path / "task" / "train.jsonl").write_text(record * 8)
    config = FinetuneConfig.from_dict(
        {
            "init_from": str(init),
            "tokenizer": str(json_path),
            "data": str(tmp_path / "task"),
            "out_dir": str(tmp_path / "out"),
            "batch_size": 2,
            "seq_len": 8,
            "max_steps": 2,
            "eval_interval": 0,
            "checkpoint_interval": 2,
            "log_interval": 1000,
        }
    )
    trainer = Trainer(config, log=lambda _m: None)
    assert trainer.tokenizer.ranks == tok.ranks
    trainer.train()
    ckpt = load_checkpoint(tmp_path / "out" / "ckpt_00000002")
    names = sorted(p.name for p in ckpt.tokenizer_files)
    assert names == ["tokenizer.json", "tokenizer.txt", "tokenizer_config.json"]
    assert Tokenizer.load(ckpt.path / "tokenizer.txt").ranks == tok.ranks
    text = sample_from_checkpoint(ckpt.path, "the", 3, temperature=0)
    assert text == sample_from_checkpoint(
        ckpt.path, "the", 3, temperature=0, tokenizer_path=json_path
    )


def test_a_hugging_face_model_directory_gives_its_tokenizer_json(hf_trained, tmp_path):
    """A folder written by transformers' save_pretrained (model and fast tokenizer), as
    load_checkpoint reads it: checkpoint_tokenizer takes its tokenizer.json, sampling works,
    and an export of it carries a tokenizer.txt made from that file."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    from tinygradlm.checkpoint import model_from_checkpoint
    from tinygradlm.generate import sample_from_checkpoint

    hf, _ = hf_trained
    folder = tmp_path / "hf-model"
    config = transformers.GPT2Config(
        vocab_size=hf.get_vocab_size(), n_positions=16, n_embd=16, n_layer=1, n_head=2
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    transformers.PreTrainedTokenizerFast(tokenizer_object=hf).save_pretrained(folder)
    ckpt = load_checkpoint(folder)
    tok, path = checkpoint_tokenizer(ckpt)
    assert path == folder / "tokenizer.json"
    for text in EDGE_CASES:
        assert ours(tok, text) == hf.encode(text).ids
    assert sample_from_checkpoint(folder, "the", 2, temperature=0).startswith("the")
    exported = save_model(
        tmp_path / "export", model_from_checkpoint(ckpt), tokenizer_files=ckpt.tokenizer_files
    )
    assert checkpoint_tokenizer(load_checkpoint(exported))[1].name == "tokenizer.txt"
    assert Tokenizer.load(exported / "tokenizer.txt").ranks == tok.ranks
