"""Dense layers, activations and normalisation: linear (with fused activation, in fp32 or
with bf16 GEMMs), embedding, sigmoid, tanh, relu, gelu, softmax, dropout, layer norm."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .. import _core
from ..autograd import Tensor, grad_buffer, make_result, returned_grad
from ..random import generator
from ._common import _float_input, _grad

GEMM_PRECISIONS = ("fp32", "bf16")
_GEMM_PRECISION: contextvars.ContextVar[str] = contextvars.ContextVar("gemm_precision", default="fp32")


def bf16_gemm_available() -> bool:
    """Whether the kernels run at a level with bf16 GEMMs (AVX512_BF16: ``x86-64-v4-bf16``,
    see :func:`seqlab.cpu_info`)."""
    return bool(_core.bf16_gemm_supported())


def bf16_gemm_engine() -> str:
    """What runs the bf16 GEMMs: ``"amx"`` (AMX-BF16 tiles, 16 x 16 x 32 per instruction,
    where the CPU has them and the OS grants this process their state; the environment
    variable ``SEQLAB_BF16_AMX=0``, read once at the first bf16 GEMM, turns them off),
    ``"avx512_bf16"`` (``vdpbf16ps`` register tiles) or ``"none"`` (no bf16 GEMMs at this
    kernel level). The engines give the same values up to the fp32 summation order."""
    return str(_core.bf16_gemm_engine())


def get_gemm_precision() -> str:
    """The precision :func:`linear` and :func:`linear_activation` use by default here:
    ``"fp32"`` unless inside :func:`gemm_precision`."""
    return _GEMM_PRECISION.get()


@contextlib.contextmanager
def gemm_precision(precision: str) -> Iterator[None]:
    """Runs the GEMMs of :func:`linear` and :func:`linear_activation` called inside the block
    (forward, and the backward of the nodes recorded there) in ``precision``: ``"fp32"``, or
    ``"bf16"`` (operands rounded to bf16, fp32 accumulation, fp32 outputs and gradients; the
    parameters stay fp32 master weights). Like ``torch.autocast`` for linear layers; nests.

    Raises ``ValueError`` for an unknown precision and ``RuntimeError`` for ``"bf16"`` on a
    kernel level without bf16 GEMMs (:func:`bf16_gemm_available`).
    """
    if precision not in GEMM_PRECISIONS:
        raise ValueError(f"precision: expected one of {GEMM_PRECISIONS}, got {precision!r}")
    if precision == "bf16":
        _require_bf16()
    token = _GEMM_PRECISION.set(precision)
    try:
        yield
    finally:
        _GEMM_PRECISION.reset(token)


def _require_bf16() -> None:
    if not bf16_gemm_available():
        info = _core.dispatch_info()
        has = dict(_core.cpu_features()).get("avx512_bf16", False)
        why = "SEQLAB_ARCH forces a lower level" if has else "this CPU lacks AVX512_BF16"
        raise RuntimeError(
            f"bf16 GEMMs need the x86-64-v4-bf16 kernel level (AVX512_BF16); the kernels run at "
            f"{info['level']} ({why})"
        )


def linear(input: Any, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias``.

    Shapes: input (*, in_features), weight (out_features, in_features),
    bias (out_features,) or None -> (*, out_features). One GEMM forward, one each for
    the input and weight gradients; the weight and bias gradients accumulate in place.
    Inside :func:`gemm_precision` the GEMMs run in its precision.
    """
    return linear_activation(input, weight, bias, "none")


def linear_bf16(input: Any, weight: Tensor, bias: Tensor | None = None, activation: str = "none") -> Tensor:
    """``activation(input @ weight.T + bias)`` with bf16 GEMMs, fp32 accumulation.

    Shapes as :func:`linear`. Forward: ``input`` and ``weight`` rounded to bf16 (round to
    nearest even, as ``torch.Tensor.bfloat16``), products accumulated in fp32, bias and
    activation in fp32, an fp32 output. Backward: ``grad_input = grad @ weight`` and
    ``grad_weight = grad^T @ input`` also as bf16 GEMMs with fp32 accumulation, the weight
    and bias gradients fp32 (accumulated in place into the fp32 master weights' gradients).
    Each GEMM packs its operands once per call, on AMX tiles where the CPU has them
    (:func:`bf16_gemm_engine`). Needs the ``x86-64-v4-bf16`` kernel
    level (``RuntimeError`` naming the level otherwise; :func:`bf16_gemm_available`).
    """
    return linear_activation(input, weight, bias, activation, precision="bf16")


LINEAR_ACTIVATIONS = ("none", "relu", "gelu", "gelu_tanh")


def linear_activation(
    input: Any, weight: Tensor, bias: Tensor | None = None, activation: str = "relu",
    precision: str | None = None,
) -> Tensor:
    """``activation(input @ weight.T + bias)`` as one fused op (one tape node).

    ``activation``: ``"relu"``, ``"gelu"`` (exact, torch's ``approximate='none'``),
    ``"gelu_tanh"`` (``approximate='tanh'``) or ``"none"`` (plain :func:`linear`). The same
    values as ``relu(linear(...))``/``gelu(linear(...))``, bit for bit: the kernel adds the
    bias and applies the activation to each block of rows right after its GEMM, while the
    block is in cache, instead of two more passes over memory and two more tape nodes.
    gelu keeps the pre-activation for its backward (relu needs only the output); the
    backward forms ``grad * act'`` once and runs the two GEMMs on it.
    ``precision``: ``"fp32"`` or ``"bf16"`` (see :func:`linear_bf16`); None: the current
    :func:`gemm_precision` (fp32 outside one).
    """
    if activation not in LINEAR_ACTIVATIONS:
        raise ValueError(f"activation: expected one of {LINEAR_ACTIVATIONS}, got {activation!r}")
    precision = get_gemm_precision() if precision is None else precision
    if precision not in GEMM_PRECISIONS:
        raise ValueError(f"precision: expected one of {GEMM_PRECISIONS}, got {precision!r}")
    bf16 = precision == "bf16"
    if bf16:
        _require_bf16()
    x = _float_input(input)
    b_data = None if bias is None else bias.data
    pre = None
    if activation in ("gelu", "gelu_tanh"):
        if x.ndim < 1 or weight.ndim != 2:
            raise ValueError(f"linear: input {x.shape} and weight {weight.shape} do not fit")
        pre = np.empty((*x.shape[:-1], weight.shape[0]), dtype=np.float32)
    out = _core.linear_forward(x.data, weight.data, b_data, activation, pre, bf16)
    saved = pre if pre is not None else (out if activation == "relu" else None)
    inputs = (x, weight) if bias is None else (x, weight, bias)

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        gw = grad_buffer(weight)
        gb = None if bias is None else grad_buffer(bias)
        gx = _core.linear_backward(
            _grad(g), x.data, weight.data, gw, gb, x.requires_grad, activation, saved, bf16
        )
        grads = (gx, returned_grad(weight, gw))
        return grads if bias is None else (*grads, returned_grad(bias, gb))

    return make_result(out, inputs, backward)


def embedding(input: Any, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """Rows of ``weight`` picked by integer ``input``.

    Shapes: input (*) int64 in [0, num_embeddings), weight (num_embeddings, dim) ->
    (*, dim). The row ``padding_idx`` receives no gradient.
    """
    idx = input.data if isinstance(input, Tensor) else np.asarray(input)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"input: expected integer indices (int64), got dtype {idx.dtype}")
    idx = np.asarray(idx, dtype=np.int64, order="C")
    pad = -1 if padding_idx is None else int(padding_idx)
    out = _core.embedding_forward(idx, weight.data)

    def backward(g: np.ndarray) -> tuple[np.ndarray | None]:
        gw = grad_buffer(weight)
        _core.embedding_backward(_grad(g), idx, gw, pad)
        return (returned_grad(weight, gw),)

    return make_result(out, (weight,), backward)


def sigmoid(input: Any) -> Tensor:
    """Elementwise ``1 / (1 + exp(-x))``; any shape."""
    x = _float_input(input)
    out = _core.sigmoid_forward(x.data)
    return make_result(out, (x,), lambda g: (_core.sigmoid_backward(_grad(g), out),))


def tanh(input: Any) -> Tensor:
    """Elementwise ``tanh(x)``; any shape."""
    x = _float_input(input)
    out = _core.tanh_forward(x.data)
    return make_result(out, (x,), lambda g: (_core.tanh_backward(_grad(g), out),))


def relu(input: Any) -> Tensor:
    """Elementwise ``max(x, 0)``; any shape."""
    x = _float_input(input)
    out = _core.relu_forward(x.data)
    return make_result(out, (x,), lambda g: (_core.relu_backward(_grad(g), out),))


def add_relu(input: Any, other: Any) -> Tensor:
    """``relu(input + other)`` in one pass and one tape node (a residual connection and its
    activation); both of the same shape. Both inputs receive the same gradient."""
    a, b = _float_input(input), _float_input(other, "other")
    out = _core.add_relu_forward(a.data, b.data)

    def backward(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gx = _core.relu_backward(_grad(g), out)
        return gx, gx

    return make_result(out, (a, b), backward)


def gelu(input: Any, approximate: str = "none") -> Tensor:
    """GELU ``x * Phi(x)``: exact (``approximate='none'``) or torch's ``'tanh'`` form; any shape."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate: expected 'none' or 'tanh', got {approximate!r}")
    x = _float_input(input)
    out = _core.gelu_forward(x.data, approximate)
    return make_result(out, (x,), lambda g: (_core.gelu_backward(_grad(g), x.data, approximate),))


def softmax(input: Any, dim: int = -1) -> Tensor:
    """Softmax along ``dim`` (numerically stable); same shape as input."""
    x = _float_input(input)
    if x.ndim == 0:
        raise ValueError("softmax: input must have at least 1 dimension, got a scalar")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"softmax: dim {dim} is out of range for input of shape {x.shape}")
    axis = dim % x.ndim
    last = axis == x.ndim - 1
    xin = x.data if last else np.ascontiguousarray(np.moveaxis(x.data, axis, -1))
    y_last = _core.softmax_forward(xin)
    out = y_last if last else np.ascontiguousarray(np.moveaxis(y_last, -1, axis))

    def backward(g: np.ndarray) -> tuple[np.ndarray]:
        if last:
            return (_core.softmax_backward(_grad(g), y_last),)
        g_last = np.ascontiguousarray(np.moveaxis(g, axis, -1))
        return (np.moveaxis(_core.softmax_backward(g_last, y_last), -1, axis),)

    return make_result(out, (x,), backward)


def dropout(input: Any, p: float = 0.5, training: bool = True) -> Tensor:
    """Inverted dropout: zeroes each element with probability ``p`` and scales the rest by
    ``1 / (1 - p)``; identity when not training or ``p == 0``. The mask comes from the
    seeded ``seqlab.random`` generator. Same shape as input.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    x = _float_input(input)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        mask = np.zeros(x.shape, dtype=np.float32)
    else:
        keep = generator().random(x.shape, dtype=np.float32) >= np.float32(p)
        mask = keep.astype(np.float32) * np.float32(1.0 / (1.0 - p))
    return make_result(x.data * mask, (x,), lambda g: (g * mask,))




def layer_norm(
    input: Any,
    normalized_shape: int | Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Layer normalisation over the trailing ``normalized_shape`` axes, as ``torch``'s.

    Shapes: input (*, *normalized_shape); weight and bias of ``normalized_shape`` or None.
    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` with the biased variance.
    One tape node; weight and bias gradients accumulate in place.
    """
    x = _float_input(input)
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not ns or x.shape[x.ndim - len(ns) :] != ns or len(ns) > x.ndim:
        raise ValueError(f"layer_norm: input of shape {x.shape} does not end with normalized_shape {ns}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != ns:
            raise ValueError(f"layer_norm: {name} has shape {p.shape}, expected normalized_shape {ns}")
    C = int(np.prod(ns))
    x2 = x.data.reshape(-1, C)
    w = None if weight is None else weight.data.reshape(C)
    b = None if bias is None else bias.data.reshape(C)
    y, mean, rstd = _core.layer_norm_forward(x2, w, b, float(eps))
    inputs = tuple(t for t in (x, weight, bias) if t is not None)

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        gw = None if weight is None else grad_buffer(weight)
        gb = None if bias is None else grad_buffer(bias)
        dx = _core.layer_norm_backward(
            _grad(g).reshape(-1, C), x2, w, mean, rstd,
            None if gw is None else gw.reshape(C), None if gb is None else gb.reshape(C), x.requires_grad,
        )
        grads: list[np.ndarray | None] = [None if dx is None else dx.reshape(x.shape)]
        if weight is not None:
            grads.append(returned_grad(weight, gw))
        if bias is not None:
            grads.append(returned_grad(bias, gb))
        return tuple(grads)

    return make_result(y.reshape(x.shape), inputs, backward)
