"""Our encoder against tiktoken, the oracle, on the same ranks and pattern: ranks we train
ourselves on the standard library's pydoc topics, given to ``tiktoken.Encoding`` directly (so
tiktoken never downloads anything), and the same ranks after a round trip through tiktoken's
rank file and GPT-2's encoder.json + vocab.bpe."""

from __future__ import annotations

import pydoc_data.topics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.errors import DataError
from tinygradlm.tokenizer import ENDOFTEXT, Tokenizer

tiktoken = pytest.importorskip("tiktoken")

TOPICS = [pydoc_data.topics.topics[name] for name in sorted(pydoc_data.topics.topics)]

VARIED = {
    "english": "The quick brown fox jumps over the lazy dog. It's what we'd've DONE, isn't it?",
    "code": 'def f(x: int) -> int:\n    """Doc."""\n    return x ** 2  # square\n\n\nprint(f(3))\n',
    "numbers": "3.14159 2718281828 1,000,000 0x1F 1e-10 -42 12345678901234567890",
    "whitespace runs": "a  b   c\t\td\n\n\ne \r\n f   \n   \n" + " " * 70 + "g" + "\n" * 70,
    "trailing whitespace": "ends with spaces    ",
    "punctuation runs": "!!!??? ... --- === ***" + "=" * 100 + " {[()]} <|> '''\"\"\"",
    "emoji": "😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ✨🚀 ❤️",
    "accented": "Ça va? Über naïve café résumé São Paulo Ångström piñata",
    "cjk": "日本語のテキストです。中文文本。한국어 텍스트",
    "cyrillic": "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "arabic": "مرحبا بالعالم، هذا نص عربي.",
    "devanagari": "नमस्ते दुनिया, यह हिंदी पाठ है।",
    "mixed scripts": "Straße ΣΊΣΥΦΟΣ Ελληνικά abc123def 東京2020 x²+y²=z²",
    "contractions": "I'M HERE, you'll see, they've gone, he's 'quoted' 'tis",
    "control characters": "\x00\x01\x7f\u200b\u00a0\ufeffzero-width\u2028line",
    "empty": "",
}


@pytest.fixture(scope="module", params=["gpt2", "gpt4"])
def pair(request) -> tuple[Tokenizer, object]:
    """Our tokenizer trained on 160 KB of the pydoc topics, and tiktoken on its ranks."""
    ours = Tokenizer.train(TOPICS[:40], 1500, pattern=request.param)
    return ours, _tiktoken_of(ours, request.param)


def _tiktoken_of(tok: Tokenizer, name: str):
    return tiktoken.Encoding(
        f"tinygradlm-{name}",
        pat_str=tok.pattern,
        mergeable_ranks=tok.ranks,
        special_tokens=tok.special_tokens,
    )


@pytest.mark.parametrize("kind", sorted(VARIED))
def test_encode_equals_tiktoken_on_varied_text(pair, kind):
    ours, theirs = pair
    text = VARIED[kind]
    assert ours.encode_ordinary(text) == theirs.encode_ordinary(text)
    assert ours.encode(text) == theirs.encode(text)
    assert ours.decode(ours.encode(text)) == theirs.decode(theirs.encode(text)) == text


def test_encode_equals_tiktoken_on_the_corpus_it_did_not_train_on(pair):
    ours, theirs = pair
    for text in TOPICS[40:]:
        assert ours.encode_ordinary(text) == theirs.encode_ordinary(text)


def test_encode_equals_tiktoken_with_special_tokens(pair):
    ours, theirs = pair
    text = ENDOFTEXT.join(VARIED.values())
    assert ours.encode(text, allowed_special="all") == theirs.encode(text, allowed_special="all")
    assert ours.encode(text, disallowed_special=()) == theirs.encode(text, disallowed_special=())
    with pytest.raises(DataError):
        ours.encode(text)
    with pytest.raises(ValueError):
        theirs.encode(text)


@given(text=st.text())
def test_encode_equals_tiktoken_on_drawn_text(pair, text):
    ours, theirs = pair
    assert ours.encode_ordinary(text) == theirs.encode_ordinary(text)


@given(text=st.text(alphabet=st.sampled_from(" \n\t'aA1é😀!-"), max_size=200))
def test_encode_equals_tiktoken_on_drawn_pattern_edge_cases(pair, text):
    ours, theirs = pair
    assert ours.encode_ordinary(text) == theirs.encode_ordinary(text)


@pytest.mark.parametrize("via", ["tiktoken file", "gpt2 files", "our text format"])
def test_imported_ranks_encode_as_tiktoken(pair, tmp_path, via):
    ours, theirs = pair
    name = ours.pattern_name
    if via == "tiktoken file":
        ours.save_tiktoken(tmp_path / "ranks.tiktoken")
        loaded = Tokenizer.from_tiktoken(tmp_path / "ranks.tiktoken", name, ours.special_tokens)
    elif via == "gpt2 files":
        ours.save_gpt2(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
        loaded = Tokenizer.from_gpt2(tmp_path / "encoder.json", tmp_path / "vocab.bpe", name)
    else:
        ours.save(tmp_path / "tokenizer.txt")
        loaded = Tokenizer.load(tmp_path / "tokenizer.txt")
    assert loaded.ranks == ours.ranks and loaded.special_tokens == ours.special_tokens
    reloaded_theirs = _tiktoken_of(loaded, name)
    text = ENDOFTEXT.join([*VARIED.values(), TOPICS[60]])
    expected = theirs.encode(text, allowed_special="all")
    assert loaded.encode(text, allowed_special="all") == expected
    assert reloaded_theirs.encode(text, allowed_special="all") == expected


def test_our_tiktoken_file_loads_in_tiktoken(pair, tmp_path):
    """tiktoken's own reader (load_tiktoken_bpe, on a local path) accepts what we write."""
    from tiktoken.load import load_tiktoken_bpe

    ours, _ = pair
    ours.save_tiktoken(tmp_path / "ranks.tiktoken")
    assert load_tiktoken_bpe(str(tmp_path / "ranks.tiktoken")) == ours.ranks


def test_our_gpt2_files_load_in_tiktoken(pair, tmp_path):
    """tiktoken's GPT-2 reader (data_gym_to_mergeable_bpe_ranks) needs single bytes ranked in
    GPT-2's alphabet order, as GPT-2's own files are; we write any order, so give it that one."""
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    from tinygradlm.tokenizer.files import gpt2_byte_alphabet

    ours, _ = pair
    alphabet_order = list(gpt2_byte_alphabet())
    ranks = {bytes([byte]): i for i, byte in enumerate(alphabet_order)}
    ranks.update({token: rank for token, rank in ours.ranks.items() if len(token) > 1})
    gpt2_like = Tokenizer(ranks, ours.pattern, ours.special_tokens)
    gpt2_like.save_gpt2(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    theirs = data_gym_to_mergeable_bpe_ranks(
        str(tmp_path / "vocab.bpe"), str(tmp_path / "encoder.json")
    )
    assert theirs == ranks
