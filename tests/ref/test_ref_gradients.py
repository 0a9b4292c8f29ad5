"""Every backward in tinygradlm.ref against float64 finite differences of its forward, over
hypothesis-drawn shapes, comparing whole Jacobians (mode="full": the shapes are small)."""

import layer_inputs as ri
from hypothesis import given

from tinygradlm import ref
from tinygradlm.testing import check_vjp


@given(ri.STRATEGIES["encoder"])
def test_encoder_backward_matches_fd(args):
    check_vjp(ref.encoder_forward, ref.encoder_backward, args, mode="full")


@given(ri.STRATEGIES["layernorm"])
def test_layernorm_backward_matches_fd(args):
    check_vjp(ref.layernorm_forward, ref.layernorm_backward, args, mode="full")


@given(ri.STRATEGIES["linear"])
def test_linear_backward_matches_fd(args):
    check_vjp(ref.linear_forward, ref.linear_backward, args, mode="full")


@given(ri.STRATEGIES["attention"])
def test_attention_backward_matches_fd(args):
    check_vjp(ref.attention_forward, ref.attention_backward, args, mode="full")


@given(ri.STRATEGIES["gelu"])
def test_gelu_backward_matches_fd(args):
    check_vjp(ref.gelu_forward, ref.gelu_backward, args, mode="full")


@given(ri.STRATEGIES["residual"])
def test_residual_backward_matches_fd(args):
    check_vjp(ref.residual_forward, ref.residual_backward, args, mode="full")


@given(ri.STRATEGIES["crossentropy"])
def test_crossentropy_backward_matches_fd(args):
    check_vjp(ref.crossentropy_forward, ref.crossentropy_backward, args, mode="full")


def test_every_backward_matches_fd_at_gpt_like_shapes():
    # one larger example per layer, with the default ignore_index, through the random-projection
    # screen and then element by element for the gradient a training step computes
    for layer in ri.LAYERS:
        forward, backward = ri.PAIRS[layer]
        args = ri.example(layer)
        check_vjp(forward, backward, args, mode="fast")
        out, _ = forward(*args)
        check_vjp(forward, backward, args, cotangent=ri.upstream_gradient(out))
