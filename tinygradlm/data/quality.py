"""Document-quality signals (Gopher, Rae et al. 2021, appendix A1.1): what the document filters
of :mod:`.clean` measure, each a number a threshold is compared with."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
"""Gopher's stop-word rule: an English document uses at least two of these."""

BULLETS = ("•", "‣", "◦", "▪", "●", "○", "-", "*")
"""Characters that start a bullet-point line (after indentation)."""


_PUNCTUATION = "\"'`.,;:!?()[]{}<>-_*«»“”\u2018\u2019"
_ASCII_LETTER = re.compile(r"[A-Za-z]")
_ALPHANUMERIC = re.compile(r"[^\W_]")
_BULLET_LINE = re.compile(rf"^[ \t]*[{re.escape(''.join(BULLETS))}]", re.MULTILINE)
_ELLIPSIS_LINE = re.compile(r"(?:\.\.\.|…)[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class QualitySignals:
    """The measured values the document filters compare with their thresholds.

    Words are whitespace-separated tokens; lines are the non-blank lines; paragraphs are the
    non-blank blocks separated by blank lines. A duplicate is a line (paragraph) equal, after
    stripping, to an earlier one and has a letter or digit: ``duplicate_line_fraction`` counts
    them over all lines and ``duplicate_line_char_fraction`` is their characters over the
    document's characters (Gopher's definitions, except that repeated layout lines such as table
    rules do not count).
    """

    words: int
    mean_word_length: float
    hash_ratio: float
    ellipsis_ratio: float
    bullet_line_fraction: float
    ellipsis_line_fraction: float
    alpha_word_fraction: float
    stop_words: int
    duplicate_line_fraction: float
    duplicate_line_char_fraction: float
    duplicate_paragraph_fraction: float
    duplicate_paragraph_char_fraction: float
    lorem_ipsum: bool


def _duplicates(parts: list[str], total_chars: int) -> tuple[float, float]:
    """(fraction of ``parts`` equal to an earlier part, their characters / ``total_chars``).

    A part without a letter or digit (a table rule ``+----+``, a ``****`` underline) is layout,
    not repeated content, and never counts as a duplicate.
    """
    seen: set[str] = set()
    count = chars = 0
    for part in parts:
        if part in seen and _ALPHANUMERIC.search(part):
            count += 1
            chars += len(part)
        else:
            seen.add(part)
    return count / max(len(parts), 1), chars / max(total_chars, 1)


def quality_signals(text: str, stop_word_list: Iterable[str] = GOPHER_STOP_WORDS) -> QualitySignals:
    """Measure ``text`` for the document filters (see :class:`QualitySignals`)."""
    counts = Counter(text.split())
    n_words = sum(counts.values())
    per_word = max(n_words, 1)
    stop = {w.lower() for w in stop_word_list}
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if line]
    per_line = max(len(lines), 1)
    paragraphs = [p.strip() for p in re.split(r"\n[ \t]*\n", text)]
    paragraphs = [p for p in paragraphs if p]
    return QualitySignals(
        words=n_words,
        mean_word_length=sum(len(w) * n for w, n in counts.items()) / per_word,
        hash_ratio=text.count("#") / per_word,
        ellipsis_ratio=(text.count("...") + text.count("…")) / per_word,
        bullet_line_fraction=len(_BULLET_LINE.findall(text)) / per_line,
        ellipsis_line_fraction=len(_ELLIPSIS_LINE.findall(text)) / per_line,
        alpha_word_fraction=sum(n for w, n in counts.items() if _has_alpha(w)) / per_word,
        stop_words=len({w.lower().strip(_PUNCTUATION) for w in counts} & stop),
        duplicate_line_fraction=(dup_lines := _duplicates(lines, len(text)))[0],
        duplicate_line_char_fraction=dup_lines[1],
        duplicate_paragraph_fraction=(dup_paragraphs := _duplicates(paragraphs, len(text)))[0],
        duplicate_paragraph_char_fraction=dup_paragraphs[1],
        lorem_ipsum="lorem ipsum" in text.lower(),
    )


def _has_alpha(word: str) -> bool:
    """Whether ``word`` has an alphabetic character (the regex is the fast path for ASCII)."""
    if _ASCII_LETTER.search(word):
        return True
    return not word.isascii() and any(ch.isalpha() for ch in word)
