"""Deduplication: planted exact and near duplicates are found, distinct documents are kept, the
MinHash math holds, and everything is deterministic for a seed."""

import numpy as np
import pytest

from tinygradlm.data.dedup import (
    DedupConfig,
    candidate_probability,
    deduplicate,
    jaccard,
    minhash_signatures,
    near_duplicate_pairs,
    shingle_hashes,
)
from tinygradlm.data.documents import Document
from tinygradlm.errors import DataError


def synthetic_corpus(seed=0, distinct=200, near=40, related=20, exact=20, words=300, near_edits=3):
    """``distinct`` random documents, then planted copies in random order:

    - ``near``: a distinct document with ``near_edits`` words replaced (3 edits: word 5-gram
      Jaccard ≈ 0.9; 5 edits: ≈ 0.85);
    - ``exact``: a distinct document again, with different line breaks;
    - ``related``: a distinct document with 15 words replaced (Jaccard ≈ 0.6, to be kept).

    Returns the documents and the set of sources that are duplicates.
    """
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, size=rng.integers(3, 9))) for _ in range(5000)]

    def text(ws):
        return " ".join(ws)

    originals = [list(rng.choice(vocab, size=words)) for _ in range(distinct)]
    docs = [Document(text(ws), f"orig{i}") for i, ws in enumerate(originals)]
    planted, duplicates = [], set()
    for kind, count, edits in (
        ("near", near, near_edits),
        ("related", related, 15),
        ("exact", exact, 0),
    ):
        for k, i in enumerate(rng.choice(distinct, size=count, replace=False)):
            ws = list(originals[i])
            for position in rng.choice(words, size=edits, replace=False):
                ws[position] = rng.choice(vocab)
            body = (
                text(ws)
                if kind != "exact"
                else "\n".join(" ".join(ws[j : j + 10]) for j in range(0, words, 10))
            )
            planted.append(Document(body, f"{kind}{k}-of-orig{i}"))
            if kind != "related":
                duplicates.add(planted[-1].source)
    order = rng.permutation(len(planted))
    return docs + [planted[i] for i in order], duplicates


def precision_recall(docs, duplicates, config=None):
    kept, report = deduplicate(docs, config)
    kept_sources = {d.source for d in kept}
    removed = {d.source for d in docs} - kept_sources
    true_positives = len(removed & duplicates)
    return true_positives / max(len(removed), 1), true_positives / len(duplicates), report


def test_planted_near_duplicates_are_about_90_percent_similar():
    docs, _ = synthetic_corpus()
    by_source = {d.source: d for d in docs}

    def similarities(kind):
        return [
            jaccard(
                shingle_hashes(d.text), shingle_hashes(by_source[d.source.split("-of-")[1]].text)
            )
            for d in docs
            if d.source.startswith(kind)
        ]

    near, related = similarities("near"), similarities("related")
    assert 0.85 < np.mean(near) < 0.95 and min(near) > 0.8
    assert max(related) < 0.75


def test_planted_duplicates_are_found_with_high_precision_and_recall():
    docs, duplicates = synthetic_corpus()
    precision, recall, report = precision_recall(docs, duplicates)
    assert recall >= 0.9
    assert precision >= 0.95
    assert report.rules["exact_duplicate"].documents == 20
    assert report.after.documents == len(docs) - report.removed.documents


def test_recall_stays_high_for_85_percent_similar_documents():
    # P(candidate) = 1 - (1 - 0.85^8)^14 = 0.988 for one pair
    docs, duplicates = synthetic_corpus(seed=3, near=60, related=0, exact=0, near_edits=5)
    precision, recall, _ = precision_recall(docs, duplicates)
    assert recall >= 0.9
    assert precision >= 0.95


def test_estimated_similarity_verification_also_works():
    docs, duplicates = synthetic_corpus(seed=1)
    precision, recall, _ = precision_recall(docs, duplicates, DedupConfig(verify="estimate"))
    assert recall >= 0.85
    assert precision >= 0.95


def test_removed_duplicates_name_the_kept_document():
    docs, _ = synthetic_corpus(distinct=20, near=3, related=0, exact=3)
    _, report = deduplicate(docs)
    for rule in ("exact_duplicate", "near_duplicate"):
        for example in report.examples[rule]:
            assert example.duplicate_of == example.source.split("-of-")[1]
    assert report.examples["near_duplicate"][0].detail.startswith("Jaccard 0.")


def test_distinct_documents_are_all_kept():
    docs, _ = synthetic_corpus(near=0, related=0, exact=0)
    kept, report = deduplicate(docs)
    assert kept == docs
    assert report.removed.documents == 0


def test_exact_duplicates_ignore_whitespace_and_keep_the_first():
    docs = [Document("a b\nc", "1"), Document("x", "2"), Document("a  b c ", "3")]
    kept, report = deduplicate(docs, DedupConfig(near=False))
    assert [d.source for d in kept] == ["1", "2"]
    assert report.examples["exact_duplicate"][0].duplicate_of == "1"


def test_switching_off_exact_leaves_exact_copies_to_the_near_rule():
    docs = [Document("one two three four five six seven", "1")] * 2
    kept, report = deduplicate(docs, DedupConfig(exact=False))
    assert len(kept) == 1 and report.rules["near_duplicate"].documents == 1
    kept, _ = deduplicate(docs, DedupConfig(exact=False, near=False))
    assert len(kept) == 2


def test_clusters_keep_their_first_document_in_input_order():
    base = [f"w{i}" for i in range(200)]
    a = " ".join(base)
    b = " ".join([*base[:-2], "x", "y"])
    c = " ".join([*base[:-4], "p", "q", "x", "y"])
    kept, report = deduplicate([Document(c, "c"), Document(a, "a"), Document(b, "b")])
    assert [d.source for d in kept] == ["c"]
    assert {e.duplicate_of for e in report.examples["near_duplicate"]} == {"c"}


def test_short_documents_are_one_shingle_of_all_their_words():
    assert len(shingle_hashes("Hello, world!", 5)) == 1
    assert np.array_equal(shingle_hashes("hello world"), shingle_hashes("Hello,  WORLD."))
    kept, _ = deduplicate([Document("Hello world", "1"), Document("hello, world!", "2")])
    assert [d.source for d in kept] == ["1"]
    kept, _ = deduplicate([Document("Hello world", "1"), Document("Hello there", "2")])
    assert len(kept) == 2


def test_documents_without_words_take_no_part_in_near_dedup():
    docs = [Document("!!!", "1"), Document("???", "2"), Document("...", "3")]
    kept, _ = deduplicate(docs)
    assert kept == docs


def test_shingle_hashes_are_stable_across_runs():
    # BLAKE2b words and a fixed polynomial: the same value in every process (no salted hash())
    assert shingle_hashes("the quick brown fox jumps over", 5).tolist() == [
        int(v) for v in shingle_hashes("The quick brown fox jumps over", 5)
    ]
    assert len(shingle_hashes("a b c d e f g", 5)) == 3


# -- the math ------------------------------------------------------------------------------------


def test_lsh_probability_formula_and_threshold():
    b, r = 14, 8
    s_star = (1 / b) ** (1 / r)
    assert s_star == pytest.approx(0.719, abs=1e-3)
    assert candidate_probability(0.8) == pytest.approx(1 - (1 - 0.8**8) ** 14)
    assert candidate_probability(0.9) > 0.999
    assert candidate_probability(0.5) < 0.06


def test_minhash_estimates_jaccard_within_its_standard_deviation():
    rng = np.random.default_rng(0)
    universe = rng.integers(0, 2**63, size=4000, dtype=np.uint64)
    pairs, estimates, truths = [], [], []
    for overlap in (0.2, 0.5, 0.8, 0.95):
        shared = int(1000 * overlap)
        a = np.sort(universe[:1000])
        b = np.sort(np.concatenate([universe[:shared], universe[2000 : 2000 + 1000 - shared]]))
        pairs += [a, b]
        truths.append(jaccard(a, b))
    signatures = minhash_signatures(pairs, 112, seed=3)
    for k, truth in enumerate(truths):
        estimates.append((signatures[2 * k] == signatures[2 * k + 1]).mean())
        sigma = np.sqrt(truth * (1 - truth) / 112)
        assert abs(estimates[-1] - truth) < 4 * sigma + 1e-9


def test_numba_and_numpy_minhash_agree():
    rng = np.random.default_rng(1)
    shingles = [
        np.sort(rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64)) for n in (0, 1, 7, 40000, 3)
    ]
    numpy = minhash_signatures(shingles, 112, seed=5, engine="numpy")
    numba = minhash_signatures(shingles, 112, seed=5, engine="numba")
    assert numpy.dtype == np.uint32 and numpy.shape == (5, 112)
    np.testing.assert_array_equal(numpy, numba)
    assert (numpy[0] == 2**31 - 1).all()  # an empty set matches nothing


def test_near_duplicate_pairs_are_verified_above_the_threshold():
    docs, _ = synthetic_corpus(distinct=30, near=5, related=5, exact=0)
    shingles = [shingle_hashes(d.text) for d in docs]
    pairs = near_duplicate_pairs(shingles)
    assert len(pairs) == 5
    assert all(i < j and s >= 0.8 for i, j, s in pairs)


# -- determinism and config ----------------------------------------------------------------------


def test_same_seed_gives_the_same_result_and_report():
    docs, _ = synthetic_corpus(seed=2, distinct=50, near=10, related=5, exact=5)
    first = deduplicate(docs, DedupConfig(seed=7))
    second = deduplicate(docs, DedupConfig(seed=7))
    assert first[0] == second[0]
    assert first[1].to_dict() == second[1].to_dict()
    signatures = [
        minhash_signatures([shingle_hashes(docs[0].text)], 112, seed=s) for s in (7, 7, 8)
    ]
    assert np.array_equal(signatures[0], signatures[1])
    assert not np.array_equal(signatures[0], signatures[2])


def test_config_from_dict_rejects_unknown_keys_and_bad_values():
    assert DedupConfig.from_dict({"bands": 20, "rows": 5}).permutations == 100
    assert DedupConfig.from_dict(DedupConfig().to_dict()) == DedupConfig()
    with pytest.raises(DataError, match=r"unknown key DedupConfig\.band "):
        DedupConfig.from_dict({"band": 3})
    with pytest.raises(DataError, match=r"DedupConfig\.threshold"):
        DedupConfig(threshold=1.5)
    with pytest.raises(DataError, match=r"DedupConfig\.verify"):
        DedupConfig(verify="fuzzy")
    with pytest.raises(DataError, match=r"DedupConfig\.rows"):
        DedupConfig(rows=0)
