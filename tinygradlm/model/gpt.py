"""GPT-2: parameters in one flat buffer, one forward through the blocks, and its backward.

Parameters live in one contiguous buffer (``GPT.flat_params``) and gradients in a second
(``GPT.flat_grads``), as in llm.c (:class:`~tinygradlm.params.ParameterBuffer`). Each named
tensor (HF GPT-2 names and layouts) is a view into them, so clipping, an optimizer step, an
allreduce or a checkpoint is one operation on one array.

:meth:`GPT.forward` is the one chain through the blocks: training calls it with ``keep=True``
and ``head=False`` (it stops at ln_f: the LM head then runs fused with the loss, in chunks of
rows, ``ModelLayers.head_loss``, and no (B, T, Vp) logits are made) and gets the caches the
backward takes; ``forward(keep=True)`` with the plain head and :meth:`GPT.backward` from the
logits' gradient compose the same step; :meth:`GPT.logits` calls it alone; decoding
calls it with a :class:`~tinygradlm.model.kvcache.KVCache` (:meth:`GPT.prefill`,
:meth:`GPT.decode_step`). All three read the same compute weights and round at the same points.

``forward_backward(idx, targets, engine=...)`` computes the loss and the gradients two
independent ways: ``"fused"``, the hand-derived layers (``tinygradlm.ref`` or the Numba twins in
``tinygradlm.kernels``, chosen by ``tinygradlm.backend``) with activations written into buffers
allocated once per batch shape; ``"autograd"``, the same network composed from the ``Tensor``
engine's primitive ops (``tinygradlm.model.witness``). The tests hold the two to the same loss
and gradients. LoRA adapters (``tinygradlm.lora``, attached with ``add_lora``) add their term
to the attention and MLP projections in both.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from .. import backend
from ..lora import LoRAAdapters, LoRAConfig
from ..optim import grad_norm
from ..params import ParameterBuffer, load_views
from ..precision import PrecisionPolicy
from .block import BlockCache, block_backward, block_forward, input_backward, sublayer_input
from .config import GPTConfig, parameter_shapes
from .kvcache import KVCache
from .layers import LM_HEAD, ModelLayers
from .witness import autograd_forward_backward
from .workspace import Activations

# names in HF checkpoints that are not parameters of ours: the causal-mask buffers and the tied
# LM head (the same array as wte)
_HF_EXTRA_SUFFIXES = (".attn.bias", ".attn.masked_bias")
_HF_TIED_HEAD = "lm_head.weight"


class ForwardCaches(NamedTuple):
    """What :meth:`GPT.forward` keeps for :meth:`GPT.backward`: every layer's cache."""

    encoder: Any
    blocks: list[BlockCache]
    ln_f: Any
    head: Any


class GPT:
    """GPT-2 with its parameters in ``flat_params`` and gradients in ``flat_grads``.

    >>> model = GPT(GPTConfig.preset("tiny"), seed=0)
    >>> idx = np.zeros((1, 8), dtype=np.int64)
    >>> loss, grads = model.forward_backward(idx, idx)
    >>> grads["h.0.attn.c_attn.weight"].shape
    (64, 192)
    """

    def __init__(
        self,
        config: GPTConfig,
        seed: int = 0,
        dtype: Any = np.float32,
        precision: str = "fp32",
        recompute_mlp: bool = False,
    ) -> None:
        self.config = config
        # the MLP's input stream x2 and c_fc's output not kept for backward but computed again
        # there (block.py): 5·C floats a row per block less, two matrix products a block more
        # (attn.c_proj's and mlp.c_fc's); the same bits either way
        self.recompute_mlp = recompute_mlp
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"GPT dtype must be float32 or float64, got {self.dtype}")
        self.buffer = ParameterBuffer(parameter_shapes(config), self.dtype)
        self.shapes = self.buffer.shapes
        self.flat_params, self.flat_grads = self.buffer.flat_params, self.buffer.flat_grads
        self.params, self.grads = self.buffer.params, self.buffer.grads
        self._acts: Activations | None = None
        self.lora: LoRAAdapters | None = None  # see add_lora
        self.set_precision(precision)
        self.init_weights(seed)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], precision: str = "fp32") -> GPT:
        """The model saved in the directory ``path``: a checkpoint of ours (training or
        model-only), a run directory (its newest complete checkpoint), or a Hugging Face GPT-2
        directory (``GPT2LMHeadModel.save_pretrained``'s config.json and safetensors), read
        and checked by ``tinygradlm.checkpoint.load_checkpoint``; see :meth:`from_checkpoint`.
        """
        # the checkpoint package imports this one; its reader builds no GPT, so no cycle
        from ..checkpoint.load import checkpoint_in, load_checkpoint

        return cls.from_checkpoint(load_checkpoint(checkpoint_in(path)[0]), precision)

    @classmethod
    def from_checkpoint(cls, checkpoint: Any, precision: str = "fp32") -> GPT:
        """A new GPT holding what ``load_checkpoint`` read (a ``Checkpoint``): its config, dtype
        and weights, and its LoRA adapters attached when it has them (``model.lora``; fold them
        in with :meth:`merge_lora`), computing at ``precision``."""
        dtype = next(iter(checkpoint.model_state.values())).dtype
        model = cls(checkpoint.config, dtype=dtype, precision=precision)
        model.load_state_dict(checkpoint.model_state)
        if checkpoint.lora is not None:
            adapters = model.add_lora(checkpoint.lora)
            adapters.load_state_dict(checkpoint.adapter_state)
            # the directory whose weights they apply to (PEFT's base_model_name_or_path)
            adapters.base_model = checkpoint.base_model
        return model

    def set_precision(self, precision: str) -> None:
        """Compute in "fp32", "bf16" or "fp16" (emulated, tinygradlm.precision): the forward
        reads weights rounded from the float32 masters, and rounds matmul operands, stored
        activations and the gradients between layers."""
        policy = PrecisionPolicy(precision)
        if policy.enabled and self.dtype != np.float32:
            raise ValueError(
                f"precision {policy.precision} needs a float32 model, not {self.dtype}"
            )
        self.precision = policy
        # the weights the layers read (fp32: the masters themselves)
        self._compute_flat = np.empty_like(self.flat_params) if policy.enabled else self.flat_params
        self._compute_views = (
            self.buffer.views(self._compute_flat) if policy.enabled else self.params
        )

    def _compute_params(self) -> dict[str, np.ndarray]:
        """The parameter views the layers read: rounded afresh from ``flat_params`` (fp32: the
        masters, untouched)."""
        self.precision.compute_params(self.flat_params, out=self._compute_flat)
        return self._compute_views

    # -- parameters ----------------------------------------------------------------------------

    def init_weights(self, seed: int) -> None:
        """GPT-2's initialisation: weights N(0, 0.02), residual projections (``c_proj``) N(0,
        0.02/√(2·n_layer)), biases 0, layer-norm weights 1; drawn in layout order from ``seed``."""
        rng = np.random.default_rng(seed)
        proj_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.params.items():
            if name.endswith((".bias",)):
                p[...] = 0
            elif ".ln_" in name or name.startswith("ln_f"):
                p[...] = 1
            else:
                std = proj_std if name.endswith("c_proj.weight") else 0.02
                p[...] = rng.normal(0.0, std, size=p.shape)
        V = self.config.vocab_size
        self.params["wte.weight"][V:] = 0  # padding rows: never looked up, never trained

    @property
    def num_params(self) -> int:
        """Trainable parameters (padding rows of the embedding excluded)."""
        return (
            self.flat_params.size - (self.config.Vp - self.config.vocab_size) * self.config.n_embd
        )

    def decay_ranges(self) -> np.ndarray:
        """The [start, end) ranges (n, 2) of the flat buffer where weight decay applies: the
        2-D weights (matmuls and embeddings)."""
        return self.buffer.decay_ranges()

    def decay_mask(self) -> np.ndarray:
        """The same as a flat bool array, True where weight decay applies (one byte per
        parameter: the optimizer takes :meth:`decay_ranges`)."""
        return self.buffer.mask(lambda name, shape: len(shape) == 2, dtype=bool)

    def state_dict(self) -> dict[str, np.ndarray]:
        """HF GPT-2 names and layouts; the arrays are views into ``flat_params`` (copy to keep)."""
        sd = self.buffer.state_dict()
        sd["wte.weight"] = self.params["wte.weight"][: self.config.vocab_size]
        return sd

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy ``state`` into the parameters after checking every name, shape and dtype.

        Accepts HF GPT-2 checkpoints as they are: a ``transformer.`` prefix is stripped and the
        causal-mask buffers are ignored, and so is an ``lm_head.weight`` equal to ``wte.weight``
        (the tied head HF stores); one that differs is refused, since this GPT's head is always
        ``wte`` and loading would silently make a different model. Every difference is
        reported at once, and nothing is copied unless all entries match.
        """
        given, head = {}, None
        for key, value in state.items():
            name = key.removeprefix("transformer.")
            if name == _HF_TIED_HEAD:
                head = value
            elif not name.endswith(_HF_EXTRA_SUFFIXES):
                given[name] = value
        if head is not None and not np.array_equal(head, given.get("wte.weight", head)):
            raise ValueError(
                f"load_state_dict: {_HF_TIED_HEAD} differs from wte.weight: this GPT ties its "
                "output head to the token embedding, so an untied head cannot be loaded"
            )
        load_views(self.state_dict(), given, "load_state_dict: state does not match the model")

    def parameters(self) -> Iterator[tuple[str, np.ndarray]]:
        return iter(self.params.items())

    # -- LoRA adapters (tinygradlm.lora) -------------------------------------------------------

    def add_lora(self, config: LoRAConfig, seed: int = 0) -> LoRAAdapters:
        """Attach LoRA adapters to the projections ``config.targets`` of every block.

        They live in their own flat buffers (``self.lora.flat_params`` / ``flat_grads``, PEFT's
        names); ``forward_backward`` then also writes their gradients, and an optimizer on the
        adapters' buffers alone trains them with the base left as it is. B starts at zero, so
        the model computes exactly what it computed before.
        """
        if self.lora is not None:
            raise ValueError("this model already has LoRA adapters (merge_lora() removes them)")
        self.lora = LoRAAdapters(self.config, config, dtype=self.dtype, seed=seed)
        return self.lora

    def merge_lora(self) -> None:
        """Fold the adapters into the base weights (W ← W + scale·A·B) and detach them."""
        if self.lora is None:
            raise ValueError("this model has no LoRA adapters to merge")
        self.lora.merge_into(self.params)
        self.lora = None

    # -- training ------------------------------------------------------------------------------

    def forward_backward(
        self,
        idx: Any,
        targets: Any,
        engine: str = "fused",
        ignore_index: int = -100,
        accumulate: bool = False,
        loss_scale: float = 1.0,
        on_grads_final: Any = None,
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Mean cross-entropy of ``targets`` given ``idx`` (both (B, T)), and its gradient.

        The gradient of ``loss_scale · loss`` is written into ``flat_grads`` (added to what is
        there when ``accumulate``, for gradient accumulation) and returned as views keyed like
        the state dict. Targets equal to ``ignore_index`` are left out of the mean.
        ``on_grads_final``: see :meth:`backward` (the fused engine; autograd never calls it).
        """
        idx = self._check_tokens(idx, "idx")
        targets = self._check_tokens(targets, "targets", allow_ignore=ignore_index)
        if targets.shape != idx.shape:
            raise ValueError(f"targets shape {targets.shape} differs from idx shape {idx.shape}")
        if engine not in ("fused", "autograd"):
            raise ValueError(f"unknown engine {engine!r}: use 'fused' or 'autograd'")
        if engine == "autograd" and self.precision.enabled:
            raise ValueError(
                f"precision {self.precision.precision} is emulated by the fused engine only"
            )
        if not accumulate:
            self.flat_grads[...] = 0
            if self.lora is not None:
                self.lora.flat_grads[...] = 0
        if engine == "fused":
            # the head and the loss fused, in row chunks: no (B, T, Vp) array is made
            lnf, caches = self.forward(idx, keep=True, head=False)  # (B, T, C)
            layers = self._layers(self._compute_views, for_backward=True)
            loss, dlnf = layers.head_loss(
                lnf, targets, self.config.vocab_size, ignore_index, self.dtype.type(loss_scale)
            )
            self._backward_body(dlnf, caches, on_grads_final)  # (B, T, C)
            loss = float(loss)
        else:
            loss = autograd_forward_backward(self, idx, targets, ignore_index, loss_scale)
        return loss, self.gradients()

    def gradients(self) -> dict[str, np.ndarray]:
        """The gradient views, keyed like :meth:`state_dict`."""
        g = dict(self.grads)
        g["wte.weight"] = self.grads["wte.weight"][: self.config.vocab_size]
        return g

    # -- the forward pass and its backward -----------------------------------------------------

    def _layers(self, weights: Mapping[str, np.ndarray], for_backward: bool) -> ModelLayers:
        cfg = self.config
        grads = self.grads if for_backward else None
        eps, n_head = cfg.layer_norm_epsilon, cfg.n_head
        return ModelLayers(backend.layers(), self.precision, weights, grads, self.lora, eps, n_head)

    def _activations(self, B: int, T: int) -> Activations:
        acts = self._acts
        if acts is None or acts.shape != (B, T) or acts.recompute_mlp != self.recompute_mlp:
            self._acts = Activations(
                self.config, B, T, self.dtype, recompute_mlp=self.recompute_mlp
            )
        return self._acts

    def forward(
        self,
        idx: np.ndarray,
        kv_cache: KVCache | None = None,
        keep: bool = False,
        head: bool = True,
    ) -> tuple[np.ndarray, ForwardCaches | None]:
        """The logits (B, T, Vp) of idx (B, T) (checked token ids), and with ``keep`` the
        caches :meth:`backward` takes. The logits live in a buffer the next call overwrites.
        ``head=False`` stops before the LM head and returns its input (B, T, C) instead: ln_f's
        output, or the last stream for norm "post" and "none" (training computes the head fused
        with the loss, ``ModelLayers.head_loss``).

        With a ``kv_cache``, idx holds the positions ``kv_cache.length``.. (a prompt into an
        empty cache, or one new token), their keys and values are appended, and only the last
        position's logits are computed: (B, 1, Vp). A decoding step reads the compute weights
        rounded when the prompt went in (the cache holds keys of those weights).
        """
        if keep and kv_cache is not None:
            raise ValueError("forward: decoding with a KV cache keeps no caches for backward")
        B, T = idx.shape
        start = 0 if kv_cache is None else kv_cache.length
        if kv_cache is None:
            acts, weights = self._activations(B, T), self._compute_params()
        else:
            acts = kv_cache.workspace(T)
            weights = self._compute_params() if start == 0 else self._compute_views
        layers = self._layers(weights, for_backward=keep)
        L = layers.L
        wpe = weights["wpe.weight"][start:]  # positions start.. use the rows from start on
        x, cache_enc = L.encoder_forward(idx, weights["wte.weight"], wpe, out=acts.x[0])
        blocks = []
        for i, block_acts in enumerate(acts.blocks):
            x, cache = block_forward(
                layers, x, i, block_acts, acts.x[i + 1], kv_cache, keep
            )  # (B, T, C)
            blocks.append(cache)
        lnf_out = acts.lnf
        if kv_cache is not None:
            kv_cache.length = start + T
            # only the last position's logits are wanted: ln_f and the head on (B, 1, C)
            x, lnf_out = np.ascontiguousarray(x[:, -1:]), None
        # ln_f for pre-LN; else the last stream itself (a copy when the head rounds its input)
        lnf, cache_lnf = sublayer_input(layers, x, "ln_f", self.config.norm, out=lnf_out)
        if not head:
            caches = ForwardCaches(cache_enc, blocks, cache_lnf, None) if keep else None
            return lnf, caches
        logits_out = acts.logits_buffer() if kv_cache is None else None
        logits, cache_head = layers.linear(lnf, LM_HEAD, out=logits_out, keep=keep)  # (B, T, Vp)
        caches = ForwardCaches(cache_enc, blocks, cache_lnf, cache_head) if keep else None
        return logits, caches

    def backward(
        self, dlogits: np.ndarray, caches: ForwardCaches, on_grads_final: Any = None
    ) -> None:
        """Backward from the logits' gradient (B, T, Vp), in reverse: every parameter gradient
        is added (+=) into ``flat_grads`` (and the adapters' into ``lora.flat_grads``).

        ``on_grads_final(layer)``, when given, is called as each layer's gradient in
        ``flat_grads`` becomes final: ``"ln_f"`` (pre-LN models only), then ``"h.{L-1}"`` …
        ``"h.0"``, then ``"wpe"`` and ``"wte"`` (the tied head adds to wte first, the embedding
        last), so a caller can start reducing a layer's gradient while the layers below still
        compute."""
        layers = self._layers(self._compute_views, for_backward=True)
        P = self.precision
        dlnf = layers.linear_backward(P.gradient(dlogits), caches.head)  # (B, T, C)
        self._backward_body(dlnf, caches, on_grads_final)

    def _backward_body(
        self, dlnf: np.ndarray, caches: ForwardCaches, on_grads_final: Any = None
    ) -> None:
        """Backward from the head's input gradient (B, T, C: ln_f's output, or the last stream
        without ln_f) down to the embeddings, calling ``on_grads_final`` as :meth:`backward`
        says."""
        layers = self._layers(self._compute_views, for_backward=True)
        final = on_grads_final if on_grads_final is not None else (lambda _layer: None)
        dx = input_backward(layers, dlnf, caches.ln_f)  # (B, T, C)
        if caches.ln_f is not None:
            final("ln_f")
        for i in reversed(range(len(caches.blocks))):
            dx = block_backward(layers, dx, caches.blocks[i])  # (B, T, C)
            final(f"h.{i}")
        # added straight into the gradient buffers: no (Vp, C) array is made
        g = self.grads
        layers.L.encoder_backward(dx, caches.encoder, into=(g["wte.weight"], g["wpe.weight"]))
        final("wpe")
        final("wte")

    def logits(self, idx: Any) -> np.ndarray:
        """Next-token logits (B, T, V) for ``idx`` (B, T): the forward pass, no caches kept."""
        idx = self._check_tokens(idx, "idx")
        logits, _ = self.forward(idx)
        return logits[..., : self.config.vocab_size].copy()  # the buffer is reused next call

    def check_token_ids(self, idx: Any, what: str, allow_ignore: int | None = None) -> np.ndarray:
        """``idx`` as an array of integer token ids (any shape), each in [0, vocab_size) except
        those equal to ``allow_ignore``; else a TypeError or ValueError naming ``what``."""
        a = np.asarray(idx)
        if a.dtype.kind not in "iu":
            raise TypeError(f"{what} must be integer token ids, got dtype {a.dtype}")
        valid = a if allow_ignore is None else a[a != allow_ignore]
        if valid.size and (valid.min() < 0 or valid.max() >= self.config.vocab_size):
            bad = int(valid.min()) if valid.min() < 0 else int(valid.max())
            raise ValueError(f"{what}: token id {bad} is outside [0, {self.config.vocab_size})")
        return a

    def _check_tokens(self, idx: Any, what: str, allow_ignore: int | None = None) -> np.ndarray:
        """:meth:`check_token_ids`, and a shape (B, T) with T at most block_size."""
        a = self.check_token_ids(idx, what, allow_ignore)
        if a.ndim != 2:
            raise ValueError(f"{what} must have shape (B, T), got {a.shape}")
        if a.shape[1] > self.config.block_size:
            raise ValueError(
                f"{what}: sequence length {a.shape[1]} exceeds block_size {self.config.block_size}"
            )
        return a

    # -- decoding with a KV cache --------------------------------------------------------------

    def prefill(self, idx: Any, cache: KVCache | None = None) -> tuple[np.ndarray, KVCache]:
        """Run the prompt idx (B, T), 1 ≤ T ≤ block_size, through the model and cache its keys
        and values. Returns the next-token logits of its last position (B, V) and the cache.

        ``cache`` (of batch size B and the model's config and dtype), when given, is emptied
        and reused rather than allocated again.
        """
        idx = self._check_tokens(idx, "prefill: idx")
        if idx.shape[1] == 0:
            raise ValueError(f"prefill: idx must have at least one position, got {idx.shape}")
        B = idx.shape[0]
        if cache is None:
            cache = KVCache(self.config, B, self.dtype)
        elif (cache.config, cache.batch_size, cache.dtype) != (self.config, B, self.dtype):
            raise ValueError(
                f"prefill: the cache is for batch size {cache.batch_size} and dtype "
                f"{cache.dtype}, the prompt has batch size {B} and the model dtype {self.dtype}"
            )
        cache.length = 0
        logits, _ = self.forward(idx, cache)
        return logits[:, 0, : self.config.vocab_size].copy(), cache  # (B, V)

    def decode_step(self, token: Any, cache: KVCache) -> np.ndarray:
        """Append one token per sequence, ``token`` (B,), at position ``cache.length`` and
        return its next-token logits (B, V): one position's work, whatever the context length.

        Raises ValueError when the cache is full (``block_size`` positions): the window must
        slide, which changes every position; re-``prefill`` the cropped context instead.
        """
        token = np.asarray(token).reshape(-1, 1)
        if token.shape[0] != cache.batch_size:
            raise ValueError(
                f"decode_step: {token.shape[0]} tokens for a cache of batch size {cache.batch_size}"
            )
        token = self._check_tokens(token, "decode_step: token")
        if cache.length == 0:
            raise ValueError("decode_step: the cache is empty; prefill the prompt first")
        if cache.length >= cache.capacity:
            raise ValueError(
                f"decode_step: the cache is full ({cache.capacity} positions = block_size); "
                f"prefill the last block_size tokens instead"
            )
        logits, _ = self.forward(token, cache)
        return logits[:, 0, : self.config.vocab_size].copy()  # (B, V)

    # -- accounting ----------------------------------------------------------------------------

    def flops_per_token(self, T: int) -> int:
        """Training FLOPs per token at sequence length T: 6 per parameter-token (forward 2,
        backward 4) plus attention's q·kᵀ and att·v, 6·2·L·T·C (PaLM's estimate, causal mask
        not discounted)."""
        cfg = self.config
        return 6 * self.num_params + 12 * cfg.n_layer * T * cfg.n_embd

    def activation_bytes(self, B: int, T: int) -> int:
        """Bytes of the activation buffers kept for backward at batch shape (B, T)."""
        return self._activations(B, T).nbytes

    def stream_rms(self) -> np.ndarray | None:
        """The root mean square of the residual stream after the embedding and after each
        block, (L+1,) float64, in the last forward without a KV cache (the training
        workspace's ``Activations.x``; decoding writes its own); None before any. The autograd
        engine writes no workspace: after it these are an earlier forward's."""
        if self._acts is None:
            return None
        return np.array([grad_norm(x) / math.sqrt(x.size) for x in self._acts.x])
