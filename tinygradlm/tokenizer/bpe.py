"""The ``Tokenizer``: a byte-level BPE's vocabulary, encoding, decoding and files.

Training is in :mod:`.training`, the merge loop of encoding in :mod:`.merge`, the split patterns
in :mod:`.pretokenize`, the file formats in :mod:`.files`; the whole design is in the package
docstring (:mod:`tinygradlm.tokenizer`) and docs/tokenizer.md.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Literal

import numpy as np
import regex

from ..atomic import write_atomic
from ..errors import DataError
from . import files, hf
from .merge import bpe_merge, bpe_merge_long
from .pretokenize import ENDOFTEXT, PATTERNS, encode_utf8, resolve_pattern
from .training import learn_ranks

# Chunks at least this long are merged with a heap over a linked list (O(n log n)) instead of
# the quadratic scan; the two give the same tokens (tests/test_tokenizer.py checks it).
_LONG_CHUNK = 64
# The chunk cache is cleared when it holds this many chunks; chunks longer than
# _CACHE_MAX_CHUNK characters (rare, and unlikely to repeat) are not cached.
_CACHE_SIZE = 1 << 16
_CACHE_MAX_CHUNK = 256
# Texts of at least this many characters, with a named split pattern, are encoded by the Numba
# kernel (:mod:`.fast`, the same ids); shorter ones too once the tokenizer has built its tables.
# Below it a fresh process would spend longer loading the kernel than encoding.
_FAST_MIN_CHARS = 4096


class Tokenizer:
    """A byte-level BPE tokenizer: ``ranks`` (token bytes → id), a split ``pattern`` (a name in
    ``PATTERNS`` or a regex) and ``special_tokens`` (string → id). See the package docstring.

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
        self._gpt4 = {PATTERNS["gpt2"]: False, PATTERNS["gpt4"]: True}.get(self.pattern)
        self._tables = None  # the kernel's tables (fast.Tables), built on first use
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
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``texts`` (see the package
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
        ranks = learn_ranks(texts, n_merges, pattern, special_tokens, progress)
        n_ordinary = len(ranks)
        specials = {text: n_ordinary + k for k, text in enumerate(special_tokens)}
        return cls(ranks, pattern, specials)

    # ---- encoding ---------------------------------------------------------------------------

    def encode_ordinary(self, text: str) -> list[int]:
        """The ids of ``text``, with special-token strings encoded as ordinary text."""
        ids: list[int] = []
        try:
            self._encode_chunks(text, ids)
        except UnicodeEncodeError:
            encode_utf8(text, "the text")  # raises a DataError naming the position
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
        allowed = self._check_special(text, allowed_special, disallowed_special)
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
            encode_utf8(text, "the text")
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
        if self._use_kernel(text) and not self._check_special(
            text, allowed_special, disallowed_special
        ):
            try:
                return self._encode_kernel(text, dtype)
            except UnicodeEncodeError:
                encode_utf8(text, "the text")
                raise
        ids = self.encode(
            text, allowed_special=allowed_special, disallowed_special=disallowed_special
        )
        return np.array(ids, dtype=dtype)

    def load_kernel(self) -> bool:
        """Build the Numba encoder's tables now (a fraction of a second), so that every later
        encoding takes it, however short its text: what a caller about to encode many short
        documents wants. False for a custom split pattern, which has no kernel."""
        if self._gpt4 is not None and self._tables is None:
            from . import fast

            self._tables = fast.Tables(self._ranks, self.vocab_size)
        return self._tables is not None

    def _use_kernel(self, text: str) -> bool:
        return self._gpt4 is not None and (self._tables is not None or len(text) >= _FAST_MIN_CHARS)

    def _encode_kernel(self, text: str, dtype=np.int64) -> np.ndarray:
        """The ids of ``text``'s chunks (as ``dtype``, which holds them all) by the Numba
        kernel: a named pattern only."""
        from . import fast  # Numba loads only when a text is long enough to need it

        self.load_kernel()
        classes, fold = fast.char_tables()
        return fast.encode(
            self._tables, text.encode("utf-8"), self._gpt4, classes, fold, self._merge_piece, dtype
        )

    def _encode_chunks(self, text: str, ids: list[int]) -> None:
        """Append the ids of ``text``'s chunks to ``ids``: the encode loop (the Numba kernel's
        for a long text and a named pattern, else the readable one below)."""
        if self._use_kernel(text):
            dtype = np.uint32 if self.vocab_size <= 1 << 32 else np.int64
            ids.extend(self._encode_kernel(text, dtype).tolist())
        else:
            self._encode_chunks_reference(text, ids)

    def _encode_chunks_reference(self, text: str, ids: list[int]) -> None:
        """``_encode_chunks`` with the ``regex`` split, the chunk cache and ``bpe_merge``: the
        kernel's readable twin."""
        cache = self._cache
        for chunk in self._split.findall(text):
            chunk_ids = cache.get(chunk)
            if chunk_ids is None:
                chunk_ids = self._encode_chunk(chunk)
            ids.extend(chunk_ids)

    def _encode_chunk(self, chunk: str) -> list[int]:
        """One chunk's ids, through the cache."""
        ids = self._merge_piece(chunk.encode("utf-8"))
        if len(chunk) <= _CACHE_MAX_CHUNK:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[chunk] = ids
        return ids

    def _merge_piece(self, piece: bytes) -> list[int]:
        """One chunk's ids from its bytes: the token it is, else the merge loop's tokens."""
        rank = self._ranks.get(piece)
        if rank is not None:
            return [rank]
        merge = bpe_merge if len(piece) < _LONG_CHUNK else bpe_merge_long
        return [self._ranks[part] for part in merge(piece, self._ranks)]

    def _check_special(
        self, text: str, allowed_special: str | AbstractSet[str], disallowed_special
    ) -> frozenset[str]:
        """The allowed special tokens; a DataError if ``text`` holds a disallowed one."""
        allowed, disallowed = self._special_sets(allowed_special, disallowed_special)
        if disallowed:
            match = self._special_regex(disallowed).search(text)
            if match:
                raise DataError(
                    f"the text contains the special token {match.group()!r} at character "
                    f"{match.start()}; pass allowed_special={{{match.group()!r}}} to encode it "
                    f"as a special token, or disallowed_special=() to encode it as ordinary text"
                )
        return allowed

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

    # ---- files (formats in docs/tokenizer.md; parsing in tokenizer/files.py) ----------------

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

    def save_hf(self, directory: str | Path, model_max_length: int | None = None) -> list[Path]:
        """Write Hugging Face's ``tokenizer.json`` and ``tokenizer_config.json`` into
        ``directory`` (made if missing) and return their paths: what ``tokenizers.Tokenizer.
        from_file`` and ``transformers.AutoTokenizer.from_pretrained(directory)`` load, giving
        our ids (:mod:`.hf`). ``model_max_length`` goes into the config when given."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, text in self.hf_files(model_max_length).items():
            write_atomic(directory / name, text)
            paths.append(directory / name)
        return paths

    def hf_files(self, model_max_length: int | None = None) -> dict[str, str]:
        """The texts ``save_hf`` writes, by file name. ValueError for a tokenizer that
        tokenizer.json cannot hold (a token no merge makes, a special token spelled like an
        ordinary one, a split pattern HF's regex engine reads differently)."""
        json_text = hf.tokenizer_json(self._ranks, self.pattern, self.special_tokens, self.merges())
        config = hf.tokenizer_config(self.special_tokens, model_max_length)
        return {hf.HF_TOKENIZER_FILE: json_text, hf.HF_CONFIG_FILE: config}

    @classmethod
    def from_hf(cls, path: str | Path) -> Tokenizer:
        """Read Hugging Face's files: a ``tokenizer.json``, a ``vocab.json`` (with the
        ``merges.txt`` beside it), or a directory holding either (tokenizer.json first). Special
        tokens are HF's added tokens. A DataError names the file and the setting this byte-level
        BPE cannot represent (:mod:`.hf`), or the first token whose merge HF's BPE and ours
        would make differently."""
        path = Path(path)
        if path.is_dir():
            found = [path / hf.HF_TOKENIZER_FILE, path / hf.HF_VOCAB_FILE]
            found = [p for p in found if p.is_file()]
            if not found:
                raise DataError(
                    f"{path}: neither {hf.HF_TOKENIZER_FILE} nor {hf.HF_VOCAB_FILE} is there"
                )
            path = found[0]
        if path.name == hf.HF_VOCAB_FILE:
            vocabulary = hf.read_vocab_merges(path, path.parent / hf.HF_MERGES_FILE)
        else:
            vocabulary = hf.read_tokenizer_json(path)
        ranks, pattern, special_tokens, pairs = vocabulary
        tokenizer = _from_file(cls, path, ranks, pattern, special_tokens)
        _check_merges(tokenizer, pairs, path)
        return tokenizer


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


def _check_merges(tokenizer: Tokenizer, pairs: list[tuple[bytes, bytes]], path: Path) -> None:
    """Refuse a vocabulary whose listed merges are not the ones our encoding makes: HF's BPE
    merges by the list, ours by the ids of the results, and the two then disagree on text."""
    ranks = tokenizer._ranks
    ours = tokenizer.merges()
    for left, right in pairs:
        rank = ranks[left + right]
        if ours.get(rank) != (ranks[left], ranks[right]):
            made = ours.get(rank)
            how = (
                "no two tokens of lower id"
                if made is None
                else (f"{tokenizer.token_bytes(made[0])!r} + {tokenizer.token_bytes(made[1])!r}")
            )
            raise DataError(
                f"{path}: the merges make {left + right!r} (id {rank}) from {left!r} + "
                f"{right!r}, but encoding by ids makes it from {how}: HF's BPE and ours would "
                "encode some text differently"
            )
