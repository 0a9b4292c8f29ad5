"""GPT-2 layers with one planted bug each, for testing ``check_layer``: each is the reference
pair in ``tinygradlm.ref`` with one change a person could make while writing a kernel."""

import math

import numpy as np

from tinygradlm import ref


def linear_backward_transposed_dweight(dout, cache):
    """dweight as doutᵀ·x, (OC, C), instead of xᵀ·dout, (C, OC)."""
    dx, _, *rest = ref.linear_backward(dout, cache)
    x, weight, _ = cache
    C, OC = weight.shape
    return (dx, dout.reshape(-1, OC).T @ x.reshape(-1, C), *rest)


def attention_forward_sees_next(qkv, n_head):
    """The causal mask shifted by one: position t also sees t + 1."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    HS = C // n_head
    q, k, v = (
        qkv[..., i * C : (i + 1) * C].reshape(B, T, n_head, HS).transpose(0, 2, 1, 3)
        for i in range(3)
    )
    preatt = q @ k.swapaxes(-1, -2) / math.sqrt(HS)
    preatt[..., np.triu(np.ones((T, T), dtype=bool), k=2)] = -np.inf  # k=1 is right
    att = np.exp(preatt - preatt.max(axis=-1, keepdims=True))
    att /= att.sum(axis=-1, keepdims=True)
    out = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
    return out, (qkv, att, n_head)


def layernorm_forward_no_eps(x, weight, bias, eps=1e-5):
    """eps left out of the square root: rstd = 1/sqrt(var)."""
    return ref.layernorm_forward(x, weight, bias, eps=0.0)


def layernorm_backward_dropped_term(dout, cache):
    """dx without the − xhat·mean(dxhat·xhat) term (the rescaling direction)."""
    _, _, rstd, weight = cache
    _, dweight, dbias = ref.layernorm_backward(dout, cache)
    dxhat = dout * weight
    dx = (dxhat - dxhat.mean(axis=-1, keepdims=True)) * rstd[..., None]
    return dx, dweight, dbias


def attention_forward_wrong_at_t1(qkv, n_head):
    """Right for T > 1; at T = 1 (a special case "att is 1, so out = v") it returns q."""
    out, cache = ref.attention_forward(qkv, n_head)
    if qkv.shape[1] == 1:
        C = qkv.shape[-1] // 3
        out = qkv[..., :C].copy()
    return out, cache


def encoder_backward_first_block_only(dout, cache):
    """dwte columns past the first 64 (one column block) left at zero."""
    dwte, dwpe = ref.encoder_backward(dout, cache)
    dwte[:, 64:] = 0
    return dwte, dwpe


def gelu_forward_fp16(x):
    """GELU computed from float16-rounded inputs and rounded to float16 again: a float32 kernel
    that keeps an intermediate in half precision."""
    out, _ = ref.gelu_forward(ref.round_to_fp16(x))
    return ref.round_to_fp16(out), (x,)


def gelu_backward_fp16(dout, cache):
    (x,) = cache
    (dx,) = ref.gelu_backward(ref.round_to_fp16(dout), (ref.round_to_fp16(x),))
    return (ref.round_to_fp16(dx),)


def gelu_forward_short_constant(x):
    """sqrt(2/π) written as 0.7978 (relative error 1e-5): the forward and backward agree with
    each other, only not with GPT-2's GELU."""
    u = 0.7978 * (x + ref.GELU_CUBIC * x * x * x)
    return 0.5 * x * (1.0 + np.tanh(u)), (x,)
