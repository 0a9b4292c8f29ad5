"""Where a step's time goes, and how it compares with what the machine can do.

    StepTimer           seconds per section of a step (data, fwd_bwd, optim, comm)
    measure_gemm_peak   this machine's float32 GEMM rate at the model's shapes, with the shapes,
                        thread count and rounds it was measured with (a GemmPeak): MFU's
                        denominator
    mfu                 achieved FLOP/s as a fraction of that rate
    MfuMeter            MFU that never exceeds 1: a step faster than the peak revises the peak

The definitions (what tokens/s counts, why the peak is measured rather than a datasheet's) are
in docs/monitoring.md.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..machine import blas_kernel
from .metrics import is_count

if TYPE_CHECKING:
    from .trace import ChromeTrace

# the sections of a step's time split, always present in a train record (comm is 0 on one rank)
TIME_SECTIONS = ("data", "fwd_bwd", "optim", "comm")


class StepTimer:
    """Seconds spent in each named section of a step::

        timer = StepTimer()
        with timer("data"):
            x, y = loader.next_batch()
        with timer("fwd_bwd"):
            loss, _ = model.forward_backward(x, y)
        timer.split()  # {"data": 0.004, "fwd_bwd": 0.35, "optim": 0.0, "comm": 0.0}
        timer.reset()  # at the start of the next step

    A section entered several times in a step accumulates. Sections may nest: the time of an
    inner section is counted in the inner one only, so the sections never count a second twice
    and their sum is at most :meth:`elapsed`. ``sections`` are the names ``split`` always
    reports (0.0 when not entered), others are added as they are entered.
    """

    def __init__(
        self,
        sections: Sequence[str] = TIME_SECTIONS,
        *,
        clock: Any = time.perf_counter,
        trace: ChromeTrace | None = None,
    ) -> None:
        self._names = tuple(sections)
        self._clock = clock
        self.trace = trace  # when set, every section is also recorded as a timeline event
        self.reset()

    def reset(self) -> None:
        """Zero every section and restart :meth:`elapsed`."""
        self._seconds = dict.fromkeys(self._names, 0.0)
        self._inner: list[float] = []  # per open section: seconds spent in its inner sections
        self._started = self._clock()

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = self._clock()
        self._inner.append(0.0)
        try:
            yield
        finally:
            seconds = self._clock() - start
            if self.trace is not None:
                self.trace.add(name, start, seconds)
            inner = self._inner.pop()
            self._seconds[name] = self._seconds.get(name, 0.0) + seconds - inner
            if self._inner:
                self._inner[-1] += seconds

    def split(self) -> dict[str, float]:
        """Seconds per section since the last reset."""
        return dict(self._seconds)

    def elapsed(self) -> float:
        """Wall seconds since the last reset, inside sections or not."""
        return self._clock() - self._started


def mfu(flops_per_step: float, seconds: float, peak_flops: float) -> float:
    """Model FLOPs utilization: ``flops_per_step / seconds`` as a fraction of ``peak_flops``.

    ``flops_per_step`` is ``GPT.flops_per_token(T) · B · T`` (summed over ranks for the whole
    job's rate), ``peak_flops`` a rate in FLOP/s. Here the peak is this machine's measured
    float32 GEMM rate (:func:`measure_gemm_peak`), not a datasheet figure.
    """
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"mfu: seconds must be finite and > 0, got {seconds!r}")
    if not (peak_flops > 0 and math.isfinite(peak_flops)):
        raise ValueError(f"mfu: peak_flops must be finite and > 0, got {peak_flops!r}")
    return flops_per_step / seconds / peak_flops


# Caps on a timed GEMM's rows and on the LM head's columns. Past them the rate hardly changes
# (on a 2-core machine, 768×50304 and 768×3072 both reached ~330 GFLOP/s at 2048 rows, as at
# 8192, while 128 rows gave 10-35% less), and they keep the measurement of GPT-2 124M (B·T = 8192,
# Vp = 50304) near half a second and ~50 MB instead of seconds and ~2 GB.
_MAX_GEMM_ROWS = 2048
_MAX_GEMM_COLUMNS_PER_C = 8
# Rounds of the timed GEMMs: each shape's best round counts, so one round slowed by another
# process costs nothing as long as one round of each shape ran undisturbed.
_MIN_GEMM_ROUNDS = 3
_MAX_GEMM_ROUNDS = 20
# environment variables that set NumPy's BLAS thread count, in the order BLAS libraries read them
_BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


@dataclass(frozen=True)
class GemmPeak:
    """A measured float32 GEMM rate and how it was measured, as the ``gemm_peak`` event logs it.

    ``flops`` is the rate in FLOP/s, ``shapes`` the timed products as ``[rows, k, n]``,
    ``threads`` the BLAS thread count (``threads_from`` names where it came from: an environment
    variable, or ``cpu_count``), ``rounds`` the rounds timed and ``seconds`` the wall time of
    the measurement, warm-up included. ``kernel`` names OpenBLAS's matrix-product kernels and
    ``kernel_from`` why those (``chosen for this CPU``, or ``OPENBLAS_CORETYPE`` when the
    environment names them: older kernels than the CPU's can halve the rate), both None when
    NumPy's BLAS is not an OpenBLAS that can be asked.
    """

    flops: float
    shapes: tuple[tuple[int, int, int], ...]
    threads: int
    threads_from: str
    rounds: int
    seconds: float
    kernel: str | None = None
    kernel_from: str | None = None

    def event_fields(self) -> dict[str, Any]:
        """The fields of the ``gemm_peak`` event (beside ``step``, ``event``, ``message``)."""
        return {
            "flops": self.flops,
            "shapes": [list(shape) for shape in self.shapes],
            "threads": self.threads,
            "threads_from": self.threads_from,
            "rounds": self.rounds,
            "seconds": self.seconds,
            "kernel": self.kernel,
            "kernel_from": self.kernel_from,
        }

    def describe(self) -> str:
        """``GEMM peak 331.2 GFLOP/s: best of 20 rounds of 4 matmul shapes on 2 threads
        (OMP_NUM_THREADS), OpenBLAS SkylakeX kernels (chosen for this CPU), 0.48 s``: the line
        a run prints; the shapes are in the event."""
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        kernel = f"OpenBLAS {self.kernel} kernels ({self.kernel_from}), " if self.kernel else ""
        return (
            f"GEMM peak {self.flops / 1e9:.1f} GFLOP/s: best of {self.rounds} rounds of "
            f"{len(self.shapes)} matmul shapes on {threads} ({self.threads_from}), {kernel}"
            f"{self.seconds:.2f} s"
        )


def blas_threads() -> tuple[int, str]:
    """(threads, where the number came from): the first of OPENBLAS_NUM_THREADS,
    MKL_NUM_THREADS, OMP_NUM_THREADS that is a positive integer, else the CPU count."""
    for name in _BLAS_THREAD_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value), name
    return os.cpu_count() or 1, "cpu_count"


def measure_gemm_peak(
    n_embd: int, rows: int, *, vocab_size: int | None = None, max_seconds: float = 0.5
) -> GemmPeak:
    """This machine's float32 GEMM rate at the model's matmul shapes, and how it was measured.

    Times ``(rows, C) @ (C, 3C)``, ``(C, 4C)``, ``(4C, C)`` and, with ``vocab_size`` (the padded
    Vp), ``(C, Vp)``: the projections of a GPT-2 block and its LM head, with ``rows`` = B·T
    (at most 2048 rows, and at most 8C columns for the LM head). Each shape is warmed up once,
    then timed in rounds: at least 3, and then more (at most 20) while another fits in
    ``max_seconds`` (counted from the call, warm-up included). The rate is total FLOPs over the
    sum of each shape's best time, so a round slowed by another process does not count. Call it
    once at the start of training, after setting the thread count: the result is cached per
    process and arguments.
    """
    for name, value in (("n_embd", n_embd), ("rows", rows), ("vocab_size", vocab_size or 1)):
        if not is_count(value) or value < 1:
            raise ValueError(f"measure_gemm_peak: {name} must be an integer >= 1, got {value!r}")
    return _measure_gemm_peak(
        int(n_embd),
        int(rows),
        None if vocab_size is None else int(vocab_size),
        float(max_seconds),
        blas_threads(),
    )


@functools.cache
def _measure_gemm_peak(
    C: int, rows: int, vocab_size: int | None, max_seconds: float, threads: tuple[int, str]
) -> GemmPeak:
    shapes = [(C, 3 * C), (C, 4 * C), (4 * C, C)]
    if vocab_size is not None:
        shapes.append((C, min(vocab_size, _MAX_GEMM_COLUMNS_PER_C * C)))
    started = time.perf_counter()
    r = min(rows, _MAX_GEMM_ROWS)
    rng = np.random.default_rng(0)
    operands = []
    for k, n in shapes:
        a = rng.random((r, k), dtype=np.float32)
        b = rng.random((k, n), dtype=np.float32)
        out = np.empty((r, n), dtype=np.float32)
        np.matmul(a, b, out=out)  # warm-up: page faults, BLAS thread start
        operands.append((a, b, out))
    best = [math.inf] * len(operands)
    rounds = 0
    while rounds < _MAX_GEMM_ROUNDS:
        round_start = time.perf_counter()
        for i, (a, b, out) in enumerate(operands):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            best[i] = min(best[i], time.perf_counter() - start)
        rounds += 1
        now = time.perf_counter()
        if rounds >= _MIN_GEMM_ROUNDS and now + (now - round_start) > started + max_seconds:
            break
    flops = sum(2 * r * k * n for k, n in shapes)
    kernel = blas_kernel()
    return GemmPeak(
        flops=flops / sum(best),
        shapes=tuple((r, k, n) for k, n in shapes),
        threads=threads[0],
        threads_from=threads[1],
        rounds=rounds,
        seconds=time.perf_counter() - started,
        kernel=kernel[0] if kernel else None,
        kernel_from=kernel[1] if kernel else None,
    )


class MfuMeter:
    """MFU against a measured peak, never above 1: a step faster than the peak raises it.

    A step cannot run its matmuls faster than the machine's GEMM rate, so a step whose FLOP
    rate exceeds the peak shows that the probe ran slow (another process took the cores while
    it was timed). The meter then takes the step's rate as the peak, and reports the revision
    for a ``peak_revised`` event::

        meter = MfuMeter(peak.flops * world_size)
        utilization, revision = meter(flops_per_step, seconds)   # revision: None, or fields
    """

    def __init__(self, peak_flops: float) -> None:
        if not (peak_flops > 0 and math.isfinite(peak_flops)):
            raise ValueError(f"MfuMeter: peak_flops must be finite and > 0, got {peak_flops!r}")
        self.peak_flops = float(peak_flops)

    def __call__(self, flops_per_step: float, seconds: float) -> tuple[float, dict | None]:
        """(MFU of this step, the ``peak_revised`` event's fields or None)."""
        rate = flops_per_step / seconds if seconds > 0 else math.inf
        revision = None
        if math.isfinite(rate) and rate > self.peak_flops:
            revision = {
                "message": (
                    f"step ran at {rate / 1e9:.1f} GFLOP/s, above the measured GEMM peak of "
                    f"{self.peak_flops / 1e9:.1f} GFLOP/s: the probe was disturbed; the peak "
                    "is now the step's rate"
                ),
                "flops": rate,
                "previous_flops": self.peak_flops,
            }
            self.peak_flops = rate
        return mfu(flops_per_step, seconds, self.peak_flops), revision
