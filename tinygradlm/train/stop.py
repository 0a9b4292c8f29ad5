"""Stopping a run on a signal, cleanly and on every rank at the same step.

    Ctrl-C (SIGINT)   the run stops at the end of the step it is in (a second Ctrl-C: at once),
                      with the last checkpoint it wrote; exit status 130 (128 + 2)
    SIGTERM           the same, but first a checkpoint of that step, so nothing is lost:
                      what a scheduler such as Slurm sends before a job's time runs out (with a
                      grace period before SIGKILL); exit status 143 (128 + 15)

Both say in one line where the run stopped, which checkpoint it resumes from, and that the same
command resumes it. The handlers only note the signal (:class:`StopRequests`); the loop asks
at each step boundary, and under MPI the ranks agree by a collective (the largest signal number
any rank received), so they all stop after the same step, whichever rank the signal reached
first, and no rank is left inside a collective.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

# what each signal is called in the message, and the exit status (128 + the signal number)
SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class RunStopped(KeyboardInterrupt):
    """A run stopped on a signal: ``str()`` is the one line to print; ``exit_status`` is
    128 + the signal number; ``announce`` is false on the ranks that print nothing."""

    def __init__(self, message: str, signum: int, *, announce: bool = True) -> None:
        super().__init__(message)
        self.exit_status = 128 + int(signum)
        self.announce = announce


class StopRequests:
    """SIGINT and SIGTERM handlers that note the signal for the loop (:meth:`installed`), and
    the step-boundary question every rank answers together (:meth:`agreed`)."""

    def __init__(self) -> None:
        self.received = 0  # the signal number, 0 for none; SIGTERM outranks SIGINT

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequests]:
        """The handlers, for the block (only the main thread can set them; elsewhere none)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signum: signal.getsignal(signum) for signum in SIGNAL_NAMES}
        for signum in SIGNAL_NAMES:
            signal.signal(signum, self._note)
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def _note(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C twice: the user will not wait for the step's end
        self.received = max(self.received, signum)

    def agreed(self, dist: Any) -> int:
        """The signal the run stops for now (0: none), the same on every rank: with several
        ranks, the largest any rank received (one small collective per step)."""
        if not dist.enabled:
            return self.received
        flag = dist.allreduce_max_(np.array([self.received], dtype=np.int64))
        return int(flag[0])


def stopped_message(step: int, signum: int, checkpoint: Any, *, wrote: bool) -> str:
    """The one line for a run that stopped after ``step`` on ``signum``."""
    where = f"stopped at step {step} ({SIGNAL_NAMES.get(signum, f'signal {signum}')})"
    if checkpoint is None:
        return f"{where}; no checkpoint yet: the same command starts the run again"
    what = "wrote checkpoint" if wrote else "last checkpoint"
    return f"{where}; {what} {checkpoint}: run the same command to resume"
