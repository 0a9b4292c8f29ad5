"""Reading a Hugging Face GPT-2 model directory (what ``GPT2LMHeadModel.save_pretrained`` writes)
as a model-only checkpoint, without pickle and without ``transformers``.

config.json becomes a :class:`GPTConfig` after every key that would make HF compute another
function than this GPT is refused by name: another ``model_type`` (other position schemes:
rotary and ALiBi models are other model types), an untied head, an activation other than GELU's
tanh approximation, an MLP width other than 4·n_embd, other attention scalings, cross-attention,
quantized weights. Keys that do not change the function (dropout, which this project's training
does not use; ``reorder_and_upcast_attn``, numerics only; ``use_cache``; token ids) are accepted
and ignored. A key config.json leaves out takes ``GPT2Config``'s default, as in transformers.

The weights come from ``model.safetensors`` or from the shards ``model.safetensors.index.json``
lists (each an existing plain file name in the directory, each tensor in one shard only).
Names with or without the ``transformer.`` prefix are read, the causal-mask buffers
(``attn.bias``, ``attn.masked_bias``) skipped, and an ``lm_head.weight`` must equal
``wte.weight``. F32 and F64 tensors are kept as they are; F16 and BF16 ones are widened to
float32, exactly (every F16 and BF16 number is a float32 number). ``pytorch_model.bin`` is
never read: it is a pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import safetensors

from ..errors import CheckpointError, ConfigError
from ..model.config import GPTConfig, parameter_shapes
from ..tokenizer import TOKENIZER_FILE
from .layout import CONFIG_FILE, Checkpoint, check_model_fits, read_json

WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
# the tokenizer files transformers keeps beside a model, and ours
TOKENIZER_FILES = (
    TOKENIZER_FILE,
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)

# transformers' names for GELU's tanh approximation, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))),
# the function ref/gelu.py computes (tests/test_hf_import.py checks each against it); "gelu"
# is the exact erf form, a different function
GELU_TANH = ("gelu_new", "gelu_pytorch_tanh", "gelu_python_tanh", "gelu_fast", "gelu_accurate")

# GPT2Config's defaults: what transformers assumes for a key config.json leaves out
_DEFAULTS: dict[str, Any] = {
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "layer_norm_epsilon": 1e-5,
    "n_inner": None,
    "activation_function": "gelu_new",
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "add_cross_attention": False,
    "tie_word_embeddings": True,
}
# GPT2Config's other names for its keys
_ALIASES = {
    "hidden_size": "n_embd",
    "max_position_embeddings": "n_positions",
    "num_attention_heads": "n_head",
    "num_hidden_layers": "n_layer",
}
# the boolean keys, the value this GPT's function needs, and what the other value would mean
_FLAGS = {
    "scale_attn_weights": (True, "attention scores must be scaled by 1/sqrt(head_size)"),
    "scale_attn_by_inverse_layer_idx": (False, "scores scaled by 1/(layer+1) are not supported"),
    "add_cross_attention": (False, "cross-attention (an encoder-decoder) is not supported"),
    "tie_word_embeddings": (
        True,
        "this GPT's output head is always the token embedding wte (tied); an untied head "
        "cannot be represented",
    ),
}
_MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")  # the causal mask, not parameters
_HEAD = "lm_head.weight"
# safetensors dtypes read, and the dtype each becomes
_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float32, "BF16": np.float32}


def is_hf_config(hf: Any) -> bool:
    """Whether config.json's contents ``hf`` are a Hugging Face model's config rather than
    ours (ours holds the GPTConfig under "tinygradlm")."""
    return isinstance(hf, dict) and "tinygradlm" not in hf


def load_hf_checkpoint(path: Path) -> Checkpoint:
    """The model of the Hugging Face GPT-2 directory ``path`` as a model-only checkpoint: step
    0, no optimizer state, trainer_state ``{"step": 0}`` (with ``"notes"`` saying what was
    converted, if anything), and the tokenizer files found beside it. It starts runs and
    resumes none. Every check fails with a CheckpointError naming the file, and the key or
    tensor, that is wrong."""
    config_file = path / CONFIG_FILE
    config = config_from_hf_gpt2(config_file, read_json(config_file))
    files = _weight_files(path)
    header = {
        name: entry
        for name, entry in _read_headers(path, files).items()
        if not name.endswith(_MASK_BUFFERS)  # the causal mask: a buffer, not a parameter
    }
    dtype = np.dtype(np.float64 if {d for _, _, d in header.values()} == {"F64"} else np.float32)
    check_model_fits(config_file, config, dtype)
    names = _check_tensors(path, config, header)
    state, head = {}, None
    for stored, name in names.items():
        file = header[stored][0]
        array = _read_tensor(file, stored, header[stored][2], dtype)
        if not np.isfinite(array).all():
            raise CheckpointError(f"{file}: tensor {stored} has non-finite values")
        if name == _HEAD:
            head = array
        else:
            state[name] = array
    if head is not None and not np.array_equal(head, state["wte.weight"]):
        stored = next(s for s, n in names.items() if n == _HEAD)
        raise CheckpointError(
            f"{header[stored][0]}: tensor {stored} differs from wte.weight: this GPT's output "
            "head is the token embedding (tied), so an untied head cannot be loaded"
        )
    converted = sorted({d for _, _, d in header.values()} & {"F16", "BF16"})
    trainer: dict[str, Any] = {"step": 0}
    if converted:
        trainer["notes"] = [
            f"{path}: weights stored as {' and '.join(converted)}, widened exactly to float32"
        ]
    return Checkpoint(
        path=path,
        step=0,
        config=config,
        model_state=state,
        optimizer_state=None,
        trainer_state=trainer,
        tokenizer_files=[path / n for n in TOKENIZER_FILES if (path / n).is_file()],
    )


def config_from_hf_gpt2(file: Path, hf: Any) -> GPTConfig:
    """The GPTConfig of a Hugging Face GPT-2 config.json (``hf``, read from ``file``), after
    refusing every key whose value makes a model this GPT does not compute; all at once."""
    if not isinstance(hf, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    model_type = hf.get("model_type")
    if model_type != "gpt2":
        raise CheckpointError(
            f"{file}: model_type is {model_type!r}: only GPT-2 models ('gpt2') can be read: "
            "learned absolute positions only (rotary or ALiBi models are other model types), "
            "pre-norm blocks, a tied output head"
        )
    values = {**_DEFAULTS, **{k: v for k, v in hf.items() if k in _DEFAULTS}}
    problems = []
    for alias, key in _ALIASES.items():
        if alias in hf:
            if key in hf and hf[key] != hf[alias]:
                problems.append(f"{alias} is {hf[alias]!r} but {key} is {hf[key]!r}")
            values[key] = hf[alias]
    activation = values["activation_function"]
    if activation not in GELU_TANH:
        problems.append(
            f"activation_function is {activation!r}: this GPT computes GELU's tanh "
            f"approximation only ({', '.join(repr(a) for a in GELU_TANH)})"
        )
    n_inner, n_embd = values["n_inner"], values["n_embd"]
    width = 4 * n_embd if isinstance(n_embd, int) and not isinstance(n_embd, bool) else None
    if n_inner is not None and (isinstance(n_inner, bool) or n_inner != width):
        problems.append(
            f"n_inner is {n_inner!r}: the MLP's width must be 4·n_embd ({width!r}), or null"
        )
    for key, (needed, why) in _FLAGS.items():
        if values[key] is not needed:
            problems.append(f"{key} is {values[key]!r}: {why}")
    if hf.get("quantization_config") is not None:
        problems.append("quantization_config is set: quantized weights are not supported")
    if problems:
        raise CheckpointError(
            f"{file}: a GPT-2 this model cannot represent:\n  " + "\n  ".join(problems)
        )
    try:
        return GPTConfig.from_dict(
            {
                "vocab_size": values["vocab_size"],
                "block_size": values["n_positions"],
                "n_layer": values["n_layer"],
                "n_head": values["n_head"],
                "n_embd": values["n_embd"],
                "layer_norm_epsilon": values["layer_norm_epsilon"],
            }
        )
    except ConfigError as err:  # names GPTConfig's fields: n_positions is block_size
        raise CheckpointError(f"{file}: {err} (n_positions is block_size)") from None


def _weight_files(path: Path) -> dict[str, str | None]:
    """The safetensors files holding the weights, each with the tensor names the index assigns
    to it (None for a single model.safetensors, which holds them all)."""
    if (path / WEIGHTS_FILE).is_file():
        return {WEIGHTS_FILE: None}
    index_file = path / INDEX_FILE
    if not index_file.is_file():
        pickles = [name for name in PICKLE_FILES if (path / name).exists()]
        if pickles:
            raise CheckpointError(
                f"{path / pickles[0]}: a pickle, which is never loaded here; save the model "
                "as safetensors instead: model.save_pretrained(dir, safe_serialization=True)"
            )
        raise CheckpointError(
            f"{path}: a Hugging Face config.json but no weights ({WEIGHTS_FILE} or {INDEX_FILE})"
        )
    index = read_json(index_file)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{index_file}: no 'weight_map' object (tensor name → file)")
    problems, files = [], {}
    for name, shard in weight_map.items():
        # plain names only: an index must not point the reader outside the directory
        plain = isinstance(shard, str) and shard == Path(shard).name and "\\" not in shard
        if not plain or shard in ("", ".", ".."):
            problems.append(f"{name}: file {shard!r} is not a plain file name in the directory")
        elif not (path / shard).is_file():
            problems.append(f"{name}: file {shard!r} is missing")
        else:
            files.setdefault(shard, []).append(name)
    if problems:
        raise CheckpointError(f"{index_file}: malformed:\n  " + "\n  ".join(sorted(problems)))
    return files


def _read_headers(path: Path, files: dict[str, Any]) -> dict[str, tuple[Path, tuple, str]]:
    """Every stored tensor's file, shape and safetensors dtype, read from the headers; each
    tensor must be in one file only, and in the one the index names."""
    header: dict[str, tuple[Path, tuple, str]] = {}
    problems = []
    for shard, listed in files.items():
        file = path / shard
        try:
            with safetensors.safe_open(file, framework="np") as f:
                for name in f.keys():
                    entry = f.get_slice(name)
                    if name in header:
                        problems.append(f"{name}: in both {header[name][0].name} and {shard}")
                    elif listed is not None and name not in listed:
                        problems.append(f"{name}: in {shard}, which the index does not say")
                    header[name] = (file, tuple(entry.get_shape()), entry.get_dtype())
        except safetensors.SafetensorError as err:
            raise CheckpointError(f"{file}: not a valid safetensors file: {err}") from None
        if listed is not None:
            problems += [f"{name}: missing from {shard}" for name in listed if name not in header]
    if problems:
        raise CheckpointError(
            f"{path / INDEX_FILE}: the shards do not match it:\n  " + "\n  ".join(problems)
        )
    return header


def _check_tensors(
    path: Path, config: GPTConfig, header: dict[str, tuple[Path, tuple, str]]
) -> dict[str, str]:
    """Stored name → our name (``transformer.`` stripped) of each tensor read, after checking
    that every parameter is there once, with the config's shape and a dtype read here, and
    nothing else."""
    expected = parameter_shapes(config)
    expected["wte.weight"] = (config.vocab_size, config.n_embd)  # HF has no padding rows
    expected[_HEAD] = expected["wte.weight"]
    names: dict[str, str] = {}
    seen: set[str] = set()
    problems = []
    dtypes = {dtype for _, _, dtype in header.values()}
    for stored, (file, shape, dtype) in header.items():
        name = stored.removeprefix("transformer.")
        where = f"{file.name}: tensor {stored}"
        if name not in expected:
            problems.append(f"{where}: unexpected (not a parameter of GPT-2's language model)")
            continue
        if name in seen:
            problems.append(f"{where}: {name} is stored twice")
            continue
        seen.add(name)
        if shape != expected[name]:
            problems.append(f"{where}: shape {shape}, config.json implies {expected[name]}")
        elif dtype not in _DTYPES:
            problems.append(f"{where}: dtype {dtype} (F32, F64, F16 and BF16 are read)")
        elif dtype == "F64" and dtypes != {"F64"}:
            problems.append(f"{where}: F64 among tensors of other dtypes ({sorted(dtypes)})")
        else:
            names[stored] = name
    missing = [n for n in expected if n != _HEAD and n not in seen]
    problems += [f"missing tensor {n} (or transformer.{n})" for n in missing]
    if problems:
        raise CheckpointError(
            f"{path}: the weights do not match config.json:\n  " + "\n  ".join(problems)
        )
    return names


def _read_tensor(file: Path, name: str, dtype: str, into: np.dtype) -> np.ndarray:
    """Tensor ``name`` of ``file`` as an array of ``into``: F16 widened exactly, BF16 (which
    NumPy has no type for) from its raw bytes, each the high half of a float32."""
    if dtype != "BF16":
        with safetensors.safe_open(file, framework="np") as f:
            return np.asarray(f.get_tensor(name)).astype(into)
    with open(file, "rb") as f:
        header_bytes = int.from_bytes(f.read(8), "little")
        entry = json.loads(f.read(header_bytes))[name]  # safe_open has checked the header
        begin, end = entry["data_offsets"]
        f.seek(8 + header_bytes + begin)
        raw = np.frombuffer(f.read(end - begin), dtype="<u2")
    high = raw.astype(np.uint32) << np.uint32(16)
    return high.view(np.float32).reshape(entry["shape"]).astype(into, copy=False)
