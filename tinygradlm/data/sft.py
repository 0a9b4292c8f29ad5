"""Supervised fine-tuning data: prompt/response pairs from JSON Lines, as rows of tokens whose
loss falls on the response only.

The format: one JSON object per non-blank line, with a string prompt and a string response
(field names configurable)::

    {"prompt": "Reverse: abc\\n", "response": "cba"}

The template: each example is the token sequence

    [eot] + encode(prompt) + encode(response) + [eot]

(``eot`` the tokenizer's ``<|endoftext|>``, which also separates documents in pretraining, so
the model sees an example as a document of its own). The prompt and the response are encoded
separately, so their boundary is a token boundary; the separator between them, if any, is part
of the prompt text (a newline, ``"A:"``): this module adds nothing but the two eot tokens. Text
is encoded as ordinary text (``encode_ordinary``): an ``<|endoftext|>`` string in a record is
characters, not the special token.

A row of the batch is that sequence shifted as in pretraining, x = seq[:-1] and y = seq[1:],
with every target that is a prompt token set to ``IGNORE_INDEX`` (-100): the loss is the mean
over the response's tokens and the closing eot, the first of them predicted from the prompt's
last token. Rows are padded to ``seq_len`` (x with eot, y with -100) rather than packed, so no
example attends to another. An example longer than ``seq_len`` + 1 tokens is cut at the end
(counted in ``truncated``); one whose prompt fills the whole window has nothing left to learn
and is left out (counted in ``dropped``).

:class:`SFTLoader` deals the rows in batches exactly as :class:`~tinygradlm.data.DataLoader` deals
windows: epoch e in the order ``default_rng([seed, e]).permutation(n)``, global batch k the rows
order[k·B, (k+1)·B), rank r of P taking rows [r·B/P, (r+1)·B/P) of it, the state (epoch, batch)
for an exact resume on any number of ranks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..parse import parse_json
from .documents import check_unicode, decode_utf8, string_field
from .sampler import EpochSampler, SampledBatches, check_loader_args

__all__ = ["IGNORE_INDEX", "SFTData", "SFTLoader", "encode_example", "load_sft", "read_sft"]

IGNORE_INDEX = -100  # the target that adds nothing to the loss (GPT.forward_backward's default)


def read_sft(
    path: str | Path, *, prompt_key: str = "prompt", response_key: str = "response"
) -> list[tuple[str, str, str]]:
    """The records of a JSON Lines file as (prompt, response, ``path:line``) triples.

    A line that is not a JSON object with string fields ``prompt_key`` and ``response_key``
    raises a DataError naming ``path:line`` and what is wrong; so does invalid UTF-8 (with its
    line) and a file without any record.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    records = []
    # split on "\n" only: str.splitlines would also split inside a record at \x1c, \u2028, ...
    for number, line in enumerate(decode_utf8(path, data).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        record = parse_json(line, where, DataError)
        prompt = check_unicode(string_field(record, prompt_key, where), where)
        response = check_unicode(string_field(record, response_key, where), where)
        records.append((prompt, response, where))
    if not records:
        raise DataError(f"{path}: no records (expected JSON Lines of {{{prompt_key!r}: …}})")
    return records


def encode_example(tokenizer: Any, prompt: str, response: str) -> tuple[list[int], int]:
    """The template's tokens ``[eot] + prompt + response + [eot]`` and the prompt's length in
    tokens (not counting the opening eot)."""
    eot = tokenizer.eot_token
    if eot is None:
        raise DataError("the tokenizer has no <|endoftext|> token, which the template needs")
    p = tokenizer.encode_ordinary(prompt)
    r = tokenizer.encode_ordinary(response)
    return [eot, *p, *r, eot], len(p)


def example_row(
    tokens: Sequence[int], n_prompt: int, seq_len: int, pad: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """One row (x, y), each (seq_len,): the example shifted by one, cut to seq_len, padded (x
    with ``pad``, y with IGNORE_INDEX), targets on prompt tokens ignored. Also whether it was
    cut."""
    seq = np.asarray(tokens[: seq_len + 1], dtype=np.int64)
    x = np.full(seq_len, pad, dtype=np.int64)
    y = np.full(seq_len, IGNORE_INDEX, dtype=np.int64)
    x[: len(seq) - 1] = seq[:-1]
    y[: len(seq) - 1] = seq[1:]
    # y[j] is token j + 1 of the sequence: a prompt token for j + 1 <= n_prompt
    y[:n_prompt] = IGNORE_INDEX
    return x, y, len(tokens) > seq_len + 1


@dataclass
class SFTData:
    """Encoded examples: ``x`` and ``y`` (n, seq_len) int64, one row per example, in file order.

    ``truncated``: examples cut to seq_len; ``dropped``: examples left out because their prompt
    fills the window (no response token in it); ``sources``: each row's ``path:line``.
    """

    x: np.ndarray
    y: np.ndarray
    files: list[str]
    sources: list[str] = field(default_factory=list)
    truncated: int = 0
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.x)

    @property
    def seq_len(self) -> int:
        return self.x.shape[1]

    @property
    def target_tokens(self) -> int:
        """Tokens the loss is computed on: the response tokens and closing eots."""
        return int((self.y != IGNORE_INDEX).sum())

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the data for a resume: file names, row count, a hash of the rows."""
        digest = hashlib.sha256(self.x.tobytes() + self.y.tobytes()).hexdigest()
        return {"files": list(self.files), "examples": len(self), "sha256": digest}

    def summary(self) -> str:
        text = (
            f"{len(self):,} examples from {', '.join(self.files)}, {self.target_tokens:,} "
            f"target tokens"
        )
        if self.truncated:
            text += f"; {self.truncated:,} cut to seq_len {self.seq_len}"
        if self.dropped:
            text += f"; {self.dropped:,} left out (the prompt fills the window)"
        return text


def load_sft(
    paths: str | Path | Sequence[str | Path],
    tokenizer: Any,
    seq_len: int,
    *,
    prompt_key: str = "prompt",
    response_key: str = "response",
) -> SFTData:
    """Read and encode the JSON Lines file(s) ``paths`` into rows of ``seq_len`` tokens."""
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise DataError(f"load_sft: seq_len must be a positive integer, got {seq_len!r}")
    files = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    xs, ys, sources = [], [], []
    truncated = dropped = 0
    for path in files:
        for prompt, response, where in read_sft(
            path, prompt_key=prompt_key, response_key=response_key
        ):
            tokens, n_prompt = encode_example(tokenizer, prompt, response)
            x, y, cut = example_row(tokens, n_prompt, seq_len, pad=tokenizer.eot_token)
            truncated += cut
            if (y == IGNORE_INDEX).all():
                dropped += 1
                continue
            xs.append(x)
            ys.append(y)
            sources.append(where)
    if not xs:
        raise DataError(
            f"{', '.join(map(str, files))}: every example's prompt fills seq_len {seq_len}: "
            "nothing to learn; raise seq_len"
        )
    return SFTData(
        x=np.stack(xs),
        y=np.stack(ys),
        files=[p.name for p in files],
        sources=sources,
        truncated=truncated,
        dropped=dropped,
    )


class SFTLoader(SampledBatches):
    """Batches ``(x, y)`` of SFT rows for this rank, each (B // world_size, T) int64.

    The same scheme and interface as :class:`~tinygradlm.data.DataLoader` (``next_batch``,
    ``reset``, ``batches_per_epoch``, ``state_dict`` / ``load_state_dict``), over examples
    instead of windows. ``drop_last=False`` (for validation) keeps the last, partial batch of an
    epoch, filled up with rows whose every target is ignored, so each batch still has B rows.
    """

    def __init__(
        self,
        data: SFTData,
        *,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
    ) -> None:
        check_loader_args(
            "SFTLoader", batch_size=batch_size, rank=rank, world_size=world_size, seed=seed
        )
        if drop_last and len(data) < batch_size:
            raise DataError(
                f"SFTLoader: {len(data):,} examples ({', '.join(data.files)}), fewer than one "
                f"batch of B={batch_size}: use a smaller batch_size or more examples"
            )
        self.data = data
        self.seq_len = data.seq_len
        # the example order, this rank's examples of each batch, and the position (epoch, batch)
        self.sampler = EpochSampler(
            len(data),
            batch_size,
            rank=rank,
            world_size=world_size,
            seed=seed,
            shuffle=shuffle,
            drop_last=drop_last,
            owner="SFTLoader",
        )
        self._fingerprint = data.fingerprint()
        self._pad = np.full(self.seq_len, data.x[0, 0], dtype=np.int64)  # an eot: any valid id
        self._ignored = np.full(self.seq_len, IGNORE_INDEX, dtype=np.int64)

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """This rank's slice of the next global batch: x, y, each (B // world_size, T) int64."""
        rows = self.local_batch_size
        examples = self.sampler.next_indices()  # (≤ B/P,) fewer only in a partial last batch
        x = np.empty((rows, self.seq_len), dtype=np.int64)  # (B/P, T)
        y = np.empty((rows, self.seq_len), dtype=np.int64)  # (B/P, T)
        x[: len(examples)], y[: len(examples)] = self.data.x[examples], self.data.y[examples]
        # past the end of a partial last batch: rows that add nothing
        x[len(examples) :], y[len(examples) :] = self._pad, self._ignored
        return x, y

    def state_dict(self) -> dict[str, Any]:
        """The next batch (epoch, batch) and what fixes the batches (seed, shuffle, B, the data's
        fingerprint), as JSON-able values; rank and world_size are not part of it."""
        return {**self.sampler.state_dict(), "dataset": dict(self._fingerprint)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``: the next batch is the one that would have followed. The
        seed, shuffle, B and the data (rows and their hash) must match; a DataError lists every
        difference, and nothing changes unless all match."""
        self.sampler.load_state_dict(
            state,
            {"dataset": dict(self._fingerprint)},
            hint=" (the examples, their encoding or seq_len changed?)",
        )

    def __repr__(self) -> str:
        return (
            f"SFTLoader({len(self.data):,} examples, B={self.batch_size}, T={self.seq_len}, rank "
            f"{self.rank}/{self.world_size}, epoch {self.epoch}, batch "
            f"{self.batch_index}/{self.batches_per_epoch})"
        )
