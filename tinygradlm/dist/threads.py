"""Threads per rank under an MPI launcher: each rank gets its share of the node's cores.

:func:`default_threads` sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``
and ``NUMBA_NUM_THREADS`` to ``max(1, cores // ranks on this node)`` when they are unset, reading
the ranks per node from the launcher's environment (``MPI_LOCALNRANKS`` from MPICH's Hydra,
``OMPI_COMM_WORLD_LOCAL_SIZE`` from Open MPI, ``PMI_LOCAL_SIZE``), and the CLI calls it first
thing, before Numba is imported (Numba reads ``NUMBA_NUM_THREADS`` then). NumPy's OpenBLAS is
loaded by ``import tinygradlm`` already, so its thread count is also set through OpenBLAS's own
``openblas_set_num_threads`` (found with ctypes). Set any of these variables yourself to
override.
"""

from __future__ import annotations

import os
import sys
from typing import Any

LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")
LOCAL_SIZE_VARS = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMI_LOCAL_SIZE")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def launched_by_mpi() -> bool:
    """Whether an MPI launcher started this process (from its environment; imports nothing)."""
    return any(v in os.environ for v in (*LAUNCHER_SIZE_VARS, "PMIX_RANK", "PMI_RANK"))


def default_threads(environ: dict[str, str] | Any = None) -> int | None:
    """Under an MPI launcher: set the unset thread variables to ``max(1, cores // local ranks)``
    and return that number; None (nothing set) when not launched by MPI. Call it before NumPy
    is imported for OpenBLAS to see it."""
    env = os.environ if environ is None else environ
    local = None
    for name in LOCAL_SIZE_VARS:
        try:
            local = int(env[name])
            break
        except (KeyError, ValueError):
            continue
    if local is None:
        return None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    threads = max(1, cores // max(local, 1))
    blas_was_set = "OPENBLAS_NUM_THREADS" in env or "OMP_NUM_THREADS" in env
    for name in THREAD_VARS:
        env.setdefault(name, str(threads))
    if environ is None and "numpy" in sys.modules:
        # NumPy's OpenBLAS has started already: tell it (the variables it would have read)
        blas = int(env.get("OPENBLAS_NUM_THREADS") or env["OMP_NUM_THREADS"])
        if not blas_was_set or blas != threads:
            set_blas_threads(blas)
    return threads


def set_blas_threads(threads: int) -> bool:
    """Set the thread count of an OpenBLAS that is already loaded (NumPy's wheels load it when
    NumPy is imported, before the CLI runs, so the environment variable comes too late for it);
    False when no OpenBLAS is found. Numba reads ``NUMBA_NUM_THREADS`` at its own import."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return False
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in (
            "scipy_openblas_set_num_threads64_",
            "openblas_set_num_threads64_",
            "openblas_set_num_threads",
        ):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(ctypes.c_int(threads))
                return True
    return False
