"""NumPy forward/backward pairs, each correct and with one planted bug, for testing the checkers.

Convention (the project's hand-derived layers): ``forward(*inputs) -> (out, cache)`` and
``backward(dout, cache) -> grads``, one per input (``None`` for an integer input). Every bug here
is one a person writes: a wrong sign, a broadcast not reduced, a sum over the wrong axis, an
off-by-one in a scatter, a wrong factor on one element.
"""

import numpy as np


# out = x @ w + b: x (N, K), w (K, M), b (M,) -> out (N, M)
def linear_forward(x, w, b):
    return x @ w + b, (x, w)


def linear_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def linear_backward_wrong_sign(dout, cache):
    dx, dw, db = linear_backward(dout, cache)
    return dx, -dw, db


def linear_backward_bias_not_reduced(dout, cache):
    dx, dw, _ = linear_backward(dout, cache)
    return dx, dw, dout  # (N, M) for a (M,) bias: the broadcast over N not summed


def linear_backward_bias_keepdims(dout, cache):
    dx, dw, _ = linear_backward(dout, cache)
    return dx, dw, dout.sum(axis=0, keepdims=True)  # (1, M) for a (M,) bias


# out = x + b: x (n, n), b (n, 1) broadcast along the columns -> out (n, n)
def column_bias_forward(x, b):
    return x + b, None


def column_bias_backward(dout, cache):
    return dout, dout.sum(axis=1, keepdims=True)


def column_bias_backward_wrong_axis(dout, cache):
    return dout, dout.sum(axis=0).reshape(-1, 1)  # the right shape, summed over the wrong axis


# out = weight[idx]: idx (T,) int, weight (V, C) -> out (T, C)
def embedding_forward(idx, weight):
    return weight[idx], (idx, weight.shape)


def embedding_backward(dout, cache):
    idx, shape = cache
    dweight = np.zeros(shape)
    np.add.at(dweight, idx, dout)
    return None, dweight


def embedding_backward_off_by_one(dout, cache):
    idx, shape = cache
    dweight = np.zeros(shape)
    np.add.at(dweight, idx + 1, dout)  # scatters into the next row
    return None, dweight


# out = x², elementwise
def square_forward(x):
    return x * x, x


def square_backward(dout, x):
    return (2 * x * dout,)


def square_backward_wrong_at(flat_index, factor=1.5):
    """A square backward that is right everywhere except at one element, where it is off by
    ``factor``."""

    def backward(dout, x):
        dx = 2 * x * dout
        dx.reshape(-1)[flat_index] *= factor
        return (dx,)

    return backward


# out = relu(x); the subgradient at 0 is taken as 0
def relu_forward(x):
    return np.maximum(x, 0.0), x


def relu_backward(dout, x):
    return (dout * (x > 0),)


def relu_backward_minus_one_at_zero(dout, x):
    return (dout * np.where(x == 0, -1.0, x > 0),)  # -1 is no subgradient of relu at 0


# two outputs from two inputs: (x * y, x + y)
def product_and_sum_forward(x, y):
    return (x * y, x + y), (x, y)


def product_and_sum_backward(douts, cache):
    dprod, dsum = douts
    x, y = cache
    return dprod * y + dsum, dprod * x + dsum


def product_and_sum_backward_swapped(douts, cache):
    dprod, dsum = douts
    x, y = cache
    return dprod * x + dsum, dprod * y + dsum  # each input gets the other's factor
