"""The corpus report: statistics that add up to the shards, the script mix, `tinygradlm report`."""

import json
from pathlib import Path

import numpy as np
import pytest

from tinygradlm.cli import main
from tinygradlm.data import CleanConfig, read_shard
from tinygradlm.data.corpus import CorpusStats, corpus_stats, summary
from tinygradlm.data.prepare import PrepareConfig, prepare
from tinygradlm.tokenizer import Tokenizer

ENGLISH = "The quick brown fox jumps over the lazy dog and runs into the forest again. "
RUSSIAN = "Съешь же ещё этих мягких французских булок да выпей чаю и отдохни немного. "
CHINESE = "我们今天去公园散步然后在湖边喝茶看书聊天直到太阳下山才回家吃晚饭。"


def _letters(text: str) -> int:
    return sum(c.isalpha() for c in text)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    src = tmp_path_factory.mktemp("data") / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):  # distinct texts (shuffled words), so deduplication keeps them all
        for lang, text in (("en", ENGLISH), ("ru", RUSSIAN)):
            words = text.split() * (6 + 4 * i)
            (src / f"{lang}{i}.txt").write_text(" ".join(rng.permutation(words)) + ".")
    (src / "short.txt").write_text("too short to keep")
    out = tmp_path_factory.mktemp("prepared")
    clean = CleanConfig(stop_words=False)  # the English stop-word rule would drop the Russian
    config = PrepareConfig(vocab_size=400, val_fraction=0.2, shard_tokens=300, clean=clean)
    report = prepare([src], out, config, log=lambda _m: None)
    return out, report


def _shard_tokens(out, report, split):
    names = report["splits"][split]["shards"]
    return np.concatenate([read_shard(out / n) for n in names]).astype(np.int64)


def test_token_counts_add_up_to_the_shards(prepared):
    out, report = prepared
    (name,) = report["sources"]
    source = report["sources"][name]
    assert name == "src" and source["weight"] == 1.0 and source["token_share"] == 1.0
    total = 0
    for split in ("train", "val"):
        tokens = _shard_tokens(out, report, split)
        assert len(report["splits"][split]["shards"]) > 1  # several shards per split
        stats = source["splits"][split]
        assert stats["tokens"] == len(tokens) == report["splits"][split]["tokens"]
        assert stats["text_tokens"] + stats["delimiters"] == stats["tokens"]
        assert stats["delimiters"] == stats["documents"] == report["splits"][split]["documents"]
        assert sum(stats["length_histogram"]["counts"]) == stats["documents"]
        total += len(tokens)
    for entry in (source, report["overall"]):
        assert entry["stats"]["tokens"] == total
        assert sum(entry["stats"]["length_histogram"]["counts"]) == entry["after"]["documents"]
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["overall"] == report["overall"]


def test_documents_before_and_after_come_from_the_cleaning_reports(prepared):
    _, report = prepared
    source = report["sources"]["src"]
    assert source["before"] == report["cleaning"]["before"]
    assert source["after_cleaning"] == report["cleaning"]["after"]
    assert source["after"] == report["dedup"]["after"]
    assert source["removed"]["word_count"]["documents"] == 1
    assert source["removed"]["word_count"]["stage"] == "cleaning"
    removed = sum(r["documents"] for r in source["removed"].values())
    assert source["before"]["documents"] - removed == source["after"]["documents"]


def test_top_tokens_match_a_bincount_of_the_shards(prepared):
    out, report = prepared
    tokens = np.concatenate([_shard_tokens(out, report, s) for s in ("train", "val")])
    counts = np.bincount(tokens)
    top = report["overall"]["stats"]["top_tokens"]
    assert len(top) == 20
    for entry in top:
        assert entry["count"] == counts[entry["id"]]
        assert entry["share"] == pytest.approx(counts[entry["id"]] / len(tokens))
    assert [e["count"] for e in top] == sorted(counts, reverse=True)[:20]
    tok = Tokenizer.load(out / "tokenizer.txt")
    for entry in top:
        assert entry["text"] == tok.token_bytes(entry["id"]).decode(errors="backslashreplace")


def test_bytes_per_token_and_the_histogram_bins():
    tok = Tokenizer.train([ENGLISH * 5], vocab_size=300)
    docs = ["", "a", ENGLISH, ENGLISH * 3]
    arrays = [tok.encode_to_array(d) for d in docs]
    stats = corpus_stats(docs, arrays, tok)
    n = sum(a.size for a in arrays)
    assert stats["tokens"] == stats["text_tokens"] == n and stats["delimiters"] == 0
    assert stats["bytes_per_token"] == pytest.approx(sum(len(d.encode()) for d in docs) / n)
    counts = stats["length_histogram"]["counts"]
    starts = stats["length_histogram"]["bin_starts"]
    assert counts[0] == 1 and counts[1] == 1  # the empty document, the one-token one
    for a in arrays[2:]:
        i = int(a.size).bit_length()
        assert starts[i] <= a.size < starts[i + 1] and counts[i] >= 1
    assert sum(counts) == len(docs)


def test_script_mix_of_a_multi_script_corpus():
    docs = [ENGLISH * 3, RUSSIAN * 2, CHINESE, "12345, 678!"]
    tok = Tokenizer.train(docs, vocab_size=300)
    stats = corpus_stats(docs, [tok.encode_to_array(d) for d in docs], tok)
    letters = {
        "Latin": _letters(ENGLISH * 3),
        "Cyrillic": _letters(RUSSIAN * 2),
        "Han": _letters(CHINESE),
    }
    total = sum(letters.values())
    assert set(stats["scripts"]) == set(letters)
    for script, n in letters.items():
        assert stats["scripts"][script]["letters"] == n
        assert stats["scripts"][script]["share"] == pytest.approx(n / total)
    classes = stats["character_classes"]
    assert classes["letters"] == total and classes["digits"] == 8
    assert sum(classes.values()) == sum(len(d) for d in docs)


def test_merged_stats_equal_the_stats_of_the_whole():
    docs = [ENGLISH, RUSSIAN, CHINESE, ENGLISH * 2]
    tok = Tokenizer.train(docs, vocab_size=300)
    arrays = [tok.encode_to_array(d) for d in docs]
    parts = [CorpusStats(tok), CorpusStats(tok)]
    for k, (d, a) in enumerate(zip(docs, arrays, strict=True)):
        parts[k % 2].add(d, a)
    assert CorpusStats.merge(parts).to_dict() == corpus_stats(docs, arrays, tok)


def test_report_command_prints_the_summary(prepared, capsys):
    out, report = prepared
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.strip() == summary(report).strip()
    assert "src" in printed and "overall" in printed and "Cyrillic" in printed
    assert f"{report['overall']['stats']['tokens']:,}" in printed


def test_report_command_errors_cleanly(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "tinygradlm report:" in err and "report.json" in err and "no such file" in err
    (tmp_path / "report.json").write_text("{not json")
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "report.json" in err and "not valid JSON" in err
    (tmp_path / "report.json").write_text('{"splits": {}}')
    assert main(["report", str(tmp_path)]) == 1
    assert "no corpus statistics" in capsys.readouterr().err
    (tmp_path / "report.json").write_text('{"sources": {"a": {}}, "overall": {}}')
    assert main(["report", str(tmp_path)]) == 1
    assert "malformed" in capsys.readouterr().err


def test_report_plot_writes_pngs(prepared, capsys):
    pytest.importorskip("matplotlib")
    out, _ = prepared
    assert main(["report", str(out), "--plot"]) == 0
    printed = capsys.readouterr().out
    for name in ("corpus_lengths.png", "corpus_scripts.png"):
        path = out / name
        assert str(path) in printed
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tokens_before_and_after_cleaning_balance(prepared):
    out, report = prepared
    source = report["sources"]["src"]
    tokens = source["tokens"]
    assert tokens["after"] == source["stats"]["text_tokens"]
    assert (
        tokens["before"] - sum(r["tokens"] for r in source["removed"].values()) == tokens["after"]
    )
    tok = Tokenizer.load(out / "tokenizer.txt")
    assert source["removed"]["word_count"]["tokens"] == len(tok.encode("too short to keep"))
    raw = sorted(Path(report["inputs"][0]).glob("*.txt"))
    assert tokens["before"] == sum(len(tok.encode(p.read_text())) for p in raw)


def test_summary_of_a_report_without_token_counts(prepared):
    _, report = prepared
    old = json.loads(json.dumps(report))
    for entry in [*old["sources"].values(), old["overall"]]:
        del entry["tokens"], entry["tokenizer_sample_chars"]
        for rule in entry["removed"].values():
            del rule["tokens"]
    printed = summary(old)
    assert "1 d, 17 ch" in printed and "tokenizer sample" not in printed


def test_a_report_with_wrong_types_or_bytes_is_a_data_error_naming_the_field(prepared, tmp_path):
    from tinygradlm.data.corpus import load_report
    from tinygradlm.errors import DataError

    out, _ = prepared
    good = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert load_report(out) == good
    broken = json.loads(json.dumps(good))
    broken["overall"]["stats"]["top_tokens"][0]["count"] = "many"
    cases = [
        (json.dumps(broken).encode(), "overall.stats.top_tokens[0].count: expected an integer"),
        (b'{"sources": {}, "overall": {}} \xff', "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (json.dumps({**good, "overall": {**good["overall"], "before": 5}}).encode(), "before"),
    ]
    for content, fragment in cases:
        (tmp_path / "report.json").write_bytes(content)
        with pytest.raises(DataError, match=r"report\.json") as info:
            load_report(tmp_path)
        assert fragment in str(info.value)
        summary(good)  # the good one still prints


def test_counts_are_the_same_buffered_or_counted_by_batch(monkeypatch):
    """Characters, bytes and token ids are counted in buffered batches with NumPy, or by the
    caller a batch at a time (TextCounts, as prepare's workers do): the same counts, each
    character's, for any code point (astral, lone surrogates, NUL)."""
    from collections import Counter

    from tinygradlm.data import corpus
    from tinygradlm.data.corpus import TextCounts

    monkeypatch.setattr(corpus, "_FLUSH_SIZE", 50)
    docs = [ENGLISH, "", RUSSIAN, CHINESE, "emoji 😀 and \x00 and \udc80 alone", ENGLISH * 3]
    tok = Tokenizer.train([ENGLISH, RUSSIAN], vocab_size=300)
    arrays = [tok.encode_to_array(d.encode("utf-8", "replace").decode()) for d in docs]
    buffered, batched = CorpusStats(tok, delimiter=0), CorpusStats(tok, delimiter=0)
    for d, a in zip(docs, arrays, strict=True):
        buffered.add(d, a)
    for batch in (slice(0, 1), slice(1, 1), slice(1, 4), slice(4, 6)):
        batched.add_counts(TextCounts.of(docs[batch], arrays[batch]))
        for d, a in zip(docs[batch], arrays[batch], strict=True):
            batched.add(d, a, counted=True)
    assert buffered.chars == batched.chars == Counter("".join(docs))
    assert buffered.bytes == batched.bytes == len("".join(docs).encode("utf-8", "surrogatepass"))
    expected = np.bincount(np.concatenate(arrays), minlength=300)
    expected[0] += len(docs)  # the delimiters
    np.testing.assert_array_equal(buffered.token_counts, expected)
    np.testing.assert_array_equal(batched.token_counts, expected)
    assert buffered.to_dict() == batched.to_dict()
    assert json.dumps(buffered.to_dict()) == json.dumps(batched.to_dict())
    merged = CorpusStats.merge([buffered, batched])
    assert merged.chars == Counter("".join(docs) * 2)
