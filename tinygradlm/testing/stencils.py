"""Finite differences that come with an error estimate: Richardson extrapolation of central
differences, and the random directions the projections use.

A central difference with step h has the expansion

    D(h) = (φ(x + h·d) − φ(x − h·d)) / 2h = φ'(x; d) + c₂·h² + c₄·h⁴ + …   (truncation)
                                             + (ρ₊ − ρ₋) / 2h                 (rounding)

where ρ± are the rounding errors of the two evaluations. Richardson's tableau removes the h²
term: from D(h) and D(2h), (4·D(h) − D(2h))/3 is accurate to O(h⁴); from three steps h, 2h, 4h
one more level gives O(h⁶). The difference between the two best estimates one level down bounds
the error of the best one (it is about (4ᵏ − 1) times that level's leading error term), so the
tableau measures its own truncation error. Rounding is bounded separately: an evaluation of
φ = Σ v_k·f_k carries an error of at most about ε·Σ|v_k·f_k| (ε the unit roundoff of the dtype
``f`` computes in), which the tableau's coefficients amplify by a known factor; a margin
(:data:`ROUNDING_MARGIN`) covers cancellation inside ``f``.

The steps are powers of two and the directions have entries k/1024 (k in 512..1024, either
sign): x ± h·d is then exact in float64 for every |x| < 2⁴⁰·h, so the step taken is the step
meant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ROUNDING_MARGIN = 64.0  # how much worse than one ulp per term the evaluation of φ may round
DIRECTION_LEVELS = 1024  # entries of a direction are ±k/1024, k in 512..1024


@dataclass(frozen=True)
class Estimate:
    """A derivative estimated by extrapolation, one entry per output: ``value`` and a bound on
    ``|value − true derivative|`` (``truncation`` measured by the tableau plus ``rounding``)."""

    value: np.ndarray
    truncation: np.ndarray
    rounding: np.ndarray

    @property
    def error(self) -> np.ndarray:
        return self.truncation + self.rounding


def power_of_two_step(step: float) -> float:
    """The power of two nearest to ``step`` (from below): exact in every float format."""
    return float(2.0 ** np.floor(np.log2(step)))


def random_signs_and_weights(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Entries ±k/1024 with k uniform in 512..1024 and a random sign: every element gets a weight
    of at least 1/2 (so one wrong element always moves a projection), and each weight has eleven
    significant bits (so x + h·d is exact for a power-of-two h)."""
    k = rng.integers(DIRECTION_LEVELS // 2, DIRECTION_LEVELS + 1, size=shape)
    return rng.choice([-1.0, 1.0], size=shape) * k / DIRECTION_LEVELS


def extrapolated_derivative(
    phi: Callable[[float], tuple[np.ndarray, np.ndarray]],
    step: float,
    levels: int,
    unit_roundoff: float,
) -> Estimate:
    """Richardson's tableau of central differences of ``phi`` with steps step·2^m, m < levels.

    ``phi(t)`` evaluates the function at x + t·d and returns (values, magnitudes), one entry per
    output: the magnitudes Σ|v_k·f_k| bound the rounding error of the values. ``levels`` ≥ 2.
    """
    if levels < 2:
        raise ValueError(f"Richardson's tableau needs at least 2 levels, got {levels}")
    diffs, noise = [], []
    for m in range(levels):
        h = step * 2.0**m
        (plus, mag_plus), (minus, mag_minus) = phi(h), phi(-h)
        with np.errstate(invalid="ignore"):
            diffs.append((plus - minus) / (2.0 * h))
        noise.append(ROUNDING_MARGIN * unit_roundoff * (mag_plus + mag_minus) / (2.0 * h))
    for k in range(1, levels):
        weight = 4.0**k
        previous, previous_noise = diffs, noise
        diffs = [
            (weight * previous[m] - previous[m + 1]) / (weight - 1.0)
            for m in range(len(previous) - 1)
        ]
        noise = [
            (weight * previous_noise[m] + previous_noise[m + 1]) / (weight - 1.0)
            for m in range(len(previous_noise) - 1)
        ]
    # the two estimates one level below the last differ by about (4ᵏ − 1) times their own
    # error, which bounds the error of their extrapolation (the last level) with room to spare
    with np.errstate(invalid="ignore"):
        truncation = np.abs(previous[0] - previous[1])
    return Estimate(value=diffs[0], truncation=truncation, rounding=noise[0])
