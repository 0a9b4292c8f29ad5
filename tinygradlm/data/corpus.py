"""What a prepared corpus holds: sizes, token statistics and the character-script mix.

:class:`CorpusStats` accumulates, one document at a time, the statistics of a token stream as
``prepare`` writes it (each document after an end-of-text delimiter), so nothing is re-encoded::

    documents, characters, bytes (UTF-8)       of the document texts
    tokens                                     as in the shards: text tokens + one delimiter each
    text_tokens, delimiters                    the two parts of ``tokens``
    bytes_per_token, characters_per_token      per text token (delimiters left out)
    length_histogram                           documents by length in text tokens, log2 bins
    character_classes                          letters, digits, whitespace, punctuation, other
    scripts                                    letters per script (Latin, Cyrillic, Han, …)
    top_tokens                                 the most frequent ids of the stream, delimiter too

:func:`corpus_stats` is the one-shot form; accumulators of disjoint parts :meth:`merge` into the
statistics of the whole (splits into a source, sources into the overall corpus). :func:`summary`
is the table ``prepare`` and ``tinygradlm report DIR`` print;
:func:`tinygradlm.monitor.plot_report` draws the report as PNGs.
"""

from __future__ import annotations

import functools
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import regex

from ..errors import DataError
from ..parse import parse_json
from .report_schema import check_report

__all__ = [
    "HISTOGRAM_BINS",
    "SCRIPTS",
    "CorpusStats",
    "TextCounts",
    "corpus_stats",
    "load_report",
    "summary",
]

HISTOGRAM_BINS = 25
"""Bins of the document-length histogram: bin 0 holds empty documents, bin i ≥ 1 lengths in
[2**(i-1), 2**i), and the last bin everything from 2**23 tokens up."""

BIN_STARTS = [0] + [2**i for i in range(HISTOGRAM_BINS - 1)]

SCRIPTS = (
    "Latin",
    "Cyrillic",
    "Greek",
    "Arabic",
    "Hebrew",
    "Devanagari",
    "Han",
    "Hiragana",
    "Katakana",
    "Hangul",
    "Thai",
)
"""The scripts letters are counted under (Unicode's Script property); any other is ``other``."""

CLASSES = ("letters", "digits", "whitespace", "punctuation", "other")

_SCRIPT = regex.compile("|".join(f"(?P<{s}>\\p{{Script={s}}})" for s in SCRIPTS))
_FLUSH_SIZE = 1 << 20  # characters and tokens of documents buffered before they are counted


@functools.lru_cache(maxsize=65536)
def _classify(char: str) -> tuple[str, str | None]:
    """(class, script) of one character; script is None for a non-letter."""
    if char.isalpha():
        match = _SCRIPT.match(char)
        return "letters", (match.lastgroup if match else "other")
    if char.isspace():
        return "whitespace", None
    category = unicodedata.category(char)
    if category.startswith("N"):
        return "digits", None
    if category.startswith("P"):
        return "punctuation", None
    return "other", None


@dataclass(eq=False)
class TextCounts:
    """The statistics of a batch of documents that take time in proportion to its text: how
    often each character (code point) and each token id occurs, and the UTF-8 bytes. ``prepare``
    counts them in the worker process that encoded the batch (:mod:`.encoding`), so that the
    process writing the shards does per-document work only; :class:`CorpusStats` counts the
    documents given to :meth:`~CorpusStats.add` the same way, a batch at a time, with NumPy
    rather than a dict update per character (which took as long as encoding the text)."""

    code_points: np.ndarray  # the distinct code points, ascending
    char_counts: np.ndarray  # how often each occurs
    token_ids: np.ndarray  # the distinct ids, ascending
    token_counts: np.ndarray
    bytes: int

    @classmethod
    def of(cls, texts: Sequence[str], token_arrays: Sequence[np.ndarray]) -> TextCounts:
        """The counts of ``texts`` and their ids (one array per text)."""
        code_points = "".join(texts).encode("utf-32-le", errors="surrogatepass")
        ids = np.concatenate(token_arrays) if len(token_arrays) else np.zeros(0, np.uint32)
        return cls(
            *_occurrences(np.frombuffer(code_points, dtype=np.uint32)),
            *_occurrences(ids),
            sum(len(text.encode("utf-8", errors="surrogatepass")) for text in texts),
        )


def _occurrences(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct values, ascending; how often each occurs) of non-negative integers."""
    counts = np.bincount(values)
    present = np.flatnonzero(counts)
    return present, counts[present]


class CorpusStats:
    """An accumulator of corpus statistics over documents and their tokens.

    ``vocab_size`` sizes the token counts; ``delimiter`` (the end-of-text id, or None) is counted
    once per document, as the shards store it before each document. ``top_k`` is how many of the
    most frequent tokens :meth:`to_dict` lists; ``token_text`` maps an id to its text for them
    (a tokenizer's bytes, invalid UTF-8 shown as ``\\x..`` escapes).
    """

    def __init__(self, tokenizer: Any, *, delimiter: int | None = None, top_k: int = 20) -> None:
        self.tokenizer = tokenizer
        self.delimiter = delimiter
        self.top_k = top_k
        self.documents = 0
        self.characters = 0
        self.text_tokens = 0
        self.histogram = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
        self._bytes = 0
        self._chars: Counter[str] = Counter()
        self._counts = np.zeros(tokenizer.vocab_size, dtype=np.int64)
        self._pending: list[tuple[str, np.ndarray]] = []  # documents not yet in the counts
        self._n_pending = 0

    def add(self, text: str, tokens: np.ndarray, *, counted: bool = False) -> None:
        """Count one document: its text and its tokens (without the delimiter). ``counted``: its
        characters, bytes and token ids are counted already, in its batch's :class:`TextCounts`
        (:meth:`add_counts`); only the per-document figures remain."""
        tokens = np.asarray(tokens)
        self.documents += 1
        self.characters += len(text)
        self.text_tokens += int(tokens.size)
        self.histogram[min(int(tokens.size).bit_length(), HISTOGRAM_BINS - 1)] += 1
        if self.delimiter is not None:
            self._counts[self.delimiter] += 1
        if not counted:
            self._pending.append((text, tokens))
            self._n_pending += len(text) + tokens.size
            if self._n_pending >= _FLUSH_SIZE:
                self._flush()

    def add_counts(self, counts: TextCounts) -> None:
        """Add a batch's characters, bytes and token ids, counted where it was encoded (its
        documents are then added with ``counted=True``)."""
        self._bytes += counts.bytes
        chars = map(chr, counts.code_points.tolist())
        self._chars.update(dict(zip(chars, counts.char_counts.tolist(), strict=True)))
        known = counts.token_ids < self._counts.size
        self._counts[counts.token_ids[known]] += counts.token_counts[known]

    def _flush(self) -> None:
        if self._pending:
            texts, arrays = zip(*self._pending, strict=True)
            self.add_counts(TextCounts.of(texts, arrays))
            self._pending, self._n_pending = [], 0

    @property
    def bytes(self) -> int:
        """The documents' text in UTF-8."""
        self._flush()
        return self._bytes

    @property
    def chars(self) -> Counter[str]:
        """How often each character occurs in the documents' text."""
        self._flush()
        return self._chars

    @property
    def token_counts(self) -> np.ndarray:
        """How often each id occurs in the stream (delimiters included), shape (vocab_size,)."""
        self._flush()
        return self._counts

    @property
    def tokens(self) -> int:
        """Tokens as the shards hold them: text tokens plus one delimiter per document."""
        return self.text_tokens + (self.documents if self.delimiter is not None else 0)

    @classmethod
    def merge(cls, parts: Sequence[CorpusStats]) -> CorpusStats:
        """The statistics of disjoint parts taken together (same tokenizer and delimiter)."""
        if not parts:
            raise ValueError("merge needs at least one CorpusStats")
        first = parts[0]
        total = cls(first.tokenizer, delimiter=first.delimiter, top_k=first.top_k)
        for part in parts:
            total.documents += part.documents
            total.characters += part.characters
            total._bytes += part.bytes
            total.text_tokens += part.text_tokens
            total.histogram += part.histogram
            total._chars.update(part.chars)
            total._counts += part.token_counts
        return total

    def _token_text(self, token: int) -> str:
        return self.tokenizer.token_bytes(token).decode("utf-8", errors="backslashreplace")

    def to_dict(self) -> dict[str, Any]:
        """The statistics as JSON-able data (see the module docstring)."""
        classes = dict.fromkeys(CLASSES, 0)
        scripts: Counter[str] = Counter()
        for char, n in sorted(self.chars.items()):  # the same order however they were batched
            cls_, script = _classify(char)
            classes[cls_] += n
            if script is not None:
                scripts[script] += n
        letters = classes["letters"]
        counts = self.token_counts
        tokens = int(counts.sum())
        order = np.argsort(-counts, kind="stable")[: self.top_k]
        top = [
            {
                "id": int(i),
                "text": self._token_text(int(i)),
                "count": int(counts[i]),
                "share": float(counts[i]) / tokens,
            }
            for i in order
            if counts[i] > 0
        ]
        return {
            "documents": self.documents,
            "characters": self.characters,
            "bytes": self.bytes,
            "tokens": self.tokens,
            "text_tokens": self.text_tokens,
            "delimiters": self.tokens - self.text_tokens,
            "bytes_per_token": self.bytes / max(self.text_tokens, 1),
            "characters_per_token": self.characters / max(self.text_tokens, 1),
            "length_histogram": {
                "unit": "text tokens per document",
                "bin_starts": list(BIN_STARTS),
                "counts": [int(c) for c in self.histogram],
            },
            "character_classes": classes,
            "scripts": {
                name: {"letters": n, "share": n / letters} for name, n in scripts.most_common()
            },
            "top_tokens": top,
        }


def corpus_stats(
    documents: Iterable[Any],
    token_arrays: Iterable[np.ndarray],
    tokenizer: Any,
    *,
    delimiter: int | None = None,
    top_k: int = 20,
) -> dict[str, Any]:
    """The statistics of ``documents`` (strings, or objects with a ``text``) and their token
    arrays, one per document, as JSON-able data. With ``delimiter`` each document counts as
    preceded by that token, as ``prepare``'s shards store it."""
    stats = CorpusStats(tokenizer, delimiter=delimiter, top_k=top_k)
    docs, arrays = list(documents), list(token_arrays)
    if len(docs) != len(arrays):
        raise ValueError(f"{len(docs)} documents but {len(arrays)} token arrays")
    for doc, tokens in zip(docs, arrays, strict=True):
        stats.add(doc if isinstance(doc, str) else doc.text, tokens)
    return stats.to_dict()


# --------------------------------------------------------------------------------------------
# reading and printing a report
# --------------------------------------------------------------------------------------------


def load_report(directory: str | Path) -> dict[str, Any]:
    """``directory/report.json`` as written by ``prepare``; a DataError naming the file if it
    is missing, not UTF-8 JSON, or lacks the corpus statistics, and naming the field if one
    has the wrong type (``report_schema.REPORT``: what printing and plotting it read)."""
    path = Path(directory) / "report.json"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"{path}: no such file (run `tinygradlm prepare --out {directory}`)"
        ) from None
    except OSError as e:
        raise DataError(f"{path}: cannot read it: {e.strerror or e}") from None
    report = parse_json(data, str(path), DataError)
    if not isinstance(report, dict) or not isinstance(report.get("sources"), dict):
        raise DataError(
            f"{path}: no corpus statistics ('sources'/'overall'): not a prepare report, or "
            f"written by an older version (prepare again)"
        )
    if not isinstance(report.get("overall"), dict):
        raise DataError(f"{path}: no 'overall' corpus statistics")
    check_report(report, str(path))
    return report


def _bin_label(starts: Sequence[int], i: int) -> str:
    if i == 0:
        return "0"
    if i == len(starts) - 1:
        return f"{starts[i]:,}+"
    low, high = starts[i], starts[i + 1] - 1
    return f"{low:,}" if low == high else f"{low:,}-{high:,}"


def _histogram_lines(stats: Mapping[str, Any], width: int = 40) -> list[str]:
    hist = stats["length_histogram"]
    counts, starts = hist["counts"], hist["bin_starts"]
    used = [i for i, c in enumerate(counts) if c]
    if not used:
        return ["  (no documents)"]
    peak = max(counts)
    rows = []
    for i in range(used[0], used[-1] + 1):
        bar = "█" * round(width * counts[i] / peak)
        rows.append(f"  {_bin_label(starts, i):>17}  {counts[i]:>9,}  {bar}")
    return rows


def _details(name: str, stats: Mapping[str, Any]) -> list[str]:
    rows = [f"{name}: document lengths (text tokens per document)"]
    rows += _histogram_lines(stats)
    classes = stats["character_classes"]
    total = max(sum(classes.values()), 1)
    rows.append(
        f"{name}: characters: "
        + ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in classes.items() if v)
    )
    scripts = stats["scripts"]
    rows.append(
        f"{name}: scripts (share of letters): "
        + (", ".join(f"{k} {100 * v['share']:.1f}%" for k, v in scripts.items()) or "(none)")
    )
    rows.append(f"{name}: most frequent tokens (of {stats['tokens']:,}):")
    for t in stats["top_tokens"]:
        rows.append(
            f"  {t['id']:>7}  {t['text']!r:<24} {t['count']:>11,}  {100 * t['share']:5.2f}%"
        )
    return rows


def _sampling_rate(c: Mapping[str, Any]) -> str:
    share = c.get("token_share", 1.0)
    return f"{c.get('weight', 1.0) / share:.2f}x" if share > 0 else "-"


def _removed_cell(column: Mapping[str, Any], rule: str) -> str:
    """What ``rule`` removed from one column: documents and tokens (characters in a report
    without token counts)."""
    r = column["removed"].get(rule)
    if r is None:
        return ""
    if "tokens" in r:
        return f"{r['documents']:,} d, {r['tokens']:,} tok"
    return f"{r['documents']:,} d, {r['characters']:,} ch"


def summary(report: Mapping[str, Any]) -> str:
    """The terminal table of a prepare report: per source and overall, the requested weight
    against the share of training tokens obtained, the tokenizer sample, documents and tokens
    read, removed by each rule and kept, tokens per split and bytes per token; then the length
    histogram, character and script mix and top tokens (overall, and per source when there are
    several). Reports written before token counts existed show characters in their place."""
    sources: Mapping[str, Any] = report["sources"]
    columns = [*sources.items(), ("overall", report["overall"])]
    width = max(26, *(len(name) + 2 for name, _ in columns))
    label_width = 32

    def line(label: str, cells: Iterable[str]) -> str:
        return f"{label:<{label_width}}" + "".join(f"{c:>{width}}" for c in cells)

    rows = [line("", [name for name, _ in columns])]
    rows.append("-" * len(rows[0]))

    def row(label: str, cell: Callable[[Mapping[str, Any]], str]) -> None:
        rows.append(line(label, [cell(c) for _, c in columns]))

    def tokens(c: Mapping[str, Any], key: str) -> str:
        return f"{c['tokens'][key]:,}" if "tokens" in c else ""

    row("weight requested", lambda c: f"{c.get('weight', 1.0):.3f}")
    row("share of train tokens", lambda c: f"{c.get('token_share', 1.0):.3f}")
    # > 1: training draws the source more often than its size alone would (it repeats sooner)
    row("sampling rate (weight ÷ share)", _sampling_rate)
    if all("tokenizer_sample_chars" in c for _, c in columns):
        row("tokenizer sample (characters)", lambda c: f"{c['tokenizer_sample_chars']:,}")
    rows += _skipped_rows(columns, line)
    row("documents read", lambda c: f"{c['before']['documents']:,}")
    row("tokens read (before cleaning)", lambda c: tokens(c, "before"))
    rules: list[str] = []
    for _, c in columns:
        rules += [r for r in c["removed"] if r not in rules]
    for rule in rules:
        rows.append(line(f"  - {rule}", [_removed_cell(c, rule) for _, c in columns]))
    row("documents after cleaning", lambda c: f"{c['after_cleaning']['documents']:,}")
    row("tokens after cleaning", lambda c: tokens(c, "after_cleaning"))
    row("documents kept (after dedup)", lambda c: f"{c['after']['documents']:,}")
    row("tokens kept (text, in shards)", lambda c: tokens(c, "after"))
    row("characters read", lambda c: f"{c['before']['characters']:,}")
    row("characters kept", lambda c: f"{c['after']['characters']:,}")
    splits: list[str] = []
    for _, c in columns:
        splits += [s for s in c["splits"] if s not in splits]
    for split in splits:
        sizes = [c["splits"].get(split, {}).get("tokens") for _, c in columns]
        cells = ["" if n is None else f"{n:,}" for n in sizes]
        rows.append(line(f"tokens {split}", cells))
    row("tokens (with delimiters)", lambda c: f"{c['stats']['tokens']:,}")
    row("bytes per token", lambda c: f"{c['stats']['bytes_per_token']:.3f}")
    row("characters per token", lambda c: f"{c['stats']['characters_per_token']:.3f}")
    shown = columns if len(sources) > 1 else columns[-1:]
    for name, c in shown:
        rows.append("")
        rows += _details(name, c["stats"])
    return "\n".join(rows + _skipped_notes(report["overall"]))


def _skipped_rows(
    columns: Sequence[tuple[str, Mapping[str, Any]]], line: Callable[[str, Iterable[str]], str]
) -> list[str]:
    """A row per reason a directory walk left paths out (none in older reports)."""
    reasons: list[str] = []
    for _, c in columns:
        reasons += [r for r in c.get("skipped_files", {}) if r not in reasons]
    rows = [line("paths skipped (not read)", [""] * len(columns))] if reasons else []
    for reason in reasons:
        counts = [c.get("skipped_files", {}).get(reason, {}).get("paths", 0) for _, c in columns]
        rows.append(line(f"  - {reason}", [f"{n:,}" for n in counts]))
    return rows


def _skipped_notes(overall: Mapping[str, Any]) -> list[str]:
    """For each reason paths were skipped: the first such path and the setting that keeps them."""
    skipped = overall.get("skipped_files", {})
    notes = [f"  {r}: first {e['first']}; to keep: {e['relaxed_by']}" for r, e in skipped.items()]
    return (
        ["", "paths skipped, first of each, and the setting that keeps them:", *notes]
        if notes
        else []
    )
