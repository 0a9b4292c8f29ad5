"""Finding and reading a tokenizer in any of the formats a checkpoint or a run may carry.

Every command that needs a checkpoint's tokenizer goes through :func:`checkpoint_tokenizer`, so
they all choose the same file: the first present of

    tokenizer.txt                 ours (what ``prepare`` writes and every checkpoint carries)
    tokenizer.json                Hugging Face's ``tokenizers`` file
    vocab.json (+ merges.txt)     GPT2Tokenizer's files

A checkpoint written by this package carries all of them made from one tokenizer; one read
from a Hugging Face model directory carries what that directory has.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import DataError
from .bpe import Tokenizer
from .files import TOKENIZER_FILE
from .hf import HF_MERGES_FILE, HF_TOKENIZER_FILE, HF_VOCAB_FILE

# the files a tokenizer is read from, in the order they are preferred
TOKENIZER_FILE_ORDER = (TOKENIZER_FILE, HF_TOKENIZER_FILE, HF_VOCAB_FILE)


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """The tokenizer in ``path``, read by its name: a ``.json`` file as Hugging Face's (a
    ``vocab.json`` with the ``merges.txt`` beside it, any other as a ``tokenizer.json``;
    :meth:`Tokenizer.from_hf`), anything else as our text format."""
    path = Path(path)
    if path.suffix == ".json":
        return Tokenizer.from_hf(path)
    return Tokenizer.load(path)


def find_tokenizer_file(files: Iterable[str | os.PathLike[str]], where: Any) -> Path:
    """The tokenizer file to read among ``files`` (see the module docstring for the order); a
    DataError naming ``where`` and the files there when none is one. A vocab.json counts only
    with a merges.txt beside it."""
    paths = [Path(p) for p in files]
    by_name = {p.name: p for p in paths}
    for name in TOKENIZER_FILE_ORDER:
        path = by_name.get(name)
        if path is not None and (name != HF_VOCAB_FILE or (path.parent / HF_MERGES_FILE).is_file()):
            return path
    present = ", ".join(sorted(by_name)) or "no tokenizer files"
    raise DataError(
        f"{where}: no tokenizer to read (looked for {', '.join(TOKENIZER_FILE_ORDER[:2])} or "
        f"{HF_VOCAB_FILE} with {HF_MERGES_FILE}; found {present}); give the tokenizer the "
        "model was trained with"
    )


def checkpoint_tokenizer(ckpt: Any) -> tuple[Tokenizer, Path]:
    """The tokenizer of a loaded checkpoint (anything with ``path`` and ``tokenizer_files``,
    as ``tinygradlm.checkpoint.load_checkpoint`` returns) and the file it was read from."""
    path = find_tokenizer_file(ckpt.tokenizer_files, ckpt.path)
    return load_tokenizer(path), path
