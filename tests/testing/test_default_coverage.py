"""The default check (random projections within their finite-difference error estimate) sees a
single wrong element at any size: the guarantee its report states, tested at that threshold."""

import time

import numpy as np
import planted_bugs as pb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.testing import check_vjp
from tinygradlm.testing import strategies as tst


def matmul_forward(a, w):
    return a @ w, (a, w)


def matmul_backward(dout, cache):
    a, w = cache
    return dout @ w.T, a.T @ dout


def matmul_backward_wrong_at(row, column, factor=1.5):
    def backward(dout, cache):
        da, dw = matmul_backward(dout, cache)
        dw[row, column] *= factor
        return da, dw

    return backward


def test_one_element_off_by_half_in_a_million_fails_by_default_and_is_named():
    x = np.random.default_rng(0).normal(size=(1024, 1024))
    start = time.perf_counter()
    good = check_vjp(pb.square_forward, pb.square_backward, [x])
    elapsed = time.perf_counter() - start
    bad = check_vjp(
        pb.square_forward, pb.square_backward_wrong_at(517 * 1024 + 33), [x], raise_exception=False
    )
    assert good.ok and not bad.ok
    assert elapsed < 5.0  # the passing check; about 0.7 s on an idle machine
    assert bad.pair(0).n_failed == bad.pair(0).n_elements == 2  # every projection sees it
    assert "full Jacobians" in bad.notes[0] and "were not computed" in bad.notes[0]
    assert bad.notes[1].startswith("bisection names input 0 at index (517, 33)")


def test_one_element_off_by_half_in_a_256_square_matmul_fails_by_default():
    rng = np.random.default_rng(1)
    a, w = rng.normal(size=(256, 256)), rng.normal(size=(256, 256))
    assert check_vjp(matmul_forward, matmul_backward, [a, w])
    result = check_vjp(
        matmul_forward, matmul_backward_wrong_at(100, 7), [a, w], raise_exception=False
    )
    assert [p.input_index for p in result.failed_pairs] == [1]
    assert "bisection names input 1 at index (100, 7)" in result.notes[1]


def test_bisection_names_one_of_two_wrong_elements_past_the_full_check_limit():
    # 4096 elements: the Jacobian has 4096² > 2²² entries, so auto mode bisects instead
    x = np.random.default_rng(3).normal(size=4096)

    def swapped(dout, x):
        (dx,) = pb.square_backward(dout, x)
        dx[[0, -1]] = dx[[-1, 0]]
        return (dx,)

    result = check_vjp(pb.square_forward, swapped, [x], raise_exception=False)
    (named,) = [n for n in result.notes if n.startswith("bisection names")]
    prefixes = ("bisection names input 0 at index (0,)", "bisection names input 0 at index (4095,)")
    assert named.startswith(prefixes)


@given(data=st.data())
def test_an_error_just_above_the_stated_threshold_in_any_one_element_fails(data):
    # the report's promise: one element of vᵀJ off by more than the threshold cannot pass
    shape = data.draw(tst.shapes(min_dims=1, max_dims=3, max_side=9))
    x = data.draw(tst.arrays(shape))
    seed = data.draw(st.integers(0, 2**16))
    threshold = check_vjp(pb.square_forward, pb.square_backward, [x], seed=seed).pair(0).threshold
    flat_index = data.draw(st.integers(0, x.size - 1))
    sign = data.draw(st.sampled_from([-1.0, 1.0]))

    def backward(dout, x):
        # one element of vᵀJ off by 1.01·threshold exactly (whatever v): the weakest error the
        # report promises to see (not linear in dout, so the property checks are off)
        (dx,) = pb.square_backward(dout, x)
        dx.reshape(-1)[flat_index] += sign * 1.01 * threshold
        return (dx,)

    result = check_vjp(
        pb.square_forward,
        backward,
        [x],
        mode="fast",
        seed=seed,
        check_properties=False,
        raise_exception=False,
    )
    assert not result.ok


def test_the_fast_report_states_the_projections_and_the_threshold():
    x = np.random.default_rng(2).normal(size=(50, 40))
    result = check_vjp(pb.square_forward, pb.square_backward, [x], mode="fast", projections=3)
    pair = result.pair(0)
    assert (pair.mode, pair.n_elements) == ("fast", 3)
    assert pair.threshold < 1e-3 and pair.gradient_scale > 0
    assert "sure to see errors above" in str(result)


def test_projections_must_be_at_least_one():
    with pytest.raises(ValueError, match="projections must be at least 1"):
        check_vjp(pb.square_forward, pb.square_backward, [np.ones(3)], projections=0)
