"""What a gradient check found, in a form that reads well as a pytest failure message.

A check compares, for every (input, output) pair, the analytic Jacobian (from a backward pass)
with the numeric one (from finite differences). An entry passes when

    |analytic − numeric| ≤ atol + rtol·|numeric|            (numpy.allclose's rule)

and an input element passes when all its entries for that output pass. The report names the
input element with the worst entry (as an index into the input's shape), because that is where
a person starts reading their backward.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["GradcheckError", "GradcheckResult", "Kink", "PairResult"]

MAX_LISTED = 8  # failing indices and kinks shown per pair; the counts are always complete


@dataclass(frozen=True)
class Kink:
    """A Jacobian entry where the one-sided differences disagree: the function is not
    differentiable there (relu or abs at 0, a tie in max), so any value between ``left`` and
    ``right`` is a valid subgradient."""

    index: tuple[int, ...]  # into the input's shape
    output_index: tuple[int, ...]  # into the output's shape
    analytic: float
    left: float  # (f(x) − f(x − h)) / h
    right: float  # (f(x + h) − f(x)) / h

    def __str__(self) -> str:
        where = _where(self.index, self.output_index)
        return (
            f"{where}: analytic {self.analytic:.6e}, left {self.left:.6e}, right {self.right:.6e}"
        )


@dataclass
class PairResult:
    """The comparison for one (input, output) pair.

    In full mode ``n_elements`` counts the input's elements and ``n_failed`` those with at least
    one Jacobian entry over tolerance (accepted kinks excluded); in vjp and tight mode the same
    for the one row vᵀJ. In fast mode K numbers, the projections vᵀJu, are compared, so
    ``n_elements`` is K, ``n_failed`` counts the projections over tolerance and there is no worst
    index.
    """

    input_index: int
    output_index: int
    input_shape: tuple[int, ...]
    input_dtype: str
    output_shape: tuple[int, ...]
    mode: str  # "full", "fast", "vjp" or "tight"
    n_elements: int
    n_failed: int
    max_abs_err: float
    max_rel_err: float  # |a − n| / max(|a|, |n|), in [0, 2]
    worst_index: tuple[int, ...] | None = None  # into the input's shape
    worst_output_index: tuple[int, ...] | None = None  # into the output's shape
    worst_analytic: float = float("nan")
    worst_numeric: float = float("nan")
    failed_indices: list[tuple[int, ...]] = field(default_factory=list)
    kinks: list[Kink] = field(default_factory=list)  # accepted (check_kinks=True)
    n_kink_like_failures: int = 0  # failing elements whose one-sided differences disagree
    kinks_checked: bool = False  # whether check_kinks was on
    # the smallest error in one element of the gradient vᵀJ that the check was sure to see (the
    # tolerance it follows from: the finite-difference error estimate, or atol/rtol), and the
    # largest |element| of vᵀJ, to put it in proportion; None where not measured
    threshold: float | None = None
    gradient_scale: float | None = None
    # tied kinks whose gradients together are no subgradient (check_kinks): one line each
    subgradient_failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.n_failed == 0

    def summary(self) -> str:
        """The pair's header line: which input feeds which output."""
        return (
            f"input {self.input_index} (shape {self.input_shape}, {self.input_dtype}) -> "
            f"output {self.output_index} (shape {self.output_shape})"
        )

    def threshold_line(self) -> str | None:
        """How small an error the check could see, or None where that was not measured."""
        if self.threshold is None:
            return None
        line = f"sure to see an error above {self.threshold:.1e} in any one element of vᵀJ"
        if self.gradient_scale:
            line += f" ({self.threshold / self.gradient_scale:.1e} of its largest element)"
        return line

    def details(self) -> list[str]:
        """The indented lines that follow the header in a report."""
        if self.mode == "fast":
            verdict = f"{self.n_failed} over tolerance" if self.n_failed else "all within tolerance"
            lines = [
                f"{self.n_elements} random projection(s) vᵀJu, {verdict}; worst: analytic "
                f"{self.worst_analytic:.6e}, numeric {self.worst_numeric:.6e}, "
                f"abs err {self.max_abs_err:.1e}"
            ]
            return [*lines, *filter(None, [self.threshold_line()])]
        lines = [
            f"{self.n_failed} of {self.n_elements} elements over tolerance; "
            f"max abs err {self.max_abs_err:.1e}, max rel err {self.max_rel_err:.1e}"
        ]
        if self.n_failed:
            lines.append(
                f"worst at {_where(self.worst_index, self.worst_output_index)}: "
                f"analytic {self.worst_analytic:.6e}, numeric {self.worst_numeric:.6e}"
            )
            shown = ", ".join(str(i) for i in self.failed_indices[:MAX_LISTED])
            more = " ..." if len(self.failed_indices) > MAX_LISTED else ""
            lines.append(f"over tolerance at index {shown}{more}")
        if self.n_kink_like_failures and self.kinks_checked:
            lines.append(
                f"{self.n_kink_like_failures} of the failing elements are at kinks, but the "
                "analytic value is not between the left and right differences"
            )
        elif self.n_kink_like_failures:
            lines.append(
                f"{self.n_kink_like_failures} of the failing elements look like kinks (left and "
                "right differences disagree);"
            )
            lines.append("check_kinks=True accepts subgradients there")
        lines += self.subgradient_failures
        if self.kinks:
            lines.append(f"{len(self.kinks)} kink(s) accepted (analytic between left and right):")
            lines += [f"  {k}" for k in self.kinks[:MAX_LISTED]]
            if len(self.kinks) > MAX_LISTED:
                lines.append("  ...")
        return [*lines, *filter(None, [self.threshold_line()])]


@dataclass
class GradcheckResult:
    """Everything a gradient check found. Truthy when the check passed.

    ``pairs`` holds one :class:`PairResult` per (input, output) pair; ``problems`` holds failures
    that are not about values (a grad of the wrong shape, a backward that modified its arguments);
    ``notes`` holds remarks that do not fail the check (looser float32 tolerances, a fast check
    that was redone in full).
    """

    checker: str  # "gradcheck" or "check_vjp"
    mode: str  # what produced ``pairs``: "full", "fast", "vjp" (a given cotangent); "none"
    eps: float
    atol: float
    rtol: float
    pairs: list[PairResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(p.ok for p in self.pairs)

    def __bool__(self) -> bool:
        return self.ok

    @property
    def failed_pairs(self) -> list[PairResult]:
        return [p for p in self.pairs if not p.ok]

    def pair(self, input_index: int, output_index: int = 0) -> PairResult:
        """The result for one (input, output) pair."""
        for p in self.pairs:
            if p.input_index == input_index and p.output_index == output_index:
                return p
        raise KeyError(f"no result for input {input_index} -> output {output_index}")

    def __str__(self) -> str:
        verdict = "passed" if self.ok else "failed"
        if self.mode == "tight":
            extra = f" + atol={self.atol:g} + rtol={self.rtol:g}" if self.atol or self.rtol else ""
            settings = f"step={self.eps:g}, tolerance: the finite-difference error estimate{extra}"
        else:
            settings = f"eps={self.eps:g}, atol={self.atol:g}, rtol={self.rtol:g}"
        lines = [f"{self.checker} {verdict} (mode={self.mode}, {settings})"]
        lines += [f"  {problem}" for problem in self.problems]
        shown = [p for p in self.pairs if not p.ok or p.kinks or p.n_kink_like_failures]
        for p in shown:
            lines.append(f"  {p.summary()}:")
            lines += [f"    {line}" for line in p.details()]
        n_quiet = len(self.pairs) - len(shown)
        if n_quiet:
            quiet = [p for p in self.pairs if p not in shown]
            worst = max(p.max_abs_err for p in quiet)
            others = "other " if shown else ""
            thresholds = [p.threshold for p in quiet if p.threshold is not None]
            seen = f"; sure to see errors above {max(thresholds):.1e}" if thresholds else ""
            lines.append(
                f"  {n_quiet} {others}input/output pair(s) within tolerance "
                f"(max abs err {worst:.1e}{seen})"
            )
            if self.mode == "tight":  # the point of tight mode: how small, pair by pair
                lines += [
                    f"    input {p.input_index} -> output {p.output_index}: {p.threshold_line()}"
                    for p in quiet
                    if p.threshold is not None
                ]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


class GradcheckError(AssertionError):
    """Raised by a failing check; ``.result`` is the :class:`GradcheckResult`."""

    def __init__(self, result: GradcheckResult):
        super().__init__(str(result))
        self.result = result


def _where(index: tuple[int, ...] | None, output_index: tuple[int, ...] | None) -> str:
    if output_index:  # () for a scalar output: nothing to add
        return f"index {index} (output element {output_index})"
    return f"index {index}"


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> np.ndarray:
    """|a − n| / max(|a|, |n|): symmetric, in [0, 2], 0 where both are 0, NaN where either is."""
    scale = np.maximum(np.abs(analytic), np.abs(numeric))
    diff = np.abs(analytic - numeric)
    return np.divide(diff, scale, out=np.zeros_like(diff), where=scale != 0)


def compare_jacobians(
    analytic: np.ndarray,
    numeric: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    *,
    input_index: int,
    output_index: int,
    input_shape: tuple[int, ...],
    input_dtype: str,
    output_shape: tuple[int, ...],
    atol: float,
    rtol: float,
    check_kinks: bool,
    allowed: np.ndarray | None = None,
) -> PairResult:
    """Compare two (out.size, in.size) Jacobians entry by entry and summarise for one pair.

    An entry passes when |analytic − numeric| ≤ ``allowed`` (by default atol + rtol·|numeric|;
    tight mode passes its error estimates). An entry is at a kink when its one-sided
    differences disagree by more than the tolerance.
    With ``check_kinks`` a kink whose analytic value lies between left and right (within
    tolerance) is accepted and listed, whether or not it matches the central difference; a kink
    outside that interval still fails, since no subgradient has that value.
    """
    if allowed is None:
        allowed = atol + rtol * np.abs(numeric)
    abs_err = np.abs(analytic - numeric)
    over = ~(abs_err <= allowed)  # NaN counts as over
    one_sided_gap = np.abs(right - left)
    kink = one_sided_gap > atol + rtol * np.maximum(np.abs(left), np.abs(right))
    low = np.minimum(left, right) - allowed
    high = np.maximum(left, right) + allowed
    between = (analytic >= low) & (analytic <= high)
    accepted = kink & between if check_kinks else np.zeros_like(kink)
    failing = over & ~accepted
    scored = ~accepted

    def unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(int(i) for i in np.unravel_index(flat, shape))

    failed_columns = np.flatnonzero(failing.any(axis=0))
    result = PairResult(
        input_index=input_index,
        output_index=output_index,
        input_shape=input_shape,
        input_dtype=input_dtype,
        output_shape=output_shape,
        mode="full",
        n_elements=int(np.prod(input_shape)),
        n_failed=len(failed_columns),
        max_abs_err=float(np.max(abs_err, where=scored, initial=0.0)),
        max_rel_err=float(np.max(relative_error(analytic, numeric), where=scored, initial=0.0)),
        failed_indices=[unravel(j, input_shape) for j in failed_columns],
        n_kink_like_failures=int(np.count_nonzero((kink & failing).any(axis=0))),
        kinks_checked=check_kinks,
    )
    if failing.any():
        # The worst entry is the one furthest over its own tolerance (NaN is worst of all).
        excess = np.where(failing, abs_err / allowed, -np.inf)
        excess = np.where(np.isnan(excess), np.inf, excess)
        k, j = np.unravel_index(int(np.argmax(excess)), excess.shape)
        result.worst_index = unravel(j, input_shape)
        result.worst_output_index = unravel(k, output_shape)
        result.worst_analytic = float(analytic[k, j])
        result.worst_numeric = float(numeric[k, j])
    for k, j in zip(*np.nonzero(accepted), strict=True):
        result.kinks.append(
            Kink(
                index=unravel(j, input_shape),
                output_index=unravel(k, output_shape),
                analytic=float(analytic[k, j]),
                left=float(left[k, j]),
                right=float(right[k, j]),
            )
        )
    return result


def compare_projections(
    analytic: np.ndarray,
    numeric: np.ndarray,
    allowed: np.ndarray,
    *,
    input_index: int,
    output_index: int,
    input_shape: tuple[int, ...],
    input_dtype: str,
    output_shape: tuple[int, ...],
) -> PairResult:
    """Compare K projections vᵀJ_analytic·u against vᵀJ_numeric·u, each with its own allowed
    error (fast mode): ``n_elements`` counts the projections, ``n_failed`` those over."""
    abs_err = np.abs(analytic - numeric)
    failing = ~(abs_err <= allowed)  # NaN counts as over
    excess = np.where(np.isnan(abs_err), np.inf, abs_err / np.maximum(allowed, 1e-300))
    worst = int(np.argmax(excess))
    return PairResult(
        input_index=input_index,
        output_index=output_index,
        input_shape=input_shape,
        input_dtype=input_dtype,
        output_shape=output_shape,
        mode="fast",
        n_elements=len(analytic),
        n_failed=int(np.count_nonzero(failing)),
        max_abs_err=float(np.max(abs_err, initial=0.0)),
        max_rel_err=float(np.max(relative_error(analytic, numeric), initial=0.0)),
        worst_analytic=float(analytic[worst]),
        worst_numeric=float(numeric[worst]),
    )
