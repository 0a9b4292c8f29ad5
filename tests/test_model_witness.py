"""The autograd witness is independent of the hand derivations: its graph holds only primitive
ops (one-line VJPs), each fused Tensor op equals its primitive composition, and an error planted in
the reference's constants is caught by the witness rather than repeated by it."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm import backend
from tinygradlm.autograd import Tensor, cross_entropy, layer_norm, masked_fill
from tinygradlm.lora import LoRAConfig
from tinygradlm.model import GPT, GPTConfig, witness
from tinygradlm.testing import strategies as tst


def graph_ops(out):
    """The op name of every node in the graph of ``out`` ("pow(3)" read as "pow")."""
    ops, seen, stack = set(), set(), [out]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.op:
            ops.add(node.op.split("(")[0])
        stack.extend(node.parents)
    return ops


def small_model(lora=False, **variant):
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, **variant)
    model = GPT(config, seed=0, dtype=np.float64)
    rng = np.random.default_rng(1)
    model.flat_params += rng.normal(0, 0.2, size=model.flat_params.shape)
    if lora:
        model.add_lora(LoRAConfig(rank=2, alpha=4.0), seed=2)
        model.lora.flat_params += rng.normal(0, 0.2, size=model.lora.flat_params.shape)
    idx = rng.integers(0, config.vocab_size, size=(2, 6))
    targets = rng.integers(0, config.vocab_size, size=(2, 6))
    targets[1, 3] = -100
    return model, idx, targets


@pytest.mark.parametrize(
    "lora, variant",
    [
        (False, {}),
        (True, {}),
        (False, {"norm": "post"}),
        (False, {"norm": "none", "residual": False}),
    ],
)
def test_the_witness_graph_holds_only_primitive_ops(lora, variant):
    model, idx, targets = small_model(lora, **variant)
    loss, params, adapters = witness.witness_loss(model, idx, targets, ignore_index=-100)
    ops = graph_ops(loss)
    assert ops <= witness.PRIMITIVE_OPS, f"non-primitive ops: {sorted(ops - witness.PRIMITIVE_OPS)}"
    # the graph is the whole model: every parameter (and adapter) is a leaf of it
    loss.backward()
    assert all(t.grad is not None for t in (*params.values(), *adapters.values()))


def test_a_wrong_gelu_constant_in_the_reference_is_caught_by_the_witness(monkeypatch):
    model, idx, targets = small_model()

    def disagreement():
        with backend.use_kernels("numpy"):  # the NumPy kernels read ref's constants per call
            model.forward_backward(idx, targets)
            fused = model.flat_grads.copy()
        model.forward_backward(idx, targets, engine="autograd")
        return np.abs(fused - model.flat_grads).max() / np.abs(model.flat_grads).max()

    assert disagreement() < 1e-12
    monkeypatch.setattr("tinygradlm.ref.gelu.GELU_SCALE", 0.7978)  # √(2/π) to four digits
    assert disagreement() > 1e-7  # the engines' agreement test holds them to 1e-8


# --------------------------------------------------------------------------------------------
# each fused op against its composition from primitives (float64: values and gradients)
# --------------------------------------------------------------------------------------------


def assert_same(fused_fn, composed_fn, x, rtol=1e-12, atol=1e-14):
    """Same values, and the same gradient for a random cotangent."""
    cot = np.random.default_rng(0).normal(size=fused_fn(Tensor(x)).shape)
    grads = []
    for fn in (fused_fn, composed_fn):
        leaf = Tensor(x, requires_grad=True)
        out = fn(leaf)
        out.backward(cot)
        grads.append((out.data, leaf.grad))
    (y1, g1), (y2, g2) = grads
    np.testing.assert_allclose(y1, y2, rtol=rtol, atol=atol, err_msg="values")
    np.testing.assert_allclose(g1, g2, rtol=1e-10, atol=1e-12, err_msg="gradients")


matrices = tst.arrays(tst.shapes(min_dims=2, max_dims=3, min_side=1, max_side=6), low=-8, high=8)


@given(matrices, st.integers(0, 2**32 - 1))
def test_softmax_equals_exp_over_sum_with_masked_entries(x, seed):
    mask = np.random.default_rng(seed).random(x.shape) < 0.3
    mask[..., 0] = False  # no row entirely masked (its softmax is 0/0)
    assert_same(
        lambda t: masked_fill(t, mask, -np.inf).softmax(-1),
        lambda t: witness.softmax(masked_fill(t, mask, -np.inf), -1),
        x,
    )


@given(matrices)
def test_log_softmax_equals_its_composition(x):
    assert_same(lambda t: t.log_softmax(-1), lambda t: witness.log_softmax(t, -1), x)


@given(tst.arrays(tst.shapes(min_dims=1), low=-7.0, high=7.0))
def test_gelu_equals_its_composition_from_tanh(x):
    assert_same(lambda t: t.gelu(), witness.gelu, x)


@given(tst.normalizable_arrays(tst.shapes(min_dims=1, min_side=2)))
def test_var_equals_the_mean_of_squared_deviations(x):
    def mean_of_squares(t):
        centered = t - t.sum(axis=-1, keepdims=True) * (1.0 / t.shape[-1])
        return (centered * centered).sum(axis=-1) * (1.0 / t.shape[-1])

    assert_same(lambda t: t.var(axis=-1), mean_of_squares, x)


@given(tst.normalizable_arrays(tst.shapes(min_dims=2, min_side=2)))
def test_layer_norm_equals_its_composition(x):
    rng = np.random.default_rng(3)
    w, b = Tensor(rng.normal(size=x.shape[-1])), Tensor(rng.normal(size=x.shape[-1]))
    assert_same(lambda t: layer_norm(t, w, b, 1e-5), lambda t: witness.layer_norm(t, w, b, 1e-5), x)


@given(matrices, st.integers(0, 2**32 - 1))
def test_cross_entropy_equals_negative_log_softmax_gathered(x, seed):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, x.shape[-1], size=x.shape[:-1])
    if targets.size > 1:
        targets.flat[rng.integers(targets.size)] = -100  # one ignored position, never all
    assert_same(
        lambda t: cross_entropy(t, targets, ignore_index=-100),
        lambda t: witness.cross_entropy(t, targets, ignore_index=-100),
        x,
    )
