"""Every layer in tinygradlm.ref against PyTorch in float64 (a second, independent oracle),
forward values and gradients; AdamW against torch.optim.AdamW over several steps in float32.
Skipped when PyTorch is not installed."""

import layer_inputs as ri
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygradlm import ref
from tinygradlm.params import ranges_of_mask
from tinygradlm.testing import strategies as tst
from tinygradlm.testing.torch_layers import torch_layers

torch = pytest.importorskip("torch")
TORCH = torch_layers(torch)


def assert_matches_torch(layer, args):
    forward, backward = ri.PAIRS[layer]
    out, cache = forward(*args)
    dout = ri.upstream_gradient(out)
    grads = backward(dout, cache)

    leaves = [
        torch.tensor(a, requires_grad=a.dtype.kind == "f") if isinstance(a, np.ndarray) else a
        for a in args
    ]
    theirs = TORCH[layer](*leaves)
    np.testing.assert_allclose(out, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)
    theirs.backward(torch.tensor(dout))
    checked = [t for t in leaves if isinstance(t, torch.Tensor) and t.requires_grad]
    assert len(grads) == len(checked)
    for k, (grad, leaf) in enumerate(zip(grads, checked, strict=True)):
        np.testing.assert_allclose(
            grad, leaf.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=f"gradient of input {k}"
        )


@pytest.mark.parametrize("layer", ri.LAYERS)
@given(data=st.data())
def test_layer_matches_torch(layer, data):
    assert_matches_torch(layer, data.draw(ri.STRATEGIES[layer]))


@pytest.mark.parametrize("layer", ri.LAYERS)
def test_layer_matches_torch_at_gpt_like_shapes(layer):
    assert_matches_torch(layer, ri.example(layer))


# --------------------------------------------------------------------------------------------
# AdamW
# --------------------------------------------------------------------------------------------


def torch_adamw_run(params, grads_per_step, lr, betas, eps, weight_decay, decay_mask):
    """torch.optim.AdamW on the same values: decayed and undecayed entries as two groups."""
    mask = np.ones(params.shape, bool) if decay_mask is None else decay_mask.astype(bool)
    decayed = torch.tensor(params[mask], requires_grad=True)
    kept = torch.tensor(params[~mask], requires_grad=True)
    opt = torch.optim.AdamW(
        [
            {"params": [decayed], "weight_decay": weight_decay},
            {"params": [kept], "weight_decay": 0.0},
        ],
        lr=lr,
        betas=betas,
        eps=eps,
    )
    for g in grads_per_step:
        decayed.grad = torch.tensor(g[mask])
        kept.grad = torch.tensor(g[~mask])
        opt.step()
    out = np.empty_like(params)
    out[mask] = decayed.detach().numpy()
    out[~mask] = kept.detach().numpy()
    return out


@given(
    params=tst.arrays(st.integers(1, 40), dtype=np.float32),
    seed=st.integers(0, 2**32 - 1),
    lr=st.sampled_from([1e-3, 3e-4, 0.1]),
    betas=st.sampled_from([(0.9, 0.95), (0.9, 0.999), (0.5, 0.6)]),
    eps=st.sampled_from([1e-8, 1e-6]),
    weight_decay=st.sampled_from([0.0, 0.1, 0.5]),
    masked=st.booleans(),
)
def test_adamw_update_matches_torch_over_several_steps(
    params, seed, lr, betas, eps, weight_decay, masked
):
    rng = np.random.default_rng(seed)
    N, steps = params.size, 5
    grads_per_step = [rng.normal(size=N).astype(np.float32) for _ in range(steps)]
    decay_mask = rng.random(N) < 0.5 if masked else None
    expected = torch_adamw_run(params, grads_per_step, lr, betas, eps, weight_decay, decay_mask)

    ours, m, v = params.copy(), np.zeros(N, np.float32), np.zeros(N, np.float32)
    for step, g in enumerate(grads_per_step, start=1):
        ranges = None if decay_mask is None else ranges_of_mask(decay_mask)
        ref.adamw_update(ours, g, m, v, step, lr, *betas, eps, weight_decay, ranges)
    assert ours.dtype == m.dtype == v.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
