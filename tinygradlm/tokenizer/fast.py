"""Encoding with the named split patterns ("gpt2", "gpt4") in Numba: the split, the chunk
lookup and the merge loop of :meth:`Tokenizer.encode` in one pass over the UTF-8 bytes, writing
ids into a preallocated array.

The readable twin is the ``regex`` split (:mod:`.pretokenize`) followed by :func:`.merge.
bpe_merge`; tests/test_tokenizer_fast.py holds the two equal on any text. Three parts:

- **The split** (:func:`chunk_end`) is each pattern written out by hand as the ``regex``
  engine runs it: its alternatives in order, possessive runs (``++``) that never give back,
  and the two that backtrack, ``\\s+(?!\\S)`` (a run of whitespace but its last character,
  which then starts the next chunk) and GPT-4's ``\\s*[\\r\\n]`` (whitespace up to its last line
  break). A character is a letter (``\\p{L}``), a number (``\\p{N}``), whitespace (``\\s``) or
  other; the table of those classes over every code point, and of the letters that ``(?i:s)``
  and the like match, is read off the ``regex`` package itself (:func:`char_tables`), so the
  two splits agree on every Unicode version the package carries.
- **The lookup**: a chunk that is a token is that token (tiktoken's rule, as in
  ``Tokenizer._encode_chunk``); the tokens' bytes sit in an open-addressing hash table.
- **The merge loop**: ``bpe_merge`` on token ids instead of byte strings. The parts are always
  tokens, so "the rank of the concatenation of two adjacent parts" is a lookup of the pair of
  their ids in a second hash table, built once from every split of every token into two tokens.

Chunks of ``LONG_CHUNK`` bytes or more (long whitespace runs) are left to the caller, which
merges them with the O(n log n) ``bpe_merge_long``.
"""

from __future__ import annotations

import functools

import numpy as np
import regex
from numba import njit

# A chunk this long or longer is handed back to Python (bpe_merge_long); below it the quadratic
# merge loop runs here, at most LONG_CHUNK² / 2 pair lookups.
LONG_CHUNK = 512

LETTER, NUMBER, SPACE = 1, 2, 4  # the character classes; 0 is "other"
_NO_RANK = np.int64(1) << 62
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@functools.cache
def char_tables() -> tuple[np.ndarray, np.ndarray]:
    """(class, fold), each a uint8 array over every code point: ``class`` is LETTER, NUMBER,
    SPACE or 0 as the ``regex`` package's ``\\p{L}``, ``\\p{N}`` and ``\\s`` match it; ``fold``
    is the ASCII letter of "sdmtlvre" that the code point matches case-insensitively (``ſ`` is
    an ``s``), else 0. Read with ``regex`` over one string of all code points (~0.2 s)."""
    code_points = np.arange(0x110000, dtype=np.uint32)
    code_points[0xD800:0xE000] = 0  # surrogates cannot be in a str's UTF-32; NUL stands in
    every = code_points.tobytes().decode("utf-32-le")
    classes = np.zeros(0x110000, dtype=np.uint8)
    for flag, pattern in ((LETTER, r"\p{L}+"), (NUMBER, r"\p{N}+"), (SPACE, r"\s+")):
        for match in regex.finditer(pattern, every):
            classes[match.start() : match.end()] |= flag
    classes[0xD800:0xE000] = 0
    fold = np.zeros(0x110000, dtype=np.uint8)
    for letter in "sdmtlvre":
        for match in regex.finditer(f"(?i:{letter})", every):
            fold[match.start()] = ord(letter)
    fold[0xD800:0xE000] = 0
    return classes, fold


class Tables:
    """A tokenizer's ranks as the arrays the kernels read (built once per tokenizer)."""

    def __init__(self, ranks: dict[bytes, int], vocab_size: int) -> None:
        tokens = sorted(((rank, token) for token, rank in ranks.items() if token), key=_first)
        lengths = np.zeros(vocab_size, dtype=np.int64)
        ids = np.array([rank for rank, _ in tokens], dtype=np.int64)
        lengths[ids] = [len(token) for _, token in tokens]
        self.offsets = np.zeros(vocab_size + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        data = b"".join(token for _, token in tokens)  # in id order: offsets index it
        self.data = np.frombuffer(data, dtype=np.uint8)
        self.byte_rank = np.array([ranks[bytes([b])] for b in range(256)], dtype=np.int64)
        self.token_slots = _build_token_slots(self.data, self.offsets, ids)
        self.pair_keys, self.pair_ranks = _build_pairs(
            self.data, self.offsets, ids, self.token_slots, vocab_size
        )
        self.vocab_size = vocab_size


def _first(item):
    return item[0]


def encode(
    tables: Tables,
    text: bytes,
    gpt4: bool,
    classes: np.ndarray,
    fold: np.ndarray,
    merge_long,
    dtype=np.int64,
) -> np.ndarray:
    """The ids of the UTF-8 ``text`` split by GPT-2's or GPT-4's pattern, as ``dtype`` (which
    must hold every id); chunks of ``LONG_CHUNK`` bytes or more go to ``merge_long(piece) ->
    list of ids``."""
    buf = np.frombuffer(text, dtype=np.uint8)
    n = len(buf)
    out = np.empty(n, dtype=dtype)  # a token is at least one byte
    scratch = np.empty(2 * LONG_CHUNK, dtype=np.int64)
    start, n_out = 0, 0
    while True:
        start, stop, n_out = _encode(
            buf, start, gpt4, classes, fold, tables.data, tables.offsets, tables.byte_rank,
            tables.token_slots, tables.pair_keys, tables.pair_ranks, tables.vocab_size, out,
            n_out, scratch,
        )  # fmt: skip
        if start >= n:
            return out[:n_out].copy() if n_out < n // 2 else out[:n_out]
        ids = merge_long(text[start:stop])
        out[n_out : n_out + len(ids)] = ids
        n_out += len(ids)
        start = stop


# ---- hash tables ----------------------------------------------------------------------------


@njit(cache=True, inline="always")
def hash_bytes(buf, start, stop):
    h = _FNV_OFFSET
    for i in range(start, stop):
        h = (h ^ np.uint64(buf[i])) * _FNV_PRIME
    return h


@njit(cache=True, inline="always")
def _hash_pair(key, mask):
    return np.int64((np.uint64(key) * _GOLDEN) >> np.uint64(20)) & mask


@njit(cache=True)
def _table_size(n):
    size = 1 << 10
    while size < 2 * n:
        size *= 2
    return size


@njit(cache=True)
def _build_token_slots(data, offsets, ids):
    """Open addressing: slot → token id (-1 empty), keyed by the token's bytes."""
    slots = np.full(_table_size(len(ids)), -1, dtype=np.int64)
    mask = len(slots) - 1
    for t in ids:
        s = np.int64(hash_bytes(data, offsets[t], offsets[t + 1]) & np.uint64(mask))
        while slots[s] >= 0:
            s = (s + 1) & mask
        slots[s] = t
    return slots


@njit(cache=True)
def _find_token(buf, start, stop, data, offsets, slots):
    """The id of the token whose bytes are ``buf[start:stop]``, or -1."""
    mask = len(slots) - 1
    s = np.int64(hash_bytes(buf, start, stop) & np.uint64(mask))
    length = stop - start
    while True:
        t = slots[s]
        if t < 0:
            return -1
        o = offsets[t]
        if offsets[t + 1] - o == length:
            same = True
            for k in range(length):
                if data[o + k] != buf[start + k]:
                    same = False
                    break
            if same:
                return t
        s = (s + 1) & mask


@njit(cache=True)
def _build_pairs(data, offsets, ids, slots, vocab_size):
    """(keys, ranks): open addressing keyed by ``left * vocab_size + right`` (-1 empty), for
    every token that splits into two tokens ``left`` + ``right`` (at any byte)."""
    n_pairs = 0
    for t in ids:
        n_pairs += offsets[t + 1] - offsets[t] - 1
    keys = np.full(_table_size(n_pairs), -1, dtype=np.int64)
    values = np.empty(len(keys), dtype=np.int64)
    mask = len(keys) - 1
    for t in ids:
        start, stop = offsets[t], offsets[t + 1]
        for cut in range(start + 1, stop):
            left = _find_token(data, start, cut, data, offsets, slots)
            if left < 0:
                continue
            right = _find_token(data, cut, stop, data, offsets, slots)
            if right < 0:
                continue
            key = left * vocab_size + right
            s = _hash_pair(key, mask)
            while keys[s] >= 0:
                s = (s + 1) & mask
            keys[s] = key
            values[s] = t
    return keys, values


@njit(cache=True, inline="always")
def _pair_rank(left, right, keys, values, vocab_size):
    key = left * vocab_size + right
    mask = len(keys) - 1
    s = _hash_pair(key, mask)
    while True:
        k = keys[s]
        if k == key:
            return values[s]
        if k < 0:
            return _NO_RANK
        s = (s + 1) & mask


# ---- the split ------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _decode(buf, i):
    """(code point, its length in bytes) of the valid UTF-8 at ``buf[i]``."""
    b = np.int64(buf[i])
    if b < 0x80:
        return b, 1
    if b < 0xE0:
        return ((b & 0x1F) << 6) | (np.int64(buf[i + 1]) & 0x3F), 2
    if b < 0xF0:
        return ((b & 0x0F) << 12) | ((np.int64(buf[i + 1]) & 0x3F) << 6) | (buf[i + 2] & 0x3F), 3
    return (
        ((b & 0x07) << 18)
        | ((np.int64(buf[i + 1]) & 0x3F) << 12)
        | ((np.int64(buf[i + 2]) & 0x3F) << 6)
        | (buf[i + 3] & 0x3F)
    ), 4


@njit(cache=True, inline="always")
def _run_end(buf, n, i, cls, classes):
    """The end of the run of characters of class ``cls`` from ``i`` (possessive: ``X++``)."""
    while i < n:
        c, w = _decode(buf, i)
        if classes[c] != cls:
            break
        i += w
    return i


@njit(cache=True, inline="always")
def _letter(c, gpt4, fold):
    """The contraction letter ``c`` is: any case for GPT-4's ``(?i:…)``, lowercase ASCII only
    for GPT-2's."""
    f = fold[c]
    if gpt4 or f == c:
        return f
    return 0


@njit(cache=True)
def chunk_end(buf, n, i, gpt4, classes, fold):
    r"""The end of the chunk that starts at byte ``i`` of ``buf[:n]``: the first alternative of
    the pattern that matches there, as ``regex`` tries them (the patterns are in
    :data:`.pretokenize.PATTERNS`; each alternative is named in a comment below)."""
    c, w = _decode(buf, i)
    cls = classes[c]
    # '(?:[sdmt]|ll|ve|re): a contraction
    if c == 39 and i + 1 < n:
        c1, w1 = _decode(buf, i + 1)
        l1 = _letter(c1, gpt4, fold)
        if l1 == 115 or l1 == 100 or l1 == 109 or l1 == 116:  # s d m t
            return i + 1 + w1
        if (l1 == 108 or l1 == 118 or l1 == 114) and i + 1 + w1 < n:  # l v r
            c2, w2 = _decode(buf, i + 1 + w1)
            l2 = _letter(c2, gpt4, fold)
            if (l1 == 108 and l2 == 108) or (l1 != 108 and l2 == 101):  # ll ve re
                return i + 1 + w1 + w2
    if gpt4:
        # [^\r\n\p{L}\p{N}]?+\p{L}++: a word, with one leading non-letter, non-digit
        if cls == LETTER:
            return _run_end(buf, n, i + w, LETTER, classes)
        if cls != NUMBER and c != 10 and c != 13 and i + w < n:
            c1, w1 = _decode(buf, i + w)
            if classes[c1] == LETTER:
                return _run_end(buf, n, i + w + w1, LETTER, classes)
        # \p{N}{1,3}+: up to three digits
        if cls == NUMBER:
            j = i + w
            for _ in range(2):
                if j >= n:
                    break
                c1, w1 = _decode(buf, j)
                if classes[c1] != NUMBER:
                    break
                j += w1
            return j
        # ' ?[^\s\p{L}\p{N}]++[\r\n]*+': punctuation, with one leading space and trailing breaks
        j = -1
        if cls == 0:
            j = _run_end(buf, n, i + w, 0, classes)
        elif c == 32 and i + 1 < n:
            c1, w1 = _decode(buf, i + 1)
            if classes[c1] == 0:
                j = _run_end(buf, n, i + 1 + w1, 0, classes)
        if j >= 0:
            while j < n and (buf[j] == 10 or buf[j] == 13):
                j += 1
            return j
    else:
        # ' ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++': a run of one class, with one leading space
        if cls != SPACE:
            return _run_end(buf, n, i + w, cls, classes)
        if c == 32 and i + 1 < n:
            c1, w1 = _decode(buf, i + 1)
            cls1 = classes[c1]
            if cls1 != SPACE:
                return _run_end(buf, n, i + 1 + w1, cls1, classes)
    # whitespace: the run from i, its last character and its last line break
    last, last_break, j = i, -1, i
    while j < n:
        c1, w1 = _decode(buf, j)
        if classes[c1] != SPACE:
            break
        if c1 == 10 or c1 == 13:
            last_break = j
        last = j
        j += w1
    if j == n:  # \s++$
        return n
    if gpt4 and last_break >= 0:  # \s*[\r\n]
        return last_break + 1
    if last > i:  # \s+(?!\S): all but the last, which starts the next chunk
        return last
    return i + w  # \s


# ---- the merge loop and the encoder ---------------------------------------------------------


@njit(cache=True)
def _encode(
    buf, start, gpt4, classes, fold, data, offsets, byte_rank, slots, pair_keys, pair_ranks,
    vocab_size, out, n_out, scratch,
):  # fmt: skip
    """Split ``buf`` from ``start`` and write each chunk's ids to ``out`` from ``n_out``.
    Returns (start, stop, n_out): start == len(buf) when done, else the chunk [start, stop) is
    at least LONG_CHUNK bytes long and left to the caller."""
    n = len(buf)
    parts = scratch[:LONG_CHUNK]
    pair = scratch[LONG_CHUNK:]
    i = start
    while i < n:
        j = chunk_end(buf, n, i, gpt4, classes, fold)
        m = j - i
        if m >= LONG_CHUNK:
            return i, j, n_out
        if m == 1:
            out[n_out] = byte_rank[buf[i]]
            n_out += 1
            i = j
            continue
        t = _find_token(buf, i, j, data, offsets, slots)
        if t >= 0:  # a chunk that is a token is that token
            out[n_out] = t
            n_out += 1
            i = j
            continue
        # bpe_merge on ids: merge the adjacent pair of the lowest rank, the leftmost on ties
        for k in range(m):
            parts[k] = byte_rank[buf[i + k]]
        for k in range(m - 1):
            pair[k] = _pair_rank(parts[k], parts[k + 1], pair_keys, pair_ranks, vocab_size)
        while m > 1:
            best, at = _NO_RANK, -1
            for k in range(m - 1):
                if pair[k] < best:
                    best, at = pair[k], k
            if at < 0:
                break
            parts[at] = best
            for k in range(at + 1, m - 1):
                parts[k] = parts[k + 1]
            for k in range(at, m - 2):
                pair[k] = pair[k + 1]
            m -= 1
            if at > 0:
                pair[at - 1] = _pair_rank(parts[at - 1], best, pair_keys, pair_ranks, vocab_size)
            if at < m - 1:
                pair[at] = _pair_rank(best, parts[at + 1], pair_keys, pair_ranks, vocab_size)
        for k in range(m):
            out[n_out + k] = parts[k]
        n_out += m
        i = j
    return n, n, n_out


@njit(cache=True)
def chunk_ends(buf, gpt4, classes, fold):
    """The end offset of every chunk of the UTF-8 ``buf`` (the split alone, for the tests)."""
    n = len(buf)
    ends = np.empty(n, dtype=np.int64)
    count, i = 0, 0
    while i < n:
        i = chunk_end(buf, n, i, gpt4, classes, fold)
        ends[count] = i
        count += 1
    return ends[:count]
