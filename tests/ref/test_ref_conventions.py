"""The conventions every layer in tinygradlm.ref keeps (see the package docstring): dtypes are
preserved, ``out=`` is written and returned, backwards return new arrays and leave dout and the
cache alone, and the package imports nothing of tinygradlm."""

import ast
from pathlib import Path

import layer_inputs as ri
import numpy as np
import pytest

from tinygradlm import ref

DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layer", ri.LAYERS)
def test_forward_and_backward_keep_the_input_dtype(layer, dtype):
    forward, backward = ri.PAIRS[layer]
    args = ri.example(layer, dtype)
    out, cache = forward(*args)
    assert isinstance(out, np.ndarray)
    assert out.dtype == dtype
    grads = backward(ri.upstream_gradient(out), cache)
    assert isinstance(grads, tuple)
    inputs = ri.floating(args)
    assert len(grads) == len(inputs)
    for grad, x in zip(grads, inputs, strict=True):
        assert isinstance(grad, np.ndarray)
        assert grad.dtype == dtype
        assert grad.shape == x.shape


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_crossentropy_loss_is_a_0d_array_of_the_logits_dtype(dtype):
    loss, _ = ref.crossentropy_forward(*ri.example("crossentropy", dtype))
    assert isinstance(loss, np.ndarray)
    assert loss.shape == ()
    assert loss.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_crossentropy_backward_accepts_a_float_or_any_0d_dloss(dtype):
    _, cache = ref.crossentropy_forward(*ri.example("crossentropy", dtype))
    (expected,) = ref.crossentropy_backward(np.array(2.0, dtype=dtype), cache)
    for dloss in (2.0, np.float64(2.0), np.array(2.0), np.float32(2.0)):
        (dlogits,) = ref.crossentropy_backward(dloss, cache)
        assert dlogits.dtype == dtype
        np.testing.assert_array_equal(dlogits, expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_adamw_update_keeps_float32_even_with_numpy_float64_hyperparameters(dtype):
    rng = np.random.default_rng(0)
    params, grads = rng.normal(size=20).astype(dtype), rng.normal(size=20).astype(dtype)
    runs = []
    for lr, wd in ((1e-3, 0.1), (np.float64(1e-3), np.float64(0.1))):
        p, m, v = params.copy(), np.zeros(20, dtype), np.zeros(20, dtype)
        for step in (1, 2):
            ref.adamw_update(p, grads, m, v, step, lr, weight_decay=wd)
        assert p.dtype == m.dtype == v.dtype == dtype
        runs.append(p)
    # a np.float64 learning rate must not switch the arithmetic to float64: bit-identical
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layer", sorted(set(ri.LAYERS) - {"crossentropy"}))
def test_forward_writes_into_out_and_returns_it(layer, dtype):
    forward, _ = ri.PAIRS[layer]
    args = ri.example(layer, dtype)
    expected, _ = forward(*args)
    buffer = np.full(expected.shape, np.nan, dtype=dtype)
    out, _ = forward(*args, out=buffer)
    assert out is buffer
    np.testing.assert_array_equal(buffer, expected)


def test_linear_forward_takes_a_transposed_weight_view():
    # the tied LM head passes wte.T, a (C, Vp) view of the (Vp, C) table
    x, wte = ri.example("linear")[0], np.random.default_rng(0).normal(size=(16, 8))
    out, cache = ref.linear_forward(x, wte.T)
    np.testing.assert_allclose(out, x @ wte.T, rtol=1e-12)
    _, dweight = ref.linear_backward(np.ones_like(out), cache)
    assert dweight.shape == (8, 16)


def _arrays_in(obj):
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _arrays_in(item)


@pytest.mark.parametrize("layer", ri.LAYERS)
def test_backward_returns_new_arrays_and_leaves_dout_and_cache_alone(layer):
    forward, backward = ri.PAIRS[layer]
    args = ri.example(layer)
    out, cache = forward(*args)
    dout = ri.upstream_gradient(out)
    dout_before = dout.copy()
    cache_before = [a.copy() for a in _arrays_in(cache)]
    grads = backward(dout, cache)
    np.testing.assert_array_equal(dout, dout_before)
    for a, before in zip(_arrays_in(cache), cache_before, strict=True):
        np.testing.assert_array_equal(a, before)
    others = [dout, out, *_arrays_in(cache), *ri.floating(args)]
    for k, grad in enumerate(grads):
        # a caller accumulates into the gradients (dx += ...): they must alias nothing
        assert not any(np.shares_memory(grad, a) for a in others), f"gradient {k}"
        assert not any(np.shares_memory(grad, g) for g in grads[k + 1 :]), f"gradient {k}"


def test_package_exports_every_layer():
    expected = {f"{layer}_{kind}" for layer in ri.LAYERS for kind in ("forward", "backward")}
    expected.add("adamw_update")
    assert expected <= set(ref.__all__)
    assert all(callable(getattr(ref, name)) for name in expected)


def test_ref_imports_only_numpy_and_the_standard_library():
    # a reader can copy tinygradlm/ref/ out of the project: nothing else of tinygradlm is used
    allowed = {"__future__", "math", "typing", "numpy"}
    for path in sorted(Path(ref.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level == 1:  # a sibling module inside tinygradlm/ref
                    continue
                names = [(node.module or "").split(".")[0]]
            else:
                continue
            assert set(names) <= allowed, f"{path.name} imports {names}"
