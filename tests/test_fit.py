"""The power-law fit of tinygradlm.sweep.fit: the t quantile matches the printed tables, the
fit recovers a known law, its 95% interval for α covers the truth in about 95% of seeded noisy
trials, and too few points are refused."""

import numpy as np
import pytest

from tinygradlm.sweep.fit import MIN_POINTS, fit_power_law, t_cdf, t_quantile


@pytest.mark.parametrize(
    ("dof", "table"),  # Student's t at 0.975, from the printed tables
    [(1, 12.706), (2, 4.303), (3, 3.182), (5, 2.571), (10, 2.228), (30, 2.042), (1000, 1.962)],
)
def test_t_quantile_matches_the_printed_table(dof, table):
    assert t_quantile(0.975, dof) == pytest.approx(table, abs=1e-3)
    assert t_cdf(t_quantile(0.9, dof), dof) == pytest.approx(0.9, abs=1e-9)
    assert t_quantile(0.025, dof) == pytest.approx(-table, abs=1e-3)


def test_t_cdf_of_one_degree_is_the_cauchy_cdf():
    for t in (-3.0, -0.5, 0.0, 0.7, 4.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + np.arctan(t) / np.pi, abs=1e-12)


def test_an_exact_law_is_recovered():
    x = np.logspace(4, 7, 6)
    fit = fit_power_law(x, 40.0 * x**-0.3 + 1.5)
    assert fit.alpha == pytest.approx(0.3, rel=1e-5)
    assert fit.a == pytest.approx(40.0, rel=1e-4)
    assert fit.c == pytest.approx(1.5, abs=1e-5)
    assert (fit.points, fit.dof) == (6, 3)
    np.testing.assert_allclose(fit.predict(x), 40.0 * x**-0.3 + 1.5, rtol=1e-6)


def coverage_trials(n_points, noise, trials=200):
    """(how often the 95% interval covers the true α, the median |α̂ − α|) over seeded trials."""
    rng = np.random.default_rng(1234)
    a, alpha, c = 30.0, 0.35, 2.0
    x = np.logspace(4, 7, n_points)
    covered, errors = 0, []
    for _ in range(trials):
        y = a * x**-alpha + c + rng.normal(0.0, noise, size=x.size)
        fit = fit_power_law(x, y)
        low = fit.alpha_low if fit.alpha_low is not None else -np.inf
        high = fit.alpha_high if fit.alpha_high is not None else np.inf
        covered += low <= alpha <= high
        errors.append(abs(fit.alpha - alpha))
    return covered / trials, float(np.median(errors))


@pytest.mark.parametrize("n_points", [5, 8])
def test_the_95_percent_interval_covers_the_truth_about_95_percent_of_the_time(n_points):
    coverage, error = coverage_trials(n_points, noise=0.01)
    # 200 trials: a true 95% gives 0.92-0.98 nineteen times in twenty; an interval that ignored
    # the few degrees of freedom (a normal quantile) would cover far less at 5 points
    assert 0.9 <= coverage <= 0.99, coverage
    assert error < 0.02


def test_a_noisier_sweep_gives_a_wider_interval():
    x = np.logspace(4, 7, 6)
    clean = 30.0 * x**-0.35 + 2.0
    noise = np.random.default_rng(0).normal(0.0, 1.0, size=x.size)
    narrow = fit_power_law(x, clean + 0.002 * noise)
    wide = fit_power_law(x, clean + 0.02 * noise)
    assert wide.alpha_high - wide.alpha_low > 3 * (narrow.alpha_high - narrow.alpha_low)


def test_an_unbounded_side_is_reported_as_none():
    # a flat line: any small α fits as well as any other
    x = np.logspace(4, 7, 5)
    y = 3.0 + np.random.default_rng(0).normal(0.0, 0.01, size=x.size)
    fit = fit_power_law(x, y)
    assert fit.alpha_low is None or fit.alpha_high is None


def test_the_band_contains_the_fitted_curve():
    x = np.logspace(4, 7, 6)
    y = 30.0 * x**-0.35 + 2.0 + np.random.default_rng(3).normal(0.0, 0.01, size=x.size)
    fit = fit_power_law(x, y)
    low, high = fit.band(x)
    assert np.all(low <= fit.predict(x) + 1e-9) and np.all(fit.predict(x) <= high + 1e-9)
    assert np.all(high - low > 0)


def test_too_few_points_or_bad_values_are_refused():
    x = np.logspace(4, 6, MIN_POINTS - 1)
    with pytest.raises(ValueError, match="needs at least 4"):
        fit_power_law(x, 1 + x**-0.3)
    with pytest.raises(ValueError, match="positive finite"):
        fit_power_law([1.0, 2.0, -3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="positive finite"):
        fit_power_law([1.0, 2.0, 3.0, 4.0], [1.0, np.nan, 3.0, 4.0])


def test_a_best_alpha_at_the_end_of_the_search_range_is_flagged():
    x = np.logspace(4, 7, 5)
    assert fit_power_law(x, 10.0 * x**-0.3 + 1.0).alpha_at_bound is False
    # the loss falls faster than any α up to 0.5 allows
    assert fit_power_law(x, 1e4 * x**-1.0 + 1.0, alpha_range=(0.01, 0.5)).alpha_at_bound is True


def test_points_that_rise_are_refused():
    x = np.logspace(4, 7, 5)
    with pytest.raises(ValueError, match="do not fall with x"):
        fit_power_law(x, 4.4 + 0.05 * np.log(x))  # the loss grows with size


def test_a_loss_straight_in_log_x_gives_a_pure_power_law_not_a_negative_floor():
    # over a narrow range a loss that falls by the same amount per doubling is fitted equally
    # well by α → 0 with c → −∞; an irreducible loss below 0 is impossible, and the bound on c
    # gives the pure power law the points follow (their slope in log-log)
    x = np.logspace(3.8, 5.6, 7)
    y = 5.3 - 0.09 * np.log(x / x[0])
    free = fit_power_law(x, y, floor=None)
    assert free.c < -10 and not free.c_at_floor and free.floor is None
    fit = fit_power_law(x, y)
    assert fit.c == 0.0 and fit.c_at_floor and fit.floor == 0.0
    slope = -np.polyfit(np.log(x), np.log(y), 1)[0]
    assert fit.alpha_low <= slope <= fit.alpha_high
    assert fit.alpha == pytest.approx(slope, rel=0.1)
    assert np.all(fit.band(x)[0] > 0)


def test_the_bound_leaves_a_law_with_a_positive_floor_alone():
    x = np.logspace(4, 7, 6)
    y = 30.0 * x**-0.35 + 2.0 + np.random.default_rng(3).normal(0.0, 0.01, size=x.size)
    bounded, free = fit_power_law(x, y), fit_power_law(x, y, floor=None)
    assert not bounded.c_at_floor
    for key in ("a", "alpha", "c", "alpha_low", "alpha_high", "rss"):
        assert getattr(bounded, key) == getattr(free, key), key


def test_the_interval_covers_a_pure_power_law_at_the_floor():
    rng = np.random.default_rng(99)
    x = np.logspace(4, 7, 6)
    covered = 0
    for _ in range(200):
        fit = fit_power_law(x, 8.0 * x**-0.07 + rng.normal(0.0, 0.01, size=x.size))
        assert fit.c >= 0.0
        low = fit.alpha_low if fit.alpha_low is not None else -np.inf
        high = fit.alpha_high if fit.alpha_high is not None else np.inf
        covered += low <= 0.07 <= high
    # on the boundary of c the profile interval errs on the wide side, never the narrow one
    assert 0.93 <= covered / 200 <= 1.0, covered


def test_a_floor_at_or_above_the_losses_is_refused():
    x = np.logspace(4, 7, 5)
    with pytest.raises(ValueError, match="floor must be"):
        fit_power_law(x, 10.0 * x**-0.3 + 1.0, floor=5.0)
