"""Checkpoints: a directory of safetensors and JSON files, written atomically, read without pickle.

    run_dir/ckpt_00001000/
      model.safetensors      the parameters, HF GPT-2 names (wte.weight, h.0.attn.c_attn.weight, …)
      config.json            HF GPT2Config, plus our GPTConfig under the key "tinygradlm"
      optimizer.safetensors  AdamW's m and v (flat, like the parameters) and step
      trainer.json           the trainer's state: step, RNG states, loader position, run config
      adapters.safetensors   LoRA adapters, when the model has them (tinygradlm.lora); AdamW's
                             m and v are then the adapters', the base being frozen
      <tokenizer files>      copied as given
      manifest.json          every other file's size and SHA-256, written last

:func:`save_model` writes a model-only directory (model.safetensors, config.json, tokenizer
files, manifest.json with ``"contents": "model"``): what ``tinygradlm export`` writes, which
loads as a GPT and starts a fine-tuning run but cannot resume one.

A checkpoint is written into ``run_dir/.tmp-ckpt_<step>-<pid>/``, every file and the directory
are fsynced, and the directory is renamed to ``ckpt_<step:08d>`` in one ``os.replace``: a reader
sees a complete checkpoint or none. Parameters or moments that are not finite are refused before
anything is written. :func:`load_checkpoint` checks the manifest (sizes and hashes), the JSON,
the safetensors headers and every tensor's name, shape and dtype, and says which file is wrong.
Nothing is ever unpickled: arrays come from ``safetensors``, everything else from ``json``.
The layout, and how to open a checkpoint in ``transformers``, are in docs/checkpoints.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.numpy

from .atomic import atomic_directory, fsync_directory, fsync_file
from .errors import CheckpointError
from .lora import LoRAAdapters, LoRAConfig, adapter_shapes
from .model import GPTConfig, parameter_shapes

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINER_FILE = "trainer.json"
MANIFEST_FILE = "manifest.json"
ADAPTERS_FILE = "adapters.safetensors"
REQUIRED_FILES = (MODEL_FILE, CONFIG_FILE, OPTIMIZER_FILE, TRAINER_FILE)
MODEL_ONLY_FILES = (MODEL_FILE, CONFIG_FILE)  # a manifest with "contents": "model"
_RESERVED_NAMES = (*REQUIRED_FILES, ADAPTERS_FILE, MANIFEST_FILE)  # not tokenizer files

FORMAT = "tinygradlm-checkpoint"
VERSION = 1

_CHECKPOINT_NAME = re.compile(r"ckpt_(\d{8,})")  # {step:08d}: 8 digits, more past 10^8 steps
_TMP_PREFIX = ".tmp-ckpt_"  # atomic_directory builds ckpt_<step> as .tmp-ckpt_<step>-<pid>
_TRASH_PREFIX = ".trash-ckpt_"
_SAFETENSORS_DTYPES = {
    name: np.dtype(t) for name, t in [("F32", "f4"), ("F64", "f8"), ("I64", "i8")]
}
_HASH_CHUNK = 1 << 22
_OPTIMIZER_HYPERPARAMETERS = ("lr", "beta1", "beta2", "eps", "weight_decay")


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read, validated.

    model_state: HF GPT-2 names to arrays (what ``GPT.load_state_dict`` takes).
    optimizer_state: ``m``, ``v`` (flat), ``step`` and the AdamW hyperparameters (what
    ``AdamW.load_state_dict`` takes); None in a model-only checkpoint. trainer_state:
    trainer.json as a dict (its ``step`` equals ``step``; just the step in a model-only one).
    tokenizer_files: the copied tokenizer files, as paths in the checkpoint. lora and
    adapter_state: the LoRA adapters' config and tensors (PEFT names), or None.
    """

    path: Path
    step: int
    config: GPTConfig
    model_state: dict[str, np.ndarray]
    optimizer_state: dict[str, Any] | None
    trainer_state: dict[str, Any]
    tokenizer_files: list[Path] = field(default_factory=list)
    lora: LoRAConfig | None = None
    adapter_state: dict[str, np.ndarray] | None = None


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


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
    buffers when it has adapters (written to adapters.safetensors). ``trainer_state`` must be
    JSON-able (NumPy scalars are converted; a ``Generator``'s ``bit_generator.state`` is) and
    finite; it is written as trainer.json with ``"step": step`` added (a different ``step`` in it
    is an error). ``tokenizer_files`` are copied in under their own names. ``extra_config`` adds
    keys to config.json (``bos_token_id``, ``eos_token_id``, …). Afterwards only the newest
    ``keep_last`` checkpoints are kept (None keeps all).

    Raises CheckpointError, having written nothing, when a parameter or moment is not finite,
    the trainer state is not JSON-able, a tokenizer file is missing, or the checkpoint exists.
    """
    run_dir = Path(run_dir)
    step = _check_step(step)
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
    trainer_json = _to_json(trainer, "trainer_state")
    config_json = _to_json(hf_config(model.config, model.dtype, extra_config), "config")
    tokenizer = [Path(p) for p in tokenizer_files]
    names = [p.name for p in tokenizer]
    for path in tokenizer:
        if not path.is_file():
            raise CheckpointError(f"tokenizer file {path} does not exist")
        if path.name in _RESERVED_NAMES or names.count(path.name) > 1:
            raise CheckpointError(f"tokenizer file name {path.name!r} is taken")
    optimizer_tensors = {
        "m": np.ascontiguousarray(optimizer.m),
        "v": np.ascontiguousarray(optimizer.v),
        "step": np.array([optimizer.step_count], dtype=np.int64),
    }
    # the hyperparameters ride in the header's string metadata, repr() so they read back exactly
    state = optimizer.state_dict()
    hyper = {key: float(state[key]) for key in _OPTIMIZER_HYPERPARAMETERS}
    for key, value in hyper.items():
        if not math.isfinite(value):
            raise CheckpointError(f"refusing to write a checkpoint: AdamW {key} is {value}")
    metadata = {key: repr(value) for key, value in hyper.items()}

    with atomic_directory(final) as tmp:
        model_tensors = {k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}
        # "format": "pt" is what transformers' from_pretrained looks for in the header
        safetensors.numpy.save_file(model_tensors, tmp / MODEL_FILE, metadata={"format": "pt"})
        safetensors.numpy.save_file(optimizer_tensors, tmp / OPTIMIZER_FILE, metadata=metadata)
        if lora is not None:
            _save_adapters(tmp / ADAPTERS_FILE, lora)
            names.insert(0, ADAPTERS_FILE)
        (tmp / CONFIG_FILE).write_text(config_json, encoding="utf-8")
        (tmp / TRAINER_FILE).write_text(trainer_json, encoding="utf-8")
        for path in tokenizer:
            shutil.copyfile(path, tmp / path.name)
        _seal(tmp, step, (MODEL_FILE, OPTIMIZER_FILE, CONFIG_FILE, TRAINER_FILE, *names))
    _prune(run_dir, keep_last)
    return final


def hf_config(
    config: GPTConfig, dtype: Any = np.float32, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """config.json: HF's ``GPT2Config`` fields for ``config``, and ours under "tinygradlm".

    ``extra`` adds keys (``bos_token_id``, ``eos_token_id``, …) but may not change the ones
    that describe the architecture. The token ids are null unless given: HF's defaults (50256)
    belong to GPT-2's own vocabulary.
    """
    values: dict[str, Any] = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,  # 4·n_embd
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "activation_function": "gelu_new",  # GPT-2's tanh approximation, as ref/gelu.py
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "dtype": np.dtype(dtype).name,  # transformers < 4.56 called it torch_dtype
        "bos_token_id": None,
        "eos_token_id": None,
        "tinygradlm": config.to_dict(),
    }
    fixed = set(values) - {"bos_token_id", "eos_token_id"}
    clash = sorted(fixed & set(extra or {}))
    if clash:
        raise CheckpointError(f"extra_config may not set {', '.join(clash)}")
    values.update(extra or {})
    return values


def save_model(
    path: str | os.PathLike[str],
    model: Any,
    *,
    step: int = 0,
    tokenizer_files: Iterable[str | os.PathLike[str]] = (),
    extra_config: Mapping[str, Any] | None = None,
) -> Path:
    """Write a model-only checkpoint directory at ``path`` atomically and return it.

    model.safetensors, config.json and the tokenizer files, with a manifest that says
    ``"contents": "model"``: what ``transformers`` reads, and what :func:`load_checkpoint`
    reads (with no optimizer or trainer state, so it starts runs but resumes none). ``step`` is
    recorded in the manifest. A model with LoRA adapters is refused: merge them first
    (``GPT.merge_lora``). So is an existing ``path`` and a parameter that is not finite.
    """
    final = Path(path)
    step = _check_step(step)
    if final.exists():
        raise CheckpointError(f"{final} already exists: choose a new directory")
    if getattr(model, "lora", None) is not None:
        raise CheckpointError("the model has LoRA adapters: merge them first (GPT.merge_lora)")
    _refuse_non_finite("parameters", model.flat_params)
    config_json = _to_json(hf_config(model.config, model.dtype, extra_config), "config")
    tokenizer = [Path(p) for p in tokenizer_files]
    names = [p.name for p in tokenizer]
    for file in tokenizer:
        if not file.is_file():
            raise CheckpointError(f"tokenizer file {file} does not exist")
        if file.name in _RESERVED_NAMES or names.count(file.name) > 1:
            raise CheckpointError(f"tokenizer file name {file.name!r} is taken")

    with atomic_directory(final) as tmp:
        model_tensors = {k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}
        safetensors.numpy.save_file(model_tensors, tmp / MODEL_FILE, metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(config_json, encoding="utf-8")
        for file in tokenizer:
            shutil.copyfile(file, tmp / file.name)
        _seal(tmp, step, (MODEL_FILE, CONFIG_FILE, *names), contents="model")
    return final


def _save_adapters(file: Path, lora: LoRAAdapters) -> None:
    """The adapters' tensors under PEFT's names, their config as JSON in the header metadata."""
    tensors = {k: np.ascontiguousarray(v) for k, v in lora.state_dict().items()}
    metadata = {"format": "pt", "lora": json.dumps(lora.config.to_dict())}
    safetensors.numpy.save_file(tensors, file, metadata=metadata)


def _seal(tmp: Path, step: int, names: Iterable[str], contents: str | None = None) -> None:
    """fsync every file, then write manifest.json (each file's size and SHA-256) last, and fsync
    it and the directory: once the manifest is on disk, so is everything it lists."""
    files = {}
    for name in names:
        fsync_file(tmp / name)
        files[name] = {"bytes": (tmp / name).stat().st_size, "sha256": _sha256(tmp / name)}
    manifest: dict[str, Any] = {"format": FORMAT, "version": VERSION, "step": step}
    if contents is not None:
        manifest["contents"] = contents
    manifest["files"] = files
    (tmp / MANIFEST_FILE).write_text(_to_json(manifest, "manifest"), encoding="utf-8")
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


def _to_json(value: Any, what: str) -> str:
    def numpy_scalar(obj: Any) -> Any:
        if isinstance(obj, (np.integer, np.floating, np.bool_)):
            return obj.item()
        raise TypeError(f"{type(obj).__name__} is not JSON-able")

    try:
        return json.dumps(value, indent=2, allow_nan=False, default=numpy_scalar) + "\n"
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"cannot write {what} as JSON: {err}") from err


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``run_dir`` (named ckpt_<step>, with a manifest), oldest first."""
    found = []
    if run_dir.is_dir():
        for path in run_dir.iterdir():
            match = _CHECKPOINT_NAME.fullmatch(path.name)
            if match and path.is_dir() and (path / MANIFEST_FILE).is_file():
                found.append((int(match.group(1)), path))
    return sorted(found)


def _prune(run_dir: Path, keep_last: int | None) -> None:
    """Delete all but the newest ``keep_last`` checkpoints, and leftovers of crashed writes.

    A checkpoint is first renamed to .trash-ckpt_… (atomic), then deleted: a crash mid-delete
    leaves a name :func:`latest_checkpoint` ignores, never a half-deleted ckpt_ directory.
    """
    checkpoints = [path for _, path in _checkpoints(run_dir)]
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


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The complete checkpoint with the highest step in ``run_dir``, or None.

    Temporary directories (.tmp-ckpt_…) and ckpt_ directories without a manifest are skipped;
    whether the newest one is intact is :func:`load_checkpoint`'s to check.
    """
    found = _checkpoints(Path(run_dir))
    return found[-1][1] if found else None


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and validate the checkpoint directory ``path``.

    In order: manifest.json parses and lists the required files; every listed file exists with
    the recorded size and SHA-256; config.json and trainer.json parse; both safetensors headers
    parse; every expected tensor is present with the shape and dtype the config implies, and no
    other is; every array is finite. The first layer that fails raises CheckpointError naming
    the file and listing what is wrong. Only ``json`` and ``safetensors`` read the files.

    A model-only checkpoint (:func:`save_model`) has no optimizer.safetensors or trainer.json to
    check; adapters.safetensors, when listed, is checked against the LoRA config in its header.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    manifest = _read_manifest(path)
    _verify_files(path, manifest)
    files = manifest["files"]
    model_only = manifest.get("contents") == "model"

    hf = _read_json(path / CONFIG_FILE)
    config, dtype = _config_from_hf(path / CONFIG_FILE, hf)
    step = manifest["step"]
    trainer = {"step": step} if model_only else _read_json(path / TRAINER_FILE)
    if not isinstance(trainer, dict):
        raise CheckpointError(f"{path / TRAINER_FILE}: expected a JSON object")
    if trainer.get("step") != step:
        raise CheckpointError(
            f"{path / TRAINER_FILE}: step is {trainer.get('step')!r} but {MANIFEST_FILE} says "
            f"{step}"
        )

    model_shapes = parameter_shapes(config)
    model_shapes["wte.weight"] = (config.vocab_size, config.n_embd)  # padding rows not stored
    model_state, _ = _read_safetensors(
        path / MODEL_FILE, {name: (shape, dtype) for name, shape in model_shapes.items()}
    )
    lora, adapter_state = None, None
    if ADAPTERS_FILE in files:
        lora = _lora_config(path / ADAPTERS_FILE)
        shapes = adapter_shapes(config, lora)
        adapter_state, _ = _read_safetensors(
            path / ADAPTERS_FILE, {name: (shape, dtype) for name, shape in shapes.items()}
        )
    tokenizer = [path / name for name in files if name not in _RESERVED_NAMES]
    checkpoint = Checkpoint(
        path=path,
        step=step,
        config=config,
        model_state=model_state,
        optimizer_state=None,
        trainer_state=trainer,
        tokenizer_files=tokenizer,
        lora=lora,
        adapter_state=adapter_state,
    )
    if model_only:
        return checkpoint

    # AdamW's moments are those of the buffer that trains: the adapters' when there are any
    shapes = adapter_shapes(config, lora) if lora is not None else parameter_shapes(config)
    n = sum(math.prod(shape) for shape in shapes.values())
    optimizer_expected = {"m": ((n,), dtype), "v": ((n,), dtype), "step": ((1,), np.int64)}
    optimizer_tensors, hyper = _read_safetensors(path / OPTIMIZER_FILE, optimizer_expected)
    optimizer_state: dict[str, Any] = {
        "m": optimizer_tensors["m"],
        "v": optimizer_tensors["v"],
        "step": int(optimizer_tensors["step"][0]),
    }
    for key, text in hyper.items():
        if key not in _OPTIMIZER_HYPERPARAMETERS:
            raise CheckpointError(
                f"{path / OPTIMIZER_FILE}: metadata {key!r} is not an AdamW hyperparameter "
                f"({', '.join(_OPTIMIZER_HYPERPARAMETERS)})"
            )
        try:
            optimizer_state[key] = float(text)
        except ValueError:
            raise CheckpointError(
                f"{path / OPTIMIZER_FILE}: metadata {key!r} is not a number: {text!r}"
            ) from None

    checkpoint.optimizer_state = optimizer_state
    return checkpoint


def _lora_config(file: Path) -> LoRAConfig:
    """The LoRAConfig in the adapters file's header metadata."""
    try:
        with safetensors.safe_open(file, framework="np") as f:
            metadata = dict(f.metadata() or {})
    except safetensors.SafetensorError as err:
        raise CheckpointError(f"{file}: not a valid safetensors file: {err}") from None
    if "lora" not in metadata:
        raise CheckpointError(f"{file}: no 'lora' entry (the LoRA config) in the header metadata")
    try:
        return LoRAConfig.from_dict(json.loads(metadata["lora"], parse_constant=_reject_constant))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{file}: invalid LoRA config in the header: {err}") from None


def restore(model: Any, optimizer: Any, checkpoint: Checkpoint) -> None:
    """Copy a loaded checkpoint into ``model`` (a GPT of the same config) and ``optimizer`` (an
    AdamW on its buffers; None to restore the model alone). The trainer state is the caller's.

    LoRA adapters: a model with adapters gets the checkpoint's (same LoRAConfig required) and
    its base weights, exactly; a model without adapters gets the adapted function, the adapters
    merged into its weights (W + scale·A·B), which is what sampling and fine-tuning from the
    checkpoint want. Resuming (an optimizer given) needs a model with the checkpoint's adapters.
    """
    if model.config != checkpoint.config:
        ours, theirs = model.config.to_dict(), checkpoint.config.to_dict()
        diff = [f"{k}: model {ours[k]!r}, checkpoint {theirs[k]!r}" for k in ours]
        diff = [line for line, k in zip(diff, ours, strict=True) if ours[k] != theirs[k]]
        raise CheckpointError(
            f"{checkpoint.path}: the model's config differs from the checkpoint's:\n  "
            + "\n  ".join(diff)
        )
    lora = getattr(model, "lora", None)
    where = checkpoint.path
    if optimizer is not None and checkpoint.optimizer_state is None:
        raise CheckpointError(
            f"{where}: a model-only checkpoint (no optimizer state): it can start a run "
            "(tinygradlm finetune --from) but not resume one"
        )
    if lora is not None and checkpoint.lora is None:
        raise CheckpointError(
            f"{where}: the model has LoRA adapters but the checkpoint has none: restore the base "
            "weights into a model without adapters, then add them"
        )
    if lora is not None and lora.config != checkpoint.lora:
        raise CheckpointError(
            f"{where}: the model's LoRA config {lora.config.to_dict()} differs from the "
            f"checkpoint's {checkpoint.lora.to_dict()}"
        )
    if lora is None and checkpoint.lora is not None and optimizer is not None:
        raise CheckpointError(
            f"{where}: the optimizer state is that of the checkpoint's LoRA adapters "
            f"{checkpoint.lora.to_dict()}: add them to the model (GPT.add_lora) to resume"
        )
    model.load_state_dict(checkpoint.model_state)
    if lora is not None:
        lora.load_state_dict(checkpoint.adapter_state)
    elif checkpoint.lora is not None:
        adapters = LoRAAdapters(checkpoint.config, checkpoint.lora, dtype=model.dtype)
        adapters.load_state_dict(checkpoint.adapter_state)
        adapters.merge_into(model.params)
    if optimizer is not None:
        optimizer.load_state_dict(checkpoint.optimizer_state)


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{path}: not UTF-8 text: {err}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError) as err:
        raise CheckpointError(f"{path}: not valid JSON: {err}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # json.loads would otherwise accept NaN, Infinity


def _read_manifest(path: Path) -> dict[str, Any]:
    file = path / MANIFEST_FILE
    if not file.is_file():
        raise CheckpointError(
            f"{file}: missing (an incomplete checkpoint, or not a checkpoint directory)"
        )
    manifest = _read_json(file)
    problems = []
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        problems.append(
            f"format {manifest.get('format')!r} version {manifest.get('version')!r}, expected "
            f"{FORMAT!r} version {VERSION}"
        )
    if _check_step(manifest.get("step"), raise_error=False) is None:
        problems.append(f"step {manifest.get('step')!r} is not an integer >= 0")
    files = manifest.get("files")
    if not isinstance(files, dict):
        problems.append("'files' is not an object")
        files = {}
    contents = manifest.get("contents", "checkpoint")
    if contents not in ("checkpoint", "model"):
        problems.append(f"contents {contents!r} is not 'checkpoint' or 'model'")
    required = MODEL_ONLY_FILES if contents == "model" else REQUIRED_FILES
    problems += [f"does not list {name}" for name in required if name not in files]
    for name, entry in files.items():
        # plain names only: a manifest must not point the reader outside the directory
        if not isinstance(name, str) or name != Path(name).name or name in ("", ".", ".."):
            problems.append(f"file name {name!r} is not a plain file name")
        elif not (
            isinstance(entry, dict)
            and isinstance(entry.get("bytes"), int)
            and isinstance(entry.get("sha256"), str)
        ):
            problems.append(f"{name}: entry {entry!r} lacks integer 'bytes' and string 'sha256'")
    if problems:
        raise CheckpointError(f"{file}: malformed:\n  " + "\n  ".join(problems))
    return manifest


def _verify_files(path: Path, manifest: Mapping[str, Any]) -> None:
    problems = []
    for name, entry in manifest["files"].items():
        file = path / name
        if not file.is_file():
            problems.append(f"{file}: missing")
            continue
        size = file.stat().st_size
        if size != entry["bytes"]:
            what = "truncated" if size < entry["bytes"] else "too long"
            problems.append(f"{file}: {what}: {size} bytes, the manifest says {entry['bytes']}")
        elif _sha256(file) != entry["sha256"]:
            problems.append(f"{file}: SHA-256 differs from the manifest's (modified or corrupt)")
    if problems:
        raise CheckpointError(
            f"{path}: files do not match {MANIFEST_FILE}:\n  " + "\n  ".join(problems)
        )


def _config_from_hf(file: Path, hf: Any) -> tuple[GPTConfig, np.dtype]:
    if not isinstance(hf, dict) or not isinstance(hf.get("tinygradlm"), dict):
        raise CheckpointError(f"{file}: no 'tinygradlm' object holding the GPTConfig")
    try:
        config = GPTConfig.from_dict(hf["tinygradlm"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{file}: invalid 'tinygradlm' config: {err}") from None
    # the HF fields must describe the same model (transformers reads those, we read ours)
    pairs = {
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "layer_norm_epsilon": config.layer_norm_epsilon,
    }
    problems = [
        f"{key} is {hf.get(key)!r} but tinygradlm's config implies {value!r}"
        for key, value in pairs.items()
        if hf.get(key) != value
    ]
    dtype_name = hf.get("dtype", "float32")
    if dtype_name not in ("float32", "float64"):
        problems.append(f"dtype {dtype_name!r} is not float32 or float64")
    if problems:
        raise CheckpointError(f"{file}: inconsistent:\n  " + "\n  ".join(problems))
    return config, np.dtype(dtype_name)


def _read_safetensors(
    file: Path, expected: Mapping[str, tuple[tuple[int, ...], Any]]
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors of ``file``, after checking the header against ``expected`` (name → (shape,
    dtype)), and the header's string metadata (``format`` left out)."""
    try:
        with safetensors.safe_open(file, framework="np") as f:
            header = {
                name: (tuple(f.get_slice(name).get_shape()), f.get_slice(name).get_dtype())
                for name in f.keys()
            }
            metadata = dict(f.metadata() or {})
            problems = [f"missing tensor {name}" for name in expected if name not in header]
            problems += [f"unexpected tensor {name}" for name in header if name not in expected]
            for name, (shape, dtype) in expected.items():
                if name not in header:
                    continue
                got_shape, got_dtype = header[name]
                if got_shape != shape:
                    problems.append(f"{name}: shape {got_shape}, expected {shape}")
                got = _SAFETENSORS_DTYPES.get(got_dtype)
                if got is None or got != np.dtype(dtype):
                    problems.append(f"{name}: dtype {got_dtype}, expected {np.dtype(dtype)}")
            if problems:
                raise CheckpointError(
                    f"{file}: tensors do not match the config:\n  " + "\n  ".join(problems)
                )
            tensors = {name: np.array(f.get_tensor(name)) for name in expected}
    except safetensors.SafetensorError as err:
        raise CheckpointError(f"{file}: not a valid safetensors file: {err}") from None
    except FileNotFoundError:
        raise CheckpointError(f"{file}: missing") from None
    for name, array in tensors.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise CheckpointError(f"{file}: tensor {name} has non-finite values")
    metadata.pop("format", None)
    return tensors, metadata


def _check_step(step: Any, raise_error: bool = True) -> int | None:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        if raise_error:
            raise CheckpointError(f"step must be an integer >= 0, got {step!r}")
        return None
    return int(step)
