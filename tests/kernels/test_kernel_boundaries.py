"""Every Numba kernel against tinygradlm.ref at shapes just below, at and just above each of its
blocking boundaries, forward and backward, so that no block, tail or remainder is left to
chance (hypothesis draws small shapes, which never reach a second block of 64 columns).

The boundaries, read from the kernels (docs/verification.md, "Kernel block sizes"):

- encoder backward: columns in blocks of ``COLUMNS_PER_BLOCK`` = 64 (C);
- layer norm backward: rows in blocks of ``ROWS_PER_BLOCK`` = 32 (B·T); its row sums, and
  every other float64 row reduction (``_vecmath.row_sum``, ``row_dot``, ``row_centered_dot``,
  ``row_squared_deviations``), in ``LANES`` = 16 vector lanes plus a scalar tail (C, T, V);
- ``_vecmath.row_max``: eight running maxima plus a tail (row length: T, V);
- attention: the positions in at most four causal runs of max(64, ⌈T/4⌉) (T);
- cross-entropy: the real vocabulary [0, V) and the padding [V, Vp) (V, Vp).

The encoder is compared bit for bit (kernel and ref add the same numbers in the same order);
the rest to the tolerances of test_kernels_match_ref.py, which explains them.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from layer_inputs import upstream_gradient
from numba import njit
from test_kernels_match_ref import assert_kernel_matches_ref

from tinygradlm import kernels, ref
from tinygradlm.kernels import attention, encoder, layernorm
from tinygradlm.kernels._vecmath import (
    LANES,
    row_centered_dot,
    row_dot,
    row_max,
    row_squared_deviations,
    row_sum,
)

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])


def around(*sizes: int) -> list[int]:
    """Each size, one less and one more (at least 1), sorted."""
    return sorted({n + d for n in sizes for d in (-1, 0, 1) if n + d >= 1})


# If a kernel's block size changes, the shapes below must move with it: these pin them (each
# test names its layer, so that bench/mutation.py's ``-k <layer>`` selects it).


def test_encoder_column_blocks_are_64_wide():
    assert encoder.COLUMNS_PER_BLOCK == 64


def test_layernorm_row_blocks_are_32_rows_and_row_sums_16_lanes():
    assert layernorm.ROWS_PER_BLOCK == 32
    assert LANES == 16


def test_attention_causal_blocks_are_at_most_four_runs_of_64_or_more():
    # the contract in _causal_blocks's docstring: consecutive runs covering 0..T, at most four,
    # all but the last at least 64 long (max(64, ⌈T/4⌉): one run up to T = 64, 4 from T = 193)
    for T in range(1, 700):
        runs = attention._causal_blocks(T)
        assert runs[0][0] == 0 and runs[-1][1] == T, T
        assert all(lo < hi for lo, hi in runs), T
        assert all(a[1] == b[0] for a, b in itertools.pairwise(runs)), T
        assert len(runs) <= 4, T
        assert all(hi - lo >= 64 for lo, hi in runs[:-1]), T
        assert len(runs) == min(4, -(-T // 64)), T
    assert [hi - lo for lo, hi in attention._causal_blocks(257)] == [65, 65, 65, 62]


# --------------------------------------------------------------------------------------------
# encoder: columns in blocks of 64
# --------------------------------------------------------------------------------------------


@DTYPES
@pytest.mark.parametrize("C", around(1, 64, 128))
@pytest.mark.parametrize("T", [1, 5])
def test_encoder_matches_ref_bit_for_bit_across_column_blocks(C, T, dtype):
    rng = np.random.default_rng(C * 10 + T)
    B, Vp, maxT = 3, 7, 6  # B = 3: a batch summed in another order differs in its bits
    idx = rng.integers(0, 3, size=(B, T))  # three ids: repeated tokens, rows 3.. unused
    wte, wpe = rng.normal(size=(Vp, C)).astype(dtype), rng.normal(size=(maxT, C)).astype(dtype)
    out, cache = kernels.encoder_forward(idx, wte, wpe)
    expected_out, expected_cache = ref.encoder_forward(idx, wte, wpe)
    np.testing.assert_array_equal(out, expected_out)
    dout = upstream_gradient(out)
    dwte, dwpe = kernels.encoder_backward(dout, cache)
    expected_dwte, expected_dwpe = ref.encoder_backward(dout, expected_cache)
    # every column of every used row gets its gradient (the last block included) ...
    np.testing.assert_array_equal(dwte, expected_dwte)
    np.testing.assert_array_equal(dwpe, expected_dwpe)
    assert np.all(dwpe[:T] != 0)  # a block skipped would leave zeros
    # ... and nothing else does
    assert not dwte[3:].any() and not dwpe[T:].any()


# --------------------------------------------------------------------------------------------
# layer norm: rows in blocks of 32, row sums in 16 lanes
# --------------------------------------------------------------------------------------------


@DTYPES
@pytest.mark.parametrize("rows", [(1, 1), (1, 31), (2, 16), (3, 11), (1, 63), (5, 13)])
@pytest.mark.parametrize("C", [1, 15, 16, 17, 33])
def test_layernorm_matches_ref_across_row_blocks_and_lanes(rows, C, dtype):
    # B·T = 1, 31, 32, 33, 63, 65 rows: one, two and three blocks of 32, full and partial
    rng = np.random.default_rng(sum(rows) * 100 + C)
    x = rng.normal(size=(*rows, C))
    args = [x, rng.normal(size=C), rng.normal(size=C)]
    assert_kernel_matches_ref("layernorm", args, dtype)


# --------------------------------------------------------------------------------------------
# attention: causal runs of max(64, ⌈T/4⌉) positions; rows of every length 1..T
# --------------------------------------------------------------------------------------------


@DTYPES
@pytest.mark.parametrize("T", [*around(64, 128, 192, 256), 1, 2, 260])
def test_attention_matches_ref_across_causal_blocks(T, dtype):
    rng = np.random.default_rng(T)
    qkv = rng.normal(size=(1, T, 3 * 4))  # C = 4, two heads of two channels
    assert_kernel_matches_ref("attention", [qkv, 2], dtype)


# --------------------------------------------------------------------------------------------
# cross-entropy: rows of V (8-way max, 16-lane sum), padding to Vp
# --------------------------------------------------------------------------------------------


@DTYPES
@pytest.mark.parametrize("V", [1, *around(8, 16, 32, 64)])
@pytest.mark.parametrize("pad", ["none", "one", "to 64"])
def test_crossentropy_matches_ref_across_vocabulary_sizes_and_padding(V, pad, dtype):
    Vp = {"none": V, "one": V + 1, "to 64": -(-(V + 1) // 64) * 64}[pad]
    rng = np.random.default_rng(V * 3 + Vp)
    logits = rng.normal(size=(2, 3, Vp)) * 3
    logits[..., V:] = 1e4  # padding: must take no part
    targets = rng.integers(0, V, size=(2, 3))
    targets[0, 0], targets[0, 1], targets[1, 2] = 0, V - 1, -100  # the first, last, ignored
    assert_kernel_matches_ref("crossentropy", [logits, targets, V], dtype)


# --------------------------------------------------------------------------------------------
# the row reductions themselves: every length around the lanes and the 8-way max
# --------------------------------------------------------------------------------------------


@njit
def reductions(a, b, stop, center):
    return (
        row_sum(a, stop),
        row_dot(a, b, stop),
        row_centered_dot(a, b, stop, center),
        row_squared_deviations(a, stop, center),
        row_max(a, max(stop, 1)),
    )


@DTYPES
def test_row_reductions_read_exactly_the_first_stop_elements(dtype):
    rng = np.random.default_rng(0)
    n = 3 * LANES + 3
    for stop in range(0, n - 2):
        a = rng.normal(size=n).astype(dtype)
        b = rng.normal(size=n).astype(dtype)
        a[stop:], b[stop:] = 1e6, 1e6  # beyond stop: must not be read
        center = 0.25
        sums = reductions(a, b, stop, center)
        a64, b64 = a[:stop].astype(np.float64), b[:stop].astype(np.float64)
        products = (a[:stop] * b[:stop]).astype(np.float64)  # row_dot: products in the dtype
        expected = [
            (sums[0], math.fsum(a64), np.abs(a64)),
            (sums[1], math.fsum(products), np.abs(products)),
            (sums[2], math.fsum(a64 * (b64 - center)), np.abs(a64 * (b64 - center))),
            (sums[3], math.fsum((a64 - center) ** 2), (a64 - center) ** 2),
        ]
        for k, (actual, exact, terms) in enumerate(expected):
            # float64 sums of at most 51 terms: within 64 ulps of the sum of magnitudes
            assert abs(actual - exact) <= 64 * 2.0**-52 * math.fsum(terms), (stop, k)
        assert sums[4] == a[: max(stop, 1)].max(), stop
