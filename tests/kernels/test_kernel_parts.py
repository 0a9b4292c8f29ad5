"""Attention's batch split over threads (tinygradlm/kernels/_parts.py): the same bits on any
number of threads, OpenBLAS's thread count put back, a part's error raised to the caller."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinygradlm.kernels import _parts

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import json, sys
import numpy as np
from tinygradlm.blas import openblas_function
from tinygradlm.kernels import attention_backward, attention_forward
from tinygradlm.kernels._parts import part_threads
results = {}
for B in (1, 3, 4):
    rng = np.random.default_rng(B)
    qkv = rng.standard_normal((B, 70, 48)).astype(np.float32)
    dout = rng.standard_normal((B, 70, 16)).astype(np.float32)
    out, cache = attention_forward(qkv, 2)
    (dqkv,) = attention_backward(dout, cache)
    results[B] = [out.tobytes().hex(), dqkv.tobytes().hex(), part_threads(B)]
get = openblas_function("get_num_threads")
results["blas_threads_after"] = None if get is None else int(get())
print(json.dumps(results))
"""


def _child(threads: int) -> dict:
    env = {
        **os.environ,
        "NUMBA_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "OMP_NUM_THREADS": str(threads),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_attention_gives_the_same_bits_split_over_threads_and_puts_blas_back():
    one, two = _child(1), _child(2)
    for B in ("1", "3", "4"):
        assert one[B][:2] == two[B][:2], f"B={B}"
    assert [one[B][2] for B in ("1", "3", "4")] == [1, 1, 1]
    assert [two[B][2] for B in ("1", "3", "4")] == [1, 2, 2]  # a lone sequence is not split
    if two["blas_threads_after"] is not None:
        assert two["blas_threads_after"] == 2


@pytest.mark.parametrize("items, parts", [(1, 1), (3, 2), (4, 2), (7, 3), (2, 2)])
def test_the_ranges_cover_every_item_once_in_order(items, parts):
    spans = _parts.ranges(items, parts)
    assert len(spans) == parts
    assert [i for lo, hi in spans for i in range(lo, hi)] == list(range(items))
    sizes = [hi - lo for lo, hi in spans]
    assert max(sizes) - min(sizes) <= 1


def test_every_part_runs_and_the_first_error_is_raised_after_all_end():
    seen = np.zeros(7, dtype=int)

    def fill(lo, hi, part):
        seen[lo:hi] += 1

    _parts.run_parts(fill, 7, 3)
    assert seen.tolist() == [1] * 7

    ended = []

    def fail_first(lo, hi, part):
        if part == 0:
            raise ValueError(f"part {part} failed")
        ended.append(part)

    with pytest.raises(ValueError, match="part 0 failed"):
        _parts.run_parts(fail_first, 6, 3)
    assert sorted(ended) == [1, 2]
