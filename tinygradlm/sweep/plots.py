"""The figures of a sweep, drawn from sweep.json's contents (and, for the per-layer panel, the
``layers`` records of the deepest run of each variant), written next to sweep.json:

    loss_vs_depth.png     the final validation loss against the scale axis, a line per variant
                          (named for the axis: loss_vs_width.png for n_embd, loss_vs_AXIS.png)
    loss_vs_params.png    against non-embedding parameters, with each fitted law and its band
    loss_vs_compute.png   the same against training FLOPs
    layer_grad_norm.png   each layer's gradient norm at the last recorded step of each
                          variant's deepest run (not drawn, with a note, without such records)

matplotlib is an optional extra, imported here only when a figure is drawn (no display;
pyplot's backend left alone).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..monitor import read_metrics
from ..monitor.plots import save_png
from .fit import fit_power_law

AXIS_LABELS = {
    "non_embedding_parameters": "non-embedding parameters N",
    "flops": "training FLOPs C",
}
FIGURES = {"non_embedding_parameters": "loss_vs_params.png", "flops": "loss_vs_compute.png"}
SCALE_WORDS = {"n_layer": "depth", "n_embd": "width"}  # the scale figure's name: loss_vs_depth.png


def plot_sweep(summary: Mapping[str, Any], out: str | Path) -> tuple[list[Path], list[str]]:
    """The sweep's PNG files in ``out``; returns the paths written and notes on what was not
    drawn. Needs matplotlib: ``pip install 'tinygradlm[plot]'``."""
    Figure = _matplotlib()
    out = Path(out)
    finished = [run for run in summary["runs"] if run["status"] == "finished"]
    variants = list(dict.fromkeys(run["variant"] for run in summary["runs"]))
    paths, notes = [], []

    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    scale = summary["scale"]
    for variant in variants:
        runs = sorted(
            (r for r in finished if r["variant"] == variant), key=lambda r: r["axes"][scale]
        )
        if runs:
            ax.plot(
                [r["axes"][scale] for r in runs], [r["val_loss"] for r in runs], "o-", label=variant
            )
    ax.set_xscale("log", base=2)
    ax.set(xlabel=scale, ylabel="validation loss", title="final validation loss")
    _legend_and_save(fig, ax, out / f"loss_vs_{SCALE_WORDS.get(scale, scale)}.png", paths)

    for axis, name in FIGURES.items():
        fig = Figure(figsize=(6.4, 4.4))
        ax = fig.add_subplot()
        fits = {f["variant"]: f for f in summary["fits"] if f["x"] == axis and f["fitted"]}
        for i, variant in enumerate(variants):
            runs = [r for r in finished if r["variant"] == variant]
            if not runs:
                continue
            color = f"C{i % 10}"
            x = np.array([r[axis] for r in runs], dtype=np.float64)
            y = np.array([r["val_loss"] for r in runs], dtype=np.float64)
            ax.plot(x, y, "o", color=color, label=variant)
            fit = fits.get(variant)
            if fit is not None:
                _draw_fit(ax, fit, runs, axis, color)
        ax.set_xscale("log")
        ax.set(xlabel=AXIS_LABELS[axis], ylabel="validation loss")
        _legend_and_save(fig, ax, out / name, paths)

    layers = _deepest_layer_records(summary, variants, finished)
    if layers:
        fig = Figure(figsize=(7.2, 4.4))
        ax = fig.add_subplot()
        for run, record in layers.values():
            ax.plot(record["grad_norm"], "o-", label=f"{run['name']} (step {record['step']})")
        names = max((record["layers"] for _, record in layers.values()), key=len)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yscale("log")
        ax.set(ylabel="gradient norm", title="per-layer gradient norm, deepest run of each variant")
        _legend_and_save(fig, ax, out / "layer_grad_norm.png", paths)
    else:
        notes.append("no per-layer records (kind 'layers') in the deepest runs: no layer panel")
    return paths, notes


def _draw_fit(ax: Any, fit: Mapping[str, Any], runs: list[Any], axis: str, color: str) -> None:
    """The fitted law over the runs it was fitted to, and its band (α across its interval)."""
    used = [r for r in runs if r["name"] in fit["runs"]]
    law = fit_power_law(
        [r[axis] for r in used],
        [r["val_loss"] for r in used],
        confidence=fit["confidence"],
        alpha_range=tuple(fit["alpha_range"]),
        floor=fit.get("floor"),
    )
    x = np.geomspace(min(law.x), max(law.x), 100)
    low, high = law.band(x)
    ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)
    interval = (
        "["
        + ", ".join(
            "open" if e is None else f"{e:.3f}" for e in (fit["alpha_low"], fit["alpha_high"])
        )
        + "]"
    )
    ax.plot(
        x,
        law.predict(x),
        "-",
        color=color,
        label=f"alpha = {law.alpha:.3f} {interval}, c = {law.c:.2f}"
        + (" (alpha at bound)" if law.alpha_at_bound else ""),
    )


def _deepest_layer_records(
    summary: Mapping[str, Any], variants: list[str], finished: list[Any]
) -> dict[str, tuple[Any, Any]]:
    """Per variant: its deepest finished run and that run's last ``layers`` record, if any (a
    record whose ``grad_norm`` and ``layers`` differ in length is passed over)."""
    scale = summary["scale"]
    found = {}
    for variant in variants:
        runs = [r for r in finished if r["variant"] == variant]
        if not runs:
            continue
        deepest = max(runs, key=lambda r: r["axes"][scale])
        records = [
            r
            for r in read_metrics(deepest["run_dir"])
            if r.get("kind") == "layers" and len(r.get("grad_norm", ())) == len(r.get("layers", ()))
        ]
        if records:
            found[variant] = (deepest, records[-1])
    return found


def _legend_and_save(fig: Any, ax: Any, path: Path, paths: list[Path]) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)
    paths.append(path)


def _matplotlib() -> Any:
    """matplotlib's Figure, or an ImportError that says how to install the extra."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "the sweep's plots need matplotlib, an optional extra: pip install "
            "'tinygradlm[plot]' (sweep.json is written; --no-plot skips the plots)"
        ) from e
    return Figure
