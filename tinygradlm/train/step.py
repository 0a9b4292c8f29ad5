"""One optimizer step, one path for every kind of run::

    micro-batches → forward/backward → gradient sync → unscale / overflow check → clip → guard
    → update

On a diagnostic step (``diagnostics_interval``) the step also measures each layer's gradient
norm (before clipping), update and parameter norms, and the residual stream's RMS
(``tinygradlm.train.diagnostics``), returned as ``layers``.

The gradient sync object (``tinygradlm.dist.sync``: one process, bucketed allreduce, the
deterministic ordered sum, or ZeRO-1) decides how the micro-batches' gradients are computed and
combined over the ranks, whose part of the gradient this rank updates, and how the update
reaches every rank; the rest is the same for all. Each micro-batch's gradient is that of
``loss_scale / grad_accum_steps · loss`` (the fp16 loss scale, 1 otherwise), so the sum over the
micro-steps is the gradient of the step's mean loss.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Any

import numpy as np

from ..optim import clip_to_norm, lr_schedule
from .guard import Action


def train_step(run: Any) -> dict[str, Any]:
    """One optimizer step of ``run`` (a :class:`~tinygradlm.train.loop.Trainer`); returns the
    step's loss, learning rate, gradient norm, the guard's action, with several ranks the
    communication metrics, and ``layers``: the per-layer record's fields on a diagnostic step,
    else None."""
    cfg, timer, sync, scaler = run.config, run.timer, run.sync, run.scaler
    timer.reset()
    step = run.step + 1
    run.dist.set_step(step)
    run.hooks.before_step(step, run.rank)
    scale = scaler.scale  # 1 unless fp16
    diagnose = run.diagnostics.due(step)  # per-layer norms and the stream (train.diagnostics)
    with timer("data"):
        batches = [run.train_loader.next_batch() for _ in range(cfg.grad_accum_steps)]
    loss_sum = sync.gradients(
        batches,
        _forward_backward(run),
        scale / cfg.grad_accum_steps,
        lambda: run.hooks.before_gradient_sync(step, run.rank),
    )
    comm = comm_metrics(run) if run.dist.enabled else {}
    loss = loss_sum / cfg.grad_accum_steps
    with timer("optim"):
        lr = learning_rate(cfg, run.step, run.guard.lr_factor)
        grads = sync.grads  # what this rank updates: the buffer that trains, or its shard
        if run.grad_mask is not None:  # frozen parameters get no gradient, so no update
            grads *= sync.local_part(run.grad_mask)
        found_finite = scaler.unscale_and_check(grads)
        probe = run.diagnostics.begin(sync, run.optimizer.params) if diagnose else None
        updates = None  # the update's squares per layer group, measured on a diagnostic step
        if scaler.is_overflow(loss, found_finite):
            # fp16 gradients overflowed the scale: skip, back off; the guard is not told
            scaler.update(False)
            norm, action = None, Action.OVERFLOW
        else:
            norm = sync.global_norm()
            clip_to_norm(grads, norm, cfg.grad_clip)
            action = run.guard.check(loss, norm)
            if action == Action.OK:
                updates = sync.update(lr, None if probe is None else probe.measure)
            if math.isfinite(loss):
                scaler.update(found_finite)
        layers = (
            None
            if probe is None
            else probe.finish(run.optimizer.params, updates, run.model, run.dist)
        )
    run.step += 1
    return {
        "loss": loss,
        "lr": lr,
        "grad_norm": norm,
        "action": action,
        "loss_scale": scale,
        "layers": layers,
        **comm,
    }


def _forward_backward(run: Any) -> Any:
    """``forward_backward(x, y, *, accumulate, loss_scale, on_grads_final=None) -> loss`` on
    the run's model (``on_grads_final``: the sync's hook into the backward, for overlap)."""
    # fp16 overflows are expected and handled by the step: no NumPy warnings for them
    quiet = (
        (lambda: np.errstate(over="ignore", invalid="ignore"))
        if run.scaler.enabled
        else nullcontext
    )

    def forward_backward(
        x: np.ndarray,
        y: np.ndarray,
        *,
        accumulate: bool,
        loss_scale: float,
        on_grads_final: Any = None,
    ):
        with quiet():
            loss, _ = run.model.forward_backward(
                x,
                y,
                engine=run.config.engine,
                accumulate=accumulate,
                loss_scale=loss_scale,
                on_grads_final=on_grads_final,
            )
        return loss

    return forward_backward


def learning_rate(config: Any, step: int, lr_factor: float) -> float:
    """The learning rate of the step after ``step``: the schedule, scaled down by the guard's
    ``lr_factor`` after a rollback."""
    return lr_factor * lr_schedule(
        step,
        max_lr=config.lr,
        min_lr=config.min_lr,
        warmup_steps=config.warmup_steps,
        max_steps=config.max_steps,
    )


def comm_metrics(run: Any) -> dict[str, Any]:
    """Several ranks: the step's gradient traffic per rank (``comm_bytes``, the sync's estimate)
    and ``imbalance``: max over ranks / min over ranks of this step's forward/backward seconds
    (one Allreduce MAX of two floats), 1.0 when perfectly balanced."""
    seconds = run.timer.split().get("fwd_bwd", 0.0)
    with run.timer("comm"):
        both = run.dist.allreduce_max_(np.array([seconds, -seconds], dtype=np.float64))
    slowest, fastest = float(both[0]), float(-both[1])
    imbalance = slowest / fastest if fastest > 0 else float("inf")
    return {"comm_bytes": run.sync.comm_bytes(), "imbalance": imbalance}
