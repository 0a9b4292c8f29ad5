"""Parameters in one flat buffer, gradients in a second, and a named view of each tensor in both.

As in llm.c, every tensor of a model is a slice of one contiguous array, so clipping, an
optimizer step, an allreduce or a checkpoint is one operation on one array, while the layers
read the tensors by name:

    >>> buffer = ParameterBuffer({"w": (2, 3), "b": (3,)})
    >>> buffer.flat_params.shape, buffer.params["w"].shape
    ((9,), (2, 3))
    >>> buffer.params["b"][...] = 1; buffer.flat_params[6:].tolist()
    [1.0, 1.0, 1.0]

``GPT`` (``tinygradlm.model``) and ``LoRAAdapters`` (``tinygradlm.lora``) each keep their
tensors in one. :func:`load_views` is the checked copy both ``load_state_dict`` methods use:
it reports every missing, unexpected, mis-shaped and mis-typed entry at once, and copies
nothing unless all match.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


def named_views(flat: np.ndarray, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Views of ``flat`` (1-D) tiled by ``shapes`` in order: name -> a view of that shape."""
    views, offset = {}, 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        views[name] = flat[offset : offset + size].reshape(shape)
        offset += size
    if offset != flat.size:
        raise ValueError(f"the shapes tile {offset} numbers but the buffer has {flat.size}")
    return views


def load_views(targets: Mapping[str, np.ndarray], state: Mapping[str, Any], what: str) -> None:
    """Copy every ``state[name]`` into ``targets[name]`` after checking all of them.

    The names must be the same, and each array must have its target's shape and dtype. Every
    problem is listed in one ValueError that starts with ``what``; nothing is copied unless
    there is none.
    """
    given = {name: np.asarray(value) for name, value in state.items()}
    problems = [f"missing: {n}" for n in targets if n not in given]
    problems += [f"unexpected: {n}" for n in given if n not in targets]
    for name, value in given.items():
        if name not in targets:
            continue
        expected = targets[name]
        if value.shape != expected.shape:
            problems.append(f"{name}: shape {value.shape}, expected {expected.shape}")
        if value.dtype != expected.dtype:
            problems.append(f"{name}: dtype {value.dtype}, expected {expected.dtype}")
    if problems:
        raise ValueError(f"{what}:\n  " + "\n  ".join(problems))
    for name, value in given.items():
        targets[name][...] = value


class ParameterBuffer:
    """``flat_params`` and ``flat_grads`` (1-D, ``dtype``), tiled in order by ``shapes``
    (name -> shape); ``params`` and ``grads`` are the named views into them."""

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], dtype: Any = np.float32) -> None:
        self.shapes = dict(shapes)
        self.dtype = np.dtype(dtype)
        n = sum(math.prod(shape) for shape in self.shapes.values())
        self.flat_params = np.zeros(n, dtype=self.dtype)
        self.flat_grads = np.zeros(n, dtype=self.dtype)
        self.params = self.views(self.flat_params)
        self.grads = self.views(self.flat_grads)

    @property
    def size(self) -> int:
        return self.flat_params.size

    def views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Named views of any array laid out like the parameters (a mask, an optimizer
        moment, a second copy of the weights)."""
        return named_views(flat, self.shapes)

    def mask(
        self, selected: Callable[[str, tuple[int, ...]], bool], dtype: Any = None
    ) -> np.ndarray:
        """A flat array of ``dtype`` (the parameters' when None): 1 on the tensors for which
        ``selected(name, shape)``, else 0 (a weight-decay mask, a gradient mask)."""
        mask = np.zeros(self.size, dtype=self.dtype if dtype is None else dtype)
        for name, view in self.views(mask).items():
            if selected(name, self.shapes[name]):
                view[...] = 1
        return mask

    def ranges(self, selected: Callable[[str, tuple[int, ...]], bool]) -> np.ndarray:
        """The [start, end) ranges of the flat buffer, (n, 2) int64 in order, that the tensors
        for which ``selected(name, shape)`` tile (neighbours merged): a per-tensor choice,
        such as where weight decay applies, in a few numbers rather than one per parameter."""
        flags, offset = [], 0
        for name, shape in self.shapes.items():
            size = math.prod(shape)
            flags.append((offset, offset + size, bool(selected(name, shape))))
            offset += size
        return _merged([(start, end) for start, end, chosen in flags if chosen])

    def decay_ranges(self) -> np.ndarray:
        """The ranges of the 2-D tensors (matmul weights and embeddings), where weight decay
        applies (:meth:`ranges`; a per-parameter mask was one byte per parameter, 124 MB at
        GPT-2 124M)."""
        return self.ranges(lambda name, shape: len(shape) == 2)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The parameter views by name (views: copy to keep)."""
        return dict(self.params)

    def load_state_dict(self, state: Mapping[str, Any], what: str = "load_state_dict") -> None:
        """Copy ``state`` in, checked by :func:`load_views` (all problems at once, or no copy)."""
        load_views(self.state_dict(), state, what)


def _merged(ranges: list[tuple[int, int]]) -> np.ndarray:
    """Sorted [start, end) ranges as an (n, 2) int64 array, empty ones dropped and touching
    ones merged."""
    merged: list[list[int]] = []
    for start, end in ranges:
        if end <= start:
            continue
        if merged and merged[-1][1] == start:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return np.array(merged, dtype=np.int64).reshape(-1, 2)


def ranges_of_mask(mask: np.ndarray) -> np.ndarray:
    """The [start, end) ranges (n, 2) int64 where the flat ``mask`` is nonzero."""
    on = np.concatenate(([0], (np.asarray(mask).reshape(-1) != 0).astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(on))  # where a run of nonzeros starts, then where it ends
    return edges.astype(np.int64).reshape(-1, 2)


def shard_ranges(ranges: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``ranges`` cut to the slice [lo, hi) of the flat buffer and counted from lo: those of a
    shard (ZeRO-1: each rank updates one slice of the buffers)."""
    cut = np.clip(ranges, lo, hi) - lo
    return _merged([(int(start), int(end)) for start, end in cut])
