"""adamw_update, both implementations, against the formula written out in float64 NumPy, over
several steps, with and without a decay mask (and against torch.optim.AdamW in
test_kernels_adamw_torch.py)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from layer_inputs import IMPLEMENTATIONS

from tinygradlm import backend
from tinygradlm.params import ranges_of_mask
from tinygradlm.testing import strategies as tst

STEPS = 5


@pytest.fixture(params=IMPLEMENTATIONS)
def layers(request):
    return backend.layers(request.param)


def adamw_formula(params, grads_per_step, lr, betas, eps, weight_decay, decay_mask):
    """The update as written in the spec, in float64, one line per symbol."""
    beta1, beta2 = betas
    p = params.astype(np.float64)
    m, v = np.zeros_like(p), np.zeros_like(p)
    decay = weight_decay * (np.ones_like(p) if decay_mask is None else decay_mask.astype(float))
    for step, g in enumerate(grads_per_step, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**step)
        v_hat = v / (1 - beta2**step)
        p = p - lr * (m_hat / (np.sqrt(v_hat) + eps) + decay * p)
    return p, m, v


def run(layers, params, grads_per_step, lr, betas, eps, weight_decay, decay_mask):
    p, m, v = params.copy(), np.zeros_like(params), np.zeros_like(params)
    for step, g in enumerate(grads_per_step, start=1):
        ranges = None if decay_mask is None else ranges_of_mask(decay_mask)
        layers.adamw_update(p, g, m, v, step, lr, *betas, eps, weight_decay, ranges)
    return p, m, v


hyperparameters = {
    "params": tst.arrays(st.integers(1, 64), dtype=np.float32),
    "seed": st.integers(0, 2**32 - 1),
    "lr": st.sampled_from([1e-3, 3e-4, 0.1]),
    "betas": st.sampled_from([(0.9, 0.95), (0.9, 0.999), (0.5, 0.6)]),
    "eps": st.sampled_from([1e-8, 1e-6]),
    "weight_decay": st.sampled_from([0.0, 0.1, 0.5]),
    "mask_kind": st.sampled_from([None, "bool", "float"]),
}


def draw_run(params, seed, mask_kind):
    rng = np.random.default_rng(seed)
    grads = [rng.normal(size=params.size).astype(np.float32) for _ in range(STEPS)]
    mask = None
    if mask_kind is not None:  # decay per tensor: a few runs of decayed entries
        mask = np.zeros(params.size, bool)
        for start, end in np.sort(rng.integers(0, params.size + 1, size=6)).reshape(3, 2):
            mask[start:end] = True
    if mask_kind == "float":
        mask = mask.astype(np.float32)
    return grads, mask


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@given(**hyperparameters)
def test_adamw_update_matches_the_formula_over_several_steps(
    implementation, params, seed, lr, betas, eps, weight_decay, mask_kind
):
    grads, mask = draw_run(params, seed, mask_kind)
    ours = run(backend.layers(implementation), params, grads, lr, betas, eps, weight_decay, mask)
    expected = adamw_formula(params, grads, lr, betas, eps, weight_decay, mask)
    for name, a, b in zip(("params", "m", "v"), ours, expected, strict=True):
        assert a.dtype == np.float32, name
        # float32 arithmetic against float64: a few ulps per step
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)


def test_adamw_kernel_and_ref_agree_on_a_model_sized_buffer():
    # 100,003 entries: several chunks of the parallel loop and a ragged end
    rng = np.random.default_rng(0)
    params = rng.normal(size=100_003).astype(np.float32)
    grads, mask = draw_run(params, 1, "bool")
    results = [
        run(backend.layers(name), params, grads, 1e-2, (0.9, 0.95), 1e-8, 0.1, mask)
        for name in IMPLEMENTATIONS
    ]
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_adamw_update_works_in_place_on_views_of_a_flat_buffer(layers):
    # the model's flat buffer: each update sees a slice of it, and only that slice changes
    rng = np.random.default_rng(0)
    flat = rng.normal(size=30).astype(np.float32)
    before = flat.copy()
    p, g = flat[10:20], rng.normal(size=10).astype(np.float32)
    m, v = np.zeros(10, np.float32), np.zeros(10, np.float32)
    layers.adamw_update(p, g, m, v, 1, 1e-2)
    assert np.all(flat[10:20] != before[10:20])
    np.testing.assert_array_equal(flat[:10], before[:10])
    np.testing.assert_array_equal(flat[20:], before[20:])
