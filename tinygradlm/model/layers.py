"""The layers as the model runs them: the backend's layer functions with the model's precision
rounding and LoRA adapters applied inside the linear layer, so a block reads as layer calls.

:class:`ModelLayers` is made once per forward pass (``GPT._layers``). Its :meth:`linear
<ModelLayers.linear>` is the projection ``y = x·W + b + scale·(x·A)·B``: the input rounded as a
matmul operand, the frozen weight's product, the adapter's term when the module has one, and
the output rounded as a stored activation. :meth:`linear_backward <ModelLayers.linear_backward>`
is its backward: the weight's and the adapter's gradients are added into their flat buffers and
the input gradient is returned rounded. At fp32 and without adapters both are the plain
``linear_forward`` / ``linear_backward``. Where the precision rounds is listed in
docs/precision.md, "Integration".
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

from ..precision import PrecisionPolicy

# the tied LM head: logits = lnf · wteᵀ, a linear layer whose weight is the embedding's transpose
LM_HEAD = "lm_head"

# what a layer keeps for its backward: the module (its parameters' names) and the layer's cache;
# a linear layer also its adapter's cache
LayerCache = tuple[str, Any]
LinearCache = tuple[str, Any, Any]


class ModelLayers:
    """The layer calls of one forward (and backward) pass of a GPT.

    layers: the backend's module of layer functions (``tinygradlm.backend.layers()``);
    precision: the model's :class:`~tinygradlm.precision.PrecisionPolicy`; weights: the
    parameter views the layers read (the rounded compute copy at bf16/fp16); grads: the
    gradient views to add into (None for a forward alone); lora: the attached
    ``LoRAAdapters`` or None; eps: the layer norms' epsilon; n_head: attention's heads.
    """

    def __init__(
        self,
        layers: ModuleType,
        precision: PrecisionPolicy,
        weights: Mapping[str, np.ndarray],
        grads: Mapping[str, np.ndarray] | None,
        lora: Any,
        eps: float,
        n_head: int,
    ) -> None:
        self.L = layers
        self.precision = precision
        self.weights = weights
        self.grads = grads
        self.lora = lora
        self.eps = eps
        self.n_head = n_head

    def layernorm(
        self, x: np.ndarray, module: str, out: np.ndarray | None
    ) -> tuple[np.ndarray, LayerCache]:
        """(B, T, C) -> (B, T, C), in float32 (its output is rounded by the linear that reads
        it)."""
        w = self.weights
        y, cache = self.L.layernorm_forward(
            x, w[module + ".weight"], w[module + ".bias"], self.eps, out=out
        )
        return y, (module, cache)

    def layernorm_backward(self, dout: np.ndarray, cache: LayerCache) -> np.ndarray:
        """The input's gradient (B, T, C); dweight and dbias are added (+=)."""
        module, layer_cache = cache
        dx, dw, db = self.L.layernorm_backward(dout, layer_cache)
        self.grads[module + ".weight"] += dw
        self.grads[module + ".bias"] += db
        return dx

    def linear(
        self, x: np.ndarray, module: str, out: np.ndarray | None, keep: bool
    ) -> tuple[np.ndarray, LinearCache]:
        """(B, T, C_in) -> (B, T, C_out). ``x`` is rounded in place (it is the matmul operand
        that backward reads); the adapter's cache is kept only when ``keep`` (training)."""
        P, L = self.precision, self.L
        x = self.linear_input(x)
        if module == LM_HEAD:
            y, cache = L.linear_forward(x, self.weights["wte.weight"].T, out=out)  # (B, T, Vp)
        else:
            w = self.weights
            y, cache = L.linear_forward(x, w[module + ".weight"], w[module + ".bias"], out=out)
        adapter_cache = None
        if self.lora is not None and module in self.lora.modules:
            lora = self.lora
            delta, adapter_cache = L.lora_forward(x, lora.A(module), lora.B(module), lora.scale)
            y += delta  # (B, T, C_out)
        P.activation(y)
        return y, (module, cache, adapter_cache if keep else None)

    def linear_input(self, x: np.ndarray) -> np.ndarray:
        """``x`` rounded in place as a matmul operand: what :meth:`linear` and :meth:`head_loss`
        do to their input, and what a backward that writes that input again must redo."""
        return self.precision.matmul_input(x, out=x)

    def linear_backward(self, dout: np.ndarray, cache: LinearCache) -> np.ndarray:
        """The gradient of the input (B, T, C_in), rounded; ``dout`` (B, T, C_out) must already
        be rounded (a matmul operand). dW, db and the adapter's dA, dB are added (+=)."""
        P, g = self.precision, self.grads
        module, layer_cache, adapter_cache = cache
        if module == LM_HEAD:
            dx, dw_t = self.L.linear_backward(dout, layer_cache)  # dw_t is (C, Vp)
            wte_t = g["wte.weight"].T  # (C, Vp), a view
            wte_t += P.gradient(dw_t)
        else:
            dx, dw, db = self.L.linear_backward(dout, layer_cache)
            g[module + ".weight"] += P.gradient(dw)
            g[module + ".bias"] += P.gradient(db)
        if adapter_cache is not None:
            # the input feeds both the frozen product and the adapter: its gradients add
            dx_lora, dA, dB = self.L.lora_backward(dout, adapter_cache)
            dx += dx_lora
            lora_grads = self.lora.grads  # PEFT's layouts: lora_A (r, C_in), lora_B (C_out, r)
            lora_grads[module + ".lora_A.weight"] += dA.T
            lora_grads[module + ".lora_B.weight"] += dB.T
        return P.gradient(dx)

    def head_loss(
        self, x: np.ndarray, targets: np.ndarray, vocab_size: int, ignore_index: int, dloss: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Training's tied head and loss in one pass over row chunks (ref.head_loss): the loss
        of the logits x·wteᵀ and the input's gradient (B, T, C), rounded; dwte is added (+=).

        The same rounding points as :meth:`linear` (LM_HEAD) + cross-entropy +
        :meth:`linear_backward`: x rounded in place as the operand, each chunk's logits as the
        stored output and its dlogits as the gradient operand, and dwte's sum over all the rows
        rounded once before it is added. At fp32 that sum goes straight into the gradient
        buffer; at bf16/fp16 it is summed into a (Vp, C) scratch first, so it can be rounded
        whole, as the unfused head rounds it."""
        P = self.precision
        x = self.linear_input(x)
        grad = self.grads["wte.weight"]  # (Vp, C)
        dwte = np.zeros_like(grad) if P.enabled else grad
        rounding = P.activation if P.enabled else None
        loss, dx, _ = self.L.head_crossentropy_forward_backward(
            x, self.weights["wte.weight"], targets, vocab_size, ignore_index, dloss,
            dwte=dwte, rounding=rounding,
        )  # fmt: skip
        if dwte is not grad:
            grad += P.gradient(dwte)
        return loss, P.gradient(dx)

    def attention(
        self, qkv: np.ndarray, layer: int, kv_cache: Any, out: np.ndarray | None
    ) -> tuple[np.ndarray, Any]:
        """(B, T, 3C) -> (B, T, C). Without a KV cache, or for a prompt into an empty one:
        causal attention over the T positions. With a filled cache (T = 1): the new position's
        key and value are appended and its query attends to every cached position."""
        if kv_cache is None:
            return self.L.attention_forward(qkv, self.n_head, out=out)
        kv_cache.store(layer, qkv)
        if kv_cache.length == 0:
            return self.L.attention_forward(qkv, self.n_head, out=out)
        return kv_cache.attend(layer, qkv, out), None
