"""Data parallelism over MPI: the ranks and their collectives (:mod:`.comm`), the watchdog over
them (:mod:`.watchdog`), threads per rank (:mod:`.threads`), and the three ways a step's
gradients are reduced over the ranks (:mod:`.sync`). See docs/distributed.md."""

from .comm import Dist, MPIDist, init, run_or_abort, shard_ranges
from .sync import AllreduceSync, LocalSync, OrderedSumSync, ZeroSync, make_sync
from .threads import default_threads, launched_by_mpi, set_blas_threads
from .watchdog import Watchdog

__all__ = [
    "AllreduceSync",
    "Dist",
    "LocalSync",
    "MPIDist",
    "OrderedSumSync",
    "Watchdog",
    "ZeroSync",
    "default_threads",
    "init",
    "launched_by_mpi",
    "make_sync",
    "run_or_abort",
    "set_blas_threads",
    "shard_ranges",
]
