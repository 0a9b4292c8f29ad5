"""The account of what a data stage removed and why.

Every stage of the data path (cleaning, deduplication) returns the documents it kept together with
a :class:`Report`. The report is the audit trail: each removed document, line or character is
counted under exactly one rule, so the totals always balance::

    before.documents  - Σ rule.documents  == after.documents
    before.characters - Σ rule.characters == after.characters
    before.words      - Σ rule.words      == after.words

A rule may remove parts of documents (a line filter removes lines, normalisation removes
whitespace) without removing any document; then its ``documents`` count is 0 and its ``lines``,
``characters`` and ``words`` say what went. For each rule the report keeps the first few examples
(the document's source, a short snippet, the measured value, and for a duplicate the source of the
document it duplicates), so a person can see *why* without rerunning anything.

Words are whitespace-separated tokens (``str.split()``) everywhere in the data path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import DataError

__all__ = ["Example", "Report", "RuleCount", "Totals", "snippet"]

SNIPPET_CHARS = 80
"""How many characters of a removed document or line an example shows."""


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The first ``limit`` characters of ``text`` on one line (newlines shown as ``⏎``)."""
    flat = text.strip().replace("\n", " ⏎ ")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class Totals:
    """Size of a set of documents: how many, and their characters and (whitespace) words."""

    documents: int = 0
    characters: int = 0
    words: int = 0

    @classmethod
    def of(cls, texts: Iterable[str]) -> Totals:
        """Count the documents, characters and words of ``texts``."""
        documents = characters = words = 0
        for text in texts:
            documents += 1
            characters += len(text)
            words += len(text.split())
        return cls(documents, characters, words)

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.documents + other.documents,
            self.characters + other.characters,
            self.words + other.words,
        )


@dataclass
class RuleCount:
    """What one rule removed: whole documents, lines (line rules), characters and words.

    ``characters`` and ``words`` include those of removed documents and lines. For the
    normalisation rule they are the net change, which can be negative in the rare case where NFC
    makes a text longer.
    """

    documents: int = 0
    lines: int = 0
    characters: int = 0
    words: int = 0


@dataclass(frozen=True)
class Example:
    """One removal, shown in the report: where it came from and what it looked like.

    ``detail`` is the measured value that broke the rule (``"mean word length 11.2 > 10"``);
    ``duplicate_of`` is, for a deduplication rule, the source of the document that was kept.
    """

    source: str
    snippet: str
    detail: str = ""
    duplicate_of: str | None = None


def _example_dict(example: Example) -> dict[str, str]:
    """An example as JSON-able data, without the fields it does not use."""
    data = {"source": example.source, "snippet": example.snippet}
    if example.detail:
        data["detail"] = example.detail
    if example.duplicate_of is not None:
        data["duplicate_of"] = example.duplicate_of
    return data


@dataclass
class Report:
    """Counts per rule, up to ``max_examples`` examples per rule, and totals before and after.

    Build one with :meth:`start` (or add to ``before`` as inputs stream in), record each removal
    with :meth:`remove_document`, :meth:`remove_lines` or :meth:`count`, and close it with
    :meth:`finish`, which checks that the books balance. Rules appear in the
    order they first removed something (the order of the pipeline).
    """

    before: Totals = field(default_factory=Totals)
    after: Totals = field(default_factory=Totals)
    rules: dict[str, RuleCount] = field(default_factory=dict)
    examples: dict[str, list[Example]] = field(default_factory=dict)
    max_examples: int = 3

    # -- building ------------------------------------------------------------------------------

    def _rule(self, rule: str) -> RuleCount:
        if rule not in self.rules:
            self.rules[rule] = RuleCount()
            self.examples[rule] = []
        return self.rules[rule]

    def count(
        self,
        rule: str,
        *,
        documents: int = 0,
        lines: int = 0,
        characters: int = 0,
        words: int = 0,
        example: Example | None = None,
    ) -> None:
        """Add to ``rule``'s counts (creating the rule) and keep ``example`` if there is room."""
        count = self._rule(rule)
        count.documents += documents
        count.lines += lines
        count.characters += characters
        count.words += words
        if example is not None and len(self.examples[rule]) < self.max_examples:
            self.examples[rule].append(example)

    def remove_document(
        self,
        rule: str,
        source: str,
        text: str,
        *,
        detail: str = "",
        duplicate_of: str | None = None,
    ) -> None:
        """Count the whole document ``text`` (as it was when removed) as removed by ``rule``."""
        self.count(
            rule,
            documents=1,
            characters=len(text),
            words=len(text.split()),
            example=Example(source, snippet(text), detail, duplicate_of),
        )

    def remove_lines(self, rule: str, source: str, lines: list[str], *, detail: str = "") -> None:
        """Count ``lines`` of one document as removed by ``rule``. Their newline characters are
        not counted here: a stage counts a text's newlines under its normalisation rule."""
        if not lines:
            return
        self.count(
            rule,
            lines=len(lines),
            characters=sum(len(line) for line in lines),
            words=sum(len(line.split()) for line in lines),
        )
        for line in lines:
            self.count(rule, example=Example(source, snippet(line), detail))

    @classmethod
    def start(cls, texts: Iterable[str], *, max_examples: int = 3) -> Report:
        """A report whose ``before`` totals are those of ``texts``."""
        return cls(before=Totals.of(texts), max_examples=max_examples)

    def finish(self, kept_texts: Iterable[str]) -> Report:
        """Set ``after`` from the kept texts and check that the books balance.

        Raises :class:`DataError` if a removal went uncounted (a bug in the stage that built
        the report, never in its input).
        """
        self.after = Totals.of(kept_texts)
        self.check()
        return self

    # -- reading -------------------------------------------------------------------------------

    @property
    def removed(self) -> Totals:
        """The sum over rules of documents, characters and words removed."""
        total = Totals()
        for count in self.rules.values():
            total = total + Totals(count.documents, count.characters, count.words)
        return total

    def check(self) -> None:
        """Raise :class:`DataError` unless ``before - removed == after`` for documents,
        characters and words."""
        removed = self.removed
        for name in ("documents", "characters", "words"):
            before, gone, after = (getattr(t, name) for t in (self.before, removed, self.after))
            if before - gone != after:
                raise DataError(
                    f"report does not balance: {before} {name} before - {gone} removed "
                    f"!= {after} after"
                )

    def merge(self, other: Report) -> Report:
        """The report of this stage followed by ``other``, which ran on what this one kept.

        ``before`` comes from ``self``, ``after`` from ``other``; counts of the same rule add up
        and examples are concatenated (up to ``max_examples``). Raises :class:`DataError` if
        ``other.before`` is not ``self.after`` (the stages were not run one after the other);
        use :meth:`combine` for reports of disjoint parts of a corpus.
        """
        if other.before != self.after:
            raise DataError(
                f"cannot merge reports: the second stage starts from {other.before} but the "
                f"first ended with {self.after} (use Report.combine for side-by-side parts)"
            )
        merged = Report(before=self.before, after=other.after, max_examples=self.max_examples)
        merged._add_rules(self)
        merged._add_rules(other)
        return merged

    @classmethod
    def combine(cls, reports: Iterable[Report]) -> Report:
        """One report for several disjoint parts of a corpus processed side by side: befores,
        afters and rule counts all add up."""
        combined = cls()
        for report in reports:
            combined.max_examples = max(combined.max_examples, report.max_examples)
            combined.before = combined.before + report.before
            combined.after = combined.after + report.after
            combined._add_rules(report)
        return combined

    def _add_rules(self, other: Report) -> None:
        for rule, count in other.rules.items():
            mine = self._rule(rule)
            mine.documents += count.documents
            mine.lines += count.lines
            mine.characters += count.characters
            mine.words += count.words
            for example in other.examples.get(rule, []):
                self.count(rule, example=example)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict: ``before``, ``after``, ``removed`` and per-rule counts with
        their examples."""
        return {
            "before": asdict(self.before),
            "after": asdict(self.after),
            "removed": asdict(self.removed),
            "rules": {
                rule: {
                    **asdict(count),
                    "examples": [_example_dict(e) for e in self.examples.get(rule, [])],
                }
                for rule, count in self.rules.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """The inverse of :meth:`to_dict` (``removed`` is recomputed, not read)."""
        try:
            report = cls(before=Totals(**data["before"]), after=Totals(**data["after"]))
            for rule, entry in data["rules"].items():
                entry = dict(entry)
                examples = [Example(**e) for e in entry.pop("examples", [])]
                report.rules[rule] = RuleCount(**entry)
                report.examples[rule] = examples
                report.max_examples = max(report.max_examples, len(examples))
        except (KeyError, TypeError) as error:
            raise DataError(f"not a report dict: {error}") from error
        return report

    def summary(self) -> str:
        """The printed table: one row per rule, then totals before, removed and after, then the
        examples."""
        header = f"{'rule':<28}{'documents':>11}{'lines':>11}{'characters':>14}{'words':>12}"
        rows = [header, "-" * len(header)]

        def row(name: str, documents: int, lines: int | str, characters: int, words: int) -> str:
            return f"{name:<28}{documents:>11,}{lines:>11}{characters:>14,}{words:>12,}"

        rows.append(
            row("before", self.before.documents, "", self.before.characters, self.before.words)
        )
        for rule, c in self.rules.items():
            rows.append(row(f"  - {rule}", c.documents, f"{c.lines:,}", c.characters, c.words))
        rows.append(row("after", self.after.documents, "", self.after.characters, self.after.words))
        for rule, examples in self.examples.items():
            if examples:
                rows.append("")
                rows.append(f"{rule}:")
            for e in examples:
                why = "; ".join(
                    part
                    for part in (e.detail, e.duplicate_of and f"duplicate of {e.duplicate_of}")
                    if part
                )
                shown = f" {e.snippet!r}" if e.snippet else ""
                rows.append(f"  {e.source}:{shown}" + (f"  [{why}]" if why else ""))
        return "\n".join(rows)
