"""The mixture a run asks for: the ``data.mix`` setting, resolved against a prepared directory
into the :class:`~.mixture.Source` list that :class:`~.mixture.MixtureLoader` draws from, and
the loss of the mixture as a whole."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
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
            try:
                weight = float(weight)
            except (TypeError, ValueError):
                raise DataError(
                    f"data.mix: {weight!r} is not a weight: the form is 'weight path weight path "
                    "…' (a weight before each path)"
                ) from None
            pairs.append((str(name), weight))
    else:
        raise DataError(
            f"data.mix must be a table {{name = weight, …}} or 'weight path weight path …', "
            f"got {type(mix).__name__}"
        )
    if not pairs:
        raise DataError("data.mix is empty: name at least one source")
    seen: set[str] = set()
    for name, weight in pairs:
        if not name:
            raise DataError("data.mix: a source has an empty name")
        if name in seen:
            raise DataError(f"data.mix: source {name!r} is listed twice")
        seen.add(name)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not math.isfinite(weight)
            or weight <= 0
        ):
            raise DataError(
                f"data.mix: source {name!r} has weight {weight!r}; a weight must be a number > 0 "
                "(leave a source out to not use it)"
            )
    return [(name, float(weight)) for name, weight in pairs]


def prepared_mixture(data_dir: str | Path) -> dict[str, float] | None:
    """The weights ``tinygradlm prepare --source`` recorded in ``data_dir/report.json``
    ("mixture": {name: weight}), or None for a single-source directory."""
    path = Path(data_dir) / REPORT_FILE
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read the prepare report: {e}") from None
    mixture = report.get("mixture") if isinstance(report, dict) else None
    if mixture is None:
        return None
    if not isinstance(mixture, dict):
        raise DataError(f"{path}: 'mixture' is {mixture!r}, not a table of source weights")
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
