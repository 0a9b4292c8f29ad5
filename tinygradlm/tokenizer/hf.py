"""Hugging Face's tokenizer files both ways: ``tokenizer.json``, ``vocab.json`` + ``merges.txt``.

``tokenizer.json`` is the file of HF's ``tokenizers`` library, what ``AutoTokenizer`` loads as a
fast tokenizer. A byte-level BPE in it is GPT-2's tokenizer in another dress:

- ``model``: ``"type": "BPE"``, ``vocab`` (token → id, tokens spelled in GPT-2's byte alphabet,
  :func:`.files.gpt2_byte_alphabet`) and ``merges`` (one pair a merge, ``"a b"`` or
  ``["a", "b"]``, in priority order);
- ``pre_tokenizer``: ``ByteLevel`` with ``use_regex: true`` (GPT-2's split pattern), or a
  ``Sequence`` of a ``Split`` by a regex and a ``ByteLevel`` with ``use_regex: false`` (that
  regex's split);
- ``added_tokens``: the special tokens (``<|endoftext|>``), each with its id.

HF's BPE merges the adjacent pair listed first in ``merges``; ours (tiktoken's) merges the pair
whose concatenation has the lowest id. The two agree when the id of each merge's result follows
the order of the list, and each token is made by the merge the list names (training makes such
vocabularies; GPT-2's is one). The readers check both, and refuse by name everything else that
would make HF's ids differ from ours: another model type (WordPiece, Unigram), a normalizer,
``add_prefix_space``, ``byte_fallback``, ``dropout``, a subword prefix or suffix, a
post-processor that adds tokens, added tokens that strip spaces.

HF's regex engine is Oniguruma, whose ``X{n,m}+`` is "one or more of ``X{n,m}``", not a
possessive repeat as in the ``regex`` package: GPT-4's ``\\p{N}{1,3}+`` would keep a run of any
number of digits together. Our patterns are written in a form both engines split the same way
(:data:`ONIGURUMA_PATTERNS`; tests compare the splits); a custom pattern with such a repeat is
refused.

``vocab.json`` + ``merges.txt`` are GPT2Tokenizer's files: GPT-2's encoder.json and vocab.bpe
under other names, read by :func:`.files.read_gpt2`; the special tokens also come from
``tokenizer_config.json``'s ``added_tokens_decoder`` and ``special_tokens_map.json``.

This module turns files into (ranks, pattern, special tokens) and back; ``Tokenizer.from_hf``
and ``Tokenizer.save_hf`` (:mod:`.bpe`) are the API.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import regex

from ..errors import DataError
from ..parse import file_problem, read_json
from .files import from_gpt2, gpt2_vocabulary, read_gpt2, to_gpt2
from .pretokenize import PATTERNS, resolve_pattern

HF_TOKENIZER_FILE = "tokenizer.json"
HF_CONFIG_FILE = "tokenizer_config.json"
HF_VOCAB_FILE = "vocab.json"
HF_MERGES_FILE = "merges.txt"
HF_SPECIAL_TOKENS_FILE = "special_tokens_map.json"

# Our patterns as written for Oniguruma. GPT-4's `\p{N}{1,3}+` ends its alternative, so the plain
# greedy repeat matches the same digits; GPT-2's is HF's own ByteLevel split (use_regex: true).
ONIGURUMA_PATTERNS = {"gpt4": PATTERNS["gpt4"].replace(r"\p{N}{1,3}+", r"\p{N}{1,3}")}
# a repeat count followed by +: possessive in `regex`, "one or more" in Oniguruma
_COUNTED_PLUS = regex.compile(r"(?<!\\)\{[0-9]*,?[0-9]*\}\+")

Vocabulary = tuple[dict[bytes, int], str, dict[str, int], list[tuple[bytes, bytes]]]


# ---- reading tokenizer.json ---------------------------------------------------------------------


def read_tokenizer_json(path: Path) -> Vocabulary:
    """(ranks, pattern, special tokens, merges) of a byte-level BPE ``tokenizer.json``; a
    DataError naming the file and the setting for anything else (see the module docstring).
    ``merges`` lists each merge's two parts as bytes, in the file's order."""
    data = read_json(path, DataError)
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise DataError(f"{path}: not a tokenizers file (no 'model' object)")
    try:
        return _read_document(path, data)
    except (AttributeError, TypeError, KeyError) as error:  # a value of an unexpected type
        raise DataError(f"{path}: not a tokenizers file of the expected shape ({error})") from None


def _read_document(path: Path, data: dict) -> Vocabulary:
    model = data["model"]
    kind = model.get("type", "BPE" if "merges" in model else None)
    if kind != "BPE":
        raise DataError(
            f"{path}: model type {kind!r}: only byte-level BPE tokenizers can be read "
            "(not WordPiece, Unigram or WordLevel)"
        )
    refuse = _Refusals(path)
    refuse.unless(model.get("dropout") in (None, 0, 0.0), "model.dropout", model.get("dropout"))
    refuse.unless(not model.get("byte_fallback"), "model.byte_fallback", True)
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        refuse.unless(not model.get(key), f"model.{key}", model.get(key))
    refuse.unless(data.get("truncation") is None, "truncation", data.get("truncation"))
    _check_normalizer(refuse, data.get("normalizer"))
    _check_post_processor(refuse, data.get("post_processor"))
    decoder = data.get("decoder")
    refuse.unless(decoder is None or _kind(decoder) == "ByteLevel", "decoder", _kind(decoder))
    pattern = _pattern_of(refuse, data.get("pre_tokenizer"))
    special_tokens = _added_tokens(refuse, data.get("added_tokens") or [])
    vocab, merges = model.get("vocab"), model.get("merges")
    if not isinstance(vocab, dict) or not isinstance(merges, list):
        raise DataError(f"{path}: model.vocab must be an object and model.merges a list")
    pairs = [_merge_pair(path, k, merge) for k, merge in enumerate(merges)]
    ranks = _ranks(path, vocab, pairs, special_tokens)
    return ranks, pattern, special_tokens, pairs


class _Refusals:
    """``unless(ok, setting, value)``: a DataError naming the file and the setting if not ok."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def unless(self, ok: bool, setting: str, value: Any) -> None:
        if not ok:
            raise DataError(
                f"{self.path}: {setting} is {value!r}, which this package's byte-level BPE "
                "cannot represent (its ids would differ from HF's)"
            )


def _kind(value: Any) -> Any:
    return value.get("type") if isinstance(value, dict) else value


def _check_normalizer(refuse: _Refusals, normalizer: Any) -> None:
    """None, or an empty Sequence: a normalizer (NFC, Lowercase, …) changes the text."""
    empty = isinstance(normalizer, dict) and normalizer.get("type") == "Sequence"
    refuse.unless(
        normalizer is None or (empty and not normalizer.get("normalizers")),
        "normalizer",
        _kind(normalizer),
    )


def _check_post_processor(refuse: _Refusals, processor: Any) -> None:
    """None, ByteLevel (it only moves offsets) or a template of the text alone; one that adds
    tokens (BOS, EOS, a BERT template) is refused."""
    if processor is None or _kind(processor) == "ByteLevel":
        return
    if _kind(processor) == "Sequence":
        for part in processor.get("processors") or []:
            _check_post_processor(refuse, part)
        return
    alone = [{"Sequence": {"id": "A", "type_id": 0}}]
    plain = _kind(processor) == "TemplateProcessing" and processor.get("single") == alone
    refuse.unless(plain, "post_processor (it adds tokens to every encoding)", _kind(processor))


def _pattern_of(refuse: _Refusals, pre: Any) -> str:
    """The split pattern of a pre-tokenizer: ByteLevel's GPT-2 regex, or a Split's regex
    followed by a ByteLevel that only maps bytes."""
    parts = pre.get("pretokenizers") if _kind(pre) == "Sequence" else [pre]
    if not isinstance(parts, list) or not parts or _kind(parts[-1]) != "ByteLevel":
        raise DataError(
            f"{refuse.path}: pre_tokenizer is {_kind(pre)!r}: a byte-level BPE needs a ByteLevel "
            "pre-tokenizer (after an optional Split)"
        )
    byte_level = parts[-1]
    refuse.unless(not byte_level.get("add_prefix_space"), "pre_tokenizer add_prefix_space", True)
    use_regex = byte_level.get("use_regex", True)
    if len(parts) == 1:
        refuse.unless(use_regex, "pre_tokenizer ByteLevel use_regex (no split at all)", False)
        return PATTERNS["gpt2"]
    split = parts[0]
    refuse.unless(
        len(parts) == 2 and _kind(split) == "Split" and not use_regex,
        "pre_tokenizer",
        [_kind(p) for p in parts],
    )
    refuse.unless(split.get("behavior") == "Isolated", "Split behavior", split.get("behavior"))
    refuse.unless(not split.get("invert"), "Split invert", True)
    source = (split.get("pattern") or {}).get("Regex")
    refuse.unless(isinstance(source, str), "Split pattern (a literal String)", split.get("pattern"))
    return pattern_from_oniguruma(source, refuse.path)


def pattern_from_oniguruma(source: str, where: Any = "the split pattern") -> str:
    """Our pattern for an Oniguruma split regex: one of ours by its written form, else the
    regex itself, refused if it has a repeat count followed by ``+`` (whose meaning differs)."""
    for name, written in ONIGURUMA_PATTERNS.items():
        if source == written:
            return PATTERNS[name]
    if _COUNTED_PLUS.search(source):
        raise DataError(
            f"{where}: the split regex {source!r:.80} has a repeat count followed by '+', which "
            "Oniguruma reads as 'one or more' and the regex package as possessive"
        )
    try:
        return resolve_pattern(source)
    except (ValueError, DataError) as error:
        raise DataError(f"{where}: {error}") from None


def pattern_to_oniguruma(pattern: str) -> str | None:
    """The Split regex HF writes for our ``pattern``; None for GPT-2's (ByteLevel's own split).
    ValueError for a custom pattern that Oniguruma would read differently."""
    name = next((k for k, v in PATTERNS.items() if v == pattern), None)
    if name == "gpt2":
        return None
    if name in ONIGURUMA_PATTERNS:
        return ONIGURUMA_PATTERNS[name]
    if _COUNTED_PLUS.search(pattern):
        raise ValueError(
            f"the split pattern {pattern!r:.80} has a repeat count followed by '+' (possessive "
            "here), which HF's Oniguruma reads as 'one or more': write it as an atomic group, "
            "(?>X{n,m})"
        )
    return pattern


def _added_tokens(refuse: _Refusals, added: Any) -> dict[str, int]:
    """content → id of ``added_tokens``, all of them special tokens to us (HF matches every
    added token in text, as our ``encode`` does with ``allowed_special="all"``)."""
    if not isinstance(added, list):
        raise DataError(f"{refuse.path}: added_tokens must be a list")
    special_tokens = {}
    for token in added:
        content, token_id = token.get("content"), token.get("id")
        if (
            not isinstance(content, str)
            or isinstance(token_id, bool)
            or not isinstance(token_id, int)
        ):
            raise DataError(f"{refuse.path}: an added token needs a string content and an id")
        for flag in ("lstrip", "rstrip", "single_word"):
            refuse.unless(not token.get(flag), f"added token {content!r} {flag}", True)
        special_tokens[content] = token_id
    return special_tokens


def _merge_pair(path: Path, k: int, merge: Any) -> tuple[bytes, bytes]:
    fields = merge.split(" ") if isinstance(merge, str) else merge
    parts = [from_gpt2(f) if isinstance(f, str) else None for f in fields or []]
    if len(parts) != 2 or not all(parts):
        raise DataError(
            f"{path}: model.merges[{k}] is {merge!r:.60}, not two tokens in GPT-2's byte alphabet"
        )
    return parts[0], parts[1]  # type: ignore[return-value]


def _ranks(
    path: Path,
    vocab: dict[str, Any],
    pairs: list[tuple[bytes, bytes]],
    special_tokens: dict[str, int],
) -> dict[bytes, int]:
    """token bytes → id from the vocab, checked against the merges: each merge's parts are
    tokens, its result a token of id above the previous merge's (the id is the priority)."""
    special_ids = set(special_tokens.values())
    ranks: dict[bytes, int] = {}
    for key, token_id in vocab.items():
        if isinstance(token_id, bool) or not isinstance(token_id, int):
            raise DataError(f"{path}: model.vocab[{key!r}] is {token_id!r}, not an id")
        if token_id in special_ids:
            continue
        token = from_gpt2(key)
        if token is None:
            raise DataError(
                f"{path}: model.vocab has {key!r} (id {token_id}), which is not spelled in GPT-2's "
                "byte alphabet: not a byte-level BPE"
            )
        ranks[token] = token_id
    made = set()
    previous = -1
    for k, (left, right) in enumerate(pairs):
        for part in (left, right):
            if part not in ranks:
                raise DataError(f"{path}: model.merges[{k}]: {to_gpt2(part)!r} is not in the vocab")
        merged = left + right
        if merged not in ranks:
            raise DataError(
                f"{path}: model.merges[{k}] makes {to_gpt2(merged)!r}, not in the vocab"
            )
        if merged in made:
            raise DataError(f"{path}: model.merges[{k}] makes {to_gpt2(merged)!r} a second time")
        if ranks[merged] <= previous:
            raise DataError(
                f"{path}: model.merges[{k}] makes {to_gpt2(merged)!r} of id {ranks[merged]}, not "
                f"above the previous merge's {previous}: the ids are not in merge order, and "
                "this package's BPE takes a token's id as its merge priority"
            )
        made.add(merged)
        previous = ranks[merged]
    for token, token_id in ranks.items():
        if len(token) > 1 and token not in made:
            raise DataError(
                f"{path}: model.vocab has {to_gpt2(token)!r} (id {token_id}), which no merge makes "
                "(a special token must be among the added_tokens)"
            )
    return ranks


# ---- reading vocab.json + merges.txt ------------------------------------------------------------


def read_vocab_merges(vocab_path: Path, merges_path: Path) -> Vocabulary:
    """(ranks, GPT-2's pattern, special tokens, merges) of GPT2Tokenizer's files. Special tokens
    are vocab.json's entries that are neither bytes nor merges, ``added_tokens_decoder`` of a
    tokenizer_config.json beside them, and the tokens special_tokens_map.json names (given the
    next free ids when vocab.json lacks them, as HF does)."""
    ranks, special_tokens = read_gpt2(vocab_path, merges_path)
    folder = vocab_path.parent
    config = _optional_json(folder / HF_CONFIG_FILE)
    refuse = _Refusals(folder / HF_CONFIG_FILE)
    refuse.unless(not config.get("add_prefix_space"), "add_prefix_space", True)
    decoder = config.get("added_tokens_decoder") or {}
    for token_id, token in decoder.items() if isinstance(decoder, dict) else []:
        if isinstance(token, dict) and isinstance(token.get("content"), str):
            for flag in ("lstrip", "rstrip", "single_word"):
                refuse.unless(not token.get(flag), f"added token {token['content']!r} {flag}", True)
            if token_id.isdigit():
                special_tokens[token["content"]] = int(token_id)
    named = _optional_json(folder / HF_SPECIAL_TOKENS_FILE)
    next_id = 1 + max([*ranks.values(), *special_tokens.values()])
    for value in named.values():
        content = value.get("content") if isinstance(value, dict) else value
        if isinstance(content, str) and content not in special_tokens:
            special_tokens[content] = next_id
            next_id += 1
    return ranks, PATTERNS["gpt2"], special_tokens, _merge_lines(merges_path)


def _merge_lines(path: Path) -> list[tuple[bytes, bytes]]:
    """The merges of a merges.txt that read_gpt2 has checked, as pairs of bytes."""
    pairs = []
    for k, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if line and not (k == 0 and line.startswith("#version")):
            left, right = line.split(" ")
            pairs.append((from_gpt2(left), from_gpt2(right)))
    return pairs  # type: ignore[return-value]


def _optional_json(path: Path) -> dict:
    if file_problem(path) is not None:
        return {}
    value = read_json(path, DataError)
    return value if isinstance(value, dict) else {}


# ---- writing ------------------------------------------------------------------------------------


def tokenizer_json(
    ranks: dict[bytes, int],
    pattern: str,
    special_tokens: dict[str, int],
    merges: dict[int, tuple[int, int]],
) -> str:
    """The text of ``tokenizer.json`` for a byte-level BPE, in the form ``tokenizers`` itself
    writes (GPT-2's file with our split). ValueError for what the format cannot hold: a token
    no merge makes, a special token spelled like an ordinary one, a pattern Oniguruma would
    read differently."""
    vocab, merge_pairs = gpt2_vocabulary(ranks, special_tokens, merges, "tokenizer.json")
    pairs = [list(pair) for pair in merge_pairs]
    added = [
        _added_token(text, token_id)
        for text, token_id in sorted(special_tokens.items(), key=lambda item: item[1])
    ]
    split = pattern_to_oniguruma(pattern)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True}
    if split is None:
        pre_tokenizer = {**byte_level, "use_regex": True}
    else:
        pre_tokenizer = {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": split},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {**byte_level, "use_regex": False},
            ],
        }
    document = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": None,
        "decoder": {**byte_level, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": pairs,
        },
    }
    return json.dumps(document, ensure_ascii=False, indent=1) + "\n"


def tokenizer_config(special_tokens: dict[str, int], model_max_length: int | None = None) -> str:
    """The text of ``tokenizer_config.json``: the class that loads tokenizer.json as it is
    (``PreTrainedTokenizerFast``), the special tokens, ``<|endoftext|>`` as BOS and EOS when
    present (GPT-2's use), ``model_max_length`` when given, and no clean-up of spaces in decoding
    (so that HF's ``decode`` gives our text)."""
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": {
            str(token_id): _added_token(text, token_id, with_id=False)
            for text, token_id in sorted(special_tokens.items(), key=lambda item: item[1])
        },
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
    }
    if "<|endoftext|>" in special_tokens:
        config["bos_token"] = config["eos_token"] = "<|endoftext|>"
    if model_max_length is not None:
        config["model_max_length"] = int(model_max_length)
    return json.dumps(config, ensure_ascii=False, indent=2) + "\n"


def _added_token(text: str, token_id: int, with_id: bool = True) -> dict[str, Any]:
    token = {"id": token_id} if with_id else {}
    token.update(
        content=text, single_word=False, lstrip=False, rstrip=False, normalized=False, special=True
    )
    return token
