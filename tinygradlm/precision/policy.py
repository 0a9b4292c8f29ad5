"""The compute precision (:class:`Precision`), the rounder of each format picked by backend, and
the policy that says where a forward/backward rounds (:class:`PrecisionPolicy`)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import backend
from .loss_scaling import LossScaler


class Precision(enum.StrEnum):
    """The compute precision of a training run: ``"fp32"``, ``"bf16"`` or ``"fp16"``."""

    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"

    @classmethod
    def parse(cls, value: Any) -> Precision:
        """``value`` as a Precision, or a ValueError naming the choices."""
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(repr(p.value) for p in cls)
            raise ValueError(f"unknown precision {value!r}: choose one of {choices}") from None

    @property
    def unit_roundoff(self) -> float:
        """The largest relative error of one rounding, for values in the normal range:
        2^-(mantissa bits + 1)."""
        return {"fp32": 2.0**-24, "bf16": 2.0**-8, "fp16": 2.0**-11}[self.value]


def round_to_bf16(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``x`` (float32) rounded to bfloat16 values, ties to even, as float32; into ``out`` (may
    be ``x``: in place) or a new array. The active backend's implementation
    (``tinygradlm.backend``): the Numba twin in ``tinygradlm.kernels.rounding``, or the NumPy
    reference :func:`tinygradlm.ref.round_to_bf16` (whose docstring explains the rounding)."""
    return backend.layers().round_to_bf16(x, out)


def round_to_fp16(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``x`` (float32) rounded to IEEE half values, ties to even, overflow to ±inf, as float32;
    into ``out`` (may be ``x``: in place) or a new array. The active backend's implementation:
    the Numba twin, or the NumPy reference :func:`tinygradlm.ref.round_to_fp16` (whose
    docstring says why it is right)."""
    return backend.layers().round_to_fp16(x, out)


Rounder = Callable[..., np.ndarray]


def rounder(precision: str | Precision) -> Rounder | None:
    """The rounding function of ``precision``: :func:`round_to_bf16`, :func:`round_to_fp16`, or
    None for fp32 (nothing to round)."""
    return {
        Precision.FP32: None,
        Precision.BF16: round_to_bf16,
        Precision.FP16: round_to_fp16,
    }[Precision.parse(precision)]


# --------------------------------------------------------------------------------------------
# the policy: what the model rounds
# --------------------------------------------------------------------------------------------


class PrecisionPolicy:
    """Where a forward/backward rounds, for one precision. At fp32 every method returns its
    argument untouched, so the float32 path costs one attribute test per call.

    - :meth:`compute_params`: the weights the layers read, rounded from the float32 master
      weights (once per forward; the optimizer updates the masters);
    - :meth:`matmul_input`: an operand of a matmul, rounded (in place or into a new array);
    - :meth:`activation`: an activation (a matmul output, or one kept for backward), rounded in
      place;
    - :meth:`gradient`: a gradient that a 16-bit backward would hold (the upstream gradient
      entering a matmul's backward, or what the backward produces), rounded in place;
    - :attr:`fp16_loss_scaling`: whether the trainer must scale the loss (fp16 only).

    docs/precision.md, "Integration", lists every call site: they are all in
    ``tinygradlm.model.layers`` and ``tinygradlm.model.block``.

    >>> policy = PrecisionPolicy("bf16")
    >>> policy.matmul_input(np.array([1 + 2**-8], dtype=np.float32)).tolist()
    [1.0]
    >>> PrecisionPolicy("fp16").fp16_loss_scaling
    True
    """

    def __init__(self, precision: str | Precision = Precision.FP32) -> None:
        self.precision = Precision.parse(precision)
        self._round = rounder(self.precision)

    def __repr__(self) -> str:
        return f"PrecisionPolicy({self.precision.value!r})"

    @property
    def enabled(self) -> bool:
        """False at fp32: nothing is rounded."""
        return self._round is not None

    @property
    def fp16_loss_scaling(self) -> bool:
        """True at fp16, whose gradients need a loss scaler; bf16 has float32's range."""
        return self.precision == Precision.FP16

    def loss_scaler(self, **kwargs: Any) -> LossScaler:
        """A :class:`~tinygradlm.precision.loss_scaling.LossScaler` for this precision: enabled
        at fp16, a no-op (scale 1) else."""
        return LossScaler(enabled=self.fp16_loss_scaling, **kwargs)

    def compute_params(self, master: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The parameters the layers compute with: ``master`` (float32, e.g. the flat parameter
        buffer) rounded into ``out`` (or a new array). At fp32, ``master`` itself."""
        if self._round is None:
            return master
        return self._round(master, out)

    def matmul_input(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``x`` rounded, as a matmul operand: into ``out`` (``out=x``: in place) or a new
        array, which is returned. At fp32, ``x`` itself (no copy, ``out`` untouched): use the
        return value."""
        if self._round is None:
            return x
        return self._round(x, out)

    def activation(self, x: np.ndarray) -> np.ndarray:
        """``x`` rounded in place (an activation a 16-bit forward would store); returns x."""
        if self._round is not None:
            self._round(x, x)
        return x

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """``x`` rounded in place (a gradient a 16-bit backward would hold); returns x."""
        if self._round is not None:
            self._round(x, x)
        return x
