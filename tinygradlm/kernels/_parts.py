"""Independent parts of a kernel on several threads, each part's matrix products on one.

Attention's products are per head: (T, HS)·(HS, T) and (T, T)·(T, HS) matrices, too small for
OpenBLAS to split across threads well (on two threads, a step's attention took about as long
as on one, docs/performance.md "Training step"). Its heads are independent, though, so with
two threads each thread takes half of the batch and runs its products on one BLAS thread:
:func:`run_parts` does that. While the parts run, OpenBLAS is set to one thread (its count is
process-wide) and restored after, and the Numba code they call must be serial and ``nogil``
(a ``parallel=True`` kernel called from two threads at once aborts Numba's ``workqueue``
layer). Each part computes exactly what it computed alone, with the same products, so the
result does not depend on the number of threads.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba

from ..blas import openblas_function

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def part_threads(items: int) -> int:
    """How many threads to split ``items`` independent parts over: Numba's thread count (set
    by ``NUMBA_NUM_THREADS``, the same as the BLAS threads under the CLI and the benchmarks), at
    most ``items``; 1 means: run the kernel's own multithreaded code instead."""
    return max(1, min(items, numba.get_num_threads()))


def ranges(items: int, parts: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges splitting ``range(items)`` into ``parts`` contiguous runs, sizes differing
    by at most one."""
    return [(i * items // parts, (i + 1) * items // parts) for i in range(parts)]


def run_parts(fn: Callable[[int, int, int], None], items: int, parts: int) -> None:
    """Call ``fn(lo, hi, part)`` for each of ``parts`` contiguous ranges of ``range(items)``,
    one per thread, with OpenBLAS on one thread while they run; the first exception raised by
    a part is raised here (after every part has ended)."""
    spans = ranges(items, parts)
    if parts == 1:
        fn(0, items, 0)
        return
    blas = _BlasThreads()
    with _lock:  # one split at a time: the pool and OpenBLAS's count are shared
        pool = _executor(parts)
        blas.set(1)
        try:
            futures = [pool.submit(fn, lo, hi, part) for part, (lo, hi) in enumerate(spans)]
            for future in futures:
                future.exception()  # wait for all before raising
            for future in futures:
                future.result()
        finally:
            blas.restore()


def _executor(parts: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size < parts:
        if _pool is not None:
            _pool.shutdown(wait=True)
        _pool = ThreadPoolExecutor(parts, thread_name_prefix="tinygradlm-parts")
        _pool_size = parts
    return _pool


class _BlasThreads:
    """OpenBLAS's process-wide thread count, set and put back; nothing when NumPy's BLAS is
    not an OpenBLAS this can reach (then the parts run on whatever it does)."""

    def __init__(self) -> None:
        self._get = openblas_function("get_num_threads")
        self._set = openblas_function("set_num_threads")
        self._saved: int | None = None

    def set(self, threads: int) -> None:
        if self._get is None or self._set is None:
            return
        self._saved = int(self._get())
        if self._saved != threads:
            self._set(ctypes.c_int(threads))

    def restore(self) -> None:
        if self._saved is not None and self._set is not None and self._saved != int(self._get()):
            self._set(ctypes.c_int(self._saved))
