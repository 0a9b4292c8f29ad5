"""Pre-tokenization: the split patterns that cut text into chunks before BPE, and the
special token every prepared corpus uses.

A pattern is a regex that cuts text into chunks (words with their leading space, numbers,
punctuation runs, whitespace); BPE merges never cross a chunk boundary.
"""

from __future__ import annotations

import regex

from ..errors import DataError

ENDOFTEXT = "<|endoftext|>"

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


def pretokenize(split: regex.Pattern, text: str) -> list[str]:
    """The chunks of ``text``: the one place training reads the corpus (a test counts calls)."""
    return split.findall(text)


def encode_utf8(text: str, what: str) -> bytes:
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
