"""The training loop: one loop for pretraining and fine-tuning, on the flat buffers.

A run (:class:`Trainer`) holds its parts (``tinygradlm.train.setup``: model, optimizer,
loaders, tokenizer, gradient mask), its gradient sync (``tinygradlm.dist.sync``) and its
position. Each step is ``tinygradlm.train.step``; between steps come the periodic events:
every ``eval_interval`` steps the validation loss, every ``sample_interval`` a sample, every
``checkpoint_interval`` an atomic checkpoint (the last step does all three), a progress line
every ``log_interval``, an event whenever the data begins another epoch, and every
``diagnostics_interval`` steps (and at the last) a record of per-layer norms
(``tinygradlm.train.diagnostics``). After ``max_bad_steps`` non-finite steps in a row the
divergence guard (``tinygradlm.train.guard``) has the loop roll back to the last checkpoint at
a lower learning rate. Ctrl-C and SIGTERM stop it at a step boundary, every rank at the same
one (``tinygradlm.train.stop``).

Determinism: the model's initialisation, the loader's order and the samples all come from
``seed``, and nothing else is random, so the same config gives the same run. A checkpoint holds
the parameters, AdamW's moments, the step and the loader's position, so a run resumed from it
continues bit-identically (``tests/test_train.py`` kills a run with SIGKILL to check).

Data parallel (``mpiexec -n P tinygradlm train ...``, ``tinygradlm.dist``): every rank trains
on its slice of each global batch. Before the first step the ranks compare a digest of the
parameter layout and config and take rank 0's parameters and optimizer state. Validation is
collective; rank 0 alone logs, samples and writes checkpoints, which any number of ranks can
resume from. Train records carry ``comm_bytes`` and ``imbalance`` under MPI
(docs/distributed.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import backend
from ..atomic import writable_directory
from ..checkpoint import latest_checkpoint, load_checkpoint, restore, save_checkpoint
from ..data.mix import mixture_loss
from ..data.mixture import MixtureLoader
from ..dist import Dist, make_sync
from ..errors import DivergenceError
from ..monitor import (
    ChromeTrace,
    MetricsLogger,
    MfuMeter,
    ProgressLine,
    StepTimer,
    announce_compilation,
    measure_gemm_peak,
)
from .config import FinetuneConfig, TrainConfig
from .diagnostics import LayerDiagnostics
from .evaluate import validation_loss
from .guard import Action, DivergenceGuard
from .hooks import RunHooks
from .resume_state import check_trainer_state
from .run_folder import check_same_run
from .setup import build_run
from .step import train_step
from .stop import RunStopped, StopRequests, stopped_message


class Trainer:
    """A run: its parts, position and loop; :meth:`train` runs from the current step to
    ``max_steps``. ``config`` is a TrainConfig (pretraining) or a FinetuneConfig."""

    def __init__(
        self,
        config: TrainConfig | FinetuneConfig,
        *,
        rank: int = 0,
        world_size: int = 1,
        log: Callable[[str], None] = print,
        dist: Any = None,
        hooks: RunHooks | None = None,
    ) -> None:
        self.config = config
        writable_directory(config.out_dir, "out_dir", ValueError)
        if dist is not None:
            rank, world_size = dist.rank, dist.world_size
        self.dist = dist if dist is not None else Dist()
        self.rank, self.world_size = rank, world_size
        self.log = log if rank == 0 else (lambda _msg: None)
        self.hooks = hooks if hooks is not None else RunHooks()
        backend.set_kernels(config.kernels)

        parts = build_run(config, rank, world_size, self.log)
        self.model, self.optimizer = parts.model, parts.optimizer
        self.train_loader, self.val_loader = parts.train_loader, parts.val_loader
        self.val_sources = parts.val_sources  # a mixture's validation split per source
        self.val_losses: dict[str, float] = {}  # their losses at the last evaluation
        self.tokenizer, self.tokenizer_path = parts.tokenizer, parts.tokenizer_path
        self.grad_mask = parts.grad_mask  # 0 on frozen parameters (fine-tuning)
        self.remix = parts.remix

        self.step = 0
        self.saved_step: int | None = None  # the newest checkpoint's step, known on every rank
        self._synced = False
        self.out_dir = Path(config.out_dir)
        self.guard = DivergenceGuard(max(config.max_bad_steps, 1))
        self.scaler = self.model.precision.loss_scaler(
            init_scale=config.loss_scale_init,
            growth_interval=config.loss_scale_growth_interval,
        )
        self.trace = (
            ChromeTrace(self.out_dir / f"trace_rank{rank}.json", rank, 6 * config.trace_steps)
            if config.trace_steps
            else None
        )
        self.timer = StepTimer(trace=self.trace)
        # the overlap buckets by the model's layers when the optimizer trains its buffer
        trains_model = self.optimizer.grads is self.model.flat_grads
        layout = self.model.shapes if trains_model else None
        self.sync = make_sync(config, self.optimizer, self.dist, self.timer, layout)
        self.diagnostics = LayerDiagnostics(
            self.model.shapes if trains_model else self.model.lora.shapes,  # the trained buffer
            config.diagnostics_interval,
            config.max_steps,
            with_stream=config.engine == "fused",
        )
        self.metrics: MetricsLogger | None = None  # opened by train(), after a resume

    # -- state ---------------------------------------------------------------------------------

    def trainer_state(self) -> dict[str, Any]:
        return {
            "loader": self.train_loader.state_dict(),
            "guard": self.guard.state_dict(),
            "scaler": self.scaler.state_dict(),
            "config": self.config.to_dict(),
        }

    def resume(self) -> bool:
        """Continue from the newest checkpoint in ``out_dir``, if there is one; a CheckpointError,
        before anything changes, if it belongs to a different run (``train.run_folder``)."""
        path = latest_checkpoint(self.out_dir)
        if path is None:
            return False
        changed = check_same_run(self.config, path)
        if changed:
            self.log(f"resuming {path} with changed settings: {', '.join(changed)}")
        state = self._restore(path)
        if "guard" in state:
            self.guard.load_state_dict(state["guard"])  # checked whole in _restore
        self.log(f"resumed from {path} at step {self.step}")
        return True

    def _restore(self, path: Path) -> dict[str, Any]:
        """Parameters, moments, step and data position from the checkpoint at ``path``; returns
        the checkpoint's trainer state. The whole trainer state is checked before anything
        changes (a CheckpointError names trainer.json and the key), the loader's position next
        (it changes nothing unless its whole state matches), and the model last: if the model's
        restore fails, the loader goes back to where it was."""
        ckpt = load_checkpoint(path)
        check_trainer_state(ckpt.trainer_state, path, guard=self.guard, scaler=self.scaler)
        before = self.train_loader.state_dict()
        state = ckpt.trainer_state["loader"]
        if isinstance(self.train_loader, MixtureLoader):
            self.train_loader.load_state_dict(state, new_weights=self.remix)
        else:
            self.train_loader.load_state_dict(state)
        try:
            restore(self.model, self.optimizer, ckpt)
        except BaseException:
            self.train_loader.load_state_dict(before)
            raise
        if "scaler" in ckpt.trainer_state:
            self.scaler.load_state_dict(ckpt.trainer_state["scaler"])
        self.step = self.saved_step = ckpt.step
        self.sync.shard_state()  # a rollback under ZeRO-1: every rank reads the checkpoint
        return ckpt.trainer_state

    def rollback(self) -> None:
        """After repeated non-finite steps: back to the last checkpoint, at a lower learning rate
        (the guard's ``lr_factor``, which a rollback does not restore)."""
        path = latest_checkpoint(self.out_dir)
        if path is None:
            raise DivergenceError(
                f"{self.guard.max_bad_steps} non-finite steps in a row at step {self.step} and "
                f"no checkpoint in {self.out_dir} to roll back to"
            )
        failed_at = self.step
        self._restore(path)
        message = (
            f"{self.guard.max_bad_steps} non-finite steps in a row at step {failed_at}: rolled "
            f"back to step {self.step}, learning rate scaled by {self.guard.lr_factor:g}"
        )
        self.log(message)
        if self.metrics is not None:
            self.metrics.log_event(self.step, "rollback", message, from_step=failed_at)

    def save(self) -> Path:
        files = [self.tokenizer_path] if self.tokenizer_path.exists() else []
        path = save_checkpoint(
            self.out_dir,
            self.step,
            self.model,
            self.optimizer,
            self.trainer_state(),
            tokenizer_files=files,
            keep_last=self.config.keep_last,
        )
        if self.metrics is not None:
            self.metrics.log_event(self.step, "checkpoint", str(path))
        return path

    def _stopped(self, signum: int) -> RunStopped:
        """At a step boundary, after a stop signal that every rank agreed on: on SIGTERM a
        checkpoint of this step first (unless it has one), then the event and the one line."""
        wrote = signum == signal.SIGTERM and self.step > 0 and self.saved_step != self.step
        if wrote:
            self.sync.gather_state()  # ZeRO-1: the moments to rank 0
            if self.rank == 0:
                self.save()
            self.dist.barrier()
            self.saved_step = self.step
        checkpoint = latest_checkpoint(self.out_dir) if self.saved_step is not None else None
        message = stopped_message(self.step, signum, checkpoint, wrote=wrote)
        if self.metrics is not None:
            self.metrics.log_event(self.step, "stop", message)
        return RunStopped(message, signum, announce=self.rank == 0)

    # -- the loop ------------------------------------------------------------------------------

    def train_step(self) -> dict[str, Any]:
        """One optimizer step (``tinygradlm.train.step``)."""
        return train_step(self)

    def train(self) -> dict[str, Any]:
        """Run from the current step to ``max_steps``; returns the last step's record."""
        cfg = self.config
        tokens_per_step = cfg.batch_size * cfg.seq_len * cfg.grad_accum_steps
        flops_per_step = self.model.flops_per_token(cfg.seq_len) * tokens_per_step
        rows = cfg.batch_size // self.world_size * cfg.seq_len
        C, Vp = self.model.config.n_embd, self.model.config.Vp
        peak = measure_gemm_peak(C, rows, vocab_size=Vp)
        meter = MfuMeter(peak.flops * self.world_size)  # the job's peak: each rank's times ranks
        self.metrics = MetricsLogger(
            self.out_dir, enabled=self.rank == 0, resume_step=self.step if self.step else None
        )
        progress = ProgressLine(cfg.max_steps, every=cfg.log_interval, enabled=self.rank == 0)
        self.metrics.log_event(
            self.step, "gemm_peak", peak.describe(), **peak.event_fields(), ranks=self.world_size
        )
        progress.message(peak.describe())
        record: dict[str, Any] = {}
        self._sync_start()
        stops = StopRequests()
        numba = backend.kernels_name() == "numba"  # a fresh checkout's first run compiles them
        compiling = announce_compilation(progress.message) if numba else contextlib.nullcontext()
        with stops.installed(), compiling:
            try:
                while self.step < cfg.max_steps:
                    # a step boundary: every rank stops here, or none does
                    signum = stops.agreed(self.dist)
                    if signum:
                        raise self._stopped(signum)
                    epochs_before = self._epochs()
                    started = time.perf_counter()
                    result = self.train_step()
                    seconds = time.perf_counter() - started
                    if result["action"] == Action.ROLLBACK:
                        self.rollback()
                        continue
                    utilization, revision = meter(flops_per_step, seconds)
                    record = self.metrics.log_train(
                        self.step,
                        loss=result["loss"],
                        lr=result["lr"],
                        grad_norm=result["grad_norm"],
                        tokens_per_s=tokens_per_step / seconds,
                        mfu=utilization,
                        time=self.timer.split(),
                        **({"loss_scale": result["loss_scale"]} if self.scaler.enabled else {}),
                        **{k: result[k] for k in ("comm_bytes", "imbalance") if k in result},
                        **self._epochs(),
                    )
                    if result["layers"] is not None:
                        self.metrics.log_layers(self.step, **result["layers"])
                    if revision is not None:
                        self.metrics.log_event(self.step, "peak_revised", **revision)
                    self._log_new_epochs(epochs_before, record, progress)
                    self._log_skipped(result, progress)
                    progress.update(record)
                    self._periodic(progress)
            finally:
                progress.close()
                self.metrics.close()
                if self.trace is not None:
                    self.trace.write()
        return record

    def _log_skipped(self, result: Mapping[str, Any], progress: ProgressLine) -> None:
        """An event for a step whose update was skipped: an fp16 overflow, or a divergence."""
        if result["action"] == Action.OVERFLOW:
            message = (
                f"fp16 gradient overflow at loss scale {result['loss_scale']:g}: update "
                f"skipped, scale now {self.scaler.scale:g}"
            )
            self.metrics.log_event(self.step, "overflow", message)
        if result["action"] == Action.SKIP:
            message = "non-finite loss or gradient norm: update skipped"
            self.metrics.log_event(self.step, "skip", message)
            progress.message(f"step {self.step}: {message}")

    def _periodic(self, progress: ProgressLine) -> None:
        """Validation, samples and checkpoints when their intervals (or the last step) come."""
        cfg, step = self.config, self.step
        done = step == cfg.max_steps
        if cfg.eval_interval and (step % cfg.eval_interval == 0 or done):
            val = self.evaluate()
            if math.isfinite(val):
                by_source = {"sources": dict(self.val_losses)} if self.val_losses else {}
                self.metrics.log_val(step, loss=val, **by_source)
                message = f"step {step}: val loss {val:.4f}, perplexity {math.exp(val):.2f}"
                if self.val_losses:
                    losses = ", ".join(f"{name} {v:.4f}" for name, v in self.val_losses.items())
                    message += f" ({losses})"
                progress.message(message)
        if cfg.sample_interval and (step % cfg.sample_interval == 0 or done) and self.rank == 0:
            progress.message(f"step {step}: sample: {self.sample()!r}")
        if cfg.checkpoint_interval and (step % cfg.checkpoint_interval == 0 or done):
            self.sync.gather_state()  # ZeRO-1: the moments to rank 0
            if self.rank == 0:
                progress.message(f"step {step}: checkpoint {self.save()}")
            self.dist.barrier()  # the checkpoint exists for every rank (a rollback reads it)
            self.saved_step = step

    def _epochs(self) -> dict[str, Any]:
        """The passes over the training data so far, for the metrics: ``epoch`` (one source) or
        ``epochs`` per source (a mixture)."""
        seen = getattr(self.train_loader, "epochs_seen", None)
        if seen is None:
            return {}
        value = seen()
        return {"epochs": value} if isinstance(value, dict) else {"epoch": value}

    def _log_new_epochs(
        self, before: Mapping[str, Any], after: Mapping[str, Any], progress: ProgressLine
    ) -> None:
        """An "epoch" event each time the training data, or a mixture's source, begins another
        pass: a source small for its weight shows up as repeated epochs."""
        if "epochs" in before:
            pairs = [
                (f"source {name!r}", before["epochs"][name], after["epochs"][name])
                for name in before["epochs"]
            ]
        elif "epoch" in before:
            pairs = [("the training data", before["epoch"], after["epoch"])]
        else:
            return
        for what, old, new in pairs:
            if math.floor(new) > math.floor(old):
                message = f"{what} began epoch {math.floor(new) + 1}"
                self.metrics.log_event(self.step, "epoch", message, epochs=new)
                progress.message(f"step {self.step}: {message}")

    def evaluate(self) -> float:
        """Mean loss over the targets of ``eval_batches`` validation batches, from the split's
        start (with several ranks: a collective, over every rank's slice). For a mixture, each
        source's loss goes to ``val_losses`` and the result is their mean at the mixture's
        weights (renormalised over the sources with a validation split): the expected loss on
        a token drawn as training draws them."""
        batches = self.config.eval_batches
        if self.val_sources:
            self.val_losses = {
                name: validation_loss(self.model, loader, batches, self.dist)
                for name, loader in self.val_sources.items()
            }
            weights = dict(zip(self.train_loader.names, self.train_loader.weights, strict=True))
            return mixture_loss(self.val_losses, weights)
        if self.val_loader is None:
            return float("nan")
        return validation_loss(self.model, self.val_loader, batches, self.dist)

    def sample(self) -> str:
        """A sample from the current model (seeded by the run's seed and the step)."""
        if self.tokenizer is None:
            return "(no tokenizer in the data directory)"
        from ..generate import generate

        tok, cfg = self.tokenizer, self.config
        prompt = tok.encode(cfg.sample_prompt) if cfg.sample_prompt else []
        # LoRA adapters, when attached, apply inside the model's forward: no merge needed
        new = generate(
            self.model,
            [tok.eot_token, *prompt],
            cfg.sample_tokens,
            temperature=cfg.temperature,
            top_k=cfg.top_k,
            seed=cfg.seed * 1_000_003 + self.step,
            stop_token=tok.eot_token,
        )
        if new and new[-1] == tok.eot_token:
            new = new[:-1]
        return tok.decode(prompt + list(new))

    # -- several ranks -------------------------------------------------------------------------

    def _sync_start(self) -> None:
        """With several ranks, before the first step: the same layout and config everywhere,
        then rank 0's parameters and optimizer state on every rank."""
        if self._synced or not self.dist.enabled:
            return
        self._synced = True
        d, cfg = self.dist, self.config
        d.set_step(self.step)
        d.set_watchdog(cfg.collective_timeout_s, cfg.collective_timeout_abort)
        self.log(
            f"data parallel: {d.world_size} ranks ({d.local_size} on this node), "
            f"{cfg.batch_size // d.world_size} sequences per rank per micro-step"
            + (", deterministic reduce" if cfg.deterministic_reduce else "")
            + (", ZeRO-1" if cfg.zero_stage == 1 else "")
        )
        d.check_same(self.layout_digest(), "parameter layout and config")
        d.broadcast_(self.model.flat_params)
        if self.model.lora is not None:
            d.broadcast_(self.model.lora.flat_params)
        opt = self.optimizer
        d.broadcast_(opt.params)
        d.broadcast_(opt.m)
        d.broadcast_(opt.v)
        step = d.broadcast_(np.array([opt.step_count, self.step], dtype=np.int64))
        opt.step_count, self.step = int(step[0]), int(step[1])
        self.sync.start()

    def layout_digest(self) -> str:
        """sha256 of the parameter layout (names, shapes, dtypes) and the run's config."""
        layout = [
            [name, list(view.shape), str(view.dtype)] for name, view in self.model.params.items()
        ]
        opt = self.optimizer
        text = json.dumps(
            {
                "layout": layout,
                "optimizer": [int(opt.params.size), str(opt.params.dtype)],
                "config": self.config.to_dict(),
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(text.encode()).hexdigest()


def train(config: TrainConfig | FinetuneConfig, *, resume: bool = True) -> dict[str, Any]:
    """Run (or continue) a pretraining or fine-tuning run; returns the last step's metrics."""
    trainer = Trainer(config)
    if resume:
        trainer.resume()
    return trainer.train()


def finetune(config: FinetuneConfig, *, resume: bool = True) -> dict[str, Any]:
    """Run (or continue) a fine-tuning run: :func:`train` with a FinetuneConfig."""
    return train(config, resume=resume)
