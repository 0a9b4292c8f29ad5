"""Every error type of tinygradlm, in one place.

Each names what was wrong with the input and where (a file, a byte offset, a ``path:line``, a
config key), so a user never has to read a traceback from deep inside NumPy or a JSON decoder.
The input errors subclass ``ValueError``, so callers that already catch ``ValueError`` keep
working. (``tinygradlm.testing.GradcheckError`` is an ``AssertionError`` instead, so that pytest
shows it as a failed check; it lives with the checker.)
"""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "DataError", "DivergenceError", "MetricsError"]


class DataError(ValueError):
    """Bad data-path input: a missing file, invalid UTF-8, a malformed JSONL line, a bad shard
    header, an unknown config key. The message names the file (and offset or line) or the key.
    """


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or read; the message names the file and the problem."""


class MetricsError(ValueError):
    """A metrics file that is not valid JSON Lines of records (names the file and the line)."""


class DivergenceError(RuntimeError):
    """The run kept diverging after ``max_rollbacks`` rollbacks: stop rather than burn compute."""


class ConfigError(ValueError):
    """A setting of the wrong type or out of range, in a config file, a ``KEY=VALUE`` override
    or a config built in code; the message names the file (or the override), the dotted key,
    the value given and what was expected, for every such setting at once."""
