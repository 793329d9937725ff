"""Differentiable operations: each a thin wrapper of one ``seqlab._core`` forward/backward pair.

Every function takes and returns :class:`seqlab.Tensor` (batch-first ``(B, T, C)``
for sequences) and records one node on the autograd tape.
"""

from __future__ import annotations

from collections.abc import Sequence
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

RECURRENT_MODES = ("rnn_tanh", "rnn_relu", "lstm", "gru")


def _as_grad(g: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(g, dtype=np.float32)


def recurrent_layer(
    mode: str,
    x: Tensor,
    w_ih: Sequence[Tensor],
    w_hh: Sequence[Tensor],
    b_ih: Sequence[Tensor] | None = None,
    b_hh: Sequence[Tensor] | None = None,
    h0: Tensor | None = None,
    c0: Tensor | None = None,
    lengths: np.ndarray | None = None,
    workspace: list | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """One recurrent layer (one or two directions) over whole batch-first sequences.

    Args:
        mode: ``"rnn_tanh"``, ``"rnn_relu"``, ``"lstm"`` or ``"gru"`` (G = 1, 1, 4, 3 gates,
            in PyTorch's order: LSTM i, f, g, o; GRU r, z, n).
        x: input ``(B, T, C)`` float32.
        w_ih, w_hh: one tensor per direction (D = 1 or 2), ``(G*H, C)`` and ``(G*H, H)``.
        b_ih, b_hh: one ``(G*H,)`` tensor per direction, or None for no bias.
        h0, c0: initial states ``(D, B, H)`` or None for zeros (``c0`` for LSTM only).
        lengths: ``(B,)`` int64 with ``1 <= lengths[b] <= T``, or None for full length;
            outputs past a sequence's length are zero and its final state is taken at
            its last valid step (PyTorch's ``pack_padded_sequence`` semantics).
        workspace: optional list kept by the caller across calls of the same layer: the
            kernel's buffers are returned to it once the backward has run (or at once
            when no gradient is recorded) and reused by the next call, which saves
            allocating and page-faulting them every step.

    Returns:
        ``(output (B, T, D*H), h_n (D, B, H), c_n (D, B, H) or None)``.

    The kernel is one tape node; the three outputs are views of it that route their
    gradients to that node, so any subset of them may be used in the loss. As in
    PyTorch, the node's buffers are freed by its backward: a second backward through
    the same graph raises RuntimeError.
    """
    if mode not in RECURRENT_MODES:
        raise ValueError(f"mode: expected one of {RECURRENT_MODES}, got {mode!r}")
    params: list[Tensor] = [*w_ih, *w_hh, *(b_ih or ()), *(b_hh or ())]
    states = [s for s in (h0, c0) if s is not None]
    y, h_n, c_n, cache = _core.recurrent_forward(
        mode,
        x.data,
        [w.data for w in w_ih],
        [w.data for w in w_hh],
        None if b_ih is None else [b.data for b in b_ih],
        None if b_hh is None else [b.data for b in b_hh],
        None if h0 is None else h0.data,
        None if c0 is None else c0.data,
        lengths,
        workspace.pop() if workspace else None,
    )
    inputs = (x, *params, *states)
    upstream: dict[str, np.ndarray] = {}

    def kernel_backward(_: np.ndarray) -> tuple[np.ndarray | None, ...]:
        dy, dh_n, dc_n = (upstream.pop(k, None) for k in ("output", "h_n", "c_n"))
        buffers = [grad_buffer(p) for p in params]
        n = len(w_ih)
        dx, dh0, dc0 = _core.recurrent_backward(
            cache,
            dy,
            dh_n,
            dc_n,
            buffers[:n],
            buffers[n : 2 * n],
            None if b_ih is None else buffers[2 * n : 3 * n],
            None if b_hh is None else buffers[len(buffers) - n :],
            x.requires_grad,
        )
        if workspace is not None and not workspace:
            workspace.append(cache)
        state_grads = [g for s, g in ((h0, dh0), (c0, dc0)) if s is not None]
        param_grads = [returned_grad(p, b) for p, b in zip(params, buffers, strict=True)]
        return (dx, *param_grads, *state_grads)

    node = make_result(np.zeros(1, dtype=np.float32), inputs, kernel_backward)
    if not node.requires_grad:
        _core.recurrent_release(cache)
        if workspace is not None and not workspace:
            workspace.append(cache)

    def output_view(data: np.ndarray | None, key: str) -> Tensor | None:
        if data is None:
            return None

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            upstream[key] = _as_grad(g)
            return (np.zeros(1, dtype=np.float32),)

        return make_result(data, (node,), backward)

    return output_view(y, "output"), output_view(h_n, "h_n"), output_view(c_n, "c_n")  # type: ignore[return-value]


# =====================================================================
# Convolution: 1-d convolution over channels-last sequences (causal or padded).
# =====================================================================


def conv1d_channels_last(
    input: Any,
    weight: Tensor,
    bias: Tensor | None = None,
    dilation: int = 1,
    padding: tuple[int, int] = (0, 0),
) -> Tensor:
    """1-d convolution, stride 1, groups 1, over batch-first channels-last sequences.

    Shapes: input (B, T, C_in), weight (C_out, C_in, K) (torch's ``Conv1d`` layout),
    bias (C_out,) or None -> (B, T + left + right - dilation*(K-1), C_out), where
    ``padding = (left, right)`` zeros are added around time. One GEMM forward over the
    unfolded input, one each for the input and weight gradients.
    """
    x = _float_input(input)
    if x.ndim != 3:
        raise ValueError(f"conv1d: input must be (B, T, C_in), got shape {x.shape}")
    left, right = (int(p) for p in padding)
    b_data = None if bias is None else bias.data
    out, cache = _core.conv1d_forward(x.data, weight.data, b_data, int(dilation), left, right)
    inputs = (x, weight) if bias is None else (x, weight, bias)

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        gw = grad_buffer(weight)
        gb = None if bias is None else grad_buffer(bias)
        gx = _core.conv1d_backward(cache, _grad(g), gw, gb, x.requires_grad)
        grads = (gx, returned_grad(weight, gw))
        return grads if bias is None else (*grads, returned_grad(bias, gb))

    return make_result(out, inputs, backward)


def causal_conv1d(input: Any, weight: Tensor, bias: Tensor | None = None, dilation: int = 1) -> Tensor:
    """Dilated causal convolution: output step t sees input steps t, t-d, ..., t-d*(K-1).

    Shapes: input (B, T, C_in), weight (C_out, C_in, K), bias (C_out,) or None ->
    (B, T, C_out). Equals ``torch.nn.Conv1d(dilation=d)`` applied to the input padded
    with ``d*(K-1)`` zeros on the left (in channels-first layout).
    """
    k = weight.shape[-1] if weight.ndim == 3 else 1
    return conv1d_channels_last(input, weight, bias, dilation, (int(dilation) * (k - 1), 0))


def conv1d(
    input: Any,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int = 1,
    padding: int | str = 0,
    dilation: int = 1,
    groups: int = 1,
) -> Tensor:
    """``torch.nn.functional.conv1d`` for stride 1 and groups 1 over channels-first input.

    Shapes: input (B, C_in, L), weight (C_out, C_in, K), bias (C_out,) or None ->
    (B, C_out, L + 2*padding - dilation*(K-1)); ``padding`` may be an int, ``'valid'``,
    or ``'causal'`` (left padding of dilation*(K-1), output length L).
    """
    if stride != 1 or groups != 1:
        raise ValueError(f"conv1d: only stride=1 and groups=1 are supported, got stride={stride}, "
                         f"groups={groups}")
    x = _float_input(input)
    if x.ndim != 3:
        raise ValueError(f"conv1d: input must be (B, C_in, L), got shape {x.shape}")
    k = weight.shape[-1]
    if padding == "causal":
        pad = (int(dilation) * (k - 1), 0)
    elif padding == "valid":
        pad = (0, 0)
    elif isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
        pad = (padding, padding)
    else:
        raise ValueError(f"conv1d: padding must be a non-negative int, 'valid' or 'causal', got {padding!r}")
    y = conv1d_channels_last(x.transpose(0, 2, 1), weight, bias, dilation, pad)
    return y.transpose(0, 2, 1)
