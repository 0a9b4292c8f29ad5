"""``ChromeTrace``: each rank's step sections as a timeline for chrome://tracing or Perfetto."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..atomic import write_atomic


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
