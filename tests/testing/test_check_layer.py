"""check_layer: the Numba twins pass it, planted bugs fail it and shrink to a small case whose
printed reproducer runs, and its precision rule tells a float32 kernel from a float16 one."""

import textwrap

import numpy as np
import planted_layer_bugs as bugs
import pytest

from tinygradlm import kernels, ref
from tinygradlm.testing import check_layer
from tinygradlm.testing.layer_cases import LAYER_NAMES

FAST = {"max_examples": 20, "derandomize": True}


def pair(module, layer):
    if layer == "adamw":
        return module.adamw_update, None
    return getattr(module, f"{layer}_forward"), getattr(module, f"{layer}_backward")


def failure(layer, forward, backward, **settings):
    """check_layer's AssertionError message (the test fails if check_layer passes)."""
    with pytest.raises(AssertionError) as info:
        check_layer(layer, forward, backward, **{**FAST, **settings})
    return str(info.value)


def reproducer(message):
    return textwrap.dedent(message.split("Reproduce it with:")[1].split("Failing test case")[0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layer", LAYER_NAMES)
def test_numba_kernels_pass(layer, dtype):
    result = check_layer(layer, *pair(kernels, layer), dtype=dtype, **FAST)
    assert result.examples >= FAST["max_examples"]
    assert 0 < max(result.worst.values()) <= 1  # compared, and within the tolerance


# (layer, forward, backward, the tensor that must be named, text the shrunk case must contain)
PLANTED = {
    "transposed dweight": (
        "linear",
        ref.linear_forward,
        bugs.linear_backward_transposed_dweight,
        "dweight",
        "B=1, T=1, C=1, OC=2",
    ),
    "mask off by one": (
        "attention",
        bugs.attention_forward_sees_next,
        ref.attention_backward,
        "out",
        "B=1, T=2, NH=1, HS=1",
    ),
    "eps missing": (
        "layernorm",
        bugs.layernorm_forward_no_eps,
        ref.layernorm_backward,
        "out",
        "B=1, T=1, C=1",
    ),
    "layernorm term dropped": (
        "layernorm",
        ref.layernorm_forward,
        bugs.layernorm_backward_dropped_term,
        "dx",
        "B=1, T=1, C=2",
    ),
    "wrong at T = 1": (
        "attention",
        bugs.attention_forward_wrong_at_t1,
        ref.attention_backward,
        "out",
        "B=1, T=1, NH=1, HS=1",
    ),
    "wrong past C = 64": (
        "encoder",
        ref.encoder_forward,
        bugs.encoder_backward_first_block_only,
        "dwte",
        "C=65",
    ),
}


@pytest.mark.parametrize("bug", PLANTED)
def test_planted_bug_is_caught_and_shrunk_to_a_small_case(bug):
    layer, forward, backward, tensor, smallest = PLANTED[bug]
    message = failure(layer, forward, backward)
    assert f"- {tensor}:" in message
    assert smallest in message, message
    assert "seed=0, scale=1" in message  # the values shrink too


def test_the_reproducer_runs_and_shows_the_bug():
    message = failure("encoder", ref.encoder_forward, bugs.encoder_backward_first_block_only)
    namespace = {}
    exec(reproducer(message), namespace)
    dwte, _ = namespace["grads"]
    _, cache = ref.encoder_forward(*namespace["args"])
    expected, _ = ref.encoder_backward(np.ones_like(namespace["out"]), cache)
    assert dwte.shape[1] == 65 and not dwte[:, 64].any() and expected[:, 64].any()


def test_a_five_digit_constant_fails_in_float32():
    # sqrt(2/π) as 0.7978, a relative error of 1e-5: within a default rtol of 1e-3, but 30-odd
    # times the float32 reference's own error
    message = failure("gelu", bugs.gelu_forward_short_constant, ref.gelu_backward, dtype=np.float32)
    assert "- out:" in message and "float32 error" in message


def test_a_float16_intermediate_fails_the_float32_rule_and_passes_the_fp16_one():
    message = failure("gelu", bugs.gelu_forward_fp16, bugs.gelu_backward_fp16, dtype=np.float32)
    assert "- out:" in message and "- dx:" in message
    result = check_layer(
        "gelu",
        bugs.gelu_forward_fp16,
        bugs.gelu_backward_fp16,
        dtype=np.float32,
        precision="fp16",
        **FAST,
    )
    assert result.precision == "fp16"


def test_float32_inputs_must_give_float32_outputs():
    def forward(x):
        out, cache = ref.gelu_forward(x)
        return out.astype(np.float64), cache  # promoted: a silent float32 → float64 in training

    message = failure("gelu", forward, ref.gelu_backward, dtype=np.float32)
    assert "has dtype float64 for float32 inputs" in message


def test_a_backward_that_writes_into_dout_fails():
    def backward(dout, cache):
        (dx,) = ref.gelu_backward(dout, cache)
        dout *= 2
        return (dx,)

    assert "modified dout" in failure("gelu", ref.gelu_forward, backward)


def test_max_size_keeps_cases_below_it():
    # the planted C > 64 bug cannot show when no size above 64 is drawn
    result = check_layer(
        "encoder", ref.encoder_forward, bugs.encoder_backward_first_block_only, max_size=64, **FAST
    )
    assert result.examples == FAST["max_examples"]


def test_settings_reach_hypothesis():
    result = check_layer(
        "residual", ref.residual_forward, ref.residual_backward, max_examples=4, derandomize=True
    )
    assert result.examples == 4
    result = check_layer(
        "residual",
        ref.residual_forward,
        ref.residual_backward,
        derandomize=True,
        hypothesis_settings={"max_examples": 3},
    )
    assert result.examples == 3


def test_arguments_are_checked_before_any_case_runs():
    with pytest.raises(ValueError, match="unknown layer 'softmax'"):
        check_layer("softmax", ref.gelu_forward, ref.gelu_backward)
    with pytest.raises(ValueError, match="needs a backward"):
        check_layer("gelu", ref.gelu_forward)
    with pytest.raises(ValueError, match="'bf16' / 'fp16' with dtype float32"):
        check_layer("gelu", ref.gelu_forward, ref.gelu_backward, precision="bf16")
