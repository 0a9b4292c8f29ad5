"""The shape of a checkpoint's trainer state (trainer.json), checked whole before a resume or a
rollback changes anything: the loader's position, the divergence guard's counters, the loss
scaler's state and the run's config, each the table it must be. A trainer.json of the wrong
shape (``"guard": 5``, ``"config": [...]``, a string ``seq_len``) is a CheckpointError that names
the file and the key, never a TypeError from deep inside the restore."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..checkpoint import TRAINER_FILE
from ..errors import CheckpointError
from ..precision import LossScaler
from ..schema import Rule, check_value
from .guard import DivergenceGuard

__all__ = ["check_trainer_state", "run_seq_len"]

SEQ_LEN = Rule("int", 1, doc="the run's tokens per sequence")


def check_trainer_state(
    state: Any, checkpoint: Path, *, guard: DivergenceGuard, scaler: LossScaler
) -> None:
    """Raise a CheckpointError listing every problem of the trainer state ``state`` read from
    ``checkpoint``: a missing or non-table ``loader``, a ``guard`` or ``scaler`` that ``guard``
    or ``scaler`` would refuse, a ``config`` that is not a table or whose ``seq_len`` is not a
    positive integer. The loader checks its own table's contents when it loads it."""
    where = Path(checkpoint) / TRAINER_FILE
    if not isinstance(state, dict):
        raise CheckpointError(f"{where}: expected a JSON object, got {type(state).__name__}")
    problems = []
    if "loader" not in state:
        problems.append(
            "no loader position: a model-only checkpoint starts a run (tinygradlm finetune "
            "--from) but cannot resume one"
        )
    elif not isinstance(state["loader"], dict):
        kind = type(state["loader"]).__name__
        problems.append(f"loader must be a table (the data loader's position), got {kind}")
    if "guard" in state:
        problems += [f"guard: {p}" for p in guard.state_problems(state["guard"])]
    if "scaler" in state:
        problems += [f"scaler: {p}" for p in scaler.state_problems(state["scaler"])]
    config = state.get("config", {})
    if not isinstance(config, dict):
        problems.append(f"config must be a table (the run's settings), got {type(config).__name__}")
    elif "seq_len" in config and check_value(config["seq_len"], SEQ_LEN):
        problems.append(f"config.seq_len {check_value(config['seq_len'], SEQ_LEN)}")
    if problems:
        raise CheckpointError(f"{where}: " + "; ".join(problems))


def run_seq_len(state: Any, checkpoint: Path) -> int | None:
    """The run's ``seq_len`` recorded in the trainer state, or None (a model-only checkpoint,
    or an older one); a CheckpointError naming trainer.json if it is there but malformed."""
    config = state.get("config", {}) if isinstance(state, dict) else {}
    where = Path(checkpoint) / TRAINER_FILE
    if not isinstance(config, dict):
        raise CheckpointError(f"{where}: config must be a table, got {type(config).__name__}")
    if "seq_len" not in config:
        return None
    wrong = check_value(config["seq_len"], SEQ_LEN)
    if wrong:
        raise CheckpointError(f"{where}: config.seq_len {wrong}")
    return int(config["seq_len"])
