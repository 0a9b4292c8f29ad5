"""The shape of a GPT-2 model: :class:`GPTConfig`, the named ``PRESETS``, and
:func:`parameter_shapes`, every parameter's name and shape in flat-buffer order."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..schema import Rule, check_table, problems_message

# each size below 2**31: NumPy indexes with it and the shards store token ids as uint32; the
# memory a size needs is checked separately (tinygradlm.model.training_bytes)
_SIZE_LIMIT = 2**31 - 1

RULES: dict[str, Rule] = {
    "vocab_size": Rule("int", 1, _SIZE_LIMIT, doc="tokens in the vocabulary (V)"),
    "block_size": Rule("int", 1, _SIZE_LIMIT, doc="the longest sequence (maxT)"),
    "n_layer": Rule("int", 1, _SIZE_LIMIT, doc="transformer blocks (L)"),
    "n_head": Rule("int", 1, _SIZE_LIMIT, doc="attention heads per block (NH)"),
    "n_embd": Rule("int", 1, _SIZE_LIMIT, doc="the width (C), divisible by n_head"),
    "padded_vocab_size": Rule("optional_int", 1, _SIZE_LIMIT, doc="embedding rows (Vp ≥ V)"),
    "layer_norm_epsilon": Rule("number", 0, 1, open_low=True, doc="the layer norms' epsilon"),
    "residual": Rule("bool", doc="the blocks' residual connections"),
    "norm": Rule("str", choices=("pre", "post", "none"), doc="where the blocks' layer norms sit"),
}


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
    residual: bool = True
    norm: str = "pre"

    def __post_init__(self) -> None:
        problems = check_table(self.to_dict(), RULES, "GPTConfig.")
        if problems:
            raise ConfigError(problems_message(problems, None))
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        if self.padded_vocab_size is not None and self.padded_vocab_size < self.vocab_size:
            raise ConfigError(
                f"GPTConfig.padded_vocab_size ({self.padded_vocab_size}) must be at least "
                f"vocab_size ({self.vocab_size})"
            )

    @property
    def Vp(self) -> int:
        """Rows of the embedding table: the padded vocabulary size."""
        return self.padded_vocab_size or self.vocab_size

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def parameter_count(self) -> int:
        """Numbers in the flat parameter buffer (padding rows included), in closed form: what
        :func:`parameter_shapes` tiles, computed without building it (a config can be checked
        against the machine's memory before anything is allocated)."""
        C, L = self.n_embd, self.n_layer
        per_block = 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + 2 * C + (C * 4 * C + 4 * C)
        per_block += 4 * C * C + C  # mlp.c_proj
        return self.Vp * C + self.block_size * C + L * per_block + 2 * C

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GPTConfig:
        """A named configuration (see ``PRESETS``), with fields overridden by keyword."""
        if name not in PRESETS:
            raise ValueError(f"unknown GPT preset {name!r}: choose one of {', '.join(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GPTConfig:
        """Build from a mapping, rejecting keys that are not fields (a typo is an error) and
        values of the wrong type, every problem at once (a ConfigError)."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"GPTConfig: expected a table, got {type(values).__name__}")
        problems = check_table(values, RULES, "GPTConfig.")
        if problems:
            raise ConfigError(problems_message(problems, None))
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
