"""Numba twins of ``tinygradlm.ref.rounding``: bf16 and fp16 rounding in one pass, no
temporaries, branch-free so that LLVM vectorizes the loop; about 10× (bf16) and 7× (fp16) faster
than the NumPy reference on a 7.3M-element array (docs/precision.md, "Results"). The tests hold
them bit-identical to the reference, NaN payloads included.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

from ..ref import rounding as reference
from ..ref.rounding import (
    ABS,
    BF16_KEEP,
    FP16_KEEP,
    FP16_MIN_NORMAL,
    FP16_OVERFLOW,
    INF,
    QUIET,
    SIGN,
    check_rounding,
)
from ._vecmath import float32_from_bits


@njit(cache=True)
def _bf16_kernel(src_bits, dst):
    """dst (float32) = bf16 rounding of the float32 values whose bits are src_bits (uint32)."""
    for i in range(src_bits.size):
        b = src_bits[i]
        rounded = (b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) & BF16_KEEP
        nan = (b | QUIET) & BF16_KEEP
        dst[i] = float32_from_bits(nan if (b & ABS) > INF else rounded)


@njit(cache=True)
def _fp16_kernel(src_bits, dst):
    """dst (float32) = fp16 rounding of the float32 values whose bits are src_bits (uint32)."""
    for i in range(src_bits.size):
        b = src_bits[i]
        sign = b & SIGN
        a = b & ABS  # |x|
        # the normal range: keep 10 mantissa bits, ties to even, as for bf16
        rounded = (a + np.uint32(0xFFF) + ((a >> np.uint32(13)) & np.uint32(1))) & FP16_KEEP
        rounded = INF if a >= FP16_OVERFLOW else rounded
        rounded = ((a | QUIET) & FP16_KEEP) if a > INF else rounded
        # below 2^-14, fp16 steps by 2^-24: adding 0.5 (whose float32 ulp is 2^-24) makes the
        # FPU round |x| to that step, nearest-even; subtracting 0.5 is then exact. (fast-math
        # would fold this to |x|: no kernel is compiled with it.)
        tiny = (float32_from_bits(a) + np.float32(0.5)) - np.float32(0.5)
        tiny = -tiny if sign else tiny
        dst[i] = tiny if a < FP16_MIN_NORMAL else float32_from_bits(rounded | sign)


def _round(kernel: Callable, fallback: Callable, x: np.ndarray, out: np.ndarray) -> np.ndarray:
    if not (x.flags.c_contiguous and out.flags.c_contiguous):
        return fallback(x, out)  # strided arrays: the reference handles any layout
    kernel(x.reshape(-1).view(np.uint32), out.reshape(-1))
    return out


def round_to_bf16(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`tinygradlm.ref.round_to_bf16` (whose docstring explains the rounding), in one
    pass."""
    out = check_rounding("round_to_bf16", x, out)
    return _round(_bf16_kernel, reference.round_to_bf16, x, out)


def round_to_fp16(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`tinygradlm.ref.round_to_fp16` (whose docstring says why it is right), in one
    pass."""
    out = check_rounding("round_to_fp16", x, out)
    return _round(_fp16_kernel, reference.round_to_fp16, x, out)
