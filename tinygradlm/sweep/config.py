"""The sweep config: what to train (``[base]``), what to vary (``[grid]``), and the sweep's own
settings (``[sweep]``); and the grid's points, each a full train config checked before any
run starts.

``[base]`` is a train config exactly as ``tinygradlm train --config`` takes it: a preset name
or a TOML file's path as a string, or its tables inline. ``[grid]`` maps a setting to the list
of values it takes: a GPTConfig field goes into the run's ``[model]`` table, a loop setting into
the run itself. Every point of the grid (the product of the lists, the last axis the fastest)
is built into a :class:`~tinygradlm.train.TrainConfig` with the one loader's machinery
(``tinygradlm.train.config.read_settings``, the environment's overrides), its memory checked
(``check_fits``), so one ConfigError lists every problem of every point before anything runs.
The settings and files: docs/scaling.md.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..model.config import RULES as GPT_RULES
from ..schema import Problem, Rule, Settings, check_table, check_value, problems_message
from ..train import PRESETS as TRAIN_PRESETS
from ..train import TrainConfig
from ..train.config import LoopSettings, apply_environment_overrides, read_settings
from .presets import SWEEP_PRESETS

DEFAULT_OUT = "runs/sweep"
# the loop settings a grid may vary; out_dir and the data are the sweep's to set
GRID_LOOP_KEYS = tuple(k for k in LoopSettings.RULES if k != "out_dir")
GRID_RULES: dict[str, Rule] = {
    **{k: LoopSettings.RULES[k] for k in GRID_LOOP_KEYS},
    **GPT_RULES,
}
# how a value shows in a run's name: a letter for the shape, words for the variants
NAME_PREFIXES = {"n_layer": "L", "n_embd": "C", "n_head": "H", "seq_len": "T"}
NAME_WORDS = {("residual", True): "res", ("residual", False): "nores"}


@dataclass
class SweepSettings:
    """The ``[sweep]`` table. parallel: how ranks share the work, ``runs`` (each run on one
    rank, the grid spread over the ranks) or ``data`` (each run data-parallel over all ranks).
    scale: the grid axis the power laws are fitted along. fit: the variants fitted (their
    names: a run's name without the scale axis's part; empty: every variant). confidence: the
    fits' interval. eval_*: the final validation loss of every run, on the same batches."""

    parallel: str = "runs"
    scale: str = "n_layer"
    fit: list[str] = field(default_factory=list)
    confidence: float = 0.95
    eval_batches: int = 16
    eval_batch_size: int = 8
    eval_seq_len: int | None = None  # None: the shortest seq_len of the grid's runs


SWEEP_RULES: dict[str, Rule] = {
    "parallel": Rule("str", choices=("runs", "data"), doc="how ranks share the work"),
    "scale": Rule("str", doc="the grid axis the fits run along"),
    "fit": Rule("str_list", doc="the variants fitted (default: all)"),
    "confidence": Rule("number", 0, 1, open_low=True, open_high=True, doc="the fits' interval"),
    "eval_batches": Rule("int", 1, doc="validation batches of the final loss"),
    "eval_batch_size": Rule("int", 1, doc="sequences per validation batch"),
    "eval_seq_len": Rule("optional_int", 1, doc="tokens per validation sequence"),
}
TOP_KEYS = ("base", "grid", "sweep")


@dataclass
class SweepPoint:
    """One run of the grid: its name (its folder under ``OUT/runs``), its axis values, its
    variant (the name without the scale axis), and its full train config."""

    name: str
    axes: dict[str, Any]
    variant: str
    config: TrainConfig


@dataclass
class Sweep:
    """A sweep, checked whole: its output folder, settings, data folder (None: the embedded
    corpus, prepared into ``out/data``) and its points in grid order."""

    out: Path
    settings: SweepSettings
    grid: dict[str, list[Any]]
    points: list[SweepPoint]
    data_dir: Path
    prepare_data: bool  # the base config left data_dir unset

    def variants(self) -> list[str]:
        return list(dict.fromkeys(point.variant for point in self.points))


def load_sweep(
    source: str | Path, out: str | Path | None = None, overrides: Sequence[str] = ()
) -> Sweep:
    """A sweep preset name or TOML file, with ``KEY=VALUE`` overrides (dotted into its tables:
    ``base.max_steps=50``, ``grid.n_layer=[1,2]``, ``sweep.parallel=data``); every problem of
    the config and of each grid point's train config in one ConfigError."""
    values = read_settings(str(source), overrides, SWEEP_PRESETS)
    where = values.where
    problems = [
        Problem(key, f"unknown key {key} (known: {', '.join(TOP_KEYS)})")
        for key in map(str, values)
        if key not in TOP_KEYS
    ]
    for key in ("base", "grid"):
        if key not in values:
            problems.append(Problem(key, f"[{key}] is required"))
    if "base" in values and not isinstance(values["base"], (str, Mapping)):
        text = f"base must be a train preset's name, a TOML file or a table, got {values['base']!r}"
        problems.append(Problem("base", text))
    grid = values.get("grid", {})
    problems += _grid_problems(grid)
    table = values.get("sweep", {})
    problems += check_table(table, SWEEP_RULES, "sweep.")
    base = Settings()
    if isinstance(values.get("base"), (str, Mapping)):
        base = _base_settings(values, values.source)
        problems += [
            Problem(f"base.{p.key}", f"[base]: {p.text}") for p in TrainConfig.check_values(base)
        ]
    if problems:
        raise ConfigError(problems_message(problems, where))
    settings = SweepSettings(**table)
    out = Path(out if out is not None else DEFAULT_OUT)
    prepare_data = "data_dir" not in base
    data_dir = out / "data" if prepare_data else Path(base["data_dir"])
    points: list[SweepPoint] = []
    failures: dict[str, list[str]] = {}  # each problem once, with the runs it stops
    every_name = [run_name(axes) for axes in _grid_points(grid)]
    for name in sorted({n for n in every_name if every_name.count(n) > 1}):
        failures.setdefault("two grid points would share this run folder name", []).append(name)
    for axes in _grid_points(grid):
        name = run_name(axes)
        try:
            config = _point_config(base, axes, out / "runs" / name, data_dir)
        except ConfigError as e:
            failures.setdefault(str(e), []).append(name)
            continue
        variant = "-".join(_name_part(k, v) for k, v in axes.items() if k != settings.scale)
        points.append(SweepPoint(name, axes, variant or "all", config))
    messages = [f"{', '.join(names)}: {text}" for text, names in failures.items()]
    if not failures:
        messages += _sweep_problems(settings, grid, points)
    if len(messages) == 1:
        raise ConfigError(f"{values.source}: {messages[0]}")
    if messages:
        raise ConfigError(f"{values.source}: {len(messages)} problems:\n  " + "\n  ".join(messages))
    return Sweep(
        out, settings, {k: list(v) for k, v in grid.items()}, points, data_dir, prepare_data
    )


def _base_settings(values: Settings, source: str) -> Settings:
    """``[base]``: a train preset's or TOML file's settings (a string), or the table itself;
    the keys an override set (``base.max_steps=50``) keep naming it in error messages."""
    base = values["base"]
    if isinstance(base, str):
        settings = read_settings(base, (), TRAIN_PRESETS)
    else:
        settings = Settings(_deep_copy(base), source=f"{source} [base]")
    for key, origin in values.origins.items():
        if key.startswith("base."):
            settings.origins[key.removeprefix("base.")] = origin
    return settings


def _grid_problems(grid: Any) -> list[Problem]:
    """Each axis: a known setting, a non-empty list, every value of the setting's kind."""
    if not isinstance(grid, Mapping):
        return [Problem("grid", f"grid must be a table, got {grid!r}")]
    problems = []
    for key, values in grid.items():
        if key not in GRID_RULES:
            known = ", ".join(sorted(GRID_RULES))
            problems.append(
                Problem(f"grid.{key}", f"unknown grid axis grid.{key} (known: {known})")
            )
        elif not isinstance(values, list) or not values:
            problems.append(
                Problem(f"grid.{key}", f"grid.{key} must be a non-empty list, got {values!r}")
            )
        else:
            for i, value in enumerate(values):
                wrong = check_value(value, GRID_RULES[key])
                if wrong is not None:
                    problems.append(Problem(f"grid.{key}", f"grid.{key}[{i}] {wrong}"))
            if len(set(map(repr, values))) < len(values):
                problems.append(Problem(f"grid.{key}", f"grid.{key} repeats a value: {values}"))
    return problems


def _grid_points(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """The product of the axes, in the order they are written, the last the fastest."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def run_name(axes: Mapping[str, Any]) -> str:
    """A run's folder name from its axis values, in the grid's order: ``L4-res-pre``."""
    return "-".join(_name_part(key, value) for key, value in axes.items())


def _name_part(key: str, value: Any) -> str:
    if (key, value) in NAME_WORDS:
        return NAME_WORDS[key, value]
    if isinstance(value, bool):
        return key if value else f"no{key}"
    if key in NAME_PREFIXES:
        return f"{NAME_PREFIXES[key]}{value}"
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    text = shown if isinstance(value, str) else f"{key}{shown}"
    return re.sub(r"[^A-Za-z0-9.+_]", "_", text)


def _point_config(base: Settings, axes: Mapping[str, Any], out_dir: Path, data: Path) -> Any:
    """The train config of one point: the base, its axis values, its folder and data."""
    values = Settings(_deep_copy(base), source=base.source)
    values.origins.update(base.origins)
    model = values.setdefault("model", {})
    for key, value in axes.items():
        if key in GPT_RULES:
            model[key] = value
        else:
            values[key] = value
    values["out_dir"] = str(out_dir)
    values["data_dir"] = str(data)
    apply_environment_overrides(values)
    return TrainConfig.from_dict(values)


def _sweep_problems(
    settings: SweepSettings, grid: Mapping[str, Any], points: list[SweepPoint]
) -> list[str]:
    """What the sweep needs of its points: checkpoints (how a stopped sweep resumes), the scale
    axis in the grid, known variants to fit, a final evaluation every model can take."""
    problems = []
    if settings.scale not in grid:
        problems.append(f"sweep.scale {settings.scale!r} is not a grid axis ({', '.join(grid)})")
    known = list(dict.fromkeys(p.variant for p in points))
    for variant in settings.fit:
        if points and variant not in known:
            problems.append(f"sweep.fit: no variant {variant!r} (variants: {', '.join(known)})")
    for point in points:
        if point.config.checkpoint_interval == 0:
            problems.append(
                f"{point.name}: checkpoint_interval must be above 0: a sweep resumes its runs "
                "from their checkpoints"
            )
    if settings.eval_seq_len is not None:
        for point in points:
            block = point.config.gpt_config().block_size
            if settings.eval_seq_len > block:
                problems.append(
                    f"{point.name}: sweep.eval_seq_len {settings.eval_seq_len} exceeds the "
                    f"model's block_size {block}"
                )
    return problems


def eval_seq_len(sweep: Sweep) -> int:
    """The final evaluation's sequence length: ``sweep.eval_seq_len``, else the shortest run's."""
    if sweep.settings.eval_seq_len is not None:
        return sweep.settings.eval_seq_len
    return min(point.config.seq_len for point in sweep.points)


def non_embedding_parameters(config: Any) -> int:
    """Parameters outside the token and position tables (wte, wpe): the N of a scaling law."""
    return config.parameter_count() - config.Vp * config.n_embd - config.block_size * config.n_embd


def _deep_copy(table: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in table.items()}
