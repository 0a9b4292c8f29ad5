"""report.json of a preparation: every token accounted for, per source and overall.

For each source the report balances: tokens before cleaning, minus what each rule removed,
equals the tokens in the shards (:func:`_token_book`); its corpus statistics are those of its
shards, per split; ``skipped_files`` counts the paths its directory walks left out, by reason,
with the first such path and the setting that keeps them (:mod:`.walk`). The overall section
sums the sources. ``tinygradlm report DIR`` prints it
(:func:`.corpus.summary`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..tokenizer import TOKENIZER_FILE, Tokenizer
from .corpus import CorpusStats
from .report import Report
from .sources import SourceData
from .walk import Skipped

SPLITS = ("train", "val")


def report_body(
    tokenizer: Tokenizer,
    data: Sequence[SourceData],
    splits: dict[str, dict[str, Any]],
    stats: Sequence[Mapping[str, CorpusStats]],
    sample_chars: Sequence[int],
    pattern: str,
    out: Path,
) -> dict[str, Any]:
    """report.json after its inputs and config: the stage reports, the ``splits`` written, the
    tokenizer, a section per source (``stats``: its corpus statistics by split) and one
    overall."""
    sections: dict[str, dict[str, Any]] = {}
    books = []
    for source, split_stats in zip(data, stats, strict=True):
        book = _token_book(tokenizer, source, sum(s.text_tokens for s in split_stats.values()))
        books.append(book)
        sections[source.name] = _corpus_section(
            source.cleaning, source.dedup, split_stats, book, weight=source.weight
        )
    train_tokens = [section["splits"]["train"]["tokens"] for section in sections.values()]
    for section, source, tokens, chars in zip(
        sections.values(), data, train_tokens, sample_chars, strict=True
    ):
        section["token_share"] = tokens / max(sum(train_tokens), 1)
        section["dir"] = source.dir.relative_to(out).as_posix()
        section["tokenizer_sample_chars"] = chars
        section["skipped_files"] = source.skipped.to_dict()

    cleaning = Report.combine(s.cleaning for s in data)
    dedup = Report.combine(s.dedup for s in data)
    overall = _overall_section(cleaning, dedup, books, stats)
    overall["tokenizer_sample_chars"] = sum(sample_chars)
    overall["skipped_files"] = Skipped.combine(s.skipped for s in data).to_dict()
    total_chars = sum(s["characters"] for s in splits.values())
    total_tokens = sum(s["tokens"] - s["documents"] for s in splits.values())
    return {
        "cleaning": cleaning.to_dict(),
        "dedup": dedup.to_dict(),
        "splits": splits,
        "tokenizer": {
            "file": TOKENIZER_FILE,
            "vocab_size": tokenizer.vocab_size,
            "pattern": pattern,
            "eot_token": tokenizer.eot_token,
            "characters_per_token": total_chars / max(total_tokens, 1),
            "sample_chars": sum(sample_chars),
        },
        "sources": sections,
        "overall": overall,
    }


def _overall_section(
    cleaning: Report,
    dedup: Report,
    books: Sequence[Mapping[str, Any]],
    stats: Sequence[Mapping[str, CorpusStats]],
) -> dict[str, Any]:
    """The corpus section of all sources together: their token books summed, their corpus
    statistics merged per split."""
    overall_removed: dict[str, int] = {}
    for book in books:
        for rule, count in book["removed"].items():
            overall_removed[rule] = overall_removed.get(rule, 0) + count
    overall_tokens = {
        key: sum(book[key] for book in books) for key in ("before", "after_cleaning", "after")
    }
    overall = _corpus_section(
        cleaning,
        dedup,
        {split: CorpusStats.merge([s[split] for s in stats]) for split in SPLITS},
        {**overall_tokens, "removed": overall_removed},
        weight=1.0,
    )
    overall["token_share"] = 1.0
    return overall


def _token_book(tokenizer: Tokenizer, data: SourceData, kept_tokens: int) -> dict[str, Any]:
    """One source's tokens before cleaning, after cleaning and after dedup, and per rule the
    tokens it removed, so that ``before - Σ removed == after``.

    ``before`` encodes each document as read; a removed document counts the tokens of its text
    as removed (cleaned, as the report counts its characters), a removed line those of the line
    on its own. ``after`` is ``kept_tokens``, the text tokens in the shards (delimiters left
    out). ``normalise`` gets the rest: the tokens of the whitespace and control characters it
    removed, plus the few that change where text is joined again (around a removed line, or
    where a lone document is cut into train and val); it can be negative."""
    before = sum(_count_tokens(tokenizer, d.text) for d in data.read)
    removed: dict[str, int] = {}
    for rule, text in data.removed:
        removed[rule] = removed.get(rule, 0) + _count_tokens(tokenizer, text)
    rest = before - sum(removed.values()) - kept_tokens
    if rest or "normalise" in data.cleaning.rules:
        removed["normalise"] = rest
    dedup_tokens = sum(removed.get(rule, 0) for rule in data.dedup.rules)
    return {
        "before": before,
        "after_cleaning": kept_tokens + dedup_tokens,
        "after": kept_tokens,
        "removed": removed,
    }


def _count_tokens(tokenizer: Tokenizer, text: str) -> int:
    """How many tokens ``text`` encodes to (a literal special-token string counts as text)."""
    return int(tokenizer.encode_to_array(text, disallowed_special=()).size)


def _corpus_section(
    clean_report: Report,
    dedup_report: Report,
    split_stats: Mapping[str, CorpusStats],
    tokens: Mapping[str, Any],
    *,
    weight: float,
) -> dict[str, Any]:
    """One source's entry of report.json: documents read, removed per rule (cleaning, then
    dedup) and kept, the same in tokens, and the corpus statistics per split and in all."""
    removed = {}
    for stage, stage_report in (("cleaning", clean_report), ("dedup", dedup_report)):
        for rule, count in stage_report.rules.items():
            removed[rule] = {"stage": stage, **dataclasses.asdict(count)}
    for rule, count in tokens["removed"].items():
        # normalise may have changed tokens only (a text cut in two), not characters
        removed.setdefault(
            rule, {"stage": "cleaning", "documents": 0, "lines": 0, "characters": 0, "words": 0}
        )["tokens"] = count
    return {
        "weight": weight,
        "before": dataclasses.asdict(clean_report.before),
        "after_cleaning": dataclasses.asdict(clean_report.after),
        "after": dataclasses.asdict(dedup_report.after),
        "tokens": {k: tokens[k] for k in ("before", "after_cleaning", "after")},
        "removed": removed,
        "splits": {split: s.to_dict() for split, s in split_stats.items()},
        "stats": CorpusStats.merge(list(split_stats.values())).to_dict(),
    }
