"""LoRA (Hu et al., 2021): a trainable low-rank update beside a frozen linear layer.

    y = x @ W + b  +  scale · (x @ A) @ B          A (C, r), B (r, OC), scale = alpha / r

The frozen layer's weight W (C, OC) is left alone; only A and B train, r·(C + OC) numbers
instead of C·OC. B starts at zero, so an adapted model starts as the very function of its base.
After training the update folds into the weight, W ← W + scale · A @ B (:meth:`LoRAAdapters.
merge_into`), and the model is a plain GPT again.

This module holds:

- :func:`lora_forward` / :func:`lora_backward`, the layer as a hand-derived pair in the style of
  ``tinygradlm.ref`` (same conventions: ``(out, cache)``, one new gradient per float input, no
  silent dtype promotion). Derivation below and in docs/finetuning.md.
- :class:`LoRAConfig` (rank, alpha, which projections) and :class:`LoRAAdapters`: every
  adapter's A and B in one flat parameter buffer and one flat gradient buffer, with named views,
  as ``GPT`` keeps its own parameters, so an ``AdamW`` runs on the adapters alone.
- :func:`merged`, a context manager that folds the adapters in for a block and restores the
  exact weights afterwards (for code that reads the weights directly, such as the KV-cache
  sampler).

Names and layouts are PEFT's for GPT-2: ``h.{i}.attn.c_attn.lora_A.weight`` is (r, C) and
``h.{i}.attn.c_attn.lora_B.weight`` is (OC, r) (PEFT's ``lora_A`` / ``lora_B`` are
``nn.Linear``s). The math above uses the (in, out) layout of the rest of the project, so the
model passes the transposed views ``lora_A.weight.T`` (C, r) and ``lora_B.weight.T`` (r, OC),
as it passes ``wte.T`` to the tied LM head. PEFT's default initialisation is used too: A uniform
in ±1/√C (``kaiming_uniform_(a=√5)``), B zero.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from .model import GPTConfig, _views, parameter_shapes
from .ref import _checks

# the projections an adapter can sit on, in a block's order
TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")

LoRACache = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.floating]


# --------------------------------------------------------------------------------------------
# the layer
# --------------------------------------------------------------------------------------------


def lora_forward(
    x: np.ndarray,
    A: np.ndarray,
    B: np.ndarray,
    scale: float,
    *,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, LoRACache]:
    """The low-rank term of an adapted linear layer: out = scale · (x @ A) @ B.

    Shapes: x (B, T, C) (any leading axes: (..., C)), A (C, r), B (r, OC), scale a number
    (alpha / r) -> out (B, T, OC), which the caller adds to the frozen layer's output. A and B
    may be transposed views. ``out``, when given, must be C-contiguous. The cache is
    (x, A, B, h, scale) with h = scale · (x @ A), (B·T, r).

    Derivation: with the B·T positions flattened into n, h[n, k] = s·Σ_c x[n, c]·A[c, k] and
    out[n, o] = Σ_k h[n, k]·B[k, o]. The second is a linear layer in h, so dB = hᵀ @ dout and
    dh = dout @ Bᵀ; the first is a linear layer in x with weight s·A, so dA = s·xᵀ @ dh and
    dx = s·dh @ Aᵀ. The scale is a hyperparameter, not a parameter: it has no gradient.
    """
    out = check_lora_forward(x, A, B, scale, out)  # (B, T, OC)
    C, OC = A.shape[0], B.shape[1]
    s = x.dtype.type(scale)  # a typed constant: a Python float must not promote float32

    # scaling h (B·T, r) rather than out (B·T, OC): the same product, r/OC of the work
    h = x.reshape(-1, C) @ A  # (B·T, r)
    h *= s
    np.matmul(h, B, out=out.reshape(-1, OC))  # (B·T, OC)
    return out, (x, A, B, h, s)


def lora_backward(dout: np.ndarray, cache: LoRACache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients (dx, dA, dB): dout is (B, T, OC); dx is (B, T, C), dA (C, r), dB (r, OC), all
    new arrays. See :func:`lora_forward` for the derivation."""
    x, A, B, h, s = cache
    C, OC = A.shape[0], B.shape[1]
    _checks.upstream("lora_backward", dout, (*x.shape[:-1], OC), x.dtype)
    dout2 = dout.reshape(-1, OC)  # (B·T, OC)

    # in the forward pass this was: out = h @ B, so now:
    dB = h.T @ dout2  # (r, OC) summed over all B·T positions
    dh = dout2 @ B.T  # (B·T, r)
    # and before that: h = s · (x @ A), so now:
    dh *= s
    dA = x.reshape(-1, C).T @ dh  # (C, r)
    dx = (dh @ A.T).reshape(x.shape)  # (B, T, C)
    return dx, dA, dB


def check_lora_forward(
    x: np.ndarray, A: np.ndarray, B: np.ndarray, scale: float, out: np.ndarray | None
) -> np.ndarray:
    """The argument checks of :func:`lora_forward`; returns the array to write the output into,
    ``out`` or a new one."""
    fn = "lora_forward"
    dtype = _checks.float_array(fn, "x", x)
    for name, a in (("A", A), ("B", B)):
        _checks.float_array(fn, name, a)
        _checks.same_dtype(fn, name, a, "x", dtype)
    if x.ndim == 0:
        raise ValueError(f"{fn}: x must have a channel axis (..., C), got a 0-d array")
    C = x.shape[-1]
    if A.ndim != 2 or A.shape[0] != C:
        raise ValueError(f"{fn}: A has shape {A.shape} but x has C={C} channels (A is (C, r))")
    r = A.shape[1]
    if B.ndim != 2 or B.shape[0] != r:
        raise ValueError(f"{fn}: B has shape {B.shape} but A has rank r={r} (B is (r, OC))")
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)):
        raise TypeError(f"{fn}: scale must be a number, got {type(scale).__name__}")
    if not math.isfinite(scale):
        raise ValueError(f"{fn}: scale must be finite, got {scale}")
    OC = B.shape[1]
    return _checks.out_array(
        fn, out, (*x.shape[:-1], OC), dtype, contiguous=True, kept=(("x", x), ("A", A), ("B", B))
    )


# --------------------------------------------------------------------------------------------
# configuration and the adapters' flat buffers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoRAConfig:
    """Which projections get adapters and how large: rank r, alpha (the update is scaled by
    alpha / r, so changing r does not change the initial step size much), targets (a subset of
    :data:`TARGETS`, in every block)."""

    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = TARGETS

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or not isinstance(self.rank, (int, np.integer)):
            raise ValueError(f"LoRA rank must be a positive integer, got {self.rank!r}")
        if self.rank < 1:
            raise ValueError(f"LoRA rank must be a positive integer, got {self.rank!r}")
        if (
            isinstance(self.alpha, bool)
            or not isinstance(self.alpha, (int, float))
            or not math.isfinite(self.alpha)
            or self.alpha <= 0
        ):
            raise ValueError(f"LoRA alpha must be a positive number, got {self.alpha!r}")
        targets = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
        unknown = [t for t in targets if t not in TARGETS]
        if unknown or not targets or len(set(targets)) != len(targets):
            raise ValueError(
                f"LoRA targets must be distinct names among {', '.join(TARGETS)}, got "
                f"{list(targets)!r}"
            )
        # canonical order, so equal sets of targets give equal configs and the same layout
        object.__setattr__(self, "targets", tuple(t for t in TARGETS if t in targets))
        object.__setattr__(self, "alpha", float(self.alpha))

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "alpha": self.alpha, "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LoRAConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(f"unknown LoRAConfig key(s): {', '.join(unknown)}")
        return cls(**values)


def adapter_shapes(gpt_config: GPTConfig, config: LoRAConfig) -> dict[str, tuple[int, int]]:
    """Every adapter tensor's name and shape (PEFT's layouts), in flat-buffer order: block by
    block, target by target, lora_A (r, in) then lora_B (out, r)."""
    base = parameter_shapes(gpt_config)
    shapes = {}
    for i in range(gpt_config.n_layer):
        for target in config.targets:
            c_in, c_out = base[f"h.{i}.{target}.weight"]
            shapes[f"h.{i}.{target}.lora_A.weight"] = (config.rank, c_in)
            shapes[f"h.{i}.{target}.lora_B.weight"] = (c_out, config.rank)
    return shapes


class LoRAAdapters:
    """The adapters of one GPT: A and B of every adapted projection in ``flat_params``, their
    gradients in ``flat_grads``, and named views of both (``params``, ``grads``).

    ``modules`` are the adapted projections (``h.0.attn.c_attn``, …); :meth:`A` and :meth:`B`
    give a module's factors in the (in, out) layout that :func:`lora_forward` takes.
    """

    def __init__(
        self, gpt_config: GPTConfig, config: LoRAConfig, *, dtype: Any = np.float32, seed: int = 0
    ) -> None:
        self.config = config
        self.dtype = np.dtype(dtype)
        self.shapes = adapter_shapes(gpt_config, config)
        n = sum(math.prod(s) for s in self.shapes.values())
        self.flat_params = np.zeros(n, dtype=self.dtype)
        self.flat_grads = np.zeros(n, dtype=self.dtype)
        self.params = _views(self.flat_params, self.shapes)
        self.grads = _views(self.flat_grads, self.shapes)
        self.modules = frozenset(
            name.removesuffix(".lora_A.weight") for name in self.shapes if "lora_A" in name
        )
        self.scale = config.scale
        self.init_weights(seed)

    def init_weights(self, seed: int) -> None:
        """PEFT's initialisation: A uniform in ±1/√C_in (kaiming_uniform_ with a=√5 on the
        (r, C_in) weight), B zero, so the adapted model starts equal to its base. A is drawn in
        layout order from ``seed``."""
        rng = np.random.default_rng(seed)
        for name, p in self.params.items():
            if name.endswith(".lora_A.weight"):
                bound = 1.0 / math.sqrt(p.shape[1])
                p[...] = rng.uniform(-bound, bound, size=p.shape)
            else:
                p[...] = 0

    def A(self, module: str) -> np.ndarray:
        """The module's A in the (in, out) layout: (C_in, r), a view."""
        return self.params[module + ".lora_A.weight"].T

    def B(self, module: str) -> np.ndarray:
        """The module's B in the (in, out) layout: (r, C_out), a view."""
        return self.params[module + ".lora_B.weight"].T

    @property
    def num_params(self) -> int:
        return self.flat_params.size

    def decay_mask(self) -> np.ndarray:
        """Weight decay applies to every adapter entry (all are 2-D weights)."""
        return np.ones(self.flat_params.size, dtype=self.dtype)

    def delta(self, module: str) -> np.ndarray:
        """The update scale · A @ B (C_in, C_out) the module's weight gets when merged, computed
        in float64 and rounded once to the adapters' dtype."""
        A, B = self.A(module).astype(np.float64), self.B(module).astype(np.float64)
        return (self.scale * (A @ B)).astype(self.dtype)

    def merge_into(self, params: Mapping[str, np.ndarray]) -> None:
        """Fold every adapter into the base weights in ``params`` (a GPT's ``params``):
        W ← W + scale · A @ B."""
        for module in sorted(self.modules):
            params[module + ".weight"][...] += self.delta(module)

    def state_dict(self) -> dict[str, np.ndarray]:
        """PEFT names and layouts; the arrays are views into ``flat_params`` (copy to keep)."""
        return dict(self.params)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy ``state`` in after checking every name, shape and dtype (every difference is
        reported at once, and nothing is copied unless all match)."""
        problems = [f"missing: {n}" for n in self.shapes if n not in state]
        problems += [f"unexpected: {n}" for n in state if n not in self.shapes]
        for name, value in state.items():
            if name not in self.shapes:
                continue
            value = np.asarray(value)
            if value.shape != self.shapes[name]:
                problems.append(f"{name}: shape {value.shape}, expected {self.shapes[name]}")
            if value.dtype != self.dtype:
                problems.append(f"{name}: dtype {value.dtype}, expected {self.dtype}")
        if problems:
            raise ValueError(
                "LoRAAdapters.load_state_dict: state does not match the adapters:\n  "
                + "\n  ".join(problems)
            )
        for name, value in state.items():
            self.params[name][...] = value


@contextmanager
def merged(model: Any) -> Iterator[Any]:
    """Inside the block ``model`` has its adapters folded into its weights and none attached;
    afterwards the weights are bit-for-bit what they were and the adapters are back. For code
    that reads the base weights directly (``tinygradlm.generate``'s KV-cache forward). A model
    without adapters passes through unchanged."""
    lora = model.lora
    if lora is None:
        yield model
        return
    saved = {m + ".weight": model.params[m + ".weight"].copy() for m in lora.modules}
    lora.merge_into(model.params)
    model.lora = None
    try:
        yield model
    finally:
        for name, weight in saved.items():
            model.params[name][...] = weight
        model.lora = lora
