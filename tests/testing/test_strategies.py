"""The hypothesis strategies keep their promises: shapes fit together, margins hold, configs are
valid, and generation passes hypothesis's health checks (these tests run with them on)."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import find, given
from hypothesis import strategies as st

from tinygradlm.testing import strategies as tst


@given(tst.shapes(min_dims=1, max_dims=3, min_side=2, max_side=4))
def test_shapes_respect_their_bounds(shape):
    assert 1 <= len(shape) <= 3
    assert all(2 <= n <= 4 for n in shape)


@given(tst.broadcastable_shapes())
def test_broadcastable_shapes_broadcast_in_numpy(shapes):
    shape_a, shape_b = shapes
    np.broadcast_shapes(shape_a, shape_b)
    assert (np.ones(shape_a) + np.ones(shape_b)).shape == np.broadcast_shapes(shape_a, shape_b)


def test_broadcastable_shapes_include_rank_differences_and_stretched_size_one_axes():
    find(tst.broadcastable_shapes(), lambda s: len(s[0]) != len(s[1]))

    def stretches(s):
        a, b = s
        n = min(len(a), len(b))
        return n > 0 and any(x == 1 and y > 1 for x, y in zip(a[-n:], b[-n:], strict=True))

    find(tst.broadcastable_shapes(), stretches)


@given(tst.matmul_shapes())
def test_matmul_shapes_are_valid_for_np_matmul(shapes):
    shape_a, shape_b = shapes
    np.matmul(np.ones(shape_a), np.ones(shape_b))


def test_matmul_shapes_include_vectors_and_broadcast_batches():
    find(tst.matmul_shapes(), lambda s: len(s[0]) == 1 and len(s[1]) == 1)
    find(tst.matmul_shapes(), lambda s: len(s[0]) == 1 and len(s[1]) >= 3)
    find(
        tst.matmul_shapes(), lambda s: len(s[0]) >= 3 and len(s[1]) >= 3 and s[0][:-2] != s[1][:-2]
    )


@given(tst.arrays(tst.shapes(), low=-1.5, high=0.5))
def test_arrays_stay_in_low_high(x):
    assert x.dtype == np.float64
    assert np.all((x >= -1.5) & (x <= 0.5))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(data=st.data())
def test_arrays_keep_min_abs_away_from_zero(dtype, data):
    x = data.draw(tst.arrays(tst.shapes(), dtype=dtype, min_abs=0.3))
    assert x.dtype == dtype
    assert np.all(np.abs(x) >= dtype(0.3))
    assert np.all((x >= -2) & (x <= 2))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@given(data=st.data())
def test_arrays_keep_all_values_min_gap_apart(dtype, data):
    x = data.draw(tst.arrays(tst.shapes(max_side=4), dtype=dtype, min_gap=0.02, min_abs=0.1))
    gaps = np.diff(np.sort(x.reshape(-1)))
    assert np.all(gaps >= dtype(0.02))
    assert np.all(np.abs(x) >= dtype(0.1))


@given(data=st.data())
def test_arrays_keep_values_min_gap_apart_along_an_axis(data):
    shape = data.draw(tst.shapes(min_dims=1))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = data.draw(tst.arrays(shape, min_gap=0.3, axis=axis))
    assert np.all(np.diff(np.sort(x, axis=axis), axis=axis) >= 0.3)
    assert np.all(x >= -2)


@given(tst.arrays((5, 5, 5), min_gap=0.05))
def test_arrays_raise_high_when_the_gaps_do_not_fit_and_keep_low(x):
    # 125 values 0.05 apart need 6.2 > 4 = high - low: high is raised, low kept
    assert np.all(np.diff(np.sort(x.reshape(-1))) >= 0.05)
    assert x.min() >= -2


def test_arrays_reject_a_range_inside_the_excluded_band():
    with pytest.raises(ValueError, match=r"no value in \[-0.1, 0.1\] is at least 0.5 from zero"):
        find(tst.arrays(3, low=-0.1, high=0.1, min_abs=0.5), lambda x: True)


@given(tst.positive_arrays(tst.shapes(), low=0.01))
def test_positive_arrays_are_positive(x):
    assert np.all(x >= 0.01)


@given(data=st.data())
def test_normalizable_arrays_have_a_standard_deviation_floor_per_row(data):
    shape = data.draw(tst.shapes(min_dims=1, min_side=2))
    x = data.draw(tst.normalizable_arrays(shape, min_std=0.25))
    assert np.all(x.std(axis=-1) >= 0.25)
    y = data.draw(tst.arrays(shape, min_std=0.25))
    assert np.all(y.std(axis=-1) >= 0.25)


@given(data=st.data())
def test_gpt_configs_satisfy_their_constraints(data):
    config = data.draw(tst.gpt_configs())
    assert set(config) == {"vocab_size", "block_size", "n_layer", "n_head", "n_embd"}
    assert all(isinstance(v, int) and v >= 1 for v in config.values())
    assert config["n_embd"] % config["n_head"] == 0
    assert config["vocab_size"] >= 2
    assert 1 <= data.draw(tst.seq_lens(config)) <= config["block_size"]


def test_importing_the_checkers_does_not_import_hypothesis():
    code = "import sys, tinygradlm.testing; sys.exit('hypothesis' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
