"""Dynamic loss scaling for fp16 (:class:`LossScaler`): PyTorch's ``GradScaler``, in NumPy."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

# elements per chunk in unscale_and_check: 256 KB of float32 stays in L2 cache between the
# multiply and the finiteness test, so the pair costs about one pass over memory (1.9 ms for 7.3M
# gradients, against 3.5 ms for the multiply and np.isfinite(g).all() as two whole passes)
_CHECK_CHUNK = 1 << 16
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_HYPERPARAMETERS = (
    "init_scale",
    "growth_factor",
    "backoff_factor",
    "growth_interval",
    "min_scale",
    "enabled",
)


class LossScaler:
    """Dynamic loss scaling for fp16, with the semantics of PyTorch's ``GradScaler``.

    Each step::

        forward_backward(..., loss_scale=scaler.scale)   # gradients of scale·loss
        found_finite = scaler.unscale_and_check(grads)   # grads /= scale; all finite?
        if found_finite: clip, optimizer step            # else: skip the step
        scaler.update(found_finite)

    :meth:`update` multiplies the scale by ``backoff_factor`` after an overflow (never below
    ``min_scale``, our addition: PyTorch has no floor) and by ``growth_factor`` after
    ``growth_interval`` overflow-free steps in a row (never past float32's largest value, as
    PyTorch). The default factors are powers of two, so scaling and unscaling are exact.
    :meth:`is_overflow` tells an overflow the scaler handles from a divergence the trainer's
    guard must see. ``enabled=False`` (bf16, fp32) makes the scale 1 and :meth:`update` a no-op;
    :meth:`unscale_and_check` still reports finiteness.

    >>> scaler = LossScaler(init_scale=1024.0, growth_interval=2)
    >>> grads = np.array([2048.0, np.inf], dtype=np.float32)
    >>> scaler.unscale_and_check(grads)
    False
    >>> scaler.update(False); scaler.scale
    512.0
    """

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        min_scale: float = 1.0,
        enabled: bool = True,
    ) -> None:
        _check_hyperparameters(
            init_scale, growth_factor, backoff_factor, growth_interval, min_scale, enabled
        )
        self.init_scale = float(init_scale)
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = int(growth_interval)
        self.min_scale = float(min_scale)
        self.enabled = bool(enabled)
        self._scale = self.init_scale if self.enabled else 1.0
        self.growth_tracker = 0  # overflow-free steps since the scale last changed
        self.overflow_steps = 0  # updates after non-finite gradients, in the whole run

    def __repr__(self) -> str:
        return (
            f"LossScaler(scale={self._scale:g}, growth_tracker={self.growth_tracker}, "
            f"overflow_steps={self.overflow_steps}, enabled={self.enabled})"
        )

    @property
    def scale(self) -> float:
        """The factor to multiply the loss by: ``loss_scale`` of ``forward_backward`` (divided
        by the number of accumulation micro-steps, when there are several)."""
        return self._scale

    def unscale_and_check(self, grads: np.ndarray) -> bool:
        """Divide ``grads`` (a float array, e.g. the flat gradient buffer) by the scale, in
        place; return True when every entry is finite.

        The division is a multiplication by 1/scale in the gradients' dtype (exact for a power
        of two scale; PyTorch does the same). The test is exact: ``np.isfinite`` on every
        entry, chunk by chunk right after the chunk's multiply, while it is in cache. (A cheaper
        ``np.isfinite(grads.sum())`` never misses an inf or NaN, since they propagate through
        any sum, but it raises false alarms: finite gradients whose float32 sum overflows,
        which would skip good steps and shrink the scale for nothing. The float64 sum of
        squares that ``grad_norm`` computes is exact, but costs more, and the trainer takes
        the norm only after this check.) Disabled: nothing is divided; finiteness is still
        reported.
        """
        if not isinstance(grads, np.ndarray) or grads.dtype.kind != "f":
            raise TypeError(
                f"LossScaler.unscale_and_check: grads must be a float array, got "
                f"{type(grads).__name__} {getattr(grads, 'dtype', '')}"
            )
        inv_scale = grads.dtype.type(1.0 / self._scale)
        unscale = self.enabled and self._scale != 1.0
        if not grads.flags.c_contiguous:  # a strided view: two whole passes
            if unscale:
                grads *= inv_scale
            return bool(np.isfinite(grads).all())
        flat = grads.reshape(-1)  # a view
        finite = np.empty(min(_CHECK_CHUNK, flat.size), dtype=bool)
        all_finite = True
        for start in range(0, flat.size, _CHECK_CHUNK):
            chunk = flat[start : start + _CHECK_CHUNK]
            if unscale:
                np.multiply(chunk, inv_scale, out=chunk)
            if all_finite:
                all_finite = bool(np.isfinite(chunk, out=finite[: chunk.size]).all())
            elif not unscale:
                break
        return all_finite

    def is_overflow(self, loss: float, found_finite: bool) -> bool:
        """Whether a step is an fp16 overflow, to be skipped with the scale backed off, rather
        than a divergence for the trainer's guard: the scaler is enabled, the loss is finite,
        the gradients are not, and the scale is above ``min_scale`` (at the floor, scaling is
        no longer the cause). A non-finite loss comes from the forward pass, which the scale
        does not touch: a divergence."""
        return (
            self.enabled
            and not found_finite
            and math.isfinite(loss)
            and self._scale > self.min_scale
        )

    def update(self, found_finite: bool) -> None:
        """After a step: back off on overflow, grow after ``growth_interval`` clean steps."""
        if not self.enabled:
            return
        if not found_finite:
            self._scale = max(self._scale * self.backoff_factor, self.min_scale)
            self.growth_tracker = 0
            self.overflow_steps += 1
            return
        self.growth_tracker += 1
        if self.growth_tracker == self.growth_interval:
            grown = self._scale * self.growth_factor
            if grown <= _FLOAT32_MAX:  # the scale must stay a finite float32
                self._scale = grown
            self.growth_tracker = 0

    def state_dict(self) -> dict[str, Any]:
        """``scale``, ``growth_tracker``, ``overflow_steps`` and the hyperparameters, as JSON
        values (for the checkpoint's trainer state: a resumed run continues bit-identically)."""
        return {
            "scale": self._scale,
            "growth_tracker": self.growth_tracker,
            "overflow_steps": self.overflow_steps,
            **{name: getattr(self, name) for name in _HYPERPARAMETERS},
        }

    def state_problems(self, state: Any) -> list[str]:
        """Every way ``state`` differs from what :meth:`state_dict` writes (empty: it loads)."""
        if not isinstance(state, Mapping):
            return [f"expected a table of the scaler's state, got {type(state).__name__}"]
        required = ("scale", "growth_tracker", "overflow_steps")
        problems = [f"missing: {key}" for key in required if key not in state]
        problems += [
            f"unexpected: {key}" for key in state if key not in (*required, *_HYPERPARAMETERS)
        ]
        for key in ("growth_tracker", "overflow_steps"):
            value = state.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                problems.append(f"{key}: expected an integer >= 0, got {value!r}")
        merged = {name: state.get(name, getattr(self, name)) for name in _HYPERPARAMETERS}
        if not problems:
            try:
                _check_hyperparameters(**merged)
            except ValueError as err:
                problems.append(str(err).removeprefix("LossScaler: "))
        scale = state.get("scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating)):
            problems.append(f"scale: expected a number, got {scale!r}")
        elif not (0 < scale <= _FLOAT32_MAX):
            problems.append(f"scale: must be finite and > 0, got {scale!r}")
        return problems

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output. ``scale``, ``growth_tracker`` and
        ``overflow_steps`` are required; the hyperparameters are optional (absent ones keep
        their values). Every problem is reported at once, and nothing changes unless all
        entries are valid."""
        problems = self.state_problems(state)
        if problems:
            raise ValueError(
                "LossScaler.load_state_dict: state does not match the scaler:\n  "
                + "\n  ".join(problems)
            )
        merged = {name: state.get(name, getattr(self, name)) for name in _HYPERPARAMETERS}
        scale = state.get("scale", 1.0)
        self.init_scale = float(merged["init_scale"])
        self.growth_factor = float(merged["growth_factor"])
        self.backoff_factor = float(merged["backoff_factor"])
        self.growth_interval = int(merged["growth_interval"])
        self.min_scale = float(merged["min_scale"])
        self.enabled = bool(merged["enabled"])
        self._scale = float(scale)
        self.growth_tracker = int(state["growth_tracker"])
        self.overflow_steps = int(state["overflow_steps"])


def _check_hyperparameters(
    init_scale: Any,
    growth_factor: Any,
    backoff_factor: Any,
    growth_interval: Any,
    min_scale: Any,
    enabled: Any,
) -> None:
    def number(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            return math.nan
        return float(value)

    problems = []
    init, growth, backoff, floor = map(
        number, (init_scale, growth_factor, backoff_factor, min_scale)
    )
    if not 0 < init <= _FLOAT32_MAX:
        problems.append(f"init_scale must be finite and > 0, got {init_scale!r}")
    if not 1 < growth <= _FLOAT32_MAX:
        problems.append(f"growth_factor must be > 1, got {growth_factor!r}")
    if not 0 < backoff < 1:
        problems.append(f"backoff_factor must be in (0, 1), got {backoff_factor!r}")
    if not 0 < floor <= _FLOAT32_MAX:
        problems.append(f"min_scale must be finite and > 0, got {min_scale!r}")
    elif floor > init:
        problems.append(f"min_scale ({min_scale!r}) exceeds init_scale ({init_scale!r})")
    if (
        isinstance(growth_interval, bool)
        or not isinstance(growth_interval, (int, np.integer))
        or growth_interval < 1
    ):
        problems.append(f"growth_interval must be an integer >= 1, got {growth_interval!r}")
    if not isinstance(enabled, (bool, np.bool_)):
        problems.append(f"enabled must be True or False, got {enabled!r}")
    if problems:
        raise ValueError("LossScaler: " + "; ".join(problems))
