"""The one validation layer for settings: a declarative rule per setting (its kind, its range or
choices, a line of doc), checked against a table of values with every problem reported at once.

Every config of the project is a table of plain values (TOML, ``KEY=VALUE`` overrides, a
checkpoint's JSON) read into a dataclass; the dataclass holds the defaults, a ``RULES`` mapping
next to it says what each value may be, and :func:`check_table` compares the two before the
dataclass is built, so no setting of the wrong type or out of range reaches the code that uses
it. The rules of kind are strict, because a config that "works" with a wrong type is worse than
one that stops:

- a bool is not an integer (``batch_size = true`` is refused);
- an integer setting takes an integer only: ``vocab_size = 300.0`` and ``300.5`` are refused
  alike (TOML tells ``300`` from ``300.0``; a float where a count is meant is a typo or a
  computed value, and rounding it silently would hide which);
- a number setting takes an integer or a finite float (never NaN or infinity);
- a path is a string; a string setting with choices takes one of them.

:func:`problems_message` turns the problems into one message that names, for each, where the
value came from (a file, or ``override KEY=VALUE``), the dotted key, what was given and what was
expected. The caller raises its own error type with it (``ConfigError`` for a config file).
An unknown key also names the known key it most likely misspells (:func:`closest`), so a typo in
a TOML file and in a ``KEY=VALUE`` override get the same "did you mean".
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Problem",
    "Rule",
    "Settings",
    "check_table",
    "check_value",
    "closest",
    "problems_message",
]

KINDS = ("int", "number", "bool", "str", "path", "str_list", "table", "optional_int")


@dataclass(frozen=True)
class Rule:
    """What one setting may be. kind: one of ``KINDS``. low/high: the inclusive bounds of a
    number (``open_low``/``open_high`` make them exclusive). choices: the strings a ``str``
    setting may take. doc: what the setting means, for messages and docs."""

    kind: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] = ()
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Rule: kind must be one of {KINDS}, got {self.kind!r}")

    def expected(self) -> str:
        """What a valid value is, in words: ``a positive integer``, ``a number in [0, 1)``."""
        if self.kind in ("int", "optional_int"):
            absent = "" if self.kind == "int" else " (or absent)"
            if self.low == 1 and not self.open_low:
                high = "" if self.high is None else f" ≤ {_number(self.high)}"
                return f"a positive integer{high}{absent}"
            return f"an integer{self._range()}{absent}"
        if self.kind == "number":
            return "a number" + self._range()
        if self.kind == "str" and self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        return {
            "bool": "true or false",
            "str": "a string",
            "path": "a path (a string)",
            "str_list": "a list of strings",
            "table": "a table",
        }[self.kind]

    def _range(self) -> str:
        if self.low is not None and self.high is not None:
            left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
            return f" in {left}{_number(self.low)}, {_number(self.high)}{right}"
        if self.low is not None:
            return f" {'>' if self.open_low else '≥'} {_number(self.low)}"
        if self.high is not None:
            return f" {'<' if self.open_high else '≤'} {_number(self.high)}"
        return ""


@dataclass(frozen=True)
class Problem:
    """One setting that is wrong: its dotted key (to find where it was set) and the text that
    says what is wrong (``batch_size must be a positive integer, got 0``)."""

    key: str
    text: str


def is_integer(value: Any) -> bool:
    """An int (NumPy's included) that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_value(value: Any, rule: Rule) -> str | None:
    """None if ``value`` satisfies ``rule``, else what is wrong, in words."""
    got = f"must be {rule.expected()}, got {_shown(value)}"
    kind = rule.kind
    if kind == "optional_int" and value is None:
        return None
    if kind in ("int", "optional_int"):
        return None if is_integer(value) and _in_range(int(value), rule) else got
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return got
        return None if math.isfinite(value) and _in_range(value, rule) else got
    if kind == "bool":
        return None if isinstance(value, bool) else got
    if kind in ("str", "path"):
        if not isinstance(value, str):
            return got
        return None if not rule.choices or value in rule.choices else got
    if kind == "str_list":
        valid = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        return None if valid else got
    return None if isinstance(value, Mapping) else got  # table


def check_table(
    values: Any, rules: Mapping[str, Rule], prefix: str = "", *, allow_unknown: bool = False
) -> list[Problem]:
    """Every problem of the table ``values`` against ``rules``: a value that breaks its rule, and
    (unless ``allow_unknown``) a key without a rule. ``prefix`` is the table's dotted name
    (``"clean."``) for the keys of the problems. Keys absent from ``values`` take the defaults,
    which are not checked here."""
    if not isinstance(values, Mapping):
        table = prefix.rstrip(".")
        return [Problem(table, f"{table or 'the settings'} must be a table, got {_shown(values)}")]
    problems = []
    if not allow_unknown:
        known = ", ".join(sorted(rules))
        for key in sorted(str(key) for key in values if key not in rules):
            text = f"unknown key {prefix}{key} (known: {known})"
            close = closest(key, rules)
            if close is not None:
                text += f"; did you mean {prefix}{close}?"
            problems.append(Problem(prefix + key, text))
    for key, rule in rules.items():
        if key in values:
            wrong = check_value(values[key], rule)
            if wrong is not None:
                problems.append(Problem(prefix + key, f"{prefix}{key} {wrong}"))
    return problems


def closest(word: str, known: Iterable[str]) -> str | None:
    """The one of ``known`` that ``word`` most likely misspells (``max_step`` → ``max_steps``),
    or None when none is close: difflib's similarity ratio 2·matches / (len(a) + len(b)) of at
    least 0.6, its default, which a dropped or swapped letter keeps and a different word does
    not."""
    matches = difflib.get_close_matches(word, list(known), n=1)
    return matches[0] if matches else None


class Settings(dict):
    """A config's values as read (a plain dict to every caller) that also remember where each
    came from: ``source`` (a file, a preset) and, in ``origins``, the dotted keys an override
    set (``"model.n_layer": "override model.n_layer=3"``). :meth:`where` names the origin of a
    key for an error message."""

    def __init__(self, values: Mapping[str, Any] | None = None, source: str = "") -> None:
        super().__init__(values or {})
        self.source = source
        self.origins: dict[str, str] = {}

    def where(self, key: str) -> str:
        """The override that set ``key`` or a table above it, else ``source``."""
        parts = key.split(".")
        for n in range(len(parts), 0, -1):
            origin = self.origins.get(".".join(parts[:n]))
            if origin:
                return origin
        return self.source


def problems_message(problems: list[Problem], where: str | Callable[[str], str] | None) -> str:
    """One message for ``problems``: a line ``WHERE: TEXT`` each, where ``where`` is a fixed
    source (a file), a function of the dotted key (a key set by an override names the
    override), or None (the text alone)."""
    lines = []
    for problem in problems:
        source = where(problem.key) if callable(where) else where
        lines.append(f"{source}: {problem.text}" if source else problem.text)
    return lines[0] if len(lines) == 1 else f"{len(lines)} problems:\n  " + "\n  ".join(lines)


def _in_range(value: float, rule: Rule) -> bool:
    if rule.low is not None and (value <= rule.low if rule.open_low else value < rule.low):
        return False
    return rule.high is None or (value < rule.high if rule.open_high else value <= rule.high)


def _number(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _shown(value: Any) -> str:
    """``value`` for a message, cut short: a config may hold a megabyte-long string."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
