"""Plots: the curves of a training run, and the make-up of a prepared corpus.

    plot_run      loss, learning rate, gradient norm and throughput of a run (its metrics.jsonl)
    plot_report   document lengths, scripts and mixture shares of a corpus (its report.json)

Both need matplotlib, an optional extra (``pip install 'tinygradlm[plot]'``), imported here
only, when a plot is drawn; both draw on the Agg canvas directly: no display, and no change to
pyplot's backend. Both take what was written to disk (records, a report dict), so plotting
depends on no part of the project that produced them.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomic
from ..errors import MetricsError
from .metrics import is_count, metrics_path, read_metrics

PLOT_FILES = ("loss.png", "lr.png", "grad_norm.png", "throughput.png")


def plot_run(
    run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> list[Path]:
    """PNG curves of the run in ``run_dir`` (its metrics.jsonl), written to ``out`` (default:
    the run directory); returns the paths written.

    loss.png        train loss (and a smoothed curve) with validation loss on the same axes;
                    rollbacks as dashed lines, skipped steps as red marks on the step axis
    lr.png          the learning rate applied
    grad_norm.png   the gradient norm before clipping (log scale)
    throughput.png  tokens/s, and MFU on a panel below when the run measured it (steps that
                    revised the GEMM peak as dashed lines)
    layers.png      with per-layer diagnostics ("layers" records): each layer's gradient norm
                    against the step, and the residual stream's RMS against depth

    A curve with no finite values is not written. Records a rollback abandoned (steps redone
    after it) are drawn faint grey. Needs matplotlib: ``pip install 'tinygradlm[plot]'``.
    Draws with the Agg canvas directly: no display, and no change to pyplot's backend.
    """
    Figure, FigureCanvasAgg = _matplotlib("plot_run")

    path = metrics_path(run_dir)
    records = [r for r in read_metrics(path) if is_count(r.get("step"))]
    out_dir = Path(out) if out is not None else path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    abandoned = _abandoned(records)
    train = [(r, a) for r, a in zip(records, abandoned, strict=True) if r["kind"] == "train"]
    val = [(r, a) for r, a in zip(records, abandoned, strict=True) if r["kind"] == "val"]
    if not train and not val:
        raise MetricsError(f"{path}: no train or val records to plot")
    events = [r for r in records if r["kind"] == "event"]
    rollbacks = sorted({r["step"] for r in events if r.get("event") == "rollback"})
    skipped = sorted(
        {r["step"] for r in events if r.get("event") == "skip"}
        | {r["step"] for r, _ in train if not _all_finite(r.get("loss"), r.get("grad_norm"))}
    )
    figures = _RunFigures(Figure, FigureCanvasAgg, path.parent.resolve().name, out_dir)
    _plot_loss(figures, train, val, rollbacks, skipped)
    for field, name, ylabel, log_scale in (
        ("lr", "lr.png", "learning rate", False),
        ("grad_norm", "grad_norm.png", "gradient norm (before clipping)", True),
    ):
        series = _series(train, field)
        if _has_finite(series):
            fig, ax = figures.new(ylabel)
            _draw(ax, series, "C0", None, 1)
            if log_scale and np.all(series[1][np.isfinite(series[1])] > 0):
                ax.set_yscale("log")
            figures.save(fig, name)
    revisions = sorted({r["step"] for r in events if r.get("event") == "peak_revised"})
    _plot_throughput(figures, train, revisions)
    _plot_layers(figures, [r for r in records if r["kind"] == "layers"])
    return figures.written


class _RunFigures:
    """The figures of one run: the same size, step axis, title and grid, saved into one
    directory, in the order they were written."""

    def __init__(self, figure_class: Any, canvas_class: Any, title: str, out_dir: Path) -> None:
        self._figure_class, self._canvas_class = figure_class, canvas_class
        self.title, self.out_dir = title, out_dir
        self.written: list[Path] = []

    def new(self, ylabel: str) -> tuple[Any, Any]:
        fig = self._figure_class(figsize=(8, 4.5), dpi=110, layout="constrained")
        self._canvas_class(fig)
        ax = fig.add_subplot()
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(self.title)
        ax.grid(alpha=0.3)
        return fig, ax

    def new_panels(self, ylabels: Sequence[str]) -> tuple[Any, list[Any]]:
        """A figure of one panel per label, stacked, sharing the step axis."""
        fig = self._figure_class(figsize=(8, 2 + 2.5 * len(ylabels)), dpi=110, layout="constrained")
        self._canvas_class(fig)
        axes = list(fig.subplots(len(ylabels), 1, sharex=True, squeeze=False)[:, 0])
        for ax, ylabel in zip(axes, ylabels, strict=True):
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
        axes[0].set_title(self.title)
        axes[-1].set_xlabel("step")
        return fig, axes

    def new_grid(self, n: int) -> tuple[Any, list[Any]]:
        """A figure of ``n`` stacked panels, each with its own axes and labels."""
        fig = self._figure_class(figsize=(8, 2 + 2.5 * n), dpi=110, layout="constrained")
        self._canvas_class(fig)
        axes = list(fig.subplots(n, 1, squeeze=False)[:, 0])
        for ax in axes:
            ax.grid(alpha=0.3)
        axes[0].set_title(self.title)
        return fig, axes

    def save(self, fig: Any, name: str) -> None:
        target = self.out_dir / name
        save_png(fig, target)
        self.written.append(target)


def _plot_loss(
    figures: _RunFigures,
    train: Sequence[tuple[Mapping[str, Any], bool]],
    val: Sequence[tuple[Mapping[str, Any], bool]],
    rollbacks: Sequence[int],
    skipped: Sequence[int],
) -> None:
    """loss.png: train loss (smoothed when long) and validation loss on the same axes,
    rollbacks as dashed lines, skipped steps as red marks on the step axis."""
    train_loss = _series(train, "loss")
    val_loss = _series(val, "loss")
    if not (_has_finite(train_loss) or _has_finite(val_loss)):
        return
    fig, ax = figures.new("loss (nats per token)")
    if _has_finite(train_loss):
        steps, values, faint = train_loss
        if len(steps) < 100:
            _draw(ax, train_loss, "C0", "train", 1)
        else:  # raw and faint, with a smoothed curve over it
            _draw(ax, train_loss, "C0", "train (raw)", 0.35)
            smoothed = _ema(values[~faint], span=max(len(steps) // 100, 5))
            ax.plot(steps[~faint], smoothed, color="C0", lw=1.6, label="train (smoothed)")
    if _has_finite(val_loss):
        _draw(ax, val_loss, "C1", "validation", 1, marker="o")
    for step in rollbacks:
        ax.axvline(step, color="C3", ls="--", lw=1, alpha=0.7)
    if skipped:
        # at the bottom edge whatever the y scale: x in data units, y in axes units
        ax.plot(
            skipped,
            [0.0] * len(skipped),
            "|",
            color="C3",
            ms=12,
            mew=1.5,
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            label=f"skipped ({len(skipped)})",
        )
    ax.legend()
    figures.save(fig, "loss.png")


def _plot_throughput(
    figures: _RunFigures,
    train: Sequence[tuple[Mapping[str, Any], bool]],
    revisions: Sequence[int],
) -> None:
    """throughput.png: tokens/s, and below it, on its own panel and step axis, MFU when the run
    measured it, with the steps that revised the GEMM peak as dashed lines. Two panels, not
    twin axes: on twin axes the MFU line, drawn last, hid the tokens/s line it tracks."""
    tokens = _series(train, "tokens_per_s")
    if not _has_finite(tokens):
        return
    utilization = _series(train, "mfu")
    if not _has_finite(utilization):
        fig, top = figures.new("tokens/s")
    else:
        fig, (top, bottom) = figures.new_panels(("tokens/s", "MFU (of the measured GEMM peak)"))
        steps, values, faint = utilization
        _draw(bottom, (steps, 100 * values, faint), "C2", "MFU", 1)
        bottom.yaxis.set_major_formatter("{x:.0f}%")
        bottom.set_ylim(0, max(100.0, float(np.nanmax(100 * values)) * 1.05))
        for step in revisions:
            bottom.axvline(step, color="C3", ls="--", lw=1, alpha=0.7)
        if revisions:
            bottom.plot([], [], color="C3", ls="--", lw=1, label="GEMM peak revised")
            bottom.legend(loc="lower right")
    _draw(top, tokens, "C0", "tokens/s", 1)
    top.set_ylim(bottom=0)
    figures.save(fig, "throughput.png")


def _plot_layers(figures: _RunFigures, records: Sequence[Mapping[str, Any]]) -> None:
    """layers.png, when the run logged per-layer diagnostics: each layer group's gradient norm
    against the step (log scale, shallow to deep from dark to light) and, below, the residual
    stream's RMS against depth at the first and the last diagnostic step. A step logged twice
    (redone after a rollback) is drawn as last logged."""
    by_step = {r["step"]: r for r in records if isinstance(r.get("layers"), list)}
    if not by_step:
        return
    steps = sorted(by_step)
    names = by_step[steps[-1]]["layers"]
    streams = [by_step[s] for s in dict.fromkeys((steps[0], steps[-1])) if "act_rms" in by_step[s]]
    fig, axes = figures.new_grid(2 if streams else 1)
    top = axes[0]
    for i, name in enumerate(names):
        values = [_float_at(by_step[s], "grad_norm", name) for s in steps]
        top.plot(steps, values, color=_depth_color(i, len(names)), lw=1.2, label=name)
    top.set_xlabel("step")
    top.set_ylabel("gradient norm per layer (before clipping)")
    if all(v > 0 for r in by_step.values() for v in r["grad_norm"] if math.isfinite(v)):
        top.set_yscale("log")
    top.legend(fontsize="small", ncols=max(1, math.ceil(len(names) / 8)))
    if streams:
        bottom = axes[1]
        styles = ("--", "-")[-len(streams) :]  # the last step solid
        for record, style in zip(streams, styles, strict=True):
            depth = record["act_layers"]
            label = f"step {record['step']}"
            bottom.plot(range(len(depth)), record["act_rms"], style, marker="o", ms=3, label=label)
        bottom.set_xticks(range(len(depth)), depth, rotation=45 if len(depth) > 12 else 0)
        bottom.set_xlabel("residual stream after")
        bottom.set_ylabel("RMS of the residual stream")
        bottom.legend()
    figures.save(fig, "layers.png")


def _float_at(record: Mapping[str, Any], field: str, name: str) -> float:
    """``record[field]`` at the layer ``name`` (NaN when the record lacks it or it is not
    finite): the layers of a run's records may differ only if its model changed."""
    names = record["layers"]
    value = record[field][names.index(name)] if name in names else math.nan
    return value if math.isfinite(value) else math.nan


def _depth_color(i: int, n: int) -> Any:
    from matplotlib import colormaps

    return colormaps["viridis"](0.9 * i / max(n - 1, 1))


def _abandoned(records: Sequence[Mapping[str, Any]]) -> list[bool]:
    """True for a train or val record that a rollback abandoned: a later train record has a
    step ≤ its step (that step was redone), or, for a val record, a later val record does.

    This reads steps as docs/monitoring.md defines them: train step s is the s-th update, val
    step s evaluates the parameters after it, so in a run without rollbacks every later train
    record has a greater step.
    """
    flags = []
    later_train = later_train_or_val = math.inf
    for record in reversed(records):
        kind, step = record["kind"], record["step"]
        if kind == "train":
            flags.append(later_train <= step)
            later_train = min(later_train, step)
        elif kind == "val":
            flags.append(later_train_or_val <= step)
        else:
            flags.append(False)
            continue
        later_train_or_val = min(later_train_or_val, step)
    return flags[::-1]


def _series(
    items: Sequence[tuple[Mapping[str, Any], bool]], field: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, values with NaN for missing or non-finite, abandoned flags) of ``field``."""
    steps, values, faint = [], [], []
    for record, abandoned in items:
        value = record.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            steps.append(record["step"])
            values.append(float(value) if math.isfinite(value) else math.nan)
            faint.append(abandoned)
    return np.array(steps), np.array(values, dtype=np.float64), np.array(faint, dtype=bool)


def _draw(
    ax: Any,
    series: tuple[np.ndarray, ...],
    color: str,
    label: str | None,
    alpha: float,
    marker: str | None = None,
) -> None:
    """The kept points as a line; each run of abandoned points as a faint grey line."""
    steps, values, faint = series
    kept = ~faint
    ax.plot(steps[kept], values[kept], color=color, alpha=alpha, label=label, marker=marker, ms=3)
    start = 0
    while start < len(faint):
        if not faint[start]:
            start += 1
            continue
        stop = start
        while stop < len(faint) and faint[stop]:
            stop += 1
        ax.plot(steps[start:stop], values[start:stop], color="0.6", lw=1, marker=marker, ms=3)
        start = stop


def _ema(values: np.ndarray, span: int) -> np.ndarray:
    """Debiased exponential moving average, β = 1 − 1/span; NaN entries are passed over."""
    beta = 1.0 - 1.0 / span
    out = np.full_like(values, math.nan)
    mean, weight = 0.0, 0.0
    for i, v in enumerate(values):
        if math.isfinite(v):
            mean = beta * mean + (1 - beta) * v
            weight = beta * weight + (1 - beta)
            out[i] = mean / weight
    return out


def _has_finite(series: tuple[np.ndarray, ...]) -> bool:
    return bool(np.isfinite(series[1]).any())


def _all_finite(*values: Any) -> bool:
    return all(v is None or (isinstance(v, (int, float)) and math.isfinite(v)) for v in values)


def plot_report(report: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``corpus_lengths.png`` (documents by length in tokens: one panel per source and one
    overall, or one panel for a single source), ``corpus_scripts.png`` (share of letters by
    script) and, for a mixture, ``corpus_mixture.png`` (each source's requested weight beside
    its share of the training tokens) into ``out_dir``; returns their paths.
    Needs matplotlib (``pip install 'tinygradlm[plot]'``); draws on the Agg canvas directly."""
    Figure, FigureCanvasAgg = _matplotlib("plot_report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns = [*report["sources"].items(), ("overall", report["overall"])]
    if len(report["sources"]) == 1:
        columns = columns[-1:]

    def new_figure(size: tuple[float, float]) -> Any:
        fig = Figure(figsize=size, dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        return fig

    written = [
        _plot_lengths(new_figure, report, columns, out),
        _plot_scripts(new_figure, columns, out),
    ]
    if "mixture" in report:
        written.append(_plot_mixture(new_figure, report, out))
    return written


_Columns = Sequence[tuple[str, Mapping[str, Any]]]  # (source name or "overall", its section)


def _plot_lengths(
    new_figure: Any, report: Mapping[str, Any], columns: _Columns, out_dir: Path
) -> Path:
    """corpus_lengths.png: documents by length in tokens, a panel per column."""
    starts = report["overall"]["stats"]["length_histogram"]["bin_starts"]
    used = [
        i for _, c in columns for i, n in enumerate(c["stats"]["length_histogram"]["counts"]) if n
    ] or [0]
    bins = list(range(min(used), max(used) + 1))
    fig = new_figure((9, 1.5 + 2.5 * len(columns)))
    axes = fig.subplots(len(columns), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, c) in zip(axes, columns, strict=True):
        counts = c["stats"]["length_histogram"]["counts"]
        ax.bar(bins, [counts[b] for b in bins], width=0.8)
        ax.set_title(f"{name}: {c['stats']['documents']:,} documents", loc="left")
        ax.set_ylabel("documents")
        ax.grid(alpha=0.3, axis="y")
    axes[-1].set_xticks(bins)
    axes[-1].set_xticklabels([f"{starts[b]:,}" for b in bins], rotation=45, ha="right")
    axes[-1].set_xlabel("document length (text tokens, log2 bins: each labelled by its start)")
    path = out_dir / "corpus_lengths.png"
    save_png(fig, path)
    return path


def _plot_scripts(new_figure: Any, columns: _Columns, out_dir: Path) -> Path:
    """corpus_scripts.png: each column's share of letters by script."""
    fig = new_figure((8, 4.5))
    ax = fig.add_subplot()
    names: list[str] = []
    for _, c in columns:
        names += [s for s in c["stats"]["scripts"] if s not in names]
    names = names or ["other"]
    bar = 0.8 / len(columns)
    for k, (name, c) in enumerate(columns):
        shares = [100 * c["stats"]["scripts"].get(s, {}).get("share", 0.0) for s in names]
        ax.barh([i + k * bar for i in range(len(names))], shares, height=bar, label=name)
    ax.set_yticks([i + 0.4 - bar / 2 for i in range(len(names))])
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.set_xlabel("share of letters (%)")
    ax.legend()
    ax.grid(alpha=0.3, axis="x")
    path = out_dir / "corpus_scripts.png"
    save_png(fig, path)
    return path


def _plot_mixture(new_figure: Any, report: Mapping[str, Any], out_dir: Path) -> Path:
    """corpus_mixture.png: each source's requested weight beside its share of train tokens."""
    names = list(report["sources"])
    fig = new_figure((max(5, 1.2 * len(names) + 2), 4))
    ax = fig.add_subplot()
    x = np.arange(len(names))
    weights = [report["sources"][n]["weight"] for n in names]
    shares = [report["sources"][n]["token_share"] for n in names]
    ax.bar(x - 0.2, weights, width=0.4, label="weight requested")
    ax.bar(x + 0.2, shares, width=0.4, label="share of train tokens")
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    ax.set_ylabel("share of the mixture")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    path = out_dir / "corpus_mixture.png"
    save_png(fig, path)
    return path


def _matplotlib(caller: str) -> tuple[Any, Any]:
    """(Figure, FigureCanvasAgg), or an ImportError that says how to install the extra."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            f"{caller} needs matplotlib, an optional extra: pip install 'tinygradlm[plot]' "
            "(or pip install matplotlib)"
        ) from e
    return Figure, FigureCanvasAgg


def save_png(fig: Any, path: Path) -> None:
    """``fig`` as a PNG at ``path``, written atomically: an interrupted plot leaves the earlier
    file (or none), never half an image."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())
