"""Sweeps: a grid of training runs over a few axes (depth, residual connections, where the
layer norms sit), each an ordinary run folder, and the power laws fitted to their losses.

    config.py   the sweep config: [base] (a train config), [grid], [sweep]; the grid's points
    presets.py  the named sweeps: ``depth`` and ``depth-cluster``
    fit.py      L(x) = a·x^(−α) + c with a profile confidence interval for α (NumPy alone)
    run.py      running the grid (resumable; over MPI ranks), sweep.json
    plots.py    the figures next to sweep.json

See docs/scaling.md.
"""

from .config import Sweep, SweepPoint, SweepSettings, load_sweep, run_name
from .fit import PowerLawFit, fit_power_law
from .plots import plot_sweep
from .presets import SWEEP_PRESETS
from .run import run_sweep, summary_lines, write_sweep

__all__ = [
    "SWEEP_PRESETS",
    "PowerLawFit",
    "Sweep",
    "SweepPoint",
    "SweepSettings",
    "fit_power_law",
    "load_sweep",
    "plot_sweep",
    "run_name",
    "run_sweep",
    "summary_lines",
    "write_sweep",
]
