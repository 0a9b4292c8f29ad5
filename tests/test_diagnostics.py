"""Per-layer diagnostics (tinygradlm.train.diagnostics): the "layers" metrics record against an
independent computation, its steps, a resume, and several ranks against one process."""

import json
import shutil

import numpy as np
import pytest
from test_dist import MPIEXEC, launch, overrides
from test_dist import data as dist_data  # noqa: F401 (a fixture)
from test_finetune import pretrained  # noqa: F401 (a fixture)
from test_finetune import settings as ft_settings
from test_finetune import task as ft_task
from test_train import make_data, poison, tiny_config

from tinygradlm.autograd import Tensor
from tinygradlm.model import GPT
from tinygradlm.model.witness import attention, gelu, layer_norm
from tinygradlm.monitor import MetricsLogger, plot_run, read_metrics
from tinygradlm.train import Trainer


@pytest.fixture
def data(tmp_path):
    return make_data(tmp_path / "data")


def config(tmp_path, **extra):
    return tiny_config(tmp_path, kernels="numpy", warmup_steps=1, **extra)


def layer_of(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "h" else parts[0]


def norms_by_layer(model: GPT, flat: np.ndarray) -> dict[str, float]:
    """‖flat‖ over each layer's named tensors, from the model's names (not the buffer's order)."""
    views = model.buffer.views(flat)
    squares: dict[str, float] = {}
    for name, view in views.items():
        wide = view.astype(np.float64).ravel()
        squares[layer_of(name)] = squares.get(layer_of(name), 0.0) + float(wide @ wide)
    return {layer: np.sqrt(s) for layer, s in squares.items()}


def stream_rms(model: GPT, flat: np.ndarray, idx: np.ndarray) -> list[float]:
    """The residual stream's RMS after the embedding and each block, recomputed in float64
    with the autograd witness's operations on the parameters ``flat``."""
    cfg = model.config
    p = {k: Tensor(v.astype(np.float64)) for k, v in model.buffer.views(flat).items()}
    eps = cfg.layer_norm_epsilon

    def linear(x, module):
        return x @ p[module + ".weight"] + p[module + ".bias"]

    x = p["wte.weight"][idx] + p["wpe.weight"][: idx.shape[1]]
    out = [x.data]
    for i in range(cfg.n_layer):
        h = f"h.{i}."
        a = layer_norm(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"], eps)
        x = x + linear(attention(linear(a, h + "attn.c_attn"), cfg.n_head), h + "attn.c_proj")
        m = layer_norm(x, p[h + "ln_2.weight"], p[h + "ln_2.bias"], eps)
        x = x + linear(gelu(linear(m, h + "mlp.c_fc")), h + "mlp.c_proj")
        out.append(x.data)
    return [float(np.sqrt(np.mean(s**2))) for s in out]


def test_layers_record_matches_an_independent_computation(tmp_path, data):
    trainer = Trainer(
        config(tmp_path, grad_accum_steps=2, grad_clip=0.05, diagnostics_interval=1),
        log=lambda _m: None,
    )
    model = trainer.model
    batches = []
    next_batch = trainer.train_loader.next_batch

    def recorded():
        batches.append(next_batch())
        return batches[-1]

    trainer.train_loader.next_batch = recorded
    trainer.train_step()  # a step with Adam's moments in use next
    batches.clear()
    before = model.flat_params.copy()
    result = trainer.train_step()
    after = model.flat_params.copy()
    record = result["layers"]
    assert result["grad_norm"] > 0.05  # the gradient was clipped: the norms are from before
    names = record["layers"]
    assert names == ["wte", "wpe", "h.0", "h.1", "ln_f"]

    # the gradient before clipping, from the autograd witness in a model of its own
    witness = GPT(model.config, seed=1)
    witness.flat_params[...] = before
    for i, (x, y) in enumerate(batches):
        witness.forward_backward(x, y, engine="autograd", accumulate=i > 0, loss_scale=0.5)
    grads = norms_by_layer(witness, witness.flat_grads)
    np.testing.assert_allclose(record["grad_norm"], [grads[n] for n in names], rtol=1e-4)
    assert np.sqrt(np.sum(np.square(record["grad_norm"]))) == pytest.approx(
        result["grad_norm"], rel=1e-6
    )

    change = norms_by_layer(model, after - before)
    start = norms_by_layer(model, before)
    ratios = [change[n] / start[n] for n in names]
    np.testing.assert_allclose(record["update_ratio"], ratios, rtol=1e-5)
    assert all(r > 0 for r in record["update_ratio"])
    end = norms_by_layer(model, after)
    np.testing.assert_allclose(record["param_norm"], [end[n] for n in names], rtol=1e-6)

    # the stream of the last micro-batch, before the update
    assert record["act_layers"] == ["embed", "h.0", "h.1"]
    expected = stream_rms(model, before, batches[-1][0])
    np.testing.assert_allclose(record["act_rms"], expected, rtol=1e-5)


def test_a_skipped_update_has_update_ratio_zero(tmp_path, data):
    trainer = Trainer(config(tmp_path, max_steps=3, diagnostics_interval=1), log=lambda _m: None)
    poison(trainer, {1})  # the second step's gradient is NaN: its update is skipped
    trainer.train()
    layers = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "layers"]
    assert [r["step"] for r in layers] == [1, 2, 3]
    assert layers[1]["update_ratio"] == [0.0] * 5
    assert all(np.isnan(v) for v in layers[1]["grad_norm"])  # "nan" read back as a float
    assert all(v > 0 for r in (layers[0], layers[2]) for v in r["update_ratio"])


@pytest.mark.parametrize(("interval", "steps"), [(3, [3, 6, 7]), (1, list(range(1, 8))), (0, [])])
def test_layers_records_come_every_interval_and_at_the_last_step(tmp_path, data, interval, steps):
    cfg = config(tmp_path, max_steps=7, diagnostics_interval=interval)
    Trainer(cfg, log=lambda _m: None).train()
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records if r["kind"] == "layers"] == steps


def test_autograd_engine_logs_no_stream(tmp_path, data):
    cfg = config(tmp_path, max_steps=2, diagnostics_interval=1, engine="autograd")
    Trainer(cfg, log=lambda _m: None).train()
    layers = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "layers"]
    assert len(layers) == 2
    assert all("act_rms" not in r and len(r["grad_norm"]) == 5 for r in layers)


def test_a_resumed_run_has_each_layers_record_once_and_the_same_values(tmp_path, data):
    settings = dict(max_steps=6, diagnostics_interval=2, checkpoint_interval=4)
    straight = config(tmp_path, **settings, out_dir=str(tmp_path / "straight"))
    Trainer(straight, log=lambda _m: None).train()
    split = tmp_path / "split"
    Trainer(config(tmp_path, **settings, out_dir=str(split)), log=lambda _m: None).train()
    shutil.rmtree(split / "ckpt_00000006")  # as if it crashed after logging step 6
    resumed = Trainer(config(tmp_path, **settings, out_dir=str(split)), log=lambda _m: None)
    assert resumed.resume() and resumed.step == 4
    resumed.train()

    def layers(run):
        return [r for r in read_metrics(run) if r["kind"] == "layers"]

    assert [r["step"] for r in layers(split)] == [2, 4, 6]
    assert layers(split) == layers(tmp_path / "straight")


@pytest.mark.skipif(not MPIEXEC.exists(), reason="no mpiexec beside this Python")
def test_two_ranks_log_the_layers_record_of_one_process(dist_data, tmp_path):  # noqa: F811
    def layers(P, name, **extra):
        out = tmp_path / name
        args = overrides(dist_data, out, max_steps=3, diagnostics_interval=1, **extra)
        result = launch(P, ["-m", "tinygradlm", "train", *args])
        assert result.returncode == 0, result.stdout + result.stderr
        assert P == 1 or f"data parallel: {P} ranks" in result.stdout, result.stdout
        return [r for r in read_metrics(out) if r["kind"] == "layers"]

    one = layers(1, "p1", grad_clip=0.05)
    for name, extra in (("dp", {}), ("zero", {"zero_stage": 1})):
        many = layers(2, name, grad_clip=0.05, **extra)
        assert [r["step"] for r in many] == [1, 2, 3]
        for a, b in zip(one, many, strict=True):
            assert a["layers"] == b["layers"] and a["act_layers"] == b["act_layers"]
            for field in ("grad_norm", "update_ratio", "param_norm", "act_rms"):
                np.testing.assert_allclose(b[field], a[field], rtol=2e-4, err_msg=field)


def test_layers_records_read_back_with_non_finite_values_and_names_as_text(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        logger.log_layers(
            4,
            layers=["wte", "nan"],  # a name is text, even one that spells a number
            grad_norm=[float("nan"), float("inf")],
            update_ratio=[np.float64(0.5), 0.0],
            act_layers=["embed"],
            act_rms=[np.float32(0.25)],
        )
    line = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert line["grad_norm"] == ["nan", "inf"] and line["act_rms"] == [0.25]
    (record,) = read_metrics(tmp_path)
    assert record["kind"] == "layers" and record["step"] == 4
    assert record["layers"] == ["wte", "nan"] and record["act_layers"] == ["embed"]
    assert np.isnan(record["grad_norm"][0]) and record["grad_norm"][1] == float("inf")
    assert record["update_ratio"] == [0.5, 0.0]


def test_plot_run_draws_the_layers_figure_only_for_a_run_that_logged_them(tmp_path, data):
    pytest.importorskip("matplotlib")
    for interval in (2, 0):
        out = tmp_path / f"run{interval}"
        cfg = config(tmp_path, max_steps=4, diagnostics_interval=interval, out_dir=str(out))
        Trainer(cfg, log=lambda _m: None).train()
        names = [path.name for path in plot_run(out)]
        assert ("layers.png" in names) == bool(interval)
        assert names[:4] == ["loss.png", "lr.png", "grad_norm.png", "throughput.png"]
    assert (tmp_path / "run2" / "layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_finetuning_diagnoses_what_trains(tmp_path, pretrained):  # noqa: F811
    ft_task(tmp_path / "task", lambda w: "ba", seed=1)
    runs = {"lora": {"lora_rank": 4}, "frozen": {"freeze": ["wte", "wpe", "h.0"]}}
    records = {}
    for name, extra in runs.items():
        cfg = ft_settings(
            tmp_path,
            init_from=str(pretrained),
            out_dir=str(tmp_path / name),
            max_steps=2,
            warmup_steps=1,
            diagnostics_interval=1,
            **extra,
        )
        Trainer(cfg, log=lambda _m: None).train()
        records[name] = [r for r in read_metrics(tmp_path / name) if r["kind"] == "layers"][-1]
    lora = records["lora"]  # the adapters' buffer: their blocks only
    assert lora["layers"] == ["h.0", "h.1"] and all(v > 0 for v in lora["update_ratio"])
    assert len(lora["act_rms"]) == 3
    frozen = dict(zip(records["frozen"]["layers"], records["frozen"]["update_ratio"], strict=True))
    grads = dict(zip(records["frozen"]["layers"], records["frozen"]["grad_norm"], strict=True))
    for layer in ("wte", "wpe", "h.0"):
        assert frozen[layer] == 0 and grads[layer] == 0
    assert frozen["h.1"] > 0 and grads["h.1"] > 0


def test_fp16_group_norms_are_of_the_unscaled_gradient(tmp_path, data):
    cfg = config(tmp_path, max_steps=6, diagnostics_interval=1, precision="fp16")
    Trainer(cfg, log=lambda _m: None).train()
    records = read_metrics(tmp_path / "run")
    train = {r["step"]: r for r in records if r["kind"] == "train"}
    layers = [r for r in records if r["kind"] == "layers"]
    assert [r["step"] for r in layers] == list(range(1, 7))
    checked = 0
    for record in layers:
        norm = train[record["step"]]["grad_norm"]  # None on an overflow
        if norm is not None:
            assert np.sqrt(np.sum(np.square(record["grad_norm"]))) == pytest.approx(norm, rel=1e-6)
            checked += 1
    assert checked >= 3


def test_a_diagnostic_step_does_not_copy_the_parameters(tmp_path, data, monkeypatch):
    import tracemalloc

    import tinygradlm.optim as optim

    monkeypatch.setattr(optim, "MEASURE_CHUNK", 1 << 10)  # a 4 kB scratch
    trainer = Trainer(config(tmp_path, diagnostics_interval=2), log=lambda _m: None)
    trainer.train_step()  # buffers made, kernels compiled
    params = trainer.optimizer.params
    tracemalloc.start()
    probe = trainer.diagnostics.begin(trainer.sync, params)
    held = max(s.size for s in tracemalloc.take_snapshot().statistics("traceback"))
    tracemalloc.reset_peak()
    squares = trainer.sync.update(1e-3, probe.measure)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    fields = probe.finish(params, squares, trainer.model, trainer.dist)
    # nothing the size of the parameters is kept between the gradient and the update, nor made
    # by the measured update
    assert held < params.nbytes / 4 and peak < params.nbytes / 2, (held, peak, params.nbytes)
    assert all(r > 0 for r in fields["update_ratio"])


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_diagnosed_steps_train_the_same_bits(tmp_path, data, kernels, monkeypatch):
    # the measured update is applied in pieces: the same elementwise AdamW, the same bits
    import tinygradlm.optim as optim

    monkeypatch.setattr(optim, "MEASURE_CHUNK", 300)  # pieces that cut layers and decay ranges
    finals = []
    for interval in (0, 1):
        settings = {"max_steps": 4, "diagnostics_interval": interval, "kernels": kernels}
        trainer = Trainer(
            tiny_config(
                tmp_path, warmup_steps=1, out_dir=str(tmp_path / f"run{interval}"), **settings
            ),
            log=lambda _m: None,
        )
        trainer.train()
        finals.append((trainer.model.flat_params.copy(), trainer.optimizer.m.copy()))
    assert np.array_equal(finals[0][0], finals[1][0]) and np.array_equal(finals[0][1], finals[1][1])
