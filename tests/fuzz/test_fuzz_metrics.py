"""Fuzzing metrics.jsonl (``read_metrics``, what ``tinygradlm plot`` reads): any mutation of a
valid file (bytes, lines, or any value of one record) gives records whose numbers all convert
to floats (non-finite ones only as the writer spells them), or a MetricsError naming the line,
within the time and memory bounds; and no file changes.
"""

import json
import math
import tempfile
from pathlib import Path

from fuzz_support import mutated_bytes, mutated_json, read_within_bounds, snapshot
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.errors import MetricsError
from tinygradlm.monitor import MetricsLogger, read_metrics


def _valid_metrics() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        with MetricsLogger(tmp) as log:
            time = {"forward": 0.1, "backward": 0.2}
            for step in range(1, 4):
                loss = float("inf") if step == 2 else 3.0 / step
                log.log_train(
                    step, loss=loss, lr=1e-3, grad_norm=1.5, tokens_per_s=1e4, mfu=0.3, time=time
                )
            log.log_val(3, loss=2.5)
            log.log_event(3, "rollback", "nan")
        return (Path(tmp) / "metrics.jsonl").read_bytes()


VALID = _valid_metrics()


@st.composite
def mutated_metrics(draw):
    if draw(st.booleans()):
        return draw(mutated_bytes(VALID))
    lines = VALID.split(b"\n")
    i = draw(st.integers(0, len(lines) - 2))
    lines[i] = draw(mutated_json(json.loads(lines[i])))
    return b"\n".join(lines)


def _numbers(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


@given(data=mutated_metrics())
def test_mutated_metrics_read_as_plottable_records_or_a_metrics_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metrics.jsonl"
        path.write_bytes(data)
        before = snapshot(Path(tmp))
        records = read_within_bounds(lambda: read_metrics(tmp), MetricsError)
        if records is not None:
            for record in records:
                assert isinstance(record, dict) and isinstance(record["kind"], str)
                for number in _numbers(record):
                    math.isfinite(float(number))  # no OverflowError: plot can draw it
        assert snapshot(Path(tmp)) == before
