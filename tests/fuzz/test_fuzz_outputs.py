"""Fuzz: ``prepare`` and ``export`` on corrupted inputs and settings either succeed or raise the
project's error, within a time bound, and a failure leaves the earlier valid output byte for
byte as it was, with no temporary left beside it.

Inputs are structurally mutated valid text and JSONL files (bytes inserted, cut, replaced,
truncated; invalid UTF-8; broken JSON) and any byte string; settings are well-typed values out
of range (types are the config readers' own fuzz). Checkpoints are mutated file by file.
"""

import json
import os
import random
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_train import make_data, tiny_config

from tinygradlm.checkpoint import latest_checkpoint, load_checkpoint
from tinygradlm.data.prepare import PrepareConfig, prepare
from tinygradlm.data.sources import Source
from tinygradlm.errors import CheckpointError, DataError
from tinygradlm.train import Trainer, export

# the project's errors: DataError and CheckpointError are ValueErrors, and a setting out of
# range is refused with a ValueError
PROJECT_ERRORS = (DataError, CheckpointError, ValueError)
SECONDS = 20  # the bound on one example
QUIET = lambda _m: None  # noqa: E731
FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

WORDS = "the a of and to in is it that was for on with as by at an be this from".split()
WORDS += "fox dog river stone cloud garden lamp window bridge letter music winter".split()


def valid_text(seed: int) -> str:
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(12)) + "." for _ in range(8)]
    return "\n".join(lines) + "\n"


def snapshot(directory: Path):
    files = {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }
    return files, sorted(os.listdir(directory.parent))


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` with a few structural mutations: bytes inserted, cut, overwritten, truncated."""
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["insert", "cut", "overwrite", "truncate", "repeat"]))
        junk = draw(st.binary(min_size=1, max_size=16))
        if edit == "insert":
            data = data[:at] + junk + data[at:]
        elif edit == "cut":
            data = data[:at] + data[at + len(junk) :]
        elif edit == "overwrite":
            data = data[:at] + junk + data[at + len(junk) :]
        elif edit == "truncate":
            data = data[:at]
        else:
            data = data[:at] + data[at:][:64] * 3 + data[at:]
    return data


@st.composite
def input_file(draw) -> tuple[str, bytes]:
    seed = draw(st.integers(0, 3))
    kind = draw(st.sampled_from(["txt", "jsonl", "bytes"]))
    if kind == "bytes":
        return "junk.txt", draw(st.binary(max_size=512))
    if kind == "jsonl":
        rows = [json.dumps({"text": valid_text(seed + k)}) for k in range(3)]
        return "docs.jsonl", draw(mutated("\n".join(rows).encode()))
    return f"doc{seed}.txt", draw(mutated(valid_text(seed).encode()))


SETTINGS = st.fixed_dictionaries(
    {},
    optional={
        "vocab_size": st.one_of(st.integers(-5, 600), st.just(10**12)),
        "val_fraction": st.floats(-1, 2),
        "seed": st.integers(0, 2**32),
        "shard_tokens": st.one_of(st.integers(-5, 300), st.sampled_from([2**31, 2**63])),
        "tokenizer_sample_chars": st.integers(-5, 10**4),
        "pattern": st.sampled_from(["gpt2", "gpt4", r"\w+|\s+|[^\w\s]+"]),
    },
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A valid preparation, the earlier output each example may replace."""
    root = tmp_path_factory.mktemp("fuzz_prepare")
    inputs = root / "inputs"
    inputs.mkdir()
    for seed in range(3):
        (inputs / f"doc{seed}.txt").write_text(valid_text(seed))
    prepare([inputs], root / "out", PrepareConfig(vocab_size=300), log=QUIET)
    return root


@FUZZ
@given(files=st.lists(input_file(), min_size=1, max_size=3), values=SETTINGS, named=st.booleans())
def test_prepare_succeeds_or_fails_cleanly_and_keeps_the_earlier_output(
    prepared, files, values, named
):
    out, inputs = prepared / "out", prepared / "inputs"
    shutil.rmtree(inputs)
    inputs.mkdir()
    for k, (name, data) in enumerate(files):
        (inputs / f"{k}{name}").write_bytes(data)
    before = snapshot(out)
    started = time.perf_counter()
    try:
        config = PrepareConfig.from_dict(values)
        if named:
            sources = [Source(f"s{k}", (p,)) for k, p in enumerate(sorted(inputs.iterdir()))]
            report = prepare(None, out, config, sources=sources, overwrite=True, log=QUIET)
        else:
            report = prepare([inputs], out, config, overwrite=True, log=QUIET)
    except PROJECT_ERRORS as e:
        event(f"refused: {type(e).__name__}")
        assert snapshot(out) == before
    else:
        event("prepared")
        assert json.loads((out / "report.json").read_text())["splits"] == report["splits"]
    assert time.perf_counter() - started < SECONDS
    assert sorted(os.listdir(prepared)) == ["inputs", "out"]  # no temporary left


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint of a tiny run, and a valid export of it: the earlier output."""
    root = tmp_path_factory.mktemp("fuzz_export")
    make_data(root / "data")
    config = tiny_config(root, max_steps=2, warmup_steps=1, checkpoint_interval=2)
    Trainer(config, log=QUIET).train()
    ckpt = latest_checkpoint(root / "run")
    exports = root / "exports"
    exports.mkdir()
    export(ckpt, exports / "valid")
    return ckpt, exports


@FUZZ
@given(data=st.data())
def test_export_of_a_corrupted_checkpoint_succeeds_or_fails_cleanly(checkpoint, data):
    ckpt, exports = checkpoint
    work = exports.parent / "corrupted"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(ckpt, work)
    victim = work / data.draw(st.sampled_from(sorted(p.name for p in ckpt.iterdir())))
    action = data.draw(st.sampled_from(["mutate", "replace", "delete"]))
    if action == "delete":
        victim.unlink()
    elif action == "replace":
        victim.write_bytes(data.draw(st.binary(max_size=256)))
    else:
        victim.write_bytes(data.draw(mutated(victim.read_bytes())))
    before = snapshot(exports / "valid")
    target = exports / "new"
    started = time.perf_counter()
    try:
        export(work, target)
    except PROJECT_ERRORS as e:
        event(f"refused: {type(e).__name__}")
        assert not os.path.lexists(target)
    else:
        event("exported")
        load_checkpoint(target)
        shutil.rmtree(target)
    assert time.perf_counter() - started < SECONDS
    assert snapshot(exports / "valid") == before
    assert sorted(os.listdir(exports)) == ["valid"]  # no temporary left
