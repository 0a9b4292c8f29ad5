"""Check the C layer norm (layernorm.c, built as a shared library) against tinygradlm's golden
files, with NumPy and the standard library only: no tinygradlm, no safetensors package.

    python check_layernorm.py GOLDEN_DIR ./layernorm.so

For every float32 layer-norm case in GOLDEN_DIR/index.json: read its inputs, run the C forward
and backward through ctypes with the stored cotangent ``dout``, and compare the output and the
three gradients with the expected tensors under the index's tolerances (the largest absolute
difference over a tensor must be at most its tolerance). Prints one line per case and a summary;
exits with status 1 if any case fails.
"""

import ctypes
import json
import sys
from pathlib import Path

import numpy as np

# safetensors' dtype names (the ones golden files use)
DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64}


def read_safetensors(path):
    """Every tensor of a safetensors file: an 8-byte little-endian header length, a JSON header
    (name -> dtype, shape, [begin, end) byte offsets into the data), then the data."""
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = np.dtype(DTYPES[info["dtype"]]).newbyteorder("<")
        tensors[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(info["shape"])
    return tensors


def load_kernel(library):
    lib = ctypes.CDLL(str(Path(library).resolve()))
    f32 = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
    lib.layernorm_forward.argtypes = [f32] * 6 + [ctypes.c_int, ctypes.c_int, ctypes.c_float]
    lib.layernorm_backward.argtypes = [f32] * 8 + [ctypes.c_int, ctypes.c_int]
    return lib


def run_case(lib, t, eps):
    """The C kernel on one case's tensors: out, dx, dweight, dbias."""
    x = np.ascontiguousarray(t["x"])
    C = x.shape[-1]
    N = x.size // C
    out, dx = np.empty_like(x), np.empty_like(x)
    mean, rstd = np.empty(N, np.float32), np.empty(N, np.float32)
    dweight, dbias = np.empty(C, np.float32), np.empty(C, np.float32)
    weight, bias = np.ascontiguousarray(t["weight"]), np.ascontiguousarray(t["bias"])
    lib.layernorm_forward(out, mean, rstd, x, weight, bias, N, C, eps)
    dout = np.ascontiguousarray(t["dout"])
    lib.layernorm_backward(dx, dweight, dbias, dout, x, weight, mean, rstd, N, C)
    return {"out": out, "dx": dx, "dweight": dweight, "dbias": dbias}


def main(golden_dir, library):
    golden = Path(golden_dir)
    index = json.loads((golden / "index.json").read_text(encoding="utf-8"))
    lib = load_kernel(library)
    passed = failed = 0
    for entry in index["files"]:
        if entry["layer"] != "layernorm" or entry["dtype"] != "float32":
            continue
        tensors = read_safetensors(golden / entry["file"])
        yours = run_case(lib, tensors, entry["arguments"]["eps"])
        problems, worst = [], 0.0
        for name, spec in entry["outputs"].items():
            diff = np.max(np.abs(yours[name].astype(np.float64) - tensors[name]), initial=0.0)
            if not diff <= spec["tolerance"]:  # a NaN fails too
                allowed = spec["tolerance"]
                problems.append(f"{name}: max |diff| {diff:.3g} > tolerance {allowed:.3g}")
            elif spec["tolerance"] > 0:
                worst = max(worst, diff / spec["tolerance"])
        verdict = "FAIL" if problems else f"ok   (largest diff/tolerance {worst:.2f})"
        print(f"{entry['file']}: {verdict}", *problems, sep="\n    ")
        passed, failed = passed + (not problems), failed + bool(problems)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
