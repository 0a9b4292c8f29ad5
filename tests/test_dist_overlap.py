"""Gradient communication behind the backward pass (``overlap_comm``): the buckets, the model's
hook, and 2 ranks with overlap on against off."""

import dataclasses
import itertools

import numpy as np
import pytest
from test_dist import MPIEXEC, data, flat, launch, train, train_records  # noqa: F401 (a fixture)
from test_train import make_data, tiny_config

from tinygradlm import backend
from tinygradlm.dist import Dist
from tinygradlm.dist.sync import BucketReduce, layer_groups
from tinygradlm.model import GPT, GPTConfig

CONFIG = GPTConfig(vocab_size=40, block_size=8, n_layer=3, n_head=2, n_embd=16)


def test_the_buckets_are_whole_layers_from_the_last_down():
    model = GPT(CONFIG, seed=0)
    groups = layer_groups(model.shapes)
    assert [g[0] for g in groups] == ["wte", "wpe", "h.0", "h.1", "h.2", "ln_f"]
    assert groups[0][1] == 0 and groups[-1][2] == model.flat_grads.size
    assert all(a[2] == b[1] for a, b in itertools.pairwise(groups))
    one = BucketReduce(Dist(), model.shapes, model.flat_grads)
    spans = {name: (lo, hi) for name, lo, hi in groups}
    assert one.buckets == [spans[n] for n in ("ln_f", "h.2", "h.1", "h.0", "wpe", "wte")]
    # at least a block's size: ln_f joins the last block, wte (final last) joins wpe
    block = spans["h.0"][1] - spans["h.0"][0]
    merged = BucketReduce(Dist(), model.shapes, model.flat_grads, bucket_elems=block)
    assert merged.buckets == [
        (spans["h.2"][0], spans["ln_f"][1]),
        spans["h.1"],
        spans["h.0"],
        (spans["wte"][0], spans["wpe"][1]),
    ]


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_backward_reports_each_layer_when_its_gradient_is_final(precision, kernels):
    if kernels == "numba" and precision == "bf16":
        pytest.skip("the hook does not depend on the kernels; one Numba case is enough")
    with backend.use_kernels(kernels):
        check_reports_final_layers(GPT(CONFIG, seed=0, precision=precision))


def check_reports_final_layers(model):
    rng = np.random.default_rng(0)
    idx = rng.integers(0, CONFIG.vocab_size, size=(2, 8))
    spans = {name: (lo, hi) for name, lo, hi in layer_groups(model.shapes)}
    seen: list[tuple[str, np.ndarray]] = []

    def final(layer):
        lo, hi = spans[layer]
        seen.append((layer, model.flat_grads[lo:hi].copy()))

    model.forward_backward(idx, idx, accumulate=False, on_grads_final=final)
    assert [name for name, _ in seen] == ["ln_f", "h.2", "h.1", "h.0", "wpe", "wte"]
    for layer, at_call in seen:  # what the hook saw is what the step ends with
        lo, hi = spans[layer]
        np.testing.assert_array_equal(at_call, model.flat_grads[lo:hi], err_msg=layer)
    # the same gradient as without the hook
    grads = model.flat_grads.copy()
    model.forward_backward(idx, idx, accumulate=False)
    np.testing.assert_array_equal(model.flat_grads, grads)


def test_a_layout_without_ln_f_reports_and_buckets_its_layers():
    # post-LN (and no norm) has no ln_f: the backward reports the last block first, and the
    # buckets it starts are those of the layers the layout has
    model = GPT(dataclasses.replace(CONFIG, norm="post"), seed=0)
    groups = layer_groups(model.shapes)
    assert [g[0] for g in groups] == ["wte", "wpe", "h.0", "h.1", "h.2"]
    spans = {name: (lo, hi) for name, lo, hi in groups}
    buckets = BucketReduce(Dist(), model.shapes, model.flat_grads)
    assert buckets.buckets == [spans[n] for n in ("h.2", "h.1", "h.0", "wpe", "wte")]
    reported = []

    def final(layer):
        reported.append(layer)
        buckets.final(layer)

    idx = np.random.default_rng(0).integers(0, CONFIG.vocab_size, size=(2, 8))
    model.forward_backward(idx, idx, on_grads_final=final)
    assert reported == ["h.2", "h.1", "h.0", "wpe", "wte"]
    assert buckets.started == len(buckets.buckets)  # all started inside the backward
    buckets.finish()


def test_one_process_bucket_reduce_leaves_the_gradient_as_it_is():
    model = GPT(CONFIG, seed=0)
    model.flat_grads[...] = np.arange(model.flat_grads.size, dtype=np.float32)
    expected = model.flat_grads.copy()
    buckets = BucketReduce(Dist(), model.shapes, model.flat_grads)
    buckets.begin()
    for layer in ("ln_f", "h.2"):
        buckets.final(layer)
    assert buckets.started == 2  # ln_f's bucket, then the last block's
    buckets.finish()
    assert buckets.started == len(buckets.buckets)
    np.testing.assert_array_equal(model.flat_grads, expected)
    # ZeRO-1's shard of one rank is the whole buffer
    shard = np.zeros_like(expected)
    zero = BucketReduce(Dist(), model.shapes, model.flat_grads, shard=shard)
    zero.begin()
    zero.finish()
    np.testing.assert_array_equal(shard, expected)


class TwoRanksInOne(Dist):
    """A Dist that says it has 2 ranks and records when each bucket starts (the sums are
    left out: every collective leaves its arguments as they are)."""

    world_size = 2

    def __init__(self) -> None:
        self.events: list[str] = []

    def iallreduce_sum_(self, array):
        self.events.append(f"start {array.size}")

    def ireduce_scatter_sum_(self, flat, lo, hi, out):
        self.events.append(f"start {hi - lo}")

    def wait_all(self, requests, name):
        self.events.append("wait")


@pytest.mark.parametrize("zero_stage", [0, 1])
def test_a_training_step_starts_the_buckets_inside_the_last_backward(tmp_path, zero_stage):
    from tinygradlm.train import Trainer

    make_data(tmp_path / "data")
    cfg = tiny_config(
        tmp_path, max_steps=1, warmup_steps=0, grad_accum_steps=2, zero_stage=zero_stage
    )
    dist = TwoRanksInOne()
    trainer = Trainer(cfg, log=lambda _m: None, dist=dist)
    layers: list[str] = []
    model_backward = trainer.model._backward_body  # what training's backward runs

    def backward(dlnf, caches, on_grads_final=None):
        dist.events.append("backward")
        hook = None if on_grads_final is None else (lambda n: (layers.append(n), on_grads_final(n)))
        model_backward(dlnf, caches, hook)
        dist.events.append("end")

    trainer.model._backward_body = backward
    trainer.train()
    sizes = [hi - lo for lo, hi in trainer.sync.bucket_reduce().buckets]
    # the first micro-step accumulates; the last one's backward starts every bucket, the
    # embeddings' at its very end (wte is final only then), and the step waits once
    starts = [f"start {n}" for n in sizes]
    assert dist.events == ["backward", "end", "backward", *starts, "end", "wait"]
    assert layers == ["ln_f", "h.1", "h.0", "wpe", "wte"]
    assert trainer.sync.overlap


def test_a_thread_tests_the_started_buckets_until_the_wait():
    import threading
    import time

    class Polled(TwoRanksInOne):
        thread_multiple = True

        def iallreduce_sum_(self, array):
            return object()  # a request

        def test_all(self, requests):
            self.events.append(threading.current_thread() is threading.main_thread())

    dist = Polled()
    model = GPT(CONFIG, seed=0)
    buckets = BucketReduce(dist, model.shapes, model.flat_grads, poll_s=0.001)
    buckets.begin()
    buckets.final("ln_f")  # a request started: the thread runs
    time.sleep(0.05)
    thread = buckets._poller
    buckets.finish()
    assert dist.events[-1] == "wait" and not thread.is_alive() and buckets._poller is None
    polls = dist.events[:-1]
    assert polls and not any(polls)  # every test from the thread, none from the backward


# With 2 ranks every entry's sum is a + b, one IEEE addition, the same bits whichever rank adds
# and whatever algorithm the MPI library picks for the message size (the buckets are smaller
# messages than the whole buffer). With more ranks the grouping of the P terms may depend on
# the message size and the offset in it, so overlap on and off would agree to float32 rounding.
needs_mpi = pytest.mark.skipif(not MPIEXEC.exists(), reason="no mpiexec beside this Python")


@needs_mpi
@pytest.mark.parametrize(
    "extra",
    [
        {"grad_accum_steps": 2, "batch_size": 6},
        {"zero_stage": 1, "bucket_size_mb": 0.004},
    ],
    ids=["allreduce-accumulation", "zero1-buckets"],
)
def test_overlap_on_and_off_train_the_same_bits_on_2_ranks(data, tmp_path, extra):  # noqa: F811
    runs = {
        on: flat(train(2, data, tmp_path / on, max_steps=4, overlap_comm=on, **extra))
        for on in ("true", "false")
    }
    assert np.array_equal(runs["true"], runs["false"])
    for r in train_records(tmp_path / "true"):
        assert r["time"]["comm"] >= 0


@needs_mpi
def test_overlap_on_and_off_train_a_post_ln_model_the_same_on_2_ranks(data, tmp_path):  # noqa: F811
    variant = {"model.norm": '"post"', "model.residual": "false", "bucket_size_mb": 0.004}
    runs = {
        on: flat(train(2, data, tmp_path / on, max_steps=3, overlap_comm=on, **variant))
        for on in ("true", "false")
    }
    assert np.array_equal(runs["true"], runs["false"])


POLLED = """
import numpy as np
from tinygradlm import backend, dist
from tinygradlm.dist.sync import BucketReduce
from tinygradlm.model import GPT, GPTConfig
backend.set_kernels("numpy")
d = dist.init()
model = GPT(GPTConfig(vocab_size=40, block_size=8, n_layer=3, n_head=2, n_embd=16), seed=0)
idx = np.random.default_rng(d.rank).integers(0, 40, size=(2, 8))
model.forward_backward(idx, idx)
expected = d.allreduce_mean_(model.flat_grads.copy())
for poll_s, bucket_elems in ((0.0005, 0), (0.0005, 5000), (0.0, 0)):
    buckets = BucketReduce(d, model.shapes, model.flat_grads, bucket_elems, poll_s=poll_s)
    assert d.thread_multiple and buckets.poll_s == poll_s
    buckets.begin()
    model.forward_backward(idx, idx, on_grads_final=buckets.final)
    buckets.finish()
    assert np.array_equal(model.flat_grads, expected), (poll_s, bucket_elems)
print("same bits", d.rank)
"""


@needs_mpi
def test_the_testing_thread_reduces_the_same_bits_on_2_ranks():
    result = launch(2, ["-c", POLLED], timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("same bits") == 2


@needs_mpi
def test_a_run_with_overlap_resumes_bit_exact(data, tmp_path):  # noqa: F811
    straight = flat(train(2, data, tmp_path / "straight", max_steps=6))
    train(2, data, tmp_path / "split", max_steps=3, checkpoint_interval=3)
    resumed = train(2, data, tmp_path / "split", max_steps=6, checkpoint_interval=3)
    assert resumed.step == 6
    assert np.array_equal(flat(resumed), straight)
