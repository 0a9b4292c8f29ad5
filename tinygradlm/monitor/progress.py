"""What a long job prints while it runs.

ProgressLine    a training run's line, one record at a time
progress_bar    a counter for any other long loop (tokenizer training): a tqdm bar on a
                terminal, occasional plain lines elsewhere (a log file, a pipe, CI), where
                a bar's carriage returns would pile up into one endless line
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TextIO

from tqdm import tqdm


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
        return is_terminal(self.stream)

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


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal, where a carriage return overwrites a line."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str,
    unit: str = "it",
    enabled: bool = True,
    stream: TextIO | None = None,
    every_seconds: float = 30.0,
) -> tqdm | PlainProgress:
    """A progress counter on ``stream`` (default: stderr as it is at the call): a tqdm bar on a
    terminal, a :class:`PlainProgress` (a plain line every ``every_seconds`` and one at the end)
    anywhere else. Both are iterated over (``for x in progress_bar(items, desc=…)``) or counted
    by hand (``update(n)``, then ``close()``); ``enabled=False`` prints nothing."""
    stream = stream if stream is not None else sys.stderr
    if enabled and is_terminal(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream)
    return PlainProgress(
        iterable, total=total, desc=desc, unit=unit, enabled=enabled, stream=stream,
        every_seconds=every_seconds,
    )  # fmt: skip


class PlainProgress:
    """tqdm's counting interface, printed as whole lines: ``merges: 1,200/4,000 (12s)`` at most
    once per ``every_seconds``, and ``merges: 4,000 done in 41s`` at :meth:`close` (or at the
    end of iteration)."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: int | None = None,
        desc: str,
        unit: str = "it",
        enabled: bool = True,
        stream: TextIO | None = None,
        every_seconds: float = 30.0,
        clock: Any = time.monotonic,
    ) -> None:
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.enabled, self.every_seconds, self._clock = enabled, every_seconds, clock
        self._stream = stream
        self.n = 0
        self._started = self._last_line = clock()
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError(f"PlainProgress {self.desc!r}: nothing to iterate over")
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self._clock()
        if now - self._last_line >= self.every_seconds:
            self._last_line = now
            of = f"/{self.total:,}" if self.total is not None else ""
            self._write(
                f"{self.desc}: {self.n:,}{of}{self.unit} ({format_duration(now - self._started)})"
            )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            elapsed = format_duration(self._clock() - self._started)
            self._write(f"{self.desc}: {self.n:,}{self.unit} done in {elapsed}")

    def _write(self, line: str) -> None:
        if self.enabled:
            stream = self._stream if self._stream is not None else sys.stderr
            stream.write(line + "\n")
            stream.flush()
