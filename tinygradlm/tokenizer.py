"""Byte-level BPE with regex pre-tokenization: GPT-2's and tiktoken's tokenizer, trainable.

A tokenizer is three things (docs/tokenizer.md):

- **ranks**, ``dict[bytes, int]``: every token's byte string and its id. The 256 single bytes are
  always tokens, so any text can be encoded; a multi-byte token is the concatenation of two
  tokens of lower rank, its *merge*. A token's id is its rank, its merge priority.
- **a split pattern** (``PATTERNS``): a regex that cuts text into chunks (words with their leading
  space, numbers, punctuation runs, whitespace) before BPE; tokens never cross a chunk boundary.
- **special tokens** such as ``<|endoftext|>``: strings given ids of their own, recognised in
  text only when the caller allows it (``encode``'s ``allowed_special``).

Training (``Tokenizer.train``), as GPT-2's, minbpe's and HF ``tokenizers``' BPE trainers do:

1. Split the corpus into chunks with the pattern and count each distinct chunk once
   (``Counter[str]``); the corpus is never read again.
2. Write each distinct chunk as a list of byte ids, and count every adjacent pair of ids over
   all chunks, each chunk weighted by its count. Remember also which chunks hold each pair.
3. Repeat until the vocabulary is full: take the most frequent pair (a, b), give the bytes of a
   followed by those of b the next id c, and in every chunk that holds the pair replace each
   (a, b) by c, left to right.

**Tie-break.** Among pairs of equal count the pair with the smallest ids wins, compared as the
tuple (a, b): first the smaller left id, then the smaller right id (HF ``tokenizers`` does the
same). Single bytes have ids 0..255 by byte value and merged tokens ids in creation order, so the
rule depends only on the corpus, never on dict or set order: training is deterministic.

**The incremental update** is what makes step 3 cheap. Merging (a, b) changes the pairs of only
the chunks that hold (a, b), so for each of those the pairs of its old token list are subtracted
from the counts and the pairs of its new list added, and the pair → chunks index follows. The
most frequent pair comes from a heap of (-count, a, b) entries that is never searched or rebuilt:
entries go stale when a count drops, and a popped entry whose count no longer matches is pushed
back with its current count ("lazy invalidation"). Only pairs that contain the new token can grow
in a merge, and those are pushed when the merge is done, so the heap's top is always right.

Encoding is tiktoken's algorithm, so our ids equal tiktoken's for the same ranks and pattern:
split the text into chunks; a chunk whose bytes are a token is that token; otherwise start from
its single bytes and repeatedly merge the adjacent pair whose concatenation has the lowest rank
(the leftmost such pair on ties) until no adjacent pair is a token. A cache maps recent chunks to
their ids, so a common word is merged once.

**Text that is not Unicode.** A Python ``str`` can hold lone surrogates (U+D800..U+DFFF), which
no UTF-8 byte string represents. ``encode`` raises a ``DataError`` naming the position, rather
than replacing them with U+FFFD as tiktoken does, so that ``decode(encode(text)) == text`` holds
for every string ``encode`` accepts. ``decode`` replaces invalid UTF-8 (a token sequence cut in
the middle of a character, say) with U+FFFD; ``decode_bytes`` returns the raw bytes.

Files (docs/tokenizer.md): ``save``/``load`` write our human-readable text format;
``save_tiktoken``/``from_tiktoken`` tiktoken's ``.tiktoken`` rank files; ``save_gpt2``/
``from_gpt2`` GPT-2's ``encoder.json`` + ``vocab.bpe``.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from collections.abc import Set as AbstractSet
from itertools import pairwise
from pathlib import Path
from typing import Literal

import numpy as np
import regex
from tqdm import tqdm

from . import _tokenizer_files as files
from .errors import DataError

__all__ = ["ENDOFTEXT", "PATTERNS", "TOKENIZER_FILE", "Tokenizer"]

ENDOFTEXT = "<|endoftext|>"
# the name `tinygradlm prepare` gives a run's tokenizer, and checkpoints carry it under
TOKENIZER_FILE = "tokenizer.txt"

# The split patterns of tiktoken's r50k_base (GPT-2's pattern, rewritten by tiktoken with
# possessive quantifiers to run faster, same splits) and cl100k_base (GPT-4). The GPT-4 pattern
# keeps a leading non-letter with a word, splits numbers into runs of at most three digits, and
# matches the English contractions case-insensitively.
PATTERNS = {
    "gpt2": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
    "gpt4": (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+|"""
        r""" ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
    ),
}

# Chunks at least this long are merged with a heap over a linked list (O(n log n)) instead of
# the quadratic scan; the two give the same tokens (tests/test_tokenizer.py checks it).
_LONG_CHUNK = 64
# The chunk cache is cleared when it holds this many chunks; chunks longer than
# _CACHE_MAX_CHUNK characters (rare, and unlikely to repeat) are not cached.
_CACHE_SIZE = 1 << 16
_CACHE_MAX_CHUNK = 256


def resolve_pattern(pattern: str) -> str:
    """The regex for a pattern name in ``PATTERNS``, or ``pattern`` itself if it is not a name.
    A custom pattern must compile with the ``regex`` package."""
    pattern = PATTERNS.get(pattern, pattern)
    try:
        regex.compile(pattern)
    except regex.error as error:
        raise ValueError(
            f"the split pattern is neither a name in {sorted(PATTERNS)} nor a valid regex: {error}"
        ) from None
    return pattern


class Tokenizer:
    """A byte-level BPE tokenizer: ``ranks`` (token bytes → id), a split ``pattern`` (a name in
    ``PATTERNS`` or a regex) and ``special_tokens`` (string → id). See the module docstring.

    >>> tok = Tokenizer.train(["low lower lowest"] * 3, vocab_size=260)
    >>> tok.decode(tok.encode("lowest"))
    'lowest'
    """

    def __init__(
        self,
        ranks: dict[bytes, int],
        pattern: str = "gpt4",
        special_tokens: dict[str, int] | None = None,
    ) -> None:
        self.pattern = resolve_pattern(pattern)
        self.pattern_name = next((k for k, v in PATTERNS.items() if v == self.pattern), None)
        self._ranks = dict(ranks)
        self.special_tokens = dict(special_tokens or {})
        _check_vocabulary(self._ranks, self.special_tokens)
        self.vocab_size = 1 + max([*self._ranks.values(), *self.special_tokens.values()])
        # id -> bytes, for decoding; None where an id is unused (a gap in imported ranks)
        self._token_bytes: list[bytes | None] = [None] * self.vocab_size
        for token, rank in self._ranks.items():
            self._token_bytes[rank] = token
        for text, rank in self.special_tokens.items():
            self._token_bytes[rank] = text.encode("utf-8")
        self._split = regex.compile(self.pattern)
        self._cache: dict[str, list[int]] = {}
        self._special_regex_cache: dict[frozenset[str], regex.Pattern] = {}

    # ---- the vocabulary ---------------------------------------------------------------------

    @property
    def ranks(self) -> dict[bytes, int]:
        """A copy of the ordinary tokens: bytes → id (tiktoken's ``mergeable_ranks``)."""
        return dict(self._ranks)

    @property
    def eot_token(self) -> int | None:
        """The id of ``<|endoftext|>``, or None if it is not a special token."""
        return self.special_tokens.get(ENDOFTEXT)

    def token_bytes(self, token: int) -> bytes:
        """The bytes of one token (a special token's are its UTF-8 encoding)."""
        if not 0 <= token < self.vocab_size or self._token_bytes[token] is None:
            raise DataError(f"token id {token} is not in the vocabulary (size {self.vocab_size})")
        return self._token_bytes[token]  # type: ignore[return-value]

    def merges(self) -> dict[int, tuple[int, int]]:
        """token → (left, right) for every multi-byte ordinary token, in rank order: the last
        merge that encoding the token's bytes makes (tiktoken's algorithm with only the ranks
        below the token's). A token that no two lower-ranked tokens make (possible only in
        imported ranks) is left out."""
        merges = {}
        for token, rank in sorted(self._ranks.items(), key=lambda item: item[1]):
            if len(token) > 1 and (pair := _last_merge(token, rank, self._ranks)) is not None:
                merges[rank] = (self._ranks[pair[0]], self._ranks[pair[1]])
        return merges

    def __repr__(self) -> str:
        pattern = self.pattern_name or "custom"
        return (
            f"Tokenizer(vocab_size={self.vocab_size}, pattern={pattern!r}, "
            f"special_tokens={self.special_tokens})"
        )

    # ---- training ---------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        pattern: str = "gpt4",
        special_tokens: Sequence[str] = (ENDOFTEXT,),
        progress: bool = False,
    ) -> Tokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``texts`` (see the module
        docstring for the algorithm and the tie-break). The 256 single bytes get ids 0..255, the
        merges 256.. in the order they are learned, the special tokens the ids after the merges.

        Special-token strings inside ``texts`` are boundaries: training never learns merges
        across or inside them. Training stops early if no pair is left to merge (a corpus too
        small for the vocabulary); ``vocab_size`` of the result then says how many it got.

        Every merge makes new bytes (never ``"a" + "bc"`` after ``"ab" + "c"``), so ranks are
        one-to-one with byte strings as tiktoken requires: a stretch of a chunk that ends up as
        one token was bounded by token boundaries all along, so it was merged exactly as the same
        stretch anywhere else, and the first merge that made its bytes made them everywhere.
        """
        pattern = resolve_pattern(pattern)
        special_tokens = list(dict.fromkeys(special_tokens))
        n_merges = vocab_size - 256 - len(special_tokens)
        if n_merges < 0:
            raise ValueError(
                f"vocab_size={vocab_size} is smaller than the 256 byte tokens plus "
                f"{len(special_tokens)} special tokens"
            )

        # 1. One pass over the corpus: each distinct chunk and how often it occurs.
        chunk_counts = _count_chunks(texts, pattern, special_tokens, progress)
        chunks = [_utf8(chunk, "a training text") for chunk in chunk_counts]
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
        bar = _progress_bar(progress, total=n_merges, desc="merges")
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
                new = _merge_pair(old, a, b, c)
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

        n_ordinary = len(token_bytes)
        specials = {text: n_ordinary + k for k, text in enumerate(special_tokens)}
        return cls(ranks, pattern, specials)

    # ---- encoding ---------------------------------------------------------------------------

    def encode_ordinary(self, text: str) -> list[int]:
        """The ids of ``text``, with special-token strings encoded as ordinary text."""
        ids: list[int] = []
        try:
            self._encode_chunks(text, ids)
        except UnicodeEncodeError:
            _utf8(text, "the text")  # raises a DataError naming the position
            raise
        return ids

    def encode(
        self,
        text: str,
        *,
        allowed_special: Literal["all"] | AbstractSet[str] = frozenset(),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> list[int]:
        """The ids of ``text``, with tiktoken's rules for special-token strings in it:

        - those in ``allowed_special`` ("all": every special token) become their special ids;
        - those in ``disallowed_special`` ("all", the default: every special token not allowed)
          raise a ``DataError`` naming the token and its position;
        - any other (``disallowed_special=()``) is encoded as ordinary text.
        """
        allowed, disallowed = self._special_sets(allowed_special, disallowed_special)
        if disallowed:
            match = self._special_regex(disallowed).search(text)
            if match:
                raise DataError(
                    f"the text contains the special token {match.group()!r} at character "
                    f"{match.start()}; pass allowed_special={{{match.group()!r}}} to encode it "
                    f"as a special token, or disallowed_special=() to encode it as ordinary text"
                )
        if not allowed:
            return self.encode_ordinary(text)
        ids: list[int] = []
        start = 0
        try:
            for match in self._special_regex(allowed).finditer(text):
                self._encode_chunks(text[start : match.start()], ids)
                ids.append(self.special_tokens[match.group()])
                start = match.end()
            self._encode_chunks(text[start:], ids)
        except UnicodeEncodeError:
            _utf8(text, "the text")
            raise
        return ids

    def encode_to_array(
        self,
        text: str,
        *,
        allowed_special: Literal["all"] | AbstractSet[str] = frozenset(),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> np.ndarray:
        """``encode`` as a NumPy array: uint16 if every id fits (``vocab_size`` ≤ 65,536, the
        shard files' rule), else uint32."""
        dtype = np.uint16 if self.vocab_size <= 1 << 16 else np.uint32
        ids = self.encode(
            text, allowed_special=allowed_special, disallowed_special=disallowed_special
        )
        return np.array(ids, dtype=dtype)

    def _encode_chunks(self, text: str, ids: list[int]) -> None:
        """Append the ids of ``text``'s chunks to ``ids``: the encode loop."""
        cache = self._cache
        for chunk in self._split.findall(text):
            chunk_ids = cache.get(chunk)
            if chunk_ids is None:
                chunk_ids = self._encode_chunk(chunk)
            ids.extend(chunk_ids)

    def _encode_chunk(self, chunk: str) -> list[int]:
        """One chunk's ids, through the cache."""
        piece = chunk.encode("utf-8")
        rank = self._ranks.get(piece)
        if rank is not None:
            ids = [rank]
        else:
            merge = bpe_merge if len(piece) < _LONG_CHUNK else bpe_merge_long
            ids = [self._ranks[part] for part in merge(piece, self._ranks)]
        if len(chunk) <= _CACHE_MAX_CHUNK:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[chunk] = ids
        return ids

    def _special_sets(
        self, allowed: str | AbstractSet[str], disallowed: str | Collection[str]
    ) -> tuple[frozenset[str], frozenset[str]]:
        every = frozenset(self.special_tokens)
        allowed = every if allowed == "all" else frozenset(allowed)
        disallowed = every - allowed if disallowed == "all" else frozenset(disallowed)
        unknown = (allowed | disallowed) - every
        if unknown:
            raise ValueError(
                f"{sorted(unknown)} are not special tokens of this tokenizer "
                f"(it has {sorted(every)})"
            )
        return allowed, disallowed

    def _special_regex(self, tokens: frozenset[str]) -> regex.Pattern:
        """A regex matching any of ``tokens``, the longest first where one is a prefix of
        another."""
        pattern = self._special_regex_cache.get(tokens)
        if pattern is None:
            by_length = sorted(tokens, key=lambda t: (-len(t), t))
            pattern = regex.compile("|".join(regex.escape(t) for t in by_length))
            self._special_regex_cache[tokens] = pattern
        return pattern

    # ---- decoding ---------------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes the ids stand for (special tokens as their UTF-8 text)."""
        table = self._token_bytes
        ids = list(ids)
        try:
            if ids and min(ids) < 0:
                raise IndexError  # a negative index would count from the end of the table
            return b"".join([table[i] for i in ids])  # type: ignore[misc]
        except (IndexError, TypeError):
            for i in ids:
                self.token_bytes(int(i))  # raises a DataError naming the id
            raise

    def decode(self, ids: Iterable[int]) -> str:
        """The text the ids stand for; invalid UTF-8 becomes U+FFFD (``errors="replace"``)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # ---- files (formats in docs/tokenizer.md; parsing in tinygradlm/_tokenizer_files.py) ----

    def save(self, path: str | Path) -> None:
        """Write the tokenizer in our text format: a JSON header line, then one token a line."""
        files.write_text_format(
            Path(path), self._ranks, self.pattern, self.special_tokens, self.merges()
        )

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Read a file written by ``save``; ``DataError`` names the file and line of a fault."""
        ranks, pattern, special_tokens = files.read_text_format(Path(path))
        return _from_file(cls, path, ranks, pattern, special_tokens)

    def save_tiktoken(self, path: str | Path) -> None:
        """Write tiktoken's rank file: ``base64(token bytes) rank`` a line, in rank order. The
        format has no place for the pattern or the special tokens."""
        files.write_tiktoken(Path(path), self._ranks)

    @classmethod
    def from_tiktoken(
        cls,
        path: str | Path,
        pattern: str = "gpt4",
        special_tokens: dict[str, int] | None = None,
    ) -> Tokenizer:
        """Read a ``.tiktoken`` rank file (e.g. cl100k_base.tiktoken, with ``pattern="gpt4"`` and
        its special tokens)."""
        ranks = files.read_tiktoken(Path(path))
        return _from_file(cls, path, ranks, pattern, special_tokens)

    def save_gpt2(self, encoder_json_path: str | Path, vocab_bpe_path: str | Path) -> None:
        """Write GPT-2's ``encoder.json`` (token → id, tokens spelled with GPT-2's byte-to-unicode
        alphabet, special tokens included) and ``vocab.bpe`` (the merges in rank order)."""
        files.write_gpt2(
            Path(encoder_json_path),
            Path(vocab_bpe_path),
            self._ranks,
            self.special_tokens,
            self.merges(),
        )

    @classmethod
    def from_gpt2(
        cls,
        encoder_json_path: str | Path,
        vocab_bpe_path: str | Path,
        pattern: str = "gpt2",
    ) -> Tokenizer:
        """Read GPT-2's ``encoder.json`` + ``vocab.bpe``. Entries of encoder.json that are
        neither a single byte nor a merge of vocab.bpe (GPT-2's ``<|endoftext|>``) are the
        special tokens."""
        ranks, special_tokens = files.read_gpt2(Path(encoder_json_path), Path(vocab_bpe_path))
        return _from_file(cls, encoder_json_path, ranks, pattern, special_tokens)


# ---- the two loops people read: a training merge and an encoding merge ----------------------


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


def _merge_pair(word: list[int], a: int, b: int, c: int) -> list[int]:
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


# ---- helpers ---------------------------------------------------------------------------------


def _count_chunks(
    texts: Iterable[str], pattern: str, special_tokens: Sequence[str], progress: bool
) -> Counter[str]:
    """How often each chunk of ``pattern`` occurs in ``texts``, special tokens cut out."""
    split = regex.compile(pattern)
    specials = regex.compile("|".join(regex.escape(t) for t in special_tokens) or r"(?!)")
    counts: Counter[str] = Counter()
    for text in _progress_bar(progress, iterable=texts, desc="counting chunks", unit=" texts"):
        if special_tokens and any(token in text for token in special_tokens):
            for segment in specials.split(text):
                counts.update(pretokenize(split, segment))
        else:
            counts.update(pretokenize(split, text))
    return counts


def pretokenize(split: regex.Pattern, text: str) -> list[str]:
    """The chunks of ``text``: the one place training reads the corpus (a test counts calls)."""
    return split.findall(text)


def _utf8(text: str, what: str) -> bytes:
    """``text`` as UTF-8, or a DataError naming the lone surrogate that prevents it."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise DataError(
            f"{what} holds the lone surrogate U+{ord(text[error.start]):04X} at character "
            f"{error.start}, which is not Unicode text and has no UTF-8 encoding; replace such "
            f"characters first, e.g. text.encode('utf-16', 'surrogatepass').decode('utf-16', "
            f"'replace')"
        ) from None


def _last_merge(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes] | None:
    """The two tokens of lower rank that ``token`` is merged from (see ``Tokenizer.merges``), or
    None if there are none."""
    parts = bpe_merge(token, ranks, max_rank=rank)
    if len(parts) == 2:
        return parts[0], parts[1]
    for k in range(1, len(token)):  # not reached by encoding: any split into two lower ranks
        left, right = token[:k], token[k:]
        if ranks.get(left, rank) < rank and ranks.get(right, rank) < rank:
            return left, right
    return None


def _check_vocabulary(ranks: dict[bytes, int], special_tokens: dict[str, int]) -> None:
    missing = [byte for byte in range(256) if bytes([byte]) not in ranks]
    if missing:
        raise DataError(
            f"the ranks lack {len(missing)} of the 256 single bytes (first: 0x{missing[0]:02x}); "
            "a byte-level BPE needs every byte to be a token"
        )
    if "" in special_tokens:
        raise DataError("a special token cannot be the empty string")
    names: dict[int, str] = {}
    for token, token_id in ranks.items():
        if token_id in names:
            raise DataError(f"the tokens {names[token_id]} and {token!r} share the id {token_id}")
        names[token_id] = repr(token)
    for text, token_id in special_tokens.items():
        if token_id in names:
            raise DataError(
                f"the special token {text!r} has the id {token_id} of the token {names[token_id]}"
            )
        names[token_id] = repr(text)
    if min(names) < 0:
        raise DataError(f"token ids must be non-negative, got {min(names)}")


def _from_file(cls, path, ranks, pattern, special_tokens) -> Tokenizer:
    try:
        return cls(ranks, pattern, special_tokens)
    except DataError as error:
        raise DataError(f"{path}: {error}") from None


def _progress_bar(enabled: bool, **kwargs) -> tqdm:
    return tqdm(disable=not enabled, **kwargs)
