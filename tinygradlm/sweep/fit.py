"""A saturating power law L(x) = a·x^(−α) + c fitted to a handful of points, with a confidence
interval for α, in NumPy alone.

The model is linear in (a, c) once α is fixed, so the fit is a variable projection: for each α
the best (a, c) is an ordinary least-squares line through (x^(−α), L), and its residual sum of
squares RSS(α) is the profile of the fit along α. α is found by a search over a grid of
``alpha_range`` refined by golden-section search; a and c follow from it.

The interval is the profile's: the values of α whose RSS stays below

    RSS(α̂) · (1 + F(1, n − 3) / (n − 3)),    F(1, ν) = t(ν)², t at (1 + confidence) / 2,

the likelihood-ratio region of nonlinear least squares calibrated with the F distribution
(Bates & Watts, *Nonlinear Regression Analysis*, §6.1), which, unlike a linearised standard
error, follows the curvature of the profile. With n points and 3 parameters it has n − 3
degrees of freedom: a fit needs at least :data:`MIN_POINTS` (4) points, and with few it is wide.
The t quantile is computed here (:func:`t_quantile`, from the regularised incomplete beta).
An end of the interval that reaches the edge of ``alpha_range`` is reported as None: the data
do not bound α on that side; a best α at an edge is flagged (``alpha_at_bound``). Points whose
best curve has a ≤ 0 (a loss that does not fall with size) are refused: that is not a scaling law.

c is bounded below by ``floor`` (0 by default): the irreducible part of a cross-entropy loss is
an entropy, never negative. For an α whose unconstrained line would put c below the floor, the
best (a, c) under the bound has c on it (the least squares of a convex quadratic with one
inequality is either the free optimum or on its boundary), so the profile stays in closed form.
Without the bound, points that fall as a straight line in log x (a power law with a tiny α)
are fitted equally well by α → 0 and c → −∞, a law with a meaningless negative floor; with it
they give the pure power law c = 0 they follow, flagged ``c_at_floor``. ``floor=None`` lifts the
bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIN_POINTS = 4  # three parameters and at least one degree of freedom for the interval
PARAMETERS = 3  # a, α, c
GRID_POINTS = 4000  # the α grid the profile is searched on


@dataclass(frozen=True)
class PowerLawFit:
    """L(x) = a·x^(−α) + c fitted to ``points`` points, with the interval [alpha_low,
    alpha_high] at ``confidence`` (an end None: unbounded within ``alpha_range``)."""

    a: float
    alpha: float
    c: float
    alpha_low: float | None
    alpha_high: float | None
    confidence: float
    points: int
    dof: int  # points - 3
    rss: float  # the residual sum of squares at the best α
    alpha_at_bound: bool  # the best α is an end of alpha_range: the data ask for one outside it
    alpha_range: tuple[float, float]
    floor: float | None  # the lower bound of c (None: none)
    c_at_floor: bool  # the best c is the bound: over these points the law is a pure power law
    x_scale: float  # the geometric mean of x: the fit is computed on x / x_scale
    x: np.ndarray = field(repr=False, compare=False)  # the points fitted, (n,) each
    y: np.ndarray = field(repr=False, compare=False)

    def predict(self, x: Any) -> np.ndarray:
        """The fitted curve at ``x``."""
        return self.a * np.asarray(x, dtype=np.float64) ** -self.alpha + self.c

    def band(self, x: Any, samples: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """The lowest and highest of the best curves (a, c refitted) for α across its interval
        (an open end: the search range's), at ``x``: how far the curve can move while its α
        stays plausible. Not a prediction interval for a new point."""
        low = self.alpha_low if self.alpha_low is not None else self.alpha_range[0]
        high = self.alpha_high if self.alpha_high is not None else self.alpha_range[1]
        x = np.asarray(x, dtype=np.float64) / self.x_scale
        curves = [
            a * x**-alpha + c
            for alpha in np.linspace(low, high, samples)
            for a, c in [self._line_at(alpha)]
        ]
        return np.min(curves, axis=0), np.max(curves, axis=0)

    def _line_at(self, alpha: float) -> tuple[float, float]:
        a, c, _ = _lines(self.x / self.x_scale, self.y, np.array([alpha]), self.floor)
        return float(a[0]), float(c[0])

    def to_dict(self) -> dict[str, Any]:
        """The fit as JSON values."""
        return {
            "a": self.a,
            "alpha": self.alpha,
            "c": self.c,
            "alpha_low": self.alpha_low,
            "alpha_high": self.alpha_high,
            "confidence": self.confidence,
            "points": self.points,
            "dof": self.dof,
            "rss": self.rss,
            "alpha_at_bound": self.alpha_at_bound,
            "alpha_range": list(self.alpha_range),
            "floor": self.floor,
            "c_at_floor": self.c_at_floor,
        }


def fit_power_law(
    x: Any,
    y: Any,
    *,
    confidence: float = 0.95,
    alpha_range: tuple[float, float] = (1e-3, 3.0),
    floor: float | None = 0.0,
) -> PowerLawFit:
    """Fit L = a·x^(−α) + c to the points (x, y) (x > 0, all finite; at least
    :data:`MIN_POINTS`), α within ``alpha_range``, c ≥ ``floor`` (None: c free). A ValueError
    says what is wrong with the points."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"fit_power_law: {x.size} x values but {y.size} y values")
    if x.size < MIN_POINTS:
        raise ValueError(
            f"fit_power_law: {x.size} point(s); a fit of a, alpha and c with an interval needs at "
            f"least {MIN_POINTS}"
        )
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(x > 0)):
        raise ValueError("fit_power_law: every x must be a positive finite number, every y finite")
    if len(np.unique(x)) < PARAMETERS:
        raise ValueError("fit_power_law: fewer than 3 distinct x values cannot fix a, alpha and c")
    if not 0 < confidence < 1:
        raise ValueError(f"fit_power_law: confidence must be in (0, 1), got {confidence}")
    if floor is not None and not (math.isfinite(floor) and floor < float(np.min(y))):
        raise ValueError(
            f"fit_power_law: floor must be a finite number below the smallest y, got {floor}"
        )
    lo, hi = alpha_range
    if not 0 < lo < hi:
        raise ValueError(f"fit_power_law: alpha_range must be 0 < low < high, got {alpha_range}")

    scale = float(np.exp(np.mean(np.log(x))))
    xs = x / scale
    grid = np.linspace(lo, hi, GRID_POINTS)
    rss = _lines(xs, y, grid, floor)[2]
    best = _refine_minimum(xs, y, grid, int(np.argmin(rss)), floor)
    rss_min = _rss(xs, y, best, floor)
    dof = x.size - PARAMETERS
    quantile = t_quantile((1 + confidence) / 2, dof)
    threshold = rss_min * (1 + quantile**2 / dof)
    low = _profile_edge(xs, y, best, lo, threshold, floor)
    high = _profile_edge(xs, y, best, hi, threshold, floor)
    a, c, _ = _lines(xs, y, np.array([best]), floor)
    if not a[0] > 0:
        # a scaling law falls with x: a ≤ 0 is a flat or rising curve, not that law
        raise ValueError(
            f"fit_power_law: the best curve has a = {float(a[0]):.3g} ≤ 0: the points do not "
            "fall with x, so no law L = a·x^(-alpha) + c with a > 0 describes them"
        )
    return PowerLawFit(
        a=float(a[0]) * scale**best,  # a·(x/s)^(−α) = (a·s^α)·x^(−α)
        alpha=best,
        c=float(c[0]),
        alpha_low=low,
        alpha_high=high,
        confidence=confidence,
        points=int(x.size),
        dof=dof,
        rss=rss_min,
        alpha_at_bound=bool(min(best - lo, hi - best) <= grid[1] - grid[0]),
        alpha_range=(float(lo), float(hi)),
        floor=None if floor is None else float(floor),
        c_at_floor=floor is not None and bool(c[0] <= floor),
        x_scale=scale,
        x=x,
        y=y,
    )


def _lines(
    x: np.ndarray, y: np.ndarray, alphas: np.ndarray, floor: float | None = None
) -> tuple[np.ndarray, ...]:
    """For each α: the least-squares (a, c) of y ≈ a·x^(−α) + c with c ≥ ``floor`` (None: c
    free) and its RSS, in closed form."""
    u = x[None, :] ** -alphas[:, None]  # (A, n)
    u_mean, y_mean = u.mean(axis=1), y.mean()
    du, dy = u - u_mean[:, None], y - y_mean
    suu = np.einsum("an,an->a", du, du)
    suy = du @ dy
    a = suy / suu
    c = y_mean - a * u_mean
    rss = np.maximum(dy @ dy - a * suy, 0.0)
    if floor is not None:
        # below the floor, the best line under the bound has c on it: a line through the origin
        # of (u, y − floor)
        low = c < floor
        z = y - floor
        a_low = (u @ z) / np.einsum("an,an->a", u, u)
        rss_low = np.maximum(z @ z - a_low * (u @ z), 0.0)
        a, c, rss = np.where(low, a_low, a), np.where(low, floor, c), np.where(low, rss_low, rss)
    return a, c, rss


def _rss(x: np.ndarray, y: np.ndarray, alpha: float, floor: float | None = None) -> float:
    return float(_lines(x, y, np.array([alpha]), floor)[2][0])


def _refine_minimum(
    x: np.ndarray, y: np.ndarray, grid: np.ndarray, i: int, floor: float | None
) -> float:
    """Golden-section search for the least RSS between the grid points either side of ``i``."""
    left, right = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        m1, m2 = right - ratio * (right - left), left + ratio * (right - left)
        if _rss(x, y, m1, floor) <= _rss(x, y, m2, floor):
            right = m2
        else:
            left = m1
    return float((left + right) / 2)


def _profile_edge(
    x: np.ndarray, y: np.ndarray, best: float, edge: float, threshold: float, floor: float | None
) -> float | None:
    """Where the profile first rises above ``threshold`` going from ``best`` towards ``edge``
    (bisection between the grid points that bracket it); None if it stays below up to
    ``edge``."""
    path = np.linspace(best, edge, GRID_POINTS // 2)
    above = np.nonzero(_lines(x, y, path, floor)[2] > threshold)[0]
    if above.size == 0:
        return None
    inside, outside = path[above[0] - 1], path[above[0]]
    for _ in range(60):
        middle = (inside + outside) / 2
        if _rss(x, y, middle, floor) > threshold:
            outside = middle
        else:
            inside = middle
    return float((inside + outside) / 2)


# --------------------------------------------------------------------------------------------
# Student's t quantile, from the regularised incomplete beta function
# --------------------------------------------------------------------------------------------


def t_cdf(t: float, dof: int) -> float:
    """P(T ≤ t) for Student's t with ``dof`` degrees of freedom:
    1 − I_{ν/(ν+t²)}(ν/2, 1/2) / 2 for t ≥ 0, by symmetry below."""
    tail = 0.5 * incomplete_beta(dof / 2, 0.5, dof / (dof + t * t))
    return 1 - tail if t >= 0 else tail


def t_quantile(p: float, dof: int) -> float:
    """The t with P(T ≤ t) = p (0 < p < 1), by bisection on :func:`t_cdf`."""
    if not 0 < p < 1 or dof < 1:
        raise ValueError(f"t_quantile: need 0 < p < 1 and dof >= 1, got p={p}, dof={dof}")
    if p < 0.5:
        return -t_quantile(1 - p, dof)
    low, high = 0.0, 1.0
    while t_cdf(high, dof) < p:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        if t_cdf(middle, dof) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta I_x(a, b), by its continued fraction (evaluated with the
    modified Lentz method) on the side of x where it converges fast."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1 - math.exp(log_front) * _beta_fraction(b, a, 1 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction 1 / (1 + d1 / (1 + d2 / (1 + …))) of I_x(a, b), where
    d(2m+1) = −(a+m)(a+b+m)x / ((a+2m)(a+2m+1)) and d(2m) = m(b−m)x / ((a+2m−1)(a+2m))."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return result
