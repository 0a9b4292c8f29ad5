"""`tinygradlm prepare` end to end: from text to a tokenizer, shards and a report that adds up."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tinygradlm.data import DataError, DataLoader, read_shard
from tinygradlm.data.documents import Document
from tinygradlm.data.prepare import PrepareConfig, prepare
from tinygradlm.data.splits import split_documents
from tinygradlm.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    report = prepare(None, out, PrepareConfig(vocab_size=512), log=lambda _m: None)
    return out, report


def test_default_corpus_gives_tokenizer_shards_and_report(prepared):
    out, report = prepared
    tok = Tokenizer.load(out / "tokenizer.txt")
    assert tok.vocab_size == 512 and tok.eot_token is not None
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["splits"] == report["splits"]
    for split in ("train", "val"):
        info = report["splits"][split]
        tokens = np.concatenate([read_shard(out / name, vocab_size=512) for name in info["shards"]])
        assert len(tokens) == info["tokens"]  # the report adds up to the shards
        assert (tokens == tok.eot_token).sum() == info["documents"]  # one delimiter per document
        assert tokens[0] == tok.eot_token
    cleaned = report["cleaning"]["after"]["documents"]
    deduped = report["dedup"]["after"]["documents"]
    assert deduped <= cleaned <= report["cleaning"]["before"]["documents"]
    assert report["splits"]["train"]["documents"] + report["splits"]["val"]["documents"] == deduped


def test_shards_decode_back_to_the_cleaned_text(prepared):
    out, _ = prepared
    tok = Tokenizer.load(out / "tokenizer.txt")
    tokens = read_shard(sorted(out.glob("val_*.bin"))[0])
    text = tok.decode([int(t) for t in tokens])
    assert text.startswith("<|endoftext|>")
    assert len(text) > 1000 and "\ufffd" not in text


def test_prepared_data_feeds_the_loader(prepared):
    out, _ = prepared
    loader = DataLoader(out, split="train", batch_size=4, seq_len=32, vocab_size=512)
    x, y = loader.next_batch()
    assert x.shape == y.shape == (4, 32)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])


def test_prepare_refuses_to_overwrite_without_being_asked(prepared, tmp_path):
    out, _ = prepared
    with pytest.raises(DataError, match="already holds prepared data"):
        prepare(None, out, PrepareConfig(vocab_size=512), log=lambda _m: None)


def test_prepare_reads_a_directory_and_reports_what_it_removed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    prose = " ".join(f"The {w} of the river was in the valley and it ran." for w in "abcdefghij")
    (src / "a.txt").write_text(prose * 3)
    (src / "b.txt").write_text(prose * 3)  # an exact duplicate
    (src / "c.txt").write_text("too short")
    (src / "d.txt").write_text(" ".join(f"Word{i} and the next one is here." for i in range(80)))
    report = prepare([src], tmp_path / "out", PrepareConfig(vocab_size=300), log=lambda _m: None)
    assert report["cleaning"]["rules"]["word_count"]["documents"] == 1
    assert report["dedup"]["rules"]["exact_duplicate"]["documents"] == 1
    assert report["splits"]["train"]["documents"] + report["splits"]["val"]["documents"] == 2


def test_a_single_document_is_split_at_a_line_boundary():
    text = "".join(f"line {i} of the only document\n" for i in range(100))
    train, val = split_documents([Document(text, "one.txt")], 0.1, seed=0)
    assert train[0].text + val[0].text == text
    assert 0.05 < len(val[0].text) / len(text) < 0.2


def test_empty_result_names_the_problem(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tiny.txt").write_text("just a few words")
    with pytest.raises(DataError, match="no documents are left"):
        prepare([src], tmp_path / "out", log=lambda _m: None)


def test_command_line_reports_bad_input_without_a_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tinygradlm",
            "prepare",
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "tinygradlm prepare:" in result.stderr and "missing" in result.stderr
    assert "Traceback" not in result.stderr


def test_workers_write_the_same_shards_byte_for_byte(tmp_path, monkeypatch):
    """Two encoding processes, in batches far smaller than the corpus, write the bytes and the
    report one process writes; so does the default (every available core)."""
    from tinygradlm.data import encoding

    monkeypatch.setattr(encoding, "PARALLEL_MIN_CHARS", 0)
    monkeypatch.setattr(encoding, "BATCH_CHARS", 50_000)
    outputs, reports = {}, {}
    for workers in (1, 2, 0):
        out = tmp_path / f"workers{workers}"
        config = PrepareConfig(vocab_size=512, workers=workers, shard_tokens=60_000)
        report = prepare(None, out, config, log=lambda _m: None)
        outputs[workers] = {p.name: p.read_bytes() for p in sorted(out.glob("*.bin"))}
        assert report["splits"]["train"]["documents"] > 1
        del report["seconds"], report["config"]["workers"]
        reports[workers] = json.dumps(report)  # the corpus statistics counted by the workers
    assert len(outputs[1]) > 2  # several shards
    assert outputs[2] == outputs[1]
    assert outputs[0] == outputs[1]
    assert reports[2] == reports[1] == reports[0]


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_encode_documents_keeps_the_order_and_the_ids(monkeypatch, start):
    from tinygradlm.data import encoding
    from tinygradlm.data.documents import default_corpus

    monkeypatch.setattr(encoding, "PARALLEL_MIN_CHARS", 0)
    monkeypatch.setattr(encoding, "BATCH_CHARS", 30_000)
    if start == "spawn":  # as on macOS and Windows
        monkeypatch.setattr(encoding.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
        monkeypatch.setattr(encoding, "SPAWN_MIN_CHARS", 0)
    texts = [*(doc.text for doc in default_corpus()), "", "<|endoftext|> as text"]
    tok = Tokenizer.train(texts[:50], 400)
    parallel = list(encoding.encode_documents(tok, texts, workers=2))
    assert [a.dtype for a in parallel] == [np.uint32] * len(texts)
    expected = [tok.encode(t, disallowed_special=()) for t in texts]
    assert [a.tolist() for a in parallel] == expected
    assert encoding.resolve_workers(0) == encoding.available_cores() >= 1


def test_a_stopped_parallel_encoding_ends_its_workers_without_tracebacks(tmp_path):
    # Ctrl-C reaches the whole process group and the pool ends its workers with SIGTERM: the
    # workers must neither run the handlers they inherited nor print a traceback
    script = """
import signal, sys
from tinygradlm.data import encoding
from tinygradlm.data.documents import default_corpus
from tinygradlm.signals import sigterm_as_exception
from tinygradlm.tokenizer import Tokenizer
encoding.PARALLEL_MIN_CHARS, encoding.BATCH_CHARS = 0, 2_000
texts = [doc.text for doc in default_corpus()] * 20
tok = Tokenizer.train(texts[:20], 300)
ids = encoding.encode_documents(tok, texts, workers=2)
with sigterm_as_exception():
    try:
        for n, _ in enumerate(ids):
            if n == 10:
                print("started", flush=True)
                signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        ids.close()  # the pool's exit ends the workers with SIGTERM
        print("stopped", flush=True)
        sys.exit(130)
"""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 130, run.stderr
    assert run.stdout.split() == ["started", "stopped"]
    assert "Traceback" not in run.stderr, run.stderr


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_batches_of_any_shape_come_back_whole_and_counted(monkeypatch, start):
    """Batches cut anywhere, empty documents, a document far longer than a batch (its ids come
    back pickled, as they do not fit its slot of the shared map) and tiny slots: the same ids as
    one process, and each batch's counts add up to those of one process."""
    from tinygradlm.data import encoding
    from tinygradlm.data.corpus import CorpusStats
    from tinygradlm.data.documents import default_corpus

    monkeypatch.setattr(encoding, "PARALLEL_MIN_CHARS", 0)
    monkeypatch.setattr(encoding, "BATCH_CHARS", 7_001)
    if start == "spawn":
        monkeypatch.setattr(encoding.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
        monkeypatch.setattr(encoding, "SPAWN_MIN_CHARS", 0)
    corpus = [doc.text for doc in default_corpus()][:40]
    texts = ["", *corpus[:10], "", "", "".join(corpus[10:30]), *corpus[30:], "x", ""]
    tok = Tokenizer.train(corpus[:20], 400)
    expected = [tok.encode(t, disallowed_special=()) for t in texts]
    for slot_ids_per_char in (2, 0):  # 0: no batch fits its slot
        monkeypatch.setattr(encoding, "SLOT_IDS_PER_CHAR", slot_ids_per_char)
        batches = list(encoding.encode_batches(tok, texts, workers=2, count=True))
        assert len(batches) > 4
        assert [b.start for b in batches] == np.cumsum(
            [0] + [len(b.ids) for b in batches[:-1]]
        ).tolist()
        ids = [a for b in batches for a in b.ids]
        assert [a.dtype for a in ids] == [np.uint32] * len(texts)
        assert [a.tolist() for a in ids] == expected
        stats, one = CorpusStats(tok, delimiter=0), CorpusStats(tok, delimiter=0)
        for b in batches:
            stats.add_counts(b.counts)
            for text, a in zip(texts[b.start : b.start + len(b.ids)], b.ids, strict=True):
                stats.add(text, a, counted=True)
        for text, a in zip(texts, ids, strict=True):
            one.add(text, a)
        assert stats.to_dict() == one.to_dict()


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_a_document_that_cannot_be_encoded_is_named(monkeypatch, start):
    from tinygradlm.data import encoding

    monkeypatch.setattr(encoding, "PARALLEL_MIN_CHARS", 0)
    monkeypatch.setattr(encoding, "BATCH_CHARS", 100)
    if start == "spawn":
        monkeypatch.setattr(encoding.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
        monkeypatch.setattr(encoding, "SPAWN_MIN_CHARS", 0)
    texts = [f"document number {i} has some words in it " * 5 for i in range(40)]
    texts[23] = "a lone surrogate \udc80 here"
    tok = Tokenizer.train(texts[:5], 300)
    for workers in (1, 2):
        with pytest.raises(DataError, match=r"document 23: .*lone surrogate U\+DC80"):
            list(encoding.encode_documents(tok, texts, workers=workers))


def test_no_documents_encode_to_nothing(monkeypatch):
    from tinygradlm.data import encoding

    monkeypatch.setattr(encoding, "PARALLEL_MIN_CHARS", 0)
    tok = Tokenizer.train(["some text to train on, some text"], 280)
    assert list(encoding.encode_batches(tok, [], workers=2, count=True)) == []
    empty = list(encoding.encode_documents(tok, ["", ""], workers=2))
    assert [a.tolist() for a in empty] == [[], []]
