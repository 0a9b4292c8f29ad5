"""Ctrl-C (SIGINT) and SIGTERM: one line that says where the run stopped and how to resume it,
exit status 130 or 143, on one process and under ``mpiexec -n 2``; SIGTERM writes a checkpoint
first, from which the run resumes bit-identically; other commands stop the same way."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_train import make_data

from tinygradlm.checkpoint import latest_checkpoint, load_checkpoint
from tinygradlm.cli import report_errors
from tinygradlm.signals import Terminated

MPIEXEC = Path(sys.executable).with_name("mpiexec")
STEPS = 100_000  # a run that only a signal ends


def command(data: Path, out: Path, steps: int = STEPS, ranks: int = 1) -> list[str]:
    train = [
        sys.executable, "-m", "tinygradlm", "train", "--config", "tiny",
        f"data_dir='{data}'", f"out_dir='{out}'", "model.block_size=16", "model.n_layer=2",
        "model.n_head=2", "model.n_embd=32", "batch_size=8", "seq_len=16",
        f"max_steps={steps}", "warmup_steps=3", "checkpoint_interval=20", "eval_interval=0",
        "sample_interval=0", "log_interval=1000",
    ]  # fmt: skip
    return train if ranks == 1 else [str(MPIEXEC), "-n", str(ranks), *train]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def signalled_run(data: Path, out: Path, signum: int, *, ranks: int = 1, steps: int = STEPS):
    """Start a run, send ``signum`` once its first checkpoint is written (to mpiexec, which
    passes it to every rank, as a terminal's Ctrl-C or Slurm's SIGTERM reach every process);
    returns (exit status, stdout, stderr)."""
    proc = subprocess.Popen(
        command(data, out, steps, ranks), env=ENV, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.time() + 240
    while latest_checkpoint(out) is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.1)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=240)
    return proc.returncode, stdout, stderr


def stop_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if "stopped at step" in line]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("signals") / "data")


def test_ctrl_c_prints_one_line_and_exits_130(data, tmp_path):
    status, _, stderr = signalled_run(data, tmp_path / "run", signal.SIGINT)
    assert status == 130, stderr
    [line] = stop_lines(stderr)
    last = latest_checkpoint(tmp_path / "run")
    assert f"last checkpoint {last}" in line and "run the same command to resume" in line
    assert "(Ctrl-C)" in line


def test_sigterm_writes_a_checkpoint_that_resumes_bit_identically(data, tmp_path):
    steps = 300
    status, _, stderr = signalled_run(data, tmp_path / "stopped", signal.SIGTERM, steps=steps)
    assert status == 143, stderr
    [line] = stop_lines(stderr)
    stopped_at = int(line.split("stopped at step ")[1].split()[0])
    assert stopped_at < steps, "the run finished before the signal: nothing was tested"
    written = latest_checkpoint(tmp_path / "stopped")
    assert load_checkpoint(written).step == stopped_at  # written then, or at that step already
    periodic = stopped_at % 20 == 0  # checkpoint_interval
    assert f"{'last' if periodic else 'wrote'} checkpoint {written}" in line

    for out in (tmp_path / "stopped", tmp_path / "straight"):
        done = subprocess.run(
            command(data, out, steps), env=ENV, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
    a = load_checkpoint(latest_checkpoint(tmp_path / "straight"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "stopped"))
    assert a.step == b.step == steps
    for name, value in a.model_state.items():
        np.testing.assert_array_equal(value, b.model_state[name], err_msg=name)


@pytest.mark.skipif(not MPIEXEC.exists(), reason="no mpiexec beside this Python")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_under_mpiexec_the_ranks_stop_together_with_one_message(data, tmp_path, signum):
    out = tmp_path / "run"
    status, _, stderr = signalled_run(data, out, signum, ranks=2)
    assert status == 128 + signum, stderr
    [line] = stop_lines(stderr)  # one line for the job, not one per rank
    assert "aborting" not in stderr
    stopped_at = int(line.split("stopped at step ")[1].split()[0])
    if signum == signal.SIGTERM:
        assert load_checkpoint(latest_checkpoint(out)).step == stopped_at


@pytest.mark.parametrize(
    "interrupt, status, words",
    [(KeyboardInterrupt(), 130, "stopped (Ctrl-C)"), (Terminated(), 143, "stopped (SIGTERM)")],
)
def test_other_commands_stop_with_one_line(interrupt, status, words, capsys):
    def handler(_args):
        raise interrupt

    assert report_errors("eval", handler, None) == status
    assert capsys.readouterr().err == f"tinygradlm eval: {words}\n"


def big_corpus(path: Path) -> Path:
    """Some megabytes of text: minutes of reading, tokenizer training and encoding."""
    rng = np.random.default_rng(0)
    words = [f"w{i}{'xyz'[i % 3] * (i % 5)}" for i in range(3000)]
    words = np.array(words + "the of and to in is that it was for".split() * 50)
    path.mkdir()
    for k in range(40):
        lines = [" ".join(rng.choice(words, 12)) for _ in range(4000)]
        (path / f"part{k}.txt").write_text("\n".join(lines) + "\n")
    return path


def test_prepare_stopped_by_a_signal_leaves_the_earlier_output(tmp_path):
    out = tmp_path / "out"
    corpus = big_corpus(tmp_path / "corpus")
    base = [sys.executable, "-u", "-m", "tinygradlm", "prepare", "--out", str(out)]
    first = subprocess.run([*base, "--vocab-size", "300"], env=ENV, capture_output=True)
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for signum in (signal.SIGINT, signal.SIGTERM):
        proc = subprocess.Popen(
            [*base, str(corpus), "--vocab-size", "4000", "--overwrite"], env=ENV, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        for line in proc.stdout:  # the documents are read: the work has begun
            if "training the tokenizer" in line:
                break
        time.sleep(0.5)
        assert proc.poll() is None, "prepare finished before the signal: nothing was tested"
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signum, stderr
        assert "Traceback" not in stderr
        assert stderr.strip().splitlines()[-1].startswith("tinygradlm prepare: stopped")
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        assert sorted(os.listdir(tmp_path)) == ["corpus", "out"]  # no temporary left
