"""The named sweeps ``tinygradlm sweep --config PRESET`` runs, each the tables of a sweep TOML
file (``[base]``, ``[grid]``, ``[sweep]``; docs/scaling.md).

``depth``: how depth, residual connections and the layer norms' place change what a narrow GPT
learns from a fixed budget, on the embedded corpus. 5 depths × 2 × 2 = 20 runs of 1,000 steps
of 16 × 64 tokens at width 64, every run with the same seed, data order, tokens and learning
rate; sized from a few timed steps per depth to finish within about 20 minutes on 2 cores as 2
ranks (``mpiexec -n 2``), each training its share of the runs on one core.

``width``: the same budget along the other axis, where size still pays at this scale: the
GPT-2 variant at 2 layers (the depth the ``depth`` study found best) and widths 16 to 256, 9 runs,
the scaling law fitted along the width (about 6 minutes as 2 ranks on 2 cores).

``depth-cluster``: the same question at a width and budget worth a CPU cluster's time (not run
here): 6 depths × 2 × 3 = 36 runs at width 256, 2,000 steps of 32 × 256 tokens each.
"""

from __future__ import annotations

from typing import Any

# the loop of every run of ``depth`` and ``width``: one seed, data order, budget and schedule
LAPTOP_LOOP: dict[str, Any] = {
    "batch_size": 16,
    "seq_len": 64,
    "max_steps": 1000,
    "lr": 3e-3,
    "warmup_ratio": 0.1,
    "eval_interval": 250,
    "eval_batches": 4,
    "sample_interval": 0,
    "checkpoint_interval": 250,
    "log_interval": 100,
    "seed": 0,
}

SWEEP_PRESETS: dict[str, dict[str, Any]] = {
    "depth": {
        "base": {
            "model": {"preset": "tiny", "block_size": 64, "n_head": 2, "n_embd": 64},
            **LAPTOP_LOOP,
        },
        "grid": {
            "n_layer": [1, 2, 4, 8, 16],
            "residual": [True, False],
            "norm": ["pre", "post"],
        },
        "sweep": {"parallel": "runs", "scale": "n_layer", "eval_batches": 32},
    },
    "width": {
        "base": {
            "model": {"preset": "tiny", "block_size": 64, "n_layer": 2, "n_head": 2},
            **LAPTOP_LOOP,
        },
        "grid": {"n_embd": [16, 24, 32, 48, 64, 96, 128, 192, 256]},
        "sweep": {"parallel": "runs", "scale": "n_embd", "eval_batches": 32},
    },
    "depth-cluster": {
        "base": {
            "model": {"preset": "small", "block_size": 256, "n_head": 4, "n_embd": 256},
            "batch_size": 32,
            "seq_len": 256,
            "max_steps": 2000,
            "lr": 1e-3,
            "warmup_ratio": 0.05,
            "eval_interval": 250,
            "sample_interval": 0,
            "checkpoint_interval": 250,
            "log_interval": 50,
            "seed": 0,
        },
        "grid": {
            "n_layer": [1, 2, 4, 8, 16, 32],
            "residual": [True, False],
            "norm": ["pre", "post", "none"],
        },
        "sweep": {"parallel": "runs", "scale": "n_layer", "eval_batches": 64},
    },
}
