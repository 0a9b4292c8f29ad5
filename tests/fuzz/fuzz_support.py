"""What every fuzz test of a reader shares: the mutations of a valid file, and the property.

The property (docs/fuzzing.md): whatever bytes a reader is given, it returns a valid object or
raises the project's own error type for that input, within a time and a memory bound, and it
changes no file. :func:`read_within_bounds` checks everything but validity, which each test
checks on what came back.

The mutations start from a valid file, so that they reach the layers behind the first check:
arbitrary bytes; truncation; flipped bytes; a line deleted, duplicated or swapped; a number
changed to a huge, negative, fractional or string value; a value nested 100,000 deep; and, for
JSON, any value at any path replaced by one of those.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

# each example must finish in this much CPU time (tracemalloc's bookkeeping, about 4x on
# allocation-heavy code, included; CPU time, so that other processes on the machine do not
# count) and allocate at most this much at its peak
MAX_CPU_SECONDS = 5.0
MAX_PEAK_BYTES = 64 << 20
DEEP = 100_000  # levels of nesting: past every parser's recursion limit

# numbers a reader must survive in place of any number of a valid file
HOSTILE_NUMBERS = [
    "0",
    "-1",
    "-0",
    "1.5",
    "1e308",
    "1e400",
    "-1e400",
    "1000000000000",
    "10" + "0" * 40,
    "9" * 5000,
    "NaN",
    "Infinity",
    '"12"',
    "true",
    "null",
    "[]",
    "{}",
]
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def deep(opening: str = "[", closing: str = "]") -> str:
    return opening * DEEP + closing * DEEP


# ---- byte-level mutations ------------------------------------------------------------------


@st.composite
def mutated_bytes(draw: Any, valid: bytes) -> bytes:
    """``valid`` after one to three mutations, or arbitrary bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=4096))
    data = valid
    for _ in range(draw(st.integers(1, 3))):
        mutate = draw(st.sampled_from(_MUTATIONS))
        data = mutate(draw, data)
    return data


def _truncate(draw: Any, data: bytes) -> bytes:
    return data[: draw(st.integers(0, max(len(data) - 1, 0)))]


def _flip(draw: Any, data: bytes) -> bytes:
    if not data:
        return data
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 8))):
        out[draw(st.integers(0, len(out) - 1))] ^= draw(st.integers(1, 255))
    return bytes(out)


def _lines(draw: Any, data: bytes) -> bytes:
    lines = data.split(b"\n")
    i = draw(st.integers(0, len(lines) - 1))
    j = draw(st.integers(0, len(lines) - 1))
    operation = draw(st.sampled_from(["delete", "duplicate", "swap", "replace"]))
    if operation == "delete":
        del lines[i]
    elif operation == "duplicate":
        lines.insert(j, lines[i])
    elif operation == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    else:
        lines[i] = draw(st.binary(max_size=80))
    return b"\n".join(lines)


def _number(draw: Any, data: bytes) -> bytes:
    numbers = list(_NUMBER.finditer(data))
    if not numbers:
        return data
    match = draw(st.sampled_from(numbers))
    value = draw(st.sampled_from(HOSTILE_NUMBERS)).encode()
    return data[: match.start()] + value + data[match.end() :]


def _nest(draw: Any, data: bytes) -> bytes:
    at = draw(st.integers(0, len(data)))
    opening, closing = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ("[", "")]))
    return data[:at] + deep(opening, closing).encode() + data[at:]


def _insert(draw: Any, data: bytes) -> bytes:
    at = draw(st.integers(0, len(data)))
    return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]


_MUTATIONS: list[Callable[[Any, bytes], bytes]] = [
    _truncate,
    _flip,
    _lines,
    _number,
    _number,
    _nest,
    _insert,
]


# ---- JSON-level mutations ------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.sampled_from([0, -1, 10**12, 10**40, 2**63, 1.5, -0.5, 1e308, 5e-324]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (a tuple of keys and indices) to a value inside ``value``."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:20]):
            found += _paths(item, (*prefix, index))
    return found


def _replace(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(value[path[0]], path[1:], new)
    return copy


@st.composite
def mutated_json(draw: Any, valid: Any) -> bytes:
    """The JSON text of ``valid`` with one to three values replaced (by a hostile number, any
    JSON value, a deep nesting, or a deleted key), then perhaps byte-mutated too."""
    value = valid
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(value)))
        kind = draw(st.integers(0, 3))
        if kind == 0 and path and isinstance(_parent(value, path), dict):
            parent = dict(_parent(value, path))
            del parent[path[-1]]
            value = _replace(value, path[:-1], parent)
        elif kind == 1:
            value = _replace(value, path, _Raw(draw(st.sampled_from(HOSTILE_NUMBERS))))
        elif kind == 2:
            value = _replace(value, path, _Raw(deep()))
        else:
            value = _replace(value, path, draw(json_values))
    text = _dumps(value).encode()
    return draw(mutated_bytes(text)) if draw(st.integers(0, 4)) == 0 else text


def _parent(value: Any, path: tuple) -> Any:
    for key in path[:-1]:
        value = value[key]
    return value


class _Raw(str):
    """JSON text to splice in as it is (a number json.dumps cannot write, a deep nesting)."""


def _dumps(value: Any) -> str:
    if isinstance(value, _Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dumps(v) for v in value) + "]"
    return json.dumps(value)


# ---- the property --------------------------------------------------------------------------


def read_within_bounds(read: Callable[[], Any], errors: type[Exception] | tuple) -> Any:
    """``read()``'s result, or None when it raised one of ``errors``; any other exception
    propagates (the test fails on it), and so does running past MAX_CPU_SECONDS or allocating
    more than MAX_PEAK_BYTES at the peak."""
    tracemalloc.start()
    start = time.process_time()
    try:
        result = read()
    except errors:
        result = None
    finally:
        elapsed = time.process_time() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert elapsed < MAX_CPU_SECONDS, f"the reader took {elapsed:.2f} s of CPU time"
    assert peak < MAX_PEAK_BYTES, f"the reader allocated {peak / 2**20:.1f} MiB at its peak"
    return result


def snapshot(directory: Path) -> dict[str, str]:
    """Every file below ``directory``: its relative path and SHA-256 (to check that a reader
    changed nothing)."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }
