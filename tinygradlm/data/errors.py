"""The one exception type of the data path.

Every module under ``tinygradlm.data`` raises :class:`DataError` when its input is wrong, with a
message that says what was wrong and where (a file, a byte offset, a ``path:line``, a config
key), so a user never has to read a traceback from deep inside NumPy or the JSON decoder.
"""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """Bad data-path input: a missing file, invalid UTF-8, a malformed JSONL line, a bad shard
    header, an unknown config key. The message names the file (and offset or line) or the key.

    A subclass of ``ValueError`` so callers that already catch ``ValueError`` keep working.
    """
