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


# Text every split pattern must cut into chunks that rebuild it: the chunks are all BPE sees,
# so a pattern that leaves characters out (``""``, ``x``, ``\w+``) would drop them from every
# document without a word. Letters of three scripts, digits, punctuation, every kind of space.
PROBE = "Hello, World! It's 2024: naïve café — Съешь же 我们今天 ٣٤٥ x+y=z\n\ttab  two\r\n "


MAX_PATTERN_CHARS = 4096  # GPT-4's pattern has 150


def resolve_pattern(pattern: str) -> str:
    """The regex for a pattern name in ``PATTERNS``, or ``pattern`` itself if it is not a name.
    A custom pattern (of at most MAX_PATTERN_CHARS) must compile with the ``regex`` package,
    must not match the empty string,
    and its chunks of :data:`PROBE` must rebuild it (a pattern that drops text is refused)."""
    if not isinstance(pattern, str):
        raise DataError(f"the split pattern must be a string, got {type(pattern).__name__}")
    pattern = PATTERNS.get(pattern, pattern)
    if len(pattern) > MAX_PATTERN_CHARS:  # compiling a huge one can take minutes
        raise DataError(
            f"the split pattern has {len(pattern):,} characters, more than {MAX_PATTERN_CHARS:,}"
        )
    try:
        split = regex.compile(pattern)
    except (regex.error, RecursionError, OverflowError) as error:
        raise ValueError(
            f"the split pattern is neither a name in {sorted(PATTERNS)} nor a valid regex: {error}"
        ) from None
    try:
        chunks = split.findall(PROBE, timeout=1.0)
        empty = split.fullmatch("", timeout=1.0) is not None
    except TimeoutError:
        raise DataError(f"the split pattern {pattern!r:.80} is too slow on a short text") from None
    if empty:
        raise DataError(
            f"the split pattern {pattern!r:.80} matches the empty string: it must match at least "
            "one character (e.g. 'gpt4')"
        )
    if not all(isinstance(chunk, str) for chunk in chunks) or "".join(chunks) != PROBE:
        raise DataError(
            f"the split pattern {pattern!r:.80} does not cut text into chunks that rebuild it "
            f"(of {PROBE!r} it keeps {''.join(map(str, chunks))!r:.80}): the text it leaves out "
            "would be dropped from every document (a pattern with groups also cuts wrongly)"
        )
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
