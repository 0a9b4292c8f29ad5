"""Scalar helpers that LLVM turns into SIMD code inside the kernels' loops, with exact arithmetic.

Numba without Intel's SVML compiles ``math.exp`` and ``math.tanh`` to one libm call per element,
which blocks vectorization: on the development machine (AVX-512) a Numba loop of ``math.exp``
over float32 runs about 5× slower than ``np.exp`` (which uses SIMD code), and ``math.tanh`` about
50× slower than ``np.tanh``. A kernel that fuses exp into one pass with libm would lose to
NumPy's several passes. So this module provides:

- :func:`exp`: in float32 a branch-free polynomial (Cephes ``expf``) that LLVM vectorizes, within
  2 ulps of the true value and, on data in L1 cache, about as fast as ``np.exp``; in float64
  ``math.exp`` (float64 is the gradient-check path, where accuracy matters and speed does not).
- :func:`fma`: a·b + c with one rounding (LLVM's ``llvm.fma``, a vector instruction on x86).
- :func:`row_max`: the maximum of a contiguous run, with eight running maxima so that it
  vectorizes (a single running ``max`` does not: LLVM may not reorder a floating-point max
  reduction unless told there are no NaNs, and we do not tell it that).
- :func:`row_sum`, :func:`row_dot`, :func:`row_squared_deviations`, :func:`row_centered_dot`:
  float64 sums over a row in a fixed order of :data:`LANES` vector lanes.
- :func:`exp_shifted_and_sum`: a softmax row's exponentials and their float64 sum.

Exact arithmetic. The kernels use no fast-math flags: each gives the same bits however it was
compiled, which a run that must resume bit-identically from a fresh checkout needs. With
"reassoc" (and "nsz") LLVM may associate an expression differently each time it optimizes it,
and a ``parallel=True`` kernel's loop body is optimized once on its own (the code a freshly
compiling process runs) and once more as a copy inside the kernel's module (the code Numba's
cache stores and every later process runs): GELU's gradient differed by an ulp in a quarter of
its entries between the two (docs/performance.md, "Kernels"). What the flags bought is written
out instead: :func:`fma` where a fused multiply-add is wanted, and explicit vector code for the
row sums, whose order of additions is stated here rather than chosen by the compiler.

Numba caches each kernel with the helpers inlined, and its cache only notices edits to the
kernel's own file: after editing this module, delete ``tinygradlm/kernels/__pycache__``.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload


@intrinsic
def float32_from_bits(typingctx, bits):
    """Reinterpret the low 32 bits of an integer as a float32 (a free register move)."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if bits.bitwidth != 32:
            value = builder.trunc(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def fma(typingctx, a, b, c):
    """a·b + c rounded once (IEEE fusedMultiplyAdd), for three float32 or three float64: an
    operation with one exact result, unlike the contraction "contract" lets LLVM choose."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        llvm_type = context.get_value_type(a)
        name = f"llvm.fma.f{a.bitwidth}"
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(llvm_type, [llvm_type] * 3), name
        )
        return builder.call(fn, args)

    return a(a, b, c), codegen


def exp(x):
    """e**x for float32 or float64 scalars inside jitted code (see the module docstring)."""
    return math.exp(x)


# The float32 constants of Cephes expf: exp(x) = 2**n · exp(r) with n = round(x / ln 2) and
# r = x − n·ln 2 ∈ [−ln2/2, ln2/2], where ln 2 = _LN2_HI + _LN2_LO is split so that n·_LN2_HI is
# exact (Cody–Waite), and exp(r) ≈ 1 + r + r²·P(r).
_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_P = (
    np.float32(1.9875691500e-4),
    np.float32(1.3981999507e-3),
    np.float32(8.3334519073e-3),
    np.float32(4.1665795894e-2),
    np.float32(1.6666665459e-1),
    np.float32(5.0000001201e-1),
)
# Below _X_MIN, exp(x) < 2**-126 (the smallest normal float32): we return exactly 0, so a masked
# (-inf) logit gets exactly zero probability. Above about 88.38, 2**n overflows and we return inf
# (true exp overflows float32 at 88.72: the narrow band in between is never reached by the
# kernels, which only take exp of arguments <= 0: x − max in a softmax, −2|u| in GELU).
_X_MIN = np.float32(-87.33654)
_X_MAX = np.float32(88.72283)


@overload(exp)
def _exp_overload(x):
    if x == types.float64:
        return lambda x: math.exp(x)
    if x != types.float32:
        return None

    def exp_float32(x):
        # only "contract" (fused multiply-adds, more accurate): "reassoc" would merge the two
        # halves of n·ln2 and lose accuracy
        clamped = min(max(x, _X_MIN), _X_MAX)
        n = np.floor(clamped * _LOG2E + np.float32(0.5))  # float32, as r needs
        r = clamped - n * _LN2_HI - n * _LN2_LO
        p = _P[0]
        p = fma(p, r, _P[1])
        p = fma(p, r, _P[2])
        p = fma(p, r, _P[3])
        p = fma(p, r, _P[4])
        p = fma(p, r, _P[5])
        e_r = fma(p, r * r, r) + np.float32(1.0)
        two_to_n = float32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))
        y = e_r * two_to_n
        if x < _X_MIN:
            y = np.float32(0.0)
        if x != x:  # NaN in, NaN out
            y = x
        return y

    return exp_float32


@njit(inline="always")
def _larger(a, b):
    return a if a > b else b


@njit(inline="always")
def row_max(row, stop):
    """max(row[:stop]) of a contiguous 1-D float array, stop >= 1, vectorized.

    Eight running maxima, which LLVM packs into one SIMD register: a single running max is a
    chain of dependent compares that LLVM may not reorder (it would have to assume no NaNs), and
    it runs 6× slower. A NaN is skipped (it never compares larger) unless it comes first (then
    the result is NaN): either way the kernels' next pass, exp(x − max), turns a NaN input into
    NaN outputs.
    """
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = row[0]
    stop8 = stop - stop % 8
    for i in range(0, stop8, 8):
        m0, m1 = _larger(row[i], m0), _larger(row[i + 1], m1)
        m2, m3 = _larger(row[i + 2], m2), _larger(row[i + 3], m3)
        m4, m5 = _larger(row[i + 4], m4), _larger(row[i + 5], m5)
        m6, m7 = _larger(row[i + 6], m6), _larger(row[i + 7], m7)
    m = _larger(
        _larger(_larger(m0, m1), _larger(m2, m3)), _larger(_larger(m4, m5), _larger(m6, m7))
    )
    for i in range(stop8, stop):
        m = _larger(row[i], m)
    return m


LANES = 16  # float64 partial sums per row reduction: two AVX-512 registers, two add chains


def _lane_sum_intrinsic(term, doc):
    """An intrinsic ``f(a, b, center, stop)`` = Σ_k (float64) of LANES partial sums of
    ``term(a[i], b[i], center)`` over i < stop (stop a multiple of LANES), lane k summing
    i = k, k + LANES, ...; the lanes are then added pairwise, in a fixed order.

    Written as explicit LLVM vector code because LLVM may not vectorize a floating-point sum
    without "reassoc" (it would change the order of the additions), and Numba runs no SLP
    vectorizer: here the order is stated, so the result has one value whatever the compiler.
    """

    @intrinsic
    def lane_sum(typingctx, a, b, center, stop):
        arrays = (a, b)
        if not all(isinstance(x, types.Array) and x.ndim == 1 and x.layout == "C" for x in arrays):
            return None  # unit-stride rows only: the vector loads read LANES neighbours
        if a.dtype != b.dtype or not isinstance(a.dtype, types.Float):
            return None

        def codegen(context, builder, signature, args):
            f64 = ir.DoubleType()
            vec64 = ir.VectorType(f64, LANES)
            stop_ = context.cast(builder, args[3], signature.args[3], types.intp)
            center_ = context.cast(builder, args[2], signature.args[2], types.float64)
            datas = []
            for x, value in zip(arrays, args[:2], strict=True):
                elem = context.get_value_type(x.dtype)
                datas.append((context.make_array(x)(context, builder, value).data, elem))
            acc = cgutils.alloca_once_value(builder, ir.Constant(vec64, [0.0] * LANES))
            splat = ir.Constant(vec64, ir.Undefined)
            for k in range(LANES):
                splat = builder.insert_element(splat, center_, ir.Constant(ir.IntType(32), k))
            with cgutils.for_range_slice(
                builder, ir.Constant(stop_.type, 0), stop_, ir.Constant(stop_.type, LANES)
            ) as (i, _):
                loaded = []
                for data, elem in datas:
                    vecty = ir.VectorType(elem, LANES)
                    ptr = builder.bitcast(
                        cgutils.gep_inbounds(builder, data, i), vecty.as_pointer()
                    )
                    loaded.append(builder.load(ptr, align=elem.get_abi_size(context.target_data)))
                terms = term(builder, loaded[0], loaded[1], splat, vec64)
                builder.store(builder.fadd(builder.load(acc), terms), acc)
            total = builder.load(acc)
            lanes = [
                builder.extract_element(total, ir.Constant(ir.IntType(32), k)) for k in range(LANES)
            ]
            while len(lanes) > 1:  # ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))
                lanes = [builder.fadd(lanes[j], lanes[j + 1]) for j in range(0, len(lanes), 2)]
            return lanes[0]

        return types.float64(a, b, center, stop), codegen

    lane_sum.__doc__ = doc
    return lane_sum


def _widen(builder, v, vec64):
    return v if v.type == vec64 else builder.fpext(v, vec64)


_sum_lanes = _lane_sum_intrinsic(
    lambda builder, a, b, center, vec64: _widen(builder, a, vec64), "Σ a[i] (b and center unused)"
)
_dot_lanes = _lane_sum_intrinsic(
    lambda builder, a, b, center, vec64: _widen(builder, builder.fmul(a, b), vec64),
    "Σ a[i]·b[i], each product in the arrays' dtype",
)


def _squared_deviation(builder, a, b, center, vec64):
    d = builder.fsub(_widen(builder, a, vec64), center)
    return builder.fmul(d, d)


_squared_deviation_lanes = _lane_sum_intrinsic(
    _squared_deviation, "Σ (a[i] - center)² in float64 (b unused)"
)


def _centered_product(builder, a, b, center, vec64):
    return builder.fmul(_widen(builder, a, vec64), builder.fsub(_widen(builder, b, vec64), center))


_centered_dot_lanes = _lane_sum_intrinsic(_centered_product, "Σ a[i]·(b[i] - center) in float64")


@njit(inline="always")
def row_sum(row, stop):
    """sum(row[:stop]) in float64, in a fixed order that vectorizes: LANES partial sums (lane k
    adds elements k, k + LANES, ...), added pairwise, then the last stop % LANES elements in
    turn. Every compile of a kernel gives the same bits (see "Exact arithmetic" above)."""
    stop_lanes = stop - stop % LANES
    total = _sum_lanes(row, row, 0.0, stop_lanes)
    for i in range(stop_lanes, stop):
        total += row[i]
    return total


@njit(inline="always")
def row_dot(a, b, stop):
    """sum(a[:stop]·b[:stop]) in float64, each product in the arrays' dtype; the order of
    :func:`row_sum`."""
    stop_lanes = stop - stop % LANES
    total = _dot_lanes(a, b, 0.0, stop_lanes)
    for i in range(stop_lanes, stop):
        total += a[i] * b[i]
    return total


@njit(inline="always")
def row_squared_deviations(row, stop, center):
    """sum((row[:stop] − center)²) in float64 (center a float64); the order of
    :func:`row_sum`."""
    stop_lanes = stop - stop % LANES
    total = _squared_deviation_lanes(row, row, center, stop_lanes)
    for i in range(stop_lanes, stop):
        d = row[i] - center
        total += d * d
    return total


@njit(inline="always")
def row_centered_dot(a, b, stop, center):
    """sum(a[:stop]·(b[:stop] − center)) in float64 (center a float64); the order of
    :func:`row_sum`."""
    stop_lanes = stop - stop % LANES
    total = _centered_dot_lanes(a, b, center, stop_lanes)
    for i in range(stop_lanes, stop):
        total += a[i] * (b[i] - center)
    return total


@njit(inline="always")
def exp_shifted_and_sum(row, stop, shift, scale, out):
    """out[j] = exp(row[j]·scale − shift) for j < stop; returns their sum in float64.

    Two passes over the (L1-resident) run: the exp pass alone vectorizes in x's dtype, and the
    float64 sum after it (:func:`row_sum`) costs ~0.1 ns per element; summing in float64 inside
    the exp loop mixes vector widths and runs at half speed (measured), summing in float32 there
    loses accuracy with the length of the row (50,257 terms for GPT-2's vocabulary).
    """
    for j in range(stop):
        out[j] = exp(row[j] * scale - shift)
    return row_sum(out, stop)
