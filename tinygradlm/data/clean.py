"""Cleaning: normalise each document's text, drop boilerplate lines, drop low-quality documents.

A document goes through three steps, and every removal is counted in the :class:`Report`:

1. **Normalisation** (rule ``normalise``; changes characters, never drops a document), in this
   order, each switchable in :class:`CleanConfig`:

   - newlines: ``\\r\\n``, ``\\r``, ``\\v``, ``\\f``, NEL, U+2028, U+2029 become ``\\n``;
   - control characters (Unicode category Cc except ``\\n`` and ``\\t``, plus the byte-order mark
     U+FEFF) are deleted; this runs *before* NFC, because deleting a control character between a
     letter and a combining accent would otherwise leave a text that is no longer NFC;
   - Unicode NFC (composed and decomposed ``é`` become the same code point);
   - Unicode space separators (category Zs: no-break space, em space, ideographic space...)
     become an ASCII space;
   - runs of spaces inside a line become one space (leading indentation is kept: code and verse
     are indented on purpose);
   - trailing spaces and tabs are stripped from every line;
   - at most ``max_blank_lines`` consecutive blank lines are kept; blank lines at the start and
     whitespace at the end of the document are dropped.

2. **Line filters** (C4-style, Raffel et al. 2020): a non-blank line that matches a rule is removed
   and counted under that rule, in lines, characters and words. Blank lines are left to
   normalisation, which tidies the text again after lines are removed.

3. **Document filters** (Gopher, Rae et al. 2021, appendix A1.1): the first rule the cleaned
   document breaks removes it, and the report records the measured value. A document left with
   no text at all is removed under ``empty``.

Cleaning a text twice gives the same result as cleaning it once (every normalisation step is
idempotent and every line rule looks at one line only); a property test checks this.

The measurements the document filters compare with their thresholds are in :mod:`.quality`.
The rules, their defaults and the reason for each default are in ``docs/data.md``. The module is
a little over 400 lines because the config, the three steps and the stage that counts them are
one pipeline whose rules refer to each other by name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import DataError
from ..schema import Problem, Rule, check_table, problems_message
from .documents import Document
from .quality import GOPHER_STOP_WORDS, quality_signals
from .report import Example, Report, Totals

__all__ = [
    "DOCUMENT_RULES",
    "LINE_RULES",
    "CleanConfig",
    "clean_documents",
    "clean_text",
    "normalise",
]

C4_POLICY_PHRASES = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
"""C4 drops lines containing these (web cookie and policy banners), and lines with
``javascript`` ("JavaScript must be enabled")."""

LINE_RULES = ("boilerplate_line", "long_word_line", "terminal_punctuation_line", "short_line")
"""Line filters in the order they are tried; a line is counted under the first that removes it."""

DOCUMENT_RULES = (
    "lorem_ipsum",
    "word_count",
    "mean_word_length",
    "symbol_ratio",
    "bullet_lines",
    "ellipsis_lines",
    "alpha_words",
    "stop_words",
    "duplicate_lines",
    "duplicate_line_chars",
    "duplicate_paragraphs",
    "duplicate_paragraph_chars",
)
"""Document filters in the order they are tried; a document is counted under the first it
breaks. Each name is also the :class:`CleanConfig` flag that switches the rule on or off."""


@dataclass
class CleanConfig:
    """Every switch and threshold of cleaning. A rule's flag has the rule's name; ``False``
    switches the rule off. Defaults follow Gopher and C4 where that keeps real corpora intact
    (see ``docs/data.md`` for each default and why).

    >>> CleanConfig(stop_words=False, min_words=20).min_words
    20
    """

    # -- normalisation ---------------------------------------------------------------------------
    normalise_newlines: bool = True
    remove_control: bool = True
    nfc: bool = True
    unicode_spaces: bool = True
    collapse_spaces: bool = True
    strip_trailing: bool = True
    max_blank_lines: int | None = 2
    """Consecutive blank lines kept (``None``: keep all)."""

    # -- line filters (C4) -----------------------------------------------------------------------
    boilerplate_line: bool = True
    boilerplate_phrases: tuple[str, ...] = ("javascript", *C4_POLICY_PHRASES)
    """A line containing one of these (case-insensitive) is removed."""
    long_word_line: bool = True
    max_word_chars: int = 1000
    """A line with a whitespace-separated token longer than this is removed (C4's 1000)."""
    terminal_punctuation_line: bool = False
    terminal_punctuation: tuple[str, ...] = (".", "!", "?", '"')
    """C4 keeps only lines ending in one of these (and not in ``...``). Off: it guts verse and
    code."""
    short_line: bool = False
    min_line_words: int = 5
    """C4 removes lines of fewer than 5 words. Off: verse and dialogue lines are short."""

    # -- document filters (Gopher) ---------------------------------------------------------------
    lorem_ipsum: bool = True
    word_count: bool = True
    min_words: int = 50
    max_words: int = 100_000
    mean_word_length: bool = True
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    symbol_ratio: bool = True
    max_symbol_ratio: float = 0.1
    """Largest allowed ``#`` count per word and ellipsis (``...``, ``…``) count per word."""
    bullet_lines: bool = True
    max_bullet_line_fraction: float = 0.9
    ellipsis_lines: bool = True
    max_ellipsis_line_fraction: float = 0.3
    alpha_words: bool = True
    min_alpha_word_fraction: float = 0.6
    stop_words: bool = True
    min_stop_words: int = 2
    stop_word_list: tuple[str, ...] = GOPHER_STOP_WORDS
    """``min_stop_words`` distinct words of this list must occur; give your language's list."""
    duplicate_lines: bool = True
    max_duplicate_line_fraction: float = 0.4
    duplicate_line_chars: bool = True
    max_duplicate_line_char_fraction: float = 0.2
    duplicate_paragraphs: bool = True
    max_duplicate_paragraph_fraction: float = 0.3
    duplicate_paragraph_chars: bool = True
    max_duplicate_paragraph_char_fraction: float = 0.2

    max_examples: int = field(default=3)
    """Examples kept per rule in the report."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`DataError` naming every field whose value is out of range or of the
        wrong type (the rules: :func:`clean_rules`)."""
        problems = check_values(asdict(self))
        if problems:
            raise DataError(problems_message(problems, None))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CleanConfig:
        """Build a config from plain data (a TOML table); unknown keys raise :class:`DataError`
        listing the valid ones, and lists become tuples."""
        problems = check_table(data, clean_rules(), "CleanConfig.")
        if problems:
            raise DataError(problems_message(problems, None))
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (tuples as lists), the inverse of :meth:`from_dict`."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def clean_rules() -> dict[str, Rule]:
    """What each setting of :class:`CleanConfig` may be, from its declared type: a flag is true
    or false, a list is of strings, a count an integer ≥ 0 (``max_blank_lines`` may be absent),
    a threshold a number ≥ 0, and a ``*_fraction`` a number in [0, 1]."""
    rules = {}
    for f in fields(CleanConfig):
        if f.type == "bool":
            rules[f.name] = Rule("bool")
        elif f.type.startswith("tuple"):
            rules[f.name] = Rule("str_list")
        elif f.type == "int":
            rules[f.name] = Rule("int", 0)
        elif f.type == "int | None":
            rules[f.name] = Rule("optional_int", 0)
        else:
            rules[f.name] = Rule("number", 0, 1 if f.name.endswith("fraction") else None)
    return rules


_DEFAULTS = {f.name: f.default for f in fields(CleanConfig)}


def check_values(values: Any, prefix: str = "CleanConfig.") -> list[Problem]:
    """Every problem of a table of cleaning settings: each value against its rule, then the
    bounds that must not cross (``min_words`` ≤ ``max_words``, ...)."""
    problems = check_table(values, clean_rules(), prefix)
    if problems or not isinstance(values, Mapping):
        return problems
    for low, high in (
        ("min_words", "max_words"),
        ("min_mean_word_length", "max_mean_word_length"),
    ):
        low_value = values.get(low, _DEFAULTS[low])
        if low_value > values.get(high, _DEFAULTS[high]):
            problems.append(Problem(prefix + low, f"{prefix}{low} must not exceed {prefix}{high}"))
    return problems


# -- step 1: normalisation -----------------------------------------------------------------------

_NEWLINES = re.compile(r"\r\n?|[\v\f\x85\u2028\u2029]")
_ANY_NEWLINE = re.compile(r"[\r\v\f\x85\u2028\u2029]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff]")
_UNICODE_SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
_INNER_SPACES = re.compile(r"(?<=[^ \t\n]) {2,}")
_TRAILING = re.compile(r"[ \t]+$", re.MULTILINE)
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\n)+")


def normalise(text: str, config: CleanConfig | None = None) -> str:
    """Apply the normalisation steps of ``config`` (all on by default) to ``text``.

    >>> normalise("Cafe\\u0301  au lait  \\r\\n\\r\\n\\r\\n\\r\\n\\x07ok\\t")
    'Café au lait\\n\\n\\nok'
    """
    c = config or CleanConfig()
    # each step first looks for work with a cheap search: most texts need few of them
    if c.normalise_newlines and _ANY_NEWLINE.search(text):
        text = _NEWLINES.sub("\n", text)
    if c.remove_control and _CONTROL.search(text):
        text = _CONTROL.sub("", text)
    if c.nfc and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    if c.unicode_spaces and _UNICODE_SPACES.search(text):
        text = _UNICODE_SPACES.sub(" ", text)
    if c.collapse_spaces and "  " in text:
        text = _INNER_SPACES.sub(" ", text)
    if c.strip_trailing:
        text = _TRAILING.sub("", text)
    return _tidy(text, c)


def _tidy(text: str, c: CleanConfig) -> str:
    """Limit runs of blank lines, drop leading blank lines and trailing whitespace (run again
    after line filters remove lines)."""
    if c.max_blank_lines is not None:
        kept = c.max_blank_lines + 1
        text = re.sub(rf"\n(?:[ \t]*\n){{{kept},}}", "\n" * kept, text)
    return _LEADING_BLANK_LINES.sub("", text).rstrip()


# -- step 2: line filters ------------------------------------------------------------------------


def _line_tests(c: CleanConfig) -> dict[str, Callable[[str], bool]]:
    """For each enabled line rule, a test that says whether it removes a (non-blank) line."""
    tests: dict[str, Callable[[str], bool]] = {}
    if c.boilerplate_line and c.boilerplate_phrases:
        phrases = tuple(p.lower() for p in c.boilerplate_phrases)
        tests["boilerplate_line"] = lambda line: any(p in line.lower() for p in phrases)
    if c.long_word_line:
        long_word = re.compile(rf"[^\s]{{{c.max_word_chars + 1},}}")
        tests["long_word_line"] = lambda line: long_word.search(line) is not None
    if c.terminal_punctuation_line:
        ends, ellipses = tuple(c.terminal_punctuation), ("...", "…")
        tests["terminal_punctuation_line"] = lambda line: (
            not line.rstrip().endswith(ends) or line.rstrip().endswith(ellipses)
        )
    if c.short_line:
        tests["short_line"] = lambda line: len(line.split()) < c.min_line_words
    return tests


def _filter_lines(text: str, c: CleanConfig) -> tuple[str, dict[str, list[str]]]:
    """Remove the non-blank lines that a line rule matches (the first matching rule in
    ``LINE_RULES`` order counts the line); return the tidied text and the removed lines by
    rule."""
    tests = _line_tests(c)
    # skip a rule line by line when one cheap look at the whole text shows it matches no line
    if "boilerplate_line" in tests and not tests["boilerplate_line"](text):
        del tests["boilerplate_line"]
    if "long_word_line" in tests and max(map(len, text.split("\n"))) <= c.max_word_chars:
        del tests["long_word_line"]
    if not tests:
        return text, {}
    kept: list[str] = []
    removed: dict[str, list[str]] = {}
    for line in text.split("\n"):
        rule = next((r for r, test in tests.items() if test(line)), None) if line.strip() else None
        if rule is None:
            kept.append(line)
        else:
            removed.setdefault(rule, []).append(line)
    if not removed:
        return text, removed
    return _tidy("\n".join(kept), c), removed


def clean_text(text: str, config: CleanConfig | None = None) -> str:
    """Normalise ``text`` and remove the lines a line filter matches (no document filters).

    Idempotent: ``clean_text(clean_text(x)) == clean_text(x)``.
    """
    c = config or CleanConfig()
    return _filter_lines(normalise(text, c), c)[0]


# -- step 3: document filters --------------------------------------------------------------------


def _failed_rule(text: str, c: CleanConfig) -> tuple[str, str] | None:
    """The first document rule (in ``DOCUMENT_RULES`` order) that ``text`` breaks, with the
    measured value, or None if it passes them all."""
    s = quality_signals(text, c.stop_word_list)
    symbol, symbol_name = max((s.hash_ratio, "'#'"), (s.ellipsis_ratio, "ellipsis"))
    checks = {
        "lorem_ipsum": (s.lorem_ipsum, "contains 'lorem ipsum'"),
        "word_count": (
            not c.min_words <= s.words <= c.max_words,
            f"{s.words} words, outside [{c.min_words}, {c.max_words}]",
        ),
        "mean_word_length": (
            not c.min_mean_word_length <= s.mean_word_length <= c.max_mean_word_length,
            f"mean word length {s.mean_word_length:.2f}, outside "
            f"[{c.min_mean_word_length}, {c.max_mean_word_length}]",
        ),
        "symbol_ratio": (
            symbol > c.max_symbol_ratio,
            f"{symbol_name} per word {symbol:.3f} > {c.max_symbol_ratio}",
        ),
        "bullet_lines": (
            s.bullet_line_fraction > c.max_bullet_line_fraction,
            f"bullet lines {s.bullet_line_fraction:.2f} > {c.max_bullet_line_fraction}",
        ),
        "ellipsis_lines": (
            s.ellipsis_line_fraction > c.max_ellipsis_line_fraction,
            f"lines ending in an ellipsis {s.ellipsis_line_fraction:.2f} > "
            f"{c.max_ellipsis_line_fraction}",
        ),
        "alpha_words": (
            s.alpha_word_fraction < c.min_alpha_word_fraction,
            f"words with a letter {s.alpha_word_fraction:.2f} < {c.min_alpha_word_fraction}",
        ),
        "stop_words": (
            s.stop_words < c.min_stop_words,
            f"{s.stop_words} distinct stop words < {c.min_stop_words}",
        ),
        "duplicate_lines": (
            s.duplicate_line_fraction > c.max_duplicate_line_fraction,
            f"duplicate lines {s.duplicate_line_fraction:.2f} > {c.max_duplicate_line_fraction}",
        ),
        "duplicate_line_chars": (
            s.duplicate_line_char_fraction > c.max_duplicate_line_char_fraction,
            f"characters in duplicate lines {s.duplicate_line_char_fraction:.2f} > "
            f"{c.max_duplicate_line_char_fraction}",
        ),
        "duplicate_paragraphs": (
            s.duplicate_paragraph_fraction > c.max_duplicate_paragraph_fraction,
            f"duplicate paragraphs {s.duplicate_paragraph_fraction:.2f} > "
            f"{c.max_duplicate_paragraph_fraction}",
        ),
        "duplicate_paragraph_chars": (
            s.duplicate_paragraph_char_fraction > c.max_duplicate_paragraph_char_fraction,
            f"characters in duplicate paragraphs {s.duplicate_paragraph_char_fraction:.2f} > "
            f"{c.max_duplicate_paragraph_char_fraction}",
        ),
    }
    for rule in DOCUMENT_RULES:
        failed, detail = checks[rule]
        if failed and getattr(c, rule):
            return rule, detail
    return None


# -- the whole stage -----------------------------------------------------------------------------


def _line_count(text: str) -> int:
    return text.count("\n") + 1 if text else 0


def clean_documents(
    docs: Iterable[Document],
    config: CleanConfig | None = None,
    *,
    on_remove: Callable[[str, Document], None] | None = None,
) -> tuple[list[Document], Report]:
    """Normalise, line-filter and quality-filter ``docs``; return the kept documents (in input
    order, with cleaned text) and the report of everything removed.

    ``on_remove(rule, removed)``, if given, sees each removal as it is counted: a removed line
    as a Document of the line, a removed document with its cleaned text (so ``prepare`` can
    count the tokens each rule removed). ``normalise`` removes no line or document and is not
    reported there.

    Counting, per document (so the report balances exactly):

    - a line rule counts each removed line's characters and words (not its newline);
    - ``normalise`` counts the rest of the difference between the original and the cleaned
      text: deleted control characters, whitespace, newlines of removed lines, blank lines;
    - a document rule, or ``empty``, counts the cleaned text of the document it removes.
    """
    c = config or CleanConfig()
    c.validate()
    report = Report(max_examples=c.max_examples)
    kept: list[Document] = []
    for doc in docs:
        report.before = report.before + Totals.of([doc.text])
        normalised = normalise(doc.text, c)
        cleaned, removed_lines = _filter_lines(normalised, c)
        line_chars = line_words = line_count = 0
        for rule, lines in removed_lines.items():
            report.remove_lines(rule, doc.source, lines)
            if on_remove is not None:
                for line in lines:
                    on_remove(rule, Document(line, doc.source))
            line_chars += sum(len(line) for line in lines)
            line_words += sum(len(line.split()) for line in lines)
            line_count += len(lines)
        if cleaned != doc.text:
            newline_text = _NEWLINES.sub("\n", doc.text) if c.normalise_newlines else doc.text
            characters = len(doc.text) - len(cleaned) - line_chars
            report.count(
                "normalise",
                lines=_line_count(newline_text) - _line_count(cleaned) - line_count,
                characters=characters,
                words=len(doc.text.split()) - len(cleaned.split()) - line_words,
                example=Example(doc.source, "", f"{characters} characters removed"),
            )
        if not cleaned.strip():
            report.remove_document("empty", doc.source, cleaned, detail="no text left")
            if on_remove is not None:
                on_remove("empty", Document(cleaned, doc.source))
            continue
        failed = _failed_rule(cleaned, c)
        if failed is not None:
            rule, detail = failed
            report.remove_document(rule, doc.source, cleaned, detail=detail)
            if on_remove is not None:
                on_remove(rule, Document(cleaned, doc.source))
            continue
        kept.append(Document(cleaned, doc.source))
    return kept, report.finish(d.text for d in kept)
