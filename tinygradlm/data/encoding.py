"""Encoding documents for the shards, in worker processes when there is enough text.

The documents are cut into consecutive batches of about ``BATCH_CHARS`` characters; each worker
process holds its own copy of the tokenizer and encodes whole batches, and the parent takes the
results back in the documents' order, so the ids, and the shards written from them, are those
of one process (tests/data/test_prepare.py compares the bytes). At most two batches per worker
are in flight, so memory stays bounded whatever the corpus.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np

from ..tokenizer import Tokenizer

# A batch: this many characters of consecutive documents (at least one document).
BATCH_CHARS = 1 << 20
# Less text than this is encoded in the calling process: the kernel encodes ~30 MB/s on one
# core, and on a corpus of a few MB starting the workers and sending the ids back takes longer
# than the time they save (docs/performance.md, "Tokenizer").
PARALLEL_MIN_CHARS = 16 << 20


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_workers(workers: int) -> int:
    """``workers``, with 0 meaning every available core."""
    return workers if workers > 0 else available_cores()


def encode_documents(
    tokenizer: Tokenizer, texts: Sequence[str], workers: int = 1
) -> Iterator[np.ndarray]:
    """Each text's ids as uint32, in order; special-token strings in a text are ordinary text.
    With ``workers`` > 1 (0: every available core) and enough text, batches of texts are
    encoded in that many processes."""
    workers = resolve_workers(workers)
    chars = sum(map(len, texts))
    if chars >= 1 << 16:
        tokenizer.load_kernel()  # short documents too, then
    if workers <= 1 or chars < PARALLEL_MIN_CHARS:
        for text in texts:
            yield _encode(tokenizer, text)
        return
    batches = _batches(texts)
    workers = min(workers, len(batches))
    global _worker_tokenizer, _worker_texts
    forked = "fork" in multiprocessing.get_all_start_methods()
    if forked:  # a forked worker starts with the tokenizer and the texts: nothing to send
        context, args = multiprocessing.get_context("fork"), None
        _worker_tokenizer, _worker_texts = tokenizer, texts
    else:  # macOS and Windows start a fresh interpreter, which rebuilds the tokenizer
        context = multiprocessing.get_context("spawn")
        args = (tokenizer.ranks, tokenizer.pattern, tokenizer.special_tokens)
    try:
        with context.Pool(workers, _start_worker, (args,)) as pool:
            pending: deque = deque()
            for start, stop in batches:
                batch = (start, stop) if forked else texts[start:stop]
                pending.append(pool.apply_async(_encode_batch, (batch,)))
                if len(pending) >= 2 * workers:
                    yield from _split(*pending.popleft().get())
            while pending:
                yield from _split(*pending.popleft().get())
    finally:
        _worker_tokenizer, _worker_texts = None, None


def _encode(tokenizer: Tokenizer, text: str) -> np.ndarray:
    return tokenizer.encode_to_array(text, disallowed_special=()).astype(np.uint32, copy=False)


def _batches(texts: Sequence[str]) -> list[tuple[int, int]]:
    """(start, stop) of consecutive texts of about BATCH_CHARS characters each."""
    batches, start, chars = [], 0, 0
    for i, text in enumerate(texts):
        chars += len(text)
        if chars >= BATCH_CHARS:
            batches.append((start, i + 1))
            start, chars = i + 1, 0
    if start < len(texts):
        batches.append((start, len(texts)))
    return batches


def _split(ids: np.ndarray, lengths: np.ndarray) -> Iterator[np.ndarray]:
    """A batch's ids back into its documents."""
    yield from np.split(ids, np.cumsum(lengths)[:-1])


_worker_tokenizer: Tokenizer | None = None
_worker_texts: Sequence[str] | None = None


def _start_worker(args: tuple | None) -> None:
    """A worker's tokenizer: the parent's, as forked, or rebuilt from ``args`` (its ranks,
    pattern and special tokens) in a spawned interpreter.

    Stopping is the parent's: a worker ignores Ctrl-C (the terminal sends it to the whole
    process group) and ends at once on SIGTERM, which the parent's pool sends when it stops,
    rather than running a handler it inherited by fork and printing a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    global _worker_tokenizer
    if args is not None:
        _worker_tokenizer = Tokenizer(*args)
    assert _worker_tokenizer is not None
    _worker_tokenizer.load_kernel()


def _encode_batch(batch: tuple[int, int] | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(the batch's ids end to end, each text's count): one array each to send back. The batch
    is (start, stop) into the forked texts, or the texts themselves."""
    assert _worker_tokenizer is not None
    if isinstance(batch, tuple):
        assert _worker_texts is not None
        batch = _worker_texts[batch[0] : batch[1]]
    arrays = [_encode(_worker_tokenizer, text) for text in batch]
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    return np.concatenate(arrays) if arrays else np.zeros(0, np.uint32), lengths
