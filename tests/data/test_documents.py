"""Reading documents: text files, directories, JSON Lines, JSON arrays, and the errors that name
the place where the input is wrong."""

import json
import re

import pytest

from tinygradlm.data.documents import (
    Document,
    default_corpus,
    read_documents,
    write_documents,
)
from tinygradlm.errors import DataError


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


def test_text_file_is_one_document_with_its_path_as_source(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("Hello\r\nworld\n", encoding="utf-8", newline="")
    assert list(read_documents([path])) == [Document("Hello\r\nworld\n", str(path))]


def test_a_single_path_may_be_passed_without_a_list(tmp_path):
    path = tmp_path / "a.md"
    path.write_text("text", encoding="utf-8")
    assert [d.text for d in read_documents(str(path))] == ["text"]


def test_byte_order_mark_is_dropped(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfhello")
    assert next(read_documents([path])).text == "hello"


def test_directory_is_read_recursively_in_sorted_order_skipping_hidden(tmp_path):
    for name in ["b.txt", "a/z.txt", "a/b/c.txt", "a-b.txt", "c.jsonl", ".hidden", ".git/x.txt"]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        body = '{"text": "from jsonl"}\n' if name.endswith(".jsonl") else name
        path.write_text(body, encoding="utf-8")
    sources = [d.source for d in read_documents([tmp_path])]
    expected = ["a/b/c.txt", "a/z.txt", "a-b.txt", "b.txt", "c.jsonl:1"]
    assert sources == [str(tmp_path / e) for e in expected]


def test_paths_are_read_in_the_order_given(tmp_path):
    (tmp_path / "1.txt").write_text("one", encoding="utf-8")
    (tmp_path / "2.txt").write_text("two", encoding="utf-8")
    texts = [d.text for d in read_documents([tmp_path / "2.txt", tmp_path / "1.txt"])]
    assert texts == ["two", "one"]


def test_jsonl_gives_one_document_per_line_with_path_and_line_as_source(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [json.dumps({"text": "first", "id": 1}), "", json.dumps({"text": "third\nline"})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    docs = list(read_documents([path]))
    assert docs == [Document("first", f"{path}:1"), Document("third\nline", f"{path}:3")]


def test_jsonl_text_field_is_configurable(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"content": "body"}) + "\n", encoding="utf-8")
    assert [d.text for d in read_documents([path], text_field="content")] == ["body"]


def test_json_array_gives_one_document_per_element(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"text": "a"}, "b"]), encoding="utf-8")
    assert list(read_documents([path])) == [
        Document("a", f"{path}[0]"),
        Document("b", f"{path}[1]"),
    ]


def test_jsonl_line_that_is_not_json_names_path_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}:2: not valid JSON"):
        list(read_documents([path]))


@pytest.mark.parametrize(
    "record, problem",
    [({"body": "x"}, "missing"), ({"text": 3}, "of type int, not a string"), ([1], "JSON object")],
)
def test_jsonl_record_without_the_text_field_names_path_and_line(tmp_path, record, problem):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n' + json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}:2: .*{problem}"):
        list(read_documents([path]))


def test_invalid_utf8_names_file_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"caf\xc3\xa9\nna\xefve\n")  # a valid é, then a Latin-1 ï at byte 8
    with pytest.raises(
        DataError, match=rf"{re.escape(str(path))}: invalid UTF-8 at byte 8 \(line 2\)"
    ):
        list(read_documents([path]))


def test_invalid_utf8_in_jsonl_names_the_byte_offset(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "\xff"}\n')
    with pytest.raises(DataError, match=r"at byte 25 \(line 2\)"):
        list(read_documents([path]))


def test_missing_path_is_named(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(DataError, match=rf"{re.escape(str(missing))}: no such file or directory"):
        list(read_documents([missing]))


def test_write_documents_round_trips_through_read_documents(tmp_path):
    docs = [Document("one\ntwo", "x"), Document('é \u2028 "quoted"', "y")]
    path = tmp_path / "out.jsonl"
    assert write_documents(docs, path) == 2
    assert [d.text for d in read_documents([path])] == [d.text for d in docs]


def test_default_corpus_is_the_pydoc_topics_sorted_by_topic():
    from pydoc_data.topics import topics

    docs = default_corpus()
    assert len(docs) == len(topics) > 50
    assert [d.source for d in docs] == [f"pydoc_data:{name}" for name in sorted(topics)]
    assert all(d.text == topics[d.source.split(":", 1)[1]] for d in docs)


def test_jsonl_text_with_an_unpaired_surrogate_is_refused_with_its_line(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "half a pair \\ud800 here"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"docs\.jsonl:2: .*unpaired surrogate \\ud800"):
        list(read_documents([path]))


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_deeply_nested_json_inputs_are_data_errors(tmp_path, suffix):
    path = tmp_path / f"deep{suffix}"
    path.write_text('{"text": "a"}\n' * (suffix == ".jsonl") + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match="nested too deeply"):
        list(read_documents([path]))
