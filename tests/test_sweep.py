"""tinygradlm sweep: the grid's points and names, every config problem named before anything
runs, a sweep end to end (sweep.json's fields against independent counts, the run folders
ordinary runs, the figures), a stopped sweep that continues without retraining what finished,
a diverging run recorded while the sweep goes on, and the grid spread over two MPI ranks giving
the losses of one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_train import make_data

from tinygradlm.checkpoint import latest_checkpoint, load_checkpoint, load_model
from tinygradlm.cli import main
from tinygradlm.errors import ConfigError, DataError
from tinygradlm.monitor import read_metrics
from tinygradlm.sweep import load_sweep, plot_sweep, run_sweep, summary_lines
from tinygradlm.sweep.fit import fit_power_law
from tinygradlm.sweep.run import assign_runs, estimated_cost
from tinygradlm.train import RunHooks, evaluate_checkpoint

ROOT = Path(__file__).resolve().parent.parent
BASE = """
[base]
data_dir = "{data}"
batch_size = 4
seq_len = 8
max_steps = 4
lr = 1e-2
eval_interval = 0
sample_interval = 0
checkpoint_interval = 2
log_interval = 1000
max_bad_steps = 1
[base.model]
preset = "tiny"
block_size = 8
n_head = 2
n_embd = 16
"""


def write_config(tmp_path, grid, sweep="eval_batches = 2\neval_batch_size = 2", base=BASE):
    data = tmp_path / "data"
    if not data.exists():
        make_data(data)
    path = tmp_path / "sweep.toml"
    text = base.format(data=data) + f"[grid]\n{grid}\n[sweep]\n{sweep}\n"
    path.write_text(text, encoding="utf-8")
    return path


def quiet(_message):
    pass


def test_the_grid_is_the_product_of_its_axes_with_readable_names(tmp_path):
    path = write_config(
        tmp_path, 'n_layer = [1, 2]\nresidual = [true, false]\nnorm = ["pre", "post"]'
    )
    sweep = load_sweep(path, tmp_path / "out")
    names = [p.name for p in sweep.points]
    assert names == [
        f"L{n}-{r}-{m}" for n in (1, 2) for r in ("res", "nores") for m in ("pre", "post")
    ]
    assert sweep.variants() == ["res-pre", "res-post", "nores-pre", "nores-post"]
    point = sweep.points[6]  # L2-nores-pre
    assert point.axes == {"n_layer": 2, "residual": False, "norm": "pre"}
    assert point.config.model["n_layer"] == 2 and point.config.model["residual"] is False
    assert point.config.gpt_config().norm == "pre" and point.config.gpt_config().n_embd == 16
    assert Path(point.config.out_dir) == tmp_path / "out" / "runs" / "L2-nores-pre"
    # everything the grid does not vary is the base's, for every run
    assert {(p.config.seed, p.config.lr, p.config.max_steps) for p in sweep.points} == {
        (0, 1e-2, 4)
    }


def test_a_loop_setting_axis_goes_into_the_run_itself(tmp_path):
    sweep = load_sweep(write_config(tmp_path, "n_layer = [1]\nlr = [0.001, 0.01]"), tmp_path)
    assert [p.name for p in sweep.points] == ["L1-lr0.001", "L1-lr0.01"]
    assert [p.config.lr for p in sweep.points] == [0.001, 0.01]
    assert "lr" not in sweep.points[0].config.model


def test_every_problem_is_named_before_anything_runs(tmp_path):
    grid = 'n_layer = [1, 2.5]\nnorms = ["pre"]\nresidual = []\nnorm = ["pre", "sideways"]'
    path = write_config(tmp_path, grid, sweep='parallel = "threads"')
    path.write_text(path.read_text(encoding="utf-8") + "[grids]\nseed = [1]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_sweep(path, tmp_path / "out")
    text = str(error.value)
    for expected in (
        "unknown key grids (known: base, grid, sweep)",
        "grid.n_layer[1] must be",
        "unknown grid axis grid.norms",
        "grid.residual must be a non-empty list",
        "grid.norm[1] must be one of 'pre', 'post', 'none', got 'sideways'",
        "sweep.parallel must be one of 'runs', 'data'",
    ):
        assert expected in text, (expected, text)
    assert not (tmp_path / "out").exists()


def test_a_problem_of_the_base_is_named_once(tmp_path):
    base = BASE.replace("max_steps = 4", "max_steps = 4\nwarmup_step = 1")
    path = write_config(tmp_path, "n_layer = [1, 2]\nseed = [0, 1]", sweep="", base=base)
    with pytest.raises(ConfigError) as error:
        load_sweep(path, tmp_path / "out", ["base.lr=-1"])
    text = str(error.value)
    assert "sweep.toml: [base]: unknown key warmup_step " in text
    assert "did you mean warmup_steps?" in text
    assert "override base.lr=-1: [base]: lr must be a number ≥ 0, got -1" in text
    # a problem between settings shows in every run's config: once, with the runs it stops
    base = BASE.replace("max_steps = 4", "max_steps = 4\nwarmup_steps = 9")
    path = write_config(tmp_path, "n_layer = [1, 2]\nseed = [0, 1]", sweep="", base=base)
    with pytest.raises(ConfigError) as error:
        load_sweep(path, tmp_path / "out")
    (line,) = str(error.value).splitlines()
    assert "sweep.toml: L1-seed0, L1-seed1, L2-seed0, L2-seed1: " in line
    assert "warmup_steps (9) exceeds max_steps (4)" in line


def test_a_point_that_cannot_be_trained_is_named_with_its_problem(tmp_path):
    # 2**20 wide at 4 x 8 tokens needs terabytes: the memory check refuses it up front
    path = write_config(tmp_path, "n_layer = [1]\nn_embd = [16, 1048576]", sweep="")
    base_without_checkpoints = BASE.replace("checkpoint_interval = 2", "checkpoint_interval = 0")
    with pytest.raises(ConfigError) as error:
        load_sweep(path, tmp_path / "out")
    assert "L1-C1048576: " in str(error.value) and "memory" in str(error.value).lower()
    path = write_config(tmp_path, "n_layer = [1, 2]", sweep="", base=base_without_checkpoints)
    with pytest.raises(ConfigError, match="L1: checkpoint_interval must be above 0") as error:
        load_sweep(path, tmp_path / "out")
    assert "L2: checkpoint_interval" in str(error.value)
    with pytest.raises(ConfigError, match="no variant 'res-pre'"):
        load_sweep(write_config(tmp_path, "n_layer = [1]", sweep='fit = ["res-pre"]'), tmp_path)


def test_two_points_with_one_name_are_refused(tmp_path):
    path = write_config(tmp_path, 'n_layer = [1]\nsample_prompt = ["a/b", "a_b"]')
    with pytest.raises(ConfigError, match="L1-a_b: two grid points would share"):
        load_sweep(path, tmp_path / "out")


def test_runs_are_dealt_out_longest_first_to_the_least_loaded_rank(tmp_path):
    sweep = load_sweep(write_config(tmp_path, "n_layer = [1, 2, 3, 4, 5]"), tmp_path)
    shares = assign_runs(sweep.points, 2)
    assert sorted(p.name for share in shares for p in share) == sorted(p.name for p in sweep.points)
    assert shares[0][0].name == "L5" and shares[1][0].name == "L4"
    loads = [sum(estimated_cost(p) for p in share) for share in shares]
    assert max(loads) - min(loads) <= max(estimated_cost(p) for p in sweep.points)


def test_a_sweep_end_to_end(tmp_path, capsys):
    path = write_config(tmp_path, "n_layer = [1, 2, 3, 4]")
    out = tmp_path / "out"
    assert main(["sweep", "--config", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    assert [run["name"] for run in summary["runs"]] == ["L1", "L2", "L3", "L4"]
    for run in summary["runs"]:
        assert run["status"] == "finished" and run["diverged"] is False
        folder = Path(run["run_dir"])
        assert folder == out / "runs" / run["name"]
        # an ordinary run folder: its checkpoint, its metrics, `tinygradlm eval` reads it
        checkpoint = latest_checkpoint(folder)
        assert load_checkpoint(checkpoint).step == 4 == run["step"]
        model = load_model(checkpoint)
        assert [r["step"] for r in read_metrics(folder) if r["kind"] == "train"] == [1, 2, 3, 4]
        last = [r for r in read_metrics(folder) if r["kind"] == "train"][-1]
        assert run["train_loss"] == pytest.approx(last["loss"])
        again = evaluate_checkpoint(
            checkpoint, tmp_path / "data", batches=2, batch_size=2, seq_len=8
        )
        assert run["val_loss"] == pytest.approx(again["loss"], rel=1e-6)
        assert run["val_tokens"] == again["tokens"] and run["val_sources"] is None
        # sizes counted from the model's own tensors
        sizes = {name: view.size for name, view in model.params.items()}
        assert run["non_embedding_parameters"] == sum(
            n for name, n in sizes.items() if not name.startswith(("wte", "wpe"))
        )
        assert run["parameters"] == model.num_params
        assert run["tokens"] == 4 * 4 * 8
        assert run["flops"] == model.flops_per_token(8) * run["tokens"]
        assert run["wall_time_s"] > 0 and run["pieces"] == 1
    sizes = [run["non_embedding_parameters"] for run in summary["runs"]]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4
    fits = {(f["variant"], f["x"]): f for f in summary["fits"]}
    assert set(fits) == {("all", "non_embedding_parameters"), ("all", "flops")}
    losses = [run["val_loss"] for run in summary["runs"]]
    for fit in fits.values():
        assert fit["runs"] == ["L1", "L2", "L3", "L4"]
        # four steps decide whether the loss falls with size: a law when it does, else the reason
        try:
            expected = fit_power_law([run[fit["x"]] for run in summary["runs"]], losses)
        except ValueError as e:
            assert not fit["fitted"] and fit["reason"] == str(e)
        else:
            assert fit["fitted"] and (fit["points"], fit["dof"]) == (4, 1)
            assert fit["alpha"] == expected.alpha and fit["c"] == expected.c
    assert summary["eval"] == {"split": "val", "batches": 2, "batch_size": 2, "seq_len": 8}
    # the runs log their per-layer records (diagnostics_interval) at the last step at least
    names = ("loss_vs_depth.png", "loss_vs_params.png", "loss_vs_compute.png")
    for name in (*names, "layer_grad_norm.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert str(out / name) in printed
    assert "no per-layer records" not in printed


def test_without_a_data_dir_the_corpus_is_prepared_once_into_out_data(tmp_path, monkeypatch):
    import tinygradlm.data.prepare

    prepared = []

    def fake_prepare(inputs, out_dir, config=None, **_):  # the embedded corpus, in small
        assert inputs is None
        prepared.append(Path(out_dir))
        make_data(Path(out_dir))
        (Path(out_dir) / "report.json").write_text("{}", encoding="utf-8")

    monkeypatch.setattr(tinygradlm.data.prepare, "prepare", fake_prepare)
    base = "".join(line for line in BASE.splitlines(True) if not line.startswith("data_dir"))
    path = write_config(tmp_path, "n_layer = [1, 2]", base=base)
    out = tmp_path / "out"
    sweep = load_sweep(path, out)
    assert sweep.prepare_data and {Path(p.config.data_dir) for p in sweep.points} == {out / "data"}
    summary = run_sweep(sweep, log=quiet)
    assert summary["data_dir"] == str(out / "data")
    assert all(run["status"] == "finished" for run in summary["runs"])
    run_sweep(load_sweep(path, out), log=quiet)
    assert prepared == [out / "data"]


def test_the_layer_panel_reads_the_deepest_runs_layer_records(tmp_path):
    path = write_config(tmp_path, "n_layer = [1, 2]")
    out = tmp_path / "out"
    summary = run_sweep(load_sweep(path, out), log=quiet)
    layers = ["wte", "wpe", "h.0", "h.1", "ln_f"]
    record = {
        "kind": "layers",
        "step": 4,
        "layers": layers,
        "grad_norm": [0.5, 0.1, 0.3, 0.2, 0.05],
        "update_ratio": [1e-3] * 5,
        "param_norm": [1.0] * 5,
        "act_layers": ["embed", "h.0", "h.1"],
        "act_rms": [1.0, 1.1, 1.2],
    }
    with open(out / "runs" / "L2" / "metrics.jsonl", "a", encoding="utf-8") as file:
        file.write(json.dumps(record) + "\n")
    paths, notes = plot_sweep(summary, out)
    assert out / "layer_grad_norm.png" in paths and notes == []


class StopAtStep(RunHooks):
    """Ctrl-C at the start of step ``step`` of the ``run``-th run trained."""

    def __init__(self, run, step):
        self.run, self.step, self.started = run, step, 0

    def before_step(self, step, rank):
        self.started += step == 1
        if self.started == self.run and step == self.step:
            raise KeyboardInterrupt


def test_a_stopped_sweep_continues_where_it_stopped(tmp_path):
    path = write_config(tmp_path, "n_layer = [1, 2, 3]")
    out = tmp_path / "out"
    sweep = load_sweep(path, out)
    # one process trains the costliest first: L3, then L2 (stopped after its checkpoint at 2)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep, log=quiet, hooks=StopAtStep(run=2, step=3))
    first = latest_checkpoint(out / "runs" / "L3")
    stamp = first.stat().st_mtime_ns
    assert load_checkpoint(latest_checkpoint(out / "runs" / "L2")).step == 2
    partial = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    assert {r["name"]: r["status"] for r in partial["runs"]} == {
        "L1": "pending",
        "L2": "pending",
        "L3": "finished",
    }
    messages = []
    summary = run_sweep(load_sweep(path, out), log=messages.append)
    assert latest_checkpoint(out / "runs" / "L3") == first
    assert first.stat().st_mtime_ns == stamp  # not retrained
    assert not any("L3" in m for m in messages if m.startswith("sweep:"))
    assert "sweep: L2: training from step 2" in messages
    runs = {r["name"]: r for r in summary["runs"]}
    assert all(r["status"] == "finished" for r in runs.values())
    assert runs["L2"]["pieces"] == 2 and runs["L3"]["pieces"] == 1
    # the resumed run continued its checkpoint: steps 3 and 4 once each in its metrics
    steps = [r["step"] for r in read_metrics(out / "runs" / "L2") if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4]
    assert json.loads((out / "sweep.json").read_text(encoding="utf-8")) == json.loads(
        json.dumps(summary)
    )


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_a_diverging_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    path = write_config(tmp_path, "n_layer = [1]\nlr = [0.01, 1e30]")
    out = tmp_path / "out"
    summary = run_sweep(load_sweep(path, out), log=quiet)
    runs = {r["name"]: r for r in summary["runs"]}
    assert runs["L1-lr0.01"]["status"] == "finished"
    diverged = runs["L1-lr1e+30"]
    assert diverged["status"] == "diverged" and diverged["diverged"] is True
    assert diverged["message"] and diverged["val_loss"] is None
    fit = next(f for f in summary["fits"] if f["variant"] == "lr1e+30")
    assert fit["fitted"] is False and fit["excluded_diverged"] == ["L1-lr1e+30"]
    assert any(line.endswith("diverged, left out: L1-lr1e+30") for line in summary_lines(summary))
    # a rerun leaves it as it is
    again = run_sweep(load_sweep(path, out), log=quiet)
    assert {r["name"]: r["status"] for r in again["runs"]} == {
        "L1-lr0.01": "finished",
        "L1-lr1e+30": "diverged",
    }
    assert {r["name"]: r["pieces"] for r in again["runs"]}["L1-lr1e+30"] == 1


MPIEXEC = Path(sys.executable).with_name("mpiexec")
needs_mpiexec = pytest.mark.skipif(not MPIEXEC.exists(), reason="no mpiexec beside this Python")


def sweep_on_two_ranks(path, out, *settings):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.update(dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"), "1"))
    command = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "tinygradlm", "sweep"]
    command += ["--config", str(path), "--out", str(out), "--no-plot", *settings]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result, json.loads((out / "sweep.json").read_text(encoding="utf-8"))


@needs_mpiexec
def test_two_ranks_spread_the_grid_and_give_the_losses_of_one_process(tmp_path):
    path = write_config(tmp_path, "n_layer = [1, 2, 3]")
    one = run_sweep(load_sweep(path, tmp_path / "one"), log=quiet)
    result, two = sweep_on_two_ranks(path, tmp_path / "two")
    # the costliest run on rank 0, the two others on rank 1 (their FLOPs together are less)
    for rank, name in ((0, "L3"), (1, "L2"), (1, "L1")):
        assert result.stdout.count(f"[rank {rank}] sweep: {name}: training") == 1, result.stdout
    assert result.stdout.count(": training") == 3
    for a, b in zip(one["runs"], two["runs"], strict=True):
        assert a["name"] == b["name"] and b["status"] == "finished"
        assert a["val_loss"] == b["val_loss"] and a["train_loss"] == b["train_loss"]
    assert np.isfinite([r["val_loss"] for r in two["runs"]]).all()


@needs_mpiexec
def test_data_parallel_runs_train_each_run_over_both_ranks(tmp_path):
    path = write_config(tmp_path, "n_layer = [1, 2]")
    one = run_sweep(load_sweep(path, tmp_path / "one"), log=quiet)
    result, two = sweep_on_two_ranks(path, tmp_path / "two", "sweep.parallel=data")
    assert result.stdout.count("data parallel: 2 ranks") == 2  # one line per run, from rank 0
    assert result.stdout.count(": training") == 2
    for a, b in zip(one["runs"], two["runs"], strict=True):
        # the same batches, each gradient averaged over two halves: equal up to rounding
        assert b["status"] == "finished" and b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)


@pytest.mark.parametrize("preset", ["depth", "width", "depth-cluster"])
def test_every_preset_is_a_valid_sweep_that_varies_only_its_axes(tmp_path, preset):
    from tinygradlm.sweep import SWEEP_PRESETS

    sweep = load_sweep(preset, tmp_path / "out")
    grid = SWEEP_PRESETS[preset]["grid"]
    assert len(sweep.points) == int(np.prod([len(v) for v in grid.values()]))
    assert sweep.settings.scale in grid and sweep.prepare_data
    # one seed, one budget, one learning rate: the runs differ in the grid's axes alone
    budgets = {
        (p.config.seed, p.config.lr, p.config.max_steps * p.config.batch_size * p.config.seq_len)
        for p in sweep.points
    }
    assert len(budgets) == 1
    for point in sweep.points:
        model = point.config.gpt_config()
        for key, value in point.axes.items():
            assert getattr(model, key) == value


def test_a_base_on_a_prepared_mixture_is_measured_on_every_source(tmp_path):
    from test_train_mixture import write_source

    data = tmp_path / "mixed"
    write_source(data / "prose", 1, 3000, seed=0)
    write_source(data / "code", 3, 1200, seed=1)
    (data / "report.json").write_text(json.dumps({"mixture": {"prose": 0.75, "code": 0.25}}))
    path = write_config(tmp_path, "n_layer = [1, 2]")
    path.write_text(path.read_text().replace(str(tmp_path / "data"), str(data)))
    summary = run_sweep(load_sweep(path, tmp_path / "out"), log=quiet)
    for run in summary["runs"]:
        again = evaluate_checkpoint(
            latest_checkpoint(run["run_dir"]), data, batches=2, batch_size=2, seq_len=8
        )
        assert set(run["val_sources"]) == {"prose", "code"}
        for name, source in again["sources"].items():
            assert run["val_sources"][name] == pytest.approx(source["loss"], rel=1e-6)
        # the mean at the prepared weights, as `tinygradlm eval` gives it
        assert run["val_loss"] == pytest.approx(again["loss"], rel=1e-6)
        assert run["val_tokens"] == again["tokens"]


def test_data_without_a_validation_split_is_refused_before_any_run_trains(tmp_path):
    path = write_config(tmp_path, "n_layer = [1, 2]")
    for shard in (tmp_path / "data").glob("val_*"):
        shard.unlink()
    sweep = load_sweep(path, tmp_path / "out")
    with pytest.raises(DataError, match="no val shards"):
        run_sweep(sweep, log=quiet)
    assert not (tmp_path / "out" / "runs").exists()
