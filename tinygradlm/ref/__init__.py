"""The readable reference of every GPT-2 layer, in plain NumPy.

Import it to verify your own kernels against, or read it to port from (as llm.c's C reference).
Each layer is a ``*_forward`` / ``*_backward`` pair, one module per layer:

================  ================================================  ==========================
module            forward                                           backward returns
================  ================================================  ==========================
``encoder``       ``encoder_forward(idx, wte, wpe)``                ``(dwte, dwpe)``
``layernorm``     ``layernorm_forward(x, weight, bias, eps=1e-5)``  ``(dx, dweight, dbias)``
``linear``        ``linear_forward(x, weight, bias=None)``          ``(dx, dweight[, dbias])``
``attention``     ``attention_forward(qkv, n_head)``                ``(dqkv,)``
``gelu``          ``gelu_forward(x)``                               ``(dx,)``
``residual``      ``residual_forward(a, b)``                        ``(da, db)``
``crossentropy``  ``crossentropy_forward(logits, targets, V)``      ``(dlogits,)``
``lora``          ``lora_forward(x, A, B, scale)``                  ``(dx, dA, dB)``
``adamw``         ``adamw_update(params, grads, m, v, step, lr)``   (in place)
``rounding``      ``round_to_bf16(x)``, ``round_to_fp16(x)``        (no gradient: emulation)
================  ================================================  ==========================

Conventions, the same for every layer:

- Every forward returns ``(out, cache)``; every backward takes ``(dout, cache)`` and returns a
  tuple with one gradient per floating-point array input, in input order (integer indices and
  plain values such as ``n_head`` get none). Backwards never modify ``dout`` or the cache, and
  every gradient they return is a new array the caller may accumulate into.
- Forwards take an optional keyword-only ``out=`` array to write their output into (buffers
  reused across steps); it is returned as ``out``. Cross-entropy returns a scalar and has none.
- float32 in gives float32 out (the training path: no silent float64 promotion) and float64 in
  gives float64 out (the gradient checks). Mixed dtypes raise TypeError.
- Shapes: B batch, T sequence length, C channels, V vocabulary, Vp padded vocabulary, NH heads,
  HS = C / NH head size. Weights use HF GPT-2's (in, out) layout.
- Wrong shapes and dtypes raise at the top of the forward with a message that names the
  function, the argument and what was expected.

``head_loss.head_crossentropy_forward_backward(x, wte, targets, V)`` is not a pair either: the
tied LM head and the loss, forward and backward in one call over row chunks, returning ``(loss,
dx, dwte)`` without holding the (B, T, Vp) logits (training's head; it equals ``linear`` +
``crossentropy`` composed). ``adamw_update`` and the rounders are not layers: the optimizer
step updates its buffers in place, and ``round_to_bf16`` / ``round_to_fp16`` (float32 in,
float32 of the 16-bit format's values out, ``out=`` as above) emulate 16-bit storage for
``tinygradlm.precision``.

Every backward is derived in docs/derivations.md (LoRA's in docs/finetuning.md) and checked
against float64 finite differences, the autograd engine and PyTorch in tests/ref/. This package
imports nothing of tinygradlm, only NumPy.
"""

from .adamw import adamw_update
from .attention import attention_backward, attention_forward
from .crossentropy import crossentropy_backward, crossentropy_forward
from .encoder import encoder_backward, encoder_forward
from .gelu import GELU_CUBIC, GELU_SCALE, gelu_backward, gelu_forward
from .head_loss import head_crossentropy_forward_backward
from .layernorm import layernorm_backward, layernorm_forward
from .linear import linear_backward, linear_forward
from .lora import lora_backward, lora_forward
from .residual import residual_backward, residual_forward
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
