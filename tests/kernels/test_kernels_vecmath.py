"""The helpers the kernels vectorize with (tinygradlm/kernels/_vecmath.py): the float32 exp
against float64 exp on every representable scale, its special values, the float64 path, and
row_max; and results that do not depend on the number of threads."""

import math

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from layer_inputs import example, upstream_gradient
from numba import njit

from tinygradlm import kernels
from tinygradlm.kernels._vecmath import exp, row_max


@njit
def exp_all(x, out):
    for i in range(x.size):
        out[i] = exp(x[i])


@njit
def max_of_first(row, stop):
    return row_max(row, stop)


def test_float32_exp_is_within_two_ulps_over_its_whole_normal_range():
    x = np.linspace(-87.3, 88.3, 2_000_003, dtype=np.float32)
    out = np.empty_like(x)
    exp_all(x, out)
    assert out.dtype == np.float32
    exact = np.exp(x.astype(np.float64))
    ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(out - exact) / ulp) <= 2.0


def test_float32_exp_special_values():
    x = np.array([-np.inf, -1e30, -100.0, -87.5, 0.0, 1.0, 100.0, np.inf, np.nan], np.float32)
    out = np.empty_like(x)
    exp_all(x, out)
    # below the normal range exactly 0 (a masked logit gets exactly zero probability)
    np.testing.assert_array_equal(out[:4], 0)
    assert out[4] == 1 and out[5] == np.float32(math.e)
    assert out[6] == np.inf and out[7] == np.inf
    assert np.isnan(out[8])


def test_float64_exp_is_libm_exp():
    x = np.linspace(-700, 700, 10_001)
    out = np.empty_like(x)
    exp_all(x, out)
    np.testing.assert_array_equal(out, [math.exp(v) for v in x])


@given(st.integers(1, 70), st.integers(0, 2**32 - 1), st.sampled_from([np.float32, np.float64]))
def test_row_max_is_the_maximum_of_the_first_stop_elements(stop, seed, dtype):
    row = np.random.default_rng(seed).normal(size=80).astype(dtype)
    row[stop:] = 1e9  # beyond stop: must not be read
    assert max_of_first(row, stop) == row[:stop].max()


def test_row_max_handles_minus_infinity():
    row = np.full(19, -np.inf, np.float32)
    row[13] = -5.0
    assert max_of_first(row, 19) == -5.0
    assert max_of_first(row, 13) == -np.inf


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two Numba threads")
@pytest.mark.parametrize("layer", ["encoder", "layernorm", "attention", "gelu", "crossentropy"])
def test_results_do_not_depend_on_the_number_of_threads(layer):
    forward = getattr(kernels, f"{layer}_forward")
    backward = getattr(kernels, f"{layer}_backward")
    args = example(layer, np.float32, scale=4)  # enough rows for several blocks per thread
    runs = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        try:
            out, cache = forward(*args)
            runs.append((out, *backward(upstream_gradient(out), cache)))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for one, two in zip(*runs, strict=True):
        np.testing.assert_array_equal(one, two)
