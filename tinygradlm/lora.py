"""LoRA (Hu et al., 2021): a trainable low-rank update beside a frozen linear layer.

    y = x @ W + b  +  scale · (x @ A) @ B          A (C, r), B (r, OC), scale = alpha / r

The frozen layer's weight W (C, OC) is left alone; only A and B train, r·(C + OC) numbers
instead of C·OC. B starts at zero, so an adapted model starts as the very function of its base.
After training the update folds into the weight, W ← W + scale · A @ B (:meth:`LoRAAdapters.
merge_into`), and the model is a plain GPT again.

The layer itself, ``lora_forward`` / ``lora_backward``, is a hand-derived pair in
``tinygradlm.ref.lora`` with the other layers (derivation there and in docs/finetuning.md);
``GPT`` calls it inside its linear layers. This module holds:

- :class:`LoRAConfig` (rank, alpha, which projections) and :class:`LoRAAdapters`: every
  adapter's A and B in one :class:`~tinygradlm.params.ParameterBuffer` (flat parameters, flat
  gradients, named views), as ``GPT`` keeps its own parameters, so an ``AdamW`` runs on the
  adapters alone;
- :func:`merged`, a context manager that folds the adapters in for a block and restores the
  exact weights afterwards (for code that reads the weights directly, such as an export).

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

from .params import ParameterBuffer

# the projections an adapter can sit on, in a block's order, with their weights' (in, out)
# widths in units of the model width C (GPT-2's layout: tinygradlm.model.parameter_shapes)
_TARGET_WIDTHS = {
    "attn.c_attn": (1, 3),
    "attn.c_proj": (1, 1),
    "mlp.c_fc": (1, 4),
    "mlp.c_proj": (4, 1),
}
TARGETS = tuple(_TARGET_WIDTHS)


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


def adapter_shapes(gpt_config: Any, config: LoRAConfig) -> dict[str, tuple[int, int]]:
    """Every adapter tensor's name and shape (PEFT's layouts) for a model of ``gpt_config`` (a
    ``GPTConfig``), in flat-buffer order: block by block, target by target, lora_A (r, in) then
    lora_B (out, r)."""
    C = gpt_config.n_embd
    shapes = {}
    for i in range(gpt_config.n_layer):
        for target in config.targets:
            c_in, c_out = (C * k for k in _TARGET_WIDTHS[target])
            shapes[f"h.{i}.{target}.lora_A.weight"] = (config.rank, c_in)
            shapes[f"h.{i}.{target}.lora_B.weight"] = (c_out, config.rank)
    return shapes


class LoRAAdapters:
    """The adapters of one GPT (of config ``gpt_config``): A and B of every adapted projection
    in ``flat_params``, their gradients in ``flat_grads``, and named views of both (``params``,
    ``grads``), all of one :class:`~tinygradlm.params.ParameterBuffer` (``buffer``).

    ``modules`` are the adapted projections (``h.0.attn.c_attn``, …); :meth:`A` and :meth:`B`
    give a module's factors in the (in, out) layout that ``lora_forward`` takes.
    """

    def __init__(
        self, gpt_config: Any, config: LoRAConfig, *, dtype: Any = np.float32, seed: int = 0
    ) -> None:
        self.config = config
        self.buffer = ParameterBuffer(adapter_shapes(gpt_config, config), dtype)
        self.dtype = self.buffer.dtype
        self.shapes = self.buffer.shapes
        self.flat_params, self.flat_grads = self.buffer.flat_params, self.buffer.flat_grads
        self.params, self.grads = self.buffer.params, self.buffer.grads
        self.modules = frozenset(
            name.removesuffix(".lora_A.weight") for name in self.shapes if "lora_A" in name
        )
        self.scale = config.scale
        # the directory whose weights these adapters apply to (PEFT's base_model_name_or_path,
        # written with them; tinygradlm.checkpoint.peft), None when no directory holds them
        self.base_model: str | None = None
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

    def decay_ranges(self) -> np.ndarray:
        """Weight decay applies to every adapter entry (all are 2-D weights): one range."""
        return self.buffer.ranges(lambda name, shape: True)

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
        return self.buffer.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Copy ``state`` in after checking every name, shape and dtype (every difference is
        reported at once, and nothing is copied unless all match)."""
        self.buffer.load_state_dict(
            state, "LoRAAdapters.load_state_dict: state does not match the adapters"
        )


@contextmanager
def merged(model: Any) -> Iterator[Any]:
    """Inside the block ``model`` has its adapters folded into its weights and none attached;
    afterwards the weights are bit-for-bit what they were and the adapters are back. For code
    that reads the base weights directly (an export in another format). A model without
    adapters passes through unchanged."""
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
