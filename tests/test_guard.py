"""tinygradlm.train.guard: the divergence guard skips non-finite steps, rolls back after N in a
row, lowers the learning rate by its rule, and its state survives a checkpoint."""

import json
import math

import numpy as np
import pytest

from tinygradlm.errors import DivergenceError
from tinygradlm.train.guard import Action, DivergenceGuard


def test_divergence_guard_skips_non_finite_steps_and_resets_on_a_finite_one():
    guard = DivergenceGuard(max_bad_steps=3)
    assert guard.check(2.5, 0.8) == Action.OK == "ok"
    assert guard.check(float("nan"), 0.8) == "skip"
    assert guard.check(2.5, float("inf")) == "skip"
    assert guard.bad_steps == 2
    assert guard.check(2.5, 0.8) == "ok"
    assert guard.bad_steps == 0 and guard.skipped_steps == 2 and guard.lr_factor == 1.0
    assert guard.check(np.float32("-inf"), None) == "skip"  # grad_norm None: the loss alone
    assert guard.check(2.5, None) == "ok"


def test_divergence_guard_rolls_back_after_n_in_a_row_and_halves_the_lr_factor():
    guard = DivergenceGuard(max_bad_steps=2, max_rollbacks=2)
    nan = float("nan")
    assert [guard.check(nan, nan) for _ in range(4)] == ["skip", "rollback", "skip", "rollback"]
    assert guard.lr_factor == 0.25 and guard.rollbacks == 2 and guard.bad_steps == 0
    assert guard.check(nan, 1.0) == "skip"
    with pytest.raises(DivergenceError, match="2 rollbacks"):
        guard.check(nan, 1.0)


def test_divergence_guard_state_survives_a_json_round_trip():
    guard = DivergenceGuard(max_bad_steps=2, backoff=0.1)
    for loss in (math.nan, math.nan, math.nan, 1.0, math.inf):
        guard.check(loss, 1.0)
    state = json.loads(json.dumps(guard.state_dict(), allow_nan=False))
    resumed = DivergenceGuard(max_bad_steps=2, backoff=0.1)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == guard.state_dict()
    assert resumed.lr_factor == pytest.approx(0.1) and resumed.bad_steps == 1
    assert resumed.check(math.nan, 1.0) == guard.check(math.nan, 1.0) == "rollback"
    for bad in ({**state, "lr_factor": 0.0}, {**state, "rollbacks": -1}, {"bad_steps": 0}):
        with pytest.raises(ValueError, match=r"DivergenceGuard\.load_state_dict"):
            resumed.load_state_dict(bad)


def test_divergence_guard_rejects_bad_settings():
    with pytest.raises(ValueError, match="max_bad_steps"):
        DivergenceGuard(max_bad_steps=0)
    with pytest.raises(ValueError, match="backoff"):
        DivergenceGuard(backoff=1.5)
