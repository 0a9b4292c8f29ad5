"""Threads per rank under an MPI launcher: each rank gets its share of the node's cores.

:func:`default_threads` sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``
and ``NUMBA_NUM_THREADS`` to ``max(1, cores // ranks on this node)`` when they are unset, reading
the ranks per node from the launcher's environment (``MPI_LOCALNRANKS`` from MPICH's Hydra,
``OMPI_COMM_WORLD_LOCAL_SIZE`` from Open MPI, ``PMI_LOCAL_SIZE``), and the CLI calls it first
thing, before Numba is imported (Numba reads ``NUMBA_NUM_THREADS`` then). NumPy's OpenBLAS is
loaded by ``import tinygradlm`` already, so its thread count is also set through OpenBLAS's own
``openblas_set_num_threads`` (found with ctypes). Set any of these variables yourself to
override.

No thread count goes above the cores this process may run on (its affinity mask: what
``taskset``, ``mpiexec -bind-to`` or Slurm's ``--cpu-bind`` leave it): a variable set higher is
lowered to that count, with one line on standard error saying so (once, from the launcher's
rank 0); outside a launcher, a load average already at the core count gets a line too. Threads
beyond the cores share them, and every threaded BLAS call ends when its slowest thread does,
while the caller busy-waits for it on a core the other thread needs: a training step with 2 BLAS
threads on one core took 58× the one-thread time, and a clipping norm of BLAS dot products over
two busy cores 6–13× (docs/performance.md, "Contention"). OpenBLAS caps the count it reads at
start to the affinity mask; its setter does not, and :func:`set_blas_threads` does.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ..machine import available_cores, openblas_function

LAUNCHER_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")
LOCAL_SIZE_VARS = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMI_LOCAL_SIZE")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def launched_by_mpi() -> bool:
    """Whether an MPI launcher started this process (from its environment; imports nothing)."""
    return any(v in os.environ for v in (*LAUNCHER_SIZE_VARS, "PMIX_RANK", "PMI_RANK"))


def cap_threads(env: dict[str, str] | Any, cores: int) -> list[str]:
    """Lower each thread variable of ``env`` set above ``cores`` to ``cores``; one line per
    variable lowered. Values that are not a positive integer are left to their readers."""
    lowered = []
    for name in THREAD_VARS:
        try:
            asked = int(env[name])
        except (KeyError, ValueError):
            continue
        if asked > cores:
            env[name] = str(cores)
            lowered.append(
                f"{name}={asked} is more threads than the {cores} core(s) this process may run "
                f"on: using {cores}"
            )
    return lowered


def busy_cores_note(threads: int, cores: int, load: float) -> str | None:
    """A line when more than one thread will run on cores that were already busy: the last
    minute's load average (before this process started) is at least ``cores``, the cores this
    process may run on. None otherwise."""
    if threads <= 1 or load < cores:
        return None
    return (
        f"the load average is {load:.1f} on the {cores} core(s) this process may run on: its "
        f"{threads} threads per matrix product will wait for one another behind other "
        "processes (fewer threads, e.g. OMP_NUM_THREADS=1, may run faster)"
    )


def _blas_threads(env: dict[str, str] | Any, cores: int) -> int:
    """The threads OpenBLAS starts with: its variables, else every core it may run on."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        try:
            return max(1, min(int(env[name]), cores))
        except (KeyError, ValueError):
            continue
    return cores


def default_threads(environ: dict[str, str] | Any = None) -> int | None:
    """Under an MPI launcher: set the unset thread variables to ``max(1, cores // local ranks)``
    and return that number; None (no default set) when not launched by MPI. Either way, lower
    the variables set above the cores this process may run on (:func:`cap_threads`); with
    ``environ`` None (the process's own), say so on standard error. Call it before Numba is
    imported for Numba to see it."""
    env = os.environ if environ is None else environ
    cores = available_cores()
    lowered = cap_threads(env, cores)
    if environ is None and not launched_by_mpi():  # a launcher's ranks make their own load
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average here
            load = 0.0
        note = busy_cores_note(_blas_threads(env, cores), cores, load)
        lowered += [note] if note else []
    if lowered and environ is None and env.get(_rank_var(env), "0") == "0":
        print("\n".join(f"tinygradlm: {line}" for line in lowered), file=sys.stderr)
    local = None
    for name in LOCAL_SIZE_VARS:
        try:
            local = int(env[name])
            break
        except (KeyError, ValueError):
            continue
    if local is None:
        return None
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


def _rank_var(env: dict[str, str] | Any) -> str:
    return next((name for name in LAUNCHER_RANK_VARS if name in env), LAUNCHER_RANK_VARS[0])


def set_blas_threads(threads: int) -> bool:
    """Set the thread count of an OpenBLAS that is already loaded (NumPy's wheels load it when
    NumPy is imported, before the CLI runs, so the environment variable comes too late for it),
    at most the cores this process may run on (OpenBLAS's own cap at start, which its setter
    does not apply); False when no OpenBLAS is found. Numba reads ``NUMBA_NUM_THREADS`` at its
    own import."""
    import ctypes

    threads = max(1, min(threads, available_cores()))
    fn = openblas_function("set_num_threads")
    if fn is None:
        return False
    fn(ctypes.c_int(threads))
    return True
