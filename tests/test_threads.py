"""Threads per process: defaults under a launcher, never more than the cores the process may use,
and the contention bench at a tiny size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinygradlm.dist import threads

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cores(monkeypatch):
    """Pretend this process may run on ``n`` cores."""

    def set_cores(n: int) -> None:
        monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(n)))

    return set_cores


def test_available_cores_is_the_affinity_mask(cores):
    cores(3)
    assert threads.available_cores() == 3


def test_cap_lowers_only_what_exceeds_the_cores():
    env = {"OMP_NUM_THREADS": "8", "NUMBA_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "junk"}
    lines = threads.cap_threads(env, 4)
    assert env == {"OMP_NUM_THREADS": "4", "NUMBA_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "junk"}
    assert len(lines) == 1 and "OMP_NUM_THREADS=8" in lines[0] and "using 4" in lines[0]
    assert threads.cap_threads(env, 4) == []


def test_without_a_launcher_only_the_cap_applies(cores):
    cores(2)
    env = {"OMP_NUM_THREADS": "16"}
    assert threads.default_threads(env) is None
    assert env == {"OMP_NUM_THREADS": "2"}
    env = {}
    assert threads.default_threads(env) is None
    assert env == {}  # nothing set when nothing was asked


def test_launcher_default_is_the_share_of_the_cores(cores):
    cores(16)
    env = {"MPI_LOCALNRANKS": "4"}
    assert threads.default_threads(env) == 4
    assert all(env[name] == "4" for name in threads.THREAD_VARS)
    cores(3)
    env = {"OMPI_COMM_WORLD_LOCAL_SIZE": "8"}
    assert threads.default_threads(env) == 1


def test_launcher_with_threads_set_above_a_bound_core(cores):
    """``-bind-to core`` with OMP_NUM_THREADS=4 exported: every rank gets one core, one thread."""
    cores(1)
    env = {"PMI_LOCAL_SIZE": "2", "OMP_NUM_THREADS": "4", "NUMBA_NUM_THREADS": "4"}
    assert threads.default_threads(env) == 1
    assert all(env[name] == "1" for name in threads.THREAD_VARS)


def test_the_process_is_told_once_on_stderr(cores, monkeypatch, capsys):
    cores(2)
    for name in (*threads.THREAD_VARS, *threads.LAUNCHER_RANK_VARS, *threads.LOCAL_SIZE_VARS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NUMBA_NUM_THREADS", "6")
    assert threads.default_threads() is None
    assert os.environ["NUMBA_NUM_THREADS"] == "2"
    assert "NUMBA_NUM_THREADS=6" in capsys.readouterr().err
    monkeypatch.setenv("NUMBA_NUM_THREADS", "6")
    monkeypatch.setenv("PMI_RANK", "3")  # not rank 0: lowered, silently
    threads.default_threads()
    assert os.environ["NUMBA_NUM_THREADS"] == "2"
    assert capsys.readouterr().err == ""


def test_set_blas_threads_keeps_to_the_cores():
    """OpenBLAS caps what it reads at start to the affinity mask; its setter does not, so ours
    does. Run in a child bound to one core, told 2 threads."""
    code = (
        "import ctypes, os, numpy\n"
        "from tinygradlm.dist.threads import set_blas_threads\n"
        "path = next(l.split()[-1] for l in open('/proc/self/maps') if 'openblas' in l.lower())\n"
        "lib = ctypes.CDLL(path)\n"
        "get = next(getattr(lib, n) for n in ('scipy_openblas_get_num_threads64_',"
        " 'openblas_get_num_threads64_', 'openblas_get_num_threads') if hasattr(lib, n))\n"
        "print(set_blas_threads(2), get())\n"
    )
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no affinity masks here")
    core = min(os.sched_getaffinity(0))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="2")
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {core}),
    )
    found, count = out.stdout.split()
    if found != "True":
        pytest.skip("NumPy is not linked to OpenBLAS here")
    assert count == "1"


def test_contention_bench_runs_at_a_tiny_size():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(ROOT / "bench" / "contention.py"), "--config", "tiny",
           "--batch", "1", "--seq", "16", "--steps", "1", "--rounds", "1", "--json"]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result["seconds"]) >= {"1t/1core", "2t/1core"}
    for secs in result["seconds"].values():
        assert set(secs) == {"forward", "backward", "clip", "optimizer", "step"}
        assert all(v >= 0 for k, v in secs.items() if k != "backward")
    assert result["ratios"]["2t/1core"]["step"] > 0


def test_busy_cores_note():
    assert threads.busy_cores_note(1, 2, 9.0) is None  # one thread waits for no other
    assert threads.busy_cores_note(2, 2, 1.5) is None  # a core was free
    note = threads.busy_cores_note(2, 2, 3.2)
    assert note is not None and "3.2" in note and "2 core(s)" in note


def test_blas_threads_read_as_openblas_does():
    assert threads._blas_threads({}, 4) == 4
    assert threads._blas_threads({"OMP_NUM_THREADS": "2"}, 4) == 2
    assert threads._blas_threads({"OPENBLAS_NUM_THREADS": "8", "OMP_NUM_THREADS": "2"}, 4) == 4


def test_contention_bench_norm_runs():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(ROOT / "bench" / "contention.py"), "--norm", "3000", "--steps", "1",
           "--rounds", "1"]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert "1 thread(s): grad_norm" in out.stdout and "2 thread(s): grad_norm" in out.stdout
