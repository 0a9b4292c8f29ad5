"""Fuzzing report.json, read by ``tinygradlm report`` (``load_report``, then ``summary``) and
by training (``resolve_sources``: the mixture weights of a prepared directory). Any mutation of
a valid report (bytes, or any value at any path) either loads to a report that ``summary``
prints without error, or is a DataError naming the file, within the time and memory bounds;
and no file changes.
"""

import json
import tempfile
from pathlib import Path

import numpy as np
from fuzz_support import mutated_bytes, mutated_json, read_within_bounds, snapshot
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.data import CleanConfig
from tinygradlm.data.corpus import load_report, summary
from tinygradlm.data.mix import resolve_sources
from tinygradlm.data.prepare import PrepareConfig, prepare
from tinygradlm.data.sources import Source
from tinygradlm.errors import DataError


def _prepared_report() -> bytes:
    """report.json of a small two-source preparation (a mixture, so every field is there)."""
    rng = np.random.default_rng(0)
    words = "the quick brown fox jumps over the lazy dog and runs into the forest again".split()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for source in ("books", "docs"):
            (root / source).mkdir()
            for i in range(6):
                text = " ".join(rng.permutation(words * (6 + 2 * i)))
                (root / source / f"{i}.txt").write_text(text + ".")
        clean = CleanConfig(stop_words=False)
        config = PrepareConfig(vocab_size=300, val_fraction=0.2, shard_tokens=300, clean=clean)
        sources = [Source("books", (root / "books",), 0.7), Source("docs", (root / "docs",), 0.3)]
        prepare(None, root / "out", config, sources=sources, log=lambda _m: None)
        return (root / "out" / "report.json").read_bytes()


VALID = _prepared_report()


@given(data=st.one_of(mutated_bytes(VALID), mutated_json(json.loads(VALID))))
def test_a_mutated_report_prints_or_is_a_data_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "report.json").write_bytes(data)
        before = snapshot(root)
        report = read_within_bounds(lambda: load_report(root), DataError)
        if report is not None:
            assert isinstance(read_within_bounds(lambda: summary(report), ()), str)
        read_within_bounds(lambda: resolve_sources(root), DataError)
        assert snapshot(root) == before
