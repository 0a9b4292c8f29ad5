"""tinygradlm.tokenizer.fast: the Numba encoder against its readable twin (the ``regex`` split,
the chunk cache and ``bpe_merge``), chunk by chunk and id by id, on any text."""

from __future__ import annotations

import pydoc_data.topics
from collections import Counter

import numpy as np
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygradlm.errors import DataError
from tinygradlm.tokenizer import ENDOFTEXT, PATTERNS, Tokenizer, bpe, fast, fast_train, training

TOPICS = [pydoc_data.topics.topics[name] for name in sorted(pydoc_data.topics.topics)]

# The characters where the two patterns' alternatives part: letters of several scripts and
# cases (the contraction letters, the long s U+017F that folds to s, the Kelvin sign), digits of
# several kinds (``٣``, ``Ⅻ``, ``½``), every kind of whitespace, line breaks, apostrophes,
# punctuation, a combining mark (neither letter nor number), CJK and an emoji.
TRICKY = (
    "aAsSdDmMtTlLvVeErR\u017f\u212azé日本"
    "0123٣Ⅻ½"
    " \t\n\r\x0b\x0c\x1c\x85\xa0\u2000\u2028\u3000"
    "''''`.,!?-()$+\u0301🙂_"
)
tricky_text = st.text(alphabet=TRICKY, max_size=60) | st.text(max_size=40)


@pytest.fixture(scope="module", params=["gpt2", "gpt4"])
def tok(request) -> Tokenizer:
    texts = [t.replace(ENDOFTEXT, "") for t in TOPICS[:20]] + [TRICKY * 3]
    return Tokenizer.train(texts, 700, pattern=request.param)


def kernel_chunks(tok: Tokenizer, text: str) -> list[str]:
    classes, fold = fast.char_tables()
    data = text.encode()
    ends = fast.chunk_ends(np.frombuffer(data, dtype=np.uint8), tok._gpt4, classes, fold)
    starts = [0, *ends.tolist()][: len(ends)]
    return [data[s:e].decode() for s, e in zip(starts, ends.tolist(), strict=True)]


def reference_ids(tok: Tokenizer, text: str) -> list[int]:
    ids: list[int] = []
    tok._encode_chunks_reference(text, ids)
    return ids


@settings(max_examples=400, deadline=None)
@given(text=tricky_text)
def test_the_split_is_the_regex_split(tok, text):
    assert kernel_chunks(tok, text) == tok._split.findall(text)


@settings(max_examples=300, deadline=None)
@given(text=tricky_text)
def test_the_kernel_gives_the_reference_ids(tok, text):
    assert tok._encode_kernel(text).tolist() == reference_ids(tok, text)


def test_the_kernel_gives_the_reference_ids_on_real_text(tok):
    text = "".join(TOPICS[20:40])
    assert len(text) > bpe._FAST_MIN_CHARS
    fresh = Tokenizer(tok.ranks, tok.pattern_name, tok.special_tokens)
    assert fresh.encode_ordinary(text) == reference_ids(fresh, text)
    assert fresh._tables is not None  # the kernel ran


def test_long_chunks_are_merged_by_the_heap_in_python(tok, monkeypatch):
    calls = []
    merge = tok._merge_piece
    monkeypatch.setattr(tok, "_merge_piece", lambda piece: calls.append(piece) or merge(piece))
    long_word = "".join(TRICKY[i % 12] for i in range(3 * fast.LONG_CHUNK))
    text = "x " * 3000 + " " * 2000 + "y" + long_word + "\n" * 1000 + " end"
    ids = tok._encode_kernel(text).tolist()
    assert len(calls) >= 2 and all(len(piece) >= fast.LONG_CHUNK for piece in calls)
    assert ids == reference_ids(tok, text)


def test_char_tables_are_the_regex_classes():
    classes, fold = fast.char_tables()
    probes = [*range(0x300), *range(0x2000, 0x2100), 0x3000, 0x4E00, 0x1F642, 0x10FFFF, 0xE0001]
    for code_point in probes:
        char = chr(code_point)
        want = (
            fast.LETTER * bool(regex.fullmatch(r"\p{L}", char))
            | fast.NUMBER * bool(regex.fullmatch(r"\p{N}", char))
            | fast.SPACE * bool(regex.fullmatch(r"\s", char))
        )
        assert classes[code_point] == want, hex(code_point)
    assert fold[0x017F] == ord("s") and fold[ord("S")] == ord("s") and fold[0x212A] == 0


def test_encode_and_encode_to_array_take_the_kernel_for_long_text(tok):
    text = "".join(TOPICS[40:45])
    fresh = Tokenizer(tok.ranks, tok.pattern_name, {ENDOFTEXT: tok.vocab_size})
    ids = fresh.encode(text)
    assert fresh._tables is not None
    assert ids == reference_ids(fresh, text)
    array = fresh.encode_to_array(text)
    assert array.dtype == np.uint16 and array.tolist() == ids
    with_eot = text + ENDOFTEXT + text
    with pytest.raises(DataError, match="special token"):
        fresh.encode_to_array(with_eot)
    ordinary = fresh.encode_to_array(with_eot, disallowed_special=()).tolist()
    assert ordinary == reference_ids(fresh, with_eot)
    special = fresh.encode(with_eot, allowed_special="all")
    assert special == [*ids, fresh.vocab_size - 1, *ids]


def test_lone_surrogates_still_raise_a_data_error(tok):
    fresh = Tokenizer(tok.ranks, tok.pattern_name)
    with pytest.raises(DataError, match="surrogate U\\+D800"):
        fresh.encode_to_array("a" * 5000 + "\ud800")
    with pytest.raises(DataError, match="surrogate U\\+D800"):
        fresh.encode_ordinary("a" * 5000 + "\ud800")


def test_a_custom_pattern_never_takes_the_kernel():
    tok = Tokenizer.train(TOPICS[:3], 300, pattern=r"\w+|\W")
    tok.encode_ordinary("".join(TOPICS[3:6]))
    assert tok._gpt4 is None and tok._tables is None


def test_imported_ranks_with_permuted_bytes(tok):
    """Byte ids need not be the byte values (GPT-2's are not)."""
    ranks = tok.ranks
    order = sorted(range(256), key=lambda b: (b * 37) % 256)
    permuted = {bytes([b]): order[b] for b in range(256)}
    permuted.update({t: r for t, r in ranks.items() if len(t) > 1})
    fresh = Tokenizer(permuted, tok.pattern_name)
    text = "".join(TOPICS[50:52]) + TRICKY
    assert fresh._encode_kernel(text).tolist() == reference_ids(fresh, text)


# ---- training ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.text(alphabet=TRICKY + "<|endoftext|>", max_size=80), max_size=6),
    n_merges=st.integers(0, 60),
    pattern=st.sampled_from(["gpt2", "gpt4", r"\w+|\W"]),
)
def test_training_kernels_give_the_reference_ranks(texts, n_merges, pattern):
    args = (texts, n_merges, PATTERNS[pattern] if pattern in PATTERNS else pattern, [ENDOFTEXT])
    assert training.learn_ranks(*args, False) == training.learn_ranks_reference(*args, False)


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4", r"\w+|\W"])
def test_training_kernels_give_the_reference_ranks_on_real_text(pattern):
    args = (TOPICS[:40], 1500, PATTERNS.get(pattern, pattern), [ENDOFTEXT])
    assert training.learn_ranks(*args, False) == training.learn_ranks_reference(*args, False)


def test_chunk_counts_grow_their_tables(monkeypatch):
    """Blocks and tables far smaller than the corpus: the counts of one big block."""
    classes, fold = fast.char_tables()
    texts = TOPICS[:30]
    whole = fast_train.ChunkCounts(True, classes, fold)
    for text in texts:
        whole.add(text.encode())
    monkeypatch.setattr(fast_train, "BLOCK_BYTES", 5000)
    monkeypatch.setattr(fast_train, "MIN_ROOM", 16)
    pieces = fast_train.ChunkCounts(True, classes, fold)
    for text in texts:
        pieces.add(text.encode())

    def as_dict(counter):
        arena, offsets, lengths, counts = counter.chunks()
        data = arena.tobytes()
        return {
            data[o : o + n]: c
            for o, n, c in zip(offsets.tolist(), lengths.tolist(), counts.tolist(), strict=True)
        }

    expected = as_dict(whole)
    assert as_dict(pieces) == expected
    split = regex.compile(PATTERNS["gpt4"])
    reference = Counter(c.encode() for t in texts for c in split.findall(t))
    assert expected == dict(reference)
