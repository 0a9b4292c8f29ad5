"""check_vjp passes correct hand-written backwards and names the input and element of wrong ones."""

import numpy as np
import planted_bugs as pb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.testing import GradcheckError, check_vjp
from tinygradlm.testing import strategies as tst

RNG = np.random.default_rng(0)
X, W, B = RNG.normal(size=(3, 4)), RNG.normal(size=(4, 2)), RNG.normal(size=2)
IDX, TABLE = np.array([2, 0, 2, 5]), RNG.normal(size=(7, 3))


# --------------------------------------------------------------------------------------------
# correct backwards pass
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["full", "fast", "auto"])
def test_check_vjp_passes_a_correct_linear_layer_in_every_mode(mode):
    result = check_vjp(pb.linear_forward, pb.linear_backward, [X, W, B], mode=mode)
    assert result.ok and bool(result)
    assert result.mode == ("full" if mode == "full" else "fast")
    assert [(p.input_index, p.output_index) for p in result.pairs] == [(0, 0), (1, 0), (2, 0)]


def test_check_vjp_passes_an_embedding_with_an_integer_index_input():
    result = check_vjp(pb.embedding_forward, pb.embedding_backward, [IDX, TABLE], mode="full")
    assert [p.input_index for p in result.pairs] == [1]  # the index input is not checked
    assert result.pair(1).n_elements == TABLE.size


def test_check_vjp_passes_two_outputs_with_a_tuple_dout():
    x, y = RNG.normal(size=(2, 3)), RNG.normal(size=(2, 3))
    forward, backward = pb.product_and_sum_forward, pb.product_and_sum_backward
    for mode in ["full", "fast"]:
        result = check_vjp(forward, backward, [x, y], mode=mode)
        assert {(p.input_index, p.output_index) for p in result.pairs} == {
            (0, 0),
            (0, 1),
            (1, 0),
            (1, 1),
        }


def test_check_vjp_accepts_the_cache_free_convention_and_a_bare_array_grad():
    result = check_vjp(lambda x: np.sin(x), lambda dout, x: dout * np.cos(x), [X], cache=False)
    assert result.ok


def test_check_vjp_accepts_grads_for_the_checked_inputs_only():
    def backward(dout, cache):
        x, _ = cache
        return x.T @ dout  # only w's grad: argnums=1

    assert check_vjp(pb.linear_forward, backward, [X, W, B], argnums=1, mode="full")


@given(data=st.data())
def test_check_vjp_passes_layer_norm_on_rows_with_a_variance_floor(data):
    shape = data.draw(tst.shapes(min_dims=1, max_dims=2, min_side=2, max_side=4))
    x = data.draw(tst.normalizable_arrays(shape, min_std=0.1))
    gamma, beta = data.draw(tst.arrays(shape[-1:])), data.draw(tst.arrays(shape[-1:]))

    def forward(x, gamma, beta):
        mean = x.mean(axis=-1, keepdims=True)
        rstd = 1.0 / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-5)
        norm = (x - mean) * rstd
        return norm * gamma + beta, (norm, rstd, gamma)

    def backward(dout, cache):
        norm, rstd, gamma = cache
        reduce = tuple(range(dout.ndim - 1))
        dnorm = dout * gamma
        dx = rstd * (
            dnorm
            - dnorm.mean(axis=-1, keepdims=True)
            - norm * (dnorm * norm).mean(axis=-1, keepdims=True)
        )
        return dx, (dout * norm).sum(axis=reduce), dout.sum(axis=reduce)

    assert check_vjp(forward, backward, [x, gamma, beta], mode="full")


def test_check_vjp_uses_loose_tolerances_for_a_float32_forward_and_says_so():
    def forward(x):
        x32 = x.astype(np.float32)
        return np.tanh(x32), x32

    def backward(dout, x32):
        return dout * (1 - np.tanh(x32) ** 2)

    result = check_vjp(forward, backward, [X])
    assert (result.eps, result.atol, result.rtol) == (1e-3, 1e-2, 1e-2)
    assert "float32" in str(result)


def test_check_vjp_never_modifies_the_callers_arrays():
    x32 = X.astype(np.float32)
    before = x32.copy()
    check_vjp(pb.square_forward, pb.square_backward, [x32])
    np.testing.assert_array_equal(x32, before)
    assert x32.dtype == np.float32


# --------------------------------------------------------------------------------------------
# planted bugs are caught, and the report names the input and the element
# --------------------------------------------------------------------------------------------


def test_check_vjp_names_input_and_index_of_wrong_sign():
    result = check_vjp(
        pb.linear_forward, pb.linear_backward_wrong_sign, [X, W, B], raise_exception=False
    )
    assert not result.ok
    assert result.mode == "full"  # auto: the fast check failed, the full one names elements
    assert [p.input_index for p in result.failed_pairs] == [1]
    dw = result.pair(1)
    assert dw.n_failed == W.size and len(dw.failed_indices) == W.size
    assert dw.worst_analytic == pytest.approx(-dw.worst_numeric, rel=1e-6)
    assert dw.worst_index in dw.failed_indices
    assert "input 1 (shape (4, 2), float64) -> output 0 (shape (3, 2))" in str(result)


@pytest.mark.parametrize(
    ("backward", "grad_shape"),
    [(pb.linear_backward_bias_not_reduced, (3, 2)), (pb.linear_backward_bias_keepdims, (1, 2))],
)
def test_check_vjp_names_input_and_shape_of_an_unreduced_broadcast(backward, grad_shape):
    with pytest.raises(GradcheckError) as caught:
        check_vjp(pb.linear_forward, backward, [X, W, B])
    message = f"backward returned grad of shape {grad_shape} for input 2 of shape (2,)"
    assert message in str(caught.value)
    assert caught.value.result.problems[0].startswith(message)
    assert all(p.input_index != 2 for p in caught.value.result.pairs)  # no values to compare


def test_check_vjp_names_input_and_shape_of_a_grad_summed_over_an_axis_too_many():
    def backward(dout, x):
        return 2 * dout.sum(axis=1, keepdims=True)

    result = check_vjp(lambda x: 2 * x, backward, [X], cache=False, raise_exception=False)
    assert result.problems == [
        "backward returned grad of shape (3, 1) for input 0 of shape (3, 4)"
        " (summed over an axis too many?)"
    ]


def test_check_vjp_names_input_and_elements_of_a_sum_over_the_wrong_axis():
    x, b = RNG.normal(size=(3, 3)), RNG.normal(size=(3, 1))
    result = check_vjp(
        pb.column_bias_forward, pb.column_bias_backward_wrong_axis, [x, b], raise_exception=False
    )
    assert result.pair(0).ok
    db = result.pair(1)
    assert db.failed_indices == [(0, 0), (1, 0), (2, 0)]
    assert db.worst_index in db.failed_indices


def test_check_vjp_names_the_rows_of_an_off_by_one_scatter():
    result = check_vjp(
        pb.embedding_forward, pb.embedding_backward_off_by_one, [IDX, TABLE], raise_exception=False
    )
    dtable = result.pair(1)
    # rows 0, 2, 5 miss their gradient; rows 1, 3, 6 receive one they should not
    rows = {0, 1, 2, 3, 5, 6}
    assert {index[0] for index in dtable.failed_indices} == rows
    assert dtable.n_failed == len(rows) * TABLE.shape[1]
    assert dtable.worst_index[0] in rows


@given(data=st.data())
def test_check_vjp_names_the_one_element_with_a_wrong_factor(data):
    shape = data.draw(tst.shapes(min_dims=1, max_dims=3, max_side=4))
    x = data.draw(tst.arrays(shape, min_abs=0.1))
    flat_index = data.draw(st.integers(0, x.size - 1))
    expected = tuple(int(i) for i in np.unravel_index(flat_index, shape))
    backward = pb.square_backward_wrong_at(flat_index)
    result = check_vjp(pb.square_forward, backward, [x], mode="full", raise_exception=False)
    pair = result.pair(0)
    assert (pair.n_failed, pair.failed_indices, pair.worst_index) == (1, [expected], expected)
    assert f"worst at index {expected}" in str(result)


def test_check_vjp_in_auto_mode_goes_from_a_failed_projection_to_the_wrong_element():
    result = check_vjp(
        pb.square_forward, pb.square_backward_wrong_at(7), [X], raise_exception=False
    )
    assert result.mode == "full" and "the fast check (a random projection" in result.notes[0]
    assert result.pair(0).failed_indices == [(1, 3)]


def test_check_vjp_names_the_swapped_grads_of_two_outputs():
    x, y = RNG.normal(size=3), RNG.normal(size=3)
    result = check_vjp(
        pb.product_and_sum_forward,
        pb.product_and_sum_backward_swapped,
        [x, y],
        raise_exception=False,
    )
    failing = {(p.input_index, p.output_index) for p in result.failed_pairs}
    assert failing == {(0, 0), (1, 0)}  # the product's grads are wrong, the sum's are right


def test_check_vjp_with_a_cotangent_compares_the_vector_jacobian_product_elementwise():
    dout = RNG.normal(size=(IDX.size, TABLE.shape[1]))
    good = check_vjp(pb.embedding_forward, pb.embedding_backward, [IDX, TABLE], cotangent=dout)
    assert good.mode == "vjp"
    bad = check_vjp(
        pb.embedding_forward,
        pb.embedding_backward_off_by_one,
        [IDX, TABLE],
        cotangent=dout,
        raise_exception=False,
    )
    assert {index[0] for index in bad.pair(1).failed_indices} == {0, 1, 2, 3, 5, 6}


def test_check_vjp_reports_non_finite_outputs_as_a_problem():
    x = np.array([-1.0, 2.0])
    with np.errstate(invalid="ignore"):
        result = check_vjp(
            np.log, lambda dout, x: dout / x, [x], cache=False, raise_exception=False
        )
    assert result.problems[0].startswith("output 0 has 1 non-finite value(s)")


def test_check_vjp_explains_a_wrong_number_of_grads():
    with pytest.raises(GradcheckError, match=r"backward returned 2 grads; expected one per input"):
        check_vjp(pb.linear_forward, lambda dout, cache: (dout, dout), [X, W, B])


# --------------------------------------------------------------------------------------------
# a backward must not modify its arguments
# --------------------------------------------------------------------------------------------


def test_check_vjp_reports_a_backward_that_modifies_dout():
    def backward(dout, x):
        dout *= 2 * x  # in place: the caller's dout is gone
        return dout

    result = check_vjp(pb.square_forward, backward, [X], raise_exception=False)
    assert "backward modified dout in place" in result.problems
    assert not result.ok


def test_check_vjp_reports_a_backward_that_modifies_the_cache_and_still_checks_values():
    def backward(dout, x):
        x *= 2  # corrupts the cache; later calls get a fresh one
        return dout * x

    result = check_vjp(pb.square_forward, backward, [X], mode="full", raise_exception=False)
    assert result.problems == ["backward modified the cache in place"]
    assert result.pair(0).ok  # 2·x·dout is the right value


# --------------------------------------------------------------------------------------------
# kinks
# --------------------------------------------------------------------------------------------

AT_ZERO = np.array([-1.5, 0.0, 0.7, 2.0])


def test_relu_at_exactly_zero_fails_without_check_kinks_and_says_it_looks_like_a_kink():
    result = check_vjp(pb.relu_forward, pb.relu_backward, [AT_ZERO], raise_exception=False)
    pair = result.pair(0)
    assert pair.failed_indices == [(1,)]
    assert pair.n_kink_like_failures == 1
    assert "check_kinks=True" in str(result)


def test_relu_at_exactly_zero_is_reported_as_a_kink_with_check_kinks():
    for mode in ["full", "fast", "auto"]:
        result = check_vjp(
            pb.relu_forward, pb.relu_backward, [AT_ZERO], mode=mode, check_kinks=True
        )
        assert result.mode == "full"  # the projection fails at the kink; full mode finds it
        (kink,) = result.pair(0).kinks
        assert (kink.index, kink.analytic, kink.left, kink.right) == ((1,), 0.0, 0.0, 1.0)
        assert "1 kink(s) accepted" in str(result)


def test_abs_at_zero_accepts_any_subgradient_between_minus_one_and_one():
    for subgradient in [-1.0, 0.0, 0.5, 1.0]:

        def backward(dout, x, s=subgradient):
            return dout * np.where(x == 0, s, np.sign(x))

        assert check_vjp(np.abs, backward, [AT_ZERO], cache=False, check_kinks=True)
        # full mode lists every kink, even one whose subgradient matches the central difference
        result = check_vjp(np.abs, backward, [AT_ZERO], cache=False, check_kinks=True, mode="full")
        assert [k.index for k in result.pair(0).kinks] == [(1,)]


def test_a_value_outside_the_one_sided_derivatives_fails_even_with_check_kinks():
    result = check_vjp(
        pb.relu_forward,
        pb.relu_backward_minus_one_at_zero,
        [AT_ZERO],
        check_kinks=True,
        raise_exception=False,
    )
    pair = result.pair(0)
    assert (pair.failed_indices, pair.kinks) == ([(1,)], [])


# --------------------------------------------------------------------------------------------
# raising and the result object
# --------------------------------------------------------------------------------------------


def test_raise_exception_false_returns_the_failing_result():
    result = check_vjp(
        pb.linear_forward, pb.linear_backward_wrong_sign, [X, W, B], raise_exception=False
    )
    assert not result and not result.ok


def test_a_failing_check_raises_an_assertion_error_carrying_the_result():
    with pytest.raises(AssertionError) as caught:
        check_vjp(pb.linear_forward, pb.linear_backward_wrong_sign, [X, W, B])
    assert isinstance(caught.value, GradcheckError)
    assert str(caught.value) == str(caught.value.result)
    assert caught.value.result.failed_pairs[0].input_index == 1


def test_an_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="mode must be one of"):
        check_vjp(pb.square_forward, pb.square_backward, [X], mode="slow")


def test_check_vjp_handles_a_transposed_input():
    # a Fortran-ordered input must be perturbed element by element like any other
    x = np.arange(12.0).reshape(3, 4).T / 7.0

    def forward(a):
        return np.sin(a), a

    def backward(dout, a):
        return (dout * np.cos(a),)

    assert check_vjp(forward, backward, [x], mode="full").ok
    assert not check_vjp(forward, lambda d, a: (d * np.sin(a),), [x], raise_exception=False).ok
