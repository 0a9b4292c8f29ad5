"""Every layer in tinygradlm.ref against the same layer composed from the autograd engine's
primitive ops only (tinygradlm.model.witness: no fused softmax, cross-entropy, GELU or variance),
an independent derivation of every gradient: the same forward values and the same gradients, via
``.backward(dout)`` on float64 Tensors, to about 1e-10."""

import layer_inputs as ri
import numpy as np
import pytest
from hypothesis import given

from tinygradlm.autograd import Tensor
from tinygradlm.model import witness


def assert_matches_autograd(layer, args):
    forward, backward = ri.PAIRS[layer]
    out, cache = forward(*args)
    dout = ri.upstream_gradient(out)
    grads = backward(dout, cache)

    leaves = [
        Tensor(a, requires_grad=True) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
        for a in args
    ]
    composed = witness.LAYERS[layer](*leaves)
    np.testing.assert_allclose(out, composed.data, rtol=1e-10, atol=1e-12, err_msg="forward")
    composed.backward(dout)
    checked = [t for t in leaves if isinstance(t, Tensor)]
    assert len(grads) == len(checked)
    for k, (grad, leaf) in enumerate(zip(grads, checked, strict=True)):
        np.testing.assert_allclose(
            grad, leaf.grad, rtol=1e-10, atol=1e-12, err_msg=f"gradient of input {k}"
        )


@given(ri.STRATEGIES["encoder"])
def test_encoder_matches_autograd(args):
    assert_matches_autograd("encoder", args)


@given(ri.STRATEGIES["layernorm"])
def test_layernorm_matches_autograd(args):
    assert_matches_autograd("layernorm", args)


@given(ri.STRATEGIES["linear"])
def test_linear_matches_autograd(args):
    assert_matches_autograd("linear", args)


@given(ri.STRATEGIES["attention"])
def test_attention_matches_autograd(args):
    assert_matches_autograd("attention", args)


@given(ri.STRATEGIES["gelu"])
def test_gelu_matches_autograd(args):
    assert_matches_autograd("gelu", args)


@given(ri.STRATEGIES["residual"])
def test_residual_matches_autograd(args):
    assert_matches_autograd("residual", args)


@given(ri.STRATEGIES["crossentropy"])
def test_crossentropy_matches_autograd(args):
    assert_matches_autograd("crossentropy", args)


@pytest.mark.parametrize("layer", ri.LAYERS)
def test_layer_matches_autograd_at_gpt_like_shapes(layer):
    assert_matches_autograd(layer, ri.example(layer))
