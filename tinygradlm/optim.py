"""The optimizer side of the loop, on the flat buffers: AdamW, the learning-rate schedule and
global-norm gradient clipping.

Every function here works on one flat array (``GPT.flat_params`` / ``GPT.flat_grads``), so each
is a single vectorized operation whatever the model's shape. The formulas are written out in
``docs/optim.md``.

    >>> from tinygradlm.model import GPT, GPTConfig
    >>> model = GPT(GPTConfig.preset("tiny"), seed=0)
    >>> opt = AdamW.for_model(model, lr=6e-4)
    >>> loss, _ = model.forward_backward(np.zeros((1, 8), np.int64), np.zeros((1, 8), np.int64))
    >>> norm = clip_grad_norm(model.flat_grads, 1.0)
    >>> opt.step(lr=lr_schedule(0, max_lr=6e-4, min_lr=6e-5, warmup_steps=10, max_steps=100))
    >>> opt.step_count
    1
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import backend
from .params import ranges_of_mask, shard_ranges
from .ref.adamw import check_decay_ranges

# --------------------------------------------------------------------------------------------
# AdamW
# --------------------------------------------------------------------------------------------


class AdamW:
    """AdamW (Loshchilov & Hutter, 2019) on a flat parameter buffer and its flat gradient.

    Each :meth:`step` is ``tinygradlm.backend.layers().adamw_update`` (the NumPy reference or
    the Numba kernel, by the active backend), in place on ``params``, ``m`` and ``v``::

        m = β1·m + (1 − β1)·g                  v = β2·v + (1 − β2)·g²
        m̂ = m / (1 − β1^t)                     v̂ = v / (1 − β2^t)
        params −= lr·(m̂ / (√v̂ + eps) + weight_decay·params)     (decayed entries)
        params −= lr·m̂ / (√v̂ + eps)                              (the others)

    with t the 1-based count of steps taken, including this one. ``decay_ranges`` (n, 2) int64
    holds the [start, end) ranges of the flat buffer where the decoupled weight decay applies
    (nanoGPT's choice, which :meth:`for_model` makes: the 2-D weights, embeddings included;
    ``ParameterBuffer.ranges`` makes them from a per-tensor choice); None decays every entry.
    ``decay_mask`` (N,) of 0s and 1s, the former way of saying the same, is still taken and
    turned into ranges (``tinygradlm.params.ranges_of_mask``), with a DeprecationWarning.

    ``params`` and ``grads`` are held by reference: the optimizer reads ``grads`` and writes
    ``params`` where they are, so the model's buffers must not be reallocated. The moments ``m``
    and ``v`` are flat arrays of the parameters' dtype (float32 in training), zero at first.
    """

    def __init__(
        self,
        params: np.ndarray,
        grads: np.ndarray,
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.1,
        decay_ranges: np.ndarray | None = None,
        decay_mask: np.ndarray | None = None,
    ) -> None:
        for name, buf in (("params", params), ("grads", grads)):
            if not isinstance(buf, np.ndarray) or buf.dtype.kind != "f" or buf.ndim != 1:
                raise TypeError(
                    f"AdamW: {name} must be a flat (N,) float array, got "
                    f"{type(buf).__name__} {getattr(buf, 'dtype', '')} "
                    f"{getattr(buf, 'shape', '')}"
                )
        if grads.shape != params.shape or grads.dtype != params.dtype:
            raise ValueError(
                f"AdamW: grads {grads.dtype}{grads.shape} do not match params "
                f"{params.dtype}{params.shape}"
            )
        if decay_mask is not None:
            if decay_ranges is not None:
                raise TypeError("AdamW: give decay_ranges or decay_mask (deprecated), not both")
            decay_ranges = _ranges_from_mask(decay_mask, params.shape)
        if decay_ranges is not None:
            decay_ranges = np.asarray(decay_ranges)
            check_decay_ranges("AdamW", decay_ranges, params.size)
        self.params = params
        self.grads = grads
        self.decay_ranges = decay_ranges
        self.lr = float(lr)
        self.beta1, self.beta2 = (float(b) for b in betas)
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        _check_hyperparameters(self.lr, self.beta1, self.beta2, self.eps, self.weight_decay)
        self.m = np.zeros_like(params)  # (N,) first moment: moving average of g
        self.v = np.zeros_like(params)  # (N,) second moment: moving average of g²
        self.step_count = 0

    @classmethod
    def for_model(cls, model: Any, **kwargs: Any) -> AdamW:
        """AdamW on ``model.flat_params`` / ``model.flat_grads``, decaying only the 2-D weights
        (``model.decay_ranges()``). Keyword arguments as for the constructor."""
        kwargs.setdefault("decay_ranges", model.decay_ranges())
        return cls(model.flat_params, model.flat_grads, **kwargs)

    def step(
        self, lr: float | None = None, *, measure: Sequence[tuple[int, int]] | None = None
    ) -> np.ndarray | None:
        """One update from the gradient now in ``grads``. ``lr`` (the schedule's value for this
        step) replaces the learning rate from here on; None keeps the current one.

        ``measure``: disjoint [lo, hi) ranges of the buffer whose update to measure; returns, per
        range, the sum of squares of θ_after − θ_before (float64), else None. The update is then
        applied in pieces of at most :data:`MEASURE_CHUNK` entries, each piece's old values
        copied into one small scratch first (not the whole buffer): AdamW is elementwise, so
        the parameters and moments get the same bits as from one whole update."""
        spans = sorted((int(lo), int(hi), g) for g, (lo, hi) in enumerate(measure or ()))
        if any(not 0 <= lo <= hi <= self.params.size for lo, hi, _ in spans) or any(
            a[1] > b[0] for a, b in itertools.pairwise(spans)
        ):
            raise ValueError(
                f"AdamW.step: measure must be disjoint ranges of [0, {self.params.size})"
            )
        if lr is not None:
            self.lr = float(lr)
        self.step_count += 1
        if measure is None:
            self._update(0, self.params.size)
            return None
        squares = np.zeros(len(spans), dtype=np.float64)
        scratch = np.empty(min(MEASURE_CHUNK, self.params.size), dtype=self.params.dtype)
        done = 0
        for lo, hi, g in spans:
            self._update(done, lo)  # what no range measures
            for start in range(lo, hi, MEASURE_CHUNK):
                end = min(start + MEASURE_CHUNK, hi)
                before = scratch[: end - start]
                np.copyto(before, self.params[start:end])
                self._update(start, end)
                np.subtract(self.params[start:end], before, out=before)  # the update
                squares[g] += grad_norm(before) ** 2
            done = hi
        self._update(done, self.params.size)
        return squares

    def _update(self, lo: int, hi: int) -> None:
        """The step's AdamW update of the entries [lo, hi) (the decay ranges cut to them)."""
        if lo >= hi:
            return
        ranges = self.decay_ranges
        backend.layers().adamw_update(
            self.params[lo:hi],
            self.grads[lo:hi],
            self.m[lo:hi],
            self.v[lo:hi],
            self.step_count,
            self.lr,
            self.beta1,
            self.beta2,
            self.eps,
            self.weight_decay,
            ranges if ranges is None or (lo, hi) == (0, self.params.size)
            else shard_ranges(ranges, lo, hi),
        )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """``m`` and ``v`` (views of the moments: copy to keep), ``step`` (steps taken) and the
        hyperparameters ``lr``, ``beta1``, ``beta2``, ``eps``, ``weight_decay`` (Python floats).
        The decay ranges are not state: they follow from the model."""
        return {
            "m": self.m,
            "v": self.v,
            "step": self.step_count,
            "lr": self.lr,
            "beta1": self.beta1,
            "beta2": self.beta2,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy ``state`` (as :meth:`state_dict` returns it) into this optimizer.

        ``m``, ``v`` and ``step`` are required; the hyperparameters are optional (those absent
        keep their current values). Every problem is reported at once, naming the entry, and
        nothing changes unless all entries are valid.
        """
        problems = [f"missing: {key}" for key in ("m", "v", "step") if key not in state]
        known = {"m", "v", "step", *_HYPERPARAMETERS}
        problems += [f"unexpected: {key}" for key in state if key not in known]
        for key in ("m", "v"):
            if key not in state:
                continue
            value = state[key]
            if not isinstance(value, np.ndarray):
                problems.append(f"{key}: expected a NumPy array, got {type(value).__name__}")
                continue
            if value.shape != self.params.shape:
                problems.append(f"{key}: shape {value.shape}, expected {self.params.shape}")
            if value.dtype != self.params.dtype:
                problems.append(f"{key}: dtype {value.dtype}, expected {self.params.dtype}")
        step = None
        if "step" in state:
            step = _as_step(state["step"])
            if step is None:
                problems.append(f"step: expected an integer >= 0, got {state['step']!r}")
        hyper = {}
        for key in _HYPERPARAMETERS:
            if key in state:
                try:
                    hyper[key] = float(state[key])
                except (TypeError, ValueError):
                    problems.append(f"{key}: expected a number, got {state[key]!r}")
        if not problems:
            merged = {key: getattr(self, key) for key in _HYPERPARAMETERS} | hyper
            try:
                _check_hyperparameters(**merged)
            except ValueError as err:
                problems.append(str(err).removeprefix("AdamW: "))
        if problems:
            raise ValueError(
                "AdamW.load_state_dict: state does not match the optimizer:\n  "
                + "\n  ".join(problems)
            )
        self.m[...] = state["m"]
        self.v[...] = state["v"]
        self.step_count = step
        for key, value in hyper.items():
            setattr(self, key, value)


_HYPERPARAMETERS = ("lr", "beta1", "beta2", "eps", "weight_decay")
# entries per piece of a measured update (AdamW.step's measure): a 16 MB float32 scratch
MEASURE_CHUNK = 1 << 22


def _ranges_from_mask(decay_mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The decay ranges of a (deprecated) per-entry 0/1 ``decay_mask``."""
    warnings.warn(
        "AdamW: decay_mask is deprecated, pass decay_ranges ([start, end) ranges of the flat "
        "buffer: model.decay_ranges(), or tinygradlm.params.ranges_of_mask(mask))",
        DeprecationWarning,
        stacklevel=3,
    )
    if not isinstance(decay_mask, np.ndarray) or decay_mask.shape != shape:
        raise ValueError(
            f"AdamW: decay_mask must be an array of shape {shape}, got "
            f"{getattr(decay_mask, 'shape', type(decay_mask).__name__)}"
        )
    if not np.all((decay_mask == 0) | (decay_mask == 1)):
        raise ValueError(
            "AdamW: decay_mask may hold only 0 and 1 (decay on or off per entry); weight decay "
            "scaled per entry is not supported"
        )
    return ranges_of_mask(decay_mask)


def _check_hyperparameters(
    lr: float, beta1: float, beta2: float, eps: float, weight_decay: float
) -> None:
    problems = []
    if not (math.isfinite(lr) and lr >= 0):
        problems.append(f"lr must be finite and >= 0, got {lr}")
    for name, beta in (("beta1", beta1), ("beta2", beta2)):
        if not 0 <= beta < 1:
            problems.append(f"{name} must be in [0, 1), got {beta}")
    if not (math.isfinite(eps) and eps > 0):
        problems.append(f"eps must be finite and > 0, got {eps}")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        problems.append(f"weight_decay must be finite and >= 0, got {weight_decay}")
    if problems:
        raise ValueError("AdamW: " + "; ".join(problems))


def _as_step(value: Any) -> int | None:
    """An integer step count from an int or a one-element integer array (how a safetensors
    file holds it), or None when it is neither."""
    if isinstance(value, np.ndarray):
        if value.size != 1 or value.dtype.kind not in "iu":
            return None
        value = value.reshape(()).item()
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        return None
    return int(value)


# --------------------------------------------------------------------------------------------
# the learning-rate schedule
# --------------------------------------------------------------------------------------------


def lr_schedule(
    step: int, *, max_lr: float, min_lr: float, warmup_steps: int, max_steps: int
) -> float:
    """The learning rate for the 0-based ``step``: linear warmup, then cosine decay to min_lr.

    nanoGPT's and llm.c's convention::

        step < warmup_steps:   lr = max_lr · (step + 1) / warmup_steps
        step >= max_steps:     lr = min_lr
        otherwise:             r  = (step − warmup_steps) / (max_steps − warmup_steps)
                               lr = min_lr + ½·(1 + cos(π·r))·(max_lr − min_lr)

    so the first step already moves (max_lr / warmup_steps), steps warmup_steps − 1 and
    warmup_steps both get max_lr, and max_steps and beyond get min_lr. warmup_steps = 0 starts
    the cosine at step 0.
    """
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"lr_schedule: step must be an integer >= 0, got {step!r}")
    if not 0 <= warmup_steps <= max_steps:
        raise ValueError(
            f"lr_schedule: need 0 <= warmup_steps <= max_steps, got warmup_steps="
            f"{warmup_steps}, max_steps={max_steps}"
        )
    if not 0 <= min_lr <= max_lr:
        raise ValueError(f"lr_schedule: need 0 <= min_lr <= max_lr, got {min_lr}, {max_lr}")
    if step < warmup_steps:
        return float(max_lr) * (step + 1) / warmup_steps
    if step >= max_steps:
        return float(min_lr)
    ratio = (step - warmup_steps) / (max_steps - warmup_steps)  # in [0, 1)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # from 1 down towards 0
    return float(min_lr) + coeff * (float(max_lr) - float(min_lr))


# --------------------------------------------------------------------------------------------
# gradient clipping
# --------------------------------------------------------------------------------------------

# elements per chunk in grad_norm: an 8 MB float64 buffer, reused for every chunk (a float64
# copy of a whole 124M-parameter buffer would be 1 GB); each chunk's sum is added as a float
_NORM_CHUNK = 1 << 20


def grad_norm(grads: np.ndarray) -> float:
    """The global L2 norm √(Σ g²) over every entry of ``grads``, accumulated in float64.

    Non-finite entries give a non-finite norm (inf or nan), which callers use to skip a step.

    On one thread and without BLAS: each chunk is widened to float64 into one reused buffer and
    ``einsum`` sums its squares. A BLAS dot product of the chunks would start OpenBLAS's threads
    once per chunk, and where those threads share busy cores (a loaded node, ranks sharing
    cores) every call waits for the slowest one: 6–13× the one-thread time at GPT-2 size on a
    loaded machine (``bench/contention.py --norm``). On one free core this pass takes
    1.0–1.7× the one-thread dot product's time (under 0.04 s at GPT-2 size), and its sum does
    not depend on the number of BLAS threads.
    """
    if not isinstance(grads, np.ndarray) or grads.dtype.kind != "f":
        raise TypeError(
            f"grad_norm: grads must be a float array, got {type(grads).__name__} "
            f"{getattr(grads, 'dtype', '')}"
        )
    flat = grads.reshape(-1)
    wide = np.empty(min(flat.size, _NORM_CHUNK), np.float64)
    total = 0.0
    for start in range(0, flat.size, _NORM_CHUNK):
        chunk = wide[: min(_NORM_CHUNK, flat.size - start)]
        np.copyto(chunk, flat[start : start + _NORM_CHUNK])
        total += float(np.einsum("i,i->", chunk, chunk))
    return math.sqrt(total)


def clip_grad_norm(grads: np.ndarray, max_norm: float) -> float:
    """Scale ``grads`` in place so its global L2 norm is at most ``max_norm``; return the norm
    before clipping.

    When the norm exceeds max_norm, every entry is multiplied by max_norm / norm (one scalar of
    the buffer's dtype), so the norm becomes max_norm up to float32 rounding. (torch's
    ``clip_grad_norm_`` divides by norm + 1e-6 instead, a hair below max_norm.) ``max_norm``
    <= 0 disables clipping (the norm is still returned). A non-finite norm leaves ``grads``
    untouched and is returned as is, for the caller's divergence guard to skip the step.
    """
    norm = grad_norm(grads)
    clip_to_norm(grads, norm, max_norm)
    return norm


def clip_to_norm(grads: np.ndarray, norm: float, max_norm: float) -> None:
    """Scale ``grads``, whose global norm is ``norm`` (over every rank's part, under ZeRO-1), by
    max_norm / norm when the norm exceeds ``max_norm`` (> 0); a non-finite norm leaves them."""
    if max_norm > 0 and math.isfinite(norm) and norm > max_norm:
        grads *= grads.dtype.type(max_norm / norm)
