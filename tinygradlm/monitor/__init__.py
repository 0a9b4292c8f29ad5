"""Watching a training run: a metrics file, timing and MFU, a progress line, and plots.

- :mod:`.metrics`: ``MetricsLogger`` writes ``run_dir/metrics.jsonl`` (train, val and event
  records; on resume the crashed tail is dropped), ``read_metrics`` reads it back.
- :mod:`.timing`: ``StepTimer`` (seconds per section of a step), ``measure_gemm_peak`` (this
  machine's float32 GEMM rate, MFU's denominator, logged as a ``gemm_peak`` event), ``mfu`` and
  ``MfuMeter`` (MFU that a disturbed probe cannot push above 100%).
- :mod:`.compilation`: ``announce_compilation``, one line when Numba compiles the kernels (a
  fresh checkout's first run), none when they load from its on-disk cache.
- :mod:`.trace`: ``ChromeTrace``, a per-rank timeline of the step sections.
- :mod:`.progress`: ``ProgressLine``, ``step 120/2000 | loss 3.412 | … | eta 4m12s``.
- :mod:`.plots`: ``plot_run`` (a run's curves) and ``plot_report`` (a corpus report's
  histograms); matplotlib, an optional extra, is imported there only, when a plot is drawn.

Every definition (what tokens/s counts, MFU's denominator, the file format) is in
docs/monitoring.md.
"""

from .compilation import announce_compilation
from .metrics import METRICS_FILE, MetricsLogger, read_metrics
from .plots import PLOT_FILES, plot_report, plot_run
from .progress import ProgressLine, format_duration
from .timing import (
    TIME_SECTIONS,
    GemmPeak,
    MfuMeter,
    StepTimer,
    measure_gemm_peak,
    mfu,
)
from .trace import ChromeTrace

__all__ = [
    "METRICS_FILE",
    "PLOT_FILES",
    "TIME_SECTIONS",
    "ChromeTrace",
    "GemmPeak",
    "MetricsLogger",
    "MfuMeter",
    "ProgressLine",
    "StepTimer",
    "announce_compilation",
    "format_duration",
    "measure_gemm_peak",
    "mfu",
    "plot_report",
    "plot_run",
    "read_metrics",
]
