"""Mixtures: the ``data.mix`` forms, Tijdeman's bound on every prefix, each source's epochs,
the same global batches on any number of ranks, and exact resumption."""

import json
import math
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.data.mix import Source, parse_mix, resolve_sources
from tinygradlm.data.mixture import MixtureLoader, tijdeman_counts
from tinygradlm.data.shards import write_shard
from tinygradlm.errors import DataError

VOCAB = 2**20  # uint32 shards: a token says which source and which position it came from
STRIDE = 100_000  # source i's tokens are i·STRIDE + their position in its stream


def write_sources(root, sizes, *, names=None, val=0):
    """One directory of shards per source, source i holding tokens i·STRIDE + 0, 1, 2, …;
    ``val`` tokens of validation shards each. Returns the Source list (weights 1)."""
    names = names or [f"s{i}" for i in range(len(sizes))]
    sources = []
    for i, (name, size) in enumerate(zip(names, sizes, strict=True)):
        d = root / name
        d.mkdir(parents=True)
        tokens = i * STRIDE + np.arange(size)
        half = size // 2  # two shards, so windows straddle a boundary
        write_shard(d / "train_000000.bin", tokens[:half], vocab_size=VOCAB)
        write_shard(d / "train_000001.bin", tokens[half:], vocab_size=VOCAB)
        if val:
            write_shard(d / "val_000000.bin", i * STRIDE + np.arange(val), vocab_size=VOCAB)
        sources.append(Source(name, d, 1.0))
    return sources


def weighted(sources, weights):
    return [Source(s.name, s.path, w) for s, w in zip(sources, weights, strict=True)]


def global_batch(sources, k, *, world_size, **kwargs):
    """Global batch k assembled from every rank's loader."""
    parts = []
    for rank in range(world_size):
        loader = MixtureLoader(sources, rank=rank, world_size=world_size, **kwargs)
        for _ in range(k):
            loader.next_batch()
        parts.append(loader.next_batch())
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# --------------------------------------------------------------------------------------------
# the setting
# --------------------------------------------------------------------------------------------


def test_the_three_forms_of_a_mix_agree():
    expected = [("books", 0.7), ("docs/x", 0.3)]
    assert parse_mix({"books": 0.7, "docs/x": 0.3}) == expected
    assert parse_mix("0.7 books 0.3 docs/x") == expected
    assert parse_mix([0.7, "books", 0.3, "docs/x"]) == expected
    assert parse_mix({"a": 2}) == [("a", 2.0)]  # an integer weight; one source


@pytest.mark.parametrize(
    "mix, message",
    [
        ({}, "empty"),
        ("", "empty"),
        ("0.7 books 0.3", "pairs"),
        ("books 0.7", "'books' is not a weight"),
        ({"a": 0}, "'a' has weight 0"),
        ({"a": -1.0}, "'a' has weight -1.0"),
        ({"a": float("nan")}, "'a' has weight nan"),
        ({"a": True}, "'a' has weight True"),
        ({"a": "1"}, "'a' has weight '1'"),
        ([1, "a", 2, "a"], "'a' is listed twice"),
        (3, "must be a table"),
    ],
)
def test_a_bad_mix_says_what_is_wrong(mix, message):
    with pytest.raises(DataError, match=message):
        parse_mix(mix)


def test_sources_resolve_by_name_by_path_and_from_the_prepared_weights(tmp_path):
    root = tmp_path / "prepared"
    write_sources(root, [50, 50], names=["books", "docs"])
    other = write_sources(tmp_path / "elsewhere", [50], names=["code"])[0]

    by_name = resolve_sources(root, {"books": 3, "docs": 1})
    assert [(s.name, s.path, s.weight) for s in by_name] == [
        ("books", root / "books", 3.0),
        ("docs", root / "docs", 1.0),
    ]
    by_path = resolve_sources(root, f"1 {other.path} 1 books")
    assert [s.name for s in by_path] == ["code", "books"]
    assert by_path[0].path == other.path

    assert resolve_sources(root) is None  # no report: nothing says how to mix
    (root / "report.json").write_text(json.dumps({"mixture": {"docs": 0.25, "books": 0.75}}))
    prepared = resolve_sources(root)
    assert [(s.name, s.weight) for s in prepared] == [("docs", 0.25), ("books", 0.75)]
    assert resolve_sources(root / "books") is None  # a directory with shards of its own


def test_an_unknown_or_empty_source_is_named(tmp_path):
    root = tmp_path / "prepared"
    write_sources(root, [50, 50], names=["books", "docs"])
    with pytest.raises(
        DataError, match=r"'poems' is neither a source .* \(its sources: books, docs"
    ):
        resolve_sources(root, {"books": 1, "poems": 1})
    (root / "empty").mkdir()
    with pytest.raises(DataError, match=r"'empty' .* holds no training shards"):
        resolve_sources(root, {"books": 1, "empty": 1})


# --------------------------------------------------------------------------------------------
# the proportions
# --------------------------------------------------------------------------------------------

weights_strategy = st.lists(
    st.floats(1e-3, 1.0, allow_nan=False, allow_infinity=False), min_size=1, max_size=8
)


@given(weights_strategy, st.integers(1, 400))
def test_every_prefix_is_within_tijdemans_bound(raw, n):
    weights = [w / math.fsum(raw) for w in raw]
    k = len(weights)
    chosen = tijdeman_counts(weights, [0] * k, n)
    counts = np.cumsum(np.eye(k, dtype=np.int64)[chosen], axis=0)  # (n, k) after each sequence
    s = np.arange(1, n + 1)[:, None]
    bound = 0.0 if k == 1 else 1 - 1 / (2 * k - 2)
    assert np.abs(counts - s * np.array(weights)).max() <= bound + 1e-9


@given(weights_strategy, st.integers(1, 100), st.integers(1, 100))
def test_the_rule_continues_from_any_reached_counts(raw, first, then):
    """The next sources depend on the counts alone: stopping and going on is one run."""
    weights = [w / math.fsum(raw) for w in raw]
    k = len(weights)
    straight = tijdeman_counts(weights, [0] * k, first + then)
    counts = np.bincount(straight[:first], minlength=k)
    assert np.array_equal(tijdeman_counts(weights, counts, then), straight[first:])


def test_batches_hold_the_weights_in_every_batch_and_over_many(tmp_path):
    """The stated bound: after s sequences source i has given c_i with |c_i − w_i·s| ≤ 1 − 1/4
    (k = 3), so each batch of 20 holds its share ±1.5 and the shares over many batches match
    the weights to within 0.75/s; sequences are whole windows, so tokens follow."""
    sources = weighted(write_sources(tmp_path, [3000, 800, 300]), [0.6, 0.3, 0.1])
    loader = MixtureLoader(sources, batch_size=20, seq_len=8, seed=3)
    totals = np.zeros(3)
    for batch in range(200):
        x, y = loader.next_batch()
        per_batch = np.bincount(x[:, 0] // STRIDE, minlength=3)
        assert np.all(np.abs(per_batch - 20 * np.array([0.6, 0.3, 0.1])) <= 1.5)
        assert np.array_equal(x[:, 0] // STRIDE, y[:, -1] // STRIDE)  # a row is one source
        totals += per_batch
        s = 20 * (batch + 1)
        assert np.all(np.abs(totals / s - [0.6, 0.3, 0.1]) <= 0.75 / s)
    assert list(totals) == loader.counts


# --------------------------------------------------------------------------------------------
# each source's windows and epochs
# --------------------------------------------------------------------------------------------


def drawn_windows(loader, batches, T):
    """Per source, the window indices of every row of ``batches`` global batches, in order."""
    windows = defaultdict(list)  # keyed by the source that wrote the tokens
    for _ in range(batches):
        x, y = loader.next_batch()
        for row in range(len(x)):
            source, position = divmod(int(x[row, 0]), STRIDE)
            assert position % T == 0
            expected = source * STRIDE + position + np.arange(1, T + 1)
            assert np.array_equal(y[row], expected)  # the window's targets, across shards too
            windows[source].append(position // T)
    return windows


@pytest.mark.parametrize("shuffle", [True, False])
def test_each_source_visits_every_window_once_per_epoch(tmp_path, shuffle):
    T = 4
    sources = weighted(write_sources(tmp_path, [201, 41]), [0.5, 0.5])  # 50 and 10 windows
    loader = MixtureLoader(sources, batch_size=10, seq_len=T, shuffle=shuffle)
    windows = drawn_windows(loader, 20, T)  # 100 sequences each: 2 and 10 epochs
    assert loader.counts == [100, 100]
    assert loader.epochs_seen() == {"s0": 2.0, "s1": 10.0}
    for source, n in ((0, 50), (1, 10)):
        epochs = np.array(windows[source]).reshape(-1, n)
        for epoch in epochs:
            assert sorted(epoch) == list(range(n))
        if shuffle:
            assert any(list(e) != list(epochs[0]) for e in epochs[1:])  # reshuffled
        else:
            assert all(list(e) == list(range(n)) for e in epochs)


def test_adding_a_source_keeps_the_others_window_order(tmp_path):
    """Each source's order is seeded by its name, not its place in the mix."""
    T = 4
    a, b = write_sources(tmp_path, [401, 401], names=["a", "b"])
    alone = drawn_windows(MixtureLoader([a], batch_size=8, seq_len=T, seed=5), 10, T)[0]
    # (windows are keyed by the source that wrote the tokens: a's are 0 in both runs)
    mixed = drawn_windows(MixtureLoader([b, a], batch_size=8, seq_len=T, seed=5), 20, T)[0]
    assert len(mixed) == 80 and mixed == alone


# --------------------------------------------------------------------------------------------
# ranks and resumption
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("world_size", [2, 4])
def test_every_world_size_draws_the_same_global_batches(tmp_path, world_size):
    sources = weighted(write_sources(tmp_path, [500, 90, 60]), [0.5, 0.3, 0.2])
    args = {"batch_size": 8, "seq_len": 4, "seed": 11}
    one = MixtureLoader(sources, **args)
    for k in range(12):  # past the small sources' epoch ends
        x1, y1 = one.next_batch()
        xp, yp = global_batch(sources, k, world_size=world_size, **args)
        assert np.array_equal(x1, xp) and np.array_equal(y1, yp)


@pytest.mark.parametrize("before, after", [(1, 1), (1, 2), (2, 4), (4, 1)])
def test_resume_continues_with_exactly_the_next_batches(tmp_path, before, after):
    sources = weighted(write_sources(tmp_path, [500, 90, 60]), [0.5, 0.3, 0.2])
    args = {"batch_size": 8, "seq_len": 4, "seed": 2}
    straight = MixtureLoader(sources, **args)
    expected = [straight.next_batch()[0] for _ in range(15)]

    first = [MixtureLoader(sources, rank=r, world_size=before, **args) for r in range(before)]
    for _ in range(6):
        for loader in first:
            loader.next_batch()
    state = json.loads(json.dumps(first[0].state_dict()))  # as a checkpoint stores it
    assert all(loader.state_dict() == first[0].state_dict() for loader in first)
    resumed = [MixtureLoader(sources, rank=r, world_size=after, **args) for r in range(after)]
    for loader in resumed:
        loader.load_state_dict(state)
    for k in range(6, 15):
        got = np.concatenate([loader.next_batch()[0] for loader in resumed])
        assert np.array_equal(got, expected[k])


def test_a_state_that_does_not_fit_says_what_differs(tmp_path):
    sources = weighted(write_sources(tmp_path / "a", [500, 90]), [0.5, 0.5])
    loader = MixtureLoader(sources, batch_size=8, seq_len=4)
    for _ in range(3):
        loader.next_batch()
    state = loader.state_dict()

    def fails(message, **changes):
        other = MixtureLoader(
            changes.pop("sources", sources), **{"batch_size": 8, "seq_len": 4, **changes}
        )
        with pytest.raises(DataError, match=message):
            other.load_state_dict(state)
        assert not any(other.counts)  # nothing changed

    fails("seed is 0 in the state but 1 here", seed=1)
    fails("seq_len is 4 in the state but 5 here", seq_len=5)
    fails(r"'s1' has weight 0.5 in the state but 0.25 here", sources=weighted(sources, [3, 1]))
    fails(r"the sources are \['s0', 's1'\] in the state but \['s0'\] here", sources=sources[:1])
    longer = write_sources(tmp_path / "b", [500, 95])
    fails(r"source 's1': train_000000.bin holds 45 tokens in the state but 47", sources=longer)

    single = {"epoch": 0, "batch": 3, "seed": 0}
    with pytest.raises(DataError, match="single-source loader's"):
        loader.load_state_dict(single)
    broken = json.loads(json.dumps(state))
    broken["mixture"]["s0"]["seen"] += 8
    with pytest.raises(DataError, match="more than 1 from their shares"):
        loader.load_state_dict(broken)
    broken["mixture"]["s0"]["seen"] += 1
    with pytest.raises(DataError, match="not a whole number of global batches"):
        loader.load_state_dict(broken)


def test_construction_errors_name_the_source(tmp_path):
    sources = write_sources(tmp_path, [500, 3])
    with pytest.raises(DataError, match=r"source 's1': .* 3 tokens, not one window of T=4"):
        MixtureLoader(sources, batch_size=8, seq_len=4)
    with pytest.raises(DataError, match="not divisible by world_size 3"):
        MixtureLoader(sources[:1], batch_size=8, seq_len=4, world_size=3)
    with pytest.raises(DataError, match=r"source 's0': .* no val shards"):
        MixtureLoader(sources[:1], split="val", batch_size=8, seq_len=4)


def test_new_weights_on_resume_take_over_from_the_next_batch(tmp_path):
    T = 4
    base = write_sources(tmp_path, [2001, 2001])  # 500 windows each
    args = {"batch_size": 10, "seq_len": T, "seed": 4}
    first = MixtureLoader(weighted(base, [0.8, 0.2]), **args)
    before = drawn_windows(first, 5, T)
    state = json.loads(json.dumps(first.state_dict()))
    assert first.counts == [40, 10]

    second = MixtureLoader(weighted(base, [0.2, 0.8]), **args)
    with pytest.raises(DataError, match=r"'s0' has weight 0.8 .* set data.remix = true"):
        second.load_state_dict(state)
    second.load_state_dict(state, new_weights=True)
    assert second.counts == [40, 10] and second.since == [40, 10]
    for k in range(1, 21):  # the new proportions hold from the switch on, within 1/2 (k = 2)
        after = drawn_windows(second, 1, T)
        for i in (0, 1):
            before[i] += after[i]
        since = np.array(second.counts) - [40, 10]
        assert np.all(np.abs(since - 10 * k * np.array([0.2, 0.8])) <= 0.5)
    # each source went on from its place in its own epoch order, as if never interrupted
    for i in (0, 1):
        alone = MixtureLoader([base[i]], batch_size=1, seq_len=T, seed=4)
        assert drawn_windows(alone, len(before[i]), T)[i] == before[i]

    # and the state after the switch resumes exactly, with no flag: its weights are the run's
    saved = json.loads(json.dumps(second.state_dict()))
    assert saved["mixture"]["s1"]["since"] == 10
    third = MixtureLoader(weighted(base, [0.2, 0.8]), **args)
    third.load_state_dict(saved)
    for _ in range(5):
        assert np.array_equal(third.next_batch()[0], second.next_batch()[0])


@pytest.mark.parametrize(
    "mix",
    [
        {"a": 1e308, "b": 1e308},  # each finite, the sum not
        {"a": 10**400},  # beyond a float
        {"a": float("nan")},
        {"a": -1.0},
        {"a": 0},
        "1e400 a",
        {"a\0b": 1.0},
    ],
)
def test_weights_a_float_cannot_hold_are_data_errors(mix):
    with pytest.raises(DataError, match=r"data\.mix"):
        parse_mix(mix)


def test_a_prepared_mixture_with_bad_weights_or_bytes_is_a_data_error(tmp_path):
    for content in [b"\xff{}", b'{"mixture": {"a": 1e308, "b": 1e308}}', b"[" * 100_000]:
        (tmp_path / "report.json").write_bytes(content)
        with pytest.raises(DataError, match=r"report\.json"):
            resolve_sources(tmp_path)
