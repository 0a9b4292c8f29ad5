"""The divergence guard: skip updates whose loss or gradient norm is not finite; after N in a
row, roll back to the last checkpoint at a lower learning rate (the loop does the rollback).
The rule is in docs/monitoring.md."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any

from ..errors import DivergenceError
from ..monitor.metrics import is_count


class Action(enum.StrEnum):
    """What the trainer does with a step: apply its update, skip it, or roll back."""

    OK = "ok"
    SKIP = "skip"
    ROLLBACK = "rollback"
    OVERFLOW = "overflow"  # fp16 gradients overflowed the loss scale: skipped, not divergence


class DivergenceGuard:
    """Skip updates whose loss or gradient norm is not finite; roll back after N in a row.

    ``check(loss, grad_norm)`` after forward/backward and before the optimizer step:

    - both finite: ``"ok"`` (apply the update); the count of bad steps in a row resets to 0;
    - either NaN or ±inf: ``"skip"`` (leave parameters and optimizer state untouched);
    - the ``max_bad_steps``-th non-finite step in a row: ``"rollback"``: restore the last
      checkpoint and continue with the learning rate multiplied by :attr:`lr_factor`, which each
      rollback multiplies by ``backoff`` (0.5: halved). The count restarts at 0.

    After ``max_rollbacks`` rollbacks (None: no limit), the next one raises DivergenceError.
    ``grad_norm=None`` (not computed) checks the loss alone. The guard's state goes into the
    checkpoint (:meth:`state_dict`) and is loaded on resume, but not on a rollback: the lowered
    learning rate must survive the restore.
    """

    def __init__(
        self, max_bad_steps: int = 3, *, backoff: float = 0.5, max_rollbacks: int | None = 5
    ) -> None:
        if not is_count(max_bad_steps) or max_bad_steps < 1:
            raise ValueError(f"DivergenceGuard: max_bad_steps must be >= 1, got {max_bad_steps!r}")
        if not 0 < backoff <= 1:
            raise ValueError(f"DivergenceGuard: backoff must be in (0, 1], got {backoff!r}")
        if max_rollbacks is not None and max_rollbacks < 0:
            raise ValueError(f"DivergenceGuard: max_rollbacks must be >= 0, got {max_rollbacks!r}")
        self.max_bad_steps = max_bad_steps
        self.backoff = float(backoff)
        self.max_rollbacks = max_rollbacks
        self.bad_steps = 0  # non-finite steps in a row
        self.skipped_steps = 0  # in the whole run
        self.rollbacks = 0
        self.lr_factor = 1.0

    def check(self, loss: float, grad_norm: float | None) -> Action:
        """The action for a step with this loss and gradient norm (see the class docstring)."""
        if math.isfinite(loss) and (grad_norm is None or math.isfinite(grad_norm)):
            self.bad_steps = 0
            return Action.OK
        self.skipped_steps += 1
        self.bad_steps += 1
        if self.bad_steps < self.max_bad_steps:
            return Action.SKIP
        if self.max_rollbacks is not None and self.rollbacks >= self.max_rollbacks:
            raise DivergenceError(
                f"{self.bad_steps} non-finite steps in a row after {self.rollbacks} rollbacks "
                f"(lr_factor already {self.lr_factor:g}): giving up"
            )
        self.bad_steps = 0
        self.rollbacks += 1
        self.lr_factor *= self.backoff
        return Action.ROLLBACK

    def state_dict(self) -> dict[str, Any]:
        """The guard's counters and learning-rate factor, as JSON values."""
        return {
            "bad_steps": self.bad_steps,
            "skipped_steps": self.skipped_steps,
            "rollbacks": self.rollbacks,
            "lr_factor": self.lr_factor,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output, after checking every field (nothing changes
        unless all are valid)."""
        problems = self.state_problems(state)
        if problems:
            raise ValueError(
                "DivergenceGuard.load_state_dict: state does not match the guard:\n  "
                + "\n  ".join(problems)
            )
        lr_factor = state["lr_factor"]
        self.bad_steps = state["bad_steps"]
        self.skipped_steps = state["skipped_steps"]
        self.rollbacks = state["rollbacks"]
        self.lr_factor = float(lr_factor)

    @staticmethod
    def state_problems(state: Any) -> list[str]:
        """Every way ``state`` differs from what :meth:`state_dict` writes (empty: it loads)."""
        if not isinstance(state, Mapping):
            return [f"expected a table of the guard's counters, got {type(state).__name__}"]
        expected = {"bad_steps", "skipped_steps", "rollbacks", "lr_factor"}
        if set(state) != expected:
            return [f"expected fields {sorted(expected)}, got {sorted(map(str, state))}"]
        problems = [
            f"{name} must be an integer >= 0, got {state[name]!r}"
            for name in ("bad_steps", "skipped_steps", "rollbacks")
            if not is_count(state[name]) or state[name] < 0
        ]
        lr_factor = state["lr_factor"]
        if isinstance(lr_factor, bool) or not isinstance(lr_factor, (int, float)):
            lr_factor = math.nan
        if not 0 < lr_factor <= 1:
            problems.append(f"lr_factor must be in (0, 1], got {state['lr_factor']!r}")
        return problems
