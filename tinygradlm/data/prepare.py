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

The steps live where their concepts do: the sources and their reading, cleaning and
deduplication in :mod:`.sources`, the train/val split and the tokenizer sample in :mod:`.splits`;
this module runs them in order and writes the outputs; :mod:`.prepare_report` accounts for every
token in the report.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_directory, writable_directory, write_atomic
from ..errors import ConfigError, DataError
from ..schema import Problem, Rule, Settings, check_table, problems_message
from ..tokenizer import ENDOFTEXT, TOKENIZER_FILE, Tokenizer, resolve_pattern
from .clean import CleanConfig
from .clean import check_values as check_clean_values
from .corpus import CorpusStats, summary
from .dedup import DEDUP_RULES, DedupConfig
from .documents import Document
from .encoding import encode_batches
from .mix import REPORT_FILE, SOURCE_NAME, prepared_mixture
from .prepare_report import SPLITS, report_body
from .shards import MAX_TOKENS, find_shards, shard_info, write_shards
from .sources import (
    Source,
    SourceData,
    check_sources,
    normalised_weights,
    read_and_clean,
    remove_cross_source_duplicates,
    source_name,
)
from .splits import split_documents, tokenizer_sample
from .walk import FILE_RULES, FileFilter


@dataclass
class PrepareConfig:
    """Everything ``prepare`` does, with its defaults.

    vocab_size: the tokenizer's vocabulary, special tokens included. pattern: the
    pre-tokenization split, "gpt2", "gpt4" or a regex. val_fraction: the share of the text
    (in characters) held out for validation, whole documents at a time, chosen by ``seed``;
    a single document is split at a line boundary instead. shard_tokens: tokens per shard file.
    tokenizer_sample_chars: at most this many characters of training text train the tokenizer,
    shared out by the sources' weights (0: no cap; see :func:`tokenizer_sample`). workers: the
    processes that encode the documents (0: every available core; the shards are the same
    whatever the number, :mod:`.encoding`). files: which
    files of a directory are read (the ``[files]`` table, :class:`~.walk.FileFilter`).
    """

    vocab_size: int = 4096
    pattern: str = "gpt4"
    val_fraction: float = 0.05
    seed: int = 0
    shard_tokens: int = 10_000_000
    tokenizer_sample_chars: int = 0
    workers: int = 0
    clean: CleanConfig = field(default_factory=CleanConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    files: FileFilter = field(default_factory=FileFilter)

    def __post_init__(self) -> None:
        tables = ("clean", "dedup", "files")
        values = {k: v for k, v in dataclasses.asdict(self).items() if k not in tables}
        problems = check_table(values, PREPARE_RULES)
        for name, kind in (("clean", CleanConfig), ("dedup", DedupConfig), ("files", FileFilter)):
            if not isinstance(getattr(self, name), kind):
                problems.append(Problem(name, f"{name} must be a {kind.__name__}"))
        if isinstance(self.pattern, str):  # the tokenizer's own check, before any work
            try:
                resolve_pattern(self.pattern)
            except ValueError as e:
                problems.append(Problem("pattern", str(e)))
        if problems:
            raise ConfigError(problems_message(problems, "prepare config"))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PrepareConfig:
        """Build from a mapping (e.g. a TOML file) with optional ``clean``, ``dedup`` and ``files``
        tables,
        checking every value first: one ConfigError lists every unknown key and every value of
        the wrong type or out of range, each naming where it came from (the file, or the
        override: a :class:`tinygradlm.schema.Settings`), the dotted key and what was
        expected."""
        where = values.where if isinstance(values, Settings) else "prepare config"
        tables = {"clean": TABLE, "dedup": TABLE, "files": TABLE}
        problems = check_table(values, {**PREPARE_RULES, **tables})
        if isinstance(values, Mapping) and isinstance(values.get("clean"), Mapping):
            problems += check_clean_values(values["clean"], "clean.")
        if isinstance(values, Mapping) and isinstance(values.get("dedup"), Mapping):
            problems += check_table(values["dedup"], DEDUP_RULES, "dedup.")
        if isinstance(values, Mapping) and isinstance(values.get("files"), Mapping):
            problems += check_table(values["files"], FILE_RULES, "files.")
        if problems:
            raise ConfigError(problems_message(problems, where))
        values = dict(values)
        if "clean" in values:
            values["clean"] = CleanConfig.from_dict(values["clean"])
        if "dedup" in values:
            values["dedup"] = DedupConfig.from_dict(values["dedup"])
        if "files" in values:
            values["files"] = FileFilter.from_dict(values["files"])
        return cls(**values)


TABLE = Rule("table")
PREPARE_RULES: dict[str, Rule] = {
    # the shards store token ids as uint32 (docs/shards.md), and no vocabulary comes near this
    "vocab_size": Rule("int", 257, 2**31 - 1, doc="tokens, 256 bytes and <|endoftext|> included"),
    "pattern": Rule("str", doc='the pre-tokenization split: "gpt2", "gpt4" or a regex'),
    "val_fraction": Rule("number", 0, 1, open_high=True, doc="the share held out"),
    "seed": Rule("int", 0, doc="the train/val split"),
    "shard_tokens": Rule("int", 1, MAX_TOKENS, doc="tokens per shard file (its count is an int32)"),
    "tokenizer_sample_chars": Rule("int", 0, doc="text that trains the tokenizer (0: all)"),
    "workers": Rule("int", 0, doc="processes that encode the shards (0: every available core)"),
}


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
    lost.

    Nothing in ``out_dir`` changes until the new output is complete: every setting and source
    is checked, and the documents read, before anything is written; the tokenizer, shards and
    report are then built in a temporary directory beside ``out_dir`` and put in its place in
    one step (``tinygradlm.atomic.atomic_directory``). A failure or Ctrl-C at any point leaves
    the earlier preparation as it was; with ``overwrite``, it is replaced only by a complete
    new one. Files in ``out_dir`` that are not a preparation's own stay where they are.
    """
    config = config or PrepareConfig()
    out = Path(out_dir)
    named = sources is not None
    earlier = _check_before_writing(inputs, out, config, sources, overwrite)
    started = time.perf_counter()

    plan = (
        [(s.name, s.paths) for s in sources]
        if named
        else [(source_name(inputs), tuple(Path(p) for p in inputs or ()))]
    )
    weights = normalised_weights(sources) if named else [1.0]
    data = [
        read_and_clean(
            name,
            paths,
            config.clean,
            config.dedup,
            weight=weight,
            directory=Path(name) if named else Path(),  # relative to the output, for now
            named=named,
            log=log,
            files=config.files,
        )
        for (name, paths), weight in zip(plan, weights, strict=True)
    ]
    if len(data) > 1 and config.dedup.exact:
        remove_cross_source_duplicates(data, log)
    for source in data:
        if named:
            log(f"== source {source.name!r} (weight {source.weight:.3f})")
        log(source.cleaning.merge(source.dedup).summary())
        source.train, source.val = split_documents(source.kept, config.val_fraction, config.seed)

    tokenizer, sample_chars = _train_tokenizer(data, weights, config, log)
    report: dict[str, Any] = {
        "inputs": [str(p) for _, paths in plan for p in paths]
        or ["pydoc_data.topics (the standard library's help topics)"],
        "config": _jsonable(dataclasses.asdict(config)),
    }
    if named:
        report["mixture"] = {s.name: s.weight for s in data}
    with atomic_directory(out, replace=True, keep=lambda name: name not in earlier) as building:
        for source in data:
            source.dir = building / source.dir
        tokenizer.save(building / TOKENIZER_FILE)
        written = _write_splits(tokenizer, data, building, config)
        report |= report_body(
            tokenizer, data, written.splits, written.stats, sample_chars, config.pattern, building
        )
        report["seconds"] = round(time.perf_counter() - started, 2)
        write_atomic(
            building / REPORT_FILE, json.dumps(report, indent=2, ensure_ascii=False) + "\n"
        )
    for source in data:
        source.dir = out / source.dir.relative_to(building)
    _log_summary(report, out, log)
    return report


def _check_before_writing(
    inputs: Sequence[str | Path] | None,
    out: Path,
    config: PrepareConfig,
    sources: Sequence[Source] | None,
    overwrite: bool,
) -> set[str]:
    """Every check that needs no reading of documents, before any work: the sources, the
    output directory and an earlier preparation there (refused unless ``overwrite``); the
    settings were checked whole when the config was built. Returns the names in
    ``out`` that are the earlier preparation's own, which the new output replaces."""
    if sources is not None:
        if inputs:
            raise DataError("give either input paths or named sources, not both")
        check_sources(sources)
    writable_directory(out, "prepare --out", DataError)
    existing = _existing_output(out)
    if existing and not overwrite:
        raise DataError(
            f"{out}: already holds prepared data ({existing[0].relative_to(out)}, …); choose "
            f"another --out or pass --overwrite"
        )
    earlier = _earlier_output(out) if existing else {TOKENIZER_FILE, REPORT_FILE}
    for name in [s.name for s in sources or ()]:
        if name not in earlier and os.path.lexists(out / name):
            raise DataError(
                f"{out / name}: already exists and is not a source folder of a preparation in "
                f"{out}; choose another --out or another name for source {name!r}"
            )
    return earlier


def _train_tokenizer(
    data: Sequence[SourceData], weights: Sequence[float], config: PrepareConfig, log: Any
) -> tuple[Tokenizer, list[int]]:
    """The tokenizer trained on a sample of the sources' training text that follows their
    weights, and the characters each source gave to the sample."""
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
    return tokenizer, sample_chars


@dataclass
class _Written:
    """What the shards of every source and split hold: the report's ``splits`` and the corpus
    statistics of each (source, split)."""

    splits: dict[str, dict[str, Any]]
    stats: list[dict[str, CorpusStats]] = field(default_factory=list)  # per source, by split


def _write_splits(
    tokenizer: Tokenizer,
    data: Sequence[SourceData],
    out: Path,
    config: PrepareConfig,
) -> _Written:
    """Encode and write the shards of each source's train and val documents, counting as they
    stream by."""
    splits = {
        split: {"documents": 0, "characters": 0, "tokens": 0, "shards": []} for split in SPLITS
    }
    written = _Written(splits)
    for source in data:
        split_stats: dict[str, CorpusStats] = {}
        for split, split_docs in (("train", source.train), ("val", source.val)):
            stats = split_stats[split] = CorpusStats(tokenizer, delimiter=tokenizer.eot_token)
            paths = write_shards(
                _token_stream(tokenizer, split_docs, stats, config.workers),
                source.dir,
                split=split,
                vocab_size=tokenizer.vocab_size,
                shard_tokens=config.shard_tokens,
            )
            splits[split]["documents"] += len(split_docs)
            splits[split]["characters"] += stats.characters
            splits[split]["tokens"] += sum(shard_info(p).num_tokens for p in paths)
            splits[split]["shards"] += [p.relative_to(out).as_posix() for p in paths]
        written.stats.append(split_stats)
    return written


def _log_summary(report: Mapping[str, Any], out: Path, log: Any) -> None:
    log(summary(report))
    for split, info in report["splits"].items():
        log(
            f"{split}: {info['documents']:,} documents, {info['tokens']:,} tokens in "
            f"{len(info['shards'])} shard(s)"
        )
    log(
        f"tokenizer: {report['tokenizer']['vocab_size']:,} tokens, "
        f"{report['tokenizer']['characters_per_token']:.2f} characters per token; "
        f"wrote {out}/ in {report['seconds']:.1f} s"
    )


def _token_stream(
    tokenizer: Tokenizer,
    docs: Sequence[Document],
    stats: CorpusStats | None = None,
    workers: int = 1,
) -> Iterator[np.ndarray]:
    """Each document as ``[<|endoftext|>, its tokens…]``: the delimiter precedes every document,
    as in llm.c's data scripts, so a model sees the start of a document after the token. With
    ``stats``, each document and its tokens are counted there as they stream by. A literal
    "<|endoftext|>" inside a document is text, not a delimiter. ``workers`` processes encode
    (:func:`.encoding.encode_batches`; 0: every available core), which also count each batch's
    characters and ids for ``stats``."""
    eot = np.array([tokenizer.eot_token], dtype=np.uint32)
    texts = [doc.text for doc in docs]
    for batch in encode_batches(tokenizer, texts, workers, count=stats is not None):
        if stats is not None:  # the batch's characters and ids, counted where it was encoded
            stats.add_counts(batch.counts)
        batch_texts = texts[batch.start : batch.start + len(batch.ids)]
        for text, tokens in zip(batch_texts, batch.ids, strict=True):
            yield eot
            if stats is not None:
                stats.add(text, tokens, counted=True)
            yield tokens


def _existing_output(out: Path) -> list[Path]:
    """Prepared data already in ``out``: its tokenizer, shards, and shards one folder down."""
    if not out.is_dir():
        return []
    found = sorted(out.glob(TOKENIZER_FILE)) + sorted(out.glob("*.bin"))
    return found + sorted(out.glob("*/*.bin"))


def _earlier_output(out: Path) -> set[str]:
    """The names in ``out`` that belong to the preparation there: its tokenizer and report, its
    flat layout's shards and its mixture's source folders. The rest (other folders, plots,
    notes) is not ``prepare``'s and moves into the new output as it is."""
    names = {TOKENIZER_FILE, REPORT_FILE}
    names |= {p.name for split in SPLITS for p in find_shards(out, split)}
    earlier = prepared_mixture(out) or {}
    return names | {name for name in earlier if SOURCE_NAME.fullmatch(name)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
