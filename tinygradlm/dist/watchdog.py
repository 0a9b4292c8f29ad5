"""The collective watchdog (``collective_timeout_s``, default 300 s, 0 disables): every
collective of :class:`~tinygradlm.dist.comm.MPIDist` is timed by a daemon thread per rank. When
one has not returned within the timeout, the thread prints ``[rank r] collective <name> at step
s has not completed after Ns (waiting on the other ranks: ...)`` to stderr and, unless
``collective_timeout_abort = false``, aborts the job (``MPI_Abort``) so that a stalled rank does
not leave the job hanging forever.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any


class Watchdog:
    """A daemon thread that reports (and by default aborts on) a collective that has not
    returned within ``timeout_s`` seconds; :meth:`watch` arms it around one collective."""

    def __init__(self, rank: int, timeout_s: float, abort: Any = None) -> None:
        self.rank, self.timeout_s, self.abort_job = rank, float(timeout_s), abort
        self.step = 0  # the training step, for the message (the trainer sets it)
        self._cond = threading.Condition()
        self._armed: tuple[str, int, float] | None = None  # name, step, start
        self._thread = threading.Thread(target=self._run, name="collective-watchdog", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def watch(self, name: str) -> Iterator[None]:
        with self._cond:
            self._armed = (name, self.step, time.monotonic())
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._armed = None
                self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                armed = self._armed
                if armed is None:
                    self._cond.wait()
                    continue
                left = armed[2] + self.timeout_s - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                if self._armed is not armed:
                    continue
                name, step, start = armed
                print(
                    f"[rank {self.rank}] collective {name} at step {step} has not completed "
                    f"after {time.monotonic() - start:.0f}s (waiting on the other ranks: one has "
                    "not reached it, or has died or stalled)",
                    file=sys.stderr,
                    flush=True,
                )
                if self.abort_job is not None:
                    print(f"[rank {self.rank}] aborting the job", file=sys.stderr, flush=True)
                    time.sleep(0.5)  # for the launcher to forward the message
                    self.abort_job(1)
                self._armed = None  # reported once
