"""The GPT-2 model: configuration, parameters in one flat buffer, and two gradient engines.

Parameters live in one contiguous buffer (``GPT.flat_params``) and gradients in a second
(``GPT.flat_grads``), as in llm.c. Each named tensor (HF GPT-2 names and layouts) is a view into
them, so clipping, an optimizer step, an allreduce or a checkpoint is one operation on one array.

``forward_backward(idx, targets, engine=...)`` computes the loss and the gradients two
independent ways:

- ``"fused"``: the chain of hand-derived layers (``tinygradlm.ref`` or the Numba twins in
  ``tinygradlm.kernels``, chosen by ``tinygradlm.backend``), with activations written into
  buffers allocated once per batch shape and reused across steps;
- ``"autograd"``: the same network composed from the ``Tensor`` engine's primitive ops.

The tests hold the two to the same loss and gradients. LoRA adapters (``tinygradlm.lora``,
attached with ``add_lora``) add their term to the attention and MLP projections in both.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import backend
from .precision import PrecisionPolicy

if TYPE_CHECKING:
    from .lora import LoRAAdapters, LoRAConfig

# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a GPT-2 model.

    vocab_size: tokens in the vocabulary (V). padded_vocab_size: rows of the embedding table
    (Vp ≥ V, default V); padding rows get no probability and no gradient, and are not part of the
    state dict. block_size: the longest sequence (maxT), the rows of the position table.
    n_layer transformer blocks of n_head heads each, width n_embd (C, divisible by n_head).
    """

    vocab_size: int = 50257
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    padded_vocab_size: int | None = None
    layer_norm_epsilon: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        if self.padded_vocab_size is not None and self.padded_vocab_size < self.vocab_size:
            raise ValueError(
                f"GPTConfig.padded_vocab_size ({self.padded_vocab_size}) must be at least "
                f"vocab_size ({self.vocab_size})"
            )
        if not self.layer_norm_epsilon > 0:
            raise ValueError(
                f"GPTConfig.layer_norm_epsilon must be positive, got {self.layer_norm_epsilon}"
            )

    @property
    def Vp(self) -> int:
        """Rows of the embedding table: the padded vocabulary size."""
        return self.padded_vocab_size or self.vocab_size

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GPTConfig:
        """A named configuration (see ``PRESETS``), with fields overridden by keyword."""
        if name not in PRESETS:
            raise ValueError(f"unknown GPT preset {name!r}: choose one of {', '.join(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GPTConfig:
        """Build from a mapping, rejecting keys that are not fields (a typo is an error)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(
                f"unknown GPTConfig key(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(fields))})"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, GPTConfig] = {
    # a few seconds per step on one core: the demo and the tests
    "tiny": GPTConfig(vocab_size=512, block_size=64, n_layer=2, n_head=2, n_embd=64),
    # the benchmark reference: 4 layers, 4 heads, width 256, T=256, V=4096
    "small": GPTConfig(vocab_size=4096, block_size=256, n_layer=4, n_head=4, n_embd=256),
    # GPT-2 124M (HF "gpt2"); llm.c pads its vocabulary to 50304
    "gpt2": GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": GPTConfig(vocab_size=50257, block_size=1024, n_layer=24, n_head=16, n_embd=1024),
}


# --------------------------------------------------------------------------------------------
# the parameter layout
# --------------------------------------------------------------------------------------------


def parameter_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape, in the order they sit in the flat buffer (HF's order).

    ``wte.weight`` is listed with its padded shape (Vp, C); the state dict shows its first V rows.
    """
    C, L = config.n_embd, config.n_layer
    shapes: dict[str, tuple[int, ...]] = {
        "wte.weight": (config.Vp, C),
        "wpe.weight": (config.block_size, C),
    }
    for i in range(L):
        h = f"h.{i}."
        shapes[h + "ln_1.weight"] = (C,)
        shapes[h + "ln_1.bias"] = (C,)
        shapes[h + "attn.c_attn.weight"] = (C, 3 * C)
        shapes[h + "attn.c_attn.bias"] = (3 * C,)
        shapes[h + "attn.c_proj.weight"] = (C, C)
        shapes[h + "attn.c_proj.bias"] = (C,)
        shapes[h + "ln_2.weight"] = (C,)
        shapes[h + "ln_2.bias"] = (C,)
        shapes[h + "mlp.c_fc.weight"] = (C, 4 * C)
        shapes[h + "mlp.c_fc.bias"] = (4 * C,)
        shapes[h + "mlp.c_proj.weight"] = (4 * C, C)
        shapes[h + "mlp.c_proj.bias"] = (C,)
    shapes["ln_f.weight"] = (C,)
    shapes["ln_f.bias"] = (C,)
    return shapes


def _views(flat: np.ndarray, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    views, offset = {}, 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        views[name] = flat[offset : offset + size].reshape(shape)
        offset += size
    return views


# names in HF checkpoints that are not parameters of ours: the causal-mask buffers and the tied
# LM head (the same array as wte)
_HF_EXTRA_SUFFIXES = (".attn.bias", ".attn.masked_bias")
_HF_TIED_HEAD = "lm_head.weight"


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------


class GPT:
    """GPT-2 with its parameters in ``flat_params`` and gradients in ``flat_grads``.

    >>> model = GPT(GPTConfig.preset("tiny"), seed=0)
    >>> idx = np.zeros((1, 8), dtype=np.int64)
    >>> loss, grads = model.forward_backward(idx, idx)
    >>> grads["h.0.attn.c_attn.weight"].shape
    (64, 192)
    """

    def __init__(
        self, config: GPTConfig, seed: int = 0, dtype: Any = np.float32, precision: str = "fp32"
    ) -> None:
        self.config = config
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"GPT dtype must be float32 or float64, got {self.dtype}")
        self.shapes = parameter_shapes(config)
        n = sum(math.prod(s) for s in self.shapes.values())
        self.flat_params = np.zeros(n, dtype=self.dtype)
        self.flat_grads = np.zeros(n, dtype=self.dtype)
        self.params = _views(self.flat_params, self.shapes)
        self.grads = _views(self.flat_grads, self.shapes)
        self._acts: _Activations | None = None
        self.lora: LoRAAdapters | None = None  # see add_lora
        self._lora_caches: dict[str, Any] = {}
        self.set_precision(precision)
        self.init_weights(seed)

    def set_precision(self, precision: str) -> None:
        """Compute in "fp32", "bf16" or "fp16" (emulated, tinygradlm.precision): the fused
        engine's forward reads weights rounded from the float32 masters, and rounds matmul
        operands, stored activations and the gradients between layers."""
        policy = PrecisionPolicy(precision)
        if policy.enabled and self.dtype != np.float32:
            raise ValueError(
                f"precision {policy.precision} needs a float32 model, not {self.dtype}"
            )
        self.precision = policy
        # the weights the layers read (fp32: the masters themselves)
        self._compute_flat = np.empty_like(self.flat_params) if policy.enabled else self.flat_params
        self._compute_views = (
            _views(self._compute_flat, self.shapes) if policy.enabled else self.params
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

    def decay_mask(self) -> np.ndarray:
        """1 where weight decay applies (2-D weights: matmuls and embeddings), 0 elsewhere."""
        mask = np.zeros(self.flat_params.size, dtype=self.dtype)
        for name, view in _views(mask, self.shapes).items():
            if len(self.shapes[name]) == 2:
                view[...] = 1
        return mask

    def state_dict(self) -> dict[str, np.ndarray]:
        """HF GPT-2 names and layouts; the arrays are views into ``flat_params`` (copy to keep)."""
        sd = dict(self.params)
        sd["wte.weight"] = self.params["wte.weight"][: self.config.vocab_size]
        return sd

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy ``state`` into the parameters after checking every name, shape and dtype.

        Accepts HF GPT-2 checkpoints as they are: a ``transformer.`` prefix is stripped and the
        causal-mask buffers and a tied ``lm_head.weight`` are ignored. Every difference is
        reported at once, and nothing is copied unless all entries match.
        """
        expected = {
            name: (self.config.vocab_size, self.config.n_embd) if name == "wte.weight" else shape
            for name, shape in self.shapes.items()
        }
        given: dict[str, np.ndarray] = {}
        for key, value in state.items():
            name = key.removeprefix("transformer.")
            if name.endswith(_HF_EXTRA_SUFFIXES) or name == _HF_TIED_HEAD:
                continue
            given[name] = np.asarray(value)
        problems = [f"missing: {n}" for n in expected if n not in given]
        problems += [f"unexpected: {n}" for n in given if n not in expected]
        for name, value in given.items():
            if name not in expected:
                continue
            if value.shape != expected[name]:
                problems.append(f"{name}: shape {value.shape}, expected {expected[name]}")
            if value.dtype != self.dtype:
                problems.append(f"{name}: dtype {value.dtype}, expected {self.dtype}")
        if problems:
            raise ValueError(
                "load_state_dict: state does not match the model:\n  " + "\n  ".join(problems)
            )
        targets = self.state_dict()
        for name, value in given.items():
            targets[name][...] = value

    # -- forward and backward ------------------------------------------------------------------

    def _check_tokens(self, idx: Any, what: str, allow_ignore: int | None = None) -> np.ndarray:
        a = np.asarray(idx)
        if a.dtype.kind not in "iu":
            raise TypeError(f"{what} must be integer token ids, got dtype {a.dtype}")
        if a.ndim != 2:
            raise ValueError(f"{what} must have shape (B, T), got {a.shape}")
        if a.shape[1] > self.config.block_size:
            raise ValueError(
                f"{what}: sequence length {a.shape[1]} exceeds block_size {self.config.block_size}"
            )
        valid = a if allow_ignore is None else a[a != allow_ignore]
        if valid.size and (valid.min() < 0 or valid.max() >= self.config.vocab_size):
            bad = int(valid.min()) if valid.min() < 0 else int(valid.max())
            raise ValueError(f"{what}: token id {bad} is outside [0, {self.config.vocab_size})")
        return a

    def forward_backward(
        self,
        idx: Any,
        targets: Any,
        engine: str = "fused",
        ignore_index: int = -100,
        accumulate: bool = False,
        loss_scale: float = 1.0,
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Mean cross-entropy of ``targets`` given ``idx`` (both (B, T)), and its gradient.

        The gradient of ``loss_scale · loss`` is written into ``flat_grads`` (added to what is
        there when ``accumulate``, for gradient accumulation) and returned as views keyed like
        the state dict. Targets equal to ``ignore_index`` are left out of the mean.
        """
        idx = self._check_tokens(idx, "idx")
        targets = self._check_tokens(targets, "targets", allow_ignore=ignore_index)
        if targets.shape != idx.shape:
            raise ValueError(f"targets shape {targets.shape} differs from idx shape {idx.shape}")
        if not accumulate:
            self.flat_grads[...] = 0
            if self.lora is not None:
                self.lora.flat_grads[...] = 0
        if engine == "fused":
            loss = self._fused(idx, targets, ignore_index, loss_scale)
        elif engine == "autograd":
            if self.precision.enabled:
                raise ValueError(
                    f"precision {self.precision.precision} is emulated by the fused engine only"
                )
            loss = self._autograd(idx, targets, ignore_index, loss_scale)
        else:
            raise ValueError(f"unknown engine {engine!r}: use 'fused' or 'autograd'")
        return loss, self.gradients()

    def gradients(self) -> dict[str, np.ndarray]:
        """The gradient views, keyed like :meth:`state_dict`."""
        g = dict(self.grads)
        g["wte.weight"] = self.grads["wte.weight"][: self.config.vocab_size]
        return g

    def logits(self, idx: Any) -> np.ndarray:
        """Next-token logits (B, T, V) for ``idx`` (B, T): the forward pass, no caches kept."""
        idx = self._check_tokens(idx, "idx")
        logits = self._fused_forward(idx, keep=False)
        return logits[..., : self.config.vocab_size].copy()  # the buffer is reused next call

    def _activations(self, B: int, T: int) -> _Activations:
        if self._acts is None or self._acts.shape != (B, T):
            self._acts = _Activations(self.config, B, T, self.dtype)
        return self._acts

    def _fused_forward(self, idx: np.ndarray, keep: bool) -> np.ndarray:
        """The layer chain up to the logits (B, T, Vp); caches go to ``self._caches``."""
        L = backend.layers()
        P = self.precision
        cfg, p = self.config, self._compute_params()
        B, T = idx.shape
        acts = self._activations(B, T)
        caches: list[Any] = []
        self._lora_caches = {}
        x, cache = L.encoder_forward(idx, p["wte.weight"], p["wpe.weight"], out=acts.x[0])
        caches.append(cache)  # (B, T, C)
        for i, a in enumerate(acts.layers):
            h = f"h.{i}."
            ln1, c1 = L.layernorm_forward(
                x, p[h + "ln_1.weight"], p[h + "ln_1.bias"], cfg.layer_norm_epsilon, out=a.ln1
            )
            P.matmul_input(ln1, out=ln1)
            qkv, c2 = L.linear_forward(
                ln1, p[h + "attn.c_attn.weight"], p[h + "attn.c_attn.bias"], out=a.qkv
            )  # (B, T, 3C)
            self._lora_forward(h + "attn.c_attn", ln1, qkv, keep)
            P.activation(qkv)
            atty, c3 = L.attention_forward(qkv, cfg.n_head, out=a.atty)  # (B, T, C)
            P.matmul_input(atty, out=atty)
            attproj, c4 = L.linear_forward(
                atty, p[h + "attn.c_proj.weight"], p[h + "attn.c_proj.bias"], out=a.proj
            )
            self._lora_forward(h + "attn.c_proj", atty, attproj, keep)
            P.activation(attproj)
            x2, _ = L.residual_forward(x, attproj, out=a.x2)  # (B, T, C)
            ln2, c5 = L.layernorm_forward(
                x2, p[h + "ln_2.weight"], p[h + "ln_2.bias"], cfg.layer_norm_epsilon, out=a.ln2
            )
            P.matmul_input(ln2, out=ln2)
            fch, c6 = L.linear_forward(
                ln2, p[h + "mlp.c_fc.weight"], p[h + "mlp.c_fc.bias"], out=a.fch
            )  # (B, T, 4C)
            self._lora_forward(h + "mlp.c_fc", ln2, fch, keep)
            P.activation(fch)
            fcg, c7 = L.gelu_forward(fch, out=a.fcg)  # (B, T, 4C)
            P.matmul_input(fcg, out=fcg)
            fcproj, c8 = L.linear_forward(
                fcg, p[h + "mlp.c_proj.weight"], p[h + "mlp.c_proj.bias"], out=a.proj
            )
            self._lora_forward(h + "mlp.c_proj", fcg, fcproj, keep)
            P.activation(fcproj)
            x, _ = L.residual_forward(x2, fcproj, out=acts.x[i + 1])  # (B, T, C)
            if keep:
                caches.append((c1, c2, c3, c4, c5, c6, c7, c8))
        lnf, cf = L.layernorm_forward(
            x, p["ln_f.weight"], p["ln_f.bias"], cfg.layer_norm_epsilon, out=acts.lnf
        )
        P.matmul_input(lnf, out=lnf)
        # the LM head is tied to the token embedding: logits = lnf · wteᵀ
        logits, ch = L.linear_forward(lnf, p["wte.weight"].T, out=acts.logits)  # (B, T, Vp)
        P.activation(logits)
        if keep:
            caches += [cf, ch]
            self._caches = caches
        return logits

    def _fused(
        self, idx: np.ndarray, targets: np.ndarray, ignore_index: int, scale: float
    ) -> float:
        L = backend.layers()
        P = self.precision
        cfg, g = self.config, self.grads
        logits = self._fused_forward(idx, keep=True)
        loss, cache_ce = L.crossentropy_forward(logits, targets, cfg.vocab_size, ignore_index)
        caches, self._caches = self._caches, []
        cache_enc, blocks, cache_lnf, cache_head = caches[0], caches[1:-2], caches[-2], caches[-1]

        # backward, in reverse; every parameter gradient is added (+=) into flat_grads
        (dlogits,) = L.crossentropy_backward(self.dtype.type(scale), cache_ce)  # (B, T, Vp)
        P.gradient(dlogits)
        dlnf, dwte_t = L.linear_backward(dlogits, cache_head)  # dwte_t is (C, Vp)
        P.gradient(dlnf)
        g["wte.weight"] += P.gradient(dwte_t).T
        dx, dw, db = L.layernorm_backward(dlnf, cache_lnf)
        g["ln_f.weight"] += dw
        g["ln_f.bias"] += db
        for i in reversed(range(cfg.n_layer)):
            h = f"h.{i}."
            c1, c2, c3, c4, c5, c6, c7, c8 = blocks[i]
            # x_out = x2 + mlp(ln2(x2)): the residual passes dx to both branches
            dx_16 = P.matmul_input(dx)  # a copy: dx itself goes on, in float32, to dx2
            dfcg, dw, db = L.linear_backward(dx_16, c8)
            g[h + "mlp.c_proj.weight"] += P.gradient(dw)
            g[h + "mlp.c_proj.bias"] += P.gradient(db)
            self._lora_backward(h + "mlp.c_proj", dx_16, dfcg)
            (dfch,) = L.gelu_backward(P.gradient(dfcg), c7)
            P.gradient(dfch)
            dln2, dw, db = L.linear_backward(dfch, c6)
            g[h + "mlp.c_fc.weight"] += P.gradient(dw)
            g[h + "mlp.c_fc.bias"] += P.gradient(db)
            self._lora_backward(h + "mlp.c_fc", dfch, dln2)
            P.gradient(dln2)
            dx2, dw, db = L.layernorm_backward(dln2, c5)
            g[h + "ln_2.weight"] += dw
            g[h + "ln_2.bias"] += db
            dx2 += dx
            # x2 = x + attn(ln1(x))
            dx2_16 = P.matmul_input(dx2)  # a copy: dx2 goes on, in float32, to dx
            datty, dw, db = L.linear_backward(dx2_16, c4)
            g[h + "attn.c_proj.weight"] += P.gradient(dw)
            g[h + "attn.c_proj.bias"] += P.gradient(db)
            self._lora_backward(h + "attn.c_proj", dx2_16, datty)
            (dqkv,) = L.attention_backward(P.gradient(datty), c3)
            P.gradient(dqkv)
            dln1, dw, db = L.linear_backward(dqkv, c2)
            g[h + "attn.c_attn.weight"] += P.gradient(dw)
            g[h + "attn.c_attn.bias"] += P.gradient(db)
            self._lora_backward(h + "attn.c_attn", dqkv, dln1)
            P.gradient(dln1)
            dx, dw, db = L.layernorm_backward(dln1, c1)
            g[h + "ln_1.weight"] += dw
            g[h + "ln_1.bias"] += db
            dx += dx2
        dwte, dwpe = L.encoder_backward(dx, cache_enc)
        g["wte.weight"] += dwte
        g["wpe.weight"] += dwpe
        return float(loss)

    def _autograd(
        self, idx: np.ndarray, targets: np.ndarray, ignore_index: int, scale: float
    ) -> float:
        """The same network from the Tensor engine's primitive ops (the independent witness)."""
        from .autograd import Tensor, cross_entropy, embedding, layer_norm, masked_fill, softmax

        cfg = self.config
        B, T = idx.shape
        C, NH, HS = cfg.n_embd, cfg.n_head, cfg.head_size
        eps = cfg.layer_norm_epsilon
        p = {name: Tensor(view, requires_grad=True) for name, view in self.params.items()}
        lora = self.lora
        adapters = {}
        if lora is not None:
            adapters = {name: Tensor(v, requires_grad=True) for name, v in lora.params.items()}

        def linear(x: Any, module: str) -> Any:  # x·W + b, and an adapter's scale·(x·A)·B
            y = x @ p[module + ".weight"] + p[module + ".bias"]
            if module + ".lora_A.weight" in adapters:
                A = adapters[module + ".lora_A.weight"].T  # (C_in, r)
                B = adapters[module + ".lora_B.weight"].T  # (r, C_out)
                y = y + ((x @ A) * lora.scale) @ B
            return y

        future = np.triu(np.ones((T, T), dtype=bool), k=1)  # position t must not see t' > t

        x = embedding(idx, p["wte.weight"]) + p["wpe.weight"][:T]  # (B, T, C)
        for i in range(cfg.n_layer):
            h = f"h.{i}."
            a = layer_norm(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"], eps)
            qkv = linear(a, h + "attn.c_attn")  # (B, T, 3C)
            q, k, v = (
                qkv[..., j * C : (j + 1) * C].reshape(B, T, NH, HS).transpose(0, 2, 1, 3)
                for j in range(3)
            )  # (B, NH, T, HS)
            att = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(HS))  # (B, NH, T, T)
            att = softmax(masked_fill(att, future, -np.inf), axis=-1)
            y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
            x = x + linear(y, h + "attn.c_proj")
            m = layer_norm(x, p[h + "ln_2.weight"], p[h + "ln_2.bias"], eps)
            m = linear(m, h + "mlp.c_fc").gelu()
            x = x + linear(m, h + "mlp.c_proj")
        x = layer_norm(x, p["ln_f.weight"], p["ln_f.bias"], eps)
        logits = x @ p["wte.weight"].T  # (B, T, Vp)
        loss = cross_entropy(logits[..., : cfg.vocab_size], targets, ignore_index=ignore_index)
        (loss * scale).backward()
        for name, t in p.items():
            if t.grad is not None:
                self.grads[name] += t.grad
        for name, t in adapters.items():
            if t.grad is not None:
                lora.grads[name] += t.grad
        return float(loss.item())

    # -- LoRA adapters (tinygradlm.lora) -------------------------------------------------------

    def add_lora(self, config: LoRAConfig, seed: int = 0) -> LoRAAdapters:
        """Attach LoRA adapters to the projections ``config.targets`` of every block.

        They live in their own flat buffers (``self.lora.flat_params`` / ``flat_grads``, PEFT's
        names); ``forward_backward`` then also writes their gradients, and an optimizer on the
        adapters' buffers alone trains them with the base left as it is. B starts at zero, so
        the model computes exactly what it computed before.
        """
        from .lora import LoRAAdapters

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

    def _lora_forward(self, module: str, x: np.ndarray, out: np.ndarray, keep: bool) -> None:
        """If ``module`` has an adapter, add its term scale·(x·A)·B into the projection's output
        ``out`` (in place) and keep its cache for :meth:`_lora_backward`."""
        if self.lora is None or module not in self.lora.modules:
            return
        from .lora import lora_forward

        delta, cache = lora_forward(x, self.lora.A(module), self.lora.B(module), self.lora.scale)
        out += delta  # (B, T, OC)
        if keep:
            self._lora_caches[module] = cache

    def _lora_backward(self, module: str, dout: np.ndarray, dx: np.ndarray) -> None:
        """The adapter's share of ``module``'s backward: its input gradient is added into the
        projection's ``dx`` (the input feeds both branches), dA and dB into the adapters'
        gradient buffer. The frozen base weight's gradient is still computed by the chain."""
        cache = self._lora_caches.pop(module, None)
        if cache is None:
            return
        from .lora import lora_backward

        dx_lora, dA, dB = lora_backward(dout, cache)
        dx += dx_lora
        g = self.lora.grads  # PEFT's layouts: lora_A (r, C_in), lora_B (C_out, r)
        g[module + ".lora_A.weight"] += dA.T
        g[module + ".lora_B.weight"] += dB.T

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

    def parameters(self) -> Iterator[tuple[str, np.ndarray]]:
        return iter(self.params.items())


class _Activations:
    """Forward activations that backward reads, allocated once per (B, T) and reused: the
    residual stream at each block boundary and, per block, every layer's output."""

    def __init__(self, config: GPTConfig, B: int, T: int, dtype: np.dtype) -> None:
        C = config.n_embd
        self.shape = (B, T)

        def buf(*shape: int) -> np.ndarray:
            return np.empty((B, T, *shape), dtype=dtype)

        self.x = [buf(C) for _ in range(config.n_layer + 1)]  # residual stream
        self.layers = [_BlockActivations(buf, C) for _ in range(config.n_layer)]
        self.lnf = buf(C)
        self.logits = buf(config.Vp)

    @property
    def nbytes(self) -> int:
        arrays = [*self.x, self.lnf, self.logits]
        for layer in self.layers:
            arrays += list(vars(layer).values())
        return sum(a.nbytes for a in arrays)


class _BlockActivations:
    def __init__(self, buf: Any, C: int) -> None:
        self.ln1 = buf(C)
        self.qkv = buf(3 * C)
        self.atty = buf(C)
        self.proj = buf(C)  # c_proj outputs: read by the residual add only, so shared
        self.x2 = buf(C)
        self.ln2 = buf(C)
        self.fch = buf(4 * C)
        self.fcg = buf(4 * C)
