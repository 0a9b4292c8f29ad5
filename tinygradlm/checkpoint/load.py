"""Reading checkpoints, checked layer by layer, without pickle.

:func:`load_checkpoint` checks the manifest (sizes and hashes), the JSON, the safetensors
headers and every tensor's name, shape and dtype, and says which file is wrong. Nothing is ever
unpickled: arrays come from ``safetensors``, everything else from ``json``. :func:`restore`
copies what was read into a model and its optimizer. :func:`checkpoint_in` lets a command take
a run directory where it takes a checkpoint: the run's newest complete one.

A Hugging Face GPT-2 directory (config.json without our "tinygradlm" key, and no manifest) is
read by :mod:`tinygradlm.checkpoint.hf` as a model-only checkpoint. This module builds no GPT
(:mod:`tinygradlm.checkpoint.as_gpt` does), so ``GPT.from_pretrained`` can call it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors

from ..errors import CheckpointError
from ..lora import LoRAAdapters, LoRAConfig, adapter_shapes
from ..memory import format_bytes
from ..model.config import GPTConfig, parameter_shapes
from ..parse import ABSENT, file_problem, parse_json
from .hf import is_hf_config, load_hf_checkpoint
from .layout import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_FILES,
    ADAPTER_MODEL_FILE,
    ADAPTERS_FILE,
    CONFIG_FILE,
    FORMAT,
    MANIFEST_FILE,
    MODEL_ONLY_FILES,
    OPTIMIZER_FILE,
    OPTIMIZER_HYPERPARAMETERS,
    REQUIRED_FILES,
    RESERVED_NAMES,
    TRAINER_FILE,
    VERSION,
    Checkpoint,
    check_model_fits,
    check_step,
    config_from_hf,
    list_checkpoints,
    model_file,
    read_json,
    sha256,
)
from .peft import (
    base_digest,
    base_directory,
    check_recorded_config,
    is_adapter_directory,
    lora_config_from_peft,
    peft_name,
    read_metadata,
)

_SAFETENSORS_DTYPES = {
    name: np.dtype(t) for name, t in [("F32", "f4"), ("F64", "f8"), ("I64", "i8")]
}


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and validate the checkpoint directory ``path``.

    In order: manifest.json parses and lists the required files; every listed file exists with
    the recorded size and SHA-256; config.json and trainer.json parse; the model config.json
    describes fits in memory and in model.safetensors (checked before it is built); the
    safetensors headers parse; every expected tensor is present with the shape and dtype the
    config implies, and no other is; every array is finite. The first layer that fails raises
    CheckpointError naming the file and listing what is wrong. Only ``json`` and
    ``safetensors`` read the files.

    A model-only checkpoint (:func:`save_model`) has no optimizer.safetensors or trainer.json to
    check. LoRA adapters (adapter_config.json and adapter_model.safetensors, or the older
    adapters.safetensors) are checked as :func:`_read_adapters` says. A PEFT adapter directory
    (adapter_config.json, no config.json) reads as its base model with the adapters attached.
    A Hugging Face GPT-2 directory (no manifest.json, a config.json of HF's alone) is read as a
    model-only checkpoint of step 0 (:func:`tinygradlm.checkpoint.hf.load_hf_checkpoint`).
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    if _is_hf_directory(path):
        return load_hf_checkpoint(path)
    if is_adapter_directory(path):
        return _load_adapter_directory(path)
    manifest = _read_manifest(path)
    _verify_files(path, manifest)
    files = manifest["files"]
    model_only = manifest.get("contents") == "model"

    hf = read_json(path / CONFIG_FILE)
    config, dtype = config_from_hf(path / CONFIG_FILE, hf)
    weights = model_file(config)
    if weights not in files:
        raise CheckpointError(
            f"{path / MANIFEST_FILE}: does not list {weights}, the weights of a model with "
            f"{config.variant} (config.json)"
        )
    _check_model_size(path, config, dtype, weights, files[weights]["bytes"])
    step = manifest["step"]
    trainer = {"step": step} if model_only else read_json(path / TRAINER_FILE)
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
        path / weights, {name: (shape, dtype) for name, shape in model_shapes.items()}
    )
    lora, adapter_state, base_model = _read_adapters(path, files, config, dtype)
    tokenizer = [path / name for name in files if name not in RESERVED_NAMES]
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
        base_model=base_model,
    )
    if model_only:
        return checkpoint

    checkpoint.optimizer_state = _read_optimizer_state(path / OPTIMIZER_FILE, config, lora, dtype)
    return checkpoint


def _check_model_size(
    path: Path, config: GPTConfig, dtype: np.dtype, weights: str, file_bytes: int
) -> None:
    """Refuse a config.json whose model cannot fit in memory, or is larger than what the
    weights file ``weights`` holds, before anything of the model's size is allocated (a
    config.json that says ``n_layer = 10**9`` would otherwise spend minutes and gigabytes
    first)."""
    file = path / CONFIG_FILE
    itemsize = np.dtype(dtype).itemsize
    shape = check_model_fits(file, config, dtype)
    stored = config.parameter_count() - (config.Vp - config.vocab_size) * config.n_embd
    if stored * itemsize > file_bytes:
        try:  # a damaged file is named as such, not blamed on config.json
            with safetensors.safe_open(path / weights, framework="np"):
                pass
        except safetensors.SafetensorError as err:
            raise CheckpointError(
                f"{path / weights}: not a valid safetensors file: {err}"
            ) from None
        raise CheckpointError(
            f"{file}: describes a model of {stored:,} parameters ({shape}), "
            f"{format_bytes(stored * itemsize)} of {np.dtype(dtype).name}, but {weights} has "
            f"only {format_bytes(file_bytes)}"
        )


def _read_optimizer_state(
    file: Path, config: GPTConfig, lora: LoRAConfig | None, dtype: np.dtype
) -> dict[str, Any]:
    """AdamW's state from optimizer.safetensors: m, v and step as tensors, the hyperparameters
    as the header's metadata."""
    # AdamW's moments are those of the buffer that trains: the adapters' when there are any
    shapes = adapter_shapes(config, lora) if lora is not None else parameter_shapes(config)
    n = sum(math.prod(shape) for shape in shapes.values())
    optimizer_expected = {"m": ((n,), dtype), "v": ((n,), dtype), "step": ((1,), np.int64)}
    optimizer_tensors, hyper = _read_safetensors(file, optimizer_expected)
    optimizer_state: dict[str, Any] = {
        "m": optimizer_tensors["m"],
        "v": optimizer_tensors["v"],
        "step": int(optimizer_tensors["step"][0]),
    }
    for key, text in hyper.items():
        if key not in OPTIMIZER_HYPERPARAMETERS:
            raise CheckpointError(
                f"{file}: metadata {key!r} is not an AdamW hyperparameter "
                f"({', '.join(OPTIMIZER_HYPERPARAMETERS)})"
            )
        try:
            optimizer_state[key] = float(text)
        except ValueError:
            raise CheckpointError(f"{file}: metadata {key!r} is not a number: {text!r}") from None
    return optimizer_state


def _read_adapters(
    path: Path, files: Mapping[str, Any], config: GPTConfig, dtype: np.dtype
) -> tuple[LoRAConfig | None, dict[str, np.ndarray] | None, str | None]:
    """The checkpoint's LoRA adapters: their config, their tensors (our names) and their base
    directory, or Nones. PEFT's files (``checkpoint.peft``), or the adapters.safetensors of
    checkpoints written before them (the config in its header metadata)."""
    if ADAPTERS_FILE in files:
        lora = _lora_config(path / ADAPTERS_FILE)
        shapes = adapter_shapes(config, lora)
        state, _ = _read_safetensors(
            path / ADAPTERS_FILE, {name: (shape, dtype) for name, shape in shapes.items()}
        )
        return lora, state, None
    listed = [name for name in ADAPTER_FILES if name in files]
    if not listed:
        return None, None, None
    if len(listed) != len(ADAPTER_FILES):
        missing = ", ".join(name for name in ADAPTER_FILES if name not in files)
        raise CheckpointError(f"{path / MANIFEST_FILE}: lists {listed[0]} but not {missing}")
    lora, state, values, _ = _read_peft_adapters(path, config, dtype)
    base = values.get("base_model_name_or_path")
    return lora, state, base if isinstance(base, str) and base else None


def _read_peft_adapters(
    path: Path, config: GPTConfig, dtype: np.dtype
) -> tuple[LoRAConfig, dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """adapter_config.json and adapter_model.safetensors of ``path``, checked against each other
    and a model of ``config``: the LoRAConfig, the tensors (our names, in ``dtype``; PEFT may
    have written float32 or float64), adapter_config.json as read, and our header entry."""
    config_file, model_file = path / ADAPTER_CONFIG_FILE, path / ADAPTER_MODEL_FILE
    values = read_json(config_file)
    lora = lora_config_from_peft(config_file, values, config.n_layer)
    try:
        with safetensors.safe_open(model_file, framework="np") as f:
            stored = {f.get_slice(name).get_dtype() for name in f.keys()}
    except safetensors.SafetensorError as err:
        raise CheckpointError(f"{model_file}: not a valid safetensors file: {err}") from None
    except FileNotFoundError:
        raise CheckpointError(f"{model_file}: missing") from None
    # PEFT writes the dtype its model had: one float type we read is taken (and converted to
    # the model's below); anything else is expected as the model's, and reported per tensor
    stored_dtype = np.dtype(dtype)
    if len(stored) == 1 and stored <= {"F32", "F64"}:
        stored_dtype = _SAFETENSORS_DTYPES[stored.pop()]
    shapes = adapter_shapes(config, lora)
    expected = {peft_name(n): (shape, stored_dtype) for n, shape in shapes.items()}
    tensors, metadata = _read_safetensors(model_file, expected)
    ours = read_metadata(model_file, metadata)
    check_recorded_config(model_file, ours, lora)
    state = {n: tensors[peft_name(n)].astype(dtype, copy=False) for n in shapes}
    return lora, state, values, ours


def _load_adapter_directory(path: Path) -> Checkpoint:
    """A PEFT adapter directory as a Checkpoint: its base model (``base_model_name_or_path``,
    a run directory's newest checkpoint when it names a run, read by :func:`load_checkpoint`;
    the base's own adapters, if any, are not applied, as
    ``transformers`` does not apply them) with these adapters attached. When our digest of the
    base weights is recorded, the base found must match it. No optimizer state: it starts a
    fine-tuning run but resumes none."""
    values = read_json(path / ADAPTER_CONFIG_FILE)
    base_dir, _ = checkpoint_in(base_directory(path / ADAPTER_CONFIG_FILE, values))
    base = load_checkpoint(base_dir)
    dtype = next(iter(base.model_state.values())).dtype
    lora, state, _, ours = _read_peft_adapters(path, base.config, dtype)
    recorded = ours.get("base_sha256")
    if recorded is not None and recorded != base_digest(base.model_state):
        raise CheckpointError(
            f"{path / ADAPTER_MODEL_FILE}: base_model_name_or_path {str(base_dir)!r} holds other "
            "weights than these adapters were trained on (their digests differ)"
        )
    step = check_step(ours.get("step", 0), raise_error=False)
    step = 0 if step is None else step
    return Checkpoint(
        path=path,
        step=step,
        config=base.config,
        model_state=base.model_state,
        optimizer_state=None,
        trainer_state={"step": step},
        tokenizer_files=base.tokenizer_files,
        lora=lora,
        adapter_state=state,
        base_model=str(base_dir),
    )


def _lora_config(file: Path) -> LoRAConfig:
    """The LoRAConfig in the adapters file's header metadata."""
    try:
        with safetensors.safe_open(file, framework="np") as f:
            metadata = dict(f.metadata() or {})
    except safetensors.SafetensorError as err:
        raise CheckpointError(f"{file}: not a valid safetensors file: {err}") from None
    if "lora" not in metadata:
        raise CheckpointError(f"{file}: no 'lora' entry (the LoRA config) in the header metadata")
    values = parse_json(metadata["lora"], f"{file}: the 'lora' header entry", CheckpointError)
    try:
        return LoRAConfig.from_dict(values)
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


def _is_hf_directory(path: Path) -> bool:
    """No manifest.json, and a config.json that is a Hugging Face model's alone (ours, without
    a manifest, is an incomplete checkpoint: the manifest's error says so)."""
    if (path / MANIFEST_FILE).exists() or not (path / CONFIG_FILE).is_file():
        return False
    try:
        return is_hf_config(read_json(path / CONFIG_FILE))
    except CheckpointError:
        return False


def _read_manifest(path: Path) -> dict[str, Any]:
    file = path / MANIFEST_FILE
    if not file.is_file():
        raise CheckpointError(
            f"{file}: missing (an incomplete checkpoint, or not a checkpoint directory)"
        )
    manifest = read_json(file)
    problems = []
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        problems.append(
            f"format {manifest.get('format')!r} version {manifest.get('version')!r}, expected "
            f"{FORMAT!r} version {VERSION}"
        )
    if check_step(manifest.get("step"), raise_error=False) is None:
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
        problem = file_problem(file)
        if problem is not None:
            problems.append(f"{file}: missing" if problem == ABSENT else f"{file}: {problem}")
            continue
        size = file.stat().st_size
        if size != entry["bytes"]:
            what = "truncated" if size < entry["bytes"] else "too long"
            problems.append(f"{file}: {what}: {size} bytes, the manifest says {entry['bytes']}")
        elif sha256(file) != entry["sha256"]:
            problems.append(f"{file}: SHA-256 differs from the manifest's (modified or corrupt)")
    if problems:
        raise CheckpointError(
            f"{path}: files do not match {MANIFEST_FILE}:\n  " + "\n  ".join(problems)
        )


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


def checkpoint_in(path: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """The checkpoint ``path`` names, and a line saying which one was taken when it was chosen.

    ``path`` itself when it is not a directory (the loader says so), a checkpoint (it has
    manifest.json) or another model directory (config.json: the loader judges it); else ``path``
    is a run directory and the answer is its complete checkpoint of the highest step, skipping
    ``ckpt_*`` folders without a manifest and ``.tmp-ckpt_*`` ones, which a stopped save leaves.
    A directory with none raises CheckpointError naming what it skipped, and the folders inside
    it that do hold checkpoints (``runs/demo/train`` when given ``runs/demo``).
    """
    path = Path(path)
    own = (MANIFEST_FILE, CONFIG_FILE, ADAPTER_CONFIG_FILE)  # a checkpoint, a model, adapters
    if not path.is_dir() or any((path / name).exists() for name in own):
        return path, None
    found = list_checkpoints(path)
    if found:
        step, newest = found[-1]
        return newest, f"{path}: taking its newest complete checkpoint, {newest.name} (step {step})"
    names = sorted(child.name for child in path.iterdir())
    problem = f"{path}: no checkpoint here (no {MANIFEST_FILE}) and no complete ckpt_<step> folder"
    skipped = [name for name in names if name.startswith(("ckpt_", ".tmp-ckpt_"))]
    if skipped:
        problem += f"; incomplete, skipped: {', '.join(skipped)}"
    runs = [name for name in names if list_checkpoints(path / name)]
    if runs:
        problem += f"; run directories inside it: {', '.join(str(path / name) for name in runs)}"
    raise CheckpointError(problem)
