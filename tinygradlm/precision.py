"""Low-precision training, emulated: bf16/fp16 rounding, the policy that says what gets rounded,
and dynamic loss scaling for fp16.

The model keeps float32 everywhere a number lives long (master weights, gradients, optimizer
moments) and computes in float32 (matmul accumulation, layer-norm and softmax statistics, the
loss). What a bf16 or fp16 GPU would hold in 16 bits (the operands of each matmul, the
activations kept for backward, the gradients flowing between layers) is *rounded* to the 16-bit
format's values, round-to-nearest-even, and stored back in float32. The numbers are then those
of the 16-bit run, while every kernel stays the float32 one.

    >>> x = np.array([1 + 2**-8, 1 + 3 * 2**-9, 65519.0, 65520.0], dtype=np.float32)
    >>> round_to_bf16(x)[:2].tolist()     # the tie goes to the even neighbour, 1
    [1.0, 1.0078125]
    >>> round_to_fp16(x)[2:].tolist()     # 65520 is halfway to 65536, past fp16's max: inf
    [65504.0, inf]

The two 16-bit formats differ in where they lose information:

====== ===== ======== ================ ====================================================
format  bits mantissa largest finite   what goes wrong
====== ===== ======== ================ ====================================================
bf16     16      7    ≈ 3.39e38        precision: unit roundoff 2^-8 (float32's exponent)
fp16     16     10    65504            range: gradients underflow below 2^-24, and a large
                                       activation or gradient overflows to inf
====== ===== ======== ================ ====================================================

fp16 therefore trains with a :class:`LossScaler`: the loss (so every gradient) is multiplied by a
large factor before backward, lifting small gradients out of the underflow range; the float32
gradients are divided by it before clipping and the optimizer. When the scaled gradients
overflow, the step is skipped and the factor halves; after ``growth_interval`` clean steps it
doubles (PyTorch's ``GradScaler``).

The rounders have two implementations: the NumPy reference (``round_to_bf16_numpy``,
``round_to_fp16_numpy``), written to be read, and a one-pass Numba twin, about 10× (bf16) and
7× (fp16) faster on a 7.3M-element array (docs/precision.md, "Results"). ``round_to_bf16`` and
``round_to_fp16`` pick one by ``tinygradlm.backend`` like the layers do; the tests hold the two
bit-identical, and both to PyTorch's conversions. How the model and the trainer use all this is
in docs/precision.md, "Integration".
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numba import njit

from . import backend
from .kernels._vecmath import _float32_from_bits

# --------------------------------------------------------------------------------------------
# the formats
# --------------------------------------------------------------------------------------------


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


# float32 bit patterns
_SIGN = np.uint32(0x8000_0000)
_ABS = np.uint32(0x7FFF_FFFF)
_INF = np.uint32(0x7F80_0000)
_QUIET = np.uint32(0x0040_0000)  # the quiet bit of a NaN: the mantissa's top bit
_BF16_KEEP = np.uint32(0xFFFF_0000)  # sign, 8 exponent bits, 7 mantissa bits
_FP16_KEEP = np.uint32(0xFFFF_E000)  # sign, 8 exponent bits, 10 mantissa bits
_FP16_OVERFLOW = np.uint32(0x477F_F000)  # 65520 = 65504 + half an ulp: rounds to inf (tie, odd)
_FP16_MIN_NORMAL = np.uint32(0x3880_0000)  # 2^-14; below it fp16 has subnormals, step 2^-24


def _check(fn: str, x: Any, out: Any) -> np.ndarray:
    """The output array for a rounder of ``x`` (float32): ``out``, checked, or a new one."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{fn}: x must be a NumPy array, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(
            f"{fn}: x has dtype {x.dtype}; expected float32 (the rounding emulates 16-bit "
            f"storage of float32 compute; a float64 value would be rounded twice)"
        )
    if out is None:
        return np.empty(x.shape, dtype=np.float32)
    if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != x.shape:
        raise ValueError(
            f"{fn}: out must be a float32 array of x's shape {x.shape}, got "
            f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}"
        )
    return out


# --------------------------------------------------------------------------------------------
# the NumPy references
# --------------------------------------------------------------------------------------------


def round_to_bf16_numpy(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``x`` (float32, any shape) rounded to the nearest bfloat16, ties to even, as float32.

    bf16 is float32's top 16 bits: the same sign and 8-bit exponent, 7 of the 23 mantissa
    bits. Rounding is integer arithmetic on the bit pattern: add half of the dropped part's
    range, 0x7FFF, plus the lowest kept bit (so an exact tie, low half 0x8000, carries only
    when that bit is 1, i.e. goes to the even neighbour), then clear the low 16 bits. A carry
    out of the mantissa increments the exponent, which is also right; past the largest finite
    bf16 it reaches the exponent of inf with a zero mantissa: inf, as IEEE round-to-nearest
    says. Subnormals need nothing special (bf16 has float32's subnormals); ±0 and ±inf are
    unchanged. A NaN's bits could carry into inf or the sign, so NaNs are handled apart: the
    quiet bit is set and the sign and top payload bits kept (what x86's ``vcvtneps2bf16``
    does). Returns ``out`` (a new array when None; may be ``x`` itself, for in place).
    """
    out = _check("round_to_bf16_numpy", x, out)
    bits = x.view(np.uint32).reshape(-1)  # (N,), also for a 0-d x
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))  # wraps mod 2³²
    rounded &= _BF16_KEEP
    nan = np.isnan(x).reshape(-1)
    rounded[nan] = (bits[nan] | _QUIET) & _BF16_KEEP
    out[...] = rounded.view(np.float32).reshape(x.shape)
    return out


def round_to_fp16_numpy(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``x`` (float32, any shape) rounded to the nearest IEEE half (fp16), ties to even, as
    float32.

    This is ``x.astype(np.float16).astype(np.float32)``. NumPy's float32 → float16 cast rounds
    to nearest even: its software path (``npy_floatbits_to_halfbits``) rounds the dropped
    mantissa bits with ties to even, including when shifting into fp16's subnormals (multiples
    of 2^-24) and when the carry overflows past 65504 to inf; its hardware path (F16C /
    AVX-512 ``vcvtps2ph``) rounds by the FPU's rounding mode, nearest-even unless a program
    changed it. The cast back to float32 is exact. The tests check it bit for bit against
    PyTorch's ``.half()`` on the edge cases (ties, subnormals, 65504, 65520, ±0, ±inf) and
    random arrays. NaNs come back quiet, sign and top payload bits kept, as in
    :func:`round_to_bf16_numpy` (NumPy's own cast returns a signalling NaN still signalling).
    """
    out = _check("round_to_fp16_numpy", x, out)
    nan = np.isnan(x)
    nan_bits = (x.view(np.uint32)[nan] | _QUIET) & _FP16_KEEP  # before out (maybe x) is written
    with np.errstate(over="ignore"):  # overflow to ±inf is the IEEE result, not an accident
        out[...] = x.astype(np.float16)
    out.view(np.uint32)[nan] = nan_bits
    return out


# --------------------------------------------------------------------------------------------
# the Numba twins: one pass, no temporaries, branch-free so that LLVM vectorizes the loop
# --------------------------------------------------------------------------------------------


@njit(cache=True)
def _bf16_kernel(src_bits, dst):
    """dst (float32) = bf16 rounding of the float32 values whose bits are src_bits (uint32)."""
    for i in range(src_bits.size):
        b = src_bits[i]
        rounded = (b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) & _BF16_KEEP
        nan = (b | _QUIET) & _BF16_KEEP
        dst[i] = _float32_from_bits(nan if (b & _ABS) > _INF else rounded)


@njit(cache=True)
def _fp16_kernel(src_bits, dst):
    """dst (float32) = fp16 rounding of the float32 values whose bits are src_bits (uint32)."""
    for i in range(src_bits.size):
        b = src_bits[i]
        sign = b & _SIGN
        a = b & _ABS  # |x|
        # the normal range: keep 10 mantissa bits, ties to even, as for bf16
        rounded = (a + np.uint32(0xFFF) + ((a >> np.uint32(13)) & np.uint32(1))) & _FP16_KEEP
        rounded = _INF if a >= _FP16_OVERFLOW else rounded
        rounded = ((a | _QUIET) & _FP16_KEEP) if a > _INF else rounded
        # below 2^-14, fp16 steps by 2^-24: adding 0.5 (whose float32 ulp is 2^-24) makes the
        # FPU round |x| to that step, nearest-even; subtracting 0.5 is then exact. (fastmath
        # would fold this to |x|: this kernel is compiled without it.)
        tiny = (_float32_from_bits(a) + np.float32(0.5)) - np.float32(0.5)
        tiny = -tiny if sign else tiny
        dst[i] = tiny if a < _FP16_MIN_NORMAL else _float32_from_bits(rounded | sign)


def _numba_round(kernel, reference, x: np.ndarray, out: np.ndarray) -> np.ndarray:
    if not (x.flags.c_contiguous and out.flags.c_contiguous):
        return reference(x, out)  # strided arrays: the reference handles any layout
    kernel(x.reshape(-1).view(np.uint32), out.reshape(-1))
    return out


def round_to_bf16(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``x`` (float32) rounded to bfloat16 values, ties to even, as float32; into ``out`` (may
    be ``x``: in place) or a new array. The active backend's implementation: the Numba kernel,
    or :func:`round_to_bf16_numpy` (whose docstring explains the rounding)."""
    out = _check("round_to_bf16", x, out)
    if backend.kernels_name() == "numpy":
        return round_to_bf16_numpy(x, out)
    return _numba_round(_bf16_kernel, round_to_bf16_numpy, x, out)


def round_to_fp16(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``x`` (float32) rounded to IEEE half values, ties to even, overflow to ±inf, as float32;
    into ``out`` (may be ``x``: in place) or a new array. The active backend's implementation:
    the Numba kernel, or :func:`round_to_fp16_numpy` (whose docstring says why it is right)."""
    out = _check("round_to_fp16", x, out)
    if backend.kernels_name() == "numpy":
        return round_to_fp16_numpy(x, out)
    return _numba_round(_fp16_kernel, round_to_fp16_numpy, x, out)


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

    docs/precision.md, "Integration", lists every call site in ``GPT._fused_forward`` and
    ``GPT._fused``.

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
        """True at fp16, whose gradients need a :class:`LossScaler`; bf16 has float32's range."""
        return self.precision == Precision.FP16

    def loss_scaler(self, **kwargs: Any) -> LossScaler:
        """A :class:`LossScaler` for this precision: enabled at fp16, a no-op (scale 1) else."""
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


# --------------------------------------------------------------------------------------------
# dynamic loss scaling
# --------------------------------------------------------------------------------------------

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

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output. ``scale``, ``growth_tracker`` and
        ``overflow_steps`` are required; the hyperparameters are optional (absent ones keep
        their values). Every problem is reported at once, and nothing changes unless all
        entries are valid."""
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
        if problems:
            raise ValueError(
                "LossScaler.load_state_dict: state does not match the scaler:\n  "
                + "\n  ".join(problems)
            )
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
