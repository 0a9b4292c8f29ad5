"""What a checkpoint directory holds: its file names, its manifest's format, config.json both
ways (our ``GPTConfig`` and HF's ``GPT2Config``), and the helpers writing and reading share.

The layout, and how to open a checkpoint in ``transformers``, are in docs/checkpoints.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import parse
from ..errors import CheckpointError
from ..lora import LoRAConfig
from ..memory import check_fits
from ..model.config import GPTConfig
from ..model.workspace import model_bytes

MODEL_FILE = "model.safetensors"
# the weights of a model HF GPT-2 does not compute (``GPTConfig.gpt2_layout`` false: post-LN,
# no layer norms, no residual): a name transformers does not look for, so
# GPT2LMHeadModel.from_pretrained refuses the directory (no weights file) rather than loading
# the weights into GPT-2's pre-LN blocks and initializing the layer norms they lack
VARIANT_MODEL_FILE = "tinygradlm_model.safetensors"
MODEL_FILES = (MODEL_FILE, VARIANT_MODEL_FILE)
CONFIG_FILE = "config.json"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINER_FILE = "trainer.json"
MANIFEST_FILE = "manifest.json"
ADAPTERS_FILE = "adapters.safetensors"  # LoRA adapters before the PEFT files (still read)
ADAPTER_CONFIG_FILE = "adapter_config.json"  # LoRA adapters as PEFT writes them
ADAPTER_MODEL_FILE = "adapter_model.safetensors"
ADAPTER_FILES = (ADAPTER_CONFIG_FILE, ADAPTER_MODEL_FILE)
# besides the weights, model_file(config)
REQUIRED_FILES = (CONFIG_FILE, OPTIMIZER_FILE, TRAINER_FILE)
MODEL_ONLY_FILES = (CONFIG_FILE,)  # a manifest with "contents": "model"
# the checkpoint's own files: every other file it lists is a tokenizer file
RESERVED_NAMES = (*MODEL_FILES, *REQUIRED_FILES, ADAPTERS_FILE, *ADAPTER_FILES, MANIFEST_FILE)

FORMAT = "tinygradlm-checkpoint"
VERSION = 1
# AdamW's hyperparameters, stored as the optimizer file's header metadata
OPTIMIZER_HYPERPARAMETERS = ("lr", "beta1", "beta2", "eps", "weight_decay")

CHECKPOINT_NAME = re.compile(r"ckpt_(\d{8,})")  # {step:08d}: 8 digits, more past 10^8 steps
_HASH_CHUNK = 1 << 22


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read, validated.

    model_state: HF GPT-2 names to arrays (what ``GPT.load_state_dict`` takes).
    optimizer_state: ``m``, ``v`` (flat), ``step`` and the AdamW hyperparameters (what
    ``AdamW.load_state_dict`` takes); None in a model-only checkpoint. trainer_state:
    trainer.json as a dict (its ``step`` equals ``step``; just the step in a model-only one).
    tokenizer_files: the copied tokenizer files, as paths in the checkpoint. lora and
    adapter_state: the LoRA adapters' config and tensors (PEFT names), or None. base_model:
    the directory whose weights the adapters were trained on (adapter_config.json's
    ``base_model_name_or_path``), when known.
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
    base_model: str | None = None


def model_file(config: GPTConfig) -> str:
    """The name of the weights file of a ``config`` model: model.safetensors when HF GPT-2
    computes it, else ``VARIANT_MODEL_FILE``."""
    return MODEL_FILE if config.gpt2_layout else VARIANT_MODEL_FILE


def hf_config(
    config: GPTConfig, dtype: Any = np.float32, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """config.json: HF's ``GPT2Config`` fields for ``config``, and ours under "tinygradlm".
    A model GPT-2's blocks do not compute (``GPTConfig.gpt2_layout`` false) does not claim to
    be one: its model_type is "tinygradlm" and it names no transformers architecture.

    ``extra`` adds keys (``bos_token_id``, ``eos_token_id``, …) but may not change the ones
    that describe the architecture. The token ids are null unless given: HF's defaults (50256)
    belong to GPT-2's own vocabulary.
    """
    values: dict[str, Any] = {
        "model_type": "gpt2" if config.gpt2_layout else "tinygradlm",
        "architectures": ["GPT2LMHeadModel"] if config.gpt2_layout else [],
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


def config_from_hf(file: Path, hf: Any) -> tuple[GPTConfig, np.dtype]:
    """The GPTConfig and parameter dtype of config.json (``hf``, read from ``file``), after
    checking that HF's fields describe the same model as ours."""
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


def check_model_fits(config_file: Path, config: GPTConfig, dtype: Any) -> str:
    """Refuse, before anything of its size is allocated, the model ``config_file`` describes
    when it and its gradients would not fit in memory (a config.json saying ``n_layer = 10**9``
    would otherwise spend minutes and gigabytes first); return the shape as the message gives
    it ("n_layer=…, n_embd=…, vocab_size=…, block_size=…")."""
    shape = ", ".join(
        f"{key}={getattr(config, key)}" for key in ("n_layer", "n_embd", "vocab_size", "block_size")
    )
    check_fits(
        model_bytes(config, dtype),
        f"{config_file}: the model ({shape}, {np.dtype(dtype).name}) and its gradients",
        CheckpointError,
    )
    return shape


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``run_dir`` (named ckpt_<step>, with a manifest), oldest first."""
    found = []
    if run_dir.is_dir():
        for path in run_dir.iterdir():
            match = CHECKPOINT_NAME.fullmatch(path.name)
            if match and path.is_dir() and (path / MANIFEST_FILE).is_file():
                found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The complete checkpoint with the highest step in ``run_dir``, or None.

    Temporary directories (.tmp-ckpt_…) and ckpt_ directories without a manifest are skipped;
    whether the newest one is intact is :func:`load_checkpoint`'s to check.
    """
    found = list_checkpoints(Path(run_dir))
    return found[-1][1] if found else None


def sha256(path: Path) -> str:
    """The file's SHA-256 as hex, read in chunks (as manifest.json records it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# safetensors' names for the dtypes a checkpoint holds
_SAFETENSORS_DTYPES = {"float32": "F32", "float64": "F64", "int64": "I64"}


def write_safetensors(
    file: Path, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]
) -> None:
    """Write a safetensors file whose bytes are a function of ``tensors`` and ``metadata`` alone.

    The format (8-byte little-endian header length, a JSON header of each tensor's dtype, shape
    and byte range, padded with spaces to a multiple of 8, then the raw little-endian data), with
    the tensors in name order and the header as compact JSON with sorted metadata keys.
    ``safetensors.numpy.save_file`` writes the same format, but its header's metadata comes from
    a Rust HashMap whose order changes from process to process: two runs of one command would
    write equal tensors under different SHA-256s.
    """
    header: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))}
    arrays = []
    offset = 0
    for name in sorted(tensors):
        array = np.asarray(tensors[name])  # not ascontiguousarray, which makes a 0-d array 1-d
        if not array.flags.c_contiguous:
            array = array.copy(order="C")
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        dtype = _SAFETENSORS_DTYPES.get(array.dtype.name)
        if dtype is None:
            raise CheckpointError(f"{file.name}: cannot write {name!r} of dtype {array.dtype}")
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
        arrays.append(array)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(file, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for array in arrays:
            f.write(array.reshape(-1).view(np.uint8).data)


def to_json(value: Any, what: str) -> str:
    """``value`` as JSON text in one fixed format: two-space indents, a final newline, NumPy
    scalars as numbers, keys in the order ``value`` lists them (not sorted: the order can carry
    meaning, as a mixture's sources in trainer.json do). CheckpointError if it is not JSON-able
    or not finite."""

    def numpy_scalar(obj: Any) -> Any:
        if isinstance(obj, (np.integer, np.floating, np.bool_)):
            return obj.item()
        raise TypeError(f"{type(obj).__name__} is not JSON-able")

    try:
        text = json.dumps(value, indent=2, allow_nan=False, default=numpy_scalar)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"cannot write {what} as JSON: {err}") from err
    return text + "\n"


def read_json(path: Path) -> Any:
    """A JSON file of the checkpoint, strict (UTF-8, no NaN or Infinity, nesting bounded), as
    ``tinygradlm.parse`` reads every project file; CheckpointError naming it."""
    return parse.read_json(path, CheckpointError)


def check_step(step: Any, raise_error: bool = True) -> int | None:
    """``step`` as an int if it is an integer >= 0; otherwise CheckpointError (or None)."""
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        if raise_error:
            raise CheckpointError(f"step must be an integer >= 0, got {step!r}")
        return None
    return int(step)
