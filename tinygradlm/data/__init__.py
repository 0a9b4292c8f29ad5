"""The data path: raw text → cleaned, deduplicated documents → token shards → batches.

- :mod:`.documents`: read text files, directories and JSONL; the embedded default corpus.
- :mod:`.clean`: normalisation, C4-style line filters, Gopher-style document filters
  (:mod:`.quality`: the signals those filters measure).
- :mod:`.dedup`: exact and MinHash-LSH near-duplicate removal.
- :mod:`.report`: what was removed, by which rule, with examples.
- :mod:`.corpus`: the statistics of a prepared corpus, and its printed summary
  (:mod:`.report_schema`: the shape of report.json, checked when it is read).
- :mod:`.shards`: llm.c-compatible token shards, written atomically, read memory-mapped.
- :mod:`.loader`: deterministic, resumable batches, sliced across data-parallel ranks
  (:mod:`.sampler`: the epoch and batch position the loaders share).
- :mod:`.mix`: which sources a run mixes, at which weights (the ``data.mix`` setting).
- :mod:`.mixture`: batches from several sources in those proportions (Tijdeman's rule).
- :mod:`.sft`: prompt/response JSON Lines for fine-tuning, the loss on the responses only.
- :mod:`.prepare`: all of it in order (``tinygradlm prepare``): the named sources and their
  reading (:mod:`.sources`), the train/val split and the tokenizer sample (:mod:`.splits`), and
  report.json's accounting (:mod:`.prepare_report`).

The tokenizer is :mod:`tinygradlm.tokenizer`. See ``docs/data.md``, ``docs/shards.md``,
``docs/mixtures.md``.
"""

from ..errors import DataError
from .clean import CleanConfig, clean_documents
from .dedup import DedupConfig, deduplicate
from .documents import Document, default_corpus, read_documents, write_documents
from .loader import DataLoader
from .mixture import MixtureLoader
from .report import Report
from .shards import read_shard, shard_info, write_shard, write_shards

__all__ = [
    "CleanConfig",
    "DataError",
    "DataLoader",
    "DedupConfig",
    "Document",
    "MixtureLoader",
    "Report",
    "clean_documents",
    "deduplicate",
    "default_corpus",
    "read_documents",
    "read_shard",
    "shard_info",
    "write_documents",
    "write_shard",
    "write_shards",
]
