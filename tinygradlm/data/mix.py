"""The mixture a run asks for: the ``data.mix`` setting, resolved against a prepared directory
into the :class:`~.mixture.Source` list that :class:`~.mixture.MixtureLoader` draws from, and
the loss of the mixture as a whole."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..parse import read_json
from .shards import find_shards

REPORT_FILE = "report.json"  # written by `tinygradlm prepare`
# a source's name: also the folder of its shards in a prepared directory
SOURCE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Source:
    """One source of a mixture: its name (in metrics and state), its shard directory (or
    shard files) and its weight (relative; the loader normalises)."""

    name: str
    path: Path
    weight: float


def parse_mix(mix: Any) -> list[tuple[str, float]]:
    """The (source, weight) pairs of a ``data.mix`` setting, in order. Three forms:

    - a table ``{books = 0.7, docs = 0.3}``: source names (a prepared directory's sources) or
      paths, with weights;
    - Megatron's string ``"0.7 path/to/books 0.3 path/to/docs"``;
    - the same as a list ``[0.7, "path/to/books", 0.3, "path/to/docs"]``.

    Weights must be finite and > 0; they need not sum to 1. A DataError says what is wrong and
    where."""
    if isinstance(mix, Mapping):
        pairs = [(str(name), weight) for name, weight in mix.items()]
    elif isinstance(mix, (str, list, tuple)):
        items = mix.split() if isinstance(mix, str) else list(mix)
        if len(items) % 2:
            raise DataError(
                f"data.mix: {mix!r} has {len(items)} items; the weight/path form needs pairs "
                "'weight path weight path …'"
            )
        pairs = []
        for weight, name in zip(items[::2], items[1::2], strict=True):
            value = weight
            if isinstance(weight, str):  # a number stays as it is (10**400 is not a float)
                try:
                    value = float(weight)
                except ValueError:
                    value = None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DataError(
                    f"data.mix: {weight!r:.40} is not a weight: the form is 'weight path weight "
                    "path …' (a weight before each path)"
                )
            pairs.append((str(name), value))
    else:
        raise DataError(
            f"data.mix must be a table {{name = weight, …}} or 'weight path weight path …', "
            f"got {type(mix).__name__}"
        )
    if not pairs:
        raise DataError("data.mix is empty: name at least one source")
    seen: set[str] = set()
    weights = []
    for name, weight in pairs:
        if not name or "\0" in name:
            raise DataError(f"data.mix: a source has the name {name!r}, not a name or a path")
        if name in seen:
            raise DataError(f"data.mix: source {name!r} is listed twice")
        seen.add(name)
        value = _weight_value(weight)
        if value is None:
            raise DataError(
                f"data.mix: source {name!r} has weight {weight!r:.40}; a weight must be a finite "
                "number > 0 (leave a source out to not use it)"
            )
        weights.append(value)
    try:  # the loader normalises by the sum: it must be a float too
        total = math.fsum(weights)
    except OverflowError:
        total = math.inf
    if not math.isfinite(total):
        raise DataError(
            f"data.mix: the weights sum to more than a float holds ({max(weights):.3g} and "
            "more); they are relative, so scale them down"
        )
    return [(name, value) for (name, _), value in zip(pairs, weights, strict=True)]


def _weight_value(weight: Any) -> float | None:
    """``weight`` as a float if it is a finite number > 0 (not a bool), else None."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        return None
    try:
        value = float(weight)
    except OverflowError:  # an integer beyond the range of a float
        return None
    return value if math.isfinite(value) and value > 0 else None


def prepared_mixture(data_dir: str | Path) -> dict[str, float] | None:
    """The weights ``tinygradlm prepare --source`` recorded in ``data_dir/report.json``
    ("mixture": {name: weight}), or None for a single-source directory."""
    path = Path(data_dir) / REPORT_FILE
    if not os.path.lexists(path):
        return None
    report = read_json(path, DataError)  # a loop, a directory, bad UTF-8: named, not skipped
    mixture = report.get("mixture") if isinstance(report, dict) else None
    if mixture is None:
        return None
    if not isinstance(mixture, dict):
        raise DataError(f"{path}: 'mixture' is {mixture!r:.60}, not a table of source weights")
    try:
        parse_mix(mixture)
    except DataError as e:
        raise DataError(f"{path}: 'mixture': {e}") from None
    return mixture


def resolve_sources(data_dir: str | Path, mix: Any = None) -> list[Source] | None:
    """The sources a run reads, or None when it reads ``data_dir``'s own shards (one source).

    With ``mix`` (a ``data.mix`` setting, see :func:`parse_mix`), each entry is a source of
    ``data_dir`` (its subdirectory ``data_dir/NAME``) or else a path to a directory of shards.
    Without it, a directory prepared with several sources gives its sources at the weights it
    was prepared with; a directory with shards of its own gives None. Every source must hold
    training shards; a DataError names the one that does not."""
    data_dir = Path(data_dir)
    if mix is None:
        if not data_dir.is_dir() or find_shards(data_dir, "train"):
            return None
        mix = prepared_mixture(data_dir)
        if mix is None:
            return None  # the single-source loader says what is missing
    sources = []
    for name, weight in parse_mix(mix):
        inside = data_dir / name
        path = inside if _is_plain_name(name) and inside.is_dir() else Path(name)
        if not path.is_dir():
            known = _source_dirs(data_dir)
            raise DataError(
                f"data.mix: source {name!r} is neither a source of {data_dir} nor a directory"
                + (f" (its sources: {', '.join(known)})" if known else "")
            )
        if not find_shards(path, "train"):
            raise DataError(
                f"data.mix: source {name!r} ({path}) holds no training shards (train_*.bin)"
            )
        label = name if _is_plain_name(name) else path.resolve().name
        sources.append(Source(label, path, weight))
    labels = [s.name for s in sources]
    if len(set(labels)) != len(labels):  # two paths that end in the same directory name
        sources = [Source(str(s.path), s.path, s.weight) for s in sources]
    return sources


def _is_plain_name(name: str) -> bool:
    return SOURCE_NAME.fullmatch(name) is not None


def _source_dirs(data_dir: Path) -> list[str]:
    if not data_dir.is_dir():
        return []
    return sorted(p.name for p in data_dir.iterdir() if p.is_dir() and find_shards(p, "train"))


def mixture_loss(losses: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """The loss on a token drawn as a mixture draws them: Σ w_i · loss_i over the sources in
    ``losses`` (each source's mean loss per token), with their ``weights`` renormalised over
    those sources."""
    total = math.fsum(weights[name] for name in losses)
    return math.fsum(weights[name] * loss for name, loss in losses.items()) / total
