"""The ranks and their collectives: the same ``train`` and ``finetune`` commands under ``mpiexec``.

``init()`` returns a :class:`Dist`: an MPI one when the process was started by an MPI launcher
with more than one rank, else a single-process one whose operations do nothing. Importing this
module (or ``tinygradlm``) never imports ``mpi4py``; ``init()`` does, and only under a launcher.

Arrays travel with mpi4py's buffer-based, upper-case API only (``Bcast``, ``Allreduce`` with
``MPI.IN_PLACE``, ``Send``/``Recv``, and the non-blocking ``Iallreduce``/``Ireduce_scatter``
whose requests :meth:`Dist.wait_all` waits for); the pickle-based lower-case API carries short
strings only (the layout/config digests of :meth:`Dist.check_same`).

Threads per rank: :mod:`tinygradlm.dist.threads`; the watchdog that reports (and aborts on) a
stalled collective: :mod:`tinygradlm.dist.watchdog`; the three ways to reduce a step's
gradients over the ranks, built on these operations: :mod:`tinygradlm.dist.sync`.

Deterministic reduce (``deterministic_reduce = true``, opt-in): the step's gradient is bitwise
identical for any number of ranks P given the same global batch. The unit of computation is made
independent of P: every rank computes the gradient of each of its sequences on its own (a batch
of one, so the same arithmetic whatever P is), and the sum over the global batch is taken in
float32 in a fixed order, the sequences' global order: a chain through the ranks
(:meth:`Dist.ordered_sum_`): rank 0 adds its sequences to the running sum, sends it to rank 1,
which adds its own, ..., and the last rank broadcasts the result. The additions are the same
float32 operations in the same order for any P, hence the same bits. It costs batch-of-one
kernels, a copy of every sequence's gradient per rank, and a serial chain (one per micro-step),
so it is off by default.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from typing import Any

import numpy as np

from .threads import launched_by_mpi
from .watchdog import Watchdog


class Dist:
    """One process: rank 0 of 1; every operation leaves its arguments as they are."""

    rank = 0
    world_size = 1
    local_size = 1
    step = 0  # the training step, for the watchdog's messages

    def set_watchdog(self, timeout_s: float, abort: bool = True) -> None:
        """Time every collective: report one that takes over ``timeout_s`` (0: no watchdog)."""

    def set_step(self, step: int) -> None:
        self.step = step

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def broadcast_(self, array: np.ndarray, root: int = 0) -> np.ndarray:
        return array

    def allreduce_mean_(self, flat: np.ndarray, bucket_elems: int = 0) -> np.ndarray:
        return flat

    def allreduce_sum_(self, array: np.ndarray) -> np.ndarray:
        return array

    def allreduce_max_(self, array: np.ndarray) -> np.ndarray:
        return array

    def ordered_sum_(self, acc: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """``acc`` plus the rows of every rank, in rank order then row order, one float32 add at a
        time (the same operations for any P); the result in ``acc`` on every rank."""
        for row in rows:
            acc += row
        return acc

    def allgather(self, array: np.ndarray) -> np.ndarray:
        return array.copy()

    def shard_range(self, n: int) -> tuple[int, int]:
        """This rank's slice ``[lo, hi)`` of a flat buffer of ``n`` entries for ZeRO-1: P contiguous
        shards of ``ceil(n / P)`` entries (the buffer padded to a multiple of P; the padding is
        in no shard, so the last shards may be shorter or empty)."""
        return shard_ranges(n, self.world_size)[self.rank]

    def reduce_scatter_mean_(self, flat: np.ndarray, out: np.ndarray) -> np.ndarray:
        """The mean over the ranks of ``flat``'s entries in this rank's shard, into ``out``."""
        lo, hi = self.shard_range(flat.size)
        out[...] = flat[lo:hi]
        return out

    def allgather_shards_(self, flat: np.ndarray) -> np.ndarray:
        """Every rank's shard of ``flat`` (where it lies in ``flat``) onto every rank, in place."""
        return flat

    # -- non-blocking: started during the backward, waited for before the update ---------------

    def iallreduce_sum_(self, array: np.ndarray) -> Any:
        """Start summing ``array`` over the ranks in place; returns a request for
        :meth:`wait_all` (None alone: the sum of one rank is the array)."""
        return None

    def ireduce_scatter_sum_(self, flat: np.ndarray, lo: int, hi: int, out: np.ndarray) -> Any:
        """Start summing the bucket ``flat[lo:hi]`` over the ranks, each rank receiving the
        entries of the bucket that lie in its ZeRO-1 shard into its shard ``out`` (where they
        lie in it); returns a request for :meth:`wait_all`."""
        s_lo, s_hi = self.shard_range(flat.size)
        a, b = max(lo, s_lo), min(hi, s_hi)
        if a < b:
            out[a - s_lo : b - s_lo] = flat[a:b]
        return None

    def test_all(self, requests: list[Any]) -> None:
        """Let started operations progress (MPI moves them on only inside its calls)."""

    def wait_all(self, requests: list[Any], name: str) -> None:
        """Until every started operation in ``requests`` has completed (watched as ``name``)."""

    def gather_shards(self, shard: np.ndarray, full: np.ndarray) -> np.ndarray:
        """Every rank's ``shard`` into ``full`` on rank 0 (``full`` is untouched elsewhere)."""
        full[...] = shard
        return full

    def check_same(self, digest: str, what: str) -> None:
        pass

    def barrier(self) -> None:
        pass

    def abort(self, code: int = 1) -> None:
        sys.stderr.flush()
        os._exit(code)


class MPIDist(Dist):
    """Ranks of ``MPI.COMM_WORLD``."""

    def __init__(self, comm: Any = None) -> None:
        from mpi4py import MPI

        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.world_size = self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_size = node.Get_size()
        node.Free()
        self.watchdog: Watchdog | None = None
        # threads may call MPI at once (mpi4py asks for it; a cluster's MPI may give less)
        self.thread_multiple = MPI.Query_thread() == MPI.THREAD_MULTIPLE

    def set_watchdog(self, timeout_s: float, abort: bool = True) -> None:
        if self.watchdog is not None:
            self.watchdog.timeout_s = float(timeout_s)
            self.watchdog.abort_job = self.abort if abort else None
            if not timeout_s:
                self.watchdog = None  # its idle thread stays parked
        elif timeout_s:
            self.watchdog = Watchdog(self.rank, timeout_s, self.abort if abort else None)
        if self.watchdog is not None:
            self.watchdog.step = self.step

    def set_step(self, step: int) -> None:
        self.step = step
        if self.watchdog is not None:
            self.watchdog.step = step

    def _watch(self, name: str) -> Any:
        return self.watchdog.watch(name) if self.watchdog is not None else contextlib.nullcontext()

    def broadcast_(self, array: np.ndarray, root: int = 0) -> np.ndarray:
        _check_contiguous(array)
        with self._watch("broadcast"):
            self.comm.Bcast(array, root=root)
        return array

    def allreduce_mean_(self, flat: np.ndarray, bucket_elems: int = 0) -> np.ndarray:
        """Sum ``flat`` over the ranks in place, in fixed-order slices of ``bucket_elems``
        elements (0: one buffer), then divide by P."""
        _check_contiguous(flat)
        n = flat.size
        step = n if bucket_elems <= 0 else int(bucket_elems)
        for start in range(0, n, max(step, 1)):
            with self._watch("allreduce_mean"):
                self.comm.Allreduce(self.MPI.IN_PLACE, flat[start : start + step])
        flat *= flat.dtype.type(1.0 / self.world_size)
        return flat

    def allreduce_sum_(self, array: np.ndarray) -> np.ndarray:
        _check_contiguous(array)
        with self._watch("allreduce_sum"):
            self.comm.Allreduce(self.MPI.IN_PLACE, array)
        return array

    def allreduce_max_(self, array: np.ndarray) -> np.ndarray:
        _check_contiguous(array)
        with self._watch("allreduce_max"):
            self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.MAX)
        return array

    def ordered_sum_(self, acc: np.ndarray, rows: np.ndarray) -> np.ndarray:
        _check_contiguous(acc)
        if self.rank > 0:
            with self._watch("ordered_sum (receive)"):
                self.comm.Recv(acc, source=self.rank - 1, tag=77)
        for row in rows:
            acc += row
        with self._watch("ordered_sum"):
            if self.rank < self.world_size - 1:
                self.comm.Send(acc, dest=self.rank + 1, tag=77)
            self.comm.Bcast(acc, root=self.world_size - 1)
        return acc

    def allgather(self, array: np.ndarray) -> np.ndarray:
        array = np.ascontiguousarray(array)
        out = np.empty((self.world_size, *array.shape), dtype=array.dtype)
        with self._watch("allgather"):
            self.comm.Allgather(array, out)
        return out.reshape(self.world_size * array.shape[0], *array.shape[1:])

    def reduce_scatter_mean_(self, flat: np.ndarray, out: np.ndarray) -> np.ndarray:
        _check_contiguous(flat)
        counts = [hi - lo for lo, hi in shard_ranges(flat.size, self.world_size)]
        with self._watch("reduce_scatter"):
            self.comm.Reduce_scatter(flat, out, recvcounts=counts, op=self.MPI.SUM)
        out *= out.dtype.type(1.0 / self.world_size)
        return out

    def allgather_shards_(self, flat: np.ndarray) -> np.ndarray:
        _check_contiguous(flat)
        ranges = shard_ranges(flat.size, self.world_size)
        counts, displs = [hi - lo for lo, hi in ranges], [lo for lo, _ in ranges]
        mpi_type = self.MPI._typedict[flat.dtype.char]
        with self._watch("allgather_shards"):
            self.comm.Allgatherv(self.MPI.IN_PLACE, [flat, counts, displs, mpi_type])
        return flat

    def iallreduce_sum_(self, array: np.ndarray) -> Any:
        _check_contiguous(array)
        return self.comm.Iallreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)

    def ireduce_scatter_sum_(self, flat: np.ndarray, lo: int, hi: int, out: np.ndarray) -> Any:
        _check_contiguous(flat)
        ranges = shard_ranges(flat.size, self.world_size)
        counts = [max(0, min(hi, s_hi) - max(lo, s_lo)) for s_lo, s_hi in ranges]
        s_lo = ranges[self.rank][0]
        a = min(max(lo, s_lo) - s_lo, out.size)
        recv = out[a : a + counts[self.rank]]
        return self.comm.Ireduce_scatter(flat[lo:hi], recv, recvcounts=counts, op=self.MPI.SUM)

    def test_all(self, requests: list[Any]) -> None:
        if requests:
            self.MPI.Request.Testall(requests)

    def wait_all(self, requests: list[Any], name: str) -> None:
        if requests:
            with self._watch(name):
                self.MPI.Request.Waitall(requests)

    def gather_shards(self, shard: np.ndarray, full: np.ndarray) -> np.ndarray:
        _check_contiguous(full)
        ranges = shard_ranges(full.size, self.world_size)
        counts, displs = [hi - lo for lo, hi in ranges], [lo for lo, _ in ranges]
        mpi_type = self.MPI._typedict[full.dtype.char]
        send = np.ascontiguousarray(shard)
        with self._watch("gather_shards"):
            if self.rank == 0:
                self.comm.Gatherv(send, [full, counts, displs, mpi_type], root=0)
            else:
                self.comm.Gatherv(send, None, root=0)
        return full

    def check_same(self, digest: str, what: str) -> None:
        """Stop with a message naming the ranks whose ``digest`` differs from rank 0's."""
        with self._watch("check_same"):
            digests = self.comm.allgather(str(digest))
        differ = [r for r, d in enumerate(digests) if d != digests[0]]
        if differ:
            raise RuntimeError(
                f"the ranks disagree on the {what}: rank(s) {', '.join(map(str, differ))} differ "
                f"from rank 0 ({digests[differ[0]][:12]} vs {digests[0][:12]})"
            )

    def barrier(self) -> None:
        with self._watch("barrier"):
            self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)


def shard_ranges(n: int, world_size: int) -> list[tuple[int, int]]:
    """The ZeRO-1 shards ``[lo, hi)`` of a flat buffer of ``n`` entries over ``world_size``
    ranks: contiguous, ``ceil(n / P)`` entries each, the last ones shorter (or empty)."""
    size = -(-n // world_size)
    return [(min(r * size, n), min((r + 1) * size, n)) for r in range(world_size)]


def _check_contiguous(array: np.ndarray) -> None:
    if not array.flags.c_contiguous:
        raise ValueError("MPI buffers must be C-contiguous arrays")


_DIST: Dist | None = None


def init() -> Dist:
    """The process's :class:`Dist` (made once): MPI when launched by an MPI launcher with more
    than one rank, else the single-process one."""
    global _DIST
    if _DIST is None:
        if launched_by_mpi():
            d = MPIDist()
            _DIST = d if d.world_size > 1 else Dist()
        else:
            _DIST = Dist()
    return _DIST


# 128 + SIGINT, 128 + SIGTERM: a run that every rank stopped after the same step
# (tinygradlm.train.stop), so no rank waits in a collective and none needs aborting
STOPPED_STATUSES = (130, 143)


def run_or_abort(dist: Dist, fn: Any, *args: Any) -> int:
    """``fn(*args)`` (an int exit status); with several ranks, an exception or a non-zero status
    on any rank prints its error with the rank and aborts the whole job, instead of leaving the
    other ranks waiting in a collective forever. A status of :data:`STOPPED_STATUSES` (the
    ranks stopped together on Ctrl-C or SIGTERM) ends each rank normally."""
    if not dist.enabled:
        return fn(*args)
    try:
        code = fn(*args)
    except BaseException as e:  # any error must end the job
        text = "".join(traceback.format_exception(e))
        prefix = f"[rank {dist.rank}] "
        print("".join(prefix + line for line in text.splitlines(True)), file=sys.stderr, end="")
        print(f"{prefix}aborting the job", file=sys.stderr)
        sys.stderr.flush()
        time.sleep(0.5)  # time for the launcher to forward the message before Abort kills all
        dist.abort(1)
        return 1
    if code and code not in STOPPED_STATUSES:
        print(f"[rank {dist.rank}] exit status {code}: aborting the job", file=sys.stderr)
        dist.abort(code)
    return code
