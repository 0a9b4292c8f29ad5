"""Writing checkpoints: a directory built beside its final name and renamed into place.

A checkpoint is written into ``run_dir/.tmp-ckpt_<step>-<pid>/`` (:func:`tinygradlm.atomic.
atomic_directory`), every file is fsynced, manifest.json (each file's size and SHA-256) is
written last, and the directory is renamed to ``ckpt_<step:08d>`` in one ``os.replace``: a
reader sees a complete checkpoint or none. Parameters or moments that are not finite are
refused before anything is written. The files are canonical (``layout.write_safetensors``,
``layout.to_json``): the same state is written as the same bytes.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_directory, fsync_directory, fsync_file
from ..errors import CheckpointError, DataError
from ..lora import LoRAAdapters
from ..tokenizer import (
    TOKENIZER_FILE,
    Tokenizer,
    find_tokenizer_file,
    load_tokenizer,
)
from .layout import (
    CONFIG_FILE,
    FORMAT,
    MANIFEST_FILE,
    OPTIMIZER_FILE,
    OPTIMIZER_HYPERPARAMETERS,
    RESERVED_NAMES,
    TRAINER_FILE,
    VERSION,
    check_step,
    hf_config,
    list_checkpoints,
    model_file,
    sha256,
    to_json,
    write_safetensors,
)
from .peft import write_adapters

_TMP_PREFIX = ".tmp-ckpt_"  # atomic_directory builds ckpt_<step> as .tmp-ckpt_<step>-<pid>
_TRASH_PREFIX = ".trash-ckpt_"


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    step: int,
    model: Any,
    optimizer: Any,
    trainer_state: Mapping[str, Any],
    *,
    tokenizer_files: Iterable[str | os.PathLike[str]] = (),
    keep_last: int | None = 3,
    extra_config: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``run_dir/ckpt_{step:08d}/`` atomically and return its path.

    ``model`` is a ``GPT``; ``optimizer`` an ``AdamW`` on its buffers, or on its LoRA adapters'
    buffers when it has adapters (written as PEFT writes them: adapter_config.json and
    adapter_model.safetensors, ``checkpoint.peft``). ``trainer_state`` must be
    JSON-able (NumPy scalars are converted; a ``Generator``'s ``bit_generator.state`` is) and
    finite; it is written as trainer.json with ``"step": step`` added (a different ``step`` in it
    is an error). ``tokenizer_files`` are copied in under their own names, and the tokenizer
    among them is also written in the formats they lack (:func:`tokenizer_copies`:
    tokenizer.txt, tokenizer.json, tokenizer_config.json); config.json's ``bos_token_id`` and
    ``eos_token_id`` are its ``<|endoftext|>`` id (:func:`token_ids`). ``extra_config`` adds
    keys to config.json (``bos_token_id``, ``eos_token_id``, …, over those). Afterwards only the
    newest ``keep_last`` checkpoints are kept (None keeps all).

    Raises CheckpointError, having written nothing, when a parameter or moment is not finite,
    the trainer state is not JSON-able, a tokenizer file is missing, or the checkpoint exists.
    """
    run_dir = Path(run_dir)
    step = check_step(step)
    if keep_last is not None and (isinstance(keep_last, bool) or keep_last < 1):
        raise CheckpointError(f"keep_last must be >= 1 or None, got {keep_last!r}")
    final = run_dir / f"ckpt_{step:08d}"
    if final.exists():
        raise CheckpointError(f"{final}: a checkpoint for step {step} already exists")

    # everything that can be refused is checked before the first byte is written
    lora = getattr(model, "lora", None)
    arrays = {"parameters": model.flat_params, "AdamW m": optimizer.m, "AdamW v": optimizer.v}
    if lora is not None:
        arrays["LoRA adapters"] = lora.flat_params
    for what, array in arrays.items():
        _refuse_non_finite(what, array)
    trainer = {"step": step, **trainer_state}
    if trainer["step"] != step:
        raise CheckpointError(
            f"trainer_state['step'] is {trainer_state['step']!r} but the checkpoint is for "
            f"step {step}"
        )
    trainer_json = to_json(trainer, "trainer_state")
    tokenizer = _tokenizer_files(tokenizer_files)
    readable = read_tokenizer(tokenizer)
    extra = {**_end_of_text_ids(readable), **(extra_config or {})}
    config_json = to_json(hf_config(model.config, model.dtype, extra), "config")
    made = tokenizer_copies(readable, tokenizer, model.config.block_size)
    names = [p.name for p in tokenizer] + list(made)
    optimizer_tensors = {
        "m": np.ascontiguousarray(optimizer.m),
        "v": np.ascontiguousarray(optimizer.v),
        "step": np.array([optimizer.step_count], dtype=np.int64),
    }
    # the hyperparameters ride in the header's string metadata, repr() so they read back exactly
    state = optimizer.state_dict()
    hyper = {key: float(state[key]) for key in OPTIMIZER_HYPERPARAMETERS}
    for key, value in hyper.items():
        if not math.isfinite(value):
            raise CheckpointError(f"refusing to write a checkpoint: AdamW {key} is {value}")
    metadata = {key: repr(value) for key, value in hyper.items()}

    with atomic_directory(final) as tmp:
        model_tensors = {k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}
        # "format": "pt" is what transformers' from_pretrained looks for in the header
        weights = model_file(model.config)
        write_safetensors(tmp / weights, model_tensors, {"format": "pt"})
        write_safetensors(tmp / OPTIMIZER_FILE, optimizer_tensors, metadata)
        if lora is not None:
            names[:0] = _save_adapters(tmp, lora, model_tensors, step)
        (tmp / CONFIG_FILE).write_text(config_json, encoding="utf-8")
        (tmp / TRAINER_FILE).write_text(trainer_json, encoding="utf-8")
        for path in tokenizer:
            shutil.copyfile(path, tmp / path.name)
        _write_tokenizer_copies(tmp, made)
        _seal(tmp, step, (weights, OPTIMIZER_FILE, CONFIG_FILE, TRAINER_FILE, *names))
    _prune(run_dir, keep_last)
    return final


def save_model(
    path: str | os.PathLike[str],
    model: Any,
    *,
    step: int = 0,
    tokenizer_files: Iterable[str | os.PathLike[str]] = (),
    extra_config: Mapping[str, Any] | None = None,
) -> Path:
    """Write a model-only checkpoint directory at ``path`` atomically and return it.

    model.safetensors, config.json and the tokenizer files (and the tokenizer in the formats
    they lack, as :func:`save_checkpoint` writes them), with a manifest that says
    ``"contents": "model"``: what ``transformers`` reads (a model GPT-2 does not compute keeps
    its weights in ``layout.VARIANT_MODEL_FILE``, which transformers does not read), and what
    :func:`load_checkpoint` reads (with no optimizer or trainer state, so it starts runs but
    resumes none). ``step`` is recorded in the manifest. A model with LoRA adapters is
    refused: merge them first (``GPT.merge_lora``). So is an existing ``path`` and a parameter
    that is not finite.
    """
    final = Path(path)
    step = check_step(step)
    if final.exists():
        raise CheckpointError(f"{final} already exists: choose a new directory")
    if getattr(model, "lora", None) is not None:
        raise CheckpointError("the model has LoRA adapters: merge them first (GPT.merge_lora)")
    _refuse_non_finite("parameters", model.flat_params)
    tokenizer = _tokenizer_files(tokenizer_files)
    readable = read_tokenizer(tokenizer)
    extra = {**_end_of_text_ids(readable), **(extra_config or {})}
    config_json = to_json(hf_config(model.config, model.dtype, extra), "config")
    made = tokenizer_copies(readable, tokenizer, model.config.block_size)
    names = [p.name for p in tokenizer] + list(made)

    with atomic_directory(final) as tmp:
        model_tensors = {k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}
        weights = model_file(model.config)
        write_safetensors(tmp / weights, model_tensors, {"format": "pt"})
        (tmp / CONFIG_FILE).write_text(config_json, encoding="utf-8")
        for file in tokenizer:
            shutil.copyfile(file, tmp / file.name)
        _write_tokenizer_copies(tmp, made)
        _seal(tmp, step, (weights, CONFIG_FILE, *names), contents="model")
    return final


def read_tokenizer(tokenizer_files: Iterable[Path]) -> Tokenizer | None:
    """The tokenizer among the files a checkpoint copies, chosen as ``checkpoint_tokenizer``
    chooses (tokenizer.txt, tokenizer.json, vocab.json + merges.txt); None without one.
    A tokenizer.txt that does not read is a CheckpointError; Hugging Face files this package
    cannot represent (a WordPiece model, a normalizer, …) are copied as they are, with nothing
    made from them."""
    try:
        path = find_tokenizer_file(tokenizer_files, "the tokenizer files")
    except DataError:
        return None
    try:
        return load_tokenizer(path)
    except DataError as e:
        if path.name == TOKENIZER_FILE:
            raise CheckpointError(f"tokenizer file {path}: {e}") from None
        return None


def tokenizer_copies(
    tokenizer: Tokenizer | None, tokenizer_files: Iterable[Path], model_max_length: int
) -> dict[str, Tokenizer | str]:
    """The tokenizer files a checkpoint makes from ``tokenizer``, by name: each of
    tokenizer.txt (ours, which every reader here prefers; the Tokenizer to save), tokenizer.json
    and tokenizer_config.json (what ``transformers.AutoTokenizer`` loads; their text) that is
    not among the files it copies. The Hugging Face pair is left out for a tokenizer that
    tokenizer.json cannot hold (``Tokenizer.hf_files``), which only imported ranks can be."""
    if tokenizer is None:
        return {}
    copied = {p.name for p in tokenizer_files}
    made: dict[str, Tokenizer | str] = (
        {} if TOKENIZER_FILE in copied else {TOKENIZER_FILE: tokenizer}
    )
    try:
        hf_files = tokenizer.hf_files(model_max_length)
    except ValueError:
        hf_files = {}
    made.update({name: text for name, text in hf_files.items() if name not in copied})
    return made


def _write_tokenizer_copies(folder: Path, made: Mapping[str, Tokenizer | str]) -> None:
    for name, content in made.items():
        if isinstance(content, Tokenizer):
            content.save(folder / name)
        else:
            (folder / name).write_text(content, encoding="utf-8")


def token_ids(tokenizer_files: Iterable[Path]) -> dict[str, int]:
    """config.json's ``bos_token_id`` and ``eos_token_id``: the ``<|endoftext|>`` id of the
    tokenizer among ``tokenizer_files`` (:func:`read_tokenizer`: from whichever of tokenizer.txt,
    tokenizer.json, vocab.json + merges.txt is present), which GPT-2 uses for both (it begins
    each document in training and ends each generation); none without such a tokenizer or
    token."""
    return _end_of_text_ids(read_tokenizer(tokenizer_files))


def _end_of_text_ids(tokenizer: Tokenizer | None) -> dict[str, int]:
    eot = None if tokenizer is None else tokenizer.eot_token
    return {} if eot is None else {"bos_token_id": eot, "eos_token_id": eot}


def _save_adapters(
    directory: Path, lora: LoRAAdapters, base_state: Mapping[str, np.ndarray], step: int
) -> tuple[str, ...]:
    """The adapters as PEFT writes them (adapter_config.json, adapter_model.safetensors;
    ``checkpoint.peft``), on the base weights ``base_state``; returns the files' names."""
    return write_adapters(
        directory, lora, base_model=lora.base_model, base_state=base_state, step=step
    )


def _seal(tmp: Path, step: int, names: Iterable[str], contents: str | None = None) -> None:
    """fsync every file, then write manifest.json (each file's size and SHA-256) last, and fsync
    it and the directory: once the manifest is on disk, so is everything it lists."""
    files = {}
    for name in names:
        fsync_file(tmp / name)
        files[name] = {"bytes": (tmp / name).stat().st_size, "sha256": sha256(tmp / name)}
    manifest: dict[str, Any] = {"format": FORMAT, "version": VERSION, "step": step}
    if contents is not None:
        manifest["contents"] = contents
    manifest["files"] = files
    (tmp / MANIFEST_FILE).write_text(to_json(manifest, "manifest"), encoding="utf-8")
    fsync_file(tmp / MANIFEST_FILE)
    fsync_directory(tmp)


def _refuse_non_finite(what: str, array: np.ndarray) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise CheckpointError(
            f"refusing to write a checkpoint: {what} has {bad.size} non-finite value(s), the "
            f"first at flat index {bad[0]} ({array.reshape(-1)[bad[0]]})"
        )


def _prune(run_dir: Path, keep_last: int | None) -> None:
    """Delete all but the newest ``keep_last`` checkpoints, and leftovers of crashed writes.

    A checkpoint is first renamed to .trash-ckpt_… (atomic), then deleted: a crash mid-delete
    leaves a name :func:`latest_checkpoint` ignores, never a half-deleted ckpt_ directory.
    """
    checkpoints = [path for _, path in list_checkpoints(run_dir)]
    for path in checkpoints[:-keep_last] if keep_last is not None else []:
        trash = run_dir / f"{_TRASH_PREFIX}{path.name}-{os.getpid()}"
        os.replace(path, trash)
    fsync_directory(run_dir)
    # one writer per run directory: another process's temporary directory is a crash's leftover
    mine = f"-{os.getpid()}"
    for path in run_dir.iterdir():
        leftover = path.name.startswith(_TMP_PREFIX) and not path.name.endswith(mine)
        if path.name.startswith(_TRASH_PREFIX) or leftover:
            shutil.rmtree(path, ignore_errors=True)


def _tokenizer_files(files: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The tokenizer files to copy into a checkpoint, each an existing file whose name is
    neither one of the checkpoint's own nor another tokenizer file's."""
    tokenizer = [Path(p) for p in files]
    names = [p.name for p in tokenizer]
    for path in tokenizer:
        if not path.is_file():
            raise CheckpointError(f"tokenizer file {path} does not exist")
        if path.name in RESERVED_NAMES or names.count(path.name) > 1:
            raise CheckpointError(f"tokenizer file name {path.name!r} is taken")
    return tokenizer
