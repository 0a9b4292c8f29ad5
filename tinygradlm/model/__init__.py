"""The GPT-2 model, one job per module:

- ``config``: :class:`GPTConfig`, the named ``PRESETS``, :func:`parameter_shapes`;
- ``gpt``: :class:`GPT`, its parameters in one flat buffer, the one forward through the blocks
  (training, ``logits`` and KV-cache decoding) and its backward;
- ``block``: one transformer block, forward and backward, as ten layer calls;
- ``layers``: the layer calls with precision rounding and LoRA inside the linear layer;
- ``workspace``: the activation buffers reused across steps, and the memory estimates
  :func:`model_bytes` and :func:`training_bytes`;
- ``kvcache``: :class:`KVCache` and attention of a new query to it;
- ``witness``: the same network from the autograd engine's primitives.
"""

from .config import PRESETS, GPTConfig, parameter_shapes
from .gpt import GPT
from .kvcache import KVCache
from .workspace import model_bytes, training_bytes

__all__ = [
    "GPT",
    "PRESETS",
    "GPTConfig",
    "KVCache",
    "model_bytes",
    "parameter_shapes",
    "training_bytes",
]
