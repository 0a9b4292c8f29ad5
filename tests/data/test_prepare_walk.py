"""`prepare` on a real directory: binary, undecodable, hidden and __pycache__ files are left out
and counted by reason, with the setting that keeps them; include/exclude globs choose files."""

import json
import re
from pydoc_data.topics import topics

import pytest

from tinygradlm.cli import main
from tinygradlm.data import DataError
from tinygradlm.data.documents import read_documents
from tinygradlm.data.prepare import PrepareConfig, prepare
from tinygradlm.data.report_schema import check_report
from tinygradlm.data.walk import FileFilter, Skipped
from tinygradlm.errors import ConfigError

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
PYC = b"\xa7\r\r\n\x00\x00\x00\x00" + bytes(64)


def write_text_files(root):
    """The text a user means to prepare: a .txt at the top and two .md files in docs/ (real
    English prose: three of the standard library's help topics)."""
    (root / "docs").mkdir(parents=True)
    (root / "a.txt").write_text(topics["if"], encoding="utf-8")
    (root / "docs" / "guide.md").write_text(topics["while"], encoding="utf-8")
    (root / "docs" / "intro.md").write_text(topics["for"], encoding="utf-8")


def write_clutter(root):
    """What else a real folder holds, one of each reason."""
    (root / "docs" / "logo.png").write_bytes(PNG)  # known binary extension
    (root / "old").mkdir()
    (root / "old" / "mod.pyc").write_bytes(PYC)  # known binary extension, outside __pycache__
    (root / "old" / "blob.dat").write_bytes(b"header\x00\x01\x02")  # a NUL byte: binary
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "a.cpython-311.pyc").write_bytes(PYC)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "notes").mkdir()
    (root / "notes" / "latin1.txt").write_bytes("café crème\n".encode("latin-1"))


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "corpus"
    write_text_files(root)
    write_clutter(root)
    return root


def read(root, **filters):
    skipped = Skipped()
    docs = list(read_documents(root, filters=FileFilter(**filters), skipped=skipped))
    return [d.source for d in docs], skipped.to_dict()


def test_walk_reads_the_text_files_in_sorted_order_and_counts_every_other_path(tree):
    sources, skipped = read(tree)
    assert sources == [
        str(tree / "a.txt"),
        str(tree / "docs/guide.md"),
        str(tree / "docs/intro.md"),
    ]
    counts = {reason: entry["paths"] for reason, entry in skipped.items()}
    # .git counts once as a folder (not walked); .DS_Store is a hidden file
    assert counts == {"binary": 3, "hidden": 2, "skipped_folder": 1, "undecodable": 1}
    assert skipped["binary"]["first"] == str(tree / "docs/logo.png")  # first in walk order
    assert skipped["undecodable"]["first"] == str(tree / "notes/latin1.txt")
    assert skipped["skipped_folder"]["first"] == str(tree / "__pycache__")
    assert skipped["hidden"]["first"] == str(tree / ".git")
    assert "include_hidden" in skipped["hidden"]["relaxed_by"]
    assert "skip_folders" in skipped["skipped_folder"]["relaxed_by"]
    assert "undecodable" in skipped["undecodable"]["relaxed_by"]


def test_each_setting_named_in_the_report_keeps_what_it_names(tree):
    sources, skipped = read(tree, include_hidden=True)
    assert str(tree / ".git/HEAD") in sources and "hidden" not in skipped
    assert skipped["binary"]["paths"] == 4  # .DS_Store is read now, and is binary
    sources, skipped = read(tree, skip_folders=())
    assert "skipped_folder" not in skipped and skipped["binary"]["paths"] == 4  # the .pyc inside
    sources, skipped = read(tree, undecodable="replace")
    assert str(tree / "notes/latin1.txt") in sources and "undecodable" not in skipped
    docs = list(read_documents(tree / "notes", filters=FileFilter(undecodable="replace")))
    assert docs[0].text == "caf\ufffd cr\ufffdme\n"  # one U+FFFD per bad byte


def test_include_and_exclude_globs_match_the_path_below_the_directory(tree):
    sources, skipped = read(tree, include=("*.md",))
    assert sources == [str(tree / "docs/guide.md"), str(tree / "docs/intro.md")]
    assert skipped["not_included"]["paths"] == 5  # a.txt, logo.png, latin1.txt, mod.pyc, blob.dat
    assert "binary" not in skipped  # not included, so never opened
    sources, skipped = read(tree, exclude=("docs/*", "notes/*"))
    assert sources == [str(tree / "a.txt")]
    assert skipped["excluded"]["paths"] == 4 and "undecodable" not in skipped
    # exclude wins over include; globs are case-sensitive
    sources, _ = read(tree, include=("*.md", "*.txt"), exclude=("*intro*", "*.TXT"))
    assert sources == [str(tree / "a.txt"), str(tree / "docs/guide.md")]


def test_undecodable_error_stops_on_the_first_binary_or_non_utf8_file(tree):
    with pytest.raises(DataError, match=re.escape(f"{tree / 'docs/logo.png'}: binary file")):
        read(tree, undecodable="error")
    (tree / "docs/logo.png").unlink()
    (tree / "old/mod.pyc").unlink()
    (tree / "old/blob.dat").unlink()
    with pytest.raises(
        DataError, match=re.escape(f"{tree / 'notes/latin1.txt'}: invalid UTF-8 at byte 3")
    ):
        read(tree, undecodable="error")


def test_a_file_named_explicitly_that_is_not_utf8_is_an_error_naming_file_and_offset(
    tree, tmp_path
):
    latin1 = tree / "notes" / "latin1.txt"
    with pytest.raises(DataError, match=re.escape(f"{latin1}: invalid UTF-8 at byte 3 (line 1)")):
        prepare([latin1], tmp_path / "out", PrepareConfig(vocab_size=300), log=lambda _m: None)
    with pytest.raises(
        DataError, match=re.escape(f"{tree / 'docs/logo.png'}: invalid UTF-8 at byte 0")
    ):
        list(read_documents([tree / "docs/logo.png"]))


def test_prepare_skips_clutter_reports_each_reason_and_writes_the_same_ids(tree, tmp_path, capsys):
    clean = tmp_path / "clean"
    write_text_files(clean)
    args = ["--vocab-size", "300", "--val-fraction", "0.3"]
    assert main(["prepare", str(clean), "--out", str(tmp_path / "clean_out"), *args]) == 0
    assert main(["prepare", str(tree), "--out", str(tmp_path / "out"), *args]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    check_report(report, "report.json")
    for section in (report["overall"], report["sources"]["corpus"]):
        counts = {reason: entry["paths"] for reason, entry in section["skipped_files"].items()}
        assert counts == {"binary": 3, "hidden": 2, "skipped_folder": 1, "undecodable": 1}
    assert report["config"]["files"]["skip_folders"] == ["__pycache__"]
    report["overall"]["skipped_files"]["binary"]["paths"] = -1
    with pytest.raises(
        DataError, match=r"overall\.skipped_files\.binary\.paths: expected an integer"
    ):
        check_report(report, "report.json")
    # the same text files give the same tokenizer and the same token ids, clutter or not
    for name in ["tokenizer.txt", "train_000000.bin", "val_000000.bin"]:
        assert (tmp_path / "out" / name).read_bytes() == (
            tmp_path / "clean_out" / name
        ).read_bytes()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"  - undecodable\s+1\s+1", printed)
    assert f"undecodable: first {tree / 'notes/latin1.txt'}; to keep: undecodable" in printed


def test_files_settings_come_from_the_config_and_flags_override_them(tree, tmp_path):
    config = tmp_path / "prepare.toml"
    config.write_text('vocab_size = 300\n[files]\ninclude = ["*.md"]\nexclude = ["*intro*"]\n')
    out = tmp_path / "out"
    assert main(["prepare", str(tree), "--out", str(out), "--config", str(config)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["overall"]["before"]["documents"] == 1  # guide.md alone
    assert set(report["overall"]["skipped_files"]) == {
        "not_included",
        "excluded",
        "hidden",
        "skipped_folder",
    }
    args = ["--config", str(config), "--include", "*.txt", "--overwrite"]
    assert main(["prepare", str(tree), "--out", str(out), *args]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["files"]["include"] == ["*.txt"]
    assert report["config"]["files"]["exclude"] == ["*intro*"]  # kept from the config
    assert report["overall"]["before"]["documents"] == 1  # a.txt; latin1.txt skipped


def test_files_settings_are_checked_like_the_others(tmp_path):
    with pytest.raises(ConfigError) as error:
        PrepareConfig.from_dict(
            {"files": {"undecodable": "ignore", "inclde": ["*.md"], "exclude": "x"}}
        )
    message = str(error.value)
    for key in ["files.undecodable", "files.inclde", "files.exclude"]:
        assert key in message
    config = tmp_path / "bad.toml"
    config.write_text('[files]\ninclude_hidden = "yes"\n')
    assert main(["prepare", "--config", str(config), "--out", str(tmp_path / "out")]) == 1
