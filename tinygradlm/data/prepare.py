"""``tinygradlm prepare``: from raw text to a tokenizer and token shards, with a report.

    read → clean → deduplicate → split train/val → train the tokenizer on train → encode each
    document after an end-of-text token → write shards → tokenizer file and report.json

With positional inputs (or none: the embedded default corpus) the corpus is one source and the
output directory is flat:

    OUT/tokenizer.txt        the trained tokenizer (docs/tokenizer.md)
    OUT/train_000000.bin …   token shards of the training split (docs/shards.md)
    OUT/val_000000.bin …     token shards of the validation split
    OUT/report.json          what was read, removed and why, and what was written

With named, weighted sources (:class:`Source`, ``--source NAME=PATH[,WEIGHT]``) each source is
read, cleaned, deduplicated and split on its own, one tokenizer is trained on a sample of the
training text that follows the weights (:func:`tokenizer_sample`), and each source gets a folder:

    OUT/tokenizer.txt, OUT/report.json       as above; report.json adds "mixture"
    OUT/NAME/train_000000.bin …              the source's training shards
    OUT/NAME/val_000000.bin …                its validation shards
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomic
from ..errors import DataError
from ..tokenizer import ENDOFTEXT, TOKENIZER_FILE, Tokenizer
from .clean import CleanConfig, clean_documents
from .corpus import CorpusStats, summary
from .dedup import DedupConfig, deduplicate, exact_duplicate_key
from .documents import Document, default_corpus, read_documents
from .mixture import REPORT_FILE, SOURCE_NAME, prepared_mixture
from .report import Report
from .shards import find_shards, shard_info, write_shards

SPLITS = ("train", "val")
RESERVED_NAMES = ("tokenizer", "report")
CROSS_SOURCE_RULE = "cross_source_duplicate"


@dataclass
class PrepareConfig:
    """Everything ``prepare`` does, with its defaults.

    vocab_size: the tokenizer's vocabulary, special tokens included. pattern: the
    pre-tokenization split, "gpt2", "gpt4" or a regex. val_fraction: the share of the text
    (in characters) held out for validation, whole documents at a time, chosen by ``seed``;
    a single document is split at a line boundary instead. shard_tokens: tokens per shard file.
    tokenizer_sample_chars: at most this many characters of training text train the tokenizer,
    shared out by the sources' weights (0: no cap; see :func:`tokenizer_sample`).
    """

    vocab_size: int = 4096
    pattern: str = "gpt4"
    val_fraction: float = 0.05
    seed: int = 0
    shard_tokens: int = 10_000_000
    tokenizer_sample_chars: int = 0
    clean: CleanConfig = field(default_factory=CleanConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)

    def __post_init__(self) -> None:
        if self.vocab_size < 257:
            raise ValueError(
                f"vocab_size must be at least 257 (256 bytes and <|endoftext|>), "
                f"got {self.vocab_size}"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.shard_tokens <= 0:
            raise ValueError(f"shard_tokens must be positive, got {self.shard_tokens}")
        if self.tokenizer_sample_chars < 0:
            raise ValueError(
                f"tokenizer_sample_chars must be 0 (no cap) or positive, "
                f"got {self.tokenizer_sample_chars}"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PrepareConfig:
        """Build from a mapping (e.g. a TOML file) with optional ``clean`` and ``dedup`` tables;
        unknown keys are rejected by name."""
        values = dict(values)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown prepare setting(s): {', '.join(unknown)}")
        if "clean" in values:
            values["clean"] = CleanConfig.from_dict(values["clean"])
        if "dedup" in values:
            values["dedup"] = DedupConfig.from_dict(values["dedup"])
        return cls(**values)


# --------------------------------------------------------------------------------------------
# sources: names, paths and weights
# --------------------------------------------------------------------------------------------


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


def _check_sources(sources: Sequence[Source]) -> None:
    if not sources:
        raise DataError("no sources given")
    seen: set[str] = set()
    for source in sources:
        if not isinstance(source, Source):
            raise DataError(f"sources must be Source objects, got {source!r}")
        if source.name in seen:
            raise DataError(f"source {source.name!r} is given twice; source names must be unique")
        seen.add(source.name)


# --------------------------------------------------------------------------------------------
# the steps
# --------------------------------------------------------------------------------------------


def split_documents(
    docs: Sequence[Document], val_fraction: float, seed: int
) -> tuple[list[Document], list[Document]]:
    """Train and validation documents: whole documents, in a seeded order, to the validation
    split until it holds ``val_fraction`` of the characters. With one document, its last lines
    (about ``val_fraction`` of it) become the validation document."""
    if val_fraction == 0 or not docs:
        return list(docs), []
    if len(docs) == 1:
        doc = docs[0]
        lines = doc.text.splitlines(keepends=True)
        if len(lines) < 2:
            return [doc], []
        cut = int(
            np.searchsorted(np.cumsum([len(x) for x in lines]), (1 - val_fraction) * len(doc.text))
        )
        cut = min(max(cut, 1), len(lines) - 1)
        return (
            [Document("".join(lines[:cut]), doc.source)],
            [Document("".join(lines[cut:]), doc.source + " (tail)")],
        )
    order = np.random.default_rng(seed).permutation(len(docs))
    target = val_fraction * sum(len(d.text) for d in docs)
    val_ids: set[int] = set()
    held = 0
    for i in order:
        if held >= target or len(val_ids) == len(docs) - 1:
            break
        val_ids.add(int(i))
        held += len(docs[i].text)
    train = [d for i, d in enumerate(docs) if i not in val_ids]
    val = [d for i, d in enumerate(docs) if i in val_ids]
    return train, val


def tokenizer_sample(
    train_sets: Sequence[Sequence[Document]],
    weights: Sequence[float],
    *,
    cap: int = 0,
    seed: int = 0,
) -> list[list[str]]:
    """The texts each source gives to tokenizer training, so that the sample follows the
    (normalised) ``weights``.

    Source i has C_i characters of training text. The sample has S = min_i C_i / w_i characters,
    the most for which no source is asked for more text than it has (at most ``cap`` when
    ``cap`` > 0), and source i gives a budget of B_i = w_i·S of them. A source whose budget is
    all its text gives every document as it is (so one source with no cap gives all of it);
    any other gives whole documents in a seeded order (``seed`` and its position) while they
    fit, then the start of the next one, cut at the last line break (or, in a single line, the
    last space) within the budget; it falls short of B_i by less than a line.
    """
    chars = [sum(len(d.text) for d in docs) for docs in train_sets]
    if len(chars) != len(weights) or any(c <= 0 for c in chars):
        raise ValueError("tokenizer_sample needs one non-empty training set per weight")
    total = min(c / w for c, w in zip(chars, weights, strict=True))
    if cap > 0:
        total = min(total, cap)
    samples = []
    for index, (docs, have, weight) in enumerate(zip(train_sets, chars, weights, strict=True)):
        budget = min(have, round(weight * total))
        if budget == have:
            samples.append([d.text for d in docs])
            continue
        texts: list[str] = []
        left = budget
        for i in np.random.default_rng([seed, index]).permutation(len(docs)):
            text = docs[i].text
            if len(text) > left:
                head = text[:left]
                cut = head.rfind("\n") + 1 or head.rfind(" ") + 1
                if cut:
                    texts.append(head[:cut])
                break
            texts.append(text)
            left -= len(text)
        samples.append(texts)
    return samples


def _token_stream(
    tokenizer: Tokenizer, docs: Sequence[Document], stats: CorpusStats | None = None
) -> Iterator[np.ndarray]:
    """Each document as ``[<|endoftext|>, its tokens…]``: the delimiter precedes every document,
    as in llm.c's data scripts, so a model sees the start of a document after the token. With
    ``stats``, each document and its tokens are counted there as they stream by."""
    eot = np.array([tokenizer.eot_token], dtype=np.uint32)
    for doc in docs:
        yield eot
        # a literal "<|endoftext|>" inside a document is text, not a delimiter
        tokens = tokenizer.encode_to_array(doc.text, disallowed_special=()).astype(
            np.uint32, copy=False
        )
        if stats is not None:
            stats.add(doc.text, tokens)
        yield tokens


def _count_tokens(tokenizer: Tokenizer, text: str) -> int:
    """How many tokens ``text`` encodes to (a literal special-token string counts as text)."""
    return int(tokenizer.encode_to_array(text, disallowed_special=()).size)


def source_name(inputs: Sequence[str | Path] | None) -> str:
    """The name of the (single) source: its input's file or directory name, several joined by
    '+', or "default" for the embedded corpus."""
    if not inputs:
        return "default"
    return "+".join(Path(p).name or str(p) for p in inputs)


@dataclass
class _SourceData:
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


def _read_and_clean(
    name: str,
    paths: Sequence[Path],
    config: PrepareConfig,
    *,
    weight: float,
    directory: Path,
    named: bool,
    log: Any,
) -> _SourceData:
    """Read, clean and deduplicate one source (the embedded corpus when ``paths`` is empty),
    whose shards will go to ``directory``; a DataError naming the source (when ``named``) and
    the stage that left it without documents."""
    label = f"source {name!r}: " if named else ""
    try:
        if paths:
            docs = list(read_documents(paths))
            where = ", ".join(map(str, paths))
        else:
            docs = default_corpus()
            where = "pydoc_data.topics (the standard library's help topics)"
    except DataError as e:
        raise DataError(f"{label}{e}") from e
    if not docs:
        raise DataError(f"{label}no documents found in {where}")
    log(f"{label}read {len(docs):,} documents from {where}")

    removed: list[tuple[str, str]] = []

    def note(rule: str, doc: Document) -> None:
        removed.append((rule, doc.text))

    cleaned, cleaning = clean_documents(docs, config.clean, on_remove=note)
    if not cleaned:
        raise DataError(
            f"{label}no documents are left after cleaning, which removed all {len(docs):,}:\n"
            f"{cleaning.summary()}\nloosen the filters that removed them"
        )
    kept, dedup = deduplicate(cleaned, config.dedup, on_remove=note)  # keeps one at least
    return _SourceData(name, weight, directory, docs, cleaning, dedup, removed, kept)


def _remove_cross_source_duplicates(data: Sequence[_SourceData], log: Any) -> None:
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


def _token_book(tokenizer: Tokenizer, data: _SourceData, kept_tokens: int) -> dict[str, Any]:
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


def _existing_output(out: Path) -> list[Path]:
    """Prepared data already in ``out``: its tokenizer, shards, and shards one folder down."""
    if not out.is_dir():
        return []
    found = sorted(out.glob(TOKENIZER_FILE)) + sorted(out.glob("*.bin"))
    return found + sorted(out.glob("*/*.bin"))


def _remove_stale_shards(out: Path, keep: set[Path]) -> None:
    """With --overwrite: remove the train/val shards of the earlier preparation that the new one
    will not replace (the flat layout's, or a source of its mixture no longer listed), so no
    stale shard is read as part of the new data. Other folders in ``out`` are left alone."""
    earlier = prepared_mixture(out) or {}
    for directory in [out, *(out / name for name in earlier if SOURCE_NAME.fullmatch(name))]:
        if directory not in keep and directory.is_dir():
            for split in SPLITS:
                for path in find_shards(directory, split):
                    path.unlink()


def prepare(
    inputs: Sequence[str | Path] | None,
    out_dir: str | Path,
    config: PrepareConfig | None = None,
    *,
    sources: Sequence[Source] | None = None,
    overwrite: bool = False,
    log: Any = print,
) -> dict[str, Any]:
    """Run the whole data path; returns the report that is also written to ``report.json``.

    ``inputs``: files, directories or JSONL files, one source in a flat output directory; None
    or empty for the embedded default corpus (the standard library's pydoc topics).
    ``sources``: instead, named and weighted sources, each with its own folder of shards (see
    the module docstring); giving both is an error. Refuses to write into a directory that
    already holds shards or a tokenizer unless ``overwrite``, so nothing already prepared is
    lost; checks every source before writing anything.
    """
    config = config or PrepareConfig()
    out = Path(out_dir)
    named = sources is not None
    if named:
        if inputs:
            raise DataError("give either input paths or named sources, not both")
        _check_sources(sources)
    existing = _existing_output(out)
    if existing and not overwrite:
        raise DataError(
            f"{out}: already holds prepared data ({existing[0].relative_to(out)}, …); choose "
            f"another --out or pass --overwrite"
        )
    started = time.perf_counter()

    plan = (
        [(s.name, s.paths) for s in sources]
        if named
        else [(source_name(inputs), tuple(Path(p) for p in inputs or ()))]
    )
    weights = normalised_weights(sources) if named else [1.0]
    data = []
    for (name, paths), weight in zip(plan, weights, strict=True):
        directory = out / name if named else out
        data.append(
            _read_and_clean(
                name, paths, config, weight=weight, directory=directory, named=named, log=log
            )
        )
    if len(data) > 1 and config.dedup.exact:
        _remove_cross_source_duplicates(data, log)
    for source in data:
        if named:
            log(f"== source {source.name!r} (weight {source.weight:.3f})")
        log(source.cleaning.merge(source.dedup).summary())
        source.train, source.val = split_documents(source.kept, config.val_fraction, config.seed)

    samples = tokenizer_sample(
        [s.train for s in data], weights, cap=config.tokenizer_sample_chars, seed=config.seed
    )
    sample_chars = [sum(map(len, texts)) for texts in samples]
    for source, chars in zip(data, sample_chars, strict=True):
        log(f"tokenizer sample: {chars:,} characters of {source.name!r}")
    log(f"training the tokenizer: vocab {config.vocab_size:,}, pattern {config.pattern!r}")
    tokenizer = Tokenizer.train(
        [text for texts in samples for text in texts],
        config.vocab_size,
        pattern=config.pattern,
        special_tokens=(ENDOFTEXT,),
        progress=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        _remove_stale_shards(out, {s.dir for s in data})
    tokenizer.save(out / TOKENIZER_FILE)

    splits = {
        split: {"documents": 0, "characters": 0, "tokens": 0, "shards": []} for split in SPLITS
    }
    sections: dict[str, dict[str, Any]] = {}
    all_stats: dict[str, list[CorpusStats]] = {split: [] for split in SPLITS}
    books = []
    for source in data:
        split_stats: dict[str, CorpusStats] = {}
        for split, split_docs in (("train", source.train), ("val", source.val)):
            stats = split_stats[split] = CorpusStats(tokenizer, delimiter=tokenizer.eot_token)
            paths = write_shards(
                _token_stream(tokenizer, split_docs, stats),
                source.dir,
                split=split,
                vocab_size=tokenizer.vocab_size,
                shard_tokens=config.shard_tokens,
                overwrite=overwrite,
            )
            splits[split]["documents"] += len(split_docs)
            splits[split]["characters"] += stats.characters
            splits[split]["tokens"] += sum(shard_info(p).num_tokens for p in paths)
            splits[split]["shards"] += [p.relative_to(out).as_posix() for p in paths]
            all_stats[split].append(stats)
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

    cleaning = Report.combine(s.cleaning for s in data)
    dedup = Report.combine(s.dedup for s in data)
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
        {split: CorpusStats.merge(parts) for split, parts in all_stats.items()},
        {**overall_tokens, "removed": overall_removed},
        weight=1.0,
    )
    overall["token_share"] = 1.0
    overall["tokenizer_sample_chars"] = sum(sample_chars)

    total_chars = sum(s["characters"] for s in splits.values())
    total_tokens = sum(s["tokens"] - s["documents"] for s in splits.values())
    report: dict[str, Any] = {
        "inputs": [str(p) for _, paths in plan for p in paths]
        or ["pydoc_data.topics (the standard library's help topics)"],
        "config": _jsonable(dataclasses.asdict(config)),
    }
    if named:
        report["mixture"] = {s.name: s.weight for s in data}
    report |= {
        "cleaning": cleaning.to_dict(),
        "dedup": dedup.to_dict(),
        "splits": splits,
        "tokenizer": {
            "file": TOKENIZER_FILE,
            "vocab_size": tokenizer.vocab_size,
            "pattern": config.pattern,
            "eot_token": tokenizer.eot_token,
            "characters_per_token": total_chars / max(total_tokens, 1),
            "sample_chars": sum(sample_chars),
        },
        "sources": sections,
        "overall": overall,
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_atomic(out / REPORT_FILE, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    log(summary(report))
    for split, info in splits.items():
        log(
            f"{split}: {info['documents']:,} documents, {info['tokens']:,} tokens in "
            f"{len(info['shards'])} shard(s)"
        )
    log(
        f"tokenizer: {tokenizer.vocab_size:,} tokens, "
        f"{report['tokenizer']['characters_per_token']:.2f} characters per token; "
        f"wrote {out}/ in {report['seconds']:.1f} s"
    )
    return report


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
