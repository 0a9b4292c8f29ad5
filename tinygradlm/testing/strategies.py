"""Hypothesis strategies for gradient tests: shapes that fit, arrays kept away from kinks.

Random arrays make poor gradient-check inputs: a value within eps of 0 puts relu or abs on its
kink, two values within eps of each other put max on a tie, and a row of nearly equal values gives
layer norm a variance near zero. The array strategies here build values that keep a stated margin
from those points *by construction* (sorted, spaced, then shuffled), never by filtering, so
hypothesis's health checks pass and generation stays fast.

Arrays are drawn from a seed (``numpy.random.default_rng``): hypothesis shrinks the seed rather
than individual values, but the falsifying example it prints is still the array itself.

Importing this module needs hypothesis (``pip install tinygradlm[testing]``); ``import
tinygradlm.testing`` does not.

Example:
    >>> import numpy as np
    >>> from hypothesis import given
    >>> from tinygradlm.testing import strategies as tst
    >>> @given(tst.arrays(tst.shapes(min_dims=1), min_abs=0.1))
    ... def test_relu_grad_is_zero_or_one(x):
    ...     assert np.all(np.abs(x) >= 0.1)
    >>> test_relu_grad_is_zero_or_one()
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = [
    "arrays",
    "broadcastable_shapes",
    "gpt_configs",
    "matmul_shapes",
    "normalizable_arrays",
    "positive_arrays",
    "seq_lens",
    "shapes",
]

Shape = tuple[int, ...]


# --------------------------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------------------------


def shapes(
    min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 5
) -> st.SearchStrategy[Shape]:
    """Array shapes with ``min_dims..max_dims`` axes of ``min_side..max_side`` elements each."""
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    )


def broadcastable_shapes(
    min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 5
) -> st.SearchStrategy[tuple[Shape, Shape]]:
    """Pairs ``(shape_a, shape_b)`` that NumPy broadcasts together: ranks may differ and either
    side may have size-1 axes, so both the "prepended axis" and the "stretched axis" cases of
    an unbroadcast (the sum a backward must do) come up."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=2, min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    ).map(lambda b: (tuple(b.input_shapes[0]), tuple(b.input_shapes[1])))


@st.composite
def matmul_shapes(
    draw: st.DrawFn, max_batch_dims: int = 2, max_side: int = 5
) -> tuple[Shape, Shape]:
    """Pairs ``(shape_a, shape_b)`` valid for ``np.matmul``: vector·vector, vector·matrix,
    matrix·vector, matrix·matrix, and batched operands whose batch axes broadcast (different
    ranks, size-1 axes)."""
    side = st.integers(1, max_side)
    m, k, n = draw(side), draw(side), draw(side)
    a_is_vector, b_is_vector = draw(st.booleans()), draw(st.booleans())
    batch_a, batch_b = draw(
        hnp.mutually_broadcastable_shapes(
            num_shapes=2, min_dims=0, max_dims=max_batch_dims, min_side=1, max_side=3
        )
    ).input_shapes
    shape_a = (k,) if a_is_vector else (*batch_a, m, k)
    shape_b = (k,) if b_is_vector else (*batch_b, k, n)
    return shape_a, shape_b


def _shape_from(draw: st.DrawFn, shape: Shape | int | st.SearchStrategy[Shape]) -> Shape:
    if isinstance(shape, st.SearchStrategy):
        shape = draw(shape)
    return (shape,) if isinstance(shape, int) else tuple(shape)


# --------------------------------------------------------------------------------------------
# arrays kept away from kinks
# --------------------------------------------------------------------------------------------


def _spread(
    rng: np.random.Generator, n: int, low: float, high: float, min_abs: float, min_gap: float
) -> np.ndarray:
    """``n`` values, pairwise at least ``min_gap`` apart and at least ``min_abs`` from zero, in
    [low, high] when they fit (otherwise ``high`` is raised until they do), in random order.

    The allowed values are [low, −min_abs] ∪ [max(low, min_abs), high]. Lay both pieces end to end
    on a line t ∈ [0, neg + pos], draw ``n`` sorted points on it, shortened by the gaps, add
    gap·rank to space them, and map t back to x. Every map is increasing and never shrinks a
    distance, so the spacing survives.
    """
    neg = max(0.0, -min_abs - low)  # length of [low, −min_abs]
    pos_start = max(low, min_abs)
    pos = max(0.0, high - pos_start)  # length of [pos_start, high]
    if neg + pos == 0 and n > 0:
        raise ValueError(f"no value in [{low}, {high}] is at least {min_abs} from zero")
    room = neg + pos - (n - 1) * min_gap
    if room < 0:  # the gaps do not fit: extend upward, keeping low (positive stays positive)
        room = 0.1 * (n - 1) * min_gap
    t = np.sort(rng.uniform(0.0, room, size=n)) + min_gap * np.arange(n)
    x = np.where(t < neg, low + t, pos_start + (t - neg))
    return rng.permutation(x)


@st.composite
def arrays(
    draw: st.DrawFn,
    shape: Shape | int | st.SearchStrategy[Shape],
    dtype: Any = np.float64,
    low: float = -2.0,
    high: float = 2.0,
    min_abs: float | None = None,
    min_gap: float | None = None,
    axis: int | None = None,
    min_std: float | None = None,
) -> np.ndarray:
    """Float arrays with values in [low, high], kept a margin away from common kinks.

    - ``min_abs``: every |value| ≥ min_abs (relu, abs: no value near the kink at 0).
    - ``min_gap``: values pairwise at least ``min_gap`` apart (max, min, sort: no ties), among
      all elements, or along ``axis`` only (each slice separately) when ``axis`` is given. When
      that many values at that spacing do not fit in [low, high], ``high`` is raised (``low`` is
      kept) rather than failing, since the shape is often drawn by another strategy.
    - ``min_std``: every row (slice along the last axis, of at least 2 elements) has a
      population standard deviation ≥ min_std: inputs for layer norm, far from variance 0.
      Implemented as a spacing along the last axis: n values pairwise g apart have at least the
      variance of n equally spaced points, g²(n²−1)/12.

    ``shape`` is a tuple, an int, or a strategy of shapes. The margins are widened by a few units
    of rounding error of ``dtype`` first, so they hold in the returned dtype (float32 too).

    Example:
        >>> from hypothesis import given
        >>> @given(arrays((4, 5), min_gap=0.05, axis=-1))
        ... def test_rows_have_no_ties(x):
        ...     assert np.all(np.diff(np.sort(x, axis=-1), axis=-1) >= 0.05)
        >>> test_rows_have_no_ties()
    """
    if not low < high:
        raise ValueError(f"need low < high, got low={low}, high={high}")
    if min_abs is not None and -min_abs < low and high < min_abs:
        raise ValueError(f"no value in [{low}, {high}] is at least {min_abs} from zero")
    shape = _shape_from(draw, shape)
    if min_std is not None:
        n = shape[-1] if shape else 1
        if n < 2 or (axis is not None and axis % len(shape) != len(shape) - 1):
            raise ValueError(
                f"min_std needs rows (the last axis) of at least 2 elements; shape {shape}"
                + ("" if axis is None else f", axis {axis}")
            )
        axis = -1
        min_gap = max(min_gap or 0.0, min_std * float(np.sqrt(12.0 / (n * n - 1))))
    # rounding to dtype moves each value by up to eps·|x|/2: widen the margins to survive it
    rounding = 4 * float(np.finfo(dtype).eps) * max(abs(low), abs(high), 1.0)
    min_abs = 0.0 if min_abs is None else min_abs + rounding
    min_gap = 0.0 if min_gap is None else min_gap + 2 * rounding
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if axis is None or len(shape) == 0:
        values = _spread(rng, int(np.prod(shape)), low, high, min_abs, min_gap).reshape(shape)
    else:
        moved = np.moveaxis(np.empty(shape), axis, -1)  # (..., n): one row per slice
        n_rows = int(np.prod(moved.shape[:-1]))
        rows = [_spread(rng, moved.shape[-1], low, high, min_abs, min_gap) for _ in range(n_rows)]
        values = np.moveaxis(np.array(rows, dtype=np.float64).reshape(moved.shape), -1, axis)
    return values.astype(dtype)


def positive_arrays(
    shape: Shape | int | st.SearchStrategy[Shape],
    dtype: Any = np.float64,
    low: float = 0.1,
    high: float = 2.0,
    min_gap: float | None = None,
) -> st.SearchStrategy[np.ndarray]:
    """Arrays with every value in [low, high], low > 0: inputs for log, sqrt, division."""
    if low <= 0:
        raise ValueError(f"positive_arrays needs low > 0, got {low}")
    return arrays(shape, dtype=dtype, low=low, high=high, min_gap=min_gap)


def normalizable_arrays(
    shape: Shape | int | st.SearchStrategy[Shape],
    dtype: Any = np.float64,
    low: float = -2.0,
    high: float = 2.0,
    min_std: float = 0.1,
) -> st.SearchStrategy[np.ndarray]:
    """Arrays whose every row (slice along the last axis) has standard deviation ≥ ``min_std``:
    inputs for layer norm, far from the variance-0 singularity. Same as
    ``arrays(shape, min_std=min_std)``; rows need at least 2 elements."""
    return arrays(shape, dtype=dtype, low=low, high=high, min_std=min_std)


# --------------------------------------------------------------------------------------------
# model configurations
# --------------------------------------------------------------------------------------------


@st.composite
def gpt_configs(
    draw: st.DrawFn,
    max_vocab_size: int = 16,
    max_block_size: int = 8,
    max_layers: int = 2,
    max_heads: int = 2,
    max_head_size: int = 4,
) -> dict[str, int]:
    """Small GPT configurations: a dict with ``vocab_size``, ``block_size``, ``n_layer``,
    ``n_head`` and ``n_embd`` (a multiple of ``n_head``), ready for ``GPTConfig(**config)``.

    Draw a sequence length with :func:`seq_lens`.
    """
    n_head = draw(st.integers(1, max_heads))
    head_size = draw(st.integers(1, max_head_size))
    return {
        "vocab_size": draw(st.integers(2, max_vocab_size)),
        "block_size": draw(st.integers(1, max_block_size)),
        "n_layer": draw(st.integers(1, max_layers)),
        "n_head": n_head,
        "n_embd": n_head * head_size,
    }


def seq_lens(config: dict[str, int]) -> st.SearchStrategy[int]:
    """Sequence lengths T with 1 ≤ T ≤ ``config["block_size"]``.

    Example:
        >>> from hypothesis import given, strategies as st
        >>> @given(st.data())
        ... def test_fits(data):
        ...     config = data.draw(gpt_configs())
        ...     assert 1 <= data.draw(seq_lens(config)) <= config["block_size"]
        >>> test_fits()
    """
    return st.integers(1, config["block_size"])
