"""bench/step.py and bench/profile_step.py at the tiny config: every engine's full step is the
same model (the same loss from the same weights, before and after an AdamW update), the JSON
has its fields, and the profile accounts for the step's sections and buffers."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinygradlm import backend
from tinygradlm.model import GPTConfig

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def _load_step():
    spec = importlib.util.spec_from_file_location("bench_step", BENCH / "step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def _run(script: str, *args: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr


def test_every_engine_takes_the_same_step():
    """The same weights and batch give every engine the same loss at step 0, and after one
    clip + AdamW update the same loss again: the baselines train the same model."""
    step_module = _load_step()
    config = GPTConfig.preset("tiny")
    engines = [e for e in step_module.ENGINES if _has_torch() or not e.startswith("torch")]
    previous = backend.kernels_name()
    try:
        losses = {}
        for engine in engines:
            step, _ = step_module.build(engine, config, 2, 16)
            losses[engine] = [step(), step()]
    finally:
        backend.set_kernels(previous)
    reference = losses["fused-numba"]
    for engine, (first, second) in losses.items():
        assert first == pytest.approx(reference[0], abs=1e-5), engine
        assert second == pytest.approx(reference[1], abs=1e-4), engine
        assert second < first  # the update moved the weights downhill


def test_step_json(tmp_path):
    engines = "fused-numba,torch" if _has_torch() else "fused-numba"
    out = tmp_path / "step.json"
    _run(
        "step.py", "--config", "tiny", "--threads", "1", "--steps", "1", "--rounds", "1",
        "--engines", engines, "--gemm-repeats", "1", "--cpus", "0", "--json", str(out),
    )  # fmt: skip
    (result,) = json.loads(out.read_text())
    assert (result["config"], result["batch"], result["seq"], result["threads"]) == (
        "tiny",
        4,
        64,
        1,
    )
    assert result["gemm_gflops"] > 0
    # the BLAS the rate was measured with; the kernels the environment names, when it names any
    assert result["blas"]
    if result["openblas_coretype_env"] and result["blas"].startswith("OpenBLAS"):
        assert "(OPENBLAS_CORETYPE)" in result["blas"]
    assert result["cpus"] == "0"  # the workers ran pinned to one CPU
    rows = {r["engine"]: r for r in result["engines"]}
    assert set(rows) == set(engines.split(","))
    for r in rows.values():
        for field in ("ms_per_step", "tokens_per_s", "of_gemm", "step_mib", "peak_rss_mib"):
            assert r[field] > 0, field
        assert len(r["losses"]) == 2  # the warm-up step and one timed step
    if "torch" in rows:
        assert result["torch_gemm_gflops"] > 0 and result["torch_blas"]
        assert rows["torch"]["speed_vs_torch"] == 1.0
        assert rows["fused-numba"]["memory_vs_torch"] > 0
        assert rows["fused-numba"]["loss_step0"] == pytest.approx(
            rows["torch"]["loss_step0"], abs=1e-5
        )


def test_profile_json(tmp_path):
    out = tmp_path / "profile.json"
    _run("profile_step.py", "--config", "tiny", "--steps", "1", "--json", str(out))
    result = json.loads(out.read_text())
    timing, memory = result["time"], result["memory"]
    sections = {s["section"]: s for s in timing["sections"]}
    for name in ("fwd attn.c_attn", "fwd attention", "lm_head + loss (fused, fwd+bwd)", "adamw"):
        assert name in sections, name
    assert sections["fwd attn.c_attn"]["calls"] == GPTConfig.preset("tiny").n_layer
    # the sections' own times add up to no more than the wrapped step
    assert sum(s["seconds"] for s in timing["sections"]) <= timing["wrapped_step_seconds"]
    kinds = {b["kind"] for b in memory["buffers"]}
    assert {"parameters / gradients", "AdamW moments", "activations (workspace)"} <= kinds
    workspace = sum(b["bytes"] for b in memory["buffers"] if b["kind"] == "activations (workspace)")
    assert workspace == timing["activation_bytes"]


def test_profile_with_recompute_mlp_profiles_the_smaller_workspace(tmp_path):
    from tinygradlm.model import GPT

    out = tmp_path / "profile.json"
    _run(
        "profile_step.py", "--config", "tiny", "--steps", "1", "--recompute-mlp", "--json", str(out)
    )
    timing = json.loads(out.read_text())["time"]
    config = GPTConfig.preset("tiny")
    B, T = 4, 64
    recomputing = GPT(config, recompute_mlp=True).activation_bytes(B, T)
    assert timing["activation_bytes"] == recomputing < GPT(config).activation_bytes(B, T)
