"""The reverse-mode autograd engine: ``Tensor``, the graph it records, and ``backward``.

Each operation computes its result with NumPy and, when any input requires a gradient, records
a node: the parent tensors and a closure ``backward(g) -> (grad for each parent)``. ``backward``
walks the nodes in reverse topological order (found iteratively, so a graph of any depth works),
calls each closure once, and accumulates what it returns.

The closures compute with Tensor ops, on Tensors: the upstream gradient ``g``, the parents, and
the values of the forward pass they need (:func:`forward_value`). One table of rules then serves
two purposes. A first-order backward runs them under ``no_grad``, where a Tensor op is a thin
wrapper around the NumPy call, and stores plain arrays in ``.grad``. ``backward(create_graph=True)``
runs them with grad mode on, so the gradient is recorded as a graph of its own and can be
differentiated again (Hessian-vector products, gradient penalties; see ``docs/higher_order.md``).

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
from .grad_mode import is_grad_enabled, set_grad_enabled
from .shapes import describe, is_advanced_index, normalize_axes, reduced_shape, unbroadcast

GradFn = Callable[["Tensor"], Sequence["Tensor | None"]]


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


def forward_value(value: np.ndarray, recompute: Callable[[], Tensor]) -> Tensor:
    """A value of the forward pass that a backward closure needs (an output, an intermediate).

    A first-order backward runs under ``no_grad`` and takes the array the forward pass kept.
    A backward being recorded (``create_graph=True``) needs the value as a function of the op's
    inputs, so that the second derivative flows through it too: it is recomputed with Tensor ops.
    Capturing the array there instead would treat it as a constant and cut the graph.
    """
    return recompute() if is_grad_enabled() else Tensor(value)


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
        # an ndarray after a first-order backward, a Tensor after backward(create_graph=True)
        self.grad: np.ndarray | Tensor | None = None
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
            a, b = self.data.dtype, other.data.dtype
            if a == b:
                return other
            if a.kind == "f" and b.kind == "f":
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
        if other.data.dtype.kind == "f" and a.data.dtype.kind != "f":
            a = Tensor(a.data.astype(other.dtype))  # an integer tensor never requires grad
        a_shape, b_shape = a.data.shape, other.data.shape
        if a_shape != b_shape and b_shape:  # equal shapes and scalars always broadcast
            try:
                np.broadcast_shapes(a_shape, b_shape)
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

    def backward(self, grad: Any = None, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) · ``grad`` into ``.grad`` of every leaf that requires it.

        ``grad`` defaults to 1 for a single-element tensor and must be given otherwise. The graph
        is kept, so backward may run again (gradients then add up, as with repeated use).

        With ``create_graph=False`` (the default) ``.grad`` is an ndarray. With
        ``create_graph=True`` the backward is itself recorded: ``.grad`` is a Tensor whose graph
        reaches back to the leaves (and to ``grad``, when that is a Tensor requiring a gradient),
        so it can be differentiated again:

        >>> x = Tensor([3.0], requires_grad=True)
        >>> (x * x * x).sum().backward(create_graph=True)
        >>> x.grad.data                    # 3x² at 3
        array([27.], dtype=float32)
        >>> dx = x.grad
        >>> x.grad = None
        >>> dx.sum().backward()
        >>> x.grad                         # 6x at 3
        array([18.], dtype=float32)
        """
        seed = self._seed(grad)
        backpropagate([self], [seed], create_graph=create_graph)

    def _seed(self, grad: Any) -> Tensor:
        """The cotangent backward starts from, as a Tensor of this tensor's shape and dtype."""
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
            return Tensor(np.ones(self.shape, dtype=self.dtype))
        seed = grad if isinstance(grad, Tensor) else Tensor(np.asarray(grad))
        if seed.shape != self.shape:
            raise ValueError(
                f"backward(): gradient of shape {seed.shape} does not match the tensor's "
                f"shape {self.shape}"
            )
        if seed.dtype != self.dtype:
            seed = (
                seed.astype(self.dtype)
                if seed.requires_grad
                else Tensor(seed.data, dtype=self.dtype)
            )
        return seed

    # -- arithmetic ----------------------------------------------------------------------------
    # A gradient a parent does not need is not computed (None): matmul's input gradient, the
    # constant side of `x * 2.0`.

    def __add__(self, other: Any) -> Tensor:
        a, b = self._operands(other, "add")
        return Tensor._make(a.data + b.data, (a, b), lambda g: (g, g), "add")

    def __sub__(self, other: Any) -> Tensor:
        a, b = self._operands(other, "sub")
        return Tensor._make(
            a.data - b.data, (a, b), lambda g: (g, -g if b.requires_grad else None), "sub"
        )

    def __mul__(self, other: Any) -> Tensor:
        a, b = self._operands(other, "mul")

        def backward(g: Tensor) -> tuple[Tensor | None, Tensor | None]:
            return (g * b if a.requires_grad else None, g * a if b.requires_grad else None)

        return Tensor._make(a.data * b.data, (a, b), backward, "mul")

    def __truediv__(self, other: Any) -> Tensor:
        a, b = self._operands(other, "div")
        out = a.data / b.data

        def backward(g: Tensor) -> tuple[Tensor | None, Tensor | None]:
            # d(x/y)/dx = 1/y;  d(x/y)/dy = -x/y² = -out/y
            ga = g / b if a.requires_grad else None
            gb = -g * forward_value(out, lambda: a / b) / b if b.requires_grad else None
            return ga, gb

        return Tensor._make(out, (a, b), backward, "div")

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
        """x**p for a scalar p. d/dx = p·x^(p−1), except that p = 0 has gradient 0 and p = 1
        gradient 1 everywhere: the general rule would give 0·x⁻¹ = NaN at x = 0 for p = 0."""
        if isinstance(exponent, Tensor) or np.ndim(exponent) != 0:
            raise TypeError("pow takes a scalar exponent; use exp(log(x) * y) for a tensor one")
        p = float(exponent)

        def backward(g: Tensor) -> tuple[Tensor]:
            if p == 0.0:
                return (Tensor(np.zeros(self.shape, dtype=self.dtype)),)
            if p == 1.0:
                return (g,)
            return (g * p * self ** (p - 1.0),)

        return Tensor._make(self.data**p, (self,), backward, f"pow({p:g})")

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
        return Tensor._make(out, (self,), lambda g: (g * forward_value(out, self.exp),), "exp")

    def log(self) -> Tensor:
        return Tensor._make(np.log(self.data), (self,), lambda g: (g / self,), "log")

    def sqrt(self) -> Tensor:
        out = np.sqrt(self.data)
        return Tensor._make(
            out, (self,), lambda g: (g * 0.5 / forward_value(out, self.sqrt),), "sqrt"
        )

    def abs(self) -> Tensor:
        # sign(x) is piecewise constant: a constant of the backward graph
        return Tensor._make(
            np.abs(self.data), (self,), lambda g: (g * Tensor(np.sign(self.data)),), "abs"
        )

    def tanh(self) -> Tensor:
        out = np.tanh(self.data)

        def backward(g: Tensor) -> tuple[Tensor]:
            t = forward_value(out, self.tanh)
            return (g * (1.0 - t * t),)

        return Tensor._make(out, (self,), backward, "tanh")

    def sigmoid(self) -> Tensor:
        x = self.data
        # two branches so that exp never overflows: σ(x) = 1/(1+e^-x) = e^x/(1+e^x)
        e = np.exp(-np.abs(x))
        out = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)

        def backward(g: Tensor) -> tuple[Tensor]:
            s = forward_value(out, self.sigmoid)
            return (g * s * (1.0 - s),)

        return Tensor._make(out, (self,), backward, "sigmoid")

    def relu(self) -> Tensor:
        """max(x, 0); the gradient at exactly 0 is taken as 0."""
        return Tensor._make(np.maximum(self.data, 0), (self,), lambda g: (g * (self > 0),), "relu")

    def gelu(self) -> Tensor:
        """GELU, GPT-2's tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))."""
        x = self.data
        t_kept = np.tanh(GELU_SCALE * (x + GELU_CUBIC * x**3))
        out = 0.5 * x * (1.0 + t_kept)

        def backward(g: Tensor) -> tuple[Tensor]:
            # d/dx = 0.5·(1 + t) + 0.5·x·(1 - t²)·du/dx,  du/dx = √(2/π)·(1 + 3·0.044715·x²)
            t = forward_value(t_kept, lambda: (GELU_SCALE * (self + GELU_CUBIC * self**3)).tanh())
            du = GELU_SCALE * (1.0 + 3.0 * GELU_CUBIC * self * self)
            return (g * (0.5 * (1.0 + t) + 0.5 * self * (1.0 - t * t) * du),)

        return Tensor._make(out, (self,), backward, "gelu")

    # softmax and log_softmax are single ops with hand-written backwards, one node instead of
    # five; tinygradlm.model.witness composes them from max/exp/sum/log, and the tests hold the
    # two equal

    def softmax(self, axis: int = -1) -> Tensor:
        """exp(x) / Σ exp(x) along ``axis``, computed after subtracting the maximum (stable)."""
        z = self.data - self.data.max(axis=axis, keepdims=True)
        e = np.exp(z)
        out = e / e.sum(axis=axis, keepdims=True)

        def backward(g: Tensor) -> tuple[Tensor]:
            # dy_i/dx_j = y_i (δ_ij - y_j), so the VJP is y ⊙ (g - Σ_j g_j y_j)
            y = forward_value(out, lambda: self.softmax(axis))
            return (y * (g - (g * y).sum(axis=axis, keepdims=True)),)

        return Tensor._make(out, (self,), backward, "softmax")

    def log_softmax(self, axis: int = -1) -> Tensor:
        """x - log Σ exp(x) along ``axis``, with the maximum subtracted first (stable)."""
        z = self.data - self.data.max(axis=axis, keepdims=True)
        out = z - np.log(np.exp(z).sum(axis=axis, keepdims=True))

        def backward(g: Tensor) -> tuple[Tensor]:
            # d(log_softmax)_i/dx_j = δ_ij - softmax_j, so the VJP is g - softmax ⊙ Σ g
            y = forward_value(out, lambda: self.log_softmax(axis))
            return (g - y.exp() * g.sum(axis=axis, keepdims=True),)

        return Tensor._make(out, (self,), backward, "log_softmax")

    # -- reductions ----------------------------------------------------------------------------

    def sum(self, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
        axes = normalize_axes(axis, self.ndim)
        shape, kept = self.shape, reduced_shape(self.shape, axes)
        out = self.data.sum(axis=axes, keepdims=keepdims)
        return Tensor._make(
            np.asarray(out), (self,), lambda g: (g.reshape(kept).broadcast_to(shape),), "sum"
        )

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
        kept = reduced_shape(self.shape, axes)
        x = self.data
        centered_kept = x - x.mean(axis=axes, keepdims=True)
        out = np.asarray(
            (centered_kept * centered_kept).sum(axis=axes, keepdims=keepdims) / (count - ddof)
        )

        def backward(g: Tensor) -> tuple[Tensor]:
            # d var/dx_i = 2 (x_i - mean) / (N - ddof); the mean's own dependence sums to zero
            centered = forward_value(centered_kept, lambda: self - self.mean(axes, keepdims=True))
            return (g.reshape(kept) * centered * (2.0 / (count - ddof)),)

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
        extreme = reduce(x, axis=axes, keepdims=True)
        out = extreme if keepdims else np.squeeze(extreme, axis=axes)

        def backward(g: Tensor) -> tuple[Tensor]:
            # which elements attain the extremum is piecewise constant: a constant share
            hit = x == extreme
            share = (hit / hit.sum(axis=axes, keepdims=True)).astype(x.dtype)
            return (g.reshape(extreme.shape) * Tensor(share),)

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
        inverse = tuple(int(i) for i in np.argsort([a % self.ndim for a in perm]))
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

        With integer arrays this is a gather; its backward is :func:`scatter_add`, which
        accumulates, so an index that appears twice receives both gradients (and whose own
        backward is this gather again).
        """
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        try:
            out = self.data[index]
        except IndexError as e:
            raise IndexError(f"indexing a tensor of shape {self.shape}: {e}") from None
        shape = self.shape
        return Tensor._make(
            np.asarray(out), (self,), lambda g: (scatter_add(g, index, shape),), "getitem"
        )

    def index_add(self, index: Any, values: Any) -> Tensor:
        """A copy of this tensor with ``values`` added at ``index`` (accumulating over repeated
        positions of an integer-array index). The gradient is ``g`` for this tensor and the
        gather ``g[index]`` for ``values``."""
        values = self._coerce(values, "index_add")
        out = self.data.copy()
        if is_advanced_index(index):
            np.add.at(out, index, values.data)
        else:
            out[index] += values.data
        return Tensor._make(out, (self, values), lambda g: (g, g[index]), "index_add")


# --------------------------------------------------------------------------------------------
# scatter and matmul
# --------------------------------------------------------------------------------------------


def scatter_add(values: Tensor, index: Any, shape: tuple[int, ...]) -> Tensor:
    """Zeros of ``shape`` with ``values`` added at ``index``: the adjoint of ``x[index]``.

    With integer or boolean arrays in ``index`` the additions accumulate (``np.add.at``), so a
    repeated index receives the sum. The backward is the gather ``g[index]``, whose backward is
    this scatter again, so indexing can be differentiated any number of times.

    >>> scatter_add(Tensor([1.0, 2.0, 3.0]), [0, 2, 0], (3,)).data
    array([4., 0., 2.], dtype=float32)
    """
    full = np.zeros(shape, dtype=values.dtype)
    if is_advanced_index(index):
        np.add.at(full, index, values.data)  # accumulates over repeated indices
    else:
        full[index] = values.data  # basic indexing selects each element at most once
    return Tensor._make(full, (values,), lambda g: (g[index],), "scatter_add")


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

    def backward(g: Tensor) -> tuple[Tensor | None, Tensor | None]:
        # a 1-D a is a row (1, k), a 1-D b a column (k, 1); restore the axes they dropped from
        # the output, so that g is (..., n, m)
        A = a if a.ndim > 1 else a.reshape(1, -1)  # (..., n, k)
        B = b if b.ndim > 1 else b.reshape(-1, 1)  # (..., k, m)
        if b.ndim == 1:
            g = g.reshape(*g.shape, 1)
        if a.ndim == 1:
            g = g.reshape(*g.shape[:-1], 1, g.shape[-1])
        ga = gb = None
        if a.requires_grad:
            ga = g @ B.swapaxes(-1, -2)  # (..., n, k)
            ga = ga if a.ndim > 1 else ga.reshape(*ga.shape[:-2], ga.shape[-1])
        if b.requires_grad:
            gb = A.swapaxes(-1, -2) @ g  # (..., k, m)
            gb = gb if b.ndim > 1 else gb.reshape(gb.shape[:-1])
        return ga, gb

    return Tensor._make(out, (a, b), backward, "matmul")


# --------------------------------------------------------------------------------------------
# the backward walk
# --------------------------------------------------------------------------------------------


def backpropagate(
    outputs: Sequence[Tensor],
    seeds: Sequence[Tensor],
    *,
    create_graph: bool = False,
    inputs: Sequence[Tensor] | None = None,
) -> dict[int, Tensor]:
    """Propagate the cotangents ``seeds`` of ``outputs`` back through the recorded graph.

    Every node's gradient is complete when the reverse topological order reaches it, because
    all its consumers come earlier in that order. Without ``inputs`` (``Tensor.backward``) each
    leaf, and each non-leaf that called ``retain_grad``, accumulates its gradient into ``.grad``;
    with ``inputs``, ``.grad`` is left alone and the gradients of those tensors are returned,
    keyed by ``id`` (an input that no output depends on is absent).

    The closures run with grad mode set to ``create_graph``: off, the Tensor ops in them record
    nothing and ``.grad`` receives ndarrays; on, they record the gradient's own graph and
    ``.grad`` receives Tensors.
    """
    wanted = None if inputs is None else {id(t) for t in inputs}
    found: dict[int, Tensor] = {}
    grads: dict[int, Tensor] = {}
    for out, seed in zip(outputs, seeds, strict=True):
        grads[id(out)] = seed if id(out) not in grads else grads[id(out)] + seed
    with set_grad_enabled(create_graph):
        for node in reversed(_topological_order(outputs)):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if wanted is None:
                if node._backward is None or node._retain:
                    _accumulate_grad(node, g, create_graph)
            elif id(node) in wanted:
                found[id(node)] = g
            if node._backward is None:
                continue
            for parent, pg in zip(node._parents, node._backward(g), strict=True):
                if pg is None or not parent.requires_grad:
                    continue
                if pg.data.shape != parent.data.shape:
                    pg = unbroadcast(pg, parent.data.shape)
                if pg.data.dtype != parent.data.dtype:
                    raise RuntimeError(
                        f"internal error: backward of {node._op!r} produced a {pg.dtype} gradient "
                        f"for a {parent.dtype} input"
                    )
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg
    return found


def _accumulate_grad(node: Tensor, g: Tensor, create_graph: bool) -> None:
    """Add ``g`` into ``node.grad``: an ndarray (a copy: ``g`` may be a view of another
    gradient) for a first-order backward, the Tensor itself for a recorded one."""
    if create_graph:
        node.grad = g if node.grad is None else node.grad + g
    else:
        node.grad = g.data.copy() if node.grad is None else node.grad + g.data


def _topological_order(outputs: Sequence[Tensor]) -> list[Tensor]:
    """Nodes that require grad, each after all of its parents (iterative depth-first)."""
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(out, False) for out in reversed(outputs)]
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
