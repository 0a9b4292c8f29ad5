"""Encoding's merge loop, tiktoken's algorithm: a chunk's bytes become tokens by repeatedly
merging the adjacent pair whose concatenation has the lowest rank (the leftmost on ties).

``bpe_merge`` is the quadratic loop a person reads; ``bpe_merge_long`` gives the same tokens in
O(n log n) for long chunks (the tests hold them equal).
"""

from __future__ import annotations

import heapq


def bpe_merge(piece: bytes, ranks: dict[bytes, int], max_rank: int | None = None) -> list[bytes]:
    """Split ``piece`` into tokens with tiktoken's merge loop: start from single bytes; merge the
    adjacent pair whose concatenation has the lowest rank (the leftmost on ties); repeat until no
    adjacent pair is a token. Ranks of ``max_rank`` and above are ignored if it is given.

    Quadratic in ``len(piece)``, and the reference for ``bpe_merge_long``.
    """
    limit = len(ranks) + (1 << 62) if max_rank is None else max_rank
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best_rank, best_i = limit, -1
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1], limit)
            if rank < best_rank:
                best_rank, best_i = rank, i
        if best_i < 0:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return parts


def bpe_merge_long(
    piece: bytes, ranks: dict[bytes, int], max_rank: int | None = None
) -> list[bytes]:
    """``bpe_merge`` in O(n log n) for long pieces: the parts form a linked list over their start
    offsets, and a heap holds (rank, start) of every mergeable adjacent pair. The heap orders by
    start on equal ranks, so the leftmost pair wins as in ``bpe_merge``; an entry is stale if its
    part was absorbed or its pair has changed (parts only grow, and a longer byte string has a
    different rank), and is then skipped."""
    limit = len(ranks) + (1 << 62) if max_rank is None else max_rank
    n = len(piece)
    following = list(range(1, n + 1))  # start of the next part; the part is piece[i:following[i]]
    preceding = list(range(-1, n - 1))
    alive = [True] * n

    def pair_rank(i: int) -> int:
        j = following[i]
        return limit if j >= n else ranks.get(piece[i : following[j]], limit)

    heap = [(rank, i) for i in range(n - 1) if (rank := pair_rank(i)) < limit]
    heapq.heapify(heap)
    while heap:
        rank, i = heapq.heappop(heap)
        if not alive[i] or pair_rank(i) != rank:
            continue
        j = following[i]  # absorb part j into part i
        alive[j] = False
        following[i] = following[j]
        if following[j] < n:
            preceding[following[j]] = i
        for k in (preceding[i], i):
            if k >= 0 and (new_rank := pair_rank(k)) < limit:
                heapq.heappush(heap, (new_rank, k))
    parts = []
    i = 0
    while i < n:
        parts.append(piece[i : following[i]])
        i = following[i]
    return parts
