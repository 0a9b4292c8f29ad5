"""Per-layer diagnostics: how the signal fares with depth, measured every
``diagnostics_interval`` steps (and at the last step) and logged as one ``"layers"`` record.

Per layer group of the trained buffer (``tinygradlm.dist.sync.layer_groups``: ``wte``, ``wpe``,
``h.0`` … ``h.{L-1}``, ``ln_f``; a LoRA run's groups are its adapters' blocks):

    grad_norm      ‖g‖ of the gradient the update reads, before clipping (unscaled under fp16,
                   reduced over the ranks: the sync's ``group_norms``)
    update_ratio   ‖θ_after − θ_before‖ / ‖θ_before‖ over the step's update (0 when skipped)
    param_norm     ‖θ‖ after the step

and per depth, after the embedding and after each block (``act_layers``: ``embed``, ``h.0`` …):

    act_rms        √(mean x²) of the residual stream in the step's last forward (the last
                   micro-batch; with several ranks over every rank's slice), from
                   ``GPT.stream_rms``; left out under the autograd engine, which keeps no stream

A diagnostic step measures the update as the optimizer applies it (``AdamW.step``'s
``measure``: the update in pieces, each piece's old values copied into one 16 MB scratch, the
same bits as one whole update), not by copying the whole buffer (475 MiB at GPT-2 124M); every
rank takes part in the small allreduces (the group norms and the updates' sums under ZeRO-1,
the stream's mean squares).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..dist import Dist
from ..dist.sync import LocalSync, layer_groups, range_norms


class LayerDiagnostics:
    """Which steps are diagnosed, and the measurement of one: :meth:`begin` after the gradient
    is final and unscaled (before clipping), :meth:`finish` after the update."""

    def __init__(
        self,
        layout: Mapping[str, tuple[int, ...]],
        interval: int,
        last_step: int,
        with_stream: bool,
    ) -> None:
        self.groups = layer_groups(layout)  # (name, lo, hi) of the trained buffer
        self.interval, self.last_step = interval, last_step
        self.with_stream = with_stream  # the fused engine keeps the residual stream

    def due(self, step: int) -> bool:
        """Every ``interval`` steps and the last; never when ``interval`` is 0."""
        return bool(self.interval) and (step % self.interval == 0 or step == self.last_step)

    def begin(self, sync: LocalSync, params: np.ndarray) -> _Probe:
        """The group norms of the gradient the sync holds now (final, unscaled, not yet
        clipped) and of ``params`` (the whole trained buffer) before the update."""
        return _Probe(self, sync.group_norms(self.groups), params)


class _Probe:
    """One diagnostic step in progress: the gradient's and the parameters' group norms before
    the update, and the ranges whose update the sync measures (:attr:`measure`)."""

    def __init__(self, owner: LayerDiagnostics, grad_norms: np.ndarray, params: np.ndarray) -> None:
        self.owner, self.grad_norms = owner, grad_norms
        self.before_norms = range_norms(params, owner.groups)
        self.measure = [(lo, hi) for _, lo, hi in owner.groups]  # for ``sync.update``

    def finish(
        self, params: np.ndarray, update_squares: np.ndarray | None, model: Any, dist: Dist
    ) -> dict[str, Any]:
        """The record's fields, with ``params`` after the step, ``update_squares`` the sync's
        measure of the update per group (None: the step was skipped, no update), and the
        residual stream of ``model``'s last forward (``dist``: its mean over the ranks, every
        rank calling)."""
        groups = self.owner.groups
        change = np.zeros(len(groups)) if update_squares is None else np.sqrt(update_squares)
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero group: 0/0 is nan
            ratio = np.where(change == 0, 0.0, change / self.before_norms)
        fields: dict[str, Any] = {
            "layers": [name for name, _, _ in groups],
            "grad_norm": self.grad_norms.tolist(),
            "update_ratio": ratio.tolist(),
            "param_norm": range_norms(params, groups).tolist(),
        }
        if self.owner.with_stream:
            fields.update(_stream_fields(model, dist))
        return fields


def _stream_fields(model: Any, dist: Dist) -> dict[str, Any]:
    """``act_layers`` and ``act_rms``: the stream's mean squares averaged over the ranks that
    ran a forward (equal slices: the RMS over the global micro-batch), one Allreduce of L+2
    float64s."""
    L = model.config.n_layer
    rms = model.stream_rms()
    sums = np.zeros(L + 2, dtype=np.float64)  # per depth Σ over ranks of mean x², then ranks
    if rms is not None:
        sums[:-1], sums[-1] = rms**2, 1.0
    dist.allreduce_sum_(sums)
    act_rms = np.sqrt(sums[:-1] / sums[-1]) if sums[-1] else np.full(L + 1, np.nan)
    return {
        "act_layers": ["embed", *(f"h.{i}" for i in range(L))],
        "act_rms": act_rms.tolist(),
    }
