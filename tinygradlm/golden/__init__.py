"""Golden data: every GPT-2 layer's inputs, outputs and gradients, and one whole training step,
as safetensors files with a JSON index, so a kernel in any language can be checked without
Python (``tinygradlm golden --out DIR``; the workflow is in docs/kernel_checking.md).

For each layer at several shapes (GPT-like, T = 1, small primes, sizes at the 64- and 128-wide
blocks kernels tile by), in float64 and in float32, one file holds the forward's inputs, the
cotangent ``dout`` given to the backward, the expected output and every expected gradient. A
file ``train_step_<dtype>.safetensors`` holds a small GPT with GPT-2's structure (padded
vocabulary, tied LM head, two blocks): its parameters, a batch, the logits, the loss, every
parameter's gradient and the parameters after one AdamW step.

Expected values come from an oracle, the reference (``tinygradlm.ref``) in a wider type on the
same inputs: float64 for the float32 files, long double for the float64 ones (where the
platform's is wider). Each expected tensor has a tolerance, FlashAttention's rule, justified by a
measurement on the very same data: the reference's own error in the file's precision, times
``FACTOR``, plus a floor of a few units in the last place of the tensor's largest value::

    max |yours − expected| ≤ FACTOR · max |reference − oracle| + FLOOR_ULPS · eps · max |oracle|

(the floor's scale raised to the terms a tensor sums or cancels, and the oracle's own rounding
added: ``tinygradlm.testing.layer_report.compare_tensor``).

For the float64 training step, which has no wider implementation, the measured error is the
disagreement between the two independent float64 implementations of the model, the hand-derived
layers and the autograd witness (``GPT.forward_backward(engine="autograd")``).

Everything is seeded and written in a fixed format (``checkpoint.layout.write_safetensors``,
JSON with fixed key order), so one machine writes the same bytes every time.

    layers.py   the layer cases and one layer file (the tolerance of an expected tensor)
    step.py     the training-step file

The package lives at the level of ``train`` (layer 4 of docs/architecture.md): the training step
needs the model (layer 3) and the checkpoint's safetensors writer (layer 3), and only the command
line (layer 5) calls it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import backend
from ..atomic import atomic_directory
from ..checkpoint.layout import write_safetensors
from .layers import FACTOR, FLOOR_ULPS, LAYER_CASES, layer_file
from .step import training_step_file

__all__ = ["FACTOR", "FLOOR_ULPS", "INDEX_FILE", "LAYER_CASES", "read_index", "write_golden"]

INDEX_FILE = "index.json"
FORMAT = "tinygradlm-golden"
VERSION = 1
DTYPES = ("float64", "float32")


def golden_files(dtypes: tuple[str, ...] = DTYPES) -> list[dict[str, Any]]:
    """Every file of the golden set (layers, then the training steps), each ``{"name",
    "tensors", "entry"}``; computed with the NumPy reference whatever kernels are selected."""
    files = []
    with backend.use_kernels("numpy"):
        for dtype in dtypes:
            for layer, cases in LAYER_CASES.items():
                files += [layer_file(layer, case, dtype) for case in cases]
        files += [training_step_file(dtype) for dtype in dtypes]
    return files


def index(files: list[dict[str, Any]]) -> dict[str, Any]:
    """The index.json of ``files``: what each file holds and the rule its tolerances follow."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "rule": (
            "yours passes a tensor when max |yours - expected| <= its tolerance, the largest "
            "absolute difference over the tensor's elements"
        ),
        "tolerance": (
            f"tolerance = {FACTOR:g} * reference_error + {FLOOR_ULPS:g} * (eps(dtype) * scale + "
            "eps(oracle) * input_scale). reference_error is the measured max |reference in the "
            "file's dtype - oracle| on this data (the largest over it and three copies with "
            "every input moved by one ulp); the oracle is the reference in a wider type (float64 "
            "for float32 files, long double for float64 ones); scale is max|expected|, or the "
            "largest of the terms the tensor sums or cancels when larger; input_scale is the "
            "largest input times the largest cotangent entry. A kernel as accurate as a "
            "straightforward one in its precision passes: FlashAttention's rule, as "
            "docs/kernel_checking.md explains"
        ),
        "conventions": (
            "tensors in HF GPT-2's layouts (linear weights (in, out)); shapes B batch, T "
            "positions, C channels, V vocabulary, Vp padded vocabulary, NH heads, HS head size; "
            "integer tensors int64; a loss and its cotangent dout are 0-d (shape []); expected "
            "values are the oracle's, rounded to the file's dtype"
        ),
        "files": [f["entry"] for f in files],
    }


def write_golden(out: str | os.PathLike[str], dtypes: tuple[str, ...] = DTYPES) -> Path:
    """Write the golden set into the directory ``out`` (created, or refreshed in place: files
    that are not golden data stay) atomically; returns the path of its index.json."""
    files = golden_files(dtypes)
    with atomic_directory(out, replace=True, keep=lambda _name: True) as directory:
        for f in files:
            entry = f["entry"]
            metadata = {"format": FORMAT, "layer": entry["layer"], "dtype": entry["dtype"]}
            write_safetensors(directory / f["name"], f["tensors"], metadata)
        text = json.dumps(index(files), indent=2, allow_nan=False) + "\n"
        (directory / INDEX_FILE).write_text(text, encoding="utf-8")
    return Path(out) / INDEX_FILE


def read_index(directory: str | os.PathLike[str]) -> Mapping[str, Any]:
    """The index.json of a golden directory."""
    return json.loads((Path(directory) / INDEX_FILE).read_text(encoding="utf-8"))
