"""Low-precision training, emulated: bf16/fp16 rounding, the policy that says what gets rounded,
and dynamic loss scaling for fp16.

The model keeps float32 everywhere a number lives long (master weights, gradients, optimizer
moments) and computes in float32 (matmul accumulation, layer-norm and softmax statistics, the
loss). What a bf16 or fp16 GPU would hold in 16 bits (the operands of each matmul, the
activations kept for backward, the gradients flowing between layers) is *rounded* to the 16-bit
format's values, round-to-nearest-even, and stored back in float32. The numbers are then those
of the 16-bit run, while every kernel stays the float32 one.

Rounding, for example, sends a tie to the even neighbour, and fp16's 65520 (halfway from its
largest finite value, 65504, to 65536) to inf (``tinygradlm.ref.rounding`` shows both).

The two 16-bit formats differ in where they lose information:

====== ===== ======== ================ ====================================================
format  bits mantissa largest finite   what goes wrong
====== ===== ======== ================ ====================================================
bf16     16      7    ≈ 3.39e38        precision: unit roundoff 2^-8 (float32's exponent)
fp16     16     10    65504            range: gradients underflow below 2^-24, and a large
                                       activation or gradient overflows to inf
====== ===== ======== ================ ====================================================

fp16 therefore trains with a :class:`LossScaler`: the loss (so every gradient) is multiplied by a
large factor before backward, lifting small gradients out of the underflow range; the float32
gradients are divided by it before clipping and the optimizer. When the scaled gradients
overflow, the step is skipped and the factor halves; after ``growth_interval`` clean steps it
doubles (PyTorch's ``GradScaler``).

The rounders have two implementations: the NumPy reference (``tinygradlm.ref.rounding``),
written to be read, and a one-pass Numba twin (``tinygradlm.kernels.rounding``), about 10×
(bf16) and 7× (fp16) faster on a 7.3M-element array (docs/precision.md, "Results").
``round_to_bf16`` and ``round_to_fp16`` here pick one by ``tinygradlm.backend`` like the layers
do (so the NumPy backend never loads Numba); the tests hold the two bit-identical, and both to
PyTorch's conversions. How the model and the trainer use all this is in docs/precision.md,
"Integration".

Modules: ``policy`` (the formats, the rounders, :class:`PrecisionPolicy`) and ``loss_scaling``
(:class:`LossScaler`).
"""

from .loss_scaling import LossScaler
from .policy import Precision, PrecisionPolicy, Rounder, round_to_bf16, round_to_fp16, rounder

__all__ = [
    "LossScaler",
    "Precision",
    "PrecisionPolicy",
    "Rounder",
    "round_to_bf16",
    "round_to_fp16",
    "rounder",
]
