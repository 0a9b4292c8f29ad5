"""BPE training's two loops in Numba: counting the distinct chunks of the corpus (the named
split patterns only, with :func:`.fast.chunk_end`), and the merge loop (any pattern).

The readable twin is :func:`.training.learn_ranks_reference`, the algorithm of the package
docstring in Python dicts, sets and ``heapq``; tests/test_tokenizer_fast.py holds the two
equal. The merge loop here keeps the same state in flat arrays:

- the distinct chunks' token ids end to end (``ids``), each chunk at ``start[w]`` with
  ``length[w]`` ids that shrink in place as pairs merge, and its count;
- a pair → slot hash table (open addressing, keyed ``a << 31 | b``) with each pair's count and
  the head of its list of chunks in an occurrence pool (the pair → chunks index). A list is
  appended to when a pair appears in a chunk and never pruned: a chunk that no longer holds the
  pair is skipped when the list is read, and one already updated in this merge is skipped by a
  mark;
- a binary heap of (count, a, b) with lazy invalidation, as in the twin.

A merge creates only pairs that hold the new token, at most two per occurrence it removes, so
every array is sized once from the corpus: nothing grows while merging.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .fast import chunk_end, hash_bytes

_SHIFT = 31  # pair key: a << 31 | b (ids below 2**31)
# Texts are joined into blocks of about this many bytes for counting.
BLOCK_BYTES = 1 << 25
# The chunk tables start with room for this many chunks and double when full.
MIN_ROOM = 1 << 16


# ---- counting the distinct chunks -----------------------------------------------------------


class ChunkCounts:
    """The distinct chunks of the texts fed to ``add`` (split by a named pattern) and how
    often each occurs: their bytes end to end in ``arena``, chunk k at ``offsets[k]`` with
    ``lengths[k]`` bytes."""

    def __init__(self, gpt4: bool, classes: np.ndarray, fold: np.ndarray) -> None:
        self.gpt4, self.classes, self.fold = gpt4, classes, fold
        self.arena = np.zeros(0, dtype=np.uint8)
        self.offsets = np.zeros(0, dtype=np.int64)
        self.lengths = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)
        self.n, self.arena_used = 0, 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def add(self, segment: bytes) -> None:
        """Count the chunks of one UTF-8 segment (a text, or a piece between special tokens:
        no chunk crosses its ends)."""
        self._pending.append(segment)
        self._pending_bytes += len(segment)
        if self._pending_bytes >= BLOCK_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        block = np.frombuffer(b"".join(self._pending), dtype=np.uint8)
        ends = np.cumsum([len(s) for s in self._pending], dtype=np.int64)
        self._pending, self._pending_bytes = [], 0
        segment, position = 0, 0
        while segment < len(ends):  # grow the tables whenever the kernel finds them full
            room = max(MIN_ROOM, self.n)
            self.arena = _grown(self.arena, self.arena_used + len(block))
            self.offsets = _grown(self.offsets, self.n + room)
            self.lengths = _grown(self.lengths, self.n + room)
            self.counts = _grown(self.counts, self.n + room)
            size = 1 << (2 * len(self.offsets)).bit_length()  # a power of two, at most half full
            slots = _rehash(self.arena, self.offsets, self.lengths, self.n, size)
            segment, position, self.n, self.arena_used = _count_chunks(
                block, ends, segment, position, self.gpt4, self.classes, self.fold, self.arena,
                self.arena_used, self.offsets, self.lengths, self.counts, self.n, slots,
            )  # fmt: skip

    def chunks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(bytes end to end, offsets, lengths, counts) of the distinct chunks."""
        self.flush()
        n = self.n
        return self.arena[: self.arena_used], self.offsets[:n], self.lengths[:n], self.counts[:n]


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    if len(array) >= size:
        return array
    out = np.zeros(max(size, 2 * len(array)), dtype=array.dtype)
    out[: len(array)] = array
    return out


@njit(cache=True)
def _rehash(arena, offsets, lengths, n, size):
    slots = np.full(size, -1, dtype=np.int64)
    mask = size - 1
    for k in range(n):
        s = np.int64(hash_bytes(arena, offsets[k], offsets[k] + lengths[k]) & np.uint64(mask))
        while slots[s] >= 0:
            s = (s + 1) & mask
        slots[s] = k
    return slots


@njit(cache=True)
def _count_chunks(
    buf, ends, segment, i, gpt4, classes, fold, arena, used, offsets, lengths, counts, n, slots
):  # fmt: skip
    """Count the chunks of ``buf``'s segments (each ends at ``ends[k]``) from byte ``i`` of
    segment ``segment``. Returns where it stopped (len(ends), 0 when done; earlier when a
    table is full) and the new numbers of chunks and arena bytes."""
    mask = len(slots) - 1
    while segment < len(ends):
        end = ends[segment]
        while i < end:
            j = chunk_end(buf, end, i, gpt4, classes, fold)
            length = j - i
            s = np.int64(hash_bytes(buf, i, j) & np.uint64(mask))
            while True:
                k = slots[s]
                if k < 0:  # a new chunk: its bytes go to the arena
                    if n == len(offsets) or used + length > len(arena):
                        return segment, i, n, used
                    arena[used : used + length] = buf[i:j]
                    offsets[n], lengths[n], counts[n] = used, length, 1
                    slots[s] = n
                    used += length
                    n += 1
                    break
                if lengths[k] == length:
                    o, same = offsets[k], True
                    for q in range(length):
                        if arena[o + q] != buf[i + q]:
                            same = False
                            break
                    if same:
                        counts[k] += 1
                        break
                s = (s + 1) & mask
            i = j
        segment += 1
    return segment, 0, n, used


# ---- the merge loop -------------------------------------------------------------------------


class MergeLoop:
    """The merge loop's state over the distinct chunks (their token ids end to end, each
    chunk's start, length and count); ``run(n)`` makes up to n more merges."""

    def __init__(self, ids, starts, lengths, counts) -> None:
        self.ids = np.ascontiguousarray(ids, dtype=np.int64)
        self.starts = np.ascontiguousarray(starts, dtype=np.int64)
        self.lengths = np.array(lengths, dtype=np.int64)
        self.counts = np.ascontiguousarray(counts, dtype=np.int64)
        total = len(self.ids)
        capacity = 3 * total + 16  # pairs, occurrences and heap entries ever made
        size = 1 << (2 * capacity).bit_length()
        self.pair_keys = np.full(size, -1, dtype=np.int64)
        self.pair_counts = np.zeros(size, dtype=np.int64)
        self.pair_heads = np.full(size, -1, dtype=np.int64)
        self.marks = np.full(size, -1, dtype=np.int64)
        self.occ_chunk = np.empty(capacity, dtype=np.int64)
        self.occ_next = np.empty(capacity, dtype=np.int64)
        self.heap = np.empty((capacity, 3), dtype=np.int64)
        self.visited = np.full(len(self.starts), -1, dtype=np.int64)
        self.grown = np.empty(capacity, dtype=np.int64)
        self.sizes = np.zeros(2, dtype=np.int64)  # occurrences used, heap entries
        self.next_id = 256
        _start(self._state())

    def _state(self):
        return (
            self.ids, self.starts, self.lengths, self.counts, self.pair_keys, self.pair_counts,
            self.pair_heads, self.marks, self.occ_chunk, self.occ_next, self.heap, self.visited,
            self.grown, self.sizes,
        )  # fmt: skip

    def run(self, n_merges: int) -> np.ndarray:
        """Up to ``n_merges`` more merges as an (n, 2) array of (a, b), the merged token of the
        k-th getting the next id; fewer when no pair is left."""
        out = np.empty((n_merges, 2), dtype=np.int64)
        done = _merges(self._state(), self.next_id, n_merges, out)
        self.next_id += done
        return out[:done]


@njit(cache=True, inline="always")
def _slot(keys, a, b, insert):
    """The slot of pair (a, b); a new one if ``insert`` (else -1 when absent)."""
    key = (a << _SHIFT) | b
    mask = len(keys) - 1
    s = np.int64((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(20)) & mask
    while True:
        k = keys[s]
        if k == key:
            return s
        if k < 0:
            if insert:
                keys[s] = key
                return s
            return -1
        s = (s + 1) & mask


@njit(cache=True, inline="always")
def _before(heap, i, j):
    """Heap order: the higher count, then the smaller (a, b)."""
    if heap[i, 0] != heap[j, 0]:
        return heap[i, 0] > heap[j, 0]
    if heap[i, 1] != heap[j, 1]:
        return heap[i, 1] < heap[j, 1]
    return heap[i, 2] < heap[j, 2]


@njit(cache=True)
def _push(heap, sizes, count, a, b):
    i = sizes[1]
    sizes[1] += 1
    heap[i, 0], heap[i, 1], heap[i, 2] = count, a, b
    while i > 0:
        parent = (i - 1) >> 1
        if not _before(heap, i, parent):
            break
        for q in range(3):
            heap[i, q], heap[parent, q] = heap[parent, q], heap[i, q]
        i = parent


@njit(cache=True)
def _pop(heap, sizes):
    """Remove the top entry and return it as (count, a, b)."""
    count, a, b = heap[0, 0], heap[0, 1], heap[0, 2]
    last = sizes[1] - 1
    sizes[1] = last
    for q in range(3):
        heap[0, q] = heap[last, q]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= last:
            break
        best = left
        if left + 1 < last and _before(heap, left + 1, left):
            best = left + 1
        if not _before(heap, best, i):
            break
        for q in range(3):
            heap[i, q], heap[best, q] = heap[best, q], heap[i, q]
        i = best
    return count, a, b


@njit(cache=True, inline="always")
def _add_occurrence(heads, occ_chunk, occ_next, sizes, s, w):
    o = sizes[0]
    sizes[0] += 1
    occ_chunk[o] = w
    occ_next[o] = heads[s]
    heads[s] = o


@njit(cache=True)
def _start(state):
    """Every adjacent pair's count and chunks, and the heap over them."""
    (ids, starts, lengths, counts, keys, pair_counts, heads, marks, occ_chunk, occ_next, heap,
     _visited, _grown, sizes) = state  # fmt: skip
    for w in range(len(starts)):
        st = starts[w]
        for k in range(st, st + lengths[w] - 1):
            s = _slot(keys, ids[k], ids[k + 1], True)
            pair_counts[s] += counts[w]
            if marks[s] != w:  # the chunk once in the pair's list
                marks[s] = w
                _add_occurrence(heads, occ_chunk, occ_next, sizes, s, w)
    for s in range(len(keys)):
        if keys[s] >= 0:
            _push(heap, sizes, pair_counts[s], keys[s] >> _SHIFT, keys[s] & ((1 << _SHIFT) - 1))
    marks[:] = -1


@njit(cache=True)
def _merges(state, next_id, n_merges, out):
    (ids, starts, lengths, counts, keys, pair_counts, heads, marks, occ_chunk, occ_next, heap,
     visited, grown, sizes) = state  # fmt: skip
    for done in range(n_merges):
        # the most frequent pair, the smallest (a, b) on ties (lazy invalidation)
        a = b = -1
        while sizes[1] > 0:
            count, pa, pb = _pop(heap, sizes)
            current = pair_counts[_slot(keys, pa, pb, False)]
            if current == count and count > 0:
                a, b = pa, pb
                break
            if current > 0:
                _push(heap, sizes, current, pa, pb)
        if a < 0:
            return done
        c = next_id + done
        out[done, 0], out[done, 1] = a, b
        merged = _slot(keys, a, b, False)
        n_grown = 0
        o = heads[merged]
        heads[merged] = -1
        while o >= 0:
            w = occ_chunk[o]
            o = occ_next[o]
            if visited[w] == c:
                continue
            visited[w] = c
            st, n, cw = starts[w], lengths[w], counts[w]
            holds = False
            for k in range(st, st + n - 1):
                if ids[k] == a and ids[k + 1] == b:
                    holds = True
                    break
            if not holds:  # a stale entry of the list
                continue
            for k in range(st, st + n - 1):  # the old pairs out
                pair_counts[_slot(keys, ids[k], ids[k + 1], False)] -= cw
            r = q = 0
            while r < n:  # (a, b) -> c, left to right
                if r + 1 < n and ids[st + r] == a and ids[st + r + 1] == b:
                    ids[st + q] = c
                    r += 2
                else:
                    ids[st + q] = ids[st + r]
                    r += 1
                q += 1
            lengths[w] = q
            for k in range(st, st + q - 1):  # the new pairs in
                x, y = ids[k], ids[k + 1]
                s = _slot(keys, x, y, True)
                pair_counts[s] += cw
                if x == c or y == c:
                    if marks[s] != c:  # grown in this merge: pushed once, below
                        marks[s] = c
                        grown[n_grown] = s
                        n_grown += 1
                    _add_occurrence(heads, occ_chunk, occ_next, sizes, s, w)
        for g in range(n_grown):
            s = grown[g]
            _push(heap, sizes, pair_counts[s], keys[s] >> _SHIFT, keys[s] & ((1 << _SHIFT) - 1))
    return n_merges
