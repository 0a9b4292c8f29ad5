"""gradcheck passes the engine's correct gradients and names the input and element of wrong ones
(planted with numpy_op)."""

import numpy as np
import planted_bugs as pb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.autograd import Tensor, numpy_op
from tinygradlm.testing import GradcheckError, gradcheck
from tinygradlm.testing import strategies as tst

RNG = np.random.default_rng(1)
X, W, B = RNG.normal(size=(3, 4)), RNG.normal(size=(4, 2)), RNG.normal(size=2)
IDX, TABLE = np.array([2, 0, 2, 5]), RNG.normal(size=(7, 3))

linear = numpy_op(pb.linear_forward, pb.linear_backward)
embedding = numpy_op(pb.embedding_forward, pb.embedding_backward)


# --------------------------------------------------------------------------------------------
# correct gradients pass
# --------------------------------------------------------------------------------------------

FUNCTIONS = {
    "tanh of matmul": (lambda x, w: (x @ w).tanh(), [X, W]),
    "broadcast add then exp, summed": (lambda x, b: (x[:, :2] + b).exp().sum(), [X, B]),
    "softmax over rows": (lambda x: x.exp() / x.exp().sum(axis=1, keepdims=True), [X]),
    "numpy_op linear inside a graph": (lambda x, w, b: linear(x, w, b).tanh(), [X, W, B]),
    "python scalar passed through": (lambda x, s: x * s, [X, 2.5]),
}


@pytest.mark.parametrize("mode", ["full", "fast", "auto"])
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_gradcheck_passes_correct_gradients(name, mode):
    fn, inputs = FUNCTIONS[name]
    result = gradcheck(fn, inputs, mode=mode)
    assert result.ok
    n_checked = sum(isinstance(x, np.ndarray) for x in inputs)
    assert len(result.pairs) == n_checked


@given(data=st.data())
def test_gradcheck_passes_matmul_over_drawn_shapes(data):
    shape_a, shape_b = data.draw(tst.matmul_shapes(max_side=3))
    a, b = data.draw(tst.arrays(shape_a)), data.draw(tst.arrays(shape_b))
    assert gradcheck(lambda a, b: a @ b, [a, b], mode="full")


def test_gradcheck_checks_every_output_of_a_tuple():
    result = gradcheck(lambda x, w: ((x @ w).tanh(), (x * x).sum()), [X, W], mode="full")
    assert {(p.input_index, p.output_index) for p in result.pairs} == {
        (0, 0),
        (1, 0),
        (0, 1),
        (1, 1),
    }
    assert result.pair(1, 1).max_abs_err == 0.0  # w does not reach output 1: both are zero


def test_gradcheck_passes_an_integer_index_input_through_unchecked():
    seen = []

    def gather(idx, table):
        seen.append(idx.dtype)
        return table[idx].tanh()

    result = gradcheck(gather, [IDX, TABLE], mode="full")
    assert [p.input_index for p in result.pairs] == [1]
    assert all(dtype.kind == "i" for dtype in seen)
    assert gradcheck(lambda idx, table: embedding(idx, table) * 2.0, [IDX, TABLE])


def test_gradcheck_checks_tensor_and_float32_inputs_as_float64():
    x32 = X.astype(np.float32)
    result = gradcheck(lambda x, w: x @ w, [x32, Tensor(W)], mode="full")
    assert [p.input_dtype for p in result.pairs] == ["float64", "float64"]
    assert (result.eps, result.atol) == (1e-6, 1e-5)
    assert x32.dtype == np.float32  # the caller's array is untouched


def test_gradcheck_uses_loose_tolerances_when_fn_computes_in_float32_and_says_so():
    result = gradcheck(lambda x: (x.float().tanh() * 3.0).double(), [X])
    assert (result.eps, result.atol, result.rtol) == (1e-3, 1e-2, 1e-2)
    assert "float32" in str(result)
    result = gradcheck(lambda x: x.float().exp(), [X])
    assert "output 0 is float32" in str(result)


def test_gradcheck_skips_a_non_floating_output_and_says_so():
    result = gradcheck(lambda x: (x.tanh(), x > 0), [X])
    assert {p.output_index for p in result.pairs} == {0}
    assert "output 1 (bool) is not floating: not checked" in result.notes


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_gradcheck_handles_zero_dimensional_and_empty_inputs(mode):
    assert gradcheck(lambda x: x * x, [np.array(2.0)], mode=mode)
    assert gradcheck(lambda x: (x * x).sum(), [np.zeros((0, 3))], mode=mode)


def test_gradcheck_says_when_there_is_nothing_to_check():
    result = gradcheck(lambda idx: Tensor(np.ones(2)) * 2.0, [IDX])
    assert result.ok and result.pairs == []
    assert "there is no floating input: nothing was checked" in result.notes


def test_gradcheck_rejects_a_function_that_does_not_return_tensors():
    with pytest.raises(TypeError, match="output 0 is a ndarray"):
        gradcheck(lambda x: x.data * 2, [X])


# --------------------------------------------------------------------------------------------
# planted bugs, through numpy_op, are caught and named
# --------------------------------------------------------------------------------------------


def test_gradcheck_names_input_and_index_of_wrong_sign():
    wrong = numpy_op(pb.linear_forward, pb.linear_backward_wrong_sign)
    result = gradcheck(lambda x, w, b: wrong(x, w, b).tanh(), [X, W, B], raise_exception=False)
    assert result.mode == "full"
    assert [p.input_index for p in result.failed_pairs] == [1]
    dw = result.pair(1)
    assert dw.n_failed == W.size and dw.worst_index in dw.failed_indices
    assert np.sign(dw.worst_analytic) == -np.sign(dw.worst_numeric)


def test_gradcheck_names_input_and_elements_of_a_sum_over_the_wrong_axis():
    wrong = numpy_op(pb.column_bias_forward, pb.column_bias_backward_wrong_axis)
    x, b = RNG.normal(size=(3, 3)), RNG.normal(size=(3, 1))
    result = gradcheck(lambda x, b: wrong(x, b) * 1.0, [x, b], raise_exception=False)
    assert result.pair(0).ok
    assert result.pair(1).failed_indices == [(0, 0), (1, 0), (2, 0)]


def test_gradcheck_surfaces_an_unreduced_broadcast_with_both_shapes():
    # numpy_op itself rejects a grad of the wrong shape, naming the op's input and both shapes
    wrong = numpy_op(pb.linear_forward, pb.linear_backward_bias_keepdims)
    with pytest.raises(ValueError, match=r"shape \(1, 2\) for input 2 of shape \(2,\)"):
        gradcheck(lambda x, w, b: wrong(x, w, b), [X, W, B])


def test_gradcheck_names_the_rows_of_an_off_by_one_scatter():
    wrong = numpy_op(pb.embedding_forward, pb.embedding_backward_off_by_one)
    result = gradcheck(lambda idx, t: wrong(idx, t).tanh(), [IDX, TABLE], raise_exception=False)
    rows = {0, 1, 2, 3, 5, 6}
    assert {index[0] for index in result.pair(1).failed_indices} == rows
    assert result.pair(1).worst_index[0] in rows


@given(data=st.data())
def test_gradcheck_names_the_one_element_with_a_wrong_factor(data):
    shape = data.draw(tst.shapes(min_dims=1, max_dims=2, max_side=4))
    x = data.draw(tst.arrays(shape, min_abs=0.1))
    flat_index = data.draw(st.integers(0, x.size - 1))
    expected = tuple(int(i) for i in np.unravel_index(flat_index, shape))
    wrong = numpy_op(pb.square_forward, pb.square_backward_wrong_at(flat_index))
    result = gradcheck(lambda x: wrong(x).sum(), [x], mode="full", raise_exception=False)
    pair = result.pair(0)
    assert (pair.n_failed, pair.failed_indices, pair.worst_index) == (1, [expected], expected)
    assert f"worst at index {expected}: analytic" in str(result)


def test_gradcheck_report_reads_as_a_pytest_failure_message():
    wrong = numpy_op(pb.square_forward, pb.square_backward_wrong_at(5, factor=-1.0))
    x = np.arange(1.0, 13.0).reshape(3, 4)
    with pytest.raises(GradcheckError) as caught:
        gradcheck(lambda c, x: (wrong(x) * c).sum(axis=1), [np.ones((3, 1)), x], mode="full")
    lines = str(caught.value).splitlines()
    assert lines[0] == "gradcheck failed (mode=full, eps=1e-06, atol=1e-05, rtol=0.001)"
    assert lines[1] == "  input 1 (shape (3, 4), float64) -> output 0 (shape (3,)):"
    assert lines[2].startswith("    1 of 12 elements over tolerance; max abs err 2.4e+01")
    assert lines[3] == (
        "    worst at index (1, 1) (output element (1,)): analytic -1.200000e+01, "
        "numeric 1.200000e+01"
    )
    assert lines[-1].startswith("  1 other input/output pair(s) within tolerance (max abs err")


# --------------------------------------------------------------------------------------------
# kinks, and raising
# --------------------------------------------------------------------------------------------

AT_ZERO = np.array([-1.5, 0.0, 0.7, 2.0])


def test_gradcheck_fails_relu_at_exactly_zero_without_check_kinks():
    with pytest.raises(GradcheckError) as caught:
        gradcheck(lambda x: x.relu(), [AT_ZERO])
    pair = caught.value.result.pair(0)
    assert (pair.failed_indices, pair.n_kink_like_failures) == ([(1,)], 1)


@pytest.mark.parametrize("op", ["relu", "abs"])
def test_gradcheck_reports_relu_and_abs_at_zero_as_kinks_with_check_kinks(op):
    assert gradcheck(lambda x: getattr(x, op)(), [AT_ZERO], check_kinks=True)
    result = gradcheck(lambda x: getattr(x, op)(), [AT_ZERO], check_kinks=True, mode="full")
    (kink,) = result.pair(0).kinks
    assert kink.index == (1,) and kink.output_index == (1,)
    assert (kink.left, kink.right) == pytest.approx((-1.0 if op == "abs" else 0.0, 1.0))


def test_gradcheck_lists_both_elements_of_a_max_tie_as_kinks():
    tied = np.array([1.0, 3.0, 3.0, -2.0])
    # the engine splits a tie evenly, 0.5 each, which is what central differences measure
    assert gradcheck(lambda x: x.max(), [tied])
    result = gradcheck(lambda x: x.max(), [tied], check_kinks=True, mode="full")
    assert [k.index for k in result.pair(0).kinks] == [(1,), (2,)]
    assert all((k.analytic, k.left, k.right) == (0.5, 0.0, 1.0) for k in result.pair(0).kinks)


def test_gradcheck_raise_exception_false_returns_the_failing_result():
    result = gradcheck(lambda x: x.relu(), [AT_ZERO], raise_exception=False)
    assert not result and not result.ok
    assert isinstance(GradcheckError(result), AssertionError)
