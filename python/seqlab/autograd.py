"""Tensor and reverse-mode autograd tape.

A :class:`Tensor` wraps a NumPy array (float32 for values, int64 for token ids).
Every differentiable operation records one node on the tape: the output tensor keeps
its inputs and a ``backward`` closure mapping the output gradient to one gradient per
input. The heavy operations (recurrent cells, linear layers, attention, losses) are
single nodes whose forward and backward are ``seqlab._core`` kernels, so the tape
stays short; the elementwise arithmetic here is plain vectorised NumPy.

Protocol for operation authors (see :func:`make_result` and :func:`grad_buffer`):

* ``backward(grad_out)`` returns a tuple with one entry per input: an ndarray of
  the input's shape, or ``None`` when that input needs no gradient or when the
  gradient was already accumulated in place into the buffer from
  :func:`grad_buffer` (the way kernels add parameter gradients without a copy).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from . import _core

ArrayLike = np.ndarray | float | int | Sequence[Any]
BackwardFn = Callable[[np.ndarray], Sequence[np.ndarray | None]]

_state = threading.local()


def is_grad_enabled() -> bool:
    """Whether operations are being recorded on the tape (False inside ``no_grad``)."""
    return getattr(_state, "grad_enabled", True)


class no_grad:
    """Context manager (and decorator) that stops recording operations on the tape."""

    def __enter__(self) -> None:
        self._previous = is_grad_enabled()
        _state.grad_enabled = False

    def __exit__(self, *exc: object) -> None:
        _state.grad_enabled = self._previous

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with no_grad():
                return fn(*args, **kwargs)

        wrapper.__name__ = getattr(fn, "__name__", "wrapper")
        wrapper.__doc__ = fn.__doc__
        return wrapper


def _as_array(data: Any, dtype: Any = None) -> np.ndarray:
    """Converts data to a contiguous ndarray: floats to float32, integers to int64."""
    if isinstance(data, Tensor):
        data = data.data
    arr = np.asarray(data, dtype=dtype)
    if dtype is None:
        if arr.dtype.kind == "f" and arr.dtype != np.float32:
            arr = arr.astype(np.float32)
        elif arr.dtype.kind in "iu" and arr.dtype != np.int64:
            arr = arr.astype(np.int64)
        elif arr.dtype.kind not in "fiub":
            raise TypeError(f"cannot make a tensor from an array of dtype {arr.dtype}")
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return arr


class Tensor:
    """An n-dimensional array that records the operations applied to it.

    Attributes:
        data: the values, a C-contiguous ndarray (float32, or int64 for indices).
        grad: the accumulated gradient, an ndarray of ``data.shape``, or None.
        requires_grad: whether gradients flow to this tensor.
    """

    __slots__ = ("data", "grad", "requires_grad", "_backward", "_inputs", "__weakref__")
    __array_priority__ = 1000.0  # ndarray <op> Tensor defers to Tensor's reflected op

    def __init__(self, data: ArrayLike, requires_grad: bool = False) -> None:
        self.data: np.ndarray = _as_array(data)
        if requires_grad and self.data.dtype != np.float32:
            raise TypeError(f"only float32 tensors can require gradients, got dtype {self.data.dtype}")
        self.grad: np.ndarray | None = None
        self.requires_grad: bool = bool(requires_grad)
        self._backward: BackwardFn | None = None
        self._inputs: tuple[Tensor, ...] = ()

    # ----------------------------------------------------------------- basics
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def is_leaf(self) -> bool:
        """True for tensors not produced by a recorded operation (inputs, parameters)."""
        return self._backward is None

    def numpy(self) -> np.ndarray:
        """The values as an ndarray (shares memory with the tensor)."""
        return self.data

    def item(self) -> float:
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item(): tensor has {self.data.size} elements, expected 1")
        return self.data.reshape(()).item()

    def detach(self) -> Tensor:
        """A tensor sharing the values but cut from the tape."""
        return Tensor(self.data, requires_grad=False)

    def requires_grad_(self, flag: bool = True) -> Tensor:
        if flag and self.data.dtype != np.float32:
            raise TypeError(f"only float32 tensors can require gradients, got {self.data.dtype}")
        self.requires_grad = flag
        return self

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.data if dtype is None else self.data.astype(dtype)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({np.array2string(self.data, precision=4, threshold=20)}{grad})"

    def backward(self, grad: ArrayLike | None = None) -> None:
        """Accumulates d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        Args:
            grad: gradient of the final objective with respect to this tensor, of
                ``self.shape``; may be omitted for a one-element tensor (taken as 1).
        """
        backward(self, grad)

    # ------------------------------------------------------------- arithmetic
    def __add__(self, other: Any) -> Tensor:
        return add(self, other)

    def __radd__(self, other: Any) -> Tensor:
        return add(other, self)

    def __sub__(self, other: Any) -> Tensor:
        return sub(self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return sub(other, self)

    def __mul__(self, other: Any) -> Tensor:
        return mul(self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return mul(other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return div(self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return div(other, self)

    def __neg__(self) -> Tensor:
        return mul(self, -1.0)

    def __pow__(self, exponent: float) -> Tensor:
        return power(self, exponent)

    def __matmul__(self, other: Any) -> Tensor:
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return matmul(other, self)

    def __getitem__(self, index: Any) -> Tensor:
        return getitem(self, index)

    # ------------------------------------------------------------- reductions
    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        return tensor_sum(self, axis, keepdims)

    def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        return tensor_mean(self, axis, keepdims)

    # ------------------------------------------------------------------ shape
    def reshape(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return reshape(self, shape)

    def transpose(self, *axes: int) -> Tensor:
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return transpose(self, axes or None)

    @property
    def T(self) -> Tensor:  # noqa: N802 (NumPy's name)
        return transpose(self, None)

    # Elementwise helpers in the methods users reach for.
    def exp(self) -> Tensor:
        return exp(self)

    def log(self) -> Tensor:
        return log(self)

    def sqrt(self) -> Tensor:
        return power(self, 0.5)

    def abs(self) -> Tensor:
        return absolute(self)


def tensor(data: ArrayLike, requires_grad: bool = False) -> Tensor:
    """Makes a tensor from an ndarray, a number or nested sequences.

    Floating data becomes float32 and integer data int64 (a copy is made only when
    the dtype or layout changes).
    """
    return Tensor(data, requires_grad=requires_grad)


# ---------------------------------------------------------------- the tape
def make_result(data: np.ndarray, inputs: Sequence[Tensor], backward_fn: BackwardFn) -> Tensor:
    """Wraps an operation's output, recording ``backward_fn`` when any input needs grad."""
    out = Tensor.__new__(Tensor)
    out.data = data if type(data) is np.ndarray else np.asarray(data)
    out.grad = None
    out._inputs = ()
    out._backward = None
    out.requires_grad = is_grad_enabled() and any(t.requires_grad for t in inputs)
    if out.requires_grad:
        out._inputs = tuple(inputs)
        out._backward = backward_fn
    return out


def grad_buffer(t: Tensor) -> np.ndarray | None:
    """A buffer a kernel may add ``t``'s gradient into, or None if t needs none.

    For a leaf (a parameter) this is ``t.grad`` itself, created as zeros when
    absent, and the backward returns None for it. For a recorded intermediate it is
    a fresh zero array that the backward must return as that input's gradient
    (:func:`returned_grad` does the bookkeeping).
    """
    if not t.requires_grad:
        return None
    if t.is_leaf:
        if t.grad is None:
            t.grad = np.zeros_like(t.data)
        return t.grad
    return np.zeros_like(t.data)


def returned_grad(t: Tensor, buffer: np.ndarray | None) -> np.ndarray | None:
    """What a backward returns for an input whose gradient went to ``grad_buffer(t)``."""
    return None if t.is_leaf else buffer


def _topological_order(root: Tensor) -> list[Tensor]:
    order: list[Tensor] = []
    visited: set[int] = set()
    stack: list[tuple[Tensor, Iterator[Tensor]]] = [(root, iter(root._inputs))]
    visited.add(id(root))
    while stack:
        node, children = stack[-1]
        for child in children:
            if id(child) not in visited and child.requires_grad:
                visited.add(id(child))
                stack.append((child, iter(child._inputs)))
                break
        else:
            stack.pop()
            order.append(node)
    return order


def _accumulate_leaf(t: Tensor, g: np.ndarray) -> None:
    if t.grad is None:
        t.grad = np.array(g, dtype=np.float32, copy=True).reshape(t.shape)
    else:
        t.grad += g


# Sums of at least this many floats go through the kernel pool (NumPy's add is single-threaded).
_PARALLEL_ADD_SIZE = 1 << 16


def _sum_arrays(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b (a new array, NumPy's broadcasting and bits); two large C-contiguous float32
    arrays of one shape (a residual connection, the gradients of a tensor used twice) are
    added by ``_core.add_forward`` on every thread of the pool."""
    if (
        a.size >= _PARALLEL_ADD_SIZE
        and a.shape == b.shape
        and a.dtype == np.float32
        and b.dtype == np.float32
        and a.flags.c_contiguous
        and b.flags.c_contiguous
    ):
        return _core.add_forward(a, b)
    return a + b


def backward(root: Tensor, grad: ArrayLike | None = None) -> None:
    """Runs reverse mode from ``root``; see :meth:`Tensor.backward`."""
    if not root.requires_grad:
        raise RuntimeError(
            "backward(): the tensor does not require grad (no input had requires_grad=True, "
            "or it was computed under no_grad())"
        )
    if grad is None:
        if root.data.size != 1:
            raise ValueError(
                f"backward(): grad must be given for a tensor of shape {root.shape} "
                "(it can be omitted only for one-element tensors)"
            )
        g0 = np.ones_like(root.data)
    else:
        g0 = _as_array(grad, np.float32)
        if g0.shape != root.shape:
            raise ValueError(f"backward(): grad has shape {g0.shape}, expected {root.shape}")
    if root.is_leaf:
        _accumulate_leaf(root, g0)
        return
    grads: dict[int, np.ndarray] = {id(root): g0}
    with no_grad():
        for node in reversed(_topological_order(root)):
            g = grads.pop(id(node), None)
            if g is None or node.is_leaf:
                continue
            input_grads = node._backward(g)  # type: ignore[misc]
            if len(input_grads) != len(node._inputs):
                raise RuntimeError(
                    f"internal error: backward returned {len(input_grads)} gradients "
                    f"for {len(node._inputs)} inputs"
                )
            for inp, ig in zip(node._inputs, input_grads):
                if ig is None or not inp.requires_grad:
                    continue
                if inp.is_leaf:
                    _accumulate_leaf(inp, ig)
                elif id(inp) in grads:
                    grads[id(inp)] = _sum_arrays(grads[id(inp)], ig)
                else:
                    grads[id(inp)] = ig


# ------------------------------------------------------ elementwise and shape
def _wrap(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sums g over the axes that broadcasting added or stretched to reach g.shape."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _float_operands(a: Any, b: Any) -> tuple[Tensor, Tensor]:
    """Tensors for a binary op; numbers and ndarrays become float32 constants."""
    ta = a if isinstance(a, Tensor) else Tensor(_as_array(a, np.float32))
    tb = b if isinstance(b, Tensor) else Tensor(_as_array(b, np.float32))
    for t in (ta, tb):
        if t.data.dtype != np.float32:
            raise TypeError(f"arithmetic needs float32 tensors, got dtype {t.data.dtype}")
    return ta, tb


def add(a: Any, b: Any) -> Tensor:
    """Elementwise a + b with NumPy broadcasting."""
    ta, tb = _float_operands(a, b)
    return make_result(
        _sum_arrays(ta.data, tb.data),
        (ta, tb),
        lambda g: (_unbroadcast(g, ta.shape), _unbroadcast(g, tb.shape)),
    )


def sub(a: Any, b: Any) -> Tensor:
    """Elementwise a - b with NumPy broadcasting."""
    ta, tb = _float_operands(a, b)
    return make_result(
        ta.data - tb.data,
        (ta, tb),
        lambda g: (_unbroadcast(g, ta.shape), _unbroadcast(-g, tb.shape)),
    )


def mul(a: Any, b: Any) -> Tensor:
    """Elementwise a * b with NumPy broadcasting."""
    ta, tb = _float_operands(a, b)
    if ta is tb:  # a square: one gradient pass, 2 g a (== g a + g a exactly), not two and a sum
        return make_result(ta.data * ta.data, (ta,), lambda g: ((g * ta.data) * np.float32(2.0),))
    return make_result(
        ta.data * tb.data,
        (ta, tb),
        lambda g: (
            _unbroadcast(g * tb.data, ta.shape) if ta.requires_grad else None,
            _unbroadcast(g * ta.data, tb.shape) if tb.requires_grad else None,
        ),
    )


def div(a: Any, b: Any) -> Tensor:
    """Elementwise a / b with NumPy broadcasting."""
    ta, tb = _float_operands(a, b)
    out = ta.data / tb.data
    return make_result(
        out,
        (ta, tb),
        lambda g: (
            _unbroadcast(g / tb.data, ta.shape) if ta.requires_grad else None,
            _unbroadcast(-g * out / tb.data, tb.shape) if tb.requires_grad else None,
        ),
    )


def power(a: Tensor, exponent: float) -> Tensor:
    """Elementwise a ** exponent for a scalar exponent."""
    ta = _wrap(a)
    p = float(exponent)
    return make_result(
        np.power(ta.data, p).astype(np.float32, copy=False),
        (ta,),
        lambda g: ((g * p * np.power(ta.data, p - 1.0)).astype(np.float32, copy=False),),
    )


def exp(a: Tensor) -> Tensor:
    """Elementwise e ** a."""
    out = np.exp(a.data)
    return make_result(out, (a,), lambda g: (g * out,))


def log(a: Tensor) -> Tensor:
    """Elementwise natural logarithm."""
    return make_result(np.log(a.data), (a,), lambda g: (g / a.data,))


def absolute(a: Tensor) -> Tensor:
    """Elementwise |a| (gradient sign(a), 0 at 0)."""
    return make_result(np.abs(a.data), (a,), lambda g: (g * np.sign(a.data),))


def matmul(a: Any, b: Any) -> Tensor:
    """Matrix product with NumPy's ``@`` semantics (batched, broadcasting leading axes)."""
    ta, tb = _float_operands(a, b)
    if ta.ndim == 0 or tb.ndim == 0:
        raise ValueError(f"matmul: operands must have at least 1 dimension, got {ta.shape} @ {tb.shape}")
    try:
        out = ta.data @ tb.data
    except ValueError as e:
        raise ValueError(f"matmul: shapes {ta.shape} and {tb.shape} do not align") from e

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        a2 = ta.data[None, :] if ta.ndim == 1 else ta.data
        b2 = tb.data[:, None] if tb.ndim == 1 else tb.data
        g2 = g
        if tb.ndim == 1:  # first, so that 1-d @ 1-d (a scalar g) becomes (1, 1)
            g2 = np.expand_dims(g2, -1)
        if ta.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        ga = gb = None
        if ta.requires_grad:
            ga = g2 @ np.swapaxes(b2, -1, -2)
            ga = _unbroadcast(ga, a2.shape).reshape(ta.shape)
        if tb.requires_grad:
            gb = np.swapaxes(a2, -1, -2) @ g2
            gb = _unbroadcast(gb, b2.shape).reshape(tb.shape)
        return ga, gb

    return make_result(out, (ta, tb), backward)


def _norm_axes(axis: int | tuple[int, ...] | None, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    for ax in axes:
        if not -ndim <= ax < max(ndim, 1):
            raise ValueError(f"axis {ax} is out of range for a tensor with {ndim} dimensions")
    return tuple(sorted(ax % max(ndim, 1) for ax in axes))


def tensor_sum(a: Tensor, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
    """Sum over ``axis`` (all axes when None)."""
    axes = _norm_axes(axis, a.ndim)
    out = np.asarray(a.data.sum(axis=axes, keepdims=keepdims), dtype=a.data.dtype)

    def backward(g: np.ndarray) -> tuple[np.ndarray]:
        if not keepdims:
            g = np.expand_dims(g, axes) if axes else g
        return (np.broadcast_to(g, a.shape).astype(np.float32),)

    return make_result(out, (a,), backward)


def tensor_mean(a: Tensor, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (all axes when None)."""
    axes = _norm_axes(axis, a.ndim)
    count = int(np.prod([a.shape[i] for i in axes])) if axes else 1
    if count == 0:
        raise ValueError(f"mean of an empty tensor of shape {a.shape}")
    if axes != tuple(range(a.ndim)):
        return tensor_sum(a, axis, keepdims) * np.float32(1.0 / count)
    # Mean of everything: one node whose backward fills the input's shape once.
    scale = np.float32(1.0 / count)
    out = np.asarray(np.asarray(a.data.sum(keepdims=keepdims), dtype=a.data.dtype) * scale, dtype=np.float32)
    return make_result(out, (a,), lambda g: (np.full(a.shape, np.float32(g.reshape(())) * scale),))


def reshape(a: Tensor, shape: tuple[int, ...]) -> Tensor:
    """The same values with a new shape (one dimension may be -1)."""
    try:
        out = a.data.reshape(shape)
    except ValueError as e:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {a.shape} into {shape}") from e
    return make_result(out, (a,), lambda g: (g.reshape(a.shape),))


def transpose(a: Tensor, axes: tuple[int, ...] | None = None) -> Tensor:
    """Permutes the axes (reverses them when ``axes`` is None); the result is contiguous."""
    if axes is not None and sorted(ax % max(a.ndim, 1) for ax in axes) != list(range(a.ndim)):
        raise ValueError(f"transpose: axes {axes} are not a permutation of {a.ndim} dimensions")
    out = np.asarray(np.transpose(a.data, axes), order="C")
    inverse = None if axes is None else tuple(np.argsort([ax % a.ndim for ax in axes]))
    return make_result(out, (a,), lambda g: (np.transpose(g, inverse),))


def getitem(a: Tensor, index: Any) -> Tensor:
    """Indexing and slicing with NumPy's rules (repeated indices accumulate gradients)."""
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    out = np.asarray(a.data[index], order="C")  # a scalar stays 0-d, as in NumPy

    def backward(g: np.ndarray) -> tuple[np.ndarray]:
        full = np.zeros_like(a.data)
        np.add.at(full, index, g)
        return (full,)

    return make_result(out, (a,), backward)


def concatenate(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Joins tensors along an existing axis."""
    ts = [_wrap(t) for t in tensors]
    if not ts:
        raise ValueError("concatenate: needs at least one tensor")
    try:
        out = np.concatenate([t.data for t in ts], axis=axis)
    except ValueError as e:
        raise ValueError(f"concatenate: shapes {[t.shape for t in ts]} do not fit along axis {axis}") from e
    bounds = np.cumsum([t.shape[axis] for t in ts])[:-1]
    return make_result(out, ts, lambda g: tuple(np.split(g, bounds, axis=axis)))


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Joins same-shaped tensors along a new axis."""
    ts = [_wrap(t) for t in tensors]
    if not ts:
        raise ValueError("stack: needs at least one tensor")
    shapes = {t.shape for t in ts}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors must have the same shape, got {[t.shape for t in ts]}")
    out = np.stack([t.data for t in ts], axis=axis)
    n = len(ts)
    return make_result(out, ts, lambda g: tuple(np.squeeze(p, axis=axis) for p in np.split(g, n, axis=axis)))
