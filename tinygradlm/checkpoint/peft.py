"""LoRA adapters in PEFT's format: adapter_config.json and adapter_model.safetensors.

A checkpoint with adapters holds them as ``peft`` (0.21) writes them, so that
``PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(ckpt), ckpt)`` (and, with ``peft``
installed, ``GPT2LMHeadModel.from_pretrained(ckpt)`` alone) computes what our model computes:

- adapter_config.json: PEFT's ``LoraConfig`` for GPT-2 (``peft_type`` "LORA", ``task_type``
  "CAUSAL_LM", ``r``, ``lora_alpha``, ``target_modules`` ["attn.c_attn", "attn.c_proj", …] —
  dotted suffixes, because PEFT matches a bare "c_proj" in both attn and mlp —
  ``fan_in_fan_out`` true, as GPT-2's projections are ``Conv1D``s with (in, out) weights), and
  ``base_model_name_or_path``, the directory whose weights the adapters apply to;
- adapter_model.safetensors: ``base_model.model.transformer.h.{i}.{target}.lora_A.weight``
  (r, in) and ``…lora_B.weight`` (out, r), our own names behind PEFT's prefix, with our
  :class:`~tinygradlm.lora.LoRAConfig`, the step and a digest of the base weights as JSON under
  "tinygradlm" in the header metadata (PEFT reads none of it; unknown keys in adapter_config.json
  would make PEFT warn).

This module builds and checks those two files' contents; ``checkpoint.save`` and
``checkpoint.load`` write and read them. :func:`lora_config_from_peft` accepts what PEFT itself
writes for GPT-2 and refuses, naming the key, every option whose model differs from ours.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_directory, fsync_directory, fsync_file
from ..errors import CheckpointError
from ..lora import TARGETS, LoRAAdapters, LoRAConfig
from ..parse import parse_json
from .layout import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_MODEL_FILE,
    CONFIG_FILE,
    MANIFEST_FILE,
    to_json,
    write_safetensors,
)

PEFT_PREFIX = "base_model.model.transformer."  # PeftModelForCausalLM → GPT2LMHeadModel → GPT2Model
PEFT_VERSION = "0.21.2"  # the version whose adapter_config.json fields are written below

# adapter_config.json as peft 0.21 writes it for a LoRA on GPT-2; the keys filled in by
# :func:`adapter_config` are left out here
_PEFT_DEFAULTS: dict[str, Any] = {
    "alora_invocation_tokens": None,
    "alpha_pattern": {},
    "arrow_config": None,
    "auto_mapping": None,
    "bias": "none",
    "corda_config": None,
    "ensure_weight_tying": False,
    "eva_config": None,
    "exclude_modules": None,
    "fan_in_fan_out": True,
    "inference_mode": True,
    "init_lora_weights": True,
    "kasa_config": None,
    "layer_replication": None,
    "layers_pattern": None,
    "layers_to_transform": None,
    "loftq_config": {},
    "lora_bias": False,
    "lora_dropout": 0.0,
    "lora_ga_config": None,
    "megatron_config": None,
    "megatron_core": "megatron.core",
    "modules_to_save": None,
    "monteclora_config": None,
    "peft_type": "LORA",
    "peft_version": PEFT_VERSION,
    "qalora_group_size": 16,
    "rank_pattern": {},
    "revision": None,
    "target_parameters": None,
    "task_type": "CAUSAL_LM",
    "trainable_token_indices": None,
    "use_bdlora": None,
    "use_dora": False,
    "use_qalora": False,
    "use_rslora": False,
    "velora_config": None,
}

# keys that change nothing about the function the adapters compute (where they came from, how
# they were trained or initialised) or that :func:`lora_config_from_peft` checks itself; every
# other key must be off (null, false, {} or []), or the adapters are refused naming it
_IGNORED_KEYS = {
    "auto_mapping",
    "base_model_name_or_path",
    "bias",
    "corda_config",
    "eva_config",
    "fan_in_fan_out",
    "inference_mode",
    "init_lora_weights",
    "layers_pattern",
    "loftq_config",
    "lora_alpha",
    "lora_dropout",
    "megatron_config",
    "megatron_core",
    "peft_type",
    "peft_version",
    "qalora_group_size",
    "r",
    "revision",
    "target_modules",
    "task_type",
}
# the ways of initialising that leave the base weights alone (PiSSA, OLoRA, LoftQ, … change them)
_PLAIN_INIT = (True, False, "gaussian")


def adapter_config(lora: LoRAConfig, base_model: str | None) -> dict[str, Any]:
    """adapter_config.json for adapters of ``lora`` on the weights in directory ``base_model``
    (None when no directory holds them): PEFT's keys, in the order PEFT writes them."""
    alpha = int(lora.alpha) if float(lora.alpha).is_integer() else lora.alpha
    values = {
        **_PEFT_DEFAULTS,
        "base_model_name_or_path": base_model,
        "lora_alpha": alpha,
        "r": lora.rank,
        "target_modules": list(lora.targets),
    }
    return dict(sorted(values.items()))


def peft_name(name: str) -> str:
    """The name PEFT saves our adapter tensor ``name`` (``h.0.attn.c_attn.lora_A.weight``) under."""
    return PEFT_PREFIX + name


def base_digest(model_state: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over the base weights' names, dtypes, shapes and bytes, in name order: recorded
    with the adapters so that the base found through ``base_model_name_or_path`` can be checked
    to be the one they were trained on."""
    digest = hashlib.sha256()
    for name in sorted(model_state):
        array = np.ascontiguousarray(model_state[name])
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


def write_adapters(
    directory: Path,
    lora: LoRAAdapters,
    *,
    base_model: str | None,
    base_state: Mapping[str, np.ndarray],
    step: int,
) -> tuple[str, str]:
    """Write adapter_config.json and adapter_model.safetensors for ``lora`` into ``directory``
    and return their names. ``base_model``: the directory holding the weights they apply to
    (``base_model_name_or_path``); ``base_state``: those weights, whose digest is recorded."""
    config_json = to_json(adapter_config(lora.config, base_model), ADAPTER_CONFIG_FILE)
    ours = {"lora": lora.config.to_dict(), "step": step, "base_sha256": base_digest(base_state)}
    metadata = {"format": "pt", "tinygradlm": json.dumps(ours)}
    tensors = {peft_name(k): np.ascontiguousarray(v) for k, v in lora.state_dict().items()}
    write_safetensors(directory / ADAPTER_MODEL_FILE, tensors, metadata)
    (directory / ADAPTER_CONFIG_FILE).write_text(config_json, encoding="utf-8")
    return ADAPTER_CONFIG_FILE, ADAPTER_MODEL_FILE


def save_adapters(
    path: str | os.PathLike[str],
    lora: LoRAAdapters,
    *,
    base_model: str,
    base_state: Mapping[str, np.ndarray],
    step: int = 0,
) -> Path:
    """Write a PEFT adapter directory at ``path`` atomically and return it: adapter_config.json
    and adapter_model.safetensors alone, what ``PeftModel.from_pretrained(base, path)`` reads
    and people share. No manifest: PEFT's directories have none, and the reader checks every
    name, shape and dtype, and the base's digest, instead. An existing ``path`` is refused."""
    final = Path(path)
    if final.exists():
        raise CheckpointError(f"{final} already exists: choose a new directory")
    with atomic_directory(final) as tmp:
        names = write_adapters(tmp, lora, base_model=base_model, base_state=base_state, step=step)
        for name in names:
            fsync_file(tmp / name)
        fsync_directory(tmp)
    return final


def is_adapter_directory(path: Path) -> bool:
    """A PEFT adapter directory: adapter_config.json, and neither config.json (no model of its
    own) nor manifest.json (a checkpoint that lost its config.json is reported as such)."""
    own = (path / CONFIG_FILE).exists() or (path / MANIFEST_FILE).exists()
    return (path / ADAPTER_CONFIG_FILE).is_file() and not own


# --------------------------------------------------------------------------------------------
# reading adapter_config.json
# --------------------------------------------------------------------------------------------


def lora_config_from_peft(file: Path, values: Any, n_layer: int) -> LoRAConfig:
    """The LoRAConfig of adapter_config.json (``values``, read from ``file``) for a GPT-2 of
    ``n_layer`` blocks. Refused, naming the key: anything but a plain LoRA (DoRA, rsLoRA,
    per-module ranks, biases, extra trained modules, some layers only, …), targets other than
    the four projections of every block, and ``fan_in_fan_out`` false (GPT-2's projections are
    ``Conv1D``: PEFT writes true for them). ``lora_dropout`` is accepted: it only acts in
    training."""
    if not isinstance(values, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    problems = []
    if values.get("peft_type") != "LORA":
        problems.append(f"peft_type is {values.get('peft_type')!r}: only 'LORA' is supported")
    if values.get("task_type") not in (None, "CAUSAL_LM"):
        problems.append(f"task_type is {values['task_type']!r}: only 'CAUSAL_LM' is supported")
    if values.get("fan_in_fan_out") is not True:
        problems.append(
            f"fan_in_fan_out is {values.get('fan_in_fan_out')!r}: GPT-2's projections are Conv1D "
            "with (in, out) weights, for which PEFT writes true"
        )
    if values.get("bias", "none") != "none":
        problems.append(f"bias is {values['bias']!r}: only 'none' is supported")
    if values.get("init_lora_weights", True) not in _PLAIN_INIT:
        problems.append(
            f"init_lora_weights is {values['init_lora_weights']!r}: this initialisation changes "
            "the base weights; convert the adapters to plain LoRA first"
        )
    dropout = values.get("lora_dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        problems.append(f"lora_dropout is {dropout!r}, not a number in [0, 1)")
    for key, value in values.items():
        if key not in _IGNORED_KEYS and value not in (None, False, {}, []):
            problems.append(f"{key} is {value!r}: not supported (it must be off)")
    rank, alpha = values.get("r"), values.get("lora_alpha")
    targets: tuple[str, ...] = ()
    try:
        targets = _targets(values.get("target_modules"), n_layer)
    except ValueError as err:
        problems.append(f"target_modules {values.get('target_modules')!r}: {err}")
    if problems:
        raise CheckpointError(f"{file}: unsupported adapters:\n  " + "\n  ".join(problems))
    try:
        return LoRAConfig(rank, alpha, targets)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{file}: r / lora_alpha: {err}") from None


def _module_names(n_layer: int) -> list[str]:
    """Every module name of a ``GPT2LMHeadModel``, as PEFT matches ``target_modules`` against."""
    names = ["transformer", "transformer.wte", "transformer.wpe", "transformer.drop"]
    names += ["transformer.h", "transformer.ln_f", "lm_head"]
    parts = ("ln_1", "attn", "attn.attn_dropout", "attn.resid_dropout", "ln_2", "mlp", "mlp.act")
    parts += ("mlp.dropout", *TARGETS)
    for i in range(n_layer):
        names += [f"transformer.h.{i}"] + [f"transformer.h.{i}.{part}" for part in parts]
    return names


def _targets(target_modules: Any, n_layer: int) -> tuple[str, ...]:
    """Our targets for PEFT's ``target_modules``, matched as PEFT matches them: a string is a
    regular expression the whole module name must match ("all-linear": every projection), a
    list holds names or dotted suffixes (``"c_proj"`` is both attn.c_proj and mlp.c_proj)."""
    names = _module_names(n_layer)
    if target_modules == "all-linear":  # PEFT: every Linear / Conv1D but the output layer
        return TARGETS
    if isinstance(target_modules, str):
        try:
            pattern = re.compile(target_modules)
        except re.error as err:
            raise ValueError(f"not a regular expression: {err}") from None
        groups = {target_modules: [n for n in names if pattern.fullmatch(n)]}
    elif isinstance(target_modules, list) and all(isinstance(t, str) for t in target_modules):
        groups = {t: [n for n in names if n == t or n.endswith("." + t)] for t in target_modules}
    else:
        raise ValueError("expected a list of module names or a regular expression")
    blocks: dict[str, set[int]] = {}
    for entry, matched in groups.items():
        if not matched:
            raise ValueError(f"{entry!r} names no module of GPT-2")
        for name in matched:
            found = re.fullmatch(r"transformer\.h\.(\d+)\.(.+)", name)
            if found is None or found.group(2) not in TARGETS:
                raise ValueError(
                    f"{entry!r} adapts {name}: tinygradlm adapts only {', '.join(TARGETS)}"
                )
            blocks.setdefault(found.group(2), set()).add(int(found.group(1)))
    for target, layers in blocks.items():
        if len(layers) != n_layer:
            raise ValueError(
                f"adapts {target} in blocks {sorted(layers)} of {n_layer}: tinygradlm's adapters "
                "sit in every block"
            )
    if not blocks:
        raise ValueError("adapts nothing")
    return tuple(t for t in TARGETS if t in blocks)


def read_metadata(file: Path, metadata: Mapping[str, str]) -> dict[str, Any]:
    """Our entry in adapter_model.safetensors' header metadata ({} in PEFT's own files)."""
    text = metadata.get("tinygradlm")
    if text is None:
        return {}
    ours = parse_json(text, f"{file}: the 'tinygradlm' header entry", CheckpointError)
    if not isinstance(ours, dict):
        raise CheckpointError(f"{file}: header entry 'tinygradlm' is not a JSON object")
    return ours


def check_recorded_config(file: Path, ours: Mapping[str, Any], lora: LoRAConfig) -> None:
    """The LoRAConfig we recorded in the header must be the one adapter_config.json describes."""
    if "lora" not in ours:
        return
    try:
        recorded = LoRAConfig.from_dict(ours["lora"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{file}: invalid LoRA config in the header: {err}") from None
    if recorded != lora:
        raise CheckpointError(
            f"{file}: the header's LoRA config {recorded.to_dict()} differs from "
            f"{ADAPTER_CONFIG_FILE}'s {lora.to_dict()}"
        )


def base_directory(file: Path, values: Mapping[str, Any]) -> Path:
    """The local directory adapter_config.json's ``base_model_name_or_path`` names (relative
    paths from the current directory, as ``transformers`` reads them). A hub id is refused:
    tinygradlm reads no network."""
    base = values.get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise CheckpointError(
            f"{file}: base_model_name_or_path is {base!r}: set it to the directory of the model "
            "these adapters were trained on"
        )
    path = Path(base).expanduser()
    if not path.is_dir():
        raise CheckpointError(
            f"{file}: base_model_name_or_path {base!r} is not a local directory (a hub id? "
            "tinygradlm downloads nothing): download the model and point "
            "base_model_name_or_path at its directory"
        )
    if is_adapter_directory(path):
        raise CheckpointError(
            f"{file}: base_model_name_or_path {base!r} is itself an adapter directory: point it "
            "at that directory's base model"
        )
    return path
