"""Numba twins of the reference layers' hot loops: the same functions, signatures and caches.

``tinygradlm.kernels`` is a drop-in replacement for :mod:`tinygradlm.ref` (select it with
``tinygradlm.backend``): every function takes the same arguments, checks them with the same
messages, returns the same dtypes and agrees with ref to float32 rounding (tests/kernels). Where a
layer's time goes into elementwise passes and row reductions, a Numba kernel fuses them into one
pass per row; where it goes into matrix products, the work stays in BLAS:

=================  ===========================================================================
layer              implementation
=================  ===========================================================================
``encoder``        Numba: gather + add in one pass; backward scatter-add split by columns
``layernorm``      Numba: one kernel per row, forward and backward (float64 row statistics)
``attention``      hybrid: ``np.matmul`` (BLAS) + a Numba scale/causal-mask/softmax kernel and
                   its Jacobian-vector backward, both skipping the masked upper triangle
``gelu``           Numba: one pass, via sigmoid(2u) and a vectorized exp (no libm tanh)
``crossentropy``   Numba: softmax + loss in one kernel per row; backward in one pass
``head_loss``      BLAS products per row chunk + the crossentropy row kernel, in place
``adamw_update``   Numba: the whole update in one pass over the flat buffers
``round_to_*``     Numba: bf16 / fp16 rounding in one branch-free pass over the bits
``linear``         ref's (a BLAS matmul either way)
``lora``           ref's (two thin BLAS matmuls either way)
``residual``       ref's (one ``np.add`` either way)
=================  ===========================================================================

Every kernel is compiled with ``cache=True`` (the first call in a fresh checkout compiles, about
a second per kernel and dtype; later processes load the cache) and ``parallel=True``: threads
come from ``NUMBA_NUM_THREADS`` (set it to 1 when running one MPI rank per core; the CLI lowers
it to the cores the process may run on, ``tinygradlm.dist.threads``). Results do not depend on
the number of threads. Unless ``NUMBA_THREADING_LAYER`` is set, the kernels run on
Numba's ``workqueue`` threading layer: OpenMP's worker threads spin after each parallel region
and take the cores from OpenBLAS's threads between a kernel and the next matmul, which made a
training step of the "small" config 1.6× slower on 2 cores (``bench/step.py``). No kernel uses
fast-math flags, so a kernel gives the same bits freshly compiled and loaded from the cache (why
they once differed, and the explicit FMAs and vector sums that replace the flags, are in
``tinygradlm/kernels/_vecmath.py``); measurements in docs/performance.md ("Kernels").
"""

import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"  # sleeping, not spinning, workers: see above

from ..ref import (
    GELU_CUBIC,
    GELU_SCALE,
    linear_backward,
    linear_forward,
    lora_backward,
    lora_forward,
    residual_backward,
    residual_forward,
)
from .adamw import adamw_update
from .attention import attention_backward, attention_forward
from .crossentropy import (
    crossentropy_backward,
    crossentropy_forward,
    head_crossentropy_forward_backward,
)
from .encoder import encoder_backward, encoder_forward
from .gelu import gelu_backward, gelu_forward
from .layernorm import layernorm_backward, layernorm_forward
from .rounding import round_to_bf16, round_to_fp16

__all__ = [
    "GELU_CUBIC",
    "GELU_SCALE",
    "adamw_update",
    "attention_backward",
    "attention_forward",
    "crossentropy_backward",
    "crossentropy_forward",
    "encoder_backward",
    "encoder_forward",
    "gelu_backward",
    "gelu_forward",
    "head_crossentropy_forward_backward",
    "layernorm_backward",
    "layernorm_forward",
    "linear_backward",
    "linear_forward",
    "lora_backward",
    "lora_forward",
    "residual_backward",
    "residual_forward",
    "round_to_bf16",
    "round_to_fp16",
]
