"""MFU that can be believed: the GEMM peak is a best-of-rounds measurement logged with its
shapes and threads, a step faster than the peak revises it (so MFU never exceeds 100%), the
training run records both as events, and throughput.png draws MFU on a panel of its own.
Also: progress counters print plain lines, never carriage returns, where stderr is no terminal.
"""

import io
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_train import make_data, tiny_config

from tinygradlm.monitor import (
    GemmPeak,
    MetricsLogger,
    MfuMeter,
    measure_gemm_peak,
    plot_run,
    plots,
    read_metrics,
    timing,
)
from tinygradlm.monitor.progress import PlainProgress, progress_bar
from tinygradlm.train import Trainer

# --------------------------------------------------------------------------------------------
# the probe


def test_gemm_peak_times_the_model_shapes_on_the_threads_the_environment_sets(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    peak = measure_gemm_peak(32, 64, vocab_size=1000, max_seconds=0.01)
    # the block's three projections and the LM head, its columns capped at 8C = 256
    assert peak.shapes == ((64, 32, 96), (64, 32, 128), (64, 128, 32), (64, 32, 256))
    assert (peak.threads, peak.threads_from) == (3, "OPENBLAS_NUM_THREADS")
    assert peak.rounds >= 3  # at least three rounds however short max_seconds is
    assert math.isfinite(peak.flops) and peak.flops > 1e7  # FLOP/s, not GFLOP/s
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert measure_gemm_peak(32, 64, max_seconds=0.01).threads_from == "OMP_NUM_THREADS"


def test_gemm_peak_ignores_a_disturbed_round(monkeypatch):
    """One round slowed by 50 ms (another process on the cores) does not lower the peak: each
    shape's best round counts. Averaging the rounds would put the rate below FLOPs / 50 ms."""
    calls = {"n": 0}
    real_matmul = np.matmul

    def matmul(a, b, out):
        calls["n"] += 1
        if calls["n"] == 5:  # the first timed product, after the three warm-ups
            timing.time.sleep(0.05)
        return real_matmul(a, b, out=out)

    monkeypatch.setattr(timing.np, "matmul", matmul)
    peak = timing.measure_gemm_peak(16, 48, max_seconds=0.01)
    total_flops = sum(2 * m * k * n for m, k, n in peak.shapes)
    assert calls["n"] > 5 and peak.flops > total_flops / 0.05


def test_gemm_peak_event_reads_back_with_its_shapes_and_threads(tmp_path):
    peak = GemmPeak(3.3e11, ((2048, 768, 2304),), threads=2, threads_from="cpu_count", rounds=7,
                    seconds=0.41)  # fmt: skip
    with MetricsLogger(tmp_path) as log:
        log.log_event(0, "gemm_peak", peak.describe(), **peak.event_fields())
    (record,) = read_metrics(tmp_path)
    assert record["event"] == "gemm_peak" and record["flops"] == 3.3e11
    assert record["shapes"] == [[2048, 768, 2304]] and record["threads"] == 2
    assert record["seconds"] == 0.41 and record["rounds"] == 7
    assert record["message"].startswith("GEMM peak 330.0 GFLOP/s: best of 7 rounds")
    assert "on 2 threads (cpu_count)" in record["message"]


# --------------------------------------------------------------------------------------------
# MFU never above 100%


def test_mfu_meter_revises_the_peak_when_a_step_beats_it():
    meter = MfuMeter(100.0)
    assert meter(50.0, 1.0) == (0.5, None)
    utilization, revision = meter(300.0, 2.0)  # 150 FLOP/s: the probe ran slow
    assert utilization == 1.0 and meter.peak_flops == 150.0
    assert revision["flops"] == 150.0 and revision["previous_flops"] == 100.0
    assert "disturbed" in revision["message"]
    assert meter(75.0, 1.0) == (0.5, None)  # later steps are measured against the new peak


@given(
    peak=st.floats(1.0, 1e12),
    steps=st.lists(st.tuples(st.floats(1.0, 1e12), st.floats(1e-6, 1e3)), max_size=20),
)
def test_mfu_meter_never_exceeds_one_and_its_peak_is_the_fastest_rate(peak, steps):
    meter = MfuMeter(peak)
    for flops, seconds in steps:
        utilization, _ = meter(flops, seconds)
        assert 0 < utilization <= 1
    assert meter.peak_flops == max([peak] + [flops / seconds for flops, seconds in steps])


def test_mfu_meter_refuses_a_peak_that_is_no_rate():
    with pytest.raises(ValueError, match="peak_flops"):
        MfuMeter(0.0)


# --------------------------------------------------------------------------------------------
# a training run


def test_training_logs_the_peak_and_revises_a_disturbed_one(tmp_path, monkeypatch):
    """A probe that reports a hopelessly low peak (1 kFLOP/s, as a probe starved by another
    process could) makes the first step revise it: MFU stays at most 100% throughout."""
    from tinygradlm.train import loop

    make_data(tmp_path / "data")
    disturbed = GemmPeak(1e3, ((128, 32, 96),), threads=1, threads_from="cpu_count", rounds=3,
                         seconds=0.5)  # fmt: skip
    monkeypatch.setattr(loop, "measure_gemm_peak", lambda *args, **kwargs: disturbed)
    Trainer(tiny_config(tmp_path, max_steps=3, warmup_steps=1), log=lambda _m: None).train()
    records = read_metrics(tmp_path / "run")
    events = [r for r in records if r["kind"] == "event"]
    assert events[0]["event"] == "gemm_peak" and events[0]["step"] == 0
    assert events[0]["flops"] == 1e3 and events[0]["ranks"] == 1
    revised = [r for r in events if r["event"] == "peak_revised"]
    assert revised[0]["step"] == 1 and revised[0]["previous_flops"] == 1e3
    train = [r for r in records if r["kind"] == "train"]
    assert train[0]["mfu"] == 1.0 and all(0 < r["mfu"] <= 1 for r in train)


def test_training_logs_a_measured_peak(tmp_path):
    make_data(tmp_path / "data")
    Trainer(tiny_config(tmp_path, max_steps=2, warmup_steps=1), log=lambda _m: None).train()
    (peak,) = [r for r in read_metrics(tmp_path / "run") if r.get("event") == "gemm_peak"]
    # rows = B·T = 8·16; C = 32; the LM head's columns: the padded vocabulary, at most 8C
    assert peak["shapes"][:3] == [[128, 32, 96], [128, 32, 128], [128, 128, 32]]
    assert peak["flops"] > 0 and peak["threads"] >= 1 and peak["seconds"] > 0


# --------------------------------------------------------------------------------------------
# throughput.png


def test_throughput_draws_mfu_on_its_own_panel(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    with MetricsLogger(tmp_path) as log:
        log.log_event(0, "gemm_peak", "", flops=1e9)
        for step in range(1, 6):
            log.log_train(step, loss=3.0, lr=1e-3, grad_norm=1.0, tokens_per_s=5000.0 + step,
                          mfu=0.3, time={})  # fmt: skip
        log.log_event(3, "peak_revised", "", flops=2e9, previous_flops=1e9)
    saved = {}
    monkeypatch.setattr(plots, "save_png", lambda fig, path: saved.__setitem__(path.name, fig))
    plot_run(tmp_path)
    top, bottom = saved["throughput.png"].axes
    # two panels, one above the other: not twin axes drawn over the same rectangle
    assert top.get_subplotspec().rowspan.start < bottom.get_subplotspec().rowspan.start
    assert top.get_ylabel() == "tokens/s" and bottom.get_ylabel().startswith("MFU")
    assert top.get_ylim()[1] > 5000 and bottom.get_ylim() == (0.0, 100.0)  # MFU in %, own scale
    dashed = [line.get_xdata() for line in bottom.lines if line.get_linestyle() == "--"]
    assert {x[0] for x in dashed if len(x)} == {3}  # the revision's step


# --------------------------------------------------------------------------------------------
# progress counters off a terminal


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_off_a_terminal_prints_plain_lines():
    stream, now = io.StringIO(), [0.0]
    bar = PlainProgress(total=100, desc="merges", stream=stream, every_seconds=30,
                        clock=lambda: now[0])  # fmt: skip
    for _ in range(100):
        now[0] += 1.0  # one merge a second: a line every 30
        bar.update(1)
    bar.close()
    bar.close()  # a second close prints nothing more
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines == ["merges: 30/100it (30s)", "merges: 60/100it (1m00s)",
                     "merges: 90/100it (1m30s)", "merges: 100it done in 1m40s"]  # fmt: skip


def test_progress_bar_is_tqdm_on_a_terminal_and_silent_when_disabled():
    terminal = Terminal()
    assert list(progress_bar(range(3), desc="counting", stream=terminal)) == [0, 1, 2]
    assert "\r" in terminal.getvalue()
    quiet = io.StringIO()
    assert list(progress_bar(range(3), desc="counting", stream=quiet, enabled=False)) == [0, 1, 2]
    assert quiet.getvalue() == ""
    plain = io.StringIO()
    assert list(progress_bar(range(3), desc="counting", stream=plain)) == [0, 1, 2]
    assert plain.getvalue() == "counting: 3it done in 0s\n"


def test_tokenizer_training_off_a_terminal_prints_no_carriage_return(capsys):
    from tinygradlm.tokenizer import Tokenizer

    Tokenizer.train(["hello world"] * 3, 270, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err and "merges:" in err and "counting chunks:" in err


# --------------------------------------------------------------------------------------------
# compiling the kernels: said on a cold cache, silent on a warm one

COMPILE_TWO_KERNELS = """
import numpy as np
from tinygradlm.monitor import announce_compilation
from tinygradlm.kernels import gelu_backward, gelu_forward

said = []
with announce_compilation(said.append):
    x = np.ones((2, 3), np.float32)
    y, cache = gelu_forward(x)
    gelu_backward(np.ones_like(y), cache)
print(repr(said))
"""


def test_compilation_is_announced_once_and_only_when_the_cache_is_cold(tmp_path):
    """Two processes share an empty Numba cache: the first compiles two kernels and says so
    once; the second loads both from the cache and says nothing."""
    from tinygradlm.monitor.compilation import COMPILING_MESSAGE

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_NUM_THREADS": "1",
           "TINYGRADLM_KERNELS": "numba"}  # fmt: skip

    def run():
        result = subprocess.run([sys.executable, "-c", COMPILE_TWO_KERNELS], env=env,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert run() == repr([COMPILING_MESSAGE])
    assert any(tmp_path.rglob("*.nbi"))  # the kernels are in the on-disk cache
    assert run() == "[]"
