"""The shape of report.json, checked once when it is read, so that printing and plotting a
report (``tinygradlm report``) never meet a field of the wrong type.

A spec is one of:

- ``COUNT`` (an integer ≥ 0), ``NUMBER`` (a finite number ≥ 0), ``TEXT`` (a string);
- ``[spec]``: a JSON array whose items all match ``spec``;
- ``{key: spec}``: a JSON object holding each key; a key ending in ``?`` may be absent, the key
  ``*`` matches every key not named. Other keys are allowed (a newer prepare may add fields).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..errors import DataError

__all__ = ["REPORT", "check_report"]

COUNT, NUMBER, TEXT = "an integer >= 0", "a finite number >= 0", "a string"

_COUNTS = {"documents": COUNT, "characters": COUNT}
_STATS = {
    "documents?": COUNT,
    "tokens": COUNT,
    "bytes_per_token": NUMBER,
    "characters_per_token": NUMBER,
    "length_histogram": {"bin_starts": [COUNT], "counts": [COUNT]},
    "character_classes": {"*": NUMBER},
    "scripts": {"*": {"share": NUMBER}},
    "top_tokens": [{"id": COUNT, "text": TEXT, "count": COUNT, "share": NUMBER}],
}
_COLUMN = {
    "weight?": NUMBER,
    "token_share?": NUMBER,
    "tokenizer_sample_chars?": COUNT,
    "skipped_files?": {"*": {"paths": COUNT, "first": TEXT, "relaxed_by": TEXT}},
    "before": _COUNTS,
    "after_cleaning": {"documents": COUNT},
    "after": _COUNTS,
    "removed": {"*": {"documents": COUNT, "tokens?": COUNT, "characters?": COUNT}},
    "splits": {"*": {"tokens?": COUNT}},
    "tokens?": {"before": COUNT, "after_cleaning": COUNT, "after": COUNT},
    "stats": _STATS,
}
REPORT = {"sources": {"*": _COLUMN}, "overall": _COLUMN, "mixture?": {"*": NUMBER}}


def check_report(report: Any, where: str) -> None:
    """DataError naming ``where`` and the first field of ``report`` that does not match
    :data:`REPORT` (and what was expected there)."""
    problem = _mismatch(report, REPORT, "")
    if problem is not None:
        raise DataError(f"{where}: malformed corpus statistics: {problem}")
    for name, column in [*report["sources"].items(), ("overall", report["overall"])]:
        histogram = column["stats"]["length_histogram"]
        if len(histogram["counts"]) != len(histogram["bin_starts"]):
            raise DataError(
                f"{where}: malformed corpus statistics: {name}'s length histogram has "
                f"{len(histogram['counts'])} counts for {len(histogram['bin_starts'])} bins"
            )
        if (
            "mixture" in report
            and name != "overall"
            and not {"weight", "token_share"} <= set(column)
        ):
            raise DataError(
                f"{where}: malformed corpus statistics: a mixture's source {name} lacks its "
                "'weight' or 'token_share'"
            )
        for rule, entry in column["removed"].items():
            if "tokens" not in entry and "characters" not in entry:
                raise DataError(
                    f"{where}: malformed corpus statistics: {name}.removed.{rule} has neither "
                    "'tokens' nor 'characters'"
                )


def _mismatch(value: Any, spec: Any, path: str) -> str | None:
    """The first place ``value`` differs from ``spec`` (as ``path: expected …, got …``)."""
    here = path or "the report"
    if isinstance(spec, str):
        return None if _matches_leaf(value, spec) else f"{here}: expected {spec}, got {value!r:.60}"
    if isinstance(spec, list):
        if not isinstance(value, list):
            return f"{here}: expected a JSON array, got {type(value).__name__}"
        for i, item in enumerate(value):
            problem = _mismatch(item, spec[0], f"{path}[{i}]")
            if problem is not None:
                return problem
        return None
    if not isinstance(value, Mapping):
        return f"{here}: expected a JSON object, got {type(value).__name__}"
    named = {key.removesuffix("?") for key in spec if key != "*"}
    for key, item_spec in spec.items():
        name = key.removesuffix("?")
        if key == "*":
            items = [(k, v) for k, v in value.items() if k not in named]
        elif name in value:
            items = [(name, value[name])]
        elif key.endswith("?"):
            items = []
        else:
            return f"{here}: lacks {name!r}"
        for k, v in items:
            problem = _mismatch(v, item_spec, f"{path}.{k}" if path else k)
            if problem is not None:
                return problem
    return None


def _matches_leaf(value: Any, spec: str) -> bool:
    if spec == TEXT:
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if spec == COUNT:
        return isinstance(value, int) and value >= 0
    return math.isfinite(value) and value >= 0
