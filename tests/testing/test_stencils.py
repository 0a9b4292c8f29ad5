"""Richardson-extrapolated differences: accurate, and their error estimate bounds the error."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.testing.stencils import (
    extrapolated_derivative,
    power_of_two_step,
    random_signs_and_weights,
)

EPS = float(np.finfo(np.float64).eps)


def along(f, x):
    """φ(t) = f(x + t) with its magnitude, as the checkers build it."""
    return lambda t: (np.array([f(x + t)]), np.array([abs(f(x + t))]))


# (levels, step, how small the estimate must be): the fast mode's and the tight mode's settings;
# with two levels the estimate is the h² error of D(h), a generous bound on the extrapolation
SETTINGS = [(2, 2.0**-14, 1e-7), (3, 2.0**-10, 1e-9)]


@pytest.mark.parametrize(("levels", "step", "small"), SETTINGS)
@given(x=st.floats(-3.0, 3.0))
def test_the_error_estimate_bounds_the_error_of_smooth_functions(levels, step, small, x):
    for f, df in [(np.sin, np.cos), (np.exp, np.exp), (np.tanh, lambda x: 1 - np.tanh(x) ** 2)]:
        estimate = extrapolated_derivative(along(f, x), step, levels, EPS)
        assert abs(estimate.value[0] - df(x)) <= estimate.error[0]
        assert estimate.error[0] < small * max(1.0, abs(df(x)))


def test_a_kink_inside_the_steps_shows_in_the_error_estimate():
    # |x| at 1e-3 (inside the steps up to 4·2⁻¹⁰): the estimate says it cannot resolve it
    estimate = extrapolated_derivative(along(abs, 1e-3), 2.0**-10, 3, EPS)
    assert estimate.error[0] > 0.1


def test_fewer_than_two_levels_are_rejected():
    with pytest.raises(ValueError, match="at least 2 levels"):
        extrapolated_derivative(along(np.sin, 0.0), 1e-3, 1, EPS)


def test_steps_are_powers_of_two_and_directions_weigh_every_element_at_least_a_half():
    assert power_of_two_step(1e-3) == 2.0**-10
    d = random_signs_and_weights(np.random.default_rng(0), (1000,))
    assert np.all((np.abs(d) >= 0.5) & (np.abs(d) <= 1.0))
    assert {-1.0, 1.0} == set(np.sign(d))
    x = np.random.default_rng(1).normal(size=1000)
    h = power_of_two_step(1e-4)
    assert np.array_equal((x + h * d) - x, h * d)  # the step taken is the step meant
