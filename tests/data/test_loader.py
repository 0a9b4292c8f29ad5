"""The loader: correct windows across shards, rank slices that partition the global batch, the
same global batch for every world size, and exact resumption from a state dict."""

import itertools
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm.data.loader import DataLoader
from tinygradlm.data.shards import write_shard
from tinygradlm.errors import DataError

VOCAB = 2**20  # uint32 shards, so a token can be its own position in the stream


def _write_stream(directory: Path, sizes, *, split="train", random=False, seed=0) -> np.ndarray:
    """Shards of the given sizes whose concatenation is returned: by default 0, 1, 2, … so a
    token says where in the stream it came from."""
    n = sum(sizes)
    stream = np.random.default_rng(seed).integers(0, 50, size=n) if random else np.arange(n) % VOCAB
    starts = np.cumsum([0, *sizes])
    for i, size in enumerate(sizes):
        tokens = stream[starts[i] : starts[i] + size]
        write_shard(directory / f"{split}_{i:06d}.bin", tokens, vocab_size=VOCAB)
    return stream


def _global_batch(directory, k, *, world_size, **kwargs):
    """Global batch k, assembled from every rank's loader, and each rank's slice."""
    slices = []
    for rank in range(world_size):
        loader = DataLoader(directory, rank=rank, world_size=world_size, **kwargs)
        for _ in range(k):
            loader.next_batch()
        slices.append(loader.next_batch())
    x = np.concatenate([s[0] for s in slices])
    y = np.concatenate([s[1] for s in slices])
    return x, y, slices


@pytest.fixture
def data_dir(tmp_path):
    _write_stream(tmp_path, [100, 37, 1, 0, 250, 13])  # 401 tokens, shards of odd sizes
    return tmp_path


# --------------------------------------------------------------------------------------------
# windows and batches
# --------------------------------------------------------------------------------------------


def test_batches_are_windows_of_the_stream_with_y_shifted_by_one(data_dir):
    loader = DataLoader(data_dir, batch_size=4, seq_len=8)
    assert loader.n_tokens == 401
    assert loader.n_windows == 50  # (401 - 1) // 8
    assert loader.batches_per_epoch == 12
    assert loader.tokens_per_batch == 32
    for x, y in itertools.islice(loader, 30):
        assert x.shape == y.shape == (4, 8)
        assert x.dtype == y.dtype == np.int64
        assert x.flags.c_contiguous and y.flags.c_contiguous
        starts = x[:, 0]
        assert np.all(starts % 8 == 0) and np.all(starts + 8 < 401)
        np.testing.assert_array_equal(x, starts[:, None] + np.arange(8))  # whole windows
        np.testing.assert_array_equal(y, x + 1)


def test_windows_straddling_shard_boundaries_match_the_concatenated_stream(tmp_path):
    sizes = [5, 1, 0, 2, 9, 3, 17, 4]  # windows of 7 (+1) cross up to four shards
    stream = _write_stream(tmp_path, sizes, random=True)
    loader = DataLoader(tmp_path, batch_size=2, seq_len=7, shuffle=False)
    for k in range(loader.batches_per_epoch):
        x, y = loader.next_batch()
        for row in range(2):
            start = (2 * k + row) * 7
            np.testing.assert_array_equal(x[row], stream[start : start + 7])
            np.testing.assert_array_equal(y[row], stream[start + 1 : start + 8])


def test_an_epoch_visits_distinct_windows_then_reshuffles(data_dir):
    loader = DataLoader(data_dir, batch_size=4, seq_len=8, seed=3)
    epochs = []
    for epoch in range(3):
        assert loader.epoch == epoch and loader.batch_index == 0
        starts = [x[:, 0] for x, _ in itertools.islice(loader, loader.batches_per_epoch)]
        starts = np.concatenate(starts)
        assert len(set(starts.tolist())) == 48  # 12 batches of 4, no window twice
        epochs.append(starts)
    assert loader.epoch == 3
    assert not np.array_equal(epochs[0], epochs[1])  # a new order each epoch


def test_unshuffled_order_is_sequential_every_epoch(data_dir):
    loader = DataLoader(data_dir, batch_size=4, seq_len=8, shuffle=False)
    for _ in range(2):
        starts = np.concatenate([x[:, 0] for x, _ in itertools.islice(loader, 12)])
        np.testing.assert_array_equal(starts, np.arange(48) * 8)  # the last 2 windows dropped


def test_same_seed_same_batches_other_seed_other_batches(data_dir):
    def first_batches(seed):
        loader = DataLoader(data_dir, batch_size=4, seq_len=8, seed=seed)
        return np.stack([x for x, _ in itertools.islice(loader, 5)])

    np.testing.assert_array_equal(first_batches(7), first_batches(7))
    assert not np.array_equal(first_batches(7), first_batches(8))


def test_exactly_one_batch_of_data_is_enough(tmp_path):
    _write_stream(tmp_path, [4 * 8 + 1])  # B·T + 1 tokens: one batch, one epoch
    loader = DataLoader(tmp_path, batch_size=4, seq_len=8)
    assert loader.batches_per_epoch == 1
    x1, _ = loader.next_batch()
    x2, _ = loader.next_batch()
    assert loader.epoch == 2
    assert sorted(x1[:, 0]) == sorted(x2[:, 0]) == [0, 8, 16, 24]


def test_validation_split_is_read_the_same_way(tmp_path):
    _write_stream(tmp_path, [200], split="train")
    val = _write_stream(tmp_path, [30, 20], split="val", random=True, seed=1)
    loader = DataLoader(tmp_path, split="val", batch_size=3, seq_len=5, shuffle=False)
    assert [f.name for f in loader.files] == ["val_000000.bin", "val_000001.bin"]
    x, _ = loader.next_batch()
    np.testing.assert_array_equal(x, val[:15].reshape(3, 5))
    loader.next_batch()
    loader.reset()
    np.testing.assert_array_equal(loader.next_batch()[1], val[1:16].reshape(3, 5))


def test_a_file_or_a_list_of_files_is_a_source(tmp_path):
    _write_stream(tmp_path, [50, 50])
    files = [tmp_path / "train_000000.bin", tmp_path / "train_000001.bin"]
    from_dir = DataLoader(tmp_path, batch_size=2, seq_len=10, seed=1).next_batch()
    from_list = DataLoader([str(f) for f in files], batch_size=2, seq_len=10, seed=1).next_batch()
    np.testing.assert_array_equal(from_dir[0], from_list[0])
    assert DataLoader(files[0], batch_size=2, seq_len=10).n_tokens == 50


def test_shards_stay_memory_mapped(data_dir):
    loader = DataLoader(data_dir, batch_size=4, seq_len=8)
    assert all(not tokens.flags.owndata for tokens in loader.stream.shards if tokens.size)


# --------------------------------------------------------------------------------------------
# ranks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_rank_slices_are_disjoint_and_cover_the_same_global_batch(data_dir, world_size):
    kwargs = {"batch_size": 12, "seq_len": 4, "seed": 5}
    for k in (0, 1, 7):
        reference, _, _ = _global_batch(data_dir, k, world_size=1, **kwargs)
        x, y, slices = _global_batch(data_dir, k, world_size=world_size, **kwargs)
        np.testing.assert_array_equal(x, reference)  # the same global batch for every P
        np.testing.assert_array_equal(y, x + 1)
        windows = [set(s[0][:, 0].tolist()) for s in slices]
        assert all(len(w) == 12 // world_size for w in windows)
        assert set().union(*windows) == set(reference[:, 0].tolist())  # disjoint, covering


def test_rank_r_takes_rows_r_times_b_over_p(data_dir):
    x_all, _ = DataLoader(data_dir, batch_size=6, seq_len=4, seed=2).next_batch()
    x_rank, _ = DataLoader(
        data_dir, batch_size=6, seq_len=4, seed=2, rank=2, world_size=3
    ).next_batch()
    np.testing.assert_array_equal(x_rank, x_all[4:6])


# --------------------------------------------------------------------------------------------
# resuming
# --------------------------------------------------------------------------------------------


def _rest(loader, n):
    return [loader.next_batch() for _ in range(n)]


@pytest.mark.parametrize("k", [0, 1, 5, 11, 12, 23])  # 12 batches per epoch: 11, 12 and 23 cross
def test_resume_yields_exactly_the_next_batches(data_dir, k):
    kwargs = {"batch_size": 4, "seq_len": 8, "seed": 9}
    original = DataLoader(data_dir, **kwargs)
    _rest(original, k)
    state = json.loads(json.dumps(original.state_dict()))  # survives a JSON checkpoint
    expected = _rest(original, 15)

    resumed = DataLoader(data_dir, **kwargs)
    resumed.load_state_dict(state)
    assert (resumed.epoch, resumed.batch_index) == (k // 12, k % 12)
    for (x, y), (ex, ey) in zip(_rest(resumed, 15), expected, strict=True):
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)


@pytest.mark.parametrize(("before", "after"), [(2, 3), (4, 1), (1, 4), (3, 2)])
def test_resume_on_a_different_world_size_continues_the_global_batches(data_dir, before, after):
    kwargs = {"batch_size": 12, "seq_len": 4, "seed": 1}
    k = 9  # batches_per_epoch is 8: the resumed run starts in epoch 1
    ranks = [DataLoader(data_dir, rank=r, world_size=before, **kwargs) for r in range(before)]
    for loader in ranks:
        _rest(loader, k)
    states = [loader.state_dict() for loader in ranks]
    assert all(state == states[0] for state in states)  # every rank saves the same state

    reference = DataLoader(data_dir, **kwargs)
    _rest(reference, k)
    resumed = [DataLoader(data_dir, rank=r, world_size=after, **kwargs) for r in range(after)]
    for loader in resumed:
        loader.load_state_dict(states[0])
    for _ in range(10):
        expected, _ = reference.next_batch()
        x = np.concatenate([loader.next_batch()[0] for loader in resumed])
        np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 8}, "batch_size is 4 in the state but 8 here"),
        ({"seq_len": 4}, "seq_len is 8 in the state but 4 here"),
        ({"seed": 1}, "seed is 0 in the state but 1 here"),
        ({"shuffle": False}, "shuffle is True in the state but False here"),
    ],
)
def test_load_state_dict_says_what_differs(data_dir, change, message):
    state = DataLoader(data_dir, batch_size=4, seq_len=8).state_dict()
    other = DataLoader(data_dir, **{"batch_size": 4, "seq_len": 8, **change})
    with pytest.raises(DataError, match=message):
        other.load_state_dict(state)


def test_load_state_dict_checks_the_dataset(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _write_stream(tmp_path / "a", [100, 50])
    _write_stream(tmp_path / "b", [100, 51])
    state = DataLoader(tmp_path / "a", batch_size=2, seq_len=8).state_dict()
    loader = DataLoader(tmp_path / "b", batch_size=2, seq_len=8)
    with pytest.raises(DataError, match=r"train_000001\.bin holds 50 tokens in the state but 51"):
        loader.load_state_dict(state)
    only_first = DataLoader(tmp_path / "a" / "train_000000.bin", batch_size=2, seq_len=8)
    with pytest.raises(DataError, match="the shards are"):
        only_first.load_state_dict(state)


def test_load_state_dict_rejects_malformed_states(data_dir):
    loader = DataLoader(data_dir, batch_size=4, seq_len=8)
    good = loader.state_dict()
    for bad, message in [
        ({k: v for k, v in good.items() if k != "epoch"}, "missing keys \\['epoch'\\]"),
        ({**good, "extra": 1}, "unknown keys \\['extra'\\]"),
        ({**good, "batch": 12}, "batch 12 is not below batches_per_epoch 12"),
        ({**good, "epoch": -1}, "epoch must be an integer"),
        ({**good, "dataset": "x"}, "dataset in the state is 'x'"),
        ([1, 2], "must be a dict"),
    ]:
        with pytest.raises(DataError, match=message):
            loader.load_state_dict(bad)
    assert (loader.epoch, loader.batch_index) == (0, 0)


# --------------------------------------------------------------------------------------------
# what the loader refuses
# --------------------------------------------------------------------------------------------


def test_construction_errors_say_what_and_the_numbers(data_dir):
    with pytest.raises(DataError, match="batch_size 10 is not divisible by world_size 4"):
        DataLoader(data_dir, batch_size=10, seq_len=8, world_size=4)
    with pytest.raises(DataError, match=r"401 tokens, 8 windows of T=50.*B=16.*at least 801"):
        DataLoader(data_dir, batch_size=16, seq_len=50)
    with pytest.raises(DataError, match="rank 2 is not below world_size 2"):
        DataLoader(data_dir, batch_size=4, seq_len=8, rank=2, world_size=2)
    with pytest.raises(DataError, match="seq_len must be an integer ≥ 1, got 0"):
        DataLoader(data_dir, batch_size=4, seq_len=0)
    with pytest.raises(DataError, match="no val shards"):
        DataLoader(data_dir, split="val", batch_size=4, seq_len=8)
    with pytest.raises(DataError, match="no such file"):
        DataLoader(data_dir / "nothing", batch_size=4, seq_len=8)
    with pytest.raises(DataError, match="empty"):
        DataLoader([], batch_size=4, seq_len=8)
    with pytest.raises(DataError, match=r"train_000005\.bin: token id 400 at position 12 "):
        DataLoader(data_dir, batch_size=4, seq_len=8, vocab_size=400)


def test_too_little_data_by_one_token(tmp_path):
    _write_stream(tmp_path, [4 * 8])  # B·T tokens: the last window lacks its last target
    with pytest.raises(DataError, match="fewer than one global batch"):
        DataLoader(tmp_path, batch_size=4, seq_len=8)


# --------------------------------------------------------------------------------------------
# the whole scheme, for drawn sizes
# --------------------------------------------------------------------------------------------


@given(
    data=st.data(),
    local_batch=st.integers(1, 3),
    world_size=st.integers(1, 4),
    seq_len=st.integers(1, 9),
    shuffle=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_scheme_for_any_sizes(data, local_batch, world_size, seq_len, shuffle, seed):
    B = local_batch * world_size
    min_tokens = B * seq_len + 1
    sizes = data.draw(st.lists(st.integers(0, 30), min_size=1, max_size=6), label="shard sizes")
    sizes[-1] += max(0, min_tokens - sum(sizes))  # at least one global batch
    n_tokens = sum(sizes)
    with tempfile.TemporaryDirectory() as tmp:
        _write_stream(Path(tmp), sizes)
        kwargs = {"batch_size": B, "seq_len": seq_len, "seed": seed, "shuffle": shuffle}
        ranks = [
            DataLoader(tmp, rank=r, world_size=world_size, **kwargs) for r in range(world_size)
        ]
        reference = DataLoader(tmp, **kwargs)
        n_windows = (n_tokens - 1) // seq_len
        per_epoch = n_windows // B
        assert reference.batches_per_epoch == per_epoch
        stop = data.draw(st.integers(0, 2 * per_epoch), label="resume after")
        seen: list[int] = []
        for k in range(2 * per_epoch + 1):
            if k == stop:  # resume every rank from the reference's state
                state = reference.state_dict()
                for loader in ranks:
                    loader.load_state_dict(state)
            x_ref, y_ref = reference.next_batch()
            if k < stop:
                continue
            parts = [loader.next_batch() for loader in ranks]
            for x, y in parts:
                assert x.shape == y.shape == (local_batch, seq_len)
            np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x_ref)
            np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y_ref)
            starts = x_ref[:, 0]
            np.testing.assert_array_equal(x_ref, starts[:, None] + np.arange(seq_len))
            np.testing.assert_array_equal(y_ref, x_ref + 1)
            assert np.all(starts % seq_len == 0) and np.all(starts // seq_len < n_windows)
            if k < per_epoch:
                seen += starts.tolist()
        if stop == 0:
            assert len(seen) == len(set(seen)) == per_epoch * B  # no window twice in an epoch
