"""The sources of a preparation: what they are, and each one's way to the documents it keeps.

:class:`Source` is a named input with a weight, from ``--source`` arguments or a TOML
``[sources]`` table (a flat preparation has one unnamed source, :func:`source_name`).
:func:`read_and_clean` reads, cleans and deduplicates one source into a :class:`SourceData`;
:func:`remove_cross_source_duplicates` then removes what an earlier source already holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from .clean import CleanConfig, clean_documents
from .dedup import DedupConfig, deduplicate, exact_duplicate_key
from .documents import Document, default_corpus, read_documents
from .mix import SOURCE_NAME
from .report import Report
from .walk import FileFilter, Skipped

# names a source may not take: the output directory holds tokenizer.txt and report.json
RESERVED_NAMES = ("tokenizer", "report")
# the rule under which a document already kept by an earlier source is removed
CROSS_SOURCE_RULE = "cross_source_duplicate"


@dataclass(frozen=True)
class Source:
    """One named input of a mixture: its paths (files, directories, JSONL, as
    :func:`read_documents` takes them) and its requested weight, relative to the other
    sources' (weights are normalised to sum 1). The name is also the folder of its shards."""

    name: str
    paths: tuple[Path, ...]
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not SOURCE_NAME.fullmatch(self.name):
            raise DataError(
                f"source name {self.name!r}: use letters, digits, '_', '.' and '-', not "
                f"starting with '.' or '-'"
            )
        if self.name in RESERVED_NAMES:
            raise DataError(
                f"source name {self.name!r} is reserved (the output holds {self.name}.*)"
            )
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)):
            raise DataError(f"source {self.name!r}: weight must be a number, got {self.weight!r}")
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise DataError(
                f"source {self.name!r}: weight must be a finite number > 0, got {self.weight}"
            )
        if not self.paths:
            raise DataError(f"source {self.name!r}: no path given")
        object.__setattr__(self, "paths", tuple(Path(p) for p in self.paths))


def parse_source(spec: str) -> tuple[str, Path, float | None]:
    """``NAME=PATH[,WEIGHT]`` (a ``--source`` argument) as (name, path, weight or None). The
    text after the last comma is the weight: a path with a comma in it needs the TOML form."""
    name, equals, rest = spec.partition("=")
    if not equals:
        raise DataError(
            f"--source {spec!r}: expected NAME=PATH[,WEIGHT], e.g. --source web=data/web,0.7"
        )
    path, comma, weight_text = rest.rpartition(",") if "," in rest else (rest, "", "")
    if not path:
        raise DataError(f"--source {spec!r}: no path after '{name}='")
    weight = None
    if comma:
        try:
            weight = float(weight_text)
        except ValueError:
            raise DataError(
                f"--source {spec!r}: weight {weight_text!r} is not a number (a path with a "
                f"comma in it needs the [sources] table of --config)"
            ) from None
    Source(name, (Path(path),), 1.0 if weight is None else weight)  # checks name and weight
    return name, Path(path), weight


def sources_from_specs(specs: Sequence[str]) -> list[Source]:
    """The sources of repeated ``--source NAME=PATH[,WEIGHT]`` arguments, in the order their
    names first appear. A name given again adds a path to that source; its weight may be given
    once (or repeated unchanged) and defaults to 1."""
    paths: dict[str, list[Path]] = {}
    weights: dict[str, float] = {}
    for spec in specs:
        name, path, weight = parse_source(spec)
        if path in paths.setdefault(name, []):
            raise DataError(f"source {name!r}: path {str(path)!r} given twice")
        paths[name].append(path)
        if weight is not None:
            if weights.setdefault(name, weight) != weight:
                raise DataError(
                    f"source {name!r}: two different weights ({weights[name]:g} and {weight:g}); "
                    f"give its weight once"
                )
    return [Source(name, tuple(p), weights.get(name, 1.0)) for name, p in paths.items()]


def sources_from_config(table: Mapping[str, Any], base: str | Path | None = None) -> list[Source]:
    """The sources of a TOML ``[sources.NAME]`` table: ``path = "..."`` or ``paths = [...]``
    and an optional ``weight`` (default 1), in the order of the file. Relative paths are taken
    relative to ``base`` (the config file's folder) when given."""
    if not isinstance(table, Mapping) or not table:
        raise DataError("[sources] must hold one [sources.NAME] table per source")
    sources = []
    for name, entry in table.items():
        if not isinstance(entry, Mapping):
            raise DataError(f"[sources.{name}] must be a table with path (or paths) and weight")
        unknown = sorted(set(entry) - {"path", "paths", "weight"})
        if unknown:
            raise DataError(f"[sources.{name}]: unknown key(s) {', '.join(unknown)}")
        if ("path" in entry) == ("paths" in entry):
            raise DataError(f'[sources.{name}]: give either path = "..." or paths = [...]')
        paths = [entry["path"]] if "path" in entry else entry["paths"]
        if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
            raise DataError(f"[sources.{name}]: paths must be a list of non-empty strings")
        resolved = tuple(Path(base, p) if base is not None else Path(p) for p in paths)
        sources.append(Source(name, resolved, entry.get("weight", 1.0)))
    return sources


def normalised_weights(sources: Sequence[Source]) -> list[float]:
    """The sources' weights divided by their sum."""
    total = sum(s.weight for s in sources)
    return [s.weight / total for s in sources]


def check_sources(sources: Sequence[Source]) -> None:
    """A DataError unless ``sources`` is a non-empty list of Source objects with unique names."""
    if not sources:
        raise DataError("no sources given")
    seen: set[str] = set()
    for source in sources:
        if not isinstance(source, Source):
            raise DataError(f"sources must be Source objects, got {source!r}")
        if source.name in seen:
            raise DataError(f"source {source.name!r} is given twice; source names must be unique")
        seen.add(source.name)


def source_name(inputs: Sequence[str | Path] | None) -> str:
    """The name of the (single) source: its input's file or directory name, several joined by
    '+', or "default" for the embedded corpus."""
    if not inputs:
        return "default"
    return "+".join(Path(p).name or str(p) for p in inputs)


@dataclass
class SourceData:
    """One source on its way through ``prepare``: the documents read (kept until their tokens
    are counted), the stage reports, what each rule removed, and the split."""

    name: str
    weight: float
    dir: Path
    read: list[Document]
    cleaning: Report
    dedup: Report
    removed: list[tuple[str, str]]  # (rule, removed text): lines and documents
    kept: list[Document]
    train: list[Document] = field(default_factory=list)
    val: list[Document] = field(default_factory=list)
    skipped: Skipped = field(default_factory=Skipped)  # files its directories' walks left out


def read_and_clean(
    name: str,
    paths: Sequence[Path],
    clean: CleanConfig,
    dedup: DedupConfig,
    *,
    weight: float,
    directory: Path,
    named: bool,
    log: Any,
    files: FileFilter | None = None,
) -> SourceData:
    """Read, clean and deduplicate one source (the embedded corpus when ``paths`` is empty),
    whose shards will go to ``directory``, its directories walked under ``files``; a DataError
    naming the source (when ``named``) and the stage that left it without documents."""
    label = f"source {name!r}: " if named else ""
    skipped = Skipped()
    try:
        if paths:
            docs = list(read_documents(paths, filters=files, skipped=skipped))
            where = ", ".join(map(str, paths))
        else:
            docs = default_corpus()
            where = "pydoc_data.topics (the standard library's help topics)"
    except DataError as e:
        raise DataError(f"{label}{e}") from e
    for reason, entry in skipped.to_dict().items():
        log(
            f"{label}skipped {entry['paths']:,} path(s) as {reason}, first {entry['first']} "
            f"(to keep them: {entry['relaxed_by']})"
        )
    if not docs:
        raise DataError(f"{label}no documents found in {where}")
    log(f"{label}read {len(docs):,} documents from {where}")

    removed: list[tuple[str, str]] = []

    def note(rule: str, doc: Document) -> None:
        removed.append((rule, doc.text))

    cleaned, cleaning = clean_documents(docs, clean, on_remove=note)
    if not cleaned:
        raise DataError(
            f"{label}no documents are left after cleaning, which removed all {len(docs):,}:\n"
            f"{cleaning.summary()}\nloosen the filters that removed them"
        )
    kept, dedup_report = deduplicate(cleaned, dedup, on_remove=note)  # keeps one at least
    return SourceData(
        name, weight, directory, docs, cleaning, dedup_report, removed, kept, skipped=skipped
    )


def remove_cross_source_duplicates(data: Sequence[SourceData], log: Any) -> None:
    """Remove each document that is an exact duplicate (after whitespace collapsing, as in
    :func:`deduplicate`) of one kept by an earlier source, under ``cross_source_duplicate``;
    the source's dedup report and removals get it."""
    first_source: dict[bytes, tuple[str, str]] = {}  # key: (source name, document source)
    for source in data:
        report = Report.start((d.text for d in source.kept), max_examples=source.dedup.max_examples)
        kept = []
        for doc in source.kept:
            key = exact_duplicate_key(doc.text)
            earlier = first_source.get(key)
            if earlier is None:  # (no exact duplicates are left within a source)
                first_source[key] = (source.name, doc.source)
                kept.append(doc)
                continue
            report.remove_document(
                CROSS_SOURCE_RULE,
                doc.source,
                doc.text,
                duplicate_of=f"{earlier[1]} (source {earlier[0]!r})",
            )
            source.removed.append((CROSS_SOURCE_RULE, doc.text))
        if not kept:
            raise DataError(
                f"source {source.name!r}: no documents are left after removing the exact "
                f"duplicates of earlier sources' documents"
            )
        if len(kept) < len(source.kept):
            log(
                f"source {source.name!r}: {len(source.kept) - len(kept):,} documents are exact "
                f"duplicates of earlier sources' and were removed"
            )
        source.dedup = source.dedup.merge(report.finish(d.text for d in kept))
        source.kept = kept
