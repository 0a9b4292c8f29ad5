"""What this process may use of the machine: the cores it may run on, and NumPy's BLAS as it
was loaded (OpenBLAS's functions found with ctypes, and which matrix-product kernels it runs).

NumPy's wheels bundle OpenBLAS (as ``scipy_openblas``); its thread count and its kernels' name
are asked through its C functions, found in the library the process has mapped. Used by the
thread settings (``tinygradlm.dist.threads``), ``prepare``'s worker count
(``tinygradlm.data.encoding``) and the GEMM peak a run logs (``tinygradlm.monitor.timing``).
"""

from __future__ import annotations

import os
from typing import Any


def available_cores() -> int:
    """The cores this process may run on: its affinity mask (what ``taskset``, ``mpiexec
    -bind-to`` or Slurm's ``--cpu-bind`` leave it), the CPU count where the OS has none."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def blas_kernel() -> tuple[str, str] | None:
    """(name, where it came from) of the matrix-product kernels NumPy's OpenBLAS runs, e.g.
    ``("SkylakeX", "chosen for this CPU")`` or ``("Haswell", "OPENBLAS_CORETYPE")``; None when
    NumPy's BLAS is not an OpenBLAS this can ask.

    OpenBLAS picks the kernels for the CPU it finds at start unless ``OPENBLAS_CORETYPE`` names
    others. Some machines set it (older OpenBLAS builds crashed or computed wrong results on newer
    processors): then a current NumPy runs older kernels — on an AVX-512 machine the AVX2
    ``Haswell`` kernels ran float32 GEMM at about half the rate (docs/performance.md).
    """
    import ctypes

    import numpy  # noqa: F401  (loads OpenBLAS)

    fn = openblas_function("get_corename")
    if fn is None:
        return None
    fn.restype = ctypes.c_char_p
    name = (fn() or b"").decode("ascii", "replace").strip()
    if not name:
        return None
    forced = os.environ.get("OPENBLAS_CORETYPE", "").strip()
    return name, "OPENBLAS_CORETYPE" if forced else "chosen for this CPU"


def openblas_function(name: str) -> Any:
    """OpenBLAS's ``openblas_<name>`` from the OpenBLAS this process has loaded (NumPy's wheels
    bundle it as ``scipy_openblas_<name>64_``), found with ctypes; None when there is none (yet:
    only what is found is remembered)."""
    if name not in _OPENBLAS_FUNCTIONS:
        fn = _find_openblas_function(name)
        if fn is None:
            return None
        _OPENBLAS_FUNCTIONS[name] = fn
    return _OPENBLAS_FUNCTIONS[name]


_OPENBLAS_FUNCTIONS: dict[str, Any] = {}


def _find_openblas_function(name: str) -> Any:
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower()})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in (f"scipy_openblas_{name}64_", f"openblas_{name}64_", f"openblas_{name}"):
            fn = getattr(lib, symbol, None)
            if fn is not None:
                return fn
    return None
