"""EpochSampler: the order, the rank slices, the partial last batch and the state checks."""

import numpy as np
import pytest

from tinygradlm.data.sampler import EpochSampler
from tinygradlm.errors import DataError


def test_shuffled_epochs_follow_the_seeded_permutation_and_drop_the_rest():
    sampler = EpochSampler(10, 4, seed=3)
    assert sampler.batches_per_epoch == 2
    for epoch in range(2):
        order = np.random.default_rng([3, epoch]).permutation(10)
        for k in range(2):
            np.testing.assert_array_equal(sampler.next_indices(), order[4 * k : 4 * k + 4])
    assert (sampler.epoch, sampler.batch) == (2, 0)


def test_ranks_split_the_global_batch():
    whole = EpochSampler(12, 6, seed=1).next_indices()
    parts = [EpochSampler(12, 6, seed=1, rank=r, world_size=3).next_indices() for r in range(3)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_keeping_the_last_partial_batch():
    samplers = [
        EpochSampler(5, 4, shuffle=False, drop_last=False, rank=r, world_size=2) for r in (0, 1)
    ]
    assert samplers[0].batches_per_epoch == 2
    assert [list(s.next_indices()) for s in samplers] == [[0, 1], [2, 3]]
    assert [list(s.next_indices()) for s in samplers] == [[4], []]
    assert all((s.epoch, s.batch) == (1, 0) for s in samplers)


def test_load_state_dict_checks_and_changes_nothing_on_error():
    sampler = EpochSampler(10, 2, owner="X")
    state = {**sampler.state_dict(), "batch": 3, "extra": 1}
    sampler.load_state_dict(state, {"extra": 1})
    assert (sampler.epoch, sampler.batch) == (0, 3)
    with pytest.raises(DataError, match=r"X: cannot resume!: extra is 1 in the state but 2 here"):
        sampler.load_state_dict(state, {"extra": 2}, hint="!")
    with pytest.raises(DataError, match="no way"):
        sampler.load_state_dict(state, {"extra": 1}, differ={"extra": lambda a, b: ["no way"]})
    with pytest.raises(DataError, match="batch 5 is not below batches_per_epoch 5"):
        sampler.load_state_dict({**state, "batch": 5}, {"extra": 1})
    assert (sampler.epoch, sampler.batch) == (0, 3)
