"""BPE training: learn merges from a corpus, GPT-2's, minbpe's and HF ``tokenizers``' way.

The algorithm (count the distinct chunks once, count adjacent pairs, merge the most frequent
pair until the vocabulary is full), its tie-break and its incremental update are written out
once, in the package docstring (:mod:`tinygradlm.tokenizer`).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from itertools import pairwise

import numpy as np
import regex

from ..monitor.progress import progress_bar
from .pretokenize import PATTERNS, encode_utf8, pretokenize


def learn_ranks(
    texts: Iterable[str], n_merges: int, pattern: str, special_tokens: Sequence[str], progress: bool
) -> dict[bytes, int]:
    """The 256 single bytes (ids 0..255) and up to ``n_merges`` merged tokens (ids 256.., in the
    order they are learned) of ``texts`` split by the regex ``pattern``; the special-token
    strings are boundaries that no merge crosses or enters. Fewer merges when no pair is left.

    The two loops run in Numba (:mod:`.fast_train`): the chunk count for the named patterns
    (the ``regex`` split for any other), the merge loop for all; ``learn_ranks_reference`` is
    the same algorithm in Python, and gives the same ranks."""
    from . import fast, fast_train  # Numba loads only when a tokenizer is trained

    gpt4 = {PATTERNS["gpt2"]: False, PATTERNS["gpt4"]: True}.get(pattern)
    if gpt4 is None:
        counted = _count_chunks(texts, pattern, special_tokens, progress)
        chunks = [encode_utf8(chunk, "a training text") for chunk in counted]
        lengths = np.array([len(chunk) for chunk in chunks], dtype=np.int64)
        starts = np.cumsum(lengths) - lengths
        arena = np.frombuffer(b"".join(chunks), dtype=np.uint8)
        counts = np.fromiter(counted.values(), dtype=np.int64, count=len(chunks))
    else:
        counter = fast_train.ChunkCounts(gpt4, *fast.char_tables())
        for segment in _segments(texts, special_tokens, progress):
            try:
                counter.add(segment.encode("utf-8"))
            except UnicodeEncodeError:
                encode_utf8(segment, "a training text")  # raises a DataError naming it
                raise
        arena, starts, lengths, counts = counter.chunks()
    loop = fast_train.MergeLoop(arena, starts, lengths, counts)
    ranks = {bytes([byte]): byte for byte in range(256)}
    token_bytes = [bytes([byte]) for byte in range(256)]
    bar = progress_bar(total=n_merges, desc="merges", enabled=progress)
    while len(token_bytes) < 256 + n_merges:
        step = min(256, 256 + n_merges - len(token_bytes))
        merges = loop.run(step)
        for a, b in merges.tolist():
            token_bytes.append(token_bytes[a] + token_bytes[b])
            ranks[token_bytes[-1]] = len(token_bytes) - 1
        bar.update(len(merges))
        if len(merges) < step:
            break  # every chunk is a single token: nothing left to merge
    bar.close()
    return ranks


def _segments(texts: Iterable[str], special_tokens: Sequence[str], progress: bool) -> Iterator[str]:
    """The texts, cut at the special-token strings in them."""
    specials = regex.compile("|".join(regex.escape(t) for t in special_tokens) or r"(?!)")
    texts = progress_bar(texts, desc="counting chunks", unit=" texts", enabled=progress)
    for text in texts:
        if special_tokens and any(token in text for token in special_tokens):
            yield from specials.split(text)
        else:
            yield text


def learn_ranks_reference(
    texts: Iterable[str], n_merges: int, pattern: str, special_tokens: Sequence[str], progress: bool
) -> dict[bytes, int]:
    """``learn_ranks`` in Python: the readable twin of the Numba loops."""
    # 1. One pass over the corpus: each distinct chunk and how often it occurs.
    chunk_counts = _count_chunks(texts, pattern, special_tokens, progress)
    chunks = [encode_utf8(chunk, "a training text") for chunk in chunk_counts]
    words = [list(chunk) for chunk in chunks]  # each chunk as token ids, merged as we go
    counts = list(chunk_counts.values())

    # 2. Every adjacent pair: its weighted count and the chunks that hold it.
    pair_counts: defaultdict[tuple[int, int], int] = defaultdict(int)
    pair_chunks: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
    for i, (word, count) in enumerate(zip(words, counts, strict=True)):
        for pair in pairwise(word):
            pair_counts[pair] += count
            pair_chunks[pair].add(i)
    heap = [(-count, a, b) for (a, b), count in pair_counts.items()]
    heapq.heapify(heap)

    # 3. Merge the most frequent pair, updating only the chunks that hold it.
    ranks = {bytes([byte]): byte for byte in range(256)}
    token_bytes = [bytes([byte]) for byte in range(256)]
    bar = progress_bar(total=n_merges, desc="merges", enabled=progress)
    while len(token_bytes) < 256 + n_merges:
        pair = _pop_most_frequent(heap, pair_counts)
        if pair is None:
            break  # every chunk is a single token: nothing left to merge
        a, b = pair
        c = len(token_bytes)
        token_bytes.append(token_bytes[a] + token_bytes[b])
        ranks[token_bytes[c]] = c
        bar.update(1)
        grown = set()  # pairs that hold c: the only counts a merge can raise
        for i in pair_chunks.pop(pair):
            old, count = words[i], counts[i]
            new = merge_pair(old, a, b, c)
            words[i] = new
            old_pairs, new_pairs = list(pairwise(old)), list(pairwise(new))
            for p in old_pairs:
                pair_counts[p] -= count
            for p in new_pairs:
                pair_counts[p] += count
                if c in p:
                    grown.add(p)
            for p in set(old_pairs).difference(new_pairs):
                if p != pair:
                    pair_chunks[p].discard(i)
            for p in set(new_pairs).difference(old_pairs):
                pair_chunks[p].add(i)
        del pair_counts[pair]
        for p in grown:
            heapq.heappush(heap, (-pair_counts[p], *p))
    bar.close()
    return ranks


def _pop_most_frequent(
    heap: list[tuple[int, int, int]], pair_counts: dict[tuple[int, int], int]
) -> tuple[int, int] | None:
    """The pair with the highest count (smallest (a, b) on ties), or None if none is left.

    Entries of the heap may be stale: a count that dropped since the entry was pushed. Such an
    entry is pushed back with its current count and the search goes on.
    """
    while heap:
        negative_count, a, b = heapq.heappop(heap)
        count = pair_counts.get((a, b), 0)
        if count == -negative_count and count > 0:
            return a, b
        if count > 0:
            heapq.heappush(heap, (-count, a, b))
    return None


def merge_pair(word: list[int], a: int, b: int, c: int) -> list[int]:
    """``word`` with every (a, b) replaced by c, left to right (``[a, a, a]`` with a == b gives
    ``[c, a]``)."""
    out = []
    i, n = 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(c)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def _count_chunks(
    texts: Iterable[str], pattern: str, special_tokens: Sequence[str], progress: bool
) -> Counter[str]:
    """How often each chunk of ``pattern`` occurs in ``texts``, special tokens cut out."""
    split = regex.compile(pattern)
    specials = regex.compile("|".join(regex.escape(t) for t in special_tokens) or r"(?!)")
    counts: Counter[str] = Counter()
    texts = progress_bar(texts, desc="counting chunks", unit=" texts", enabled=progress)
    for text in texts:
        if special_tokens and any(token in text for token in special_tokens):
            for segment in specials.split(text):
                counts.update(pretokenize(split, segment))
        else:
            counts.update(pretokenize(split, text))
    return counts
