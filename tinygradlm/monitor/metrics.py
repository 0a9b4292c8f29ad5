"""The metrics file: one JSON object per line in ``run_dir/metrics.jsonl``.

    MetricsLogger   writes train, val, layers and event records, flushed line by line; on
                    resume, the crashed tail after the checkpoint is dropped (an atomic rewrite)
    read_metrics    the records back, tolerating the half-written last line a crash leaves

Strict JSON has no NaN or infinity, and a diverging run produces both: they are written as the
strings "nan", "inf", "-inf" and read back as floats. A number the writer never writes (``NaN``,
``1e400``, which would read as infinity) is a MetricsError naming the line. The fields are in
docs/monitoring.md.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..atomic import write_atomic
from ..errors import MetricsError
from ..parse import parse_json

METRICS_FILE = "metrics.jsonl"

# strict JSON has no NaN or infinity: they are written as these strings and read back as floats
_NON_FINITE_NAMES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
# fields that hold text, never a number: a message "nan" stays a string (and the names of a
# layers record's lists)
_TEXT_FIELDS = frozenset({"kind", "event", "message", "layers", "act_layers"})


class MetricsLogger:
    """Append one JSON object per line to ``run_dir/metrics.jsonl``, flushed as it is written.

    Records are ``{"kind": "train" | "val" | "layers" | "event", "step": int, ...}`` (the fields
    are in docs/monitoring.md). Non-finite floats are written as the strings ``"nan"``, ``"inf"``
    and ``"-inf"``, so every line stays strict JSON; :func:`read_metrics` turns them back into
    floats.

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
        if not is_count(step) or step < 0:
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

    def log_layers(self, step: int, *, layers: list[str], **lists: Any) -> dict[str, Any]:
        """Per-layer diagnostics (``tinygradlm.train.diagnostics``): ``layers`` names the layer
        groups, and each list in ``lists`` (``grad_norm``, ``update_ratio``, …) holds one float
        per name, in that order (``act_rms``: one per name of ``act_layers``)."""
        return self.log({"kind": "layers", "step": step, "layers": list(layers), **lists})

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
    (except in the text fields kind, event, message, layers and act_layers).
    """
    return [record for record, _ in _read_lines(metrics_path(run_dir))]


def metrics_path(run_dir: str | os.PathLike[str]) -> Path:
    """``run_dir/metrics.jsonl``, or ``run_dir`` itself when it is a file; FileNotFoundError
    when there is none."""
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

    try:  # parse.py's rules: UTF-8, bounded nesting, finite numbers (the writer spells inf)
        value = parse_json(raw, "", ValueError)
    except ValueError as e:
        raise fail(str(e).removeprefix(": ")) from None
    if not isinstance(value, dict) or not isinstance(value.get("kind"), str):
        raise fail("not a JSON object with a string 'kind'")
    try:
        return _decode(value)
    except OverflowError as e:
        raise fail(str(e)) from None


def _step_of(record: Mapping[str, Any]) -> float:
    step = record.get("step")
    return step if is_count(step) else -math.inf


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
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _INT_LIMIT:
        # no counter of a run reaches 2**63; such a number would overflow a float or an array
        raise OverflowError(f"{field or 'a value'} is {str(value)[:20]}..., beyond 64 bits")
    if isinstance(value, str):
        return value if field in _TEXT_FIELDS else _NON_FINITE_NAMES.get(value, value)
    if isinstance(value, dict):
        return {k: _decode(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, field) for v in value]
    return value


_INT_LIMIT = 1 << 63


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def is_count(value: Any) -> bool:
    """An integer (a NumPy one too), not a bool: what a record's step must be."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
