"""Every Numba kernel gives the same bits freshly compiled and loaded from Numba's on-disk cache,
on one thread and on two: one subprocess computes all kernels' outputs with an empty
``NUMBA_CACHE_DIR`` (compiling every kernel), two more with the same, now filled, directory
(loading every kernel), and the outputs are compared bit for bit. Why they once differed is in
docs/performance.md ("Exact arithmetic")."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).with_name("kernel_bits.py")
ROOT = Path(__file__).resolve().parents[2]


def kernel_outputs(cache_dir: Path, threads: int, out: Path) -> tuple[dict, dict]:
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(cache_dir),
        "NUMBA_NUM_THREADS": str(threads),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    with np.load(out) as data:
        return {name: data[name] for name in data.files}, counts


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{"cold": ..., "warm, 1 thread": ..., "warm, 2 threads": ...}: (outputs, compile counts)."""
    tmp = tmp_path_factory.mktemp("kernel-bits")
    cache = tmp / "numba-cache"
    cache.mkdir()
    return {
        "cold": kernel_outputs(cache, 1, tmp / "cold.npz"),
        "warm, 1 thread": kernel_outputs(cache, 1, tmp / "warm1.npz"),
        "warm, 2 threads": kernel_outputs(cache, 2, tmp / "warm2.npz"),
    }


def test_the_runs_compiled_then_loaded_every_kernel(runs):
    _, cold = runs["cold"]
    assert cold["compiled"] > 0 and cold["loaded"] == 0, cold
    for name in ("warm, 1 thread", "warm, 2 threads"):
        _, warm = runs[name]
        assert warm == {"compiled": 0, "loaded": cold["compiled"]}, (name, warm)


@pytest.mark.parametrize("warm", ["warm, 1 thread", "warm, 2 threads"])
def test_every_kernel_gives_the_same_bits_compiled_and_cached(runs, warm):
    cold, _ = runs["cold"]
    cached, _ = runs[warm]
    assert sorted(cold) == sorted(cached)
    differing = []
    for name, expected in cold.items():
        actual = cached[name]
        assert actual.dtype == expected.dtype and actual.shape == expected.shape, name
        if actual.tobytes() != expected.tobytes():
            n = int(np.count_nonzero(actual.reshape(-1) != expected.reshape(-1)))
            differing.append(f"{name} ({n} of {expected.size} values)")
    assert not differing, f"{warm} differs from the freshly compiled run in: " + ", ".join(
        differing
    )


def test_attention_backward_recomputes_the_forward_probabilities_bit_for_bit(runs):
    outputs, _ = runs["cold"]
    for dtype in ("float32", "float64"):
        recomputed = outputs[f"{dtype}.attention.recomputed"]
        forward = outputs[f"{dtype}.attention.softmax_rows"]
        T = forward.shape[-1]
        causal = np.tril(np.ones((T, T), dtype=bool))
        assert recomputed[:, causal].tobytes() == forward[:, causal].tobytes()
