"""Differentiable operations: each a thin wrapper of one ``seqlab._core`` forward/backward pair.

Every function takes and returns :class:`seqlab.Tensor` (batch-first ``(B, T, C)``
for sequences) and records one node on the autograd tape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from .autograd import Tensor, grad_buffer, make_result, returned_grad
from .random import generator

# =====================================================================
# Dense layers and activations: linear, embedding, sigmoid, tanh, relu,
# gelu, softmax, dropout.
# =====================================================================


def _float_input(x: Any, name: str = "input") -> Tensor:
    """``x`` as a float32 Tensor (ndarrays and numbers are wrapped; other dtypes refused)."""
    t = x if isinstance(x, Tensor) else Tensor(x)
    if t.data.dtype != np.float32:
        raise TypeError(f"{name}: expected float32 values, got dtype {t.data.dtype}")
    return t


def _grad(g: np.ndarray) -> np.ndarray:
    """An upstream gradient as the C-contiguous float32 array the kernels take (views from
    transpose, split or stack backward may be strided)."""
    return np.ascontiguousarray(g, dtype=np.float32)


def linear(input: Any, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``input @ weight.T + bias``.

    Shapes: input (*, in_features), weight (out_features, in_features),
    bias (out_features,) or None -> (*, out_features). One GEMM forward, one each for
    the input and weight gradients; the weight and bias gradients accumulate in place.
    """
    x = _float_input(input)
    b_data = None if bias is None else bias.data
    out = _core.linear_forward(x.data, weight.data, b_data)
    inputs = (x, weight) if bias is None else (x, weight, bias)

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        gw = grad_buffer(weight)
        gb = None if bias is None else grad_buffer(bias)
        gx = _core.linear_backward(_grad(g), x.data, weight.data, gw, gb, x.requires_grad)
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
    idx = np.ascontiguousarray(idx, dtype=np.int64)
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



# =====================================================================
# Recurrent layers: RNN (tanh, relu), LSTM, GRU over whole sequences.
# =====================================================================
