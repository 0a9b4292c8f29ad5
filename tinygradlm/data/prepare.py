"""``tinygradlm prepare``: from raw text to a tokenizer and token shards, with a report.

    read → clean → deduplicate → split train/val → train the tokenizer on train → encode each
    document after an end-of-text token → write shards → tokenizer file and report.json

The output directory then holds everything training needs:

    OUT/tokenizer.txt        the trained tokenizer (docs/tokenizer.md)
    OUT/train_000000.bin …   token shards of the training split (docs/shards.md)
    OUT/val_000000.bin …     token shards of the validation split
    OUT/report.json          what was read, removed and why, and what was written
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

from ..tokenizer import Tokenizer
from .clean import CleanConfig, clean_documents
from .corpus import CorpusStats, summary
from .dedup import DedupConfig, deduplicate
from .documents import Document, default_corpus, read_documents
from .errors import DataError
from .shards import shard_info, write_shards

EOT = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.txt"
REPORT_FILE = "report.json"


@dataclass
class PrepareConfig:
    """Everything ``prepare`` does, with its defaults.

    vocab_size: the tokenizer's vocabulary, special tokens included. pattern: the
    pre-tokenization split, "gpt2", "gpt4" or a regex. val_fraction: the share of the text
    (in characters) held out for validation, whole documents at a time, chosen by ``seed``;
    a single document is split at a line boundary instead. shard_tokens: tokens per shard file.
    """

    vocab_size: int = 4096
    pattern: str = "gpt4"
    val_fraction: float = 0.05
    seed: int = 0
    shard_tokens: int = 10_000_000
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


def source_name(inputs: Sequence[str | Path] | None) -> str:
    """The name of the (single) source: its input's file or directory name, several joined by
    '+', or "default" for the embedded corpus."""
    if not inputs:
        return "default"
    return "+".join(Path(p).name or str(p) for p in inputs)


def _corpus_section(
    clean_report: Any,
    dedup_report: Any,
    split_stats: Mapping[str, CorpusStats],
    *,
    weight: float,
) -> dict[str, Any]:
    """One source's entry of report.json: documents read, removed per rule (cleaning, then
    dedup) and kept, and the corpus statistics per split and in all."""
    removed = {}
    for stage, stage_report in (("cleaning", clean_report), ("dedup", dedup_report)):
        for rule, count in stage_report.rules.items():
            removed[rule] = {"stage": stage, **dataclasses.asdict(count)}
    return {
        "weight": weight,
        "before": dataclasses.asdict(clean_report.before),
        "after_cleaning": dataclasses.asdict(clean_report.after),
        "after": dataclasses.asdict(dedup_report.after),
        "removed": removed,
        "splits": {split: s.to_dict() for split, s in split_stats.items()},
        "stats": CorpusStats.merge(list(split_stats.values())).to_dict(),
    }


def prepare(
    inputs: Sequence[str | Path] | None,
    out_dir: str | Path,
    config: PrepareConfig | None = None,
    *,
    overwrite: bool = False,
    log: Any = print,
) -> dict[str, Any]:
    """Run the whole data path; returns the report that is also written to ``report.json``.

    ``inputs``: files, directories or JSONL files; None or empty for the embedded default
    corpus (the standard library's pydoc topics). Refuses to write into a directory that already
    holds shards or a tokenizer unless ``overwrite``, so nothing already prepared is lost.
    """
    config = config or PrepareConfig()
    out = Path(out_dir)
    existing = sorted(out.glob("*.bin")) + sorted(out.glob(TOKENIZER_FILE)) if out.exists() else []
    if existing and not overwrite:
        raise DataError(
            f"{out}: already holds prepared data ({existing[0].name}, …); choose another "
            f"--out or pass --overwrite"
        )
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    if inputs:
        docs = list(read_documents(inputs))
        source = [str(p) for p in inputs]
    else:
        docs = default_corpus()
        source = ["pydoc_data.topics (the standard library's help topics)"]
    if not docs:
        raise DataError(f"no documents found in {', '.join(source)}")
    log(f"read {len(docs):,} documents from {', '.join(source)}")

    cleaned, clean_report = clean_documents(docs, config.clean)
    kept, dedup_report = deduplicate(cleaned, config.dedup)
    if not kept:
        raise DataError(
            "no documents are left after cleaning and deduplication: see the report above, "
            "and loosen the filters that removed them"
        )
    log(clean_report.merge(dedup_report).summary())

    train_docs, val_docs = split_documents(kept, config.val_fraction, config.seed)
    log(f"training the tokenizer: vocab {config.vocab_size:,}, pattern {config.pattern!r}")
    tokenizer = Tokenizer.train(
        [d.text for d in train_docs],
        config.vocab_size,
        pattern=config.pattern,
        special_tokens=(EOT,),
        progress=True,
    )
    tokenizer.save(out / TOKENIZER_FILE)

    splits: dict[str, Any] = {}
    split_stats: dict[str, CorpusStats] = {}
    for split, split_docs in (("train", train_docs), ("val", val_docs)):
        split_stats[split] = CorpusStats(tokenizer, delimiter=tokenizer.eot_token)
        stream = _token_stream(tokenizer, split_docs, split_stats[split])
        paths = write_shards(
            stream,
            out,
            split=split,
            vocab_size=tokenizer.vocab_size,
            shard_tokens=config.shard_tokens,
            overwrite=overwrite,
        )
        splits[split] = {
            "documents": len(split_docs),
            "characters": sum(len(d.text) for d in split_docs),
            "tokens": sum(shard_info(p).num_tokens for p in paths),
            "shards": [p.name for p in paths],
        }

    total_chars = sum(s["characters"] for s in splits.values())
    total_tokens = sum(s["tokens"] - s["documents"] for s in splits.values())
    report = {
        "inputs": source,
        "config": _jsonable(dataclasses.asdict(config)),
        "cleaning": clean_report.to_dict(),
        "dedup": dedup_report.to_dict(),
        "splits": splits,
        "tokenizer": {
            "file": TOKENIZER_FILE,
            "vocab_size": tokenizer.vocab_size,
            "pattern": config.pattern,
            "eot_token": tokenizer.eot_token,
            "characters_per_token": total_chars / max(total_tokens, 1),
        },
    }
    # one source for now; a mixture of several adds entries here, with their weights
    sources = {
        source_name(inputs): _corpus_section(clean_report, dedup_report, split_stats, weight=1.0)
    }
    overall_tokens = sum(s["stats"]["tokens"] for s in sources.values())
    for entry in sources.values():
        entry["token_share"] = entry["stats"]["tokens"] / max(overall_tokens, 1)
    report["sources"] = sources
    report["overall"] = {
        **_corpus_section(clean_report, dedup_report, split_stats, weight=1.0),
        "token_share": 1.0,
    }
    report["seconds"] = round(time.perf_counter() - started, 2)
    tmp = out / (REPORT_FILE + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out / REPORT_FILE)
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
