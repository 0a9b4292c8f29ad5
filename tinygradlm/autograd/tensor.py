"""The reverse-mode autograd engine: ``Tensor``, the graph it records, and ``backward``.

Each operation computes its result with NumPy and, when any input requires a gradient, records
a node: the parent tensors and a closure ``backward(g) -> (grad for each parent)``. ``backward``
walks the nodes in reverse topological order (found iteratively, so a graph of any depth works),
calls each closure once, and accumulates what it returns.

Broadcasting is handled in exactly one place, :func:`unbroadcast`, called by the engine on every
gradient a closure returns: closures may return a gradient in the broadcast output shape and the
engine sums it back to the parent's shape.

Dtypes: floating data is float32 unless given as a float64 array (kept float64 end to end, which
gradient checks need); integer data stays integer (indices) and cannot require a gradient. Mixing
float32 and float64 tensors is an error: cast explicitly with ``.float()`` or ``.double()``.
Python scalars take the dtype of the tensor they meet.

This module is longer than most because it is one table: every primitive op is a method with
its vector-Jacobian product beside it (as HIPS autograd's ``numpy_vjps`` and tinygrad's gradient
table), and a reader checks the rules against each other in one place. Grad mode, the shape
helpers and ``numpy_op`` live in their own modules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..ref.gelu import GELU_CUBIC, GELU_SCALE  # GPT-2's tanh GELU, defined once
from .grad_mode import is_grad_enabled
from .shapes import describe, expand_reduced, normalize_axes, unbroadcast

GradFn = Callable[[np.ndarray], Sequence[np.ndarray | None]]


# --------------------------------------------------------------------------------------------
# grad mode
# --------------------------------------------------------------------------------------------

# --------------------------------------------------------------------------------------------
# dtype helper
# --------------------------------------------------------------------------------------------


def _as_array(data: Any) -> np.ndarray:
    """Convert ``data`` to an ndarray: float64 arrays stay float64, other floats become float32."""
    if isinstance(data, Tensor):
        return data.data
    if isinstance(data, np.ndarray):
        arr = data
    elif isinstance(data, np.generic):
        arr = np.asarray(data)
    else:
        arr = np.asarray(data)
        if arr.dtype.kind == "f":  # Python floats and lists of them: float32 by default
            arr = arr.astype(np.float32)
    if arr.dtype.kind == "f" and arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)  # float16 and longdouble are stored as float32
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"Tensor data must be numeric or boolean, got dtype {arr.dtype}")
    return arr


# --------------------------------------------------------------------------------------------
# Tensor
# --------------------------------------------------------------------------------------------


class Tensor:
    """An ndarray with an optional gradient and the record of how it was computed.

    >>> x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad
    array([2., 4., 6.], dtype=float32)
    """

    __slots__ = ("_backward", "_op", "_parents", "_retain", "data", "grad", "requires_grad")
    __array_priority__ = 1000  # ndarray (op) Tensor defers to Tensor's reflected operators

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None) -> None:
        arr = _as_array(data)
        if dtype is not None:
            arr = arr.astype(dtype, copy=False)
        if requires_grad and arr.dtype.kind != "f":
            raise TypeError(
                f"only floating-point tensors can require a gradient, got dtype {arr.dtype}"
            )
        self.data: np.ndarray = arr
        self.grad: np.ndarray | None = None
        self.requires_grad: bool = bool(requires_grad)
        self._parents: tuple[Tensor, ...] = ()
        self._backward: GradFn | None = None
        self._op: str = ""
        self._retain: bool = False

    # -- construction of graph nodes -----------------------------------------------------------

    @staticmethod
    def _make(data: np.ndarray, parents: Sequence[Tensor], backward: GradFn, op: str) -> Tensor:
        """The result of an op: records ``parents`` and ``backward`` when a gradient is needed."""
        out = Tensor.__new__(Tensor)
        out.data = data
        out.grad = None
        out._op = op
        out._retain = False
        if is_grad_enabled() and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out._parents = tuple(parents)
            out._backward = backward
        else:
            out.requires_grad = False
            out._parents = ()
            out._backward = None
        return out

    def _coerce(self, other: Any, op: str) -> Tensor:
        """Turn the other operand of a binary op into a Tensor of a compatible dtype."""
        if isinstance(other, Tensor):
            a, b = self.dtype, other.dtype
            if a.kind == "f" and b.kind == "f" and a != b:
                raise TypeError(
                    f"{op}: operands have different float dtypes ({describe(self)} and "
                    f"{describe(other)}); cast one explicitly with .float() or .double()"
                )
            if a.kind == "f" and b.kind != "f":
                return Tensor(other.data.astype(a))
            return other
        if isinstance(other, (bool, int, float, np.generic)) or (
            isinstance(other, np.ndarray) and other.ndim == 0
        ):
            dtype = self.dtype if self.dtype.kind == "f" else np.result_type(self.dtype, other)
            return Tensor(np.asarray(other, dtype=dtype))
        return self._coerce(Tensor(other), op)

    def _operands(self, other: Any, op: str) -> tuple[Tensor, Tensor]:
        """Both operands of a binary op, with one dtype and shapes that broadcast."""
        other = self._coerce(other, op)
        a = self
        if other.dtype.kind == "f" and a.dtype.kind != "f":
            a = Tensor(a.data.astype(other.dtype))  # an integer tensor never requires grad
        try:
            np.broadcast_shapes(a.shape, other.shape)
        except ValueError:
            raise ValueError(
                f"{op}: shapes do not broadcast: {describe(a)} and {describe(other)}"
            ) from None
        return a, other

    # -- properties ----------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def parents(self) -> tuple[Tensor, ...]:
        """The tensors this one was computed from (empty for a leaf or outside the graph)."""
        return self._parents

    @property
    def op(self) -> str:
        """The name of the op that made this tensor ("" for one made by the user)."""
        return self._op

    @property
    def is_leaf(self) -> bool:
        """A tensor made by the user rather than by an op that recorded a graph node."""
        return self._backward is None

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        extra = f", op={self._op}" if self._op else ""
        extra += ", requires_grad=True" if self.requires_grad else ""
        values = np.array2string(self.data, precision=4, threshold=20)
        return f"Tensor({values}, dtype={self.dtype}{extra})"

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied)."""
        return self.data

    def item(self) -> float | int | bool:
        return self.data.item()

    def detach(self) -> Tensor:
        """A tensor sharing the data but cut from the graph."""
        return Tensor(self.data)

    def astype(self, dtype: Any) -> Tensor:
        """Differentiable cast (the gradient is cast back to this tensor's dtype)."""
        src = self.dtype
        return Tensor._make(
            self.data.astype(dtype), (self,), lambda g: (g.astype(src),), f"astype({dtype})"
        )

    def float(self) -> Tensor:
        return self if self.dtype == np.float32 else self.astype(np.float32)

    def double(self) -> Tensor:
        return self if self.dtype == np.float64 else self.astype(np.float64)

    def retain_grad(self) -> Tensor:
        """Keep ``.grad`` on this non-leaf tensor after backward (leaves always keep theirs)."""
        self._retain = True
        return self

    def zero_grad(self) -> None:
        self.grad = None

    # -- backward ------------------------------------------------------------------------------

    def backward(self, grad: Any = None) -> None:
        """Accumulate d(self)/d(leaf) · ``grad`` into ``.grad`` of every leaf that requires it.

        ``grad`` defaults to 1 for a single-element tensor and must be given otherwise. The graph
        is kept, so backward may run again (gradients then add up, as with repeated use).
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of the computation "
                "had requires_grad=True (or it ran under no_grad())"
            )
        if grad is None:
            if self.size != 1:
                raise RuntimeError(
                    f"backward() on a non-scalar tensor of shape {self.shape} needs a gradient "
                    f"argument of that shape (the vector in the vector-Jacobian product)"
                )
            seed = np.ones(self.shape, dtype=self.dtype)
        else:
            seed = np.asarray(grad.data if isinstance(grad, Tensor) else grad)
            if seed.shape != self.shape:
                raise ValueError(
                    f"backward(): gradient of shape {seed.shape} does not match the tensor's "
                    f"shape {self.shape}"
                )
            seed = seed.astype(self.dtype, copy=False)

        grads: dict[int, np.ndarray] = {id(self): seed}
        for node in reversed(self._topological_order()):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._backward is None or node._retain:
                node.grad = g.copy() if node.grad is None else node.grad + g
            if node._backward is None:
                continue
            parent_grads = node._backward(g)
            for parent, pg in zip(node._parents, parent_grads, strict=True):
                if pg is None or not parent.requires_grad:
                    continue
                pg = unbroadcast(np.asarray(pg), parent.shape)
                if pg.dtype != parent.dtype:
                    raise RuntimeError(
                        f"internal error: backward of {node._op!r} produced a {pg.dtype} gradient "
                        f"for a {parent.dtype} input"
                    )
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg

    def _topological_order(self) -> list[Tensor]:
        """Nodes that require grad, each after all of its parents (iterative depth-first)."""
        order: list[Tensor] = []
        visited: set[int] = set()
        stack: list[tuple[Tensor, bool]] = [(self, False)]
        while stack:
            node, children_done = stack.pop()
            if children_done:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            for parent in node._parents:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
        return order

    # -- arithmetic ----------------------------------------------------------------------------

    def __add__(self, other: Any) -> Tensor:
        a, b = self._operands(other, "add")
        return Tensor._make(a.data + b.data, (a, b), lambda g: (g, g), "add")

    def __sub__(self, other: Any) -> Tensor:
        a, b = self._operands(other, "sub")
        return Tensor._make(a.data - b.data, (a, b), lambda g: (g, -g), "sub")

    def __mul__(self, other: Any) -> Tensor:
        a, b = self._operands(other, "mul")
        x, y = a.data, b.data
        return Tensor._make(x * y, (a, b), lambda g: (g * y, g * x), "mul")

    def __truediv__(self, other: Any) -> Tensor:
        a, b = self._operands(other, "div")
        x, y = a.data, b.data
        out = x / y
        # d(x/y)/dx = 1/y;  d(x/y)/dy = -x/y² = -out/y
        return Tensor._make(out, (a, b), lambda g: (g / y, -g * out / y), "div")

    def __radd__(self, other: Any) -> Tensor:
        return self._coerce(other, "add") + self

    def __rsub__(self, other: Any) -> Tensor:
        return self._coerce(other, "sub") - self

    def __rmul__(self, other: Any) -> Tensor:
        return self._coerce(other, "mul") * self

    def __rtruediv__(self, other: Any) -> Tensor:
        return self._coerce(other, "div") / self

    def __neg__(self) -> Tensor:
        return Tensor._make(-self.data, (self,), lambda g: (-g,), "neg")

    def __pow__(self, exponent: float | int) -> Tensor:
        if isinstance(exponent, Tensor) or np.ndim(exponent) != 0:
            raise TypeError("pow takes a scalar exponent; use exp(log(x) * y) for a tensor one")
        p = float(exponent)
        x = self.data
        out = x**p
        return Tensor._make(out, (self,), lambda g: (g * p * x ** (p - 1.0),), f"pow({p:g})")

    def __matmul__(self, other: Any) -> Tensor:
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return matmul(self._coerce(other, "matmul"), self)

    # comparisons give plain boolean tensors (masks), never part of the graph
    def __lt__(self, other: Any) -> Tensor:
        return Tensor(self.data < _as_array(other))

    def __le__(self, other: Any) -> Tensor:
        return Tensor(self.data <= _as_array(other))

    def __gt__(self, other: Any) -> Tensor:
        return Tensor(self.data > _as_array(other))

    def __ge__(self, other: Any) -> Tensor:
        return Tensor(self.data >= _as_array(other))

    # -- elementwise functions -----------------------------------------------------------------

    def exp(self) -> Tensor:
        out = np.exp(self.data)
        return Tensor._make(out, (self,), lambda g: (g * out,), "exp")

    def log(self) -> Tensor:
        x = self.data
        return Tensor._make(np.log(x), (self,), lambda g: (g / x,), "log")

    def sqrt(self) -> Tensor:
        out = np.sqrt(self.data)
        return Tensor._make(out, (self,), lambda g: (g * 0.5 / out,), "sqrt")

    def abs(self) -> Tensor:
        x = self.data
        return Tensor._make(np.abs(x), (self,), lambda g: (g * np.sign(x),), "abs")

    def tanh(self) -> Tensor:
        out = np.tanh(self.data)
        return Tensor._make(out, (self,), lambda g: (g * (1.0 - out * out),), "tanh")

    def sigmoid(self) -> Tensor:
        x = self.data
        # two branches so that exp never overflows: σ(x) = 1/(1+e^-x) = e^x/(1+e^x)
        e = np.exp(-np.abs(x))
        out = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)
        return Tensor._make(out, (self,), lambda g: (g * out * (1.0 - out),), "sigmoid")

    def relu(self) -> Tensor:
        """max(x, 0); the gradient at exactly 0 is taken as 0."""
        x = self.data
        return Tensor._make(np.maximum(x, 0), (self,), lambda g: (g * (x > 0),), "relu")

    def gelu(self) -> Tensor:
        """GELU, GPT-2's tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))."""
        x = self.data
        u = GELU_SCALE * (x + GELU_CUBIC * x**3)
        t = np.tanh(u)
        out = 0.5 * x * (1.0 + t)

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            # d/dx = 0.5·(1 + t) + 0.5·x·(1 - t²)·du/dx,  du/dx = √(2/π)·(1 + 3·0.044715·x²)
            du = GELU_SCALE * (1.0 + 3.0 * GELU_CUBIC * x * x)
            return (g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du),)

        return Tensor._make(out, (self,), backward, "gelu")

    # softmax and log_softmax are single ops with hand-written backwards: composed from
    # exp/sum/log they would be unstable and slow

    def softmax(self, axis: int = -1) -> Tensor:
        """exp(x) / Σ exp(x) along ``axis``, computed after subtracting the maximum (stable)."""
        z = self.data - self.data.max(axis=axis, keepdims=True)
        e = np.exp(z)
        y = e / e.sum(axis=axis, keepdims=True)

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            # dy_i/dx_j = y_i (δ_ij - y_j), so the VJP is y ⊙ (g - Σ_j g_j y_j)
            return (y * (g - (g * y).sum(axis=axis, keepdims=True)),)

        return Tensor._make(y, (self,), backward, "softmax")

    def log_softmax(self, axis: int = -1) -> Tensor:
        """x - log Σ exp(x) along ``axis``, with the maximum subtracted first (stable)."""
        z = self.data - self.data.max(axis=axis, keepdims=True)
        y = z - np.log(np.exp(z).sum(axis=axis, keepdims=True))

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            # d(log_softmax)_i/dx_j = δ_ij - softmax_j, so the VJP is g - softmax ⊙ Σ g
            return (g - np.exp(y) * g.sum(axis=axis, keepdims=True),)

        return Tensor._make(y, (self,), backward, "log_softmax")

    # -- reductions ----------------------------------------------------------------------------

    def sum(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        axes = normalize_axes(axis, self.ndim)
        shape = self.shape
        out = self.data.sum(axis=axes, keepdims=keepdims)

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            return (np.broadcast_to(expand_reduced(g, axes, keepdims), shape),)

        return Tensor._make(np.asarray(out), (self,), backward, "sum")

    def mean(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        axes = normalize_axes(axis, self.ndim)
        count = int(np.prod([self.shape[a] for a in axes]))
        return self.sum(axis=axes, keepdims=keepdims) * (1.0 / count)

    def var(
        self, axis: int | Sequence[int] | None = None, keepdims: bool = False, ddof: int = 0
    ) -> Tensor:
        """Variance, biased by default (``ddof=0``, as NumPy and layer norm use)."""
        axes = normalize_axes(axis, self.ndim)
        count = int(np.prod([self.shape[a] for a in axes]))
        x = self.data
        centered = x - x.mean(axis=axes, keepdims=True)
        out = np.asarray((centered * centered).sum(axis=axes, keepdims=keepdims) / (count - ddof))

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            # d var/dx_i = 2 (x_i - mean) / (N - ddof); the mean's own dependence sums to zero
            return (expand_reduced(g, axes, keepdims) * centered * (2.0 / (count - ddof)),)

        return Tensor._make(out.astype(x.dtype, copy=False), (self,), backward, "var")

    def max(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """Maximum. When several elements tie for the maximum they share the gradient evenly."""
        return self._extremum(np.max, axis, keepdims, "max")

    def min(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        """Minimum. Ties share the gradient evenly, as for :meth:`max`."""
        return self._extremum(np.min, axis, keepdims, "min")

    def _extremum(self, reduce: Callable, axis: Any, keepdims: bool, op: str) -> Tensor:
        if self.size == 0:
            raise ValueError(f"{op}() of an empty tensor of shape {self.shape}")
        axes = normalize_axes(axis, self.ndim)
        x = self.data
        kept = reduce(x, axis=axes, keepdims=True)
        out = kept if keepdims else np.squeeze(kept, axis=axes)

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            hit = x == kept
            share = hit / hit.sum(axis=axes, keepdims=True)
            return ((expand_reduced(g, axes, keepdims) * share).astype(x.dtype, copy=False),)

        return Tensor._make(np.asarray(out), (self,), backward, op)

    # -- shape ---------------------------------------------------------------------------------

    def reshape(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        src = self.shape
        try:
            out = self.data.reshape(shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {src} into {shape}") from None
        return Tensor._make(out, (self,), lambda g: (g.reshape(src),), "reshape")

    def transpose(self, *axes: Any) -> Tensor:
        """Permute axes (all axes reversed when none are given), like ``ndarray.transpose``."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        perm = tuple(range(self.ndim))[::-1] if not axes else tuple(int(a) for a in axes)
        if sorted(a % max(self.ndim, 1) for a in perm) != list(range(self.ndim)):
            raise ValueError(f"transpose: {perm} is not a permutation of the axes of {self.shape}")
        inverse = tuple(np.argsort([a % self.ndim for a in perm]))
        out = self.data.transpose(perm)
        return Tensor._make(out, (self,), lambda g: (g.transpose(inverse),), "transpose")

    permute = transpose

    @property
    def T(self) -> Tensor:
        return self.transpose()

    def swapaxes(self, a: int, b: int) -> Tensor:
        perm = list(range(self.ndim))
        perm[a], perm[b] = perm[b], perm[a]
        return self.transpose(perm)

    def broadcast_to(self, *shape: Any) -> Tensor:
        """A broadcast view; its gradient is summed back by the engine's :func:`unbroadcast`."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        try:
            out = np.broadcast_to(self.data, shape)
        except ValueError:
            raise ValueError(
                f"cannot broadcast a tensor of shape {self.shape} to {shape}"
            ) from None
        return Tensor._make(out, (self,), lambda g: (g,), "broadcast_to")

    expand = broadcast_to

    def __getitem__(self, index: Any) -> Tensor:
        """Indexing with ints, slices, None, Ellipsis and integer or boolean arrays.

        With integer arrays this is a gather; its backward scatters with accumulation, so an
        index that appears twice receives both gradients.
        """
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        try:
            out = self.data[index]
        except IndexError as e:
            raise IndexError(f"indexing a tensor of shape {self.shape}: {e}") from None
        items = index if isinstance(index, tuple) else (index,)
        advanced = any(isinstance(i, (np.ndarray, list)) for i in items)
        shape, dtype = self.shape, self.dtype

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            full = np.zeros(shape, dtype=dtype)
            if advanced:
                np.add.at(full, index, g)  # accumulates over repeated indices
            else:
                full[index] = g  # basic indexing selects each element at most once
            return (full,)

        return Tensor._make(np.asarray(out), (self,), backward, "getitem")


# --------------------------------------------------------------------------------------------
# matmul
# --------------------------------------------------------------------------------------------


def matmul(a: Any, b: Any) -> Tensor:
    """``a @ b`` with NumPy's rules: 1-D operands, 2-D, and batched with broadcast batch dims."""
    a = a if isinstance(a, Tensor) else Tensor(a)
    b = a._coerce(b, "matmul")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must not be scalars ({describe(a)}, {describe(b)})")
    try:
        out = np.matmul(a.data, b.data)
    except ValueError:
        raise ValueError(
            f"matmul: shapes do not align: {describe(a)} @ {describe(b)} (inner dimensions "
            f"{a.shape[-1]} and {b.shape[-2] if b.ndim > 1 else b.shape[0]})"
        ) from None
    A = a.data if a.ndim > 1 else a.data[None, :]  # (..., n, k)
    Bm = b.data if b.ndim > 1 else b.data[:, None]  # (..., k, m)

    def backward(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # restore the axes that 1-D operands dropped, so g is (..., n, m)
        if b.ndim == 1:
            g = g[..., None]
        if a.ndim == 1:
            g = g[..., None, :]
        ga = g @ np.swapaxes(Bm, -1, -2)  # (..., n, k)
        gb = np.swapaxes(A, -1, -2) @ g  # (..., k, m)
        if a.ndim == 1:
            ga = ga[..., 0, :]
        if b.ndim == 1:
            gb = gb[..., 0]
        return ga, gb

    return Tensor._make(out, (a, b), backward, "matmul")
