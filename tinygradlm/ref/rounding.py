"""Rounding float32 values to bfloat16 and IEEE half (fp16), ties to even: the NumPy reference.

Low-precision training is emulated (``tinygradlm.precision``): what a 16-bit GPU would store is
rounded to the 16-bit format's values and kept in float32. These two functions are the
reference, written to be read; ``tinygradlm.kernels.rounding`` has one-pass Numba twins that the
tests hold bit-identical to them (and both to PyTorch's conversions). Shapes: any; x float32 ->
float32 of x's shape, into ``out`` when given (``out=x``: in place).

    >>> x = np.array([1 + 2**-8, 1 + 3 * 2**-9, 65519.0, 65520.0], dtype=np.float32)
    >>> round_to_bf16(x)[:2].tolist()     # the tie goes to the even neighbour, 1
    [1.0, 1.0078125]
    >>> round_to_fp16(x)[2:].tolist()     # 65520 is halfway to 65536, past fp16's max: inf
    [65504.0, inf]
"""

from __future__ import annotations

from typing import Any

import numpy as np

# float32 bit patterns
SIGN = np.uint32(0x8000_0000)
ABS = np.uint32(0x7FFF_FFFF)
INF = np.uint32(0x7F80_0000)
QUIET = np.uint32(0x0040_0000)  # the quiet bit of a NaN: the mantissa's top bit
BF16_KEEP = np.uint32(0xFFFF_0000)  # sign, 8 exponent bits, 7 mantissa bits
FP16_KEEP = np.uint32(0xFFFF_E000)  # sign, 8 exponent bits, 10 mantissa bits
FP16_OVERFLOW = np.uint32(0x477F_F000)  # 65520 = 65504 + half an ulp: rounds to inf (tie, odd)
FP16_MIN_NORMAL = np.uint32(0x3880_0000)  # 2^-14; below it fp16 has subnormals, step 2^-24


def round_to_bf16(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
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
    out = check_rounding("round_to_bf16", x, out)
    bits = x.view(np.uint32).reshape(-1)  # (N,), also for a 0-d x
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))  # wraps mod 2³²
    rounded &= BF16_KEEP
    nan = np.isnan(x).reshape(-1)
    rounded[nan] = (bits[nan] | QUIET) & BF16_KEEP
    out[...] = rounded.view(np.float32).reshape(x.shape)
    return out


def round_to_fp16(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
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
    :func:`round_to_bf16` (NumPy's own cast returns a signalling NaN still signalling).
    """
    out = check_rounding("round_to_fp16", x, out)
    nan = np.isnan(x)
    nan_bits = (x.view(np.uint32)[nan] | QUIET) & FP16_KEEP  # before out (maybe x) is written
    with np.errstate(over="ignore"):  # overflow to ±inf is the IEEE result, not an accident
        out[...] = x.astype(np.float16)
    out.view(np.uint32)[nan] = nan_bits
    return out


def check_rounding(fn: str, x: Any, out: Any) -> np.ndarray:
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
