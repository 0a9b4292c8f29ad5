"""The report: the books balance, it serialises to JSON, reports merge and combine."""

import json

import pytest

from tinygradlm.data.clean import CleanConfig, clean_documents
from tinygradlm.data.dedup import deduplicate
from tinygradlm.data.documents import Document, default_corpus
from tinygradlm.data.report import Example, Report, Totals, snippet
from tinygradlm.errors import DataError

PROSE = (
    "The history of the river valley is a story of farmers and traders who settled there.\n"
    "They built small villages with wooden houses and planted wheat and barley in the soil.\n"
    "Over the centuries the villages grew into towns connected by roads and stone bridges.\n"
    "Merchants carried salt, cloth and pottery from the coast to the distant mountains."
)

MIXED = [
    Document("  " + PROSE.replace("\n", "  \r\n\r\n\r\n\r\n") + "\x00\n\n", "messy"),
    Document(PROSE + "\nThis site uses cookies.\nEnable JavaScript.", "boilerplate"),
    Document("Too short to keep.", "short"),
    Document("Lorem ipsum dolor sit amet. " + PROSE, "placeholder"),
    Document(PROSE, "copy-1"),
    Document(PROSE, "copy-2"),
    Document(PROSE.replace("soil", "ground"), "near-copy"),
    Document("\x00\x01\n\n", "blank"),
]


def balanced(report):
    for name in ("documents", "characters", "words"):
        before, removed, after = (
            getattr(t, name) for t in (report.before, report.removed, report.after)
        )
        assert before - removed == after, name
    return True


def test_cleaning_counts_add_up():
    kept, report = clean_documents(MIXED)
    assert balanced(report)
    assert report.before == Totals.of(d.text for d in MIXED)
    assert report.after == Totals.of(d.text for d in kept)
    assert set(report.rules) >= {"normalise", "boilerplate_line", "word_count", "lorem_ipsum"}
    assert report.rules["empty"].documents == 1


def test_dedup_counts_add_up_and_examples_name_the_kept_document():
    cleaned, _ = clean_documents(MIXED)
    _, report = deduplicate(cleaned)
    assert balanced(report)
    # once cleaned, "boilerplate", "copy-1" and "copy-2" repeat "messy" (up to whitespace)
    assert report.rules["exact_duplicate"].documents == 3
    assert {e.duplicate_of for e in report.examples["exact_duplicate"]} == {"messy"}
    (near,) = report.examples["near_duplicate"]
    assert (near.source, near.duplicate_of) == ("near-copy", "messy")


def test_counts_add_up_on_the_default_corpus_with_strict_settings():
    strict = CleanConfig(terminal_punctuation_line=True, short_line=True, min_words=200)
    _, report = clean_documents(default_corpus(), strict)
    assert balanced(report)
    assert report.rules["terminal_punctuation_line"].lines > 0
    assert report.rules["word_count"].documents > 0


def test_to_dict_is_json_serialisable_and_round_trips():
    _, report = clean_documents(MIXED)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["before"]["documents"] == len(MIXED)
    assert data["removed"]["documents"] == report.removed.documents
    assert data["rules"]["word_count"]["examples"][0]["source"] == "short"
    again = Report.from_dict(data)
    assert again.to_dict() == report.to_dict()


def test_merge_chains_stages():
    cleaned, clean_report = clean_documents(MIXED)
    kept, dedup_report = deduplicate(cleaned)
    merged = clean_report.merge(dedup_report)
    assert merged.before == clean_report.before
    assert merged.after == dedup_report.after == Totals.of(d.text for d in kept)
    assert list(merged.rules) == list(clean_report.rules) + list(dedup_report.rules)
    assert balanced(merged)


def test_merge_adds_counts_of_the_same_rule():
    a = Report.start(["x y", "x y", "z w"])
    a.remove_document("duplicate", "2", "x y", duplicate_of="1")
    a.finish(["x y", "z w"])
    b = Report.start(["x y", "z w"])
    b.remove_document("duplicate", "3", "z w", duplicate_of="1")
    b.finish(["x y"])
    merged = a.merge(b)
    assert merged.rules["duplicate"].documents == 2
    assert merged.rules["duplicate"].words == 4
    assert [e.source for e in merged.examples["duplicate"]] == ["2", "3"]
    assert balanced(merged)


def test_merge_refuses_stages_that_do_not_follow_each_other():
    _, first = clean_documents(MIXED[:2])
    _, second = clean_documents(MIXED[2:])
    with pytest.raises(DataError, match="cannot merge reports"):
        first.merge(second)


def test_combine_adds_side_by_side_parts():
    parts = [clean_documents(MIXED[:4])[1], clean_documents(MIXED[4:])[1]]
    combined = Report.combine(parts)
    whole = clean_documents(MIXED)[1]
    assert combined.before == whole.before and combined.after == whole.after
    assert {r: c for r, c in combined.rules.items()} == whole.rules
    assert balanced(combined)


def test_examples_are_capped_per_rule():
    docs = [Document(f"short document {i}", f"s{i}") for i in range(10)]
    _, report = clean_documents(docs, CleanConfig(max_examples=2))
    assert report.rules["word_count"].documents == 10
    assert [e.source for e in report.examples["word_count"]] == ["s0", "s1"]


def test_check_catches_an_uncounted_removal():
    report = Report.start(["one", "two"])
    with pytest.raises(DataError, match="does not balance: 2 documents before - 0 removed"):
        report.finish(["one"])


def test_summary_lists_rules_totals_and_examples():
    _, report = clean_documents(MIXED)
    text = report.summary()
    for needle in ("before", "after", "word_count", "boilerplate_line", "'Too short to keep.'"):
        assert needle in text


def test_snippet_is_one_short_line():
    assert snippet("a\nb") == "a ⏎ b"
    long = snippet("word " * 100)
    assert len(long) == 80 and long.endswith("…")


def test_example_fields_default_to_empty():
    assert Example("src", "text") == Example("src", "text", "", None)
