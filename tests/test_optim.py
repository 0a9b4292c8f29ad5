"""tinygradlm.optim: AdamW on the flat buffers (by hand, against torch.optim.AdamW, on both
backends, through a state_dict round trip), the learning-rate schedule and gradient clipping."""

import doctest
import itertools
import math
import warnings

import numpy as np
import pytest

import tinygradlm.optim as optim
from tinygradlm import backend
from tinygradlm.model import GPT, GPTConfig
from tinygradlm.optim import AdamW, clip_grad_norm, grad_norm, lr_schedule
from tinygradlm.params import ranges_of_mask, shard_ranges

BACKENDS = ["numpy", "numba"]
CONFIG = GPTConfig(vocab_size=40, block_size=8, n_layer=2, n_head=2, n_embd=8, padded_vocab_size=48)


def random_grads(n, steps, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=n).astype(np.float32) for _ in range(steps)]


def run_model_steps(kernels, steps=6, seed=0):
    """A small GPT's flat buffers after ``steps`` AdamW steps on random gradients, lr from the
    schedule: (model, optimizer)."""
    model = GPT(CONFIG, seed=seed)
    opt = AdamW.for_model(model, lr=1e-2, weight_decay=0.1)
    with backend.use_kernels(kernels):
        for step, g in enumerate(random_grads(model.flat_grads.size, steps, seed)):
            model.flat_grads[...] = g
            opt.step(lr=lr_schedule(step, max_lr=1e-2, min_lr=1e-3, warmup_steps=2, max_steps=5))
    return model, opt


# --------------------------------------------------------------------------------------------
# AdamW
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernels", BACKENDS)
def test_adamw_one_step_equals_a_hand_computation(kernels):
    # two parameters: the first is decayed (a weight), the second is not (a bias)
    params = np.array([1.0, -2.0], dtype=np.float32)
    grads = np.array([0.5, -0.25], dtype=np.float32)
    ranges = np.array([[0, 1]])  # the first entry decays
    lr, beta1, beta2, eps, wd = 0.1, 0.9, 0.95, 1e-8, 0.1
    opt = AdamW(
        params, grads, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=wd, decay_ranges=ranges
    )
    with backend.use_kernels(kernels):
        opt.step()

    # by hand, step t = 1, first parameter (p = 1, g = 0.5, decayed)
    m = (1 - beta1) * 0.5  # 0.05
    v = (1 - beta2) * 0.5**2  # 0.0125
    m_hat = m / (1 - beta1**1)  # 0.5
    v_hat = v / (1 - beta2**1)  # 0.25
    p0 = 1.0 - lr * (m_hat / (math.sqrt(v_hat) + eps) + wd * 1.0)  # 1 - 0.1·(1 + 0.1) = 0.89
    # second parameter (p = -2, g = -0.25, not decayed): the step is -lr·sign(g)
    m1 = (1 - beta1) * -0.25
    v1 = (1 - beta2) * 0.0625
    p1 = -2.0 - lr * ((m1 / (1 - beta1)) / (math.sqrt(v1 / (1 - beta2)) + eps))  # -1.9
    assert p0 == pytest.approx(0.89, abs=1e-7) and p1 == pytest.approx(-1.9, abs=1e-7)

    np.testing.assert_allclose(params, [p0, p1], rtol=1e-6)
    np.testing.assert_allclose(opt.m, [m, m1], rtol=1e-6)
    np.testing.assert_allclose(opt.v, [v, v1], rtol=1e-6)
    assert opt.step_count == 1
    assert params.dtype == opt.m.dtype == opt.v.dtype == np.float32


@pytest.mark.parametrize("kernels", BACKENDS)
def test_adamw_matches_torch_with_2d_weights_decayed_only(kernels):
    torch = pytest.importorskip("torch")
    model, opt = run_model_steps(kernels)

    # torch: the same initial tensors, 2-D weights in a decayed group, the rest with decay 0
    reference = GPT(CONFIG, seed=0)
    tensors = {n: torch.tensor(p.copy(), requires_grad=True) for n, p in reference.params.items()}
    decayed = [t for t in tensors.values() if t.ndim == 2]
    undecayed = [t for t in tensors.values() if t.ndim != 2]
    torch_opt = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": 0.1}, {"params": undecayed, "weight_decay": 0.0}],
        lr=1e-2,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    for step, g in enumerate(random_grads(reference.flat_grads.size, 6, seed=0)):
        reference.flat_grads[...] = g
        for name, t in tensors.items():
            t.grad = torch.tensor(reference.grads[name].copy())
        for group in torch_opt.param_groups:
            group["lr"] = lr_schedule(step, max_lr=1e-2, min_lr=1e-3, warmup_steps=2, max_steps=5)
        torch_opt.step()

    for name, t in tensors.items():
        np.testing.assert_allclose(
            model.params[name], t.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=name
        )
    state = torch_opt.state[tensors["h.0.attn.c_attn.weight"]]
    np.testing.assert_allclose(
        opt.state_dict()["v"][: model.params["wte.weight"].size].reshape(CONFIG.Vp, -1),
        torch_opt.state[tensors["wte.weight"]]["exp_avg_sq"].numpy(),
        rtol=1e-5,
        atol=1e-12,
    )
    assert int(state["step"]) == opt.step_count == 6


def test_adamw_numpy_and_numba_backends_agree():
    a, opt_a = run_model_steps("numpy")
    b, opt_b = run_model_steps("numba")
    np.testing.assert_allclose(a.flat_params, b.flat_params, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(opt_a.m, opt_b.m, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(opt_a.v, opt_b.v, rtol=1e-5, atol=1e-10)


@pytest.mark.parametrize("kernels", BACKENDS)
def test_adamw_on_shards_with_their_decay_ranges_equals_the_whole_update(kernels):
    # ZeRO-1: each rank updates a slice [lo, hi) of the buffers with the ranges cut to it
    model = GPT(CONFIG, seed=0)
    ranges = model.decay_ranges()
    N = model.flat_params.size
    grads = random_grads(N, 3, seed=5)
    whole = AdamW(model.flat_params.copy(), np.zeros(N, np.float32), lr=1e-2, decay_ranges=ranges)
    cuts = [0, 7, N // 3, N // 3 + 1, N - 5, N]  # odd places: inside tensors and at their ends
    shards = [
        AdamW(
            model.flat_params[lo:hi].copy(),
            np.zeros(hi - lo, np.float32),
            lr=1e-2,
            decay_ranges=shard_ranges(ranges, lo, hi),
        )
        for lo, hi in itertools.pairwise(cuts)
    ]
    with backend.use_kernels(kernels):
        for g in grads:
            whole.grads[...] = g
            whole.step()
            for shard, (lo, hi) in zip(shards, itertools.pairwise(cuts), strict=True):
                shard.grads[...] = g[lo:hi]
                shard.step()
    np.testing.assert_array_equal(np.concatenate([s.params for s in shards]), whole.params)
    assert shard_ranges(ranges, 0, N).tolist() == ranges.tolist()
    assert shard_ranges(ranges, N, N).shape == (0, 2)


def test_decay_ranges_of_a_mask_and_of_tensors_agree():
    model = GPT(CONFIG, seed=0)
    mask = model.buffer.mask(lambda name, shape: len(shape) == 2, dtype=bool)
    assert ranges_of_mask(mask).tolist() == model.decay_ranges().tolist()
    assert ranges_of_mask(np.zeros(4)).shape == (0, 2)
    assert ranges_of_mask(np.array([1, 1, 0, 1])).tolist() == [[0, 2], [3, 4]]


def test_adamw_still_takes_a_0_1_decay_mask_with_a_warning_and_the_same_update():
    model = GPT(CONFIG, seed=0)
    rng = np.random.default_rng(0)
    grads = rng.standard_normal(model.flat_params.size).astype(np.float32)
    results = []
    for kwargs in ({"decay_ranges": model.decay_ranges()}, {"decay_mask": model.decay_mask()}):
        params = model.flat_params.copy()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            opt = AdamW(params, grads, lr=1e-2, weight_decay=0.5, **kwargs)
        assert [w.category for w in caught] == [DeprecationWarning] * ("decay_mask" in kwargs)
        opt.step()
        results.append(params)
    assert results[0].tobytes() == results[1].tobytes()
    with pytest.raises(ValueError, match="only 0 and 1"), pytest.warns(DeprecationWarning):
        AdamW(model.flat_params.copy(), grads, lr=1e-2, decay_mask=np.full(grads.size, 0.5))
    with pytest.raises(TypeError, match="not both"):
        AdamW(
            grads.copy(),
            grads,
            lr=1,
            decay_mask=np.ones(grads.size),
            decay_ranges=np.zeros((0, 2), np.int64),
        )


def test_adamw_decay_ranges_none_decays_every_entry():
    params = np.ones(3, np.float32)
    opt = AdamW(params, np.zeros(3, np.float32), lr=0.5, weight_decay=0.1)
    with backend.use_kernels("numpy"):
        opt.step()
    np.testing.assert_allclose(params, 1 - 0.5 * 0.1)  # zero gradient: the decay alone


@pytest.mark.parametrize("kernels", BACKENDS)
def test_adamw_state_dict_round_trip_continues_bit_identically(kernels):
    grads = random_grads(CONFIG.Vp * 8, 6, seed=3)

    def fresh(params):
        g = np.zeros_like(params)
        ranges = np.array([[1, 5], [8, params.size // 2], [params.size // 2 + 3, params.size]])
        return AdamW(params, g, lr=3e-3, decay_ranges=ranges), g

    params = np.random.default_rng(1).normal(size=CONFIG.Vp * 8).astype(np.float32)
    opt, g = fresh(params)
    with backend.use_kernels(kernels):
        for i in range(3):
            g[...] = grads[i]
            opt.step(lr=1e-3 * (i + 1))
        saved_params = params.copy()
        saved = {k: np.copy(v) if k in ("m", "v") else v for k, v in opt.state_dict().items()}
        for i in range(3, 6):
            g[...] = grads[i]
            opt.step()

        resumed_params = saved_params.copy()
        resumed, g2 = fresh(resumed_params)
        resumed.load_state_dict(saved)
        assert resumed.lr == 3e-3 and resumed.step_count == 3
        for i in range(3, 6):
            g2[...] = grads[i]
            resumed.step()
    np.testing.assert_array_equal(resumed_params, params)
    np.testing.assert_array_equal(resumed.m, opt.m)
    np.testing.assert_array_equal(resumed.v, opt.v)
    assert resumed.step_count == opt.step_count == 6


def test_adamw_load_state_dict_names_every_difference_and_changes_nothing():
    opt = AdamW(np.zeros(4, np.float32), np.zeros(4, np.float32), lr=1e-3)
    bad = {
        "m": np.zeros(5, np.float32),
        "v": np.zeros(4, np.float64),
        "step": -1,
        "beta2": 1.5,
        "momentum": 0.9,
    }
    with pytest.raises(ValueError) as info:
        opt.load_state_dict(bad)
    message = str(info.value)
    for fragment in ("m: shape (5,), expected (4,)", "v: dtype float64", "step:", "momentum"):
        assert fragment in message
    assert opt.step_count == 0 and opt.beta2 == 0.95
    with pytest.raises(ValueError, match="beta2 must be in"):
        opt.load_state_dict({"m": opt.m.copy(), "v": opt.v.copy(), "step": 1, "beta2": 1.5})
    with pytest.raises(ValueError, match="missing: step"):
        opt.load_state_dict({"m": opt.m.copy(), "v": opt.v.copy()})
    # a one-element int64 array (how optimizer.safetensors holds it) is a valid step
    opt.load_state_dict({"m": opt.m.copy(), "v": opt.v.copy(), "step": np.array([7])})
    assert opt.step_count == 7


def test_adamw_rejects_bad_buffers_and_hyperparameters():
    p = np.zeros(4, np.float32)
    with pytest.raises(TypeError, match="grads"):
        AdamW(p, [0.0] * 4, lr=1e-3)
    with pytest.raises(ValueError, match="do not match"):
        AdamW(p, np.zeros(4, np.float64), lr=1e-3)
    with pytest.raises(ValueError, match="decay_ranges"):
        AdamW(p, np.zeros(4, np.float32), lr=1e-3, decay_ranges=np.ones(3, np.int64))
    with pytest.raises(ValueError, match="decay_ranges must be"):
        AdamW(p, np.zeros(4, np.float32), lr=1e-3, decay_ranges=np.array([[0, 2], [1, 3]]))
    with pytest.raises(ValueError, match="decay_ranges must be"):
        AdamW(p, np.zeros(4, np.float32), lr=1e-3, decay_ranges=np.array([[2, 5]]))
    with pytest.raises(TypeError, match="decay_ranges"):
        AdamW(p, np.zeros(4, np.float32), lr=1e-3, decay_ranges=np.ones((1, 2)))
    with pytest.raises(ValueError, match="beta1"):
        AdamW(p, np.zeros(4, np.float32), lr=1e-3, betas=(1.0, 0.95))


def test_optim_docstring_example_runs():
    assert doctest.testmod(optim).failed == 0


# --------------------------------------------------------------------------------------------
# the learning-rate schedule
# --------------------------------------------------------------------------------------------

SCHEDULE = {"max_lr": 6e-4, "min_lr": 6e-5, "warmup_steps": 10, "max_steps": 110}


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 6e-4 / 10),  # warmup starts at max_lr / warmup_steps, not 0
        (4, 6e-4 * 5 / 10),
        (9, 6e-4),  # warmup - 1: the end of the warmup
        (10, 6e-4),  # warmup: the cosine at 0
        (60, 6e-5 + 0.5 * (6e-4 - 6e-5)),  # halfway through the decay: cos(π/2) = 0
        (35, 6e-5 + 0.5 * (1 + math.cos(math.pi / 4)) * (6e-4 - 6e-5)),
        (110, 6e-5),  # max_steps
        (10_000, 6e-5),  # beyond
    ],
)
def test_lr_schedule_values_at_known_steps(step, expected):
    assert lr_schedule(step, **SCHEDULE) == pytest.approx(expected, rel=1e-12)


def test_lr_schedule_rises_in_warmup_and_never_rises_after():
    lrs = [lr_schedule(s, **SCHEDULE) for s in range(130)]
    assert all(a < b for a, b in itertools.pairwise(lrs[:10]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert min(lrs[10:]) == 6e-5 and max(lrs) == 6e-4


def test_lr_schedule_without_warmup_starts_at_max_lr():
    kw = {**SCHEDULE, "warmup_steps": 0}
    assert lr_schedule(0, **kw) == 6e-4
    assert lr_schedule(55, **kw) == pytest.approx(6e-5 + 0.5 * (6e-4 - 6e-5))
    assert lr_schedule(110, **kw) == 6e-5


def test_lr_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="step"):
        lr_schedule(-1, **SCHEDULE)
    with pytest.raises(ValueError, match="warmup_steps <= max_steps"):
        lr_schedule(0, **{**SCHEDULE, "warmup_steps": 200})
    with pytest.raises(ValueError, match="min_lr <= max_lr"):
        lr_schedule(0, **{**SCHEDULE, "min_lr": 1.0})


# --------------------------------------------------------------------------------------------
# clipping
# --------------------------------------------------------------------------------------------


def test_clip_grad_norm_scales_a_large_gradient_to_max_norm():
    grads = np.array([3.0, 4.0, 0.0, -12.0], dtype=np.float32)  # norm 13
    before = grads.copy()
    norm = clip_grad_norm(grads, 1.0)
    assert norm == 13.0
    assert grads.dtype == np.float32
    assert grad_norm(grads) == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(grads, before / 13, rtol=1e-6)  # the direction is kept


def test_clip_grad_norm_leaves_a_small_gradient_untouched():
    grads = np.array([0.3, -0.4], dtype=np.float32)
    before = grads.copy()
    assert clip_grad_norm(grads, 1.0) == pytest.approx(0.5, rel=1e-7)
    np.testing.assert_array_equal(grads, before)
    assert clip_grad_norm(grads, 0.0) == pytest.approx(0.5, rel=1e-7)  # 0 disables clipping
    big = np.full(3, 100.0, np.float32)
    clip_grad_norm(big, -1.0)
    np.testing.assert_array_equal(big, 100.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_clip_grad_norm_leaves_a_non_finite_gradient_untouched(bad):
    grads = np.array([1e3, bad, 2.0], dtype=np.float32)
    before = grads.copy()
    norm = clip_grad_norm(grads, 1.0)
    assert not math.isfinite(norm)
    np.testing.assert_array_equal(grads, before)


def test_grad_norm_accumulates_in_float64():
    # squares of 1e30 overflow float32; and 10^6 small entries lose digits in a float32 sum
    assert grad_norm(np.array([3e30, 4e30], np.float32)) == pytest.approx(5e30, rel=1e-6)
    grads = np.full(1_000_003, 1e-3, np.float32)
    expected = math.sqrt(math.fsum([float(np.float32(1e-3)) ** 2] * grads.size))
    assert grad_norm(grads) == pytest.approx(expected, rel=1e-12)


def test_grad_norm_is_the_same_across_chunk_boundaries(monkeypatch):
    grads = np.random.default_rng(0).normal(size=1001).astype(np.float32)
    whole = grad_norm(grads)
    monkeypatch.setattr(optim, "_NORM_CHUNK", 7)
    assert grad_norm(grads) == pytest.approx(whole, rel=1e-13)
    assert grad_norm(grads.reshape(7, 143)) == pytest.approx(whole, rel=1e-13)


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_a_measured_step_is_the_same_update_and_measures_it(kernels, monkeypatch):
    # pieces of 7 entries: ranges cut mid-piece, a gap no range measures, an empty range
    monkeypatch.setattr(optim, "MEASURE_CHUNK", 7)
    rng = np.random.default_rng(0)
    n = 50
    measure = [(30, 50), (0, 12), (12, 12), (15, 29)]
    decay = np.array([[3, 20], [33, 41]])
    plain, measured = (
        AdamW(rng.normal(size=n).astype(np.float32), np.zeros(n, np.float32), lr=1e-2,
              weight_decay=0.1, decay_ranges=decay)
        for _ in range(2)
    )  # fmt: skip
    measured.params[...] = plain.params
    with backend.use_kernels(kernels):
        for _ in range(3):
            grads = rng.normal(size=n).astype(np.float32)
            plain.grads[...] = measured.grads[...] = grads
            before = measured.params.copy()
            assert plain.step(1e-2) is None
            squares = measured.step(1e-2, measure=measure)
            for buffer in ("params", "m", "v"):
                assert np.array_equal(getattr(plain, buffer), getattr(measured, buffer)), buffer
            change = measured.params.astype(np.float64) - before
            expected = [np.sum(change[lo:hi] ** 2) for lo, hi in measure]
            np.testing.assert_allclose(squares, expected, rtol=1e-12)
    for bad in ([(0, 10), (5, 20)], [(40, 60)], [(5, 3)]):
        with pytest.raises(ValueError, match="disjoint ranges"):
            measured.step(1e-2, measure=bad)
    assert measured.step_count == plain.step_count == 3  # a refused call takes no step
