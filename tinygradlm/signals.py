"""Ctrl-C and SIGTERM as exceptions, so that a stopped command runs its ``finally`` blocks and
leaves no temporary output behind.

Python raises ``KeyboardInterrupt`` for Ctrl-C (SIGINT) on its own; SIGTERM, what schedulers
such as Slurm send, would end the process at once. :func:`sigterm_as_exception` makes it raise
:class:`Terminated`, a ``KeyboardInterrupt``, instead. Either way the command ends with exit
status 128 + the signal number (:func:`exit_status`): 130 for Ctrl-C, 143 for SIGTERM. A
training run goes further and stops at a step boundary on every rank (``tinygradlm.train.stop``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["Terminated", "exit_status", "sigterm_as_exception"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that every ``finally`` runs and no
    temporary output is left behind."""

    exit_status = 128 + signal.SIGTERM


def exit_status(stop: KeyboardInterrupt) -> int:
    """The exit status of a command stopped by ``stop``: 128 + its signal number."""
    return getattr(stop, "exit_status", 128 + signal.SIGINT)


@contextlib.contextmanager
def sigterm_as_exception() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` in the block (main thread only), instead of ending
    the process at once with temporary files left behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(_signum: int, _frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
