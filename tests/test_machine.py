"""NumPy's OpenBLAS kernels as a run reports them (``tinygradlm.machine.blas_kernel``), and where
they came from: the CPU, or an ``OPENBLAS_CORETYPE`` in the environment."""

import json
import os
import subprocess
import sys

import pytest

from tinygradlm.machine import blas_kernel
from tinygradlm.monitor import measure_gemm_peak

if blas_kernel() is None:  # a NumPy on another BLAS (MKL, Accelerate): nothing to ask
    pytest.skip("NumPy's BLAS is not an OpenBLAS", allow_module_level=True)


def _kernel_in_child(coretype):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE",)}
    if coretype is not None:
        env["OPENBLAS_CORETYPE"] = coretype
    code = (
        "import json; from tinygradlm.machine import blas_kernel; print(json.dumps(blas_kernel()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_the_kernels_named_by_the_environment_are_reported_as_such():
    # Haswell's (AVX2) kernels are in every x86-64 OpenBLAS built with dynamic kernels, as
    # NumPy's is; a machine without AVX2 would not run them
    if os.uname().machine not in ("x86_64", "AMD64"):
        pytest.skip("kernel names differ off x86")
    assert _kernel_in_child("Haswell") == ["Haswell", "OPENBLAS_CORETYPE"]
    name, source = _kernel_in_child(None)
    assert name and source == "chosen for this CPU"


def test_the_gemm_peak_line_names_the_kernels():
    peak = measure_gemm_peak(16, 32, max_seconds=0.01)
    name, source = blas_kernel()
    assert (peak.kernel, peak.kernel_from) == (name, source)
    assert f"OpenBLAS {name} kernels ({source})" in peak.describe()
    assert peak.event_fields()["kernel"] == name
