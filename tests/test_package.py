"""The package as installed: what importing it pulls in, the command line, the MPI launcher."""

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, **kwargs
    )


def test_import_needs_neither_mpi_nor_hypothesis():
    code = (
        "import sys, tinygradlm, tinygradlm.autograd, tinygradlm.testing\n"
        "bad = [m for m in ('mpi4py', 'hypothesis', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr


def test_import_works_when_mpi4py_cannot_be_imported(tmp_path):
    # a stand-in mpi4py that fails on import, first on the path: importing tinygradlm must not care
    (tmp_path / "mpi4py").mkdir()
    (tmp_path / "mpi4py" / "__init__.py").write_text("raise ImportError('no MPI library')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = run_python("import tinygradlm, tinygradlm.testing; print(tinygradlm.Tensor)", env=env)
    assert result.returncode == 0, result.stderr


def test_demo_command_passes_and_shows_the_caught_bug():
    result = subprocess.run(
        [sys.executable, "-m", "tinygradlm", "check-demo"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "check_vjp failed" in result.stdout  # the planted bug is reported
    assert "input 2 (shape (8,)" in result.stdout  # ... and the bias gradient is named
    assert result.stdout.rstrip().endswith("Demo passed.")


def test_venv_mpiexec_runs_a_two_rank_allreduce():
    mpiexec = Path(sys.executable).with_name("mpiexec")
    if not mpiexec.exists():
        pytest.skip("no mpiexec beside this Python (install the dev extra: it brings mpich)")
    code = (
        "import numpy as np\n"
        "from mpi4py import MPI\n"
        "comm = MPI.COMM_WORLD\n"
        "buf = np.full(4, comm.Get_rank() + 1.0)\n"
        "comm.Allreduce(MPI.IN_PLACE, buf)\n"
        "sums = comm.gather(float(buf.sum()))\n"
        "if comm.Get_rank() == 0:\n"
        "    print(comm.Get_size(), *sums)\n"
    )
    result = subprocess.run(
        [str(mpiexec), "-n", "2", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "12.0", "12.0"]  # (1 + 2) · 4 on both ranks


def test_the_run_is_one_package_with_its_public_names():
    code = (
        "import sys\n"
        "from tinygradlm.train import (FinetuneConfig, RunHooks, TrainConfig, Trainer, export,\n"
        "    evaluate_checkpoint, finetune, load_config, load_finetune_config, train)\n"
        "from tinygradlm.dist import AllreduceSync, LocalSync, OrderedSumSync, ZeroSync, init\n"
        "assert 'mpi4py' not in sys.modules\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
