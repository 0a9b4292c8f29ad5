"""Deduplication: exact (a hash of the text) and near (MinHash + locality-sensitive hashing).

**Exact.** Two documents are exact duplicates when their texts are equal after collapsing every
run of whitespace to one space (cleaning has already normalised the rest). The key is a 128-bit
BLAKE2b digest of that text; the first occurrence is kept (rule ``exact_duplicate``).

**Near.** Two documents are near duplicates when the Jaccard similarity of their sets of word
n-grams ("shingles") is at least ``threshold``:

    J(A, B) = |A ∩ B| / |A ∪ B|

Comparing every pair is O(D²); MinHash and LSH find the likely pairs in about O(D):

1. *Shingles.* Words are the ``\\w+`` runs of the lower-cased text (punctuation and case do not
   matter). Each distinct word gets a stable 64-bit hash (BLAKE2b, never Python's salted
   ``hash()``), and the n-gram ``w_0 … w_{n-1}`` hashes to the polynomial
   ``Σ_k hash(w_k)·C^(n-1-k) mod 2^64`` passed through the splitmix64 finaliser, all with NumPy
   array ops. A document with fewer than ``n`` words is one shingle: its whole word sequence.
2. *MinHash.* With ``K = bands·rows`` universal hash functions
   ``π_i(x) = (a_i·x + b_i) mod p``, ``p = 2^31 − 1`` (a Mersenne prime; ``x`` is the shingle
   hash mod p, and ``a_i·x + b_i < 2^62`` is exact in uint64), the signature of a document is
   ``sig_i = min over its shingles of π_i(x)``. For a random ``π``,
   ``P(min π(A) = min π(B)) = J(A, B)``: the fraction of equal signature entries estimates J
   with standard deviation ``sqrt(J(1-J)/K)`` (0.038 at J = 0.8, K = 112).
3. *LSH banding.* The K entries are cut into ``bands`` bands of ``rows`` rows; two documents
   become a candidate pair when all rows of at least one band agree. For similarity ``s``,

       P(candidate) = 1 − (1 − s^rows)^bands

   an S-curve whose steepest point is near ``s* ≈ (1/bands)^(1/rows)``. With the defaults
   (14 bands × 8 rows = 112 permutations) ``s* ≈ 0.72``, and a pair is found with
   probability 0.92 at s = 0.8, 0.9996 at s = 0.9, and only 0.05 at s = 0.5.
4. *Verification.* Each candidate pair is kept if its similarity is at least ``threshold``:
   the exact Jaccard of the shingle sets (``verify="exact"``, the default: cheap, since
   candidates are few) or the MinHash estimate (``verify="estimate"``).
5. *Clusters.* Verified pairs are joined with union-find (so similarity is taken transitively:
   A~B and B~C put A, B, C in one cluster even if J(A, C) is lower). The first document of each
   cluster, in input order, is kept; each other member is removed under ``near_duplicate``,
   and its report example names the kept document and their Jaccard similarity.

Everything is deterministic given ``seed`` (which draws the ``a_i``, ``b_i``).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tinygradlm import backend
from tinygradlm.data.documents import Document
from tinygradlm.data.report import Report

from ..errors import DataError
from ..schema import Rule, check_table, problems_message

__all__ = [
    "MERSENNE_PRIME",
    "DedupConfig",
    "candidate_probability",
    "deduplicate",
    "jaccard",
    "minhash_signatures",
    "near_duplicate_pairs",
    "shingle_hashes",
]

MERSENNE_PRIME = np.uint64((1 << 31) - 1)
"""p = 2^31 - 1: the modulus of the universal hash functions (products stay below 2^62)."""

_NGRAM_BASE = np.uint64(0x9E3779B97F4A7C15)
"""C, the odd multiplier of the n-gram polynomial (2^64 / golden ratio)."""

_CHUNK_ROWS = 1 << 15
"""Shingles per MinHash block: a (32768, 112) uint64 block is 29 MB."""

_WORD = re.compile(r"\w+")


@dataclass
class DedupConfig:
    """Switches and parameters of deduplication (see the module docstring for the math).

    ``threshold`` is the Jaccard similarity of word n-gram sets at or above which two documents
    are near duplicates; ``verify`` is ``"exact"`` (Jaccard of the shingle sets) or
    ``"estimate"`` (MinHash estimate).
    """

    exact: bool = True
    near: bool = True
    ngram: int = 5
    bands: int = 14
    rows: int = 8
    seed: int = 0
    threshold: float = 0.8
    verify: str = "exact"
    max_examples: int = 3

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`DataError` naming every field whose value breaks its rule
        (``DEDUP_RULES``)."""
        problems = check_table(asdict(self), DEDUP_RULES, "DedupConfig.")
        if problems:
            raise DataError(problems_message(problems, None))

    @property
    def permutations(self) -> int:
        """K = bands × rows, the length of a MinHash signature."""
        return self.bands * self.rows

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DedupConfig:
        """Build a config from plain data; unknown keys raise :class:`DataError`."""
        problems = check_table(data, DEDUP_RULES, "DedupConfig.")
        if problems:
            raise DataError(problems_message(problems, None))
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, the inverse of :meth:`from_dict`."""
        return asdict(self)


DEDUP_RULES: dict[str, Rule] = {
    "exact": Rule("bool", doc="remove exact duplicates"),
    "near": Rule("bool", doc="remove near duplicates (MinHash LSH)"),
    "ngram": Rule("int", 1, 1000, doc="words per shingle"),
    "bands": Rule("int", 1, 10_000, doc="LSH bands"),
    "rows": Rule("int", 1, 10_000, doc="rows per band"),
    "seed": Rule("int", 0, doc="the MinHash permutations"),
    "threshold": Rule("number", 0, 1, doc="Jaccard similarity of near duplicates"),
    "verify": Rule("str", choices=("exact", "estimate"), doc="how candidates are confirmed"),
    "max_examples": Rule("int", 0, doc="examples kept in the report"),
}


def candidate_probability(similarity: float, bands: int = 14, rows: int = 8) -> float:
    """P(a pair of Jaccard similarity s becomes an LSH candidate) = 1 − (1 − s^rows)^bands."""
    return 1.0 - (1.0 - similarity**rows) ** bands


# -- shingles ------------------------------------------------------------------------------------


def _blake64(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a bijection of uint64 that spreads every input bit over all
    output bits (the polynomial alone keeps low bits of the word hashes in the low bits)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class _WordHashes:
    """BLAKE2b-64 of each distinct word, computed once per corpus."""

    def __init__(self) -> None:
        self.cache: dict[str, int] = {}

    def __call__(self, words: list[str]) -> np.ndarray:
        cache = self.cache
        for word in set(words).difference(cache):
            cache[word] = _blake64(word)
        return np.fromiter(map(cache.__getitem__, words), dtype=np.uint64, count=len(words))


def shingle_hashes(text: str, ngram: int = 5) -> np.ndarray:
    """The sorted, distinct 64-bit hashes of the word ``ngram``-grams of ``text`` (uint64).

    A text with fewer than ``ngram`` words (but at least one) has one shingle, its whole word
    sequence; a text without words has none.
    """
    return _shingle_hashes(text, ngram, _WordHashes())


def _shingle_hashes(text: str, ngram: int, word_hashes: _WordHashes) -> np.ndarray:
    hashes = word_hashes(_WORD.findall(text.lower()))  # [words]
    n = min(ngram, len(hashes))
    if n == 0:
        return np.empty(0, dtype=np.uint64)
    count = len(hashes) - n + 1
    # the polynomial over each window by Horner's rule, modulo 2^64 (uint64 arrays wrap)
    h = np.zeros(count, dtype=np.uint64)
    for k in range(n):
        h = h * _NGRAM_BASE + hashes[k : k + count]
    return _sorted_unique(_splitmix64(h))


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` for 1-D integer arrays, by sorting (NumPy 2.4's ``np.unique`` is about
    50× slower on a million uint64)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|A ∩ B| / |A ∪ B| of two sorted arrays of distinct shingle hashes (0 if both empty)."""
    inter = len(np.intersect1d(a, b, assume_unique=True))
    union = len(a) + len(b) - inter
    return inter / union if union else 0.0


# -- MinHash and LSH -----------------------------------------------------------------------------


def _permutations(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (a_i, b_i) of ``count`` universal hash functions, a_i in [1, p), b_i in [0, p)."""
    rng = np.random.default_rng(seed)
    p = int(MERSENNE_PRIME)
    a = rng.integers(1, p, size=count, dtype=np.uint64)
    b = rng.integers(0, p, size=count, dtype=np.uint64)
    return a, b


def minhash_signatures(
    shingles: Sequence[np.ndarray], permutations: int, seed: int, *, engine: str | None = None
) -> np.ndarray:
    """The (D, permutations) uint32 MinHash signatures of D shingle sets.

    ``sig[d, i] = min over x in shingles[d] of (a_i·(x mod p) + b_i) mod p``. An empty set's
    row is all ``p`` (it matches no real signature entry). ``engine`` is ``"numpy"`` (the
    reference below) or ``"numba"`` (:mod:`tinygradlm.data._minhash`, same result, about 20×
    faster); default: the active :mod:`tinygradlm.backend` kernels.
    """
    engine = engine or backend.kernels_name()
    if engine not in ("numpy", "numba"):
        raise DataError(f"unknown MinHash engine {engine!r}: choose 'numpy' or 'numba'")
    a, b = _permutations(permutations, seed)
    p = MERSENNE_PRIME
    lengths = np.array([len(s) for s in shingles], dtype=np.int64)
    signatures = np.full((len(shingles), permutations), p, dtype=np.uint64)
    if lengths.sum() == 0:
        return signatures.astype(np.uint32)
    x = np.concatenate(shingles) % p  # [N] shingle hashes in [0, p)
    if engine == "numba":
        from tinygradlm.data._minhash import minhash_rows

        offsets = np.r_[0, np.cumsum(lengths)]
        return minhash_rows(x, offsets, a, b, signatures).astype(np.uint32)
    doc_of_row = np.repeat(np.arange(len(shingles)), lengths)  # [N] which document each is from
    for start in range(0, len(x), _CHUNK_ROWS):
        block = (x[start : start + _CHUNK_ROWS, None] * a + b) % p  # [rows, K]
        docs = doc_of_row[start : start + _CHUNK_ROWS]
        first_rows = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
        partial = np.minimum.reduceat(block, first_rows, axis=0)  # [docs in block, K]
        # a document appears once per block, so fancy-index assignment does not collide;
        # one split across blocks combines its partial minima here
        ids = docs[first_rows]
        signatures[ids] = np.minimum(signatures[ids], partial)
    return signatures.astype(np.uint32)


def _lsh_candidates(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(P, 2) int64 array of the distinct pairs (i < j) of documents that agree on all rows of
    at least one band. Documents without shingles (signature all ``p``) never pair.

    A bucket of m documents gives all m(m − 1)/2 pairs to verify; buckets stay small because
    exact duplicates are removed first and a band matches by chance with probability s^rows.
    """
    live = np.flatnonzero((signatures != MERSENNE_PRIME).any(axis=1))
    D = len(signatures)
    pair_codes = [np.empty(0, dtype=np.int64)]
    for band in range(bands):
        block = signatures[live, band * rows : (band + 1) * rows]  # [live docs, rows]
        # a bucket is a run of equal rows once the band's rows are sorted
        order = np.lexsort(block.T)
        in_order = block[order]
        starts = np.flatnonzero(np.r_[True, (in_order[1:] != in_order[:-1]).any(axis=1)])
        ends = np.r_[starts[1:], len(order)]
        for start, end in zip(starts, ends, strict=True):
            if end - start > 1:
                members = np.sort(live[order[start:end]])
                i, j = np.triu_indices(len(members), k=1)
                pair_codes.append(members[i] * D + members[j])
    codes = _sorted_unique(np.concatenate(pair_codes))
    return np.stack([codes // D, codes % D], axis=1)


def near_duplicate_pairs(
    shingles: Sequence[np.ndarray], config: DedupConfig | None = None
) -> list[tuple[int, int, float]]:
    """The verified near-duplicate pairs ``(i, j, similarity)`` with ``i < j``, in order.

    ``similarity`` is the exact Jaccard of the shingle sets or the MinHash estimate, as
    ``config.verify`` says; only pairs at or above ``config.threshold`` are returned.
    """
    c = config or DedupConfig()
    signatures = minhash_signatures(shingles, c.permutations, c.seed)
    pairs = _lsh_candidates(signatures, c.bands, c.rows)
    if c.verify == "estimate":
        similarity = (signatures[pairs[:, 0]] == signatures[pairs[:, 1]]).mean(axis=1)
    else:
        similarity = np.array([jaccard(shingles[i], shingles[j]) for i, j in pairs])
    keep = similarity >= c.threshold
    return [
        (int(i), int(j), float(s)) for (i, j), s in zip(pairs[keep], similarity[keep], strict=True)
    ]


def _cluster_roots(count: int, pairs: list[tuple[int, int, float]]) -> list[int]:
    """Union-find over ``pairs``; each element's root is the smallest index of its cluster."""
    parent = list(range(count))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving
            i = parent[i]
        return i

    for i, j, _ in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return [find(i) for i in range(count)]


# -- the whole stage -----------------------------------------------------------------------------


def exact_duplicate_key(text: str) -> bytes:
    """Two documents are exact duplicates when their keys are equal: a 16-byte hash of the
    text with every run of whitespace made one space."""
    return hashlib.blake2b(" ".join(text.split()).encode("utf-8"), digest_size=16).digest()


def deduplicate(
    docs: Sequence[Document],
    config: DedupConfig | None = None,
    *,
    on_remove: Callable[[str, Document], None] | None = None,
) -> tuple[list[Document], Report]:
    """Remove exact, then near, duplicates from ``docs``; keep the first of each group, in input
    order, and report each removal with the source of the document it duplicates.
    ``on_remove(rule, removed)``, if given, sees each removed document as it is counted."""
    c = config or DedupConfig()
    c.validate()
    docs = list(docs)
    report = Report.start((d.text for d in docs), max_examples=c.max_examples)

    survivors = docs
    if c.exact:
        first_with_key: dict[bytes, Document] = {}
        survivors = []
        for doc in docs:
            first = first_with_key.setdefault(exact_duplicate_key(doc.text), doc)
            if first is doc:
                survivors.append(doc)
            else:
                report.remove_document(
                    "exact_duplicate", doc.source, doc.text, duplicate_of=first.source
                )
                if on_remove is not None:
                    on_remove("exact_duplicate", doc)

    kept = survivors
    if c.near and len(survivors) > 1:
        word_hashes = _WordHashes()  # shared, so each distinct word is hashed once
        shingles = [_shingle_hashes(d.text, c.ngram, word_hashes) for d in survivors]
        roots = _cluster_roots(len(survivors), near_duplicate_pairs(shingles, c))
        kept = []
        for index, (doc, root) in enumerate(zip(survivors, roots, strict=True)):
            if root == index:
                kept.append(doc)
                continue
            similarity = jaccard(shingles[root], shingles[index])
            report.remove_document(
                "near_duplicate",
                doc.source,
                doc.text,
                detail=f"Jaccard {math.floor(similarity * 100) / 100:.2f} of word {c.ngram}-grams",
                duplicate_of=survivors[root].source,
            )
            if on_remove is not None:
                on_remove("near_duplicate", doc)
    return kept, report.finish(d.text for d in kept)
