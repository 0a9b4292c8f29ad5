"""tinygradlm.monitor: the metrics file stays strict JSON Lines (non-finite values included),
survives a crash mid-write and a resume without duplicated steps; the step timer, the MFU
helpers and the progress line report what they say; plot_run writes PNGs."""

import io
import json
import math
import sys

import numpy as np
import pytest

from tinygradlm.errors import MetricsError
from tinygradlm.monitor import (
    MetricsLogger,
    ProgressLine,
    StepTimer,
    format_duration,
    measure_gemm_peak,
    mfu,
    plot_run,
    plots,
    read_metrics,
    timing,
)

SPLIT = {"data": 0.01, "fwd_bwd": 0.3, "optim": 0.02, "comm": 0.0}


def log_steps(logger, steps, loss=3.0):
    for step in steps:
        logger.log_train(
            step, loss=loss, lr=1e-3, grad_norm=0.5, tokens_per_s=1000.0, mfu=0.5, time=SPLIT
        )


def strict_lines(path):
    """Every line parsed as strict JSON: NaN and Infinity literals refused."""

    def refuse(name):
        raise ValueError(name)

    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


# --------------------------------------------------------------------------------------------
# the metrics file
# --------------------------------------------------------------------------------------------


def test_records_are_written_as_json_lines_and_read_back(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        train = logger.log_train(
            1, loss=3.5, lr=3e-4, grad_norm=0.9, tokens_per_s=5845.0, mfu=0.54, time=SPLIT
        )
        val = logger.log_val(1, loss=math.log(20.0))
        event = logger.log_event(1, "checkpoint", "saved ckpt_00000001", path="ckpt_00000001")
    assert train["kind"] == "train" and train["time"] == SPLIT
    assert val["perplexity"] == pytest.approx(20.0)
    assert event == {
        "kind": "event",
        "step": 1,
        "event": "checkpoint",
        "message": "saved ckpt_00000001",
        "path": "ckpt_00000001",
    }
    assert strict_lines(tmp_path / "metrics.jsonl") == [train, val, event]
    assert read_metrics(tmp_path) == [train, val, event]
    assert read_metrics(tmp_path / "metrics.jsonl") == [train, val, event]


def test_each_line_is_flushed_as_it_is_logged(tmp_path):
    logger = MetricsLogger(tmp_path)
    log_steps(logger, [1, 2])
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]  # before close
    logger.close()


def test_non_finite_values_are_strings_and_read_back_as_floats(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        logger.log_train(
            7,
            loss=float("nan"),
            lr=1e-3,
            grad_norm=np.float32("inf"),
            tokens_per_s=100.0,
            mfu=None,
            time=SPLIT,
            scale=[-math.inf, 1.0],
        )
        logger.log_val(7, loss=1000.0)  # perplexity overflows to inf
        logger.log_event(7, "skip", "nan")  # text fields stay text
    written = strict_lines(tmp_path / "metrics.jsonl")
    assert written[0]["loss"] == "nan" and written[0]["grad_norm"] == "inf"
    assert written[0]["scale"] == ["-inf", 1.0] and written[0]["mfu"] is None
    assert written[1]["perplexity"] == "inf"
    train, val, event = read_metrics(tmp_path)
    assert math.isnan(train["loss"]) and train["grad_norm"] == math.inf
    assert train["scale"] == [-math.inf, 1.0]
    assert val["perplexity"] == math.inf
    assert event["message"] == "nan"


def test_numpy_scalars_are_written_as_plain_numbers(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        logger.log_train(
            np.int64(3),
            loss=np.float32(3.412),
            lr=np.float64(3e-4),
            grad_norm=np.array(0.5, dtype=np.float32),
            tokens_per_s=1.0,
            mfu=None,
            time={"data": np.float32(0.25)},
            skipped=np.bool_(False),
        )
    line = (tmp_path / "metrics.jsonl").read_text()
    assert '"loss": 3.412,' in line  # the float32's shortest decimal, not 3.4119999408721924
    (record,) = read_metrics(tmp_path)
    assert record["step"] == 3 and record["grad_norm"] == 0.5 and record["skipped"] is False


def test_a_value_json_cannot_hold_is_a_type_error_naming_the_field(tmp_path):
    with MetricsLogger(tmp_path) as logger, pytest.raises(TypeError, match=r"'time'.*'data'"):
        logger.log_train(
            1, loss=1.0, lr=1.0, grad_norm=1.0, tokens_per_s=1.0, mfu=None, time={"data": object()}
        )
    with pytest.raises(ValueError, match="kind"):
        MetricsLogger(tmp_path).log({"step": 1})


def test_a_truncated_last_line_is_tolerated(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        log_steps(logger, [1, 2, 3])
    path = tmp_path / "metrics.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"kind": "train", "step": 4, "loss": 2.9')  # a crash mid-write
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    # a complete last line that only lacks its newline is read
    with open(path, "ab") as f:
        f.write(b"}")
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4]


def test_a_truncated_multibyte_character_at_the_end_is_tolerated(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        logger.log_event(1, "note", "ok")
    with open(tmp_path / "metrics.jsonl", "ab") as f:
        f.write('{"kind": "event", "message": "é'.encode()[:-1])
    assert len(read_metrics(tmp_path)) == 1


@pytest.mark.parametrize(
    "bad_line",
    [
        b'{"kind": "train", "step": 2, "loss": 2.9',  # truncated, but not the last line
        b'{"kind": "train", "step": 2, "loss": NaN}',  # not strict JSON
        b"",  # a blank line
        b"[1, 2]",  # not an object
        b'{"step": 2}',  # no kind
        b'{"kind": "train", "step": 2, "loss": 1e400}',  # the writer spells infinity "inf"
        b'{"kind": "train", "step": 2, "loss": 1' + b"0" * 400 + b"}",  # beyond 64 bits
        b'{"kind": "train", "step": 2, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"kind": "train", "step": 2, "loss": "\xff"}',  # not UTF-8
    ],
)
def test_a_bad_line_before_the_last_is_an_error_naming_file_and_line(tmp_path, bad_line):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(
        b'{"kind": "train", "step": 1}\n' + bad_line + b'\n{"kind": "val", "step": 3}\n'
    )
    with pytest.raises(MetricsError, match=r"metrics\.jsonl, line 2: "):
        read_metrics(tmp_path)


def test_a_missing_metrics_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"metrics\.jsonl"):
        read_metrics(tmp_path)


def test_resume_drops_the_records_after_the_checkpoint_step(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        for step in range(1, 11):
            log_steps(logger, [step])
            if step % 5 == 0:
                logger.log_val(step, loss=2.0)
                logger.log_event(step, "checkpoint", f"ckpt at {step}")
    path = tmp_path / "metrics.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"kind": "train", "st')  # the crash
    before = path.read_bytes().split(b"\n")

    with MetricsLogger(tmp_path, resume_step=5) as logger:  # the last checkpoint was at 5
        log_steps(logger, [6, 7])
    records = read_metrics(tmp_path)
    assert [(r["kind"], r["step"]) for r in records] == [
        *[("train", s) for s in range(1, 6)],
        ("val", 5),
        ("event", 5),
        ("train", 6),
        ("train", 7),
    ]
    # the kept lines are byte for byte the old ones, and no temporary file is left behind
    assert path.read_bytes().split(b"\n")[:7] == before[:7]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


def test_resume_without_a_metrics_file_starts_one_and_rollback_can_truncate(tmp_path):
    logger = MetricsLogger(tmp_path, resume_step=0)
    log_steps(logger, [1, 2, 3])
    logger.truncate_after(1)
    log_steps(logger, [2])
    logger.close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
    with pytest.raises(ValueError, match="integer >= 0"):
        MetricsLogger(tmp_path, resume_step=-1)


def test_a_new_run_replaces_the_metrics_file(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        log_steps(logger, [1, 2])
    with MetricsLogger(tmp_path) as logger:
        log_steps(logger, [1])
    assert [r["step"] for r in read_metrics(tmp_path)] == [1]


def test_a_disabled_logger_writes_nothing_but_returns_records(tmp_path):
    logger = MetricsLogger(tmp_path / "run", enabled=False, resume_step=3)
    assert logger.log_val(1, loss=0.0)["perplexity"] == 1.0
    logger.close()
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------
# timing and MFU
# --------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def test_step_timer_sections_accumulate_and_nested_time_counts_once():
    clock = FakeClock()
    timer = StepTimer(clock=clock)
    assert timer.split() == {"data": 0.0, "fwd_bwd": 0.0, "optim": 0.0, "comm": 0.0}
    with timer("data"):
        clock.advance(0.25)
    with timer("fwd_bwd"):
        clock.advance(1.0)
        with timer("comm"):  # an allreduce overlapped with backward
            clock.advance(0.5)
        clock.advance(0.25)
    clock.advance(0.125)  # outside any section
    with timer("data"):
        clock.advance(0.25)
    with timer("eval"):  # a name not given up front
        clock.advance(1.0)
    split = timer.split()
    assert split == {"data": 0.5, "fwd_bwd": 1.25, "optim": 0.0, "comm": 0.5, "eval": 1.0}
    assert timer.elapsed() == sum(split.values()) + 0.125
    timer.reset()
    assert timer.split()["data"] == 0.0 and timer.elapsed() == 0.0


def test_step_timer_records_a_section_left_by_an_exception():
    clock = FakeClock()
    timer = StepTimer(clock=clock)
    with pytest.raises(RuntimeError), timer("optim"):
        clock.advance(2.0)
        raise RuntimeError
    assert timer.split()["optim"] == 2.0


def test_step_timer_with_the_real_clock_sums_to_at_most_the_elapsed_time():
    timer = StepTimer()
    for name in ("data", "fwd_bwd", "optim"):
        with timer(name):
            sum(range(10_000))
    assert 0 < sum(timer.split().values()) <= timer.elapsed()


def test_mfu_is_achieved_flops_over_the_peak():
    assert mfu(2e9, 0.5, 8e9) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="seconds"):
        mfu(1e9, 0.0, 1e9)
    with pytest.raises(ValueError, match="peak_flops"):
        mfu(1e9, 1.0, float("nan"))


def test_measure_gemm_peak_is_a_plausible_rate_and_cached():
    peak = measure_gemm_peak(32, 64, vocab_size=96, max_seconds=0.05)
    assert math.isfinite(peak.flops) and 1e7 < peak.flops < 1e14  # FLOP/s, not GFLOP/s
    hits = timing._measure_gemm_peak.cache_info().hits
    assert measure_gemm_peak(32, 64, vocab_size=96, max_seconds=0.05) == peak
    assert timing._measure_gemm_peak.cache_info().hits == hits + 1
    with pytest.raises(ValueError, match="rows"):
        measure_gemm_peak(32, 0)


# --------------------------------------------------------------------------------------------
# the progress line
# --------------------------------------------------------------------------------------------

RECORD = {
    "kind": "train",
    "step": 120,
    "loss": 3.4123,
    "lr": 3e-4,
    "grad_norm": 0.9113,
    "tokens_per_s": 5845.2,
    "mfu": 0.541,
    "time": SPLIT,
}


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_line_format():
    line = ProgressLine(2000).format(RECORD, eta=252.0)
    assert line == (
        "step  120/2000 | loss 3.412 | lr 3.0e-04 | norm 0.911 | 5,845 tok/s | mfu 54% | eta 4m12s"
    )
    sparse = {"step": 3, "loss": float("nan"), "lr": 1e-3, "grad_norm": None, "mfu": None}
    assert ProgressLine(10).format(sparse) == "step  3/10 | loss nan | lr 1.0e-03"


def test_progress_line_prints_every_k_steps_with_an_eta_when_not_a_terminal():
    clock, out = FakeClock(), io.StringIO()
    progress = ProgressLine(100, every=10, stream=out, clock=clock)
    printed = []
    for step in range(1, 101):
        printed.append(progress.update({**RECORD, "step": step}))
        clock.advance(2.0)
    assert [i + 1 for i, line in enumerate(printed) if line] == [1, *range(10, 101, 10)]
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and "\r" not in out.getvalue()
    assert "eta" not in lines[0]  # no rate yet
    assert lines[1].endswith("eta 3m00s")  # 90 steps left at 2 s a step
    assert lines[-1].endswith("eta 0s")


def test_progress_line_overwrites_on_a_terminal_and_messages_get_their_own_line():
    clock, out = FakeClock(), Terminal()
    progress = ProgressLine(20, every=1, stream=out, clock=clock)
    progress.update({**RECORD, "step": 1})
    clock.advance(1.0)
    shorter = {**RECORD, "step": 2, "mfu": None, "tokens_per_s": None}
    progress.update(shorter)
    progress.message("val loss 3.100")
    progress.update({**RECORD, "step": 3})
    progress.close()
    first = ProgressLine(20).format({**RECORD, "step": 1})
    second = ProgressLine(20).format(shorter, eta=18.0)  # 1 s a step
    third = ProgressLine(20).format({**RECORD, "step": 3}, eta=8.5)  # 0.5 s a step
    assert len(second) < len(first)
    assert out.getvalue() == (f"\r{first}\r{second.ljust(len(first))}\nval loss 3.100\n\r{third}\n")


def test_progress_line_writes_to_sys_stdout_as_it_is_at_the_time(capsys):
    ProgressLine(5).update({**RECORD, "step": 1})
    ProgressLine(5, enabled=False).update({**RECORD, "step": 1})
    assert capsys.readouterr().out.startswith("step 1/5 | loss 3.412")
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0s"), (12.0, "12s"), (252.0, "4m12s"), (3780.0, "1h03m"), (math.inf, "?")],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


# --------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------


def write_run_with_a_rollback(run_dir):
    """33 steps; steps 31–33 are non-finite, the guard rolls back to the checkpoint at 30, and
    the run continues from 31 to 130 at half the learning rate."""
    rng = np.random.default_rng(0)
    with MetricsLogger(run_dir) as logger:

        def train(step, factor, loss=None):
            lr = factor * 6e-4 * min(1.0, step / 10)
            logger.log_train(
                step,
                loss=4.0 * math.exp(-step / 40) + 2 + 0.1 * rng.standard_normal()
                if loss is None
                else loss,
                lr=lr,
                grad_norm=float(np.exp(rng.standard_normal())),
                tokens_per_s=5000.0 + 100 * rng.standard_normal(),
                mfu=0.5,
                time=SPLIT,
            )

        for step in range(1, 34):
            train(step, 1.0, loss=math.nan if step > 30 else None)
            if step > 30:
                logger.log_event(step, "skip", "non-finite loss")
            if step % 10 == 0:
                logger.log_val(step, loss=4.0 * math.exp(-step / 40) + 2.1)
        logger.log_event(33, "rollback", "3 non-finite steps: back to step 30, lr x0.5")
        for step in range(31, 131):
            train(step, 0.5)
            if step % 10 == 0:
                logger.log_val(step, loss=4.0 * math.exp(-step / 40) + 2.1)


def test_records_a_rollback_abandoned_are_the_redone_steps():
    records = [
        {"kind": "val", "step": 0},  # the initial parameters
        {"kind": "train", "step": 1},
        {"kind": "train", "step": 2},
        {"kind": "val", "step": 2},  # the checkpoint the rollback returns to
        {"kind": "event", "step": 2, "event": "checkpoint"},
        {"kind": "train", "step": 3},  # redone after the rollback
        {"kind": "val", "step": 3},  # redone too
        {"kind": "train", "step": 4},  # redone
        {"kind": "event", "step": 4, "event": "rollback"},
        {"kind": "train", "step": 3},
        {"kind": "train", "step": 4},
    ]
    flags = plots._abandoned(records)
    assert [i for i, flag in enumerate(flags) if flag] == [5, 6, 7]


def test_plot_run_writes_png_curves(tmp_path):
    pytest.importorskip("matplotlib")
    write_run_with_a_rollback(tmp_path / "run")
    written = plot_run(tmp_path / "run", out=tmp_path / "plots")
    names = ["loss.png", "lr.png", "grad_norm.png", "throughput.png"]
    assert written == [tmp_path / "plots" / name for name in names]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_run(tmp_path / "run")[0] == tmp_path / "run" / "loss.png"


def test_plot_run_leaves_out_curves_without_data_and_refuses_an_empty_run(tmp_path):
    pytest.importorskip("matplotlib")
    with MetricsLogger(tmp_path) as logger:
        logger.log_val(10, loss=3.0)
        logger.log_val(20, loss=2.5)
    assert [p.name for p in plot_run(tmp_path)] == ["loss.png"]
    with MetricsLogger(tmp_path) as logger:
        logger.log_event(0, "start")
    with pytest.raises(MetricsError, match="no train or val records"):
        plot_run(tmp_path)


def test_plot_run_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    with MetricsLogger(tmp_path) as logger:
        log_steps(logger, [1])
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'tinygradlm\[plot\]'"):
        plot_run(tmp_path)


def test_an_interrupted_plot_leaves_the_earlier_png(tmp_path):
    from tinygradlm.monitor.plots import save_png

    class Interrupted:
        def savefig(self, out, format):
            out.write(b"\x89PNG half an ima")
            raise KeyboardInterrupt

    class Complete:
        def savefig(self, out, format):
            out.write(b"\x89PNG new")

    target = tmp_path / "loss.png"
    target.write_bytes(b"\x89PNG earlier")
    with pytest.raises(KeyboardInterrupt):
        save_png(Interrupted(), target)
    assert target.read_bytes() == b"\x89PNG earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png"]
    save_png(Complete(), target)
    assert target.read_bytes() == b"\x89PNG new"
