"""The named runs ``tinygradlm train PRESET`` starts: a model preset and the loop's settings
that suit it (each checked like a TOML file's, by ``load_config``). Their schedules are relative
(``warmup_ratio``; ``min_lr`` is ``lr`` / 10 when unset), so that one override of ``max_steps``
or ``lr`` is enough."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # about a minute and a half on 2 cores: the README's demo
    "tiny": {
        "model": {"preset": "tiny", "block_size": 128, "n_layer": 4, "n_head": 4, "n_embd": 128},
        "batch_size": 16,
        "seq_len": 128,
        "max_steps": 500,
        "lr": 3e-3,
        "warmup_ratio": 0.06,  # 30 steps
        "eval_interval": 50,
        "sample_interval": 150,
        "checkpoint_interval": 100,
    },
    # the benchmark model: 4 layers, 4 heads, width 256, T=256
    "small": {
        "model": {"preset": "small"},
        "batch_size": 8,
        "seq_len": 256,
        "max_steps": 2000,
        "lr": 1e-3,
        "warmup_ratio": 0.05,  # 100 steps
        "eval_interval": 200,
        "sample_interval": 500,
        "checkpoint_interval": 500,
    },
    # GPT-2 124M's shape (nanoGPT's schedule, scaled to what a CPU cluster can run)
    "gpt2": {
        "model": {"preset": "gpt2", "padded_vocab_size": 50304},
        "batch_size": 8,
        "seq_len": 1024,
        "grad_accum_steps": 8,
        "max_steps": 5000,
        "lr": 6e-4,
        "warmup_ratio": 0.14,  # 700 steps
        "eval_interval": 250,
        "sample_interval": 1000,
        "checkpoint_interval": 500,
    },
}
