"""Reading and writing tokenizer files: our text format, tiktoken's rank files, GPT-2's pair.

The formats are described, with examples, in docs/tokenizer.md. Every reader raises
``DataError`` naming the file and line of the first fault it finds. Writers replace the file
atomically (a temporary file in the same directory, then a rename).
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

import regex

from ..atomic import write_atomic
from ..errors import DataError
from ..parse import parse_json
from .pretokenize import resolve_pattern

# the name `tinygradlm prepare` gives a run's tokenizer, and checkpoints carry it under
TOKENIZER_FILE = "tokenizer.txt"
FORMAT = "tinygradlm-bpe"
VERSION = 1
# Ids are dense: n tokens have the ids 0..n-1, up to a few gaps (reserved ids: cl100k_base
# leaves 20 before its special tokens). An id RESERVED_IDS or more beyond the count of entries
# is an error naming its line, not a table of that size for the tokenizer to allocate.
RESERVED_IDS = 1024

# ---- our text format --------------------------------------------------------------------------
#
#   {"format": "tinygradlm-bpe", "version": 1, "tokens": 8191, "pattern": "...", ...}
#   0 "\x00"
#   ...
#   256 " t" = 32 116
#
# One line per ordinary token in increasing id order: the id, the token's bytes as a quoted
# string, and for a multi-byte token the ids of the two tokens it is merged from.

_ID = "([0-9]{1,18})"  # no id has more digits; int() of thousands of digits is refused anyway
_LINE = regex.compile(rf'{_ID} "((?:[^"\\]|\\.)*)"(?: = {_ID} {_ID})?')
_ESCAPE = regex.compile(r'\\(?:x([0-9a-f]{2})|(["\\]))|\\')


def escape_token(token: bytes) -> str:
    """``token`` as the inside of a quoted string: printable characters as themselves (valid
    UTF-8 is shown as text), ``\\\\`` and ``\\"`` for backslash and quote, every other byte as
    ``\\xNN``."""
    out = []
    for char in token.decode("utf-8", errors="surrogateescape"):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not part of valid UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        else:
            out.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8"))
    return "".join(out)


def unescape_token(text: str) -> bytes:
    """The inverse of ``escape_token``; ``ValueError`` on an unknown escape."""
    out = bytearray()
    position = 0
    for match in _ESCAPE.finditer(text):
        out += text[position : match.start()].encode("utf-8")
        if match.group(1):
            out.append(int(match.group(1), 16))
        elif match.group(2):
            out += match.group(2).encode()
        else:
            raise ValueError(f"unknown escape at {text[match.start() : match.start() + 4]!r}")
        position = match.end()
    out += text[position:].encode("utf-8")
    return bytes(out)


def write_text_format(
    path: Path,
    ranks: dict[bytes, int],
    pattern: str,
    special_tokens: dict[str, int],
    merges: dict[int, tuple[int, int]],
) -> None:
    header = {
        "format": FORMAT,
        "version": VERSION,
        "tokens": len(ranks),
        "pattern": pattern,
        "special_tokens": special_tokens,
    }
    lines = [json.dumps(header, ensure_ascii=False)]
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        line = f'{rank} "{escape_token(token)}"'
        if rank in merges:
            line += " = {} {}".format(*merges[rank])
        lines.append(line)
    write_atomic(path, "\n".join(lines) + "\n")


def read_text_format(path: Path) -> tuple[dict[bytes, int], str, dict[str, int]]:
    lines = _read_lines(path)
    if not lines:
        raise DataError(f"{path}:1: the file is empty, expected a {FORMAT} header")
    header = _read_header(path, lines[0])
    ranks: dict[bytes, int] = {}
    by_id: dict[int, bytes] = {}
    previous_id = -1
    for lineno, line in enumerate(lines[1:], start=2):
        where = f"{path}:{lineno}"
        match = _LINE.fullmatch(line)
        if match is None:
            raise DataError(f'{where}: expected `ID "TOKEN"` or `ID "TOKEN" = LEFT RIGHT`')
        rank = int(match.group(1))
        if rank >= header["tokens"] + RESERVED_IDS:
            raise DataError(
                f"{where}: id {rank} is far beyond the {header['tokens']} tokens the header "
                f"announces (ids are dense, with fewer than {RESERVED_IDS} gaps)"
            )
        try:
            token = unescape_token(match.group(2))
        except ValueError as error:
            raise DataError(f"{where}: {error}") from None
        if rank <= previous_id:
            raise DataError(f"{where}: id {rank} is not above the previous line's")
        if token in ranks:
            raise DataError(f"{where}: token {token!r} is already id {ranks[token]}")
        if match.group(3) is not None:
            left, right = int(match.group(3)), int(match.group(4))
            for part in (left, right):
                if part not in by_id:
                    raise DataError(f"{where}: merge part {part} is not an id of a line above")
            if by_id[left] + by_id[right] != token:
                raise DataError(
                    f"{where}: {by_id[left]!r} + {by_id[right]!r} is not the token {token!r}"
                )
        ranks[token] = rank
        by_id[rank] = token
        previous_id = rank
    if len(ranks) != header["tokens"]:
        raise DataError(
            f"{path}:{len(lines)}: the header announces {header['tokens']} tokens, the file has "
            f"{len(ranks)} (truncated?)"
        )
    return ranks, header["pattern"], header["special_tokens"]


def _read_header(path: Path, line: str) -> dict:
    header = parse_json(line, f"{path}:1: the header", DataError)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DataError(f'{path}:1: not a tokenizer file (the header lacks "format": "{FORMAT}")')
    if header.get("version") != VERSION:
        raise DataError(f"{path}:1: version {header.get('version')!r}, this reader knows {VERSION}")
    tokens = header.get("tokens")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise DataError(f'{path}:1: the header\'s "tokens" must be an integer >= 0')
    if not isinstance(header.get("pattern"), str):
        raise DataError(f'{path}:1: the header\'s "pattern" must be a string')
    specials = header.get("special_tokens")
    if not isinstance(specials, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in specials.values()
    ):
        raise DataError(f'{path}:1: the header\'s "special_tokens" must map strings to ids')
    limit = tokens + len(specials) + RESERVED_IDS
    for text, token_id in specials.items():
        if not 0 <= token_id < limit:
            raise DataError(
                f"{path}:1: the special token {text!r} has the id {token_id}, expected one in "
                f"0..{limit - 1} ({tokens} tokens, {len(specials)} special, {RESERVED_IDS} "
                "reserved)"
            )
    try:
        resolve_pattern(header["pattern"])
    except ValueError as error:  # not a regex, too long, or one that would drop text
        raise DataError(f"{path}:1: the pattern: {error}") from None
    return header


# ---- tiktoken's rank files ----------------------------------------------------------------------


_TIKTOKEN_RANK = regex.compile("[0-9]{1,18}")


def write_tiktoken(path: Path, ranks: dict[bytes, int]) -> None:
    lines = [
        f"{base64.b64encode(token).decode('ascii')} {rank}"
        for token, rank in sorted(ranks.items(), key=lambda item: item[1])
    ]
    write_atomic(path, "\n".join(lines) + "\n")


def read_tiktoken(path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    ids: set[int] = set()
    lines = _read_lines(path)
    entries = sum(1 for line in lines if line)
    for lineno, line in enumerate(lines, start=1):
        if not line:
            continue
        where = f"{path}:{lineno}"
        fields = line.split()
        if len(fields) != 2 or not _TIKTOKEN_RANK.fullmatch(fields[1]):
            raise DataError(f"{where}: expected `BASE64 RANK` (RANK digits 0-9), got {line[:60]!r}")
        try:
            token = base64.b64decode(fields[0], validate=True)
        except (binascii.Error, ValueError):  # ValueError: a character that is not ASCII
            raise DataError(f"{where}: {fields[0][:40]!r} is not base64") from None
        rank = int(fields[1])
        if rank >= entries + RESERVED_IDS:
            raise DataError(
                f"{where}: rank {rank} is far beyond the {entries} entries of the file (ranks "
                f"are dense, with fewer than {RESERVED_IDS} gaps)"
            )
        if token in ranks:
            raise DataError(f"{where}: token {token!r} is listed twice")
        if rank in ids:
            raise DataError(f"{where}: rank {rank} is listed twice")
        ranks[token] = rank
        ids.add(rank)
    return ranks


# ---- GPT-2's encoder.json + vocab.bpe ----------------------------------------------------------


def gpt2_byte_alphabet() -> dict[int, str]:
    """GPT-2's byte → character table (``bytes_to_unicode`` in its encoder.py): printable
    Latin-1 bytes stand for themselves, the other 68 bytes for U+0100 onwards, so every token is
    a printable string without spaces (the space byte is "Ġ", U+0120)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    alphabet = {byte: chr(byte) for byte in printable}
    for n, byte in enumerate(b for b in range(256) if b not in alphabet):
        alphabet[byte] = chr(256 + n)
    return alphabet


_TO_GPT2 = gpt2_byte_alphabet()
_FROM_GPT2 = {char: byte for byte, char in _TO_GPT2.items()}


def to_gpt2(token: bytes) -> str:
    return "".join(_TO_GPT2[byte] for byte in token)


def from_gpt2(text: str) -> bytes | None:
    """The bytes a GPT-2-alphabet string spells, or None if it has a character outside it."""
    try:
        return bytes(_FROM_GPT2[char] for char in text)
    except KeyError:
        return None


def gpt2_vocabulary(
    ranks: dict[bytes, int],
    special_tokens: dict[str, int],
    merges: dict[int, tuple[int, int]],
    file: str,
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2's two tables, shared by its files and Hugging Face's: every token (specials
    included) in GPT-2's byte alphabet → id, and the merges in id order as alphabet pairs.
    ValueError naming ``file`` for what they cannot hold: a token that is no merge of two of
    lower id, a special token spelled like an ordinary one."""
    tokens = {rank: token for token, rank in ranks.items()}
    vocab = {to_gpt2(token): rank for rank, token in sorted(tokens.items())}
    pairs = []
    for rank, token in sorted(tokens.items()):
        if len(token) == 1:
            continue
        if rank not in merges:
            raise ValueError(
                f"token {token!r} (id {rank}) is not a merge of two tokens of lower id; "
                f"{file} cannot express it"
            )
        left, right = merges[rank]
        pairs.append((to_gpt2(tokens[left]), to_gpt2(tokens[right])))
    for text, token_id in sorted(special_tokens.items(), key=lambda item: item[1]):
        if text in vocab:
            raise ValueError(
                f"the special token {text!r} is spelled like the ordinary token {vocab[text]} "
                f"in GPT-2's alphabet; {file} cannot hold both"
            )
        vocab[text] = token_id
    return vocab, pairs


def write_gpt2(
    encoder_path: Path,
    vocab_path: Path,
    ranks: dict[bytes, int],
    special_tokens: dict[str, int],
    merges: dict[int, tuple[int, int]],
) -> None:
    encoder, pairs = gpt2_vocabulary(ranks, special_tokens, merges, "encoder.json or vocab.bpe")
    lines = ["#version: 0.2", *(f"{left} {right}" for left, right in pairs)]
    write_atomic(encoder_path, json.dumps(encoder, ensure_ascii=False, indent=0) + "\n")
    write_atomic(vocab_path, "\n".join(lines) + "\n")


def read_gpt2(encoder_path: Path, vocab_path: Path) -> tuple[dict[bytes, int], dict[str, int]]:
    text = "\n".join(_read_lines(encoder_path))
    try:
        encoder = parse_json(text, str(encoder_path), DataError)
    except DataError as error:
        syntax = error.__context__  # the decoder's error: a syntax error is named by its line
        if isinstance(syntax, json.JSONDecodeError):
            raise DataError(f"{encoder_path}:{syntax.lineno}: not JSON ({syntax.msg})") from None
        raise
    if not isinstance(encoder, dict):
        raise DataError(f"{encoder_path}:1: expected a JSON object of token → id")
    for key, value in encoder.items():
        limit = len(encoder) + RESERVED_IDS
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < limit:
            line = _line_of_key(text, key)
            raise DataError(
                f"{encoder_path}:{line}: the id of {key!r} is {value!r}, not an integer in "
                f"0..{limit - 1} (ids are dense, with fewer than {RESERVED_IDS} gaps)"
            )

    ranks: dict[bytes, int] = {}
    for byte, char in _TO_GPT2.items():
        if char not in encoder:
            raise DataError(
                f"{encoder_path}: lacks the single byte 0x{byte:02x} (spelled {char!r}); a "
                "byte-level BPE needs all 256"
            )
        ranks[bytes([byte])] = encoder[char]

    previous_id = -1
    for lineno, line in enumerate(_read_lines(vocab_path), start=1):
        if not line or (lineno == 1 and line.startswith("#version")):
            continue
        where = f"{vocab_path}:{lineno}"
        fields = line.split(" ")
        parts = [from_gpt2(field) for field in fields]
        if len(fields) != 2 or not all(parts):
            raise DataError(
                f"{where}: expected two tokens in GPT-2's byte alphabet, got {line[:60]!r}"
            )
        for field, part in zip(fields, parts, strict=True):
            if part not in ranks:
                raise DataError(f"{where}: {field!r} is not a byte or a merge of an earlier line")
        merged = parts[0] + parts[1]  # type: ignore[operator]
        name = to_gpt2(merged)
        if merged in ranks:
            raise DataError(f"{where}: {name!r} is already made by an earlier line")
        if name not in encoder:
            raise DataError(f"{where}: the merge {name!r} is not in {encoder_path.name}")
        if encoder[name] <= previous_id:
            raise DataError(
                f"{where}: the id of {name!r} ({encoder[name]}) is not above the previous "
                "merge's: merges must be listed in the order of their ids (their priority)"
            )
        previous_id = ranks[merged] = encoder[name]

    ordinary = {to_gpt2(token) for token in ranks}
    special_tokens = {key: value for key, value in encoder.items() if key not in ordinary}
    return ranks, special_tokens


def _line_of_key(text: str, key: str) -> int | str:
    """The line of a JSON object's key in ``text`` ("?" if it is spelled in an unusual way)."""
    for spelling in (json.dumps(key, ensure_ascii=False), json.dumps(key)):
        position = text.find(spelling + ":")
        if position >= 0:
            return text.count("\n", 0, position) + 1
    return "?"


# ---- shared ------------------------------------------------------------------------------------


def _read_lines(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DataError(f"{path}:{line}: not UTF-8 (byte offset {error.start})") from None
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]
