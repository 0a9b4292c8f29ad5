"""The golden files of single layers: which cases, and one file's tensors and index entry."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..testing.layer_cases import OUTPUT_NAMES, cotangent, layer_inputs
from ..testing.layers import (
    cast_args,
    input_scale,
    oracle_dtype,
    reference_errors,
    reference_pair,
    run_pair,
    term_scales,
)

FACTOR = 3.0  # the tolerances' multiple of the reference's measured error
FLOOR_ULPS = 8.0  # and their floor, in units in the last place of the tensor's largest value

# per layer: (dims, seed, scale) of each file, in the sizes of tinygradlm.testing.layer_cases
LAYER_CASES: dict[str, list[tuple[dict[str, int], int, float]]] = {
    "encoder": [
        ({"B": 2, "T": 5, "C": 8, "Vp": 11, "extra_T": 2}, 0, 1.0),
        ({"B": 1, "T": 1, "C": 3, "Vp": 2, "extra_T": 0}, 1, 1.0),
        ({"B": 3, "T": 7, "C": 65, "Vp": 13, "extra_T": 1}, 2, 1.0),
        ({"B": 2, "T": 64, "C": 129, "Vp": 31, "extra_T": 0}, 3, 1.0),
    ],
    "layernorm": [
        ({"B": 2, "T": 5, "C": 8}, 0, 1.0),
        ({"B": 1, "T": 1, "C": 3}, 1, 1.0),
        ({"B": 3, "T": 7, "C": 65}, 2, 1.0),
        ({"B": 2, "T": 13, "C": 128}, 3, 1e3),
    ],
    "linear": [
        ({"B": 2, "T": 5, "C": 8, "OC": 24, "bias": 1}, 0, 1.0),
        ({"B": 1, "T": 1, "C": 3, "OC": 2, "bias": 0}, 1, 1.0),
        ({"B": 3, "T": 7, "C": 65, "OC": 13, "bias": 1}, 2, 1.0),
        ({"B": 2, "T": 13, "C": 64, "OC": 129, "bias": 1}, 3, 1.0),
    ],
    "attention": [
        ({"B": 2, "T": 5, "NH": 2, "HS": 4}, 0, 1.0),
        ({"B": 1, "T": 1, "NH": 1, "HS": 1}, 1, 1.0),
        ({"B": 2, "T": 7, "NH": 3, "HS": 1}, 2, 1.0),
        ({"B": 1, "T": 65, "NH": 2, "HS": 5}, 3, 1.0),
        ({"B": 1, "T": 129, "NH": 1, "HS": 8}, 4, 1.0),
    ],
    "gelu": [
        ({"B": 2, "T": 5, "C": 32}, 0, 1.0),
        ({"B": 1, "T": 1, "C": 1}, 1, 1.0),
        ({"B": 3, "T": 7, "C": 65}, 2, 10.0),
    ],
    "residual": [
        ({"B": 2, "T": 5, "C": 8}, 0, 1.0),
        ({"B": 1, "T": 1, "C": 65}, 1, 1.0),
    ],
    "crossentropy": [
        ({"B": 2, "T": 5, "V": 11, "pad": 5}, 0, 1.0),
        ({"B": 1, "T": 1, "V": 1, "pad": 0}, 1, 1.0),
        ({"B": 3, "T": 7, "V": 129, "pad": 3}, 2, 100.0),
    ],
}

# each layer's forward arguments by name: arrays go into the file, the rest into the index
ARGUMENT_NAMES = {
    "encoder": ("idx", "wte", "wpe"),
    "layernorm": ("x", "weight", "bias"),
    "linear": ("x", "weight", "bias"),
    "attention": ("qkv", "n_head"),
    "gelu": ("x",),
    "residual": ("a", "b"),
    "crossentropy": ("logits", "targets", "vocab_size", "ignore_index"),
}
CALLS = {
    "encoder": "encoder_forward(idx, wte, wpe) -> out; encoder_backward(dout, cache) -> "
    "(dwte, dwpe)",
    "layernorm": "layernorm_forward(x, weight, bias, eps=1e-5) -> out; layernorm_backward(dout, "
    "cache) -> (dx, dweight, dbias)",
    "linear": "linear_forward(x, weight, bias) -> out = x @ weight + bias (weight (C, OC)); "
    "linear_backward(dout, cache) -> (dx, dweight, dbias); without bias: no dbias",
    "attention": "attention_forward(qkv, n_head) -> out (causal, qkv = [q | k | v]); "
    "attention_backward(dout, cache) -> (dqkv,)",
    "gelu": "gelu_forward(x) -> out (tanh approximation); gelu_backward(dout, cache) -> (dx,)",
    "residual": "residual_forward(a, b) -> out = a + b; residual_backward(dout, cache) -> (da, db)",
    "crossentropy": "crossentropy_forward(logits, targets, vocab_size, ignore_index) -> loss "
    "(mean over targets != ignore_index; padded columns [V, Vp) ignored); "
    "crossentropy_backward(dout, cache) -> (dlogits,), dout the 0-d cotangent of the loss",
}


def tolerance(
    expected: np.ndarray,
    measured_error: float,
    dtype: Any,
    oracle_resolution: float = 0.0,
    term_scale: float = 0.0,
) -> dict[str, float | list[int] | str]:
    """An expected tensor's entry of the index: shape, dtype, the measured error and the
    tolerance it justifies, FACTOR·error + FLOOR_ULPS·eps·max(max|expected|, ``term_scale``) +
    ``oracle_resolution``, the same rule as ``tinygradlm.testing.check_layer``
    (``tinygradlm.testing.layer_report.compare_tensor``)."""
    scale = max(float(np.max(np.abs(expected), initial=0.0)), term_scale)
    floor = FLOOR_ULPS * float(np.finfo(dtype).eps) * scale + oracle_resolution
    return {
        "shape": list(expected.shape),
        "dtype": np.dtype(dtype).name,
        "reference_error": measured_error,
        "tolerance": FACTOR * measured_error + floor,
    }


def layer_file(layer: str, case: tuple[dict[str, int], int, float], dtype: str) -> dict[str, Any]:
    """One layer case in ``dtype``: ``{"name", "tensors", "entry"}``, the file's name, its
    tensors and its entry of the index."""
    dims, seed, scale = case
    args = layer_inputs(layer, dims, seed, scale, dtype)
    reference = reference_pair(layer)
    oracle = run_pair(layer, *reference, cast_args(args, oracle_dtype(dtype)), seed, dtype)
    errors = reference_errors(layer, args, seed, np.dtype(dtype), None, oracle)
    wide_eps = float(np.finfo(oracle_dtype(dtype)).eps)
    resolution = FLOOR_ULPS * wide_eps * input_scale(args, seed, np.dtype(dtype), oracle[0])
    terms = term_scales(layer, args, cotangent(np.shape(oracle[0]), dtype, seed))
    dout = cotangent(np.shape(oracle[0]), dtype, seed)  # 0-d for the loss

    tensors: dict[str, np.ndarray] = {"dout": dout}
    arguments: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    for name, value in zip(ARGUMENT_NAMES[layer], args, strict=False):
        if isinstance(value, np.ndarray):
            tensors[name] = value
            inputs[name] = {"shape": list(value.shape), "dtype": value.dtype.name}
        else:
            arguments[name] = value
    if layer == "layernorm":
        arguments["eps"] = 1e-5
    outputs = {}
    for name, oracle_value, error in zip(OUTPUT_NAMES[layer], oracle, errors, strict=False):
        tensors[name] = np.asarray(oracle_value).astype(dtype)
        outputs[name] = tolerance(tensors[name], error, dtype, resolution, terms.get(name, 0.0))
    tag = "_".join(f"{k}{v}" for k, v in dims.items())
    name = f"{layer}_{tag}_{dtype}.safetensors"
    entry = {
        "file": name,
        "layer": layer,
        "dtype": dtype,
        "dims": dims,
        "call": CALLS[layer],
        "arguments": arguments,
        "inputs": inputs,
        "cotangent": {"dout": {"shape": list(dout.shape), "dtype": dout.dtype.name}},
        "outputs": outputs,
    }
    return {"name": name, "tensors": tensors, "entry": entry}
