"""Watching a training run: a metrics file, a progress line, a divergence guard, and plots.

    MetricsLogger      one JSON object per line in run_dir/metrics.jsonl: train, val and event
                       records; on resume, the crashed tail after the checkpoint is dropped
    read_metrics       the records back, tolerating the half-written last line a crash leaves
    StepTimer          seconds per section of a step (data, fwd_bwd, optim, comm)
    measure_gemm_flops this machine's float32 GEMM rate at the model's shapes: MFU's denominator
    mfu                achieved FLOP/s as a fraction of that rate
    ProgressLine       step 120/2000 | loss 3.412 | lr 3.0e-04 | norm 0.91 | 5,845 tok/s | …
    DivergenceGuard    non-finite loss or gradient norm: skip the update; N in a row: roll back
                       to the last checkpoint with the learning rate multiplied by a backoff
    plot_run           PNG curves of a run (matplotlib, an optional extra)

Every definition (what tokens/s counts, MFU's denominator, the file format, the guard's rule) is
in docs/monitoring.md.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .atomic import write_atomic
from .errors import DivergenceError, MetricsError

METRICS_FILE = "metrics.jsonl"
# the sections of a step's time split, always present in a train record (comm is 0 on one rank)
TIME_SECTIONS = ("data", "fwd_bwd", "optim", "comm")

# strict JSON has no NaN or infinity: they are written as these strings and read back as floats
_NON_FINITE_NAMES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
# fields that hold text, never a number: a message "nan" stays a string
_TEXT_FIELDS = frozenset({"kind", "event", "message"})


# --------------------------------------------------------------------------------------------
# the metrics file
# --------------------------------------------------------------------------------------------


class MetricsLogger:
    """Append one JSON object per line to ``run_dir/metrics.jsonl``, flushed as it is written.

    Records are ``{"kind": "train" | "val" | "event", "step": int, ...}`` (the fields are in
    docs/monitoring.md). Non-finite floats are written as the strings ``"nan"``, ``"inf"`` and
    ``"-inf"``, so every line stays strict JSON; :func:`read_metrics` turns them back into floats.

    ``resume_step=None`` starts a new run: an existing metrics file is replaced. ``resume_step=k``
    continues a run from its checkpoint at step k: records with a step greater than k (the steps
    a crash made the run lose, which it is about to redo) are dropped, by rewriting the file
    atomically, and new records are appended. ``enabled=False`` (ranks other than 0) touches no
    file; the ``log_*`` methods still build and return their records.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        enabled: bool = True,
        resume_step: int | None = None,
    ) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self._file: TextIO | None = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self._file = open(self.path, "w", buffering=1, encoding="utf-8")
        else:
            self.truncate_after(resume_step)

    def truncate_after(self, step: int) -> None:
        """Drop every record whose step is greater than ``step`` (atomic rewrite), then append.

        A record without a step is kept, and so is a half-written last line's absence: the
        rewritten file ends with a complete line.
        """
        if not _is_count(step) or step < 0:
            raise ValueError(f"MetricsLogger: a step must be an integer >= 0, got {step!r}")
        if not self.enabled:
            return
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.path.exists():
            kept = [line for record, line in _read_lines(self.path) if _step_of(record) <= step]
            write_atomic(self.path, b"".join(line + b"\n" for line in kept))
        self._file = open(self.path, "a", buffering=1, encoding="utf-8")

    def log(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``record`` (a mapping with a string ``kind``) as one line; return it as a dict.

        NumPy scalars become Python numbers (a float32 as its shortest decimal: 3.412, not
        3.4119999408721924); anything that is not a JSON value is a TypeError naming its field.
        """
        if not isinstance(record.get("kind"), str):
            raise ValueError(f"MetricsLogger.log: a record needs a string 'kind', got {record!r}")
        line = json.dumps(_encode(record, "record"), allow_nan=False, ensure_ascii=False)
        if self._file is not None:
            self._file.write(line + "\n")
            self._file.flush()
        return dict(record)

    def log_train(
        self,
        step: int,
        *,
        loss: float,
        lr: float,
        grad_norm: float | None,
        tokens_per_s: float,
        mfu: float | None,
        time: Mapping[str, float],
        **extra: Any,
    ) -> dict[str, Any]:
        """One optimizer step: its loss, learning rate, gradient norm (before clipping),
        throughput, MFU (None when no GEMM rate was measured) and time split (seconds per
        section, e.g. ``StepTimer.split()``). ``extra`` fields are written as given."""
        return self.log(
            {
                "kind": "train",
                "step": step,
                "loss": loss,
                "lr": lr,
                "grad_norm": grad_norm,
                "tokens_per_s": tokens_per_s,
                "mfu": mfu,
                "time": dict(time),
                **extra,
            }
        )

    def log_val(self, step: int, *, loss: float, **extra: Any) -> dict[str, Any]:
        """A validation loss (mean nats per token) and its perplexity, exp(loss)."""
        return self.log(
            {"kind": "val", "step": step, "loss": loss, "perplexity": _exp(loss), **extra}
        )

    def log_event(self, step: int, event: str, message: str = "", **extra: Any) -> dict[str, Any]:
        """Something that happened at ``step``: ``event`` is a short tag ("skip", "rollback",
        "checkpoint", "resume", …) that tools match on, ``message`` the words for a person."""
        return self.log(
            {"kind": "event", "step": step, "event": event, "message": message, **extra}
        )

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl`` (or of the file ``run_dir`` names), in order.

    A last line without its newline that does not parse is a write a crash cut short, and is
    left out. Any other line that is not a JSON object with a string ``kind`` is a MetricsError
    naming the file and the line. The strings "nan", "inf" and "-inf" are read as floats
    (except in the text fields kind, event and message).
    """
    return [record for record, _ in _read_lines(_metrics_path(run_dir))]


def _metrics_path(run_dir: str | os.PathLike[str]) -> Path:
    path = Path(run_dir)
    path = path / METRICS_FILE if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path}")
    return path


def _read_lines(path: Path) -> list[tuple[dict[str, Any], bytes]]:
    """(record, the line's bytes) for each line; bytes so that a rewrite keeps lines exactly."""
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline, as every complete file does
    parsed = [(_parse_line(path, number, raw), raw) for number, raw in enumerate(lines, 1)]
    if tail:
        with contextlib.suppress(MetricsError):  # a crash mid-write: the line is lost
            parsed.append((_parse_line(path, len(lines) + 1, tail), tail))
    return parsed


def _parse_line(path: Path, number: int, raw: bytes) -> dict[str, Any]:
    def fail(reason: str) -> MetricsError:
        shown = raw[:80].decode("utf-8", errors="replace")
        return MetricsError(f"{path}, line {number}: {reason}: {shown!r}")

    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise fail(f"not valid JSON ({e})") from None
    if not isinstance(value, dict) or not isinstance(value.get("kind"), str):
        raise fail("not a JSON object with a string 'kind'")
    return _decode(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (non-finite numbers are written as strings)")


def _step_of(record: Mapping[str, Any]) -> float:
    step = record.get("step")
    return step if _is_count(step) else -math.inf


def _encode(value: Any, where: str) -> Any:
    """A strict-JSON copy of ``value``: Python numbers, non-finite floats as strings."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (np.float32, np.float16)):
        value = float(str(value))  # the shortest decimal that reads back as the same float32
    if isinstance(value, (float, np.floating)):
        x = float(value)
        if math.isfinite(x):
            return x
        return "nan" if math.isnan(x) else "inf" if x > 0 else "-inf"
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return _encode(value[()], where)
    if isinstance(value, Mapping):
        return {str(k): _encode(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"metrics: {where} is a {type(value).__name__}, which JSON cannot hold")


def _decode(value: Any, field: str | None = None) -> Any:
    if isinstance(value, str):
        return value if field in _TEXT_FIELDS else _NON_FINITE_NAMES.get(value, value)
    if isinstance(value, dict):
        return {k: _decode(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, field) for v in value]
    return value


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


# --------------------------------------------------------------------------------------------
# timing, throughput and MFU
# --------------------------------------------------------------------------------------------


class StepTimer:
    """Seconds spent in each named section of a step::

        timer = StepTimer()
        with timer("data"):
            x, y = loader.next_batch()
        with timer("fwd_bwd"):
            loss, _ = model.forward_backward(x, y)
        timer.split()  # {"data": 0.004, "fwd_bwd": 0.35, "optim": 0.0, "comm": 0.0}
        timer.reset()  # at the start of the next step

    A section entered several times in a step accumulates. Sections may nest: the time of an
    inner section is counted in the inner one only, so the sections never count a second twice
    and their sum is at most :meth:`elapsed`. ``sections`` are the names ``split`` always
    reports (0.0 when not entered), others are added as they are entered.
    """

    def __init__(
        self,
        sections: Sequence[str] = TIME_SECTIONS,
        *,
        clock: Any = time.perf_counter,
        trace: ChromeTrace | None = None,
    ) -> None:
        self._names = tuple(sections)
        self._clock = clock
        self.trace = trace  # when set, every section is also recorded as a timeline event
        self.reset()

    def reset(self) -> None:
        """Zero every section and restart :meth:`elapsed`."""
        self._seconds = dict.fromkeys(self._names, 0.0)
        self._inner: list[float] = []  # per open section: seconds spent in its inner sections
        self._started = self._clock()

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = self._clock()
        self._inner.append(0.0)
        try:
            yield
        finally:
            seconds = self._clock() - start
            if self.trace is not None:
                self.trace.add(name, start, seconds)
            inner = self._inner.pop()
            self._seconds[name] = self._seconds.get(name, 0.0) + seconds - inner
            if self._inner:
                self._inner[-1] += seconds

    def split(self) -> dict[str, float]:
        """Seconds per section since the last reset."""
        return dict(self._seconds)

    def elapsed(self) -> float:
        """Wall seconds since the last reset, inside sections or not."""
        return self._clock() - self._started


class ChromeTrace:
    """A per-rank timeline of the step sections, in the Chrome trace event format.

    Open the files in ``chrome://tracing`` or https://ui.perfetto.dev (load several ranks' files
    together to see them side by side): each section a step spends in (data, fwd_bwd, comm,
    optim) is a bar on the rank's row, so a rank that computes longer than the others, or waits
    in a collective, shows at a glance. Only the first ``max_events`` sections are kept, so a
    long run's file stays small; :meth:`write` replaces the file atomically.
    """

    def __init__(self, path: str | os.PathLike[str], rank: int = 0, max_events: int = 10_000):
        self.path = Path(path)
        self.rank = rank
        self.max_events = max_events
        self._origin = time.perf_counter()
        self._events: list[dict[str, Any]] = [
            {"name": "process_name", "ph": "M", "pid": rank, "args": {"name": f"rank {rank}"}}
        ]

    def add(self, name: str, start: float, seconds: float) -> None:
        """A section that began at ``start`` (time.perf_counter seconds) and lasted ``seconds``."""
        if len(self._events) > self.max_events:
            return
        self._events.append(
            {
                "name": name,
                "ph": "X",  # a complete event: a start and a duration, in microseconds
                "ts": round((start - self._origin) * 1e6, 1),
                "dur": round(seconds * 1e6, 1),
                "pid": self.rank,
                "tid": 0,
            }
        )

    def write(self) -> Path:
        data = json.dumps({"traceEvents": self._events, "displayTimeUnit": "ms"}).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, data)
        return self.path


def mfu(flops_per_step: float, seconds: float, peak_flops: float) -> float:
    """Model FLOPs utilization: ``flops_per_step / seconds`` as a fraction of ``peak_flops``.

    ``flops_per_step`` is ``GPT.flops_per_token(T) · B · T`` (summed over ranks for the whole
    job's rate), ``peak_flops`` a rate in FLOP/s. Here the peak is this machine's measured
    float32 GEMM rate (:func:`measure_gemm_flops`), not a datasheet figure.
    """
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"mfu: seconds must be finite and > 0, got {seconds!r}")
    if not (peak_flops > 0 and math.isfinite(peak_flops)):
        raise ValueError(f"mfu: peak_flops must be finite and > 0, got {peak_flops!r}")
    return flops_per_step / seconds / peak_flops


# Caps on a timed GEMM's rows and on the LM head's columns. Past them the rate hardly changes
# (on a 2-core machine, 768×50304 and 768×3072 both reached ~330 GFLOP/s at 2048 rows, as at
# 8192, while 128 rows gave 10-35% less), and they keep the measurement of GPT-2 124M (B·T = 8192,
# Vp = 50304) near half a second and ~50 MB instead of seconds and ~2 GB.
_MAX_GEMM_ROWS = 2048
_MAX_GEMM_COLUMNS_PER_C = 8
_MAX_GEMM_REPEATS = 5


def measure_gemm_flops(
    n_embd: int, rows: int, *, vocab_size: int | None = None, max_seconds: float = 0.5
) -> float:
    """This machine's float32 GEMM rate in FLOP/s at the model's matmul shapes.

    Times ``(rows, C) @ (C, 3C)``, ``(C, 4C)``, ``(4C, C)`` and, with ``vocab_size`` (the padded
    Vp), ``(C, Vp)``: the projections of a GPT-2 block and its LM head, with ``rows`` = B·T
    (at most 2048 rows, and at most 8C columns for the LM head). Each shape is warmed up once,
    then timed in rounds, at least one and at most 5, while another round fits in
    ``max_seconds`` (counted from the call, warm-up included); the rate is total FLOPs over the
    sum of the best times. Call it once at the start of training, after setting the thread
    count: the result is cached per process and arguments.
    """
    for name, value in (("n_embd", n_embd), ("rows", rows), ("vocab_size", vocab_size or 1)):
        if not _is_count(value) or value < 1:
            raise ValueError(f"measure_gemm_flops: {name} must be an integer >= 1, got {value!r}")
    return _measure_gemm_flops(
        int(n_embd), int(rows), None if vocab_size is None else int(vocab_size), float(max_seconds)
    )


@functools.cache
def _measure_gemm_flops(C: int, rows: int, vocab_size: int | None, max_seconds: float) -> float:
    shapes = [(C, 3 * C), (C, 4 * C), (4 * C, C)]
    if vocab_size is not None:
        shapes.append((C, min(vocab_size, _MAX_GEMM_COLUMNS_PER_C * C)))
    started = time.perf_counter()
    r = min(rows, _MAX_GEMM_ROWS)
    rng = np.random.default_rng(0)
    operands = []
    for k, n in shapes:
        a = rng.random((r, k), dtype=np.float32)
        b = rng.random((k, n), dtype=np.float32)
        out = np.empty((r, n), dtype=np.float32)
        np.matmul(a, b, out=out)  # warm-up: page faults, BLAS thread start
        operands.append((a, b, out))
    best = [math.inf] * len(operands)
    for _ in range(_MAX_GEMM_REPEATS):
        round_start = time.perf_counter()
        for i, (a, b, out) in enumerate(operands):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            best[i] = min(best[i], time.perf_counter() - start)
        now = time.perf_counter()
        if now + (now - round_start) > started + max_seconds:
            break
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b, _ in operands)
    return flops / sum(best)


# --------------------------------------------------------------------------------------------
# the progress line
# --------------------------------------------------------------------------------------------


class ProgressLine:
    """A compact line per ``every`` steps on the terminal::

        step  120/2000 | loss 3.412 | lr 3.0e-04 | norm 0.91 | 5,845 tok/s | mfu 54% | eta 4m12s

    :meth:`update` takes a train record (what ``MetricsLogger.log_train`` returns) and prints it
    when its step is a multiple of ``every``, the last step, or the first update. On a terminal
    each line overwrites the previous one (a carriage return); elsewhere (a log file, a pipe)
    each is its own line. :meth:`message` (validation, events) always gets a line of its own.
    The ETA is the remaining steps times the mean wall time per step since the first update.
    """

    def __init__(
        self,
        total_steps: int,
        *,
        every: int = 10,
        stream: TextIO | None = None,
        enabled: bool = True,
        clock: Any = time.monotonic,
    ) -> None:
        if every < 1:
            raise ValueError(f"ProgressLine: every must be >= 1, got {every!r}")
        self.total_steps = total_steps
        self.every = every
        self.enabled = enabled
        self._stream = stream
        self._clock = clock
        self._first: tuple[int, float] | None = None  # (step, time) of the first update
        self._open_length = 0  # length of a line a carriage return will overwrite, 0 if none

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout  # as it is at the time

    def update(self, record: Mapping[str, Any]) -> str | None:
        """Print ``record`` if it is due; return the line printed, or None."""
        step, now = int(record["step"]), self._clock()
        first = self._first is None
        if self._first is None:
            self._first = (step, now)
        if not (first or step % self.every == 0 or step == self.total_steps):
            return None
        line = self.format(record, eta=self._eta(step, now))
        if self.enabled:
            if self._is_terminal():
                self.stream.write("\r" + line.ljust(self._open_length))
                self._open_length = len(line)
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
        return line

    def message(self, text: str) -> None:
        """Print ``text`` on a line of its own, below the last progress line."""
        if self.enabled:
            self._end_line()
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        """End an overwritten line, so what is printed next starts on a fresh one."""
        if self.enabled:
            self._end_line()
            self.stream.flush()

    def format(self, record: Mapping[str, Any], eta: float | None = None) -> str:
        """The line for ``record``; fields it lacks (or holds as None) are left out."""
        width = len(str(self.total_steps))
        parts = [f"step {int(record['step']):>{width}}/{self.total_steps}"]
        for field, template in (
            ("loss", "loss {:.3f}"),
            ("lr", "lr {:.1e}"),
            ("grad_norm", "norm {:#.3g}"),  # "#": 1.00, not 1
            ("tokens_per_s", "{:,.0f} tok/s"),
        ):
            if record.get(field) is not None:
                parts.append(template.format(record[field]))  # nan and inf print as such
        if record.get("mfu") is not None and math.isfinite(record["mfu"]):
            parts.append(f"mfu {record['mfu']:.0%}")
        if eta is not None:
            parts.append(f"eta {format_duration(eta)}")
        return " | ".join(parts)

    def _eta(self, step: int, now: float) -> float | None:
        assert self._first is not None
        first_step, first_time = self._first
        if step <= first_step:
            return None
        return (now - first_time) / (step - first_step) * max(self.total_steps - step, 0)

    def _is_terminal(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def _end_line(self) -> None:
        if self._open_length:
            self.stream.write("\n")
            self._open_length = 0


def format_duration(seconds: float) -> str:
    """``12s``, ``4m12s``, ``1h03m``: a duration as a progress line shows it."""
    if not math.isfinite(seconds):
        return "?"
    s = round(max(seconds, 0.0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


# --------------------------------------------------------------------------------------------
# the divergence guard
# --------------------------------------------------------------------------------------------


class Action(enum.StrEnum):
    """What the trainer does with a step: apply its update, skip it, or roll back."""

    OK = "ok"
    SKIP = "skip"
    ROLLBACK = "rollback"
    OVERFLOW = "overflow"  # fp16 gradients overflowed the loss scale: skipped, not divergence


class DivergenceGuard:
    """Skip updates whose loss or gradient norm is not finite; roll back after N in a row.

    ``check(loss, grad_norm)`` after forward/backward and before the optimizer step:

    - both finite: ``"ok"`` (apply the update); the count of bad steps in a row resets to 0;
    - either NaN or ±inf: ``"skip"`` (leave parameters and optimizer state untouched);
    - the ``max_bad_steps``-th non-finite step in a row: ``"rollback"``: restore the last
      checkpoint and continue with the learning rate multiplied by :attr:`lr_factor`, which each
      rollback multiplies by ``backoff`` (0.5: halved). The count restarts at 0.

    After ``max_rollbacks`` rollbacks (None: no limit), the next one raises DivergenceError.
    ``grad_norm=None`` (not computed) checks the loss alone. The guard's state goes into the
    checkpoint (:meth:`state_dict`) and is loaded on resume, but not on a rollback: the lowered
    learning rate must survive the restore.
    """

    def __init__(
        self, max_bad_steps: int = 3, *, backoff: float = 0.5, max_rollbacks: int | None = 5
    ) -> None:
        if not _is_count(max_bad_steps) or max_bad_steps < 1:
            raise ValueError(f"DivergenceGuard: max_bad_steps must be >= 1, got {max_bad_steps!r}")
        if not 0 < backoff <= 1:
            raise ValueError(f"DivergenceGuard: backoff must be in (0, 1], got {backoff!r}")
        if max_rollbacks is not None and max_rollbacks < 0:
            raise ValueError(f"DivergenceGuard: max_rollbacks must be >= 0, got {max_rollbacks!r}")
        self.max_bad_steps = max_bad_steps
        self.backoff = float(backoff)
        self.max_rollbacks = max_rollbacks
        self.bad_steps = 0  # non-finite steps in a row
        self.skipped_steps = 0  # in the whole run
        self.rollbacks = 0
        self.lr_factor = 1.0

    def check(self, loss: float, grad_norm: float | None) -> Action:
        """The action for a step with this loss and gradient norm (see the class docstring)."""
        if math.isfinite(loss) and (grad_norm is None or math.isfinite(grad_norm)):
            self.bad_steps = 0
            return Action.OK
        self.skipped_steps += 1
        self.bad_steps += 1
        if self.bad_steps < self.max_bad_steps:
            return Action.SKIP
        if self.max_rollbacks is not None and self.rollbacks >= self.max_rollbacks:
            raise DivergenceError(
                f"{self.bad_steps} non-finite steps in a row after {self.rollbacks} rollbacks "
                f"(lr_factor already {self.lr_factor:g}): giving up"
            )
        self.bad_steps = 0
        self.rollbacks += 1
        self.lr_factor *= self.backoff
        return Action.ROLLBACK

    def state_dict(self) -> dict[str, Any]:
        """The guard's counters and learning-rate factor, as JSON values."""
        return {
            "bad_steps": self.bad_steps,
            "skipped_steps": self.skipped_steps,
            "rollbacks": self.rollbacks,
            "lr_factor": self.lr_factor,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output, after checking every field."""
        expected = {"bad_steps", "skipped_steps", "rollbacks", "lr_factor"}
        if set(state) != expected:
            raise ValueError(
                f"DivergenceGuard.load_state_dict: expected fields {sorted(expected)}, "
                f"got {sorted(state)}"
            )
        for name in ("bad_steps", "skipped_steps", "rollbacks"):
            value = state[name]
            if not _is_count(value) or value < 0:
                raise ValueError(
                    f"DivergenceGuard.load_state_dict: {name} must be an integer >= 0, "
                    f"got {value!r}"
                )
        lr_factor = state["lr_factor"]
        if isinstance(lr_factor, bool) or not isinstance(lr_factor, (int, float)):
            lr_factor = math.nan
        if not 0 < lr_factor <= 1:
            raise ValueError(
                f"DivergenceGuard.load_state_dict: lr_factor must be in (0, 1], "
                f"got {state['lr_factor']!r}"
            )
        self.bad_steps = state["bad_steps"]
        self.skipped_steps = state["skipped_steps"]
        self.rollbacks = state["rollbacks"]
        self.lr_factor = float(lr_factor)


# --------------------------------------------------------------------------------------------
# plots
# --------------------------------------------------------------------------------------------

PLOT_FILES = ("loss.png", "lr.png", "grad_norm.png", "throughput.png")


def plot_run(
    run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> list[Path]:
    """PNG curves of the run in ``run_dir`` (its metrics.jsonl), written to ``out`` (default:
    the run directory); returns the paths written.

    loss.png        train loss (and a smoothed curve) with validation loss on the same axes;
                    rollbacks as dashed lines, skipped steps as red marks on the step axis
    lr.png          the learning rate applied
    grad_norm.png   the gradient norm before clipping (log scale)
    throughput.png  tokens/s, and MFU on a second axis when the run measured it

    A curve with no finite values is not written. Records a rollback abandoned (steps redone
    after it) are drawn faint grey. Needs matplotlib: ``pip install 'tinygradlm[plot]'``.
    Draws with the Agg canvas directly: no display, and no change to pyplot's backend.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "plot_run needs matplotlib, an optional extra: pip install 'tinygradlm[plot]' "
            "(or pip install matplotlib)"
        ) from e

    path = _metrics_path(run_dir)
    records = [r for r in read_metrics(path) if _is_count(r.get("step"))]
    out_dir = Path(out) if out is not None else path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    abandoned = _abandoned(records)
    train = [(r, a) for r, a in zip(records, abandoned, strict=True) if r["kind"] == "train"]
    val = [(r, a) for r, a in zip(records, abandoned, strict=True) if r["kind"] == "val"]
    if not train and not val:
        raise MetricsError(f"{path}: no train or val records to plot")
    events = [r for r in records if r["kind"] == "event"]
    rollbacks = sorted({r["step"] for r in events if r.get("event") == "rollback"})
    skipped = sorted(
        {r["step"] for r in events if r.get("event") == "skip"}
        | {r["step"] for r, _ in train if not _all_finite(r.get("loss"), r.get("grad_norm"))}
    )
    title = path.parent.resolve().name

    def figure(ylabel: str) -> tuple[Any, Any]:
        fig = Figure(figsize=(8, 4.5), dpi=110, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        return fig, ax

    written = []

    def save(fig: Any, name: str) -> None:
        target = out_dir / name
        fig.savefig(target)
        written.append(target)

    # loss, with validation loss on the same axes
    train_loss = _series(train, "loss")
    val_loss = _series(val, "loss")
    if _has_finite(train_loss) or _has_finite(val_loss):
        fig, ax = figure("loss (nats per token)")
        if _has_finite(train_loss):
            steps, values, faint = train_loss
            if len(steps) < 100:
                _draw(ax, train_loss, "C0", "train", 1)
            else:  # raw and faint, with a smoothed curve over it
                _draw(ax, train_loss, "C0", "train (raw)", 0.35)
                smoothed = _ema(values[~faint], span=max(len(steps) // 100, 5))
                ax.plot(steps[~faint], smoothed, color="C0", lw=1.6, label="train (smoothed)")
        if _has_finite(val_loss):
            _draw(ax, val_loss, "C1", "validation", 1, marker="o")
        for step in rollbacks:
            ax.axvline(step, color="C3", ls="--", lw=1, alpha=0.7)
        if skipped:
            # at the bottom edge whatever the y scale: x in data units, y in axes units
            ax.plot(
                skipped,
                [0.0] * len(skipped),
                "|",
                color="C3",
                ms=12,
                mew=1.5,
                transform=ax.get_xaxis_transform(),
                clip_on=False,
                label=f"skipped ({len(skipped)})",
            )
        ax.legend()
        save(fig, "loss.png")

    for field, name, ylabel, log_scale in (
        ("lr", "lr.png", "learning rate", False),
        ("grad_norm", "grad_norm.png", "gradient norm (before clipping)", True),
    ):
        series = _series(train, field)
        if _has_finite(series):
            fig, ax = figure(ylabel)
            _draw(ax, series, "C0", None, 1)
            if log_scale and np.all(series[1][np.isfinite(series[1])] > 0):
                ax.set_yscale("log")
            save(fig, name)

    tokens = _series(train, "tokens_per_s")
    if _has_finite(tokens):
        fig, ax = figure("tokens/s")
        ax.yaxis.label.set_color("C0")
        _draw(ax, tokens, "C0", "tokens/s", 1)
        utilization = _series(train, "mfu")
        if _has_finite(utilization):
            right = ax.twinx()
            right.set_ylabel("MFU (of the measured GEMM rate)", color="C2")
            steps, values, faint = utilization
            _draw(right, (steps, 100 * values, faint), "C2", "MFU", 0.8)
            right.yaxis.set_major_formatter("{x:.0f}%")
            right.set_ylim(bottom=0)
        ax.set_ylim(bottom=0)
        save(fig, "throughput.png")
    return written


def _abandoned(records: Sequence[Mapping[str, Any]]) -> list[bool]:
    """True for a train or val record that a rollback abandoned: a later train record has a
    step ≤ its step (that step was redone), or, for a val record, a later val record does.

    This reads steps as docs/monitoring.md defines them: train step s is the s-th update, val
    step s evaluates the parameters after it, so in a run without rollbacks every later train
    record has a greater step.
    """
    flags = []
    later_train = later_train_or_val = math.inf
    for record in reversed(records):
        kind, step = record["kind"], _step_of(record)
        if kind == "train":
            flags.append(later_train <= step)
            later_train = min(later_train, step)
        elif kind == "val":
            flags.append(later_train_or_val <= step)
        else:
            flags.append(False)
            continue
        later_train_or_val = min(later_train_or_val, step)
    return flags[::-1]


def _series(
    items: Sequence[tuple[Mapping[str, Any], bool]], field: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, values with NaN for missing or non-finite, abandoned flags) of ``field``."""
    steps, values, faint = [], [], []
    for record, abandoned in items:
        value = record.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            steps.append(record["step"])
            values.append(float(value) if math.isfinite(value) else math.nan)
            faint.append(abandoned)
    return np.array(steps), np.array(values, dtype=np.float64), np.array(faint, dtype=bool)


def _draw(
    ax: Any,
    series: tuple[np.ndarray, ...],
    color: str,
    label: str | None,
    alpha: float,
    marker: str | None = None,
) -> None:
    """The kept points as a line; each run of abandoned points as a faint grey line."""
    steps, values, faint = series
    kept = ~faint
    ax.plot(steps[kept], values[kept], color=color, alpha=alpha, label=label, marker=marker, ms=3)
    start = 0
    while start < len(faint):
        if not faint[start]:
            start += 1
            continue
        stop = start
        while stop < len(faint) and faint[stop]:
            stop += 1
        ax.plot(steps[start:stop], values[start:stop], color="0.6", lw=1, marker=marker, ms=3)
        start = stop


def _ema(values: np.ndarray, span: int) -> np.ndarray:
    """Debiased exponential moving average, β = 1 − 1/span; NaN entries are passed over."""
    beta = 1.0 - 1.0 / span
    out = np.full_like(values, math.nan)
    mean, weight = 0.0, 0.0
    for i, v in enumerate(values):
        if math.isfinite(v):
            mean = beta * mean + (1 - beta) * v
            weight = beta * weight + (1 - beta)
            out[i] = mean / weight
    return out


def _has_finite(series: tuple[np.ndarray, ...]) -> bool:
    return bool(np.isfinite(series[1]).any())


def _is_count(value: Any) -> bool:
    """An integer (a NumPy one too), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _all_finite(*values: Any) -> bool:
    return all(v is None or (isinstance(v, (int, float)) and math.isfinite(v)) for v in values)
