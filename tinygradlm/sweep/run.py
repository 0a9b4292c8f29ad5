"""Running a sweep: every grid point an ordinary run folder, trained by the normal training path
(``tinygradlm.train.Trainer``), then ``OUT/sweep.json`` with each run's measurements and the
power laws fitted to them.

A run is finished when its newest complete checkpoint is at ``max_steps``: a rerun of a stopped
sweep skips it and resumes a half-finished one from its checkpoint, as ``tinygradlm train``
would. A run that diverges (the divergence guard gives up: ``DivergenceError``), or ends with
a non-finite loss, is recorded as diverged and the sweep goes on. What the sweep measured of a
run (its final losses, its wall time summed over the pieces it was trained in) is kept in the
run folder's ``sweep_run.json``, beside the checkpoint step it describes, so a record that no
longer matches the folder is measured again.

Ranks (``mpiexec -n P tinygradlm sweep``): with ``parallel = "runs"`` (the default) each rank
trains whole runs on its own, the runs dealt out longest first (by parameters × tokens) to
the rank with the least work so far; with ``parallel = "data"`` every run is data-parallel over
all ranks, one after another. Rank 0 prepares the data, and writes sweep.json after each of its
runs and, once every rank is done, from every run folder (the folders must be on a filesystem
all ranks share, as resuming needs). Why runs over ranks is the default: docs/scaling.md.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..atomic import write_atomic
from ..checkpoint import latest_checkpoint, load_checkpoint, model_from_checkpoint
from ..dist import Dist
from ..errors import DivergenceError
from ..monitor import read_metrics
from ..train import Trainer
from ..train.evaluate import evaluate_shards, split_sources
from .config import Sweep, SweepPoint, eval_seq_len, non_embedding_parameters
from .fit import MIN_POINTS, fit_power_law

SWEEP_FILE = "sweep.json"
RUN_RECORD = "sweep_run.json"  # in each run folder: what the sweep measured of the run
FIT_AXES = ("non_embedding_parameters", "flops")


def run_sweep(
    sweep: Sweep,
    dist: Any = None,
    *,
    log: Callable[[str], None] = print,
    hooks: Any = None,
) -> dict[str, Any]:
    """Train every point of ``sweep`` that is not finished (this rank's share of them), then
    write and return sweep.json's contents (rank 0; the other ranks return theirs unwritten)."""
    dist = dist if dist is not None else Dist()
    say = log if dist.rank == 0 else (lambda _m: None)
    if sweep.prepare_data:
        if dist.rank == 0:
            _prepare_embedded_corpus(sweep.data_dir, say)
        dist.barrier()
    check_validation_split(sweep)
    if sweep.settings.parallel == "data":
        mine, run_dist, log = sweep.points, dist, say
    else:
        mine, run_dist = assign_runs(sweep.points, dist.world_size)[dist.rank], Dist()
        if dist.enabled:  # every rank reports its own runs
            log = _prefixed(log, f"[rank {dist.rank}] ")
    stopped = None
    try:
        for point in mine:
            run_point(point, sweep, run_dist, log=log, hooks=hooks)
            if dist.rank == 0:
                write_sweep(sweep)
            if run_dist is dist:
                dist.barrier()  # every rank's piece of this run is done
    except KeyboardInterrupt as stop:
        # Ctrl-C or SIGTERM (a run stops at a step boundary, with a checkpoint on SIGTERM): the
        # other ranks finish or stop theirs and meet here, rather than one rank ending alone
        # while another waits for it in a collective
        stopped = stop
    dist.barrier()
    summary = write_sweep(sweep) if dist.rank == 0 else sweep_summary(sweep)
    if stopped is not None:
        raise stopped
    return summary


def _prefixed(log: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    return lambda message: log(prefix + message)


def assign_runs(points: list[SweepPoint], ranks: int) -> list[list[SweepPoint]]:
    """The points dealt out to ``ranks`` ranks: the costliest (:func:`estimated_cost`) first,
    each to the rank with the least work so far (the longest-processing-time rule)."""
    shares: list[list[SweepPoint]] = [[] for _ in range(ranks)]
    work = [0.0] * ranks
    for point in sorted(points, key=lambda p: (-estimated_cost(p), p.name)):
        rank = min(range(ranks), key=lambda r: (work[r], r))
        shares[rank].append(point)
        work[rank] += estimated_cost(point)
    return shares


def estimated_cost(point: SweepPoint) -> float:
    """A point's work before its data is read: parameters (at the preset's vocabulary) times
    tokens, the main term of its training FLOPs (6·N·D)."""
    cfg = point.config
    return float(cfg.gpt_config().parameter_count() * tokens_trained(cfg, cfg.max_steps))


def tokens_trained(config: Any, steps: int) -> int:
    return steps * config.batch_size * config.seq_len * config.grad_accum_steps


def run_point(
    point: SweepPoint,
    sweep: Sweep,
    dist: Any,
    *,
    log: Callable[[str], None] = print,
    hooks: Any = None,
) -> dict[str, Any]:
    """Train (or resume) one run unless it is finished or recorded as diverged, then measure
    it; returns its record (what ``sweep_run.json`` holds)."""
    cfg = point.config
    folder = Path(cfg.out_dir)
    record = read_record(folder)
    step = _checkpoint_step(folder)
    if record.get("diverged") and record.get("checkpoint_step") == step:
        return record
    if step == cfg.max_steps and record.get("step") == step and "val_loss" in record:
        return record
    if step != cfg.max_steps:
        log(f"sweep: {point.name}: training" + (f" from step {step}" if step else ""))
        kept = {key: record[key] for key in ("wall_time_s", "pieces") if key in record}
        record = _train(point, dist, kept, log, hooks)
        if record.get("diverged"):
            return record
    if dist.rank == 0:
        record = {**record, **measure_run(point, sweep)}
        write_atomic(folder / RUN_RECORD, json.dumps(record, indent=1) + "\n")
    return record


def _train(
    point: SweepPoint, dist: Any, record: dict[str, Any], log: Callable[[str], None], hooks: Any
) -> dict[str, Any]:
    """One piece of a run's training: to max_steps, or until it diverges or is stopped (its
    wall time counted either way)."""
    folder = Path(point.config.out_dir)
    started = time.perf_counter()
    diverged = None
    try:
        trainer = Trainer(point.config, dist=dist, log=log, hooks=hooks)
        trainer.resume()
        trainer.train()
    except DivergenceError as e:
        diverged = {"diverged": True, "message": str(e), "step": trainer.step}
        log(f"sweep: {point.name} diverged at step {trainer.step}: {e}")
    finally:
        seconds = time.perf_counter() - started
        record = {
            **record,
            "wall_time_s": record.get("wall_time_s", 0.0) + seconds,
            "pieces": record.get("pieces", 0) + 1,
        }
        if diverged is not None:
            record.update(diverged, checkpoint_step=_checkpoint_step(folder))
        if dist.rank == 0:
            write_atomic(folder / RUN_RECORD, json.dumps(record, indent=1) + "\n")
    return record


def measure_run(point: SweepPoint, sweep: Sweep) -> dict[str, Any]:
    """A finished run's measurements: sizes, tokens, FLOPs, the last train loss and the sweep's
    validation loss (the same batches for every run); non-finite losses mark it diverged."""
    cfg = point.config
    checkpoint = load_checkpoint(latest_checkpoint(cfg.out_dir))
    model = model_from_checkpoint(checkpoint)
    val = evaluate_shards(model, sweep.data_dir, mix=cfg.data.get("mix"), **eval_sizes(sweep))
    val_loss = val["loss"]
    train = [
        r
        for r in read_metrics(cfg.out_dir)
        if r["kind"] == "train" and r["step"] == checkpoint.step
    ]
    train_loss = float(train[-1]["loss"]) if train else math.nan
    tokens = tokens_trained(cfg, checkpoint.step)
    finite = math.isfinite(train_loss) and math.isfinite(val_loss)
    return {
        "step": checkpoint.step,
        "parameters": model.num_params,
        "non_embedding_parameters": non_embedding_parameters(model.config),
        "tokens": tokens,
        "flops": model.flops_per_token(cfg.seq_len) * tokens,
        "train_loss": _json_number(train_loss),
        "val_loss": _json_number(val_loss),
        "val_tokens": val["tokens"],
        "val_sources": (
            {name: _json_number(r["loss"]) for name, r in val["sources"].items()}
            if "sources" in val
            else None
        ),
        "diverged": not finite,
        **({} if finite else {"message": "non-finite final loss"}),
    }


def eval_sizes(sweep: Sweep) -> dict[str, int]:
    """The final evaluation's batches, batch size and sequence length, the same for every run."""
    settings = sweep.settings
    return {
        "batches": settings.eval_batches,
        "batch_size": settings.eval_batch_size,
        "seq_len": eval_seq_len(sweep),
    }


def check_validation_split(sweep: Sweep) -> None:
    """Every run's final evaluation has a validation split to read (a DataError if not), asked
    before any run trains rather than after the first one has."""
    for mix in {json.dumps(p.config.data.get("mix"), sort_keys=True) for p in sweep.points}:
        split_sources(sweep.data_dir, "val", json.loads(mix))


def read_record(folder: Path) -> dict[str, Any]:
    """A run folder's ``sweep_run.json`` (empty when there is none)."""
    path = folder / RUN_RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _checkpoint_step(folder: Path) -> int | None:
    path = latest_checkpoint(folder)
    return None if path is None else load_checkpoint(path).step


def _json_number(x: float) -> float | None:
    return x if math.isfinite(x) else None


# --------------------------------------------------------------------------------------------
# sweep.json
# --------------------------------------------------------------------------------------------


def sweep_summary(sweep: Sweep) -> dict[str, Any]:
    """What sweep.json holds, from every run folder as it is now."""
    runs = []
    for point in sweep.points:
        folder = Path(point.config.out_dir)
        record = read_record(folder)
        measured = "val_loss" in record and record.get("step") == point.config.max_steps
        done = record.get("diverged") or measured
        status = "diverged" if record.get("diverged") else "finished" if done else "pending"
        runs.append(
            {
                "name": point.name,
                "axes": point.axes,
                "variant": point.variant,
                "run_dir": str(folder),
                "status": status,
                "diverged": status == "diverged",
                **{key: record.get(key) for key in RUN_FIELDS},
            }
        )
    variants = sweep.settings.fit or sweep.variants()
    fits = [fit_variant(runs, variant, axis, sweep) for variant in variants for axis in FIT_AXES]
    return {
        "scale": sweep.settings.scale,
        "grid": sweep.grid,
        "settings": vars(sweep.settings),
        "eval": {"split": "val", **eval_sizes(sweep)},
        "data_dir": str(sweep.data_dir),
        "runs": runs,
        "fits": fits,
    }


RUN_FIELDS = (
    "step",
    "parameters",
    "non_embedding_parameters",
    "tokens",
    "flops",
    "train_loss",
    "val_loss",
    "val_tokens",
    "val_sources",
    "wall_time_s",
    "pieces",
    "message",
)


def fit_variant(
    runs: list[dict[str, Any]], variant: str, axis: str, sweep: Sweep
) -> dict[str, Any]:
    """The power law of one variant's validation loss over ``axis`` (its finished runs);
    ``fitted`` false, with the reason, below :data:`MIN_POINTS` points."""
    mine = [run for run in runs if run["variant"] == variant]
    used = [run for run in mine if run["status"] == "finished"]
    result: dict[str, Any] = {
        "variant": variant,
        "x": axis,
        "y": "val_loss",
        "runs": [run["name"] for run in used],
        "excluded_diverged": [run["name"] for run in mine if run["status"] == "diverged"],
        "pending": [run["name"] for run in mine if run["status"] == "pending"],
    }
    if len(used) < MIN_POINTS:
        return {
            **result,
            "fitted": False,
            "reason": f"{len(used)} finished run(s); a fit needs at least {MIN_POINTS}",
        }
    try:
        fit = fit_power_law(
            [run[axis] for run in used],
            [run["val_loss"] for run in used],
            confidence=sweep.settings.confidence,
        )
    except ValueError as e:
        return {**result, "fitted": False, "reason": str(e)}
    return {**result, "fitted": True, **fit.to_dict()}


def write_sweep(sweep: Sweep) -> dict[str, Any]:
    """sweep.json, atomically, from the run folders as they are now."""
    summary = sweep_summary(sweep)
    sweep.out.mkdir(parents=True, exist_ok=True)
    write_atomic(sweep.out / SWEEP_FILE, json.dumps(summary, indent=1) + "\n")
    return summary


def _prepare_embedded_corpus(data_dir: Path, log: Callable[[str], None]) -> None:
    """The embedded corpus prepared into ``data_dir`` once (as ``make demo`` does)."""
    if (data_dir / "report.json").is_file():
        return
    from ..data.prepare import prepare

    log(f"sweep: preparing the embedded corpus into {data_dir}")
    prepare(None, data_dir, log=log)


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """A table of the runs and a line per fit, for the terminal."""
    lines = [f"{'run':<24} {'status':<9} {'N (non-emb.)':>12} {'val loss':>9} {'wall s':>8}"]
    for run in summary["runs"]:
        val = "-" if run["val_loss"] is None else f"{run['val_loss']:.4f}"
        size = "-" if run["non_embedding_parameters"] is None else run["non_embedding_parameters"]
        wall = "-" if run["wall_time_s"] is None else f"{run['wall_time_s']:.0f}"
        lines.append(f"{run['name']:<24} {run['status']:<9} {size:>12} {val:>9} {wall:>8}")
    for fit in summary["fits"]:
        line = f"fit {fit['variant']} over {fit['x']}: "
        if fit["fitted"]:
            ends = [
                "open" if e is None else f"{e:.3f}" for e in (fit["alpha_low"], fit["alpha_high"])
            ]
            line += (
                f"alpha {fit['alpha']:.3f} [{ends[0]}, {ends[1]}] at {fit['confidence']:.0%}, "
                f"c {fit['c']:.3f}, {fit['points']} points, {fit['dof']} degree(s) of freedom"
            )
            if fit["alpha_at_bound"]:
                line += " (alpha at an end of its search range)"
            if fit.get("c_at_floor"):
                line += f" (c at its floor {fit['floor']:g}: a pure power law over these points)"
        else:
            line += f"none ({fit['reason']})"
        if fit["excluded_diverged"]:
            line += f"; diverged, left out: {', '.join(fit['excluded_diverged'])}"
        lines.append(line)
    return lines
