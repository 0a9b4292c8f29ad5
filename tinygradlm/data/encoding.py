"""Encoding documents for the shards, in worker processes when there is enough text.

The documents are cut into consecutive batches (:func:`_batches`: about ``BATCH_CHARS``
characters, and at least ``BATCHES_PER_WORKER`` per worker so that none waits long for the
last); each worker process encodes whole batches, and the parent takes the results back in the
documents' order, so the ids, and the shards written from them, are those of one process
(tests/data/test_prepare.py compares the bytes). At most ``2 × workers`` batches are in flight,
so memory stays bounded whatever the corpus.

The parent's share is kept to O(batches + documents) so that N workers take about 1/N of the
time (docs/performance.md, "Tokenizer"):

- Texts are not sent. A forked worker (Linux) starts with the parent's list of texts and its
  tokenizer, whose tables and compiled kernel the parent loads before the fork, so a task is
  two indices and a worker starts in milliseconds.
- Ids are not pickled back. Each batch in flight has a slot in a shared memory map made before
  the fork; the worker writes the batch's ids there and returns only each document's count,
  and the parent copies the slot out (one ``memcpy``) and slices it into documents. A batch
  whose ids do not fit its slot (a document much longer than a batch) comes back pickled.
- The statistics that take time in proportion to the text (:class:`.corpus.TextCounts`: each
  character's and token's count, the UTF-8 bytes) are counted by the worker with the batch,
  when asked for (:func:`encode_batches`), and come back as a few small arrays.
- Where there is no fork (macOS, Windows: ``spawn``), a worker rebuilds the tokenizer (Numba's
  cached kernels), the texts of each batch are sent and the ids come back pickled: the same
  results, with more copying.

A failure to encode a document is a DataError naming the document's index, from a worker too.
"""

from __future__ import annotations

import mmap
import multiprocessing
import signal
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..machine import available_cores
from ..tokenizer import Tokenizer
from .corpus import TextCounts

# A batch: about this many characters of consecutive documents (at least one document) ...
BATCH_CHARS = 1 << 20
# ... or fewer, so that each worker gets at least this many batches.
BATCHES_PER_WORKER = 8
# Less text than this is encoded in the calling process: starting forked workers and filling
# and draining their pipeline costs about 0.1 s, what they save on ~4 M characters with 2 cores
# (bench/prepare_encoding.py; docs/performance.md, "Tokenizer"), so 1.5 times that ...
PARALLEL_MIN_CHARS = 6 << 20
# ... and this where workers are spawned: each starts a fresh interpreter that imports NumPy and
# Numba and loads the kernel, most of a second of CPU.
SPAWN_MIN_CHARS = 64 << 20
# A batch's slot in the shared map holds this many ids per character of the batch's size:
# English text gives about 0.3 ids per character.
SLOT_IDS_PER_CHAR = 2


def resolve_workers(workers: int) -> int:
    """``workers``, with 0 meaning every available core."""
    return workers if workers > 0 else available_cores()


@dataclass
class Batch:
    """Consecutive documents, ``texts[start : start + len(ids)]``: each one's ids (uint32), and
    their :class:`.corpus.TextCounts` when asked for."""

    start: int
    ids: list[np.ndarray]
    counts: TextCounts | None = None


def encode_documents(
    tokenizer: Tokenizer, texts: Sequence[str], workers: int = 1
) -> Iterator[np.ndarray]:
    """Each text's ids as uint32, in order; special-token strings in a text are ordinary text.
    With ``workers`` > 1 (0: every available core) and enough text, batches of texts are
    encoded in that many processes."""
    for batch in encode_batches(tokenizer, texts, workers):
        yield from batch.ids


def encode_batches(
    tokenizer: Tokenizer, texts: Sequence[str], workers: int = 1, *, count: bool = False
) -> Iterator[Batch]:
    """:func:`encode_documents` a batch of documents at a time, with the batch's
    :class:`.corpus.TextCounts` if ``count``: counted where it was encoded."""
    workers = resolve_workers(workers)
    chars = sum(map(len, texts))
    if chars >= 1 << 16:
        tokenizer.load_kernel()  # short documents too, then
    if workers <= 1 or not texts or chars < (PARALLEL_MIN_CHARS if _forks() else SPAWN_MIN_CHARS):
        for start, stop in _batches(texts, BATCH_CHARS):
            ids, _, counts = _encode_texts(tokenizer, texts[start:stop], start, count)
            yield Batch(start, [a.astype(np.uint32, copy=False) for a in ids], counts)
        return
    batch_chars = min(BATCH_CHARS, max(1, chars // (BATCHES_PER_WORKER * workers)))
    batches = _batches(texts, batch_chars)
    workers = min(workers, len(batches))
    yield from _encode_in_workers(tokenizer, texts, batches, workers, batch_chars, count)


def _forks() -> bool:
    """Whether workers start by fork (Linux), else spawn (macOS, Windows)."""
    return "fork" in multiprocessing.get_all_start_methods()


def _encode_texts(
    tokenizer: Tokenizer, texts: Sequence[str], start: int, count: bool
) -> tuple[list[np.ndarray], np.ndarray, TextCounts | None]:
    """(each text's ids, as uint16 where the vocabulary allows; their lengths; their counts if
    ``count``) of ``texts``, which start at document ``start``."""
    ids = [_encode(tokenizer, text, start + i) for i, text in enumerate(texts)]
    lengths = np.array([a.size for a in ids], dtype=np.int64)
    return ids, lengths, TextCounts.of(texts, ids) if count else None


def _encode(tokenizer: Tokenizer, text: str, index: int) -> np.ndarray:
    """One document's ids, uint16 where the vocabulary allows (the caller widens them)."""
    try:
        return tokenizer.encode_to_array(text, disallowed_special=())
    except DataError as e:
        raise DataError(f"document {index}: {e}") from None


def _batches(texts: Sequence[str], batch_chars: int) -> list[tuple[int, int]]:
    """(start, stop) of consecutive texts of about ``batch_chars`` characters each."""
    batches, start, chars = [], 0, 0
    for i, text in enumerate(texts):
        chars += len(text)
        if chars >= batch_chars:
            batches.append((start, i + 1))
            start, chars = i + 1, 0
    if start < len(texts):
        batches.append((start, len(texts)))
    return batches


def _encode_in_workers(
    tokenizer: Tokenizer,
    texts: Sequence[str],
    batches: list[tuple[int, int]],
    workers: int,
    batch_chars: int,
    count: bool,
) -> Iterator[Batch]:
    """The batches encoded by ``workers`` processes, in order, at most two per worker in flight
    (the module docstring has the design)."""
    global _worker
    in_flight = 2 * workers
    if _forks():
        context, args = multiprocessing.get_context("fork"), None
        _warm_up(tokenizer)  # the forked workers inherit the loaded kernel
        slot_ids = SLOT_IDS_PER_CHAR * 2 * batch_chars  # a batch without a long document
        shared = mmap.mmap(-1, max(1, in_flight * slot_ids) * 4)  # anonymous: the children's too
        slots = np.frombuffer(shared, np.uint32, in_flight * slot_ids).reshape(in_flight, -1)
        _worker = _Worker(tokenizer, texts, slots)
    else:  # macOS and Windows start a fresh interpreter, which rebuilds the tokenizer
        context = multiprocessing.get_context("spawn")
        args = (tokenizer.ranks, tokenizer.pattern, tokenizer.special_tokens)
        slots = None
    try:
        with context.Pool(workers, _start_worker, (args,)) as pool:
            pending: deque = deque()
            for k, (start, stop) in enumerate(batches):
                if slots is not None:  # batch k's slot was batch (k - in_flight)'s, taken back
                    task = (start, stop, count, k % in_flight)
                else:
                    task = (start, texts[start:stop], count)
                pending.append((start, pool.apply_async(_encode_batch, task)))
                if len(pending) == in_flight:
                    yield _received(*pending.popleft(), slots)
            while pending:
                yield _received(*pending.popleft(), slots)
    finally:
        _worker = None


def _received(
    start: int, result: multiprocessing.pool.AsyncResult, slots: np.ndarray | None
) -> Batch:
    """A worker's batch back into its documents' ids. Ids in a slot are copied out, as the
    next batch in it may be written while these are still in use."""
    ids, lengths, counts = result.get()
    ends = np.cumsum(lengths)
    if isinstance(ids, int):
        assert slots is not None
        ids = slots[ids, : ends[-1]].copy()
    return Batch(start, np.split(ids, ends[:-1]), counts)


class _Worker:
    """What a forked worker finds in the module: the tokenizer, the texts and the slots."""

    def __init__(self, tokenizer: Tokenizer, texts: Sequence[str], slots: np.ndarray) -> None:
        self.tokenizer, self.texts, self.slots = tokenizer, texts, slots


_worker: _Worker | None = None


def _warm_up(tokenizer: Tokenizer) -> None:
    """Load the tokenizer's tables and the Numba kernel, and read the character tables, by
    encoding a few characters, so that no worker does it again."""
    tokenizer.load_kernel()
    tokenizer.encode_to_array("Warm up, 1 2 3.")


def _start_worker(args: tuple | None) -> None:
    """A worker's tokenizer: the parent's, as forked, or rebuilt from ``args`` (its ranks,
    pattern and special tokens) in a spawned interpreter.

    Stopping is the parent's: a worker ignores Ctrl-C (the terminal sends it to the whole
    process group) and ends at once on SIGTERM, which the parent's pool sends when it stops,
    rather than running a handler it inherited by fork and printing a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    global _worker
    if args is not None:
        _worker = _Worker(Tokenizer(*args), (), np.zeros((0, 0), dtype=np.uint32))
        _warm_up(_worker.tokenizer)
    assert _worker is not None


def _encode_batch(
    start: int, stop_or_texts: int | Sequence[str], count: bool, slot: int | None = None
) -> tuple[np.ndarray | int, np.ndarray, TextCounts | None]:
    """(the batch's ids end to end, or the slot they were written to; each text's count of
    ids; the batch's TextCounts if ``count``). The batch is texts[start:stop] of the forked
    texts, with a slot, or the texts themselves."""
    assert _worker is not None
    if isinstance(stop_or_texts, int):
        texts = _worker.texts[start:stop_or_texts]
    else:
        texts = stop_or_texts
    arrays, lengths, counts = _encode_texts(_worker.tokenizer, texts, start, count)
    total = int(lengths.sum())
    if slot is not None and total <= _worker.slots.shape[1]:
        out: np.ndarray | int = slot
        ids = _worker.slots[slot, :total]
    else:
        out = ids = np.empty(total, dtype=np.uint32)
    if arrays:
        np.concatenate(arrays, out=ids)
    return out, lengths, counts
