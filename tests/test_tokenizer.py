"""tinygradlm.tokenizer: BPE training by hand and against a slow reference, encoding, special
tokens, decoding, and the three file formats. Equality with tiktoken is in
test_tokenizer_tiktoken.py."""

from __future__ import annotations

import doctest
import json
import pydoc_data.topics
import time
from collections import Counter
from itertools import pairwise

import numpy as np
import pytest
import regex
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.errors import DataError
from tinygradlm.tokenizer import (
    ENDOFTEXT,
    PATTERNS,
    Tokenizer,
    bpe,
    bpe_merge,
    bpe_merge_long,
    resolve_pattern,
    training,
)
from tinygradlm.tokenizer import files as tokenizer_files

TOPICS = [pydoc_data.topics.topics[name] for name in sorted(pydoc_data.topics.topics)]


@pytest.fixture(scope="module")
def trained() -> Tokenizer:
    """A small tokenizer trained on 150 KB of the pydoc topics, with two special tokens."""
    return Tokenizer.train(TOPICS[:30], 600, special_tokens=(ENDOFTEXT, "<|pad|>"))


def slow_reference_train(texts: list[str], n_merges: int, pattern: str) -> dict[bytes, int]:
    """BPE training written the obvious way: every merge recounts every pair of every chunk
    occurrence and takes the max by (count, then smallest (a, b))."""
    split = regex.compile(PATTERNS[pattern])
    words = [list(chunk.encode()) for text in texts for chunk in split.findall(text)]
    ranks = {bytes([byte]): byte for byte in range(256)}
    token_bytes = [bytes([byte]) for byte in range(256)]
    while len(token_bytes) < 256 + n_merges:
        counts = Counter(pair for word in words for pair in pairwise(word))
        if not counts:
            break
        a, b = min(counts, key=lambda pair: (-counts[pair], pair))
        merged = token_bytes[a] + token_bytes[b]
        assert merged not in ranks  # no merge makes the bytes of an existing token
        ranks[merged] = len(token_bytes)
        token_bytes.append(merged)
        words = [training.merge_pair(word, a, b, ranks[merged]) for word in words]
    return ranks


# ---- training ------------------------------------------------------------------------------------


def test_train_known_answer_aaabdaaabac():
    """Wikipedia's BPE example, by hand. The text is one chunk (all letters): a a a b d a a a b a c.

    Pair counts: aa 4, ab 2, bd 1, da 1, ba 1, ac 1.
      merge 1: (a, a) = (97, 97), count 4 → 256 "aa".       Chunk: 256 a b d 256 a b a c
    (merging left to right, "aaa" becomes "aa" "a"). Pair counts: (256, a) 2, (a, b) 2, bd, d256,
    ba, ac 1. Two pairs tie at 2; the smaller ids win: (97, 98) < (256, 97).
      merge 2: (a, b) = (97, 98) → 257 "ab".                Chunk: 256 257 d 256 257 a c
    Pair counts: (256, 257) 2, all others 1.
      merge 3: (256, 257) → 258 "aaab".                      Chunk: 258 d 258 a c
    Pair counts: (258, d) (d, 258) (258, a) (a, c), all 1: the smallest ids are (97, 99).
      merge 4: (a, c) = (97, 99) → 259 "ac".                 Chunk: 258 d 258 259
    """
    tok = Tokenizer.train(["aaabdaaabac"], 256 + 4, special_tokens=())
    assert tok.merges() == {256: (97, 97), 257: (97, 98), 258: (256, 257), 259: (97, 99)}
    assert [tok.token_bytes(i) for i in range(256, 260)] == [b"aa", b"ab", b"aaab", b"ac"]
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, 259]
    assert tok.vocab_size == 260 and tok.special_tokens == {}


def test_train_tie_break_is_count_then_smallest_ids():
    # "cd" occurs twice, "ab" once: the count decides
    assert Tokenizer.train(["cd", "cd", "ab"], 257, special_tokens=()).merges() == {
        256: (ord("c"), ord("d"))
    }
    # equal counts: the smaller left id, then the smaller right id; input order is irrelevant
    for texts in (["cd", "ab"], ["ab", "cd"]):
        assert Tokenizer.train(texts, 257, special_tokens=()).merges() == {256: (97, 98)}
    assert Tokenizer.train(["ac", "ab"], 257, special_tokens=()).merges() == {256: (97, 98)}


@given(
    texts=st.lists(st.text(alphabet="ab c\n'éA1", max_size=40), max_size=8),
    n_merges=st.integers(1, 40),
    pattern=st.sampled_from(["gpt2", "gpt4"]),
)
def test_train_matches_slow_reference(texts, n_merges, pattern):
    fast = Tokenizer.train(texts, 256 + n_merges, pattern=pattern, special_tokens=())
    assert fast.ranks == slow_reference_train(texts, n_merges, pattern)


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_train_matches_slow_reference_on_real_text(pattern):
    texts = [TOPICS[7][:4000], TOPICS[50][:4000]]
    fast = Tokenizer.train(texts, 256 + 150, pattern=pattern, special_tokens=())
    assert fast.ranks == slow_reference_train(texts, 150, pattern)


def test_train_assigns_ids_bytes_merges_then_specials(trained):
    assert trained.vocab_size == 600
    assert all(trained.token_bytes(b) == bytes([b]) for b in range(256))
    assert sorted(trained.ranks.values()) == list(range(598))
    assert trained.special_tokens == {ENDOFTEXT: 598, "<|pad|>": 599}
    assert trained.eot_token == 598


def test_train_reads_the_corpus_once_whatever_the_number_of_merges():
    reads = []

    def corpus():
        for text in TOPICS:
            reads.append(len(text))
            yield text

    for vocab_size in (300, 3000):
        for pattern in ("gpt4", r"\w+|\s+|[^\w\s]+"):  # the Numba split, and the regex one
            reads.clear()
            start = time.perf_counter()
            Tokenizer.train(corpus(), vocab_size, pattern=pattern)  # 470 KB
            seconds = time.perf_counter() - start
            assert len(reads) == len(TOPICS)  # one pass over the texts, not one per merge
    # 2,700 merges over the whole pydoc corpus: about a second; recounting per merge takes minutes
    assert seconds < 15


def test_train_stops_early_when_nothing_is_left_to_merge():
    tok = Tokenizer.train(["ab ab"], 1000, special_tokens=(ENDOFTEXT,))
    assert tok.ranks[b"ab"] == 256 and tok.ranks[b" ab"] == 257
    assert tok.vocab_size == 259 and tok.eot_token == 258


def test_train_treats_special_tokens_in_the_corpus_as_boundaries():
    tok = Tokenizer.train([f"x{ENDOFTEXT}y"] * 5, 300)
    assert not any(b"<|" in token or b"|>" in token for token in tok.ranks if len(token) > 1)


def test_train_rejects_a_vocabulary_smaller_than_the_bytes():
    with pytest.raises(ValueError, match="smaller than the 256 byte tokens"):
        Tokenizer.train(["abc"], 256)


def test_train_reports_lone_surrogates_as_data_errors():
    with pytest.raises(DataError, match="lone surrogate U\\+D800"):
        Tokenizer.train(["ok", "bad \ud800 text"], 300)


def test_train_progress_bar_runs(capsys):
    Tokenizer.train(["hello world"] * 3, 270, progress=True)
    assert "merges" in capsys.readouterr().err


# ---- the encoding merge loop ---------------------------------------------------------------------


@given(piece=st.binary(min_size=1, max_size=300) | st.text("ab eé", min_size=1).map(str.encode))
def test_bpe_merge_long_matches_the_quadratic_loop(trained, piece):
    ranks = trained.ranks
    assert bpe_merge_long(piece, ranks) == bpe_merge(piece, ranks)


def test_long_chunks_use_the_heap_and_agree(trained):
    text = " " * 2000 + "x" + "=" * 1000 + "\n" * 100
    tok = Tokenizer(trained.ranks, special_tokens=trained.special_tokens)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert ids == [i for chunk in tok._split.findall(text) for i in _quadratic(tok, chunk)]


def _quadratic(tok: Tokenizer, chunk: str) -> list[int]:
    return [tok.ranks[part] for part in bpe_merge(chunk.encode(), tok.ranks)]


def test_a_chunk_that_is_a_token_is_that_token(trained):
    """tiktoken looks a chunk up whole before merging; so do we."""
    for token, rank in list(trained.ranks.items())[256:300]:
        text = token.decode("utf-8", errors="ignore")
        if text and text.encode() == token and trained._split.fullmatch(text):
            assert trained.encode_ordinary(text) == [rank]


def test_the_cache_changes_nothing_and_stays_bounded(trained, monkeypatch):
    monkeypatch.setattr(bpe, "_CACHE_SIZE", 10)
    monkeypatch.setattr(bpe, "_FAST_MIN_CHARS", 1 << 62)  # the cache is the reference path's
    tok = Tokenizer(trained.ranks, special_tokens=trained.special_tokens)
    text = TOPICS[40][:20000]
    first = tok.encode(text)
    assert len(tok._cache) <= 10
    assert tok.encode(text) == first
    tok._cache.clear()
    assert tok.encode(text) == first


# ---- round trips -------------------------------------------------------------------------------


@given(text=st.text())
def test_decode_inverts_encode_on_any_unicode_text(trained, text):
    assert trained.decode(trained.encode_ordinary(text)) == text
    assert trained.decode(trained.encode(text, disallowed_special=())) == text


@given(segments=st.lists(st.text(), min_size=1, max_size=5), data=st.data())
def test_decode_inverts_encode_with_special_tokens_allowed(trained, segments, data):
    specials = [data.draw(st.sampled_from([ENDOFTEXT, "<|pad|>"])) for _ in segments[1:]]
    text = segments[0] + "".join(s + seg for s, seg in zip(specials, segments[1:], strict=True))
    ids = trained.encode(text, allowed_special="all")
    assert trained.decode(ids) == text
    n_special = text.count(ENDOFTEXT) + text.count("<|pad|>")
    assert sum(i in (598, 599) for i in ids) == n_special


def test_lone_surrogates_raise_a_data_error_naming_the_position(trained):
    with pytest.raises(DataError, match=r"U\+DC00 at character 3"):
        trained.encode("abc\udc00def")
    with pytest.raises(DataError, match=r"U\+D83D at character 1"):
        trained.encode_ordinary("x\ud83d")
    with pytest.raises(DataError, match=r"U\+D800 at character 14"):
        trained.encode(f"a{ENDOFTEXT}\ud800", allowed_special="all")
    # a surrogate pair written as two code points is not a character either
    with pytest.raises(DataError, match="lone surrogate"):
        trained.encode("\ud83d\ude00")


def test_decode_replaces_invalid_utf8_and_decode_bytes_keeps_it(trained):
    ids = trained.encode("é")  # two bytes, 0xC3 0xA9
    cut = [trained.ranks[b"\xc3"]]
    assert trained.decode(cut) == "\ufffd"
    assert trained.decode_bytes(cut) == b"\xc3"
    assert trained.decode_bytes(ids) == "é".encode()
    assert trained.decode([*cut, ord("a")]) == "\ufffda"


def test_decode_rejects_unknown_ids(trained):
    with pytest.raises(DataError, match="token id 600 is not in the vocabulary"):
        trained.decode([1, 600])
    with pytest.raises(DataError, match="token id -1"):
        trained.decode_bytes([-1])


def test_encode_to_array_picks_the_smallest_dtype(trained):
    ids = trained.encode_to_array("hello world")
    assert ids.dtype == np.uint16 and ids.tolist() == trained.encode("hello world")
    big = Tokenizer(trained.ranks, special_tokens={ENDOFTEXT: 70_000})
    arr = big.encode_to_array(f"hi{ENDOFTEXT}", allowed_special="all")
    assert arr.dtype == np.uint32 and arr[-1] == 70_000


# ---- special tokens ------------------------------------------------------------------------------


def test_allowed_special_tokens_become_their_ids(trained):
    text = f"one{ENDOFTEXT}two<|pad|>"
    assert trained.encode(text, allowed_special="all") == [
        *trained.encode_ordinary("one"),
        598,
        *trained.encode_ordinary("two"),
        599,
    ]
    # only the allowed one is special; the other is ordinary text, as disallowed_special=()
    some = trained.encode(text, allowed_special={ENDOFTEXT}, disallowed_special=())
    assert some == [*trained.encode_ordinary("one"), 598, *trained.encode_ordinary("two<|pad|>")]


def test_disallowed_special_tokens_raise_naming_token_and_position(trained):
    with pytest.raises(DataError, match=r"special token '<\|endoftext\|>' at character 5"):
        trained.encode(f"hello{ENDOFTEXT}")
    # allowing one leaves the others disallowed by default
    with pytest.raises(DataError, match=r"'<\|pad\|>' at character 15"):
        trained.encode(f"a{ENDOFTEXT}b<|pad|>", allowed_special={ENDOFTEXT})
    with pytest.raises(DataError, match=regex.escape("<|pad|>")):
        trained.encode("<|pad|>", disallowed_special={"<|pad|>"})


def test_special_tokens_neither_allowed_nor_disallowed_are_ordinary_text(trained):
    text = f"a{ENDOFTEXT}b"
    assert trained.encode(text, disallowed_special=()) == trained.encode_ordinary(text)
    assert 598 not in trained.encode(text, disallowed_special=())
    assert trained.encode(text, disallowed_special={"<|pad|>"}) == trained.encode_ordinary(text)


def test_unknown_special_token_names_are_rejected(trained):
    with pytest.raises(ValueError, match="not special tokens"):
        trained.encode("x", allowed_special={"<|nope|>"})


def test_overlapping_special_tokens_match_the_longest():
    tok = Tokenizer({bytes([b]): b for b in range(256)}, special_tokens={"<a>": 256, "<a>b": 257})
    assert tok.encode("<a>b<a>", allowed_special="all") == [257, 256]


# ---- construction ------------------------------------------------------------------------------


def test_patterns_by_name_or_regex():
    ranks = {bytes([b]): b for b in range(256)}
    assert Tokenizer(ranks, "gpt2").pattern == PATTERNS["gpt2"]
    assert Tokenizer(ranks, "gpt2").pattern_name == "gpt2"
    custom = Tokenizer(ranks, r"\S+|\s+")
    assert custom.pattern_name is None and custom._split.findall("a b") == ["a", " ", "b"]
    with pytest.raises(ValueError, match="neither a name"):
        Tokenizer(ranks, "gpt5(")


def test_a_vocabulary_must_hold_every_byte_and_unique_ids():
    ranks = {bytes([b]): b for b in range(256)}
    with pytest.raises(DataError, match="lack 1 of the 256 single bytes"):
        Tokenizer({k: v for k, v in ranks.items() if k != b"\x07"})
    with pytest.raises(DataError, match="share the id 5"):
        Tokenizer({**ranks, b"ab": 5})
    with pytest.raises(DataError, match="has the id 97"):
        Tokenizer(ranks, special_tokens={ENDOFTEXT: 97})
    with pytest.raises(DataError, match="empty string"):
        Tokenizer(ranks, special_tokens={"": 256})


# ---- files ---------------------------------------------------------------------------------------


SAMPLE = (
    "Hello, world! It's 2024.\n\tdef f(x): return x  # ok\nПривет 日本 😀 é\n"  # noqa: RUF001
    + TOPICS[3][:3000]
)


def _same(a: Tokenizer, b: Tokenizer) -> None:
    assert a.ranks == b.ranks
    assert a.special_tokens == b.special_tokens
    assert a.encode(SAMPLE + ENDOFTEXT, allowed_special="all") == b.encode(
        SAMPLE + ENDOFTEXT, allowed_special="all"
    )


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4", r"\w+|\W"])
def test_save_load_round_trip(trained, tmp_path, pattern):
    tok = Tokenizer(trained.ranks, pattern, trained.special_tokens)
    tok.save(tmp_path / "tok.txt")
    loaded = Tokenizer.load(tmp_path / "tok.txt")
    _same(tok, loaded)
    assert loaded.pattern == tok.pattern


def test_saved_file_is_readable_text(trained, tmp_path):
    trained.save(tmp_path / "tok.txt")
    lines = (tmp_path / "tok.txt").read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "tinygradlm-bpe" and header["version"] == 1
    assert header["pattern"] == PATTERNS["gpt4"] and header["tokens"] == 598
    assert header["special_tokens"] == {ENDOFTEXT: 598, "<|pad|>": 599}
    assert lines[1] == '0 "\\x00"' and lines[1 + ord("a")] == '97 "a"'
    assert lines[1 + ord('"')] == '34 "\\""' and lines[1 + ord("\\")] == '92 "\\\\"'
    left, right = trained.merges()[256]
    merged = trained.token_bytes(256).decode()
    assert lines[257] == f'256 "{merged}" = {left} {right}'


@given(token=st.binary(max_size=20) | st.text(max_size=8).map(str.encode))
def test_token_escaping_round_trips(token):
    escaped = tokenizer_files.escape_token(token)
    assert '"' not in escaped.replace('\\"', "")
    assert "\n" not in escaped
    assert tokenizer_files.unescape_token(escaped) == token


def test_permuted_byte_ranks_survive_every_format(tmp_path):
    """GPT-2's own ranks give single bytes ids in its alphabet's order, not by byte value."""
    order = sorted(range(256), key=lambda b: (b in (9, 10, 32), -b))
    ranks = {bytes([b]): i for i, b in enumerate(order)}
    ranks.update({b"ab": 256, b" a": 257, b" ab": 258, b"\n\n": 260})  # 259 is a gap
    tok = Tokenizer(ranks, "gpt2", {ENDOFTEXT: 261})
    tok.save(tmp_path / "tok.txt")
    _same(tok, Tokenizer.load(tmp_path / "tok.txt"))
    tok.save_tiktoken(tmp_path / "r.tiktoken")
    _same(tok, Tokenizer.from_tiktoken(tmp_path / "r.tiktoken", "gpt2", {ENDOFTEXT: 261}))
    tok.save_gpt2(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    _same(tok, Tokenizer.from_gpt2(tmp_path / "encoder.json", tmp_path / "vocab.bpe"))
    with pytest.raises(DataError, match="token id 259"):
        tok.decode([259])


def test_tiktoken_file_round_trip(trained, tmp_path):
    trained.save_tiktoken(tmp_path / "r.tiktoken")
    first = (tmp_path / "r.tiktoken").read_text().splitlines()[ord("a")]
    assert first == "YQ== 97"  # base64(b"a") and its rank
    loaded = Tokenizer.from_tiktoken(tmp_path / "r.tiktoken", "gpt4", trained.special_tokens)
    _same(trained, loaded)


def test_gpt2_files_round_trip(trained, tmp_path):
    trained.save_gpt2(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    encoder = json.loads((tmp_path / "encoder.json").read_text(encoding="utf-8"))
    assert encoder["Ġ"] == 32 and encoder["!"] == 33 and encoder[ENDOFTEXT] == 598
    merges = (tmp_path / "vocab.bpe").read_text(encoding="utf-8").splitlines()
    assert merges[0] == "#version: 0.2" and len(merges) == 1 + 598 - 256
    loaded = Tokenizer.from_gpt2(tmp_path / "encoder.json", tmp_path / "vocab.bpe", "gpt4")
    _same(trained, loaded)


# Each case: (which file to corrupt, a function of its lines, the line the error must name).
TEXT_FORMAT_FAULTS = {
    "not json header": (lambda lines: ["{oops", *lines[1:]], 1),
    "wrong format name": (lambda lines: ['{"format": "x"}', *lines[1:]], 1),
    "future version": (lambda lines: [lines[0].replace('"version": 1', '"version": 9')], 1),
    "bad line syntax": (lambda lines: [*lines[:10], "9 x", *lines[11:]], 11),
    "unknown escape": (lambda lines: [*lines[:10], '9 "\\q"', *lines[11:]], 11),
    "ids out of order": (lambda lines: [*lines[:10], lines[5], *lines[11:]], 11),
    "merge of unknown id": (lambda lines: [*lines[:300], _set_merge(lines[300], 999)], 301),
    "merge disagrees": (lambda lines: [*lines[:300], _set_merge(lines[300], 0)], 301),
    "truncated": (lambda lines: lines[:400], 400),
}


def _set_merge(line: str, left: int) -> str:
    head, _, pair = line.rpartition(" = ")
    return f"{head} = {left} {pair.split()[1]}"


@pytest.mark.parametrize("fault", sorted(TEXT_FORMAT_FAULTS))
def test_malformed_text_format_names_file_and_line(trained, tmp_path, fault):
    corrupt, line = TEXT_FORMAT_FAULTS[fault]
    path = tmp_path / "tok.txt"
    trained.save(path)
    path.write_text("\n".join(corrupt(path.read_text(encoding="utf-8").splitlines())) + "\n")
    with pytest.raises(DataError, match=regex.escape(f"{path}:{line}:")):
        Tokenizer.load(path)


def test_malformed_tiktoken_file_names_file_and_line(trained, tmp_path):
    path = tmp_path / "r.tiktoken"
    trained.save_tiktoken(path)
    lines = path.read_text().splitlines()
    for bad, line in [("YQ== x", 4), ("!!!! 3", 4), ("YQ== 3 4", 4), (lines[0], 4)]:
        path.write_text("\n".join([*lines[:3], bad, *lines[4:]]) + "\n")
        with pytest.raises(DataError, match=regex.escape(f"{path}:{line}:")):
            Tokenizer.from_tiktoken(path)
    path.write_text("\n".join(lines[1:]) + "\n")  # byte 0x00 missing
    with pytest.raises(DataError, match=regex.escape(f"{path}: ") + ".*0x00"):
        Tokenizer.from_tiktoken(path)


def test_malformed_gpt2_files_name_file_and_line(trained, tmp_path):
    encoder_path, vocab_path = tmp_path / "encoder.json", tmp_path / "vocab.bpe"
    trained.save_gpt2(encoder_path, vocab_path)
    good_vocab = vocab_path.read_text(encoding="utf-8").splitlines()
    good_encoder = encoder_path.read_text(encoding="utf-8")
    for bad, line in [
        ("onlyone", 5),
        ("a b c", 5),
        ("zzzzqqq a", 5),  # not a token made by an earlier line
        (good_vocab[2], 5),  # the same merge twice
        ("a \x01", 5),  # a character outside GPT-2's alphabet
    ]:
        vocab_path.write_text("\n".join([*good_vocab[:4], bad, *good_vocab[5:]]) + "\n")
        with pytest.raises(DataError, match=regex.escape(f"{vocab_path}:{line}:")):
            Tokenizer.from_gpt2(encoder_path, vocab_path)
    swapped = [good_vocab[0], good_vocab[2], good_vocab[1], *good_vocab[3:]]
    vocab_path.write_text("\n".join(swapped) + "\n")
    with pytest.raises(DataError, match=regex.escape(f"{vocab_path}:3:") + ".*order"):
        Tokenizer.from_gpt2(encoder_path, vocab_path)
    vocab_path.write_text("\n".join(good_vocab) + "\n")
    encoder_path.write_text(good_encoder.replace('"a": 97,', '"a": 97'), encoding="utf-8")
    # the decoder notices the missing comma at the next entry
    with pytest.raises(DataError, match=regex.escape(f"{encoder_path}:100: not JSON")):
        Tokenizer.from_gpt2(encoder_path, vocab_path)
    encoder_path.write_text(good_encoder.replace('"a": 97,', '"a": "x",'), encoding="utf-8")
    with pytest.raises(DataError, match=regex.escape(f"{encoder_path}:99: the id of 'a'")):
        Tokenizer.from_gpt2(encoder_path, vocab_path)


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        Tokenizer.load(tmp_path / "absent.txt")
    header = {"format": "tinygradlm-bpe", "version": 1, "tokens": 1, "pattern": "gpt4"}
    (tmp_path / "one.txt").write_text(json.dumps({**header, "special_tokens": {}}) + '\n0 "a"\n')
    with pytest.raises(DataError, match=regex.escape(f"{tmp_path / 'one.txt'}: ") + ".*single"):
        Tokenizer.load(tmp_path / "one.txt")
    (tmp_path / "bin.txt").write_bytes(b'{"format": 1}\n\xff\n')
    with pytest.raises(DataError, match=regex.escape(f"{tmp_path / 'bin.txt'}:2: not UTF-8")):
        Tokenizer.load(tmp_path / "bin.txt")


def test_docstring_examples_run():
    assert doctest.testmod(bpe).failed == 0


def test_huge_ids_are_refused_naming_file_and_line_before_any_table(trained, tmp_path):
    path = tmp_path / "tok.txt"
    trained.save(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    huge = lines[300].split(" ", 1)
    path.write_text("\n".join([*lines[:300], f"{10**12} {huge[1]}", *lines[301:]]) + "\n")
    with pytest.raises(DataError, match=regex.escape(f"{path}:301: id 1000000000000 is far")):
        Tokenizer.load(path)
    header = json.loads(lines[0])
    header["special_tokens"] = {ENDOFTEXT: 10**12}
    path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    with pytest.raises(DataError, match=regex.escape(f"{path}:1: the special token")):
        Tokenizer.load(path)
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n" + "\n".join(lines[1:]) + "\n")
    with pytest.raises(DataError, match=regex.escape(f"{path}:1: the header: ") + ".*deeply"):
        Tokenizer.load(path)

    ranks = tmp_path / "r.tiktoken"
    trained.save_tiktoken(ranks)
    lines = ranks.read_text().splitlines()
    for bad, fragment in [(f"YQ== {10**12}", "is far beyond"), ("YQ== ²", "RANK digits")]:
        ranks.write_text("\n".join([*lines[:3], bad, *lines[4:]]) + "\n")
        with pytest.raises(DataError, match=regex.escape(f"{ranks}:4: ") + f".*{fragment}"):
            Tokenizer.from_tiktoken(ranks)

    encoder_path, vocab_path = tmp_path / "encoder.json", tmp_path / "vocab.bpe"
    trained.save_gpt2(encoder_path, vocab_path)
    good = encoder_path.read_text(encoding="utf-8")
    encoder_path.write_text(good.replace('"a": 97,', f'"a": {10**12},'), encoding="utf-8")
    with pytest.raises(DataError, match=regex.escape(f"{encoder_path}:99: the id of 'a'")):
        Tokenizer.from_gpt2(encoder_path, vocab_path)
    encoder_path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(DataError, match="nested too deeply"):
        Tokenizer.from_gpt2(encoder_path, vocab_path)


@pytest.mark.parametrize("pattern", ["", "x", "(?!)", "a*", r"\w+", r"(\S+)|\s+"])
def test_a_pattern_that_would_drop_text_is_refused(pattern):
    with pytest.raises(DataError, match="split pattern"):
        resolve_pattern(pattern)
    with pytest.raises(DataError, match="split pattern"):  # before any training: prepare's case
        Tokenizer.train(["ab ab"], 257, pattern=pattern)
    assert resolve_pattern(r"\S+|\s+") == r"\S+|\s+"


def test_a_non_ascii_tiktoken_token_is_a_data_error_naming_the_line(trained, tmp_path):
    path = tmp_path / "r.tiktoken"
    trained.save_tiktoken(path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(["\x80AA== 0", *lines[1:]]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=regex.escape(f"{path}:1: ") + ".*not base64"):
        Tokenizer.from_tiktoken(path)
