"""`tinygradlm prepare` with several named, weighted sources: the layout, the books per source,
the tokenizer sample that follows the weights, and the errors that name the source."""

import json

import numpy as np
import pytest

from tinygradlm.cli import main
from tinygradlm.data import DataError, read_shard, shard_info
from tinygradlm.data.corpus import summary
from tinygradlm.data.documents import Document
from tinygradlm.data.prepare import PrepareConfig, prepare
from tinygradlm.data.sources import Source, sources_from_config, sources_from_specs
from tinygradlm.data.splits import tokenizer_sample
from tinygradlm.tokenizer import Tokenizer

WORDS = (
    "the river ran down to the valley and the old mill stood by water with a wheel that turned "
    "all day while birds sang of summer in green fields near town where people walked slowly "
    "home after work to have supper by fire"
).split()
QUIET = lambda _message: None  # noqa: E731


def _prose(rng: np.random.Generator, lines: int) -> str:
    """Distinct English-like text: ``lines`` lines of 12 shuffled words (dedup keeps it)."""
    return "\n".join(" ".join(rng.choice(WORDS, 12)) + "." for _ in range(lines)) + "\n"


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Three sources: a folder with a short document, an in-source duplicate and a boilerplate
    line; a JSONL file with a copy of a web document; a single text file."""
    root = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(0)
    web = root / "web"
    web.mkdir()
    texts = [_prose(rng, 10 + 3 * i) for i in range(8)]
    for i, text in enumerate(texts):
        (web / f"page{i}.txt").write_text(text)
    (web / "copy.txt").write_text(texts[0])  # exact_duplicate
    (web / "short.txt").write_text("too short to keep")  # word_count
    (web / "cookie.txt").write_text(_prose(rng, 8) + "This site uses cookies to track you.\n")
    books = root / "books.jsonl"
    records = [{"text": _prose(rng, 30 + 5 * i)} for i in range(5)] + [{"text": texts[1]}]
    books.write_text("".join(json.dumps(r) + "\n" for r in records))
    notes = root / "notes.txt"
    notes.write_text(_prose(rng, 60))  # one document: split at a line boundary
    return {"web": web, "books": books, "notes": notes, "copied": texts[1]}


@pytest.fixture(scope="module")
def prepared(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("mixture")
    mixture = [
        Source("web", (sources["web"],), 2.0),
        Source("books", (sources["books"],), 1.0),
        Source("notes", (sources["notes"],), 1.0),
    ]
    config = PrepareConfig(vocab_size=320, val_fraction=0.2, shard_tokens=500)
    report = prepare(None, out, config, sources=mixture, log=QUIET)
    return out, report


def _shards(out, section, split):
    paths = sorted((out / section["dir"]).glob(f"{split}_*.bin"))
    return np.concatenate([read_shard(p) for p in paths]).astype(np.int64), paths


def test_layout_and_mixture(prepared):
    out, report = prepared
    assert sorted(p.name for p in out.iterdir()) == [
        "books",
        "notes",
        "report.json",
        "tokenizer.txt",
        "web",
    ]
    assert not list(out.glob("*.bin"))  # no flat shards beside the sources' folders
    assert list(report["mixture"].items()) == [("web", 0.5), ("books", 0.25), ("notes", 0.25)]
    assert list(report["sources"]) == ["web", "books", "notes"]
    for name, section in report["sources"].items():
        assert section["dir"] == name and section["weight"] == report["mixture"][name]
        for split in ("train", "val"):
            assert (out / name / f"{split}_000000.bin").is_file()
    assert json.loads((out / "report.json").read_text()) == report


def test_counts_add_up_to_the_shards_per_source_and_overall(prepared):
    out, report = prepared
    tok = Tokenizer.load(out / "tokenizer.txt")
    train_tokens = {}
    for split in ("train", "val"):
        total = 0
        for name, section in report["sources"].items():
            tokens, paths = _shards(out, section, split)
            stats = section["splits"][split]
            assert len(tokens) == stats["tokens"] == sum(shard_info(p).num_tokens for p in paths)
            assert (tokens == tok.eot_token).sum() == stats["documents"] == stats["delimiters"]
            total += len(tokens)
            if split == "train":
                train_tokens[name] = len(tokens)
        assert report["splits"][split]["tokens"] == total
        assert report["overall"]["splits"][split]["tokens"] == total
        assert len(report["splits"][split]["shards"]) > 3  # several shards, all listed
        for shard in report["splits"][split]["shards"]:
            assert (out / shard).is_file()
    all_train = sum(train_tokens.values())
    for name, section in report["sources"].items():
        assert section["token_share"] == pytest.approx(train_tokens[name] / all_train)
    assert report["overall"]["stats"]["tokens"] == sum(
        s["stats"]["tokens"] for s in report["sources"].values()
    )


def test_token_books_balance_per_rule(prepared, sources):
    out, report = prepared
    tok = Tokenizer.load(out / "tokenizer.txt")
    for section in [*report["sources"].values(), report["overall"]]:
        tokens = section["tokens"]
        assert tokens["before"] >= tokens["after_cleaning"] >= tokens["after"] > 0
        removed = sum(r["tokens"] for r in section["removed"].values())
        assert tokens["before"] - removed == tokens["after"] == section["stats"]["text_tokens"]
        dedup = sum(r["tokens"] for r in section["removed"].values() if r["stage"] == "dedup")
        assert tokens["after_cleaning"] - dedup == tokens["after"]
        documents = sum(r["documents"] for r in section["removed"].values())
        assert section["before"]["documents"] - documents == section["after"]["documents"]
    web = report["sources"]["web"]["removed"]
    n = lambda text: len(tok.encode(text))  # noqa: E731
    assert web["word_count"]["documents"] == 1 and web["word_count"]["tokens"] == n(
        "too short to keep"
    )
    assert web["boilerplate_line"]["lines"] == 1
    assert web["boilerplate_line"]["tokens"] == n("This site uses cookies to track you.")
    assert web["exact_duplicate"]["documents"] == 1 and web["exact_duplicate"]["stage"] == "dedup"
    copied = report["sources"]["books"]["removed"]["cross_source_duplicate"]
    assert copied["documents"] == 1 and copied["tokens"] == n(sources["copied"].rstrip())
    assert report["overall"]["removed"]["word_count"]["tokens"] == web["word_count"]["tokens"]


def test_tokenizer_sample_follows_the_weights(prepared):
    _, report = prepared
    weights, chars, sample = {}, {}, {}
    for name, section in report["sources"].items():
        weights[name] = section["weight"]
        chars[name] = section["splits"]["train"]["characters"]
        sample[name] = section["tokenizer_sample_chars"]
    total = min(chars[n] / weights[n] for n in weights)  # the rule of tokenizer_sample
    line = 12 * max(map(len, WORDS)) + 13  # the longest line of the sources
    for name in weights:
        assert weights[name] * total - line < sample[name] <= round(weights[name] * total)
    assert any(sample[n] == chars[n] for n in weights)  # the scarcest source gives all its text
    assert report["tokenizer"]["sample_chars"] == sum(sample.values())
    assert report["overall"]["tokenizer_sample_chars"] == sum(sample.values())


def test_tokenizer_sample_rule_cap_and_cuts():
    a = [Document(f"line {i} of a\n" * 10, f"a{i}") for i in range(10)]  # 10 x 120 characters
    b = [Document("b" * 50 + "\n" + "b" * 49, "b")]  # 100 characters in one document
    # one source, no cap: every training text, in order, so the tokenizer is the one of old
    assert tokenizer_sample([a], [1.0]) == [[d.text for d in a]]
    # S = min(1200 / 0.8, 100 / 0.2) = 500: b gives all 100, a 400: 3 documents and, of a
    # 4th, the 3 whole lines (36 characters) within the 40 left
    (sa, sb) = tokenizer_sample([a, b], [0.8, 0.2], seed=3)
    assert sb == [b[0].text] and sum(map(len, sa)) == 396
    assert len(sa) == 4 and sa[-1].endswith("\n") and len(sa[-1]) == 36
    assert set(sa[:3]) <= {d.text for d in a}
    # a cap of 200 characters: a gets 160, b 40 (cut at its line break: 0 full lines fit)
    (sa, sb) = tokenizer_sample([a, b], [0.8, 0.2], cap=200)
    assert sum(map(len, sa)) == 156 and sb == []  # 120 + 36 (the last whole line within 40)
    assert tokenizer_sample([a, b], [0.8, 0.2], cap=200, seed=1) != tokenizer_sample(
        [a, b], [0.8, 0.2], cap=200, seed=2
    )


def test_single_source_keeps_the_flat_layout(sources, tmp_path):
    report = prepare([sources["books"]], tmp_path, PrepareConfig(vocab_size=300), log=QUIET)
    assert "mixture" not in report and list(report["sources"]) == ["books.jsonl"]
    assert report["sources"]["books.jsonl"]["dir"] == "."
    assert sorted(p.name for p in tmp_path.glob("*.bin")) == ["train_000000.bin", "val_000000.bin"]
    assert report["splits"]["train"]["shards"] == ["train_000000.bin"]


def test_overwrite_replaces_the_other_layout(prepared, sources, tmp_path):
    out, _ = prepared
    with pytest.raises(DataError, match="already holds prepared data"):
        prepare(None, out, sources=[Source("web", (sources["web"],))], log=QUIET)
    mixed = [Source("web", (sources["web"],)), Source("notes", (sources["notes"],))]
    prepare(None, tmp_path, PrepareConfig(vocab_size=300), sources=mixed, log=QUIET)
    unrelated = tmp_path / "other" / "train_000000.bin"  # not the earlier preparation's
    unrelated.parent.mkdir()
    unrelated.write_bytes(b"kept")
    config = PrepareConfig(vocab_size=300)
    prepare([sources["notes"]], tmp_path, config, overwrite=True, log=QUIET)
    assert list(tmp_path.glob("*/*.bin")) == [unrelated]  # no stale source shards left
    assert unrelated.read_bytes() == b"kept"
    assert list(tmp_path.glob("train_*.bin"))


def test_a_source_emptied_by_cleaning_is_named(sources, tmp_path):
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    (tiny / "a.txt").write_text("just a few words")
    (tiny / "b.txt").write_text("and a few more")
    mixture = [Source("web", (sources["web"],)), Source("tiny", (tiny,), 0.5)]
    with pytest.raises(DataError, match=r"source 'tiny': no documents are left after cleaning"):
        prepare(None, tmp_path / "out", sources=mixture, log=QUIET)
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_source_that_only_copies_an_earlier_one_is_named(sources, tmp_path):
    copy = tmp_path / "copy.txt"
    copy.write_text(sources["copied"])
    mixture = [Source("web", (sources["web"],)), Source("copy", (copy,))]
    with pytest.raises(DataError, match=r"source 'copy': .*duplicates of earlier sources"):
        prepare(None, tmp_path / "out", sources=mixture, log=QUIET)
    with pytest.raises(DataError, match=r"source 'empty': no documents found"):
        empty = tmp_path / "empty"
        empty.mkdir()
        prepare(None, tmp_path / "out", sources=[Source("empty", (empty,))], log=QUIET)
    assert not (tmp_path / "out").exists()


def test_repeated_source_names_add_paths():
    sources = sources_from_specs(["web=a,3", "books=b.jsonl", "web=c"])
    assert [(s.name, [str(p) for p in s.paths], s.weight) for s in sources] == [
        ("web", ["a", "c"], 3.0),
        ("books", ["b.jsonl"], 1.0),
    ]


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["web"], "expected NAME=PATH[,WEIGHT]"),
        (["web="], "no path"),
        (["web=data,lots"], "weight 'lots' is not a number"),
        (["web=data,0"], "source 'web': weight must be a finite number > 0"),
        (["web=data,-1"], "source 'web': weight must be a finite number > 0"),
        (["web=data,nan"], "source 'web': weight must be a finite number > 0"),
        (["we b=data"], "source name 'we b'"),
        (["-web=data"], "source name '-web'"),
        (["report=data"], "source name 'report' is reserved"),
        (["web=a,0.5", "web=b,0.7"], "source 'web': two different weights"),
        (["web=a", "web=a"], "source 'web': path 'a' given twice"),
    ],
)
def test_bad_source_specs_fail_cleanly_on_the_command_line(specs, message, tmp_path, capsys):
    argv = ["prepare", "--out", str(tmp_path / "out"), *(f"--source={spec}" for spec in specs)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("tinygradlm prepare:") and message in err
    assert not (tmp_path / "out").exists()


def test_inputs_and_sources_do_not_mix(sources, tmp_path, capsys):
    argv = ["prepare", str(sources["notes"]), "--source", f"web={sources['web']}"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 1
    assert "cannot be mixed" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_toml_sources(sources, tmp_path, capsys):
    config = tmp_path / "prepare.toml"
    config.write_text(
        "vocab_size = 300\n"
        f'[sources.web]\npath = "{sources["web"]}"\nweight = 0.6\n'
        f'[sources.more]\npaths = ["{sources["books"]}", "{sources["notes"]}"]\nweight = 0.4\n'
    )
    assert main(["prepare", "--config", str(config), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["mixture"] == {"web": 0.6, "more": 0.4}
    assert report["sources"]["more"]["before"]["documents"] == 7  # 6 records and the notes
    assert report["config"]["vocab_size"] == 300
    capsys.readouterr()
    assert main(["report", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert printed.strip() == summary(report).strip()
    for text in ("weight requested", "share of train tokens", "tokens read (before cleaning)"):
        assert text in printed
    rate = next(line for line in printed.splitlines() if line.startswith("sampling rate"))
    web = report["sources"]["web"]
    assert rate.split()[-3] == f"{0.6 / web['token_share']:.2f}x"  # web, more, overall


def test_toml_source_errors():
    with pytest.raises(DataError, match=r"\[sources.web\]: give either path"):
        sources_from_config({"web": {"weight": 1.0}})
    with pytest.raises(DataError, match=r"\[sources.web\]: unknown key\(s\) wieght"):
        sources_from_config({"web": {"path": "a", "wieght": 1.0}})
    with pytest.raises(DataError, match="source 'web': weight must be a number"):
        sources_from_config({"web": {"path": "a", "weight": "high"}})
    relative = sources_from_config({"web": {"paths": ["a", "/abs"]}}, base="/configs")
    assert [str(p) for p in relative[0].paths] == ["/configs/a", "/abs"]


def test_report_plot_draws_each_source(prepared, capsys):
    pytest.importorskip("matplotlib")
    out, _ = prepared
    assert main(["report", str(out), "--plot"]) == 0
    printed = capsys.readouterr().out
    for name in ("corpus_lengths.png", "corpus_scripts.png", "corpus_mixture.png"):
        assert str(out / name) in printed
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
