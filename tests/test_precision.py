"""tinygradlm.precision: the bf16/fp16 rounders (known values, bit for bit against PyTorch, the
Numba twins against the NumPy references, the properties of a rounding), the precision policy,
and the fp16 loss scaler (an injected overflow is skipped, the scale backs off and grows back,
its state survives a JSON round trip, a training loop around an overflowing gradient learns)."""

import doctest
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygradlm.precision.loss_scaling
import tinygradlm.precision.policy
import tinygradlm.ref.rounding
from tinygradlm import backend, ref
from tinygradlm.optim import AdamW, clip_grad_norm
from tinygradlm.precision import (
    LossScaler,
    Precision,
    PrecisionPolicy,
    round_to_bf16,
    round_to_fp16,
    rounder,
)
from tinygradlm.train.guard import Action, DivergenceGuard

try:
    import torch
except ImportError:  # the torch-free tests below still pin the rounding down
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch (the oracle) is not installed")

ROUNDERS = {
    "bf16": (round_to_bf16, ref.round_to_bf16),
    "fp16": (round_to_fp16, ref.round_to_fp16),
}
BACKENDS = ["numpy", "numba"]


def f32(*values):
    return np.array(values, dtype=np.float32)


def from_bits(*bits):
    return np.array(bits, dtype=np.uint32).view(np.float32)


def bits_of(x):
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)


def same_values(got, want):
    """Bit-identical, except that any NaN matches any NaN (the payload is not specified)."""
    nan = np.isnan(want)
    return bool((np.isnan(got) == nan).all() and (bits_of(got)[~nan] == bits_of(want)[~nan]).all())


def sweep_bits(stride=4099):
    """Float32 bit patterns: a stride through all 2³², and every pattern in the ranges where the
    rounding changes behaviour (fp16's subnormal boundary and overflow, bf16's overflow), both
    signs."""
    bits = np.arange(0, 2**32, stride, dtype=np.uint64).astype(np.uint32)
    dense = [
        np.arange(0x3300_0000 - 4096, 0x3300_0000 + 4096, dtype=np.uint32),  # around 2^-25
        np.arange(0x3880_0000 - 8192, 0x3880_0000 + 8192, dtype=np.uint32),  # around 2^-14
        np.arange(0x477F_0000, 0x4780_0100, dtype=np.uint32),  # 65280 … just past 65536
        np.arange(0x7F7F_0000, 0x7F80_0010, dtype=np.uint32),  # bf16's max … inf … NaNs
        np.arange(0, 4096, dtype=np.uint32),  # float32 subnormals
    ]
    bits = np.concatenate([bits, *dense])
    return np.concatenate([bits, bits | np.uint32(0x8000_0000)]).view(np.float32)


def torch_round(name, x):
    t = torch.from_numpy(np.ascontiguousarray(x))
    t = t.to(torch.bfloat16) if name == "bf16" else t.to(torch.float16)
    return t.float().numpy()


# --------------------------------------------------------------------------------------------
# known values, no oracle needed
# --------------------------------------------------------------------------------------------

BF16_CASES = [
    # (input, expected, why)
    (1 + 2**-8, 1.0, "exactly halfway, the lower neighbour is even: down"),
    (1 + 3 * 2**-8, 1 + 2**-6, "exactly halfway, the lower neighbour is odd: up to even"),
    (1 + 2**-9, 1.0, "below halfway: down"),
    (1 + 3 * 2**-9, 1 + 2**-7, "above halfway: up"),
    (-(1 + 2**-8), -1.0, "symmetric in the sign"),
    (-(1 + 3 * 2**-9), -(1 + 2**-7), "symmetric in the sign"),
    (2 - 2**-9, 2.0, "the carry runs into the exponent"),
    (0.0, 0.0, "+0"),
    (math.inf, math.inf, "+inf"),
    (-math.inf, -math.inf, "-inf"),
]
BF16_BIT_CASES = [
    (0x8000_0000, 0x8000_0000, "-0 keeps its sign"),
    (0x7F7F_0000, 0x7F7F_0000, "bf16's largest finite value is kept"),
    (0x7F7F_7FFF, 0x7F7F_0000, "just below the midpoint to inf: down to the max"),
    (0x7F7F_8000, 0x7F80_0000, "the midpoint to inf, max is odd: inf"),
    (0x7F7F_FFFF, 0x7F80_0000, "float32's max rounds to inf"),
    (0xFF7F_FFFF, 0xFF80_0000, "and its negative to -inf"),
    (0x0000_0001, 0x0000_0000, "the smallest float32 subnormal: 0"),
    (0x0000_8000, 0x0000_0000, "a subnormal tie, even neighbour 0"),
    (0x0001_8000, 0x0002_0000, "a subnormal tie, odd neighbour: up"),
    (0x0001_8001, 0x0002_0000, "a subnormal above the tie: up"),
    (0x8000_8001, 0x8001_0000, "a negative subnormal above the tie"),
]
FP16_CASES = [
    (1 + 2**-11, 1.0, "exactly halfway, the lower neighbour is even: down"),
    (1 + 3 * 2**-11, 1 + 2**-9, "exactly halfway, the lower neighbour is odd: up to even"),
    (1 + 2**-11 + 2**-20, 1 + 2**-10, "just above halfway: up"),
    (-(1 + 3 * 2**-11), -(1 + 2**-9), "symmetric in the sign"),
    (65504.0, 65504.0, "fp16's largest finite value is kept"),
    (65519.0, 65504.0, "below the midpoint to 65536: down"),
    (65520.0, math.inf, "the midpoint, 65504 is odd: up, past the max: inf"),
    (-65520.0, -math.inf, "and -inf"),
    (1e5, math.inf, "overflow"),
    (2.0**-14, 2.0**-14, "the smallest normal"),
    (2.0**-14 - 2.0**-26, 2.0**-14, "a subnormal rounding up to the smallest normal"),
    (2.0**-24, 2.0**-24, "the smallest subnormal"),
    (2.0**-25, 0.0, "half the smallest subnormal, even neighbour 0: down"),
    (2.0**-25 + 2.0**-40, 2.0**-24, "just above it: up"),
    (3 * 2.0**-25, 2.0**-23, "a subnormal tie, odd neighbour: up to even"),
    (5 * 2.0**-25, 2.0**-23, "a subnormal tie, even neighbour: down"),
    (1e-8, 0.0, "underflow"),
    (0.0, 0.0, "+0"),
    (math.inf, math.inf, "+inf"),
    (-math.inf, -math.inf, "-inf"),
]
FP16_BIT_CASES = [
    (0x8000_0000, 0x8000_0000, "-0 keeps its sign"),
    (0x8000_0001, 0x8000_0000, "a negative float32 subnormal underflows to -0"),
    (0xB300_0000, 0x8000_0000, "-2^-25 rounds to -0"),
]


@pytest.mark.parametrize("kernels", BACKENDS)
@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_rounding_gives_the_known_values(name, kernels):
    cases = BF16_CASES if name == "bf16" else FP16_CASES
    bit_cases = BF16_BIT_CASES if name == "bf16" else FP16_BIT_CASES
    fast, _ = ROUNDERS[name]
    with backend.use_kernels(kernels):
        got = fast(f32(*(c[0] for c in cases)))
        got_bits = fast(from_bits(*(c[0] for c in bit_cases)))
    for (x, want, why), value in zip(cases, got, strict=True):
        assert value == np.float32(want), f"{name}({x!r}): {value!r}, want {want!r}: {why}"
    for (x, want, why), value in zip(bit_cases, bits_of(got_bits), strict=True):
        assert value == want, f"{name}(0x{x:08x}): 0x{value:08x}, want 0x{want:08x}: {why}"


@pytest.mark.parametrize("kernels", BACKENDS)
@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_nan_stays_a_quiet_nan_whatever_its_payload(name, kernels):
    # a signalling NaN with only low payload bits: naive bit rounding would make it inf, and
    # 0xFFFFFFFF would carry into the sign
    nans = from_bits(0x7F80_0001, 0x7FC0_0000, 0xFFFF_FFFF, 0x7F80_8000, 0xFF80_0001)
    fast, _ = ROUNDERS[name]
    with backend.use_kernels(kernels):
        got = fast(nans)
    assert np.isnan(got).all()
    assert (bits_of(got) & 0x0040_0000).all(), "every NaN is quiet"
    assert (np.signbit(got) == np.signbit(nans)).all(), "the sign is kept"


def test_the_numba_twins_equal_the_numpy_references_bit_for_bit():
    x = sweep_bits()
    for name, (fast, reference) in ROUNDERS.items():
        with backend.use_kernels("numba"):
            got = fast(x)
        want = reference(x)
        assert (bits_of(got) == bits_of(want)).all(), name  # NaN payloads included


# --------------------------------------------------------------------------------------------
# against PyTorch
# --------------------------------------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_rounding_matches_torch_on_a_sweep_of_bit_patterns(name):
    x = sweep_bits()
    want = torch_round(name, x)
    for kernels in BACKENDS:
        with backend.use_kernels(kernels):
            assert same_values(ROUNDERS[name][0](x), want), kernels


def _tie_bits(draw, name):
    """A float32 bit pattern that is exactly halfway between two neighbours of the format, or
    one unit of the last place beside such a tie."""
    dropped = 16 if name == "bf16" else 13
    high = draw(st.integers(0, 2 ** (32 - dropped) - 1)) << dropped
    return (high | (1 << (dropped - 1))) + draw(st.sampled_from([-1, 0, 0, 1]))


@st.composite
def float32_arrays(draw, name):
    """Float32 arrays mixing any floats (subnormals, ±0, ±inf, NaN included), exact ties and
    their neighbours, and values at the format's overflow threshold."""
    anything = st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True)
    threshold = 65520.0 if name == "fp16" else float(from_bits(0x7F7F_8000)[0])
    edges = st.sampled_from([threshold, np.nextafter(np.float32(threshold), 0), 0.0, -0.0])
    n = draw(st.integers(1, 40))
    values = []
    for _ in range(n):
        kind = draw(st.integers(0, 2))
        if kind == 0:
            values.append(np.float32(draw(anything)))
        elif kind == 1:
            bits = _tie_bits(draw, name) % 2**32
            values.append(from_bits(bits)[0])
        else:
            sign = draw(st.sampled_from([1.0, -1.0]))
            values.append(np.float32(sign * draw(edges)))
    return np.array(values, dtype=np.float32)


@needs_torch
@pytest.mark.parametrize("kernels", BACKENDS)
@pytest.mark.parametrize("name", ["bf16", "fp16"])
@given(data=st.data())
def test_rounding_matches_torch_on_drawn_arrays(name, kernels, data):
    x = data.draw(float32_arrays(name))
    with backend.use_kernels(kernels):
        got = ROUNDERS[name][0](x)
    assert same_values(got, torch_round(name, x)), x


@needs_torch
def test_an_emulated_bf16_matmul_is_within_one_ulp_of_torchs():
    # what the policy does around a matmul (round the operands, accumulate in float32, round
    # the output) against PyTorch's bf16 matmul, which accumulates in float32 in some order:
    # the two may differ by one bf16 step where the sum lands near a tie
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 96)).astype(np.float32)
    b = rng.standard_normal((96, 48)).astype(np.float32)
    policy = PrecisionPolicy("bf16")
    ours = policy.activation(policy.matmul_input(a) @ policy.matmul_input(b))
    theirs = (torch.from_numpy(a).bfloat16() @ torch.from_numpy(b).bfloat16()).float().numpy()
    step = 2.0 ** (np.floor(np.log2(np.abs(theirs) + 1e-30)) - 7)  # one bf16 ulp
    assert (np.abs(ours - theirs) <= step).all()
    assert np.mean(ours == theirs) > 0.9


# --------------------------------------------------------------------------------------------
# properties of a rounding
# --------------------------------------------------------------------------------------------

finite_arrays = st.lists(
    st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=True),
    min_size=1,
    max_size=50,
).map(lambda v: np.array(v, dtype=np.float32))


@pytest.mark.parametrize("kernels", BACKENDS)
@pytest.mark.parametrize("name", ["bf16", "fp16"])
@given(x=finite_arrays)
def test_rounding_is_idempotent_monotone_odd_and_representable(name, kernels, x):
    fast, _ = ROUNDERS[name]
    with backend.use_kernels(kernels):
        r = fast(x)
        assert same_values(fast(r), r), "round(round(x)) == round(x)"
        assert same_values(fast(-x), -r), "round(-x) == -round(x)"
        ordered = r[np.argsort(x, kind="stable")]
        assert (ordered[1:] >= ordered[:-1]).all(), "x <= y implies round(x) <= round(y)"
    if name == "bf16":
        assert (bits_of(r) & 0xFFFF == 0).all(), "a bf16 value has its low 16 bits zero"
    else:
        finite = np.isfinite(r)
        assert same_values(r[finite].astype(np.float16).astype(np.float32), r[finite])


@pytest.mark.parametrize("name", ["bf16", "fp16"])
@given(x=finite_arrays)
def test_the_relative_error_is_at_most_the_unit_roundoff_in_the_normal_range(name, x):
    lo, hi = (2.0**-126, 3.38e38) if name == "bf16" else (2.0**-14, 65504.0)
    x = x[(np.abs(x) >= lo) & (np.abs(x) <= hi)]
    r = ROUNDERS[name][0](x).astype(np.float64)
    error = np.abs(r - x) / np.abs(x.astype(np.float64))
    assert (error <= Precision(name).unit_roundoff).all()


@pytest.mark.parametrize("kernels", BACKENDS)
@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_out_in_place_and_strided_arrays_give_the_same_values(name, kernels):
    fast, reference = ROUNDERS[name]
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((6, 10)) * 1e3).astype(np.float32)
    want = reference(x)
    with backend.use_kernels(kernels):
        out = np.empty_like(x)
        assert fast(x, out) is out and same_values(out, want)
        assert same_values(fast(x.T), want.T), "a transposed (strided) view"
        strided_out = np.empty((10, 6), np.float32).T
        assert fast(x, strided_out) is strided_out and same_values(strided_out, want)
        y = x.copy()
        assert fast(y, y) is y and same_values(y, want), "in place"
        big = sweep_bits(stride=1 << 20)  # in place on a long array: the vectorized loop
        want_big = reference(big)
        assert fast(big, big) is big and (bits_of(big) == bits_of(want_big)).all()
        assert fast(np.array(1 + 2**-12, dtype=np.float32)) == 1.0, "a 0-d array"
        assert fast(np.empty(0, np.float32)).shape == (0,)


@pytest.mark.parametrize("fn", [round_to_bf16, round_to_fp16, ref.round_to_bf16])
def test_rounders_reject_wrong_inputs_by_name(fn):
    with pytest.raises(TypeError, match=r"x has dtype float64; expected float32"):
        fn(np.zeros(3))
    with pytest.raises(TypeError, match="must be a NumPy array"):
        fn([1.0, 2.0])
    with pytest.raises(ValueError, match=r"out must be a float32 array of x's shape \(3,\)"):
        fn(np.zeros(3, np.float32), np.zeros(4, np.float32))


def test_rounder_and_precision_names():
    assert rounder("fp32") is None
    assert rounder("bf16") is round_to_bf16
    assert rounder(Precision.FP16) is round_to_fp16
    assert Precision.parse("bf16") is Precision.BF16 and str(Precision.BF16) == "bf16"
    with pytest.raises(ValueError, match=r"unknown precision 'fp8': choose one of 'fp32', 'bf16'"):
        rounder("fp8")


def test_the_module_examples_run():
    for module in (
        tinygradlm.precision.policy,
        tinygradlm.precision.loss_scaling,
        tinygradlm.ref.rounding,
    ):
        assert doctest.testmod(module).failed == 0, module.__name__


# --------------------------------------------------------------------------------------------
# the policy
# --------------------------------------------------------------------------------------------


def test_the_fp32_policy_touches_nothing_and_copies_nothing():
    policy = PrecisionPolicy("fp32")
    x = f32(1 + 2**-12, 3.0)
    before = x.copy()
    assert not policy.enabled and not policy.fp16_loss_scaling
    for result in (
        policy.matmul_input(x),
        policy.matmul_input(x, out=np.empty_like(x)),
        policy.activation(x),
        policy.gradient(x),
        policy.compute_params(x, out=np.empty_like(x)),
    ):
        assert result is x
    assert same_values(x, before)
    assert policy.loss_scaler().scale == 1.0 and not policy.loss_scaler().enabled


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_a_low_precision_policy_rounds_copies_and_in_place(name):
    policy = PrecisionPolicy(name)
    x = np.random.default_rng(2).standard_normal(100).astype(np.float32)
    want = ROUNDERS[name][1](x)
    assert policy.enabled and policy.fp16_loss_scaling == (name == "fp16")
    assert policy.loss_scaler().enabled == (name == "fp16")

    copy = policy.matmul_input(x)
    assert copy is not x and same_values(copy, want) and not same_values(x, want), "a copy"
    out = np.empty_like(x)
    assert policy.compute_params(x, out=out) is out and same_values(out, want)
    for method in (policy.activation, policy.gradient):
        y = x.copy()
        assert method(y) is y and same_values(y, want), "in place"
    y = x.copy()
    assert policy.matmul_input(y, out=y) is y and same_values(y, want)
    assert repr(policy) == f"PrecisionPolicy({name!r})"


# --------------------------------------------------------------------------------------------
# the loss scaler
# --------------------------------------------------------------------------------------------


def test_an_injected_overflow_is_detected_and_the_scale_backs_off():
    scaler = LossScaler(init_scale=2.0**16, growth_interval=3)
    grads = np.full(200_000, 2.0**16, dtype=np.float32)  # several chunks
    grads[150_000] = np.inf  # the overflow, in a late chunk
    assert scaler.unscale_and_check(grads) is False
    assert grads[0] == 1.0 and grads[-1] == 1.0, "the whole buffer is unscaled all the same"
    assert not scaler.is_overflow(math.nan, False), "a non-finite loss is a divergence"
    assert scaler.is_overflow(2.5, False)
    scaler.update(False)
    assert scaler.scale == 2.0**15
    assert scaler.overflow_steps == 1 and scaler.growth_tracker == 0


@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_nan_and_negative_inf_are_overflows_too(bad):
    grads = np.ones((3, 5), np.float32)
    grads[2, 4] = bad
    assert LossScaler().unscale_and_check(grads) is False


def test_large_finite_gradients_are_not_a_false_alarm():
    # their float32 sum overflows to inf: a check on grads.sum() would skip this good step
    grads = np.full(10, 3e38, dtype=np.float32)
    with np.errstate(over="ignore"):
        assert not np.isfinite(grads.sum())
    scaler = LossScaler(init_scale=1.0, min_scale=1.0)
    assert scaler.unscale_and_check(grads) is True


def test_unscaling_by_a_power_of_two_is_exact():
    rng = np.random.default_rng(3)
    true = rng.standard_normal(1000).astype(np.float32)
    scaler = LossScaler(init_scale=2.0**12)
    grads = true * np.float32(scaler.scale)
    assert scaler.unscale_and_check(grads) is True
    assert (grads == true).all()
    strided = (true * np.float32(scaler.scale)).reshape(40, 25).T  # not C-contiguous
    assert scaler.unscale_and_check(strided) is True and (strided.T.reshape(-1) == true).all()


def test_the_scale_grows_after_growth_interval_finite_steps_and_an_overflow_resets_the_count():
    scaler = LossScaler(init_scale=8.0, growth_interval=3)
    scales = []
    for found_finite in [True, True, False, True, True, True, True, True, True, True]:
        scaler.update(found_finite)
        scales.append(scaler.scale)
    #      T  T  F(back off, count 0)  T  T  T(grow)  T  T  T(grow)  T
    assert scales == [8, 8, 4, 4, 4, 8, 8, 8, 16, 16]
    assert scaler.overflow_steps == 1 and scaler.growth_tracker == 1


def test_the_scale_stays_between_min_scale_and_float32_max():
    scaler = LossScaler(init_scale=4.0, min_scale=2.0)
    for _ in range(3):
        scaler.update(False)
    assert scaler.scale == 2.0
    assert not scaler.is_overflow(1.0, False), "at the floor an overflow is a divergence"
    big = LossScaler(init_scale=2.0**127, growth_interval=1)
    big.update(True)
    assert big.scale == 2.0**127, "2^128 is not a float32: the scale does not grow"


def test_a_disabled_scaler_scales_nothing_and_still_reports_finiteness():
    scaler = LossScaler(enabled=False, init_scale=1024.0)
    grads = f32(3.0, 4.0)
    assert scaler.scale == 1.0
    assert scaler.unscale_and_check(grads) is True and (grads == f32(3.0, 4.0)).all()
    assert scaler.unscale_and_check(f32(1.0, np.inf)) is False
    assert not scaler.is_overflow(1.0, False), "bf16/fp32 overflows go to the guard"
    scaler.update(False)
    assert scaler.scale == 1.0 and scaler.overflow_steps == 0


def test_the_state_round_trips_through_json_and_the_run_continues_identically():
    flags = [True, False, True, True, True, False] + [True] * 7
    a = LossScaler(init_scale=1024.0, growth_interval=4, backoff_factor=0.25, min_scale=8.0)
    for found_finite in flags[:6]:
        a.update(found_finite)
    b = LossScaler()  # other hyperparameters: the state brings them
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.state_dict() == a.state_dict()
    for found_finite in flags[6:]:
        a.update(found_finite)
        b.update(found_finite)
        assert (a.scale, a.growth_tracker) == (b.scale, b.growth_tracker)
    assert a.state_dict() == b.state_dict()


def test_load_state_dict_reports_every_problem_and_changes_nothing():
    scaler = LossScaler(init_scale=256.0)
    before = scaler.state_dict()
    bad = {"scale": -1.0, "growth_tracker": 1.5, "backoff_factor": 2.0, "colour": "red"}
    with pytest.raises(ValueError) as info:
        scaler.load_state_dict(bad)
    message = str(info.value)
    for expected in (
        "missing: overflow_steps",
        "unexpected: colour",
        "growth_tracker: expected an integer >= 0, got 1.5",
        "scale: must be finite and > 0, got -1.0",
    ):
        assert expected in message
    assert scaler.state_dict() == before
    with pytest.raises(ValueError, match=r"backoff_factor must be in \(0, 1\), got 2.0"):
        scaler.load_state_dict({**before, "backoff_factor": 2.0})
    assert scaler.state_dict() == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"init_scale": 0.0}, "init_scale must be finite and > 0"),
        ({"init_scale": math.inf}, "init_scale must be finite and > 0"),
        ({"growth_factor": 1.0}, "growth_factor must be > 1"),
        ({"backoff_factor": 1.0}, r"backoff_factor must be in \(0, 1\)"),
        ({"growth_interval": 0}, "growth_interval must be an integer >= 1"),
        ({"growth_interval": 2.5}, "growth_interval must be an integer >= 1"),
        ({"min_scale": 2.0**17}, "min_scale .* exceeds init_scale"),
        ({"enabled": "yes"}, "enabled must be True or False"),
    ],
)
def test_the_constructor_rejects_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LossScaler(**kwargs)


def test_unscale_and_check_rejects_integer_gradients():
    with pytest.raises(TypeError, match="grads must be a float array, got ndarray int64"):
        LossScaler().unscale_and_check(np.zeros(3, np.int64))


# --------------------------------------------------------------------------------------------
# a training loop with the scaler, as the trainer will run it
# --------------------------------------------------------------------------------------------


class Quadratic:
    """loss(w) = ½ Σ c·(w − w*)² with an fp16 backward: the gradient c·(w − w*) of the scaled
    loss is held in fp16 (rounded), as a 16-bit GPU would hand it over. The steep coordinates'
    gradients (c = 100) overflow fp16 at the default scale 2^16; the flat one's (c = 1e-9)
    underflow to 0 without scaling."""

    def __init__(self):
        self.c = f32(100.0, 100.0, 1.0, 1e-9)
        self.target = f32(0.5, -0.25, 1.0, -1.0)

    def loss(self, w):
        return float(0.5 * np.sum(self.c.astype(np.float64) * (w - self.target) ** 2))

    def backward(self, w, scale, grads):
        grads[...] = round_to_fp16(np.float32(scale) * self.c * (w - self.target))


def train_with_scaler(steps, scaler, inject_overflow_at=(), guard=None, move_target_at=None):
    """The trainer's step rule (docs/precision.md, "Integration") on :class:`Quadratic`:
    returns (w, the problem, per-step records). At step ``move_target_at`` the steep
    coordinates' targets move by 1: a gradient spike."""
    problem = Quadratic()
    w = np.zeros(4, np.float32)
    grads = np.zeros_like(w)
    opt = AdamW(w, grads, lr=0.05, weight_decay=0.0)
    guard = guard or DivergenceGuard(3)
    records = []
    for step in range(steps):
        if step == move_target_at:
            problem.target[:2] += 1
        scale = scaler.scale
        loss = problem.loss(w)
        problem.backward(w, scale, grads)
        if step in inject_overflow_at:
            grads[1] = np.inf
        found_finite = scaler.unscale_and_check(grads)
        before = w.copy()
        if scaler.is_overflow(loss, found_finite):
            scaler.update(False)  # skipped; the divergence guard never hears of it
            action = "overflow"
        else:
            norm = clip_grad_norm(grads, 0.0)
            action = guard.check(loss, norm)
            if action == Action.OK:
                opt.step()
            if math.isfinite(loss):
                scaler.update(found_finite)
        records.append({"scale": scale, "action": action, "moved": not (w == before).all()})
    return w, problem, records


def test_the_fp16_loop_skips_overflows_backs_off_grows_and_learns():
    guard = DivergenceGuard(3)
    scaler = LossScaler(growth_interval=50)
    w, problem, records = train_with_scaler(600, scaler, guard=guard, move_target_at=300)
    overflows = [step for step, r in enumerate(records) if r["action"] == "overflow"]
    # the first gradients are 100·0.5 = 50: scaled by 2^16 they overflow fp16 (65504) until
    # the scale is down to 2^10 (50·2^10 = 51200)
    assert [r["scale"] for r in records[:7]] == [2.0**k for k in range(16, 9, -1)]
    assert overflows[:6] == list(range(6))
    # then it grows by 2 every 50 clean steps, until the spike at step 300 (gradients of
    # 100·1) overflows it again, and it backs off to 2^9 (100·2^9 = 51200)
    assert records[299]["scale"] == 2.0**15
    assert overflows[6:] == [300, 301, 302, 303, 304, 305]
    assert records[306]["scale"] == 2.0**9
    assert not any(records[step]["moved"] for step in overflows), "skipped: weights untouched"
    assert guard.skipped_steps == 0, "overflows are not divergence"
    assert scaler.overflow_steps == 12
    # it learned, the flat coordinate included: its gradient (about 1e-9) is below fp16's
    # smallest subnormal (6e-8) and survives only because it is scaled
    assert np.allclose(w[:3], problem.target[:3], atol=0.02)
    assert w[3] < -0.5


def test_without_scaling_the_flat_coordinates_gradient_underflows_and_it_never_moves():
    w, _, records = train_with_scaler(100, LossScaler(enabled=False))
    assert w[3] == 0.0
    assert all(r["action"] == Action.OK for r in records)


def test_an_injected_overflow_mid_run_is_skipped_without_touching_the_guard():
    guard = DivergenceGuard(1)  # would roll back on the first non-finite step it sees
    scaler = LossScaler(init_scale=2.0**8, growth_interval=1000)
    _, _, records = train_with_scaler(30, scaler, inject_overflow_at={10, 11}, guard=guard)
    assert [r["action"] for r in records[9:13]] == [Action.OK, "overflow", "overflow", Action.OK]
    assert [r["scale"] for r in records[9:13]] == [2.0**8, 2.0**8, 2.0**7, 2.0**6]
    assert not records[10]["moved"] and not records[11]["moved"] and records[12]["moved"]
    assert guard.skipped_steps == 0 and guard.rollbacks == 0
    assert scaler.overflow_steps == 2


def test_an_overflow_at_the_minimum_scale_goes_to_the_guard():
    guard = DivergenceGuard(5)
    scaler = LossScaler(init_scale=2.0, min_scale=2.0)
    _, _, records = train_with_scaler(5, scaler, inject_overflow_at={2}, guard=guard)
    assert records[2]["action"] == Action.SKIP and guard.skipped_steps == 1
    assert scaler.scale == 2.0


# --------------------------------------------------------------------------------------------
# the model at low precision (docs/precision.md, "Integration")
# --------------------------------------------------------------------------------------------


def _model_and_batch(precision_name, seed=1):
    from tinygradlm.model import GPT, GPTConfig

    config = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 64, (4, 16)), rng.integers(0, 64, (4, 16))
    return GPT(config, seed=seed, precision=precision_name), idx, targets


def test_fp32_precision_gives_the_same_bits_as_before():
    from tinygradlm.model import GPT

    model, idx, targets = _model_and_batch("fp32")
    plain = GPT(model.config, seed=1)
    assert model.forward_backward(idx, targets)[0] == plain.forward_backward(idx, targets)[0]
    assert (model.flat_grads == plain.flat_grads).all()


@pytest.mark.parametrize(("name", "tolerance"), [("bf16", 2e-2), ("fp16", 5e-3)])
def test_low_precision_gradients_are_close_to_fp32s(name, tolerance):
    reference, idx, targets = _model_and_batch("fp32")
    loss32, _ = reference.forward_backward(idx, targets)
    model, _, _ = _model_and_batch(name)
    scale = 1024.0
    loss, _ = model.forward_backward(idx, targets, loss_scale=scale)
    grads = model.flat_grads / scale
    g32 = reference.flat_grads
    assert loss == pytest.approx(loss32, abs=1e-2)
    assert np.linalg.norm(grads - g32) <= tolerance * np.linalg.norm(g32)
    assert (model.flat_params == reference.flat_params).all(), "the masters are not rounded"


def test_fp16_gradients_overflow_at_a_huge_scale_while_the_loss_stays_finite():
    model, idx, targets = _model_and_batch("fp16")
    scaler = LossScaler(init_scale=2.0**24)
    with np.errstate(over="ignore", invalid="ignore"):
        loss, _ = model.forward_backward(idx, targets, loss_scale=scaler.scale)
    found_finite = scaler.unscale_and_check(model.flat_grads)
    assert math.isfinite(loss) and not found_finite
    assert scaler.is_overflow(loss, found_finite)
