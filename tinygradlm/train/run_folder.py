"""A run's folder: its default name, and the check that a folder with checkpoints holds the
run about to resume there.

Without ``out_dir``, a run is written to ``runs/<config>``: the preset's name or the TOML file's
stem (``tinygradlm train --config tiny`` → ``runs/tiny``, ``--config ft.toml`` → ``runs/ft``), so
two configs never resume each other's checkpoints. Running the same config again continues its
run, with new values for the settings a run may change (``max_steps``, the intervals, the
learning rate, …). A folder whose newest checkpoint was trained with other *identity* settings
(the model, the batch shape, the seed, what fine-tuning trains, or the other kind of run) holds
a different run: resuming it is refused before anything is loaded, with a CheckpointError naming
each setting that differs, old → new, and the two ways on (another ``out_dir``, or deleting the
folder). Paths are not identity: data and checkpoints may move, and the loader checks that its
data is the same files (a DataError lists what differs).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..checkpoint import TRAINER_FILE
from ..errors import CheckpointError
from ..parse import read_json

__all__ = ["IDENTITY_SETTINGS", "check_same_run", "default_out_dir"]

# the settings that make a run what it is (with the [model] table's, "model.*"): a checkpoint
# trained with other values of these cannot continue into this config
IDENTITY_SETTINGS = (
    "batch_size",
    "seq_len",
    "seed",
    "prompt_key",
    "response_key",
    "lora_rank",
    "lora_alpha",
    "lora_targets",
    "freeze",
)


def default_out_dir(source: str | Path) -> str:
    """``runs/<name>``: the preset's name, or the stem of the TOML file ``source``."""
    return f"runs/{Path(source).stem}"


def check_same_run(config: Any, checkpoint: Path) -> list[str]:
    """The settings (``old → new``) in which ``config`` differs from the run whose checkpoint
    is ``checkpoint`` (its trainer.json); a CheckpointError, naming the folder and every
    identity setting that differs, when the checkpoint belongs to a different run. A checkpoint
    whose trainer.json cannot be read, or records no config or one its config class refuses, is
    left to the resume's own checks (``train.resume_state``), which name the file and key."""
    try:
        state = read_json(Path(checkpoint) / TRAINER_FILE)
    except ValueError:
        return []
    old = state.get("config") if isinstance(state, dict) else None
    if not isinstance(old, dict):
        return []
    # a pretraining run's config has no init_from, a fine-tuning run's has: other kinds of run
    other_kind = ("init_from" in old) != ("init_from" in config.to_dict())
    # of the same kind, the recorded values must follow the config's rules, else the resume's
    # checks report the file and key
    if not other_kind and type(config).check_values(old):
        return []
    old_flat, new_flat = _flatten(old), _flatten(config.to_dict())
    changed = [
        key
        for key in sorted(set(old_flat) | set(new_flat))
        if old_flat.get(key, _UNSET) != new_flat.get(key, _UNSET) and key != "out_dir"
    ]
    different = [
        k
        for k in changed
        if k in IDENTITY_SETTINGS or k.startswith("model.") or (k == "init_from" and other_kind)
    ]
    if different:
        folder = Path(checkpoint).parent
        raise CheckpointError(
            f"{folder} holds a different run (its newest checkpoint, {Path(checkpoint).name}, "
            f"was trained with other settings): {_describe(different, old_flat, new_flat)}. "
            f"Choose another out_dir (out_dir=runs/NAME) to start this one, or delete "
            f"{folder} to start over there"
        )
    return [_describe([k], old_flat, new_flat) for k in changed]


class _Unset:
    def __repr__(self) -> str:
        return "(unset)"


_UNSET = _Unset()


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"n_layer": 4}}`` → ``{"model.n_layer": 4}``."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _describe(keys: list[str], old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {old.get(k, _UNSET)!r} → {new.get(k, _UNSET)!r}" for k in keys)
