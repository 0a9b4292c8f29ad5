"""Our encoder against tiktoken, the oracle, on the same ranks and pattern: ranks we train
ourselves on the standard library's pydoc topics, given to ``tiktoken.Encoding`` directly (so
tiktoken never downloads anything), and the same ranks after a round trip through tiktoken's
rank file and GPT-2's encoder.json + vocab.bpe.

The two agree on every code point whose Unicode properties they agree on. The ``regex``
package can carry a newer Unicode than the one built into tiktoken, and then a code point
assigned since (a letter of a new CJK extension) is a letter to us and unassigned to tiktoken,
so a split pattern cuts it differently. Comparing the two engines' tables over every code point
(about a second) finds those for the installed pair; they are reported as a warning with their
ranges and both Unicode versions, each is checked to split differently with both patterns, and
the equality tests hold on all the others.
"""

from __future__ import annotations

import functools
import importlib.metadata
import pydoc_data.topics
import unicodedata
import warnings

import pytest
import regex
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


# Both split patterns read three Unicode properties (letter, number, whitespace) besides ASCII
# literals, so the two encoders can only cut differently where their property tables differ:
# where ``regex`` and tiktoken's Rust regex know different Unicode versions.
PROPERTIES = {"letter": r"\p{L}", "number": r"\p{N}", "whitespace": r"\s"}

# A letter first assigned in each recent Unicode version: the newest one a table holds as a
# letter names (a lower bound of) the version the table knows.
NEW_LETTERS = {
    "13.0": 0x30000,  # CJK Extension G
    "14.0": 0x10570,  # Vithkuqi
    "15.0": 0x31350,  # CJK Extension H
    "15.1": 0x2EBF0,  # CJK Extension I
    "16.0": 0x1E5D0,  # Ol Onal
    "17.0": 0x323B0,  # CJK Extension J
}


def every_code_point() -> list[int]:
    """All of Unicode but the surrogates, which are not text (UTF-8 cannot hold them)."""
    return [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def members_ours(pattern: str, code_points: list[int]) -> set[int]:
    """The code points ``regex`` (our split's engine) matches with a one-character pattern."""
    return {ord(ch) for ch in regex.findall(pattern, "".join(map(chr, code_points)))}


def members_tiktoken(pattern: str, code_points: list[int]) -> set[int]:
    """The same for tiktoken's engine: it encodes only the text its pattern matches, so with
    the 256 bytes as the whole vocabulary the ids spell exactly the matched characters."""
    byte_ranks = {bytes([byte]): byte for byte in range(256)}
    members = tiktoken.Encoding(
        "members", pat_str=pattern, mergeable_ranks=byte_ranks, special_tokens={}
    )
    ids = members.encode_ordinary("".join(map(chr, code_points)))
    return {ord(ch) for ch in bytes(ids).decode("utf-8")}


def unicode_version(letters: set[int]) -> str:
    """The newest version in NEW_LETTERS whose new letter is among ``letters``."""
    known = [version for version, letter in NEW_LETTERS.items() if letter in letters]
    return known[-1] if known else "older than 13.0"  # NEW_LETTERS runs oldest first


# Merges that reveal where a split pattern cuts: an anchor joined with any byte. In
# "a" + ch the pair ("a", ch's first byte) merges only if both sit in one chunk, that is if the
# pattern took ch as a letter; "1" + ch the same for a number, ch + "!" for another symbol (and
# whitespace is the code point none of the three joins). Equal ids mean equal cuts.
def probe_ranks() -> dict[bytes, int]:
    ranks = {bytes([byte]): byte for byte in range(256)}
    for anchor in b"a1":
        for byte in range(256):
            ranks.setdefault(bytes([anchor, byte]), len(ranks))
    for byte in range(256):
        ranks.setdefault(bytes([byte]) + b"!", len(ranks))
    return ranks


def probe_text(ch: str) -> str:
    return f"a{ch}\n1{ch}\n{ch}!"


def cut_differently(name: str, code_points) -> list[int]:
    """Those of ``code_points`` our encoder and tiktoken's cut differently with pattern
    ``name``, each encoded alone in :func:`probe_text`."""
    ranks = probe_ranks()
    ours = Tokenizer(ranks, name)
    theirs = _tiktoken_of(ours, name)
    return [
        c
        for c in code_points
        if ours.encode_ordinary(probe_text(chr(c))) != theirs.encode_ordinary(probe_text(chr(c)))
    ]


def code_point_ranges(code_points) -> str:
    """``U+31350-U+323AF (4,192), ...``: runs of consecutive code points with their counts."""
    runs: list[list[int]] = []
    for c in sorted(code_points):
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ", ".join(
        f"U+{a:04X}" + (f"-U+{b:04X} ({b - a + 1:,})" if b > a else "") for a, b in runs
    )


@functools.cache
def property_differences() -> frozenset[int]:
    """The code points the installed ``regex`` and tiktoken disagree on as a letter, a number
    or whitespace (their tables for all 1.1 M code points, in about a second), reported as a
    warning with their ranges and each side's Unicode version."""
    code_points = every_code_point()
    differing: set[int] = set()
    for pattern in PROPERTIES.values():
        differing ^= members_ours(pattern, code_points) ^ members_tiktoken(pattern, code_points)
    if differing:
        ours = unicode_version(members_ours(PROPERTIES["letter"], list(NEW_LETTERS.values())))
        theirs = unicode_version(members_tiktoken(PROPERTIES["letter"], list(NEW_LETTERS.values())))
        warnings.warn(
            f"{len(differing):,} code points are letters, numbers or whitespace to regex "
            f"{importlib.metadata.version('regex')} (Unicode {ours}) but not to tiktoken "
            f"{importlib.metadata.version('tiktoken')} (Unicode {theirs}), or the other way "
            f"round; they split differently and are left out of the equality tests: "
            f"{code_point_ranges(differing)}",
            stacklevel=1,
        )
    return frozenset(differing)


def without(text: str, code_points: frozenset[int]) -> str:
    return "".join(ch for ch in text if ord(ch) not in code_points)


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
    text = without(text, property_differences())
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


def test_our_tiktoken_file_loads_in_tiktoken(pair, tmp_path, monkeypatch):
    """tiktoken's own reader (load_tiktoken_bpe, on a local path) accepts what we write."""
    from tiktoken.load import load_tiktoken_bpe

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # no copy in $TMPDIR/data-gym-cache

    ours, _ = pair
    ours.save_tiktoken(tmp_path / "ranks.tiktoken")
    assert load_tiktoken_bpe(str(tmp_path / "ranks.tiktoken")) == ours.ranks


def test_our_gpt2_files_load_in_tiktoken(pair, tmp_path, monkeypatch):
    """tiktoken's GPT-2 reader (data_gym_to_mergeable_bpe_ranks) needs single bytes ranked in
    GPT-2's alphabet order, as GPT-2's own files are; we write any order, so give it that one."""
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    from tinygradlm.tokenizer.files import gpt2_byte_alphabet

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # no copy in $TMPDIR/data-gym-cache
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


@pytest.mark.parametrize("name", ["gpt2", "gpt4"])
def test_every_code_point_left_out_splits_differently(name):
    """Each code point the property tables disagree on is cut differently by the two encoders
    with the named pattern (none is left out for nothing), and code points next to them that
    the tables agree on are cut alike."""
    differing = property_differences()
    assert cut_differently(name, sorted(differing)) == sorted(differing)
    neighbours = {c + step for c in differing for step in (-1, 1)} - differing
    neighbours = {c for c in neighbours if 0 <= c < 0x110000 and not 0xD800 <= c <= 0xDFFF}
    assert cut_differently(name, sorted(neighbours)) == []


def test_code_points_left_out_are_unassigned_in_older_unicode():
    """The disagreements are recent assignments, not a mistake in our patterns: Python's own
    Unicode tables, when older than both, know none of them."""
    if tuple(int(part) for part in unicodedata.unidata_version.split(".")) >= (15,):
        pytest.skip(f"Python's Unicode {unicodedata.unidata_version} may be as new as tiktoken's")
    for c in property_differences():
        assert unicodedata.category(chr(c)) == "Cn", f"U+{c:04X} is assigned in Python's tables"


def test_the_tables_find_a_planted_difference():
    """Against an engine whose numbers are the ASCII digits only, the comparison of Arabic's
    block finds exactly its numbers (by Python's tables: Arabic-Indic and extended digits)."""
    arabic = list(range(0x0600, 0x0700))
    expected = {c for c in arabic if unicodedata.category(chr(c)).startswith("N")}
    assert len(expected) == 20
    assert members_ours(r"\p{N}", arabic) ^ members_tiktoken("[0-9]", arabic) == expected
    assert code_point_ranges([5, 1, 2, 3]) == "U+0001-U+0003 (3), U+0005"
    assert unicode_version({0x30000, 0x31350}) == "15.0"
