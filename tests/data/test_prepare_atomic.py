"""`prepare` changes nothing until its new output is complete: every setting is checked first,
the output is built beside --out and swapped in whole, and any failure (a bad setting, a bad
input, a write error, Ctrl-C) leaves the earlier preparation byte for byte as it was."""

import os
import random
import stat

import pytest

from tinygradlm.cli import main
from tinygradlm.data import prepare as prepare_module
from tinygradlm.data import shards
from tinygradlm.data.prepare import PrepareConfig, prepare
from tinygradlm.data.sources import Source
from tinygradlm.errors import ConfigError, DataError

QUIET = lambda _m: None  # noqa: E731
SMALL = PrepareConfig(vocab_size=300, shard_tokens=200)


def snapshot(directory):
    """Every file under ``directory`` (its relative path and bytes) and the names beside it."""
    files = {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }
    return files, sorted(os.listdir(directory.parent))


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    words = "the a of and to in is it that was for on with as by at an be this from".split()
    words += "fox dog river stone cloud garden lamp window bridge letter music winter".split()
    rng = random.Random(0)
    for i in range(12):
        lines = [" ".join(rng.choice(words) for _ in range(12)) + "." for _ in range(20)]
        (folder / f"doc{i}.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def earlier(tmp_path, corpus):
    """A finished preparation in ``tmp_path/out`` (several shards), with a file of the user's."""
    out = tmp_path / "out"
    prepare([corpus], out, SMALL, log=QUIET)
    (out / "notes.txt").write_text("mine")
    assert len(list(out.glob("train_*.bin"))) > 1
    return out


def test_a_bad_shard_tokens_leaves_the_earlier_output(earlier, corpus):
    before = snapshot(earlier)
    # the setting is refused when the config is built, before prepare can touch anything
    with pytest.raises(
        ConfigError, match=r"shard_tokens must be a positive integer ≤ 2147483647, got 2147483648"
    ):
        prepare(
            [corpus], earlier, PrepareConfig(vocab_size=400, shard_tokens=2**31), overwrite=True
        )
    args = ["prepare", str(corpus), "--out", str(earlier), "--overwrite"]
    assert main([*args, "--vocab-size", "400", "--shard-tokens", str(2**31)]) == 1
    assert snapshot(earlier) == before


def test_a_bad_input_leaves_the_earlier_output(earlier, tmp_path):
    before = snapshot(earlier)
    with pytest.raises(DataError):
        prepare([tmp_path / "missing.txt"], earlier, SMALL, overwrite=True, log=QUIET)
    empty = tmp_path / "corpus" / "empty"  # a folder with no text files
    empty.mkdir()
    with pytest.raises(DataError, match="no documents"):
        prepare([empty], earlier, SMALL, overwrite=True, log=QUIET)
    assert snapshot(earlier) == before


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_earlier_output(earlier, corpus, monkeypatch, failure):
    """The second shard's write fails (after the tokenizer and one shard are written)."""
    before = snapshot(earlier)
    real = shards._atomic_write
    calls = []

    def failing_write(path, header, tokens):
        calls.append(path)
        if len(calls) == 2:
            raise failure
        real(path, header, tokens)

    monkeypatch.setattr(shards, "_atomic_write", failing_write)
    with pytest.raises(type(failure)):
        prepare([corpus], earlier, PrepareConfig(vocab_size=400, shard_tokens=200),
                overwrite=True, log=QUIET)  # fmt: skip
    assert len(calls) == 2
    assert snapshot(earlier) == before


def test_a_failed_report_leaves_the_earlier_output(earlier, corpus, monkeypatch):
    before = snapshot(earlier)

    def failing_report(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(prepare_module, "write_atomic", failing_report)
    with pytest.raises(OSError, match="no space"):
        prepare([corpus], earlier, PrepareConfig(vocab_size=400), overwrite=True, log=QUIET)
    assert snapshot(earlier) == before


def test_overwrite_replaces_the_whole_output_and_keeps_the_users_files(earlier, corpus):
    old_shards = sorted(p.name for p in earlier.glob("*.bin"))
    report = prepare(
        [corpus], earlier, PrepareConfig(vocab_size=400, shard_tokens=10**6), overwrite=True,
        log=QUIET,
    )  # fmt: skip
    new_shards = sorted(p.name for p in earlier.glob("*.bin"))
    assert new_shards == ["train_000000.bin", "val_000000.bin"] != old_shards
    assert report["splits"]["train"]["shards"] == ["train_000000.bin"]
    assert (earlier / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(earlier.parent)) == ["corpus", "out"]  # no temporary left


def test_a_source_folder_of_the_users_is_not_replaced(tmp_path, corpus):
    out = tmp_path / "out"
    (out / "web").mkdir(parents=True)
    (out / "web" / "mine.txt").write_text("mine")
    with pytest.raises(DataError, match="is not a source folder"):
        prepare(None, out, SMALL, sources=[Source("web", (corpus,))], log=QUIET)
    assert (out / "web" / "mine.txt").read_text() == "mine"


def test_an_output_through_a_symlink_replaces_the_directory_it_names(earlier, corpus, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(earlier)
    prepare([corpus], link, PrepareConfig(vocab_size=400), overwrite=True, log=QUIET)
    assert link.is_symlink() and (earlier / "notes.txt").exists()
    assert sorted(p.name for p in earlier.glob("*.bin")) == ["train_000000.bin", "val_000000.bin"]


@pytest.mark.parametrize("kind", ["file", "under a file", "symlink loop"])
def test_an_unusable_out_is_named_before_any_work(tmp_path, corpus, kind, capsys):
    (tmp_path / "file").write_text("x")
    (tmp_path / "loop").symlink_to("loop")
    out = {"file": "file", "under a file": "file/out", "symlink loop": "loop"}[kind]
    expected = {"file": "is a file", "under a file": "under the file", "symlink loop": "loop"}
    assert main(["prepare", str(corpus), "--out", str(tmp_path / out), "--vocab-size", "300"]) == 1
    err = capsys.readouterr().err
    assert f"prepare --out {tmp_path / out}" in err and expected[kind] in err
    assert "Traceback" not in err


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_prepared_files_follow_the_umask(tmp_path, corpus, umask):
    old = os.umask(umask)
    try:
        out = tmp_path / "out"
        prepare([corpus], out, SMALL, log=QUIET)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name
