"""Differentiable operations: each a thin wrapper of one ``seqlab._core`` forward/backward pair.

Every function takes and returns :class:`seqlab.Tensor` (batch-first ``(B, T, C)``
for sequences) and records one node on the autograd tape.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
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
    return linear_activation(input, weight, bias, "none")


LINEAR_ACTIVATIONS = ("none", "relu", "gelu", "gelu_tanh")


def linear_activation(
    input: Any, weight: Tensor, bias: Tensor | None = None, activation: str = "relu"
) -> Tensor:
    """``activation(input @ weight.T + bias)`` as one fused op (one tape node).

    ``activation``: ``"relu"``, ``"gelu"`` (exact, torch's ``approximate='none'``),
    ``"gelu_tanh"`` (``approximate='tanh'``) or ``"none"`` (plain :func:`linear`). The same
    values as ``relu(linear(...))``/``gelu(linear(...))``, bit for bit: the kernel adds the
    bias and applies the activation to each block of rows right after its GEMM, while the
    block is in cache, instead of two more passes over memory and two more tape nodes.
    gelu keeps the pre-activation for its backward (relu needs only the output); the
    backward forms ``grad * act'`` once and runs the two GEMMs on it.
    """
    if activation not in LINEAR_ACTIVATIONS:
        raise ValueError(f"activation: expected one of {LINEAR_ACTIVATIONS}, got {activation!r}")
    x = _float_input(input)
    b_data = None if bias is None else bias.data
    pre = None
    if activation in ("gelu", "gelu_tanh"):
        if x.ndim < 1 or weight.ndim != 2:
            raise ValueError(f"linear: input {x.shape} and weight {weight.shape} do not fit")
        pre = np.empty((*x.shape[:-1], weight.shape[0]), dtype=np.float32)
    out = _core.linear_forward(x.data, weight.data, b_data, activation, pre)
    saved = pre if pre is not None else (out if activation == "relu" else None)
    inputs = (x, weight) if bias is None else (x, weight, bias)

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        gw = grad_buffer(weight)
        gb = None if bias is None else grad_buffer(bias)
        gx = _core.linear_backward(_grad(g), x.data, weight.data, gw, gb, x.requires_grad, activation, saved)
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

# Kernel caches whose backward has run (or whose forward recorded no graph), handed to
# later forwards, which reuse their weight copies and gather workspaces. A released cache
# holds no reference to its input; a second backward through the same node raises
# RuntimeError, as in PyTorch.
_conv_spares: list = []


def clear_conv_workspace() -> None:
    """Frees the convolution and TCN-block kernel buffers kept for reuse between steps (they
    grow to the largest batch seen, e.g. a large prediction batch)."""
    _conv_spares.clear()
    _block_spares.clear()


def conv1d_channels_last(
    input: Any,
    weight: Tensor,
    bias: Tensor | None = None,
    dilation: int = 1,
    padding: tuple[int, int] = (0, 0),
    activation: str | None = None,
) -> Tensor:
    """1-d convolution, stride 1, groups 1, over batch-first channels-last sequences.

    Shapes: input (B, T, C_in), weight (C_out, C_in, K) (torch's ``Conv1d`` layout),
    bias (C_out,) or None -> (B, T + left + right - dilation*(K-1), C_out), where
    ``padding = (left, right)`` zeros are added around time. Forward and both gradients are
    GEMMs over tiles of the unfolded input (gathered into a reused workspace, split over
    the threads); the input is referenced by the node until its backward has run.
    ``activation="relu"`` fuses ``relu`` into the kernel (one tape node, no extra pass
    over memory in the forward).
    """
    x = _float_input(input)
    if x.ndim != 3:
        raise ValueError(f"conv1d: input must be (B, T, C_in), got shape {x.shape}")
    left, right = (int(p) for p in padding)
    b_data = None if bias is None else bias.data
    spares = _conv_spares
    reuse = _take_spare(spares)
    out, cache = _core.conv1d_forward(
        x.data, weight.data, b_data, int(dilation), left, right, reuse, activation or "none"
    )
    inputs = (x, weight) if bias is None else (x, weight, bias)

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        gw = grad_buffer(weight)
        gb = None if bias is None else grad_buffer(bias)
        gx = _core.conv1d_backward(cache, _grad(g), gw, gb, x.requires_grad)
        _keep_spare(spares, cache)
        grads = (gx, returned_grad(weight, gw))
        return grads if bias is None else (*grads, returned_grad(bias, gb))

    result = make_result(out, inputs, backward)
    if not result.requires_grad:
        _keep_spare(spares, cache, _core.conv1d_release)
    return result


def causal_conv1d(
    input: Any,
    weight: Tensor,
    bias: Tensor | None = None,
    dilation: int = 1,
    activation: str | None = None,
) -> Tensor:
    """Dilated causal convolution: output step t sees input steps t, t-d, ..., t-d*(K-1).

    Shapes: input (B, T, C_in), weight (C_out, C_in, K), bias (C_out,) or None ->
    (B, T, C_out). Equals ``torch.nn.Conv1d(dilation=d)`` applied to the input padded
    with ``d*(K-1)`` zeros on the left (in channels-first layout); ``activation="relu"``
    fuses a ReLU on the output.
    """
    k = weight.shape[-1] if weight.ndim == 3 else 1
    return conv1d_channels_last(input, weight, bias, dilation, (int(dilation) * (k - 1), 0), activation)


_block_spares: list = []


def temporal_block(
    input: Any,
    conv1_weight: Tensor,
    conv1_bias: Tensor | None,
    conv2_weight: Tensor,
    conv2_bias: Tensor | None,
    downsample_weight: Tensor | None = None,
    downsample_bias: Tensor | None = None,
    dilation: int = 1,
) -> Tensor:
    """A TCN temporal block (Bai et al., 2018, without dropout) as one op and one tape node:
    ``relu(relu(causal_conv2(relu(causal_conv1(x)))) + res)`` with ``res = x`` or, when
    ``downsample_weight`` is given, ``linear(x, downsample_weight, downsample_bias)``.

    Shapes: input (B, T, C_in), conv1_weight (C, C_in, K), conv2_weight (C, C, K), biases
    (C,) or None, downsample_weight (C, C_in) (required when C_in != C) -> (B, T, C). The
    hidden activations and gradient buffers stay in a recycled kernel workspace, so the
    block allocates only its output and its input gradient.
    """
    x = _float_input(input)
    if x.ndim != 3:
        raise ValueError(f"temporal_block: input must be (B, T, C_in), got shape {x.shape}")
    params = (conv1_weight, conv1_bias, conv2_weight, conv2_bias, downsample_weight, downsample_bias)
    reuse = _take_spare(_block_spares)
    out, cache = _core.temporal_block_forward(
        x.data, *(None if p is None else p.data for p in params), int(dilation), reuse
    )
    present = [p for p in params if p is not None]

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        buffers = [None if p is None else grad_buffer(p) for p in params]
        gx = _core.temporal_block_backward(cache, _grad(g), *buffers, x.requires_grad)
        _keep_spare(_block_spares, cache)
        return (gx, *(returned_grad(p, b) for p, b in zip(params, buffers, strict=True) if p is not None))

    result = make_result(out, (x, *present), backward)
    if not result.requires_grad:
        _keep_spare(_block_spares, cache, _core.temporal_block_release)
    return result


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


# =====================================================================
# Sequence decoder and losses: the autoregressive recurrent decoder with
# teacher forcing and attention, the masked cosine + MSE loss.
# =====================================================================

_DecoderSlot = tuple[Tensor, slice | None] | None


def _slot_data(slot: _DecoderSlot) -> np.ndarray | None:
    if slot is None:
        return None
    t, rows = slot
    return t.data if rows is None else t.data[rows]


def recurrent_decoder(
    mode: str,
    targets: Any,
    teacher_forcing: np.ndarray,
    start: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None,
    bias_hh: Tensor | None,
    out_weight: Tensor,
    out_bias: Tensor | None,
    h0: Tensor | None = None,
    c0: Tensor | None = None,
    memory: Tensor | None = None,
    memory_lengths: np.ndarray | None = None,
    *,
    num_heads: int = 0,
    in_proj_weight: Tensor | None = None,
    q_proj_weight: Tensor | None = None,
    k_proj_weight: Tensor | None = None,
    v_proj_weight: Tensor | None = None,
    in_proj_bias: Tensor | None = None,
    out_proj_weight: Tensor | None = None,
    out_proj_bias: Tensor | None = None,
    gate_bias: Tensor | None = None,
    workspace: list | None = None,
) -> Tensor:
    """Autoregressive recurrent decoder over a whole sequence: one fused kernel, one tape node.

    Step ``t`` reads ``u_t = start`` at ``t = 0``, else ``targets[:, t-1]`` where
    ``teacher_forcing[:, t]`` is True, else the previous prediction; then
    ``h_t = cell(u_t, h_{t-1})`` (PyTorch's LSTMCell / GRUCell / RNNCell), with
    attention ``ctx_t = MHA(h_t, memory, memory)`` (PyTorch's MultiheadAttention with
    ``kdim = vdim = A``, ``batch_first``, keys ``s >= memory_lengths[b]`` masked), and
    ``pred_t = [h_t; ctx_t] @ out_weight.T + out_bias``.

    Shapes: targets (B, T, E) (data: receives no gradient); teacher_forcing (B, T)
    bool; start (E,); weight_ih (G*H, E); weight_hh (G*H, H); biases (G*H,);
    out_weight (O, H) or (O, 2H) with attention; h0, c0 (B, H); memory (B, S, A);
    memory_lengths (B,) int in [1, S]. Attention weights as in
    ``torch.nn.functional.multi_head_attention_forward``: either ``in_proj_weight``
    (3H, H) (when A == H) or ``q_proj_weight`` (H, H), ``k_proj_weight`` and
    ``v_proj_weight`` (H, A); ``in_proj_bias`` (3H,); ``out_proj_weight`` (H, H),
    ``out_proj_bias`` (H,). Returns predictions (B, T, O).

    ``gate_bias`` (B, G*H) or None: added to the input part of the gate pre-activations
    at every step, i.e. a per-row condition ``c`` fed to every step as ``W_ic c`` (the
    cell then computes torch's cell on the input ``[u_t; c]`` with weight ``[W_ih, W_ic]``).

    Gradients flow into every parameter, h0, c0, memory and gate_bias, including through
    the fed-back predictions. ``workspace``: as in :func:`recurrent_layer`.
    """
    if mode not in RECURRENT_MODES:
        raise ValueError(f"mode: expected one of {RECURRENT_MODES}, got {mode!r}")
    y = _float_input(targets, "targets")
    tf = np.ascontiguousarray(np.asarray(teacher_forcing), dtype=np.uint8)
    attention = num_heads > 0
    slots: list[_DecoderSlot] = [(start, None), (weight_ih, None), (weight_hh, None),
                                 None if bias_ih is None else (bias_ih, None),
                                 None if bias_hh is None else (bias_hh, None)]
    if attention:
        if out_proj_weight is None:
            raise ValueError("out_proj_weight: required with attention (num_heads > 0)")
        hidden = weight_hh.shape[1]
        rows = [slice(i * hidden, (i + 1) * hidden) for i in range(3)]
        if in_proj_weight is not None:
            proj: list[_DecoderSlot] = [(in_proj_weight, r) for r in rows]
        else:
            if q_proj_weight is None or k_proj_weight is None or v_proj_weight is None:
                raise ValueError("q_proj_weight, k_proj_weight, v_proj_weight: required with attention "
                                 "unless in_proj_weight is given")
            proj = [(q_proj_weight, None), (k_proj_weight, None), (v_proj_weight, None)]
        biases: list[_DecoderSlot] = [None, None, None] if in_proj_bias is None else [
            (in_proj_bias, r) for r in rows]
        slots += [*proj, *biases, (out_proj_weight, None),
                  None if out_proj_bias is None else (out_proj_bias, None)]
    else:
        slots += [None] * 8
    slots += [(out_weight, None), None if out_bias is None else (out_bias, None)]
    attention_arrays = [_slot_data(s) for s in slots[5:13]] if attention else None
    pred, cache = _core.decoder_forward(
        mode, y.data, tf, *(_slot_data(s) for s in slots[:5]), _slot_data(slots[13]),
        _slot_data(slots[14]), None if h0 is None else h0.data, None if c0 is None else c0.data,
        None if memory is None else memory.data, memory_lengths, attention_arrays,
        int(num_heads), workspace.pop() if workspace else None,
        None if gate_bias is None else gate_bias.data,
    )
    params: list[Tensor] = []
    for s in slots:
        if s is not None and all(s[0] is not p for p in params):
            params.append(s[0])
    states = [s for s in (h0, c0, memory, gate_bias) if s is not None]

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        buffers = [grad_buffer(p) for p in params]
        by_id = {id(p): b for p, b in zip(params, buffers, strict=True)}
        grads = []
        for s in slots:
            buf = None if s is None else by_id[id(s[0])]
            grads.append(None if buf is None else (buf if s[1] is None else buf[s[1]]))  # type: ignore[index]
        need_memory = memory is not None and memory.requires_grad
        need_bias = gate_bias is not None and gate_bias.requires_grad
        dh0, dc0, dmem, dbias = _core.decoder_backward(cache, _grad(g), grads, need_memory, need_bias)
        if workspace is not None and not workspace:
            workspace.append(cache)
        state_grads = [d for s, d in ((h0, dh0), (c0, dc0), (memory, dmem), (gate_bias, dbias))
                       if s is not None]
        return (*(returned_grad(p, b) for p, b in zip(params, buffers, strict=True)), *state_grads)

    out = make_result(pred, (*params, *states), backward)
    if not out.requires_grad:
        _core.decoder_release(cache)
        if workspace is not None and not workspace:
            workspace.append(cache)
    return out


_REDUCTIONS = ("mean", "sum", "none")


def cosine_mse_loss(
    pred: Any,
    target: Any,
    lengths: Any = None,
    cosine_weight: float = 0.9,
    mse_weight: float = 0.1,
    temperature: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    """Masked hybrid loss ``cosine_weight * (1 - cos) / temperature + mse_weight * MSE`` per token.

    Shapes: pred, target (B, T, E); lengths (B,) ints in [0, T] or None (all T). For
    each real token (t < lengths[b]):
    ``cos = p.y / (max(|p|, 1e-8) * max(|y|, 1e-8))`` (torch's ``cosine_similarity``,
    each norm clamped) and ``MSE = sum_e (p_e - y_e)^2 / E``. ``reduction``: "mean"
    (over real tokens; 0 when there are none), "sum", or "none" (the per-token (B, T)
    losses, 0 at padding). One fused kernel forward and backward; gradients flow to
    pred and, when it requires them, target.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
    p = _float_input(pred, "pred")
    y = _float_input(target, "target")
    if p.shape != y.shape:
        raise ValueError(f"target: expected the shape of pred {p.shape}, got {y.shape}")
    if p.ndim != 3:
        raise ValueError(f"pred: expected a (batch, seq, features) array, got shape {p.shape}")
    lens = None
    if lengths is not None:
        arr = np.asarray(lengths.data if isinstance(lengths, Tensor) else lengths)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"lengths: expected integers, got dtype {arr.dtype}")
        lens = np.ascontiguousarray(arr, dtype=np.int64)
    weights = (float(cosine_weight), float(mse_weight), float(temperature))
    total, count, tokens = _core.cosine_mse_forward(p.data, y.data, lens, *weights)
    if reduction == "none":
        out = tokens
    elif reduction == "sum":
        out = np.array(total, dtype=np.float32)
    else:
        out = np.array(total / count if count else 0.0, dtype=np.float32)

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        if reduction == "none":
            token_grad, scale = _grad(g), 0.0
        else:
            token_grad = None
            scale = float(g) / (count if reduction == "mean" and count else 1.0)
        dp, dy = _core.cosine_mse_backward(p.data, y.data, lens, *weights, token_grad, scale,
                                           p.requires_grad, y.requires_grad)
        return dp, dy

    return make_result(out, (p, y), backward)


# =====================================================================
# Attention and normalisation: scaled dot-product attention (plain and
# flash paths), multi-head attention core, layer norm, cross-entropy.
# =====================================================================

_attention_state: dict[str, Any] = {"flash_threshold": 1024, "spares": []}
# Kernel caches whose backward has run (or whose forward recorded no graph) are kept, at
# most this many, and handed to later forwards, which reuse their probability or
# logsumexp buffers instead of allocating and page-faulting new ones every step. A
# released cache holds no reference to any input; as in PyTorch, a second backward
# through the same attention node raises RuntimeError.
_MAX_SPARE_CACHES = 16


def _take_spare(spares: list) -> Any:
    """A released kernel cache to reuse, or None."""
    return spares.pop() if spares else None


def _keep_spare(spares: list, cache: Any, release: Callable[[Any], None] | None = None) -> None:
    """Hands a kernel cache back for reuse (after ``release`` drops its references to the
    inputs, when its backward will not run); at most ``_MAX_SPARE_CACHES`` are kept."""
    if release is not None:
        release(cache)
    if len(spares) < _MAX_SPARE_CACHES:
        spares.append(cache)


class _BufferPool:
    """Large float32 arrays for attention outputs and fresh gradients, reused once unreferenced.

    Each array handed out is a view of a pooled 1-D block; a block whose only reference
    is the pool's own is free again (every view of it, and every view of those, keeps it
    referenced). A training step then writes into pages it already has instead of new
    ones: at B=4, H=8, T=512, D=64 a step's output and three gradients are 8 MiB, ~2000
    page faults (and the unmaps of the previous step's buffers) that cost ~2 ms of CPU
    on one thread and 5-6 ms of wall time on two (the threads fault on the same pages'
    mapping lock and the unmaps interrupt both cores). Contents are undefined, as with
    ``np.empty``: the kernels overwrite every element. At most ``limit`` blocks are kept
    (arrays under ``min_bytes`` come from ``np.empty``); ``clear_attention_workspace()``
    drops them.
    """

    def __init__(self, limit: int = 16, min_bytes: int = 1 << 20) -> None:
        self.limit = limit
        self.min_bytes = min_bytes
        self.blocks: list[np.ndarray] = []
        # What sys.getrefcount reports for a block only the list refers to (measured, as
        # interpreters differ in the temporary references they count).
        probe = [np.empty(1, dtype=np.float32)]
        self._free_refs = sys.getrefcount(probe[0])
        # Two Python threads must not both find the same block free before either takes it.
        self._lock = threading.Lock()

    def empty(self, shape: tuple[int, ...]) -> np.ndarray:
        n = 1
        for d in shape:
            n *= int(d)
        if n * 4 < self.min_bytes:
            return np.empty(shape, dtype=np.float32)
        with self._lock:
            return self._take(n, shape)

    def _take(self, n: int, shape: tuple[int, ...]) -> np.ndarray:
        blocks = self.blocks
        free = None
        for i in range(len(blocks)):
            if sys.getrefcount(blocks[i]) == self._free_refs:  # no view of it is alive
                if blocks[i].size == n:
                    return blocks[i].reshape(shape)
                free = i
        block = np.empty(n, dtype=np.float32)
        if len(blocks) < self.limit:
            blocks.append(block)
        elif free is not None:  # full: replace an unused block of another size
            blocks[free] = block
        return block.reshape(shape)

    def clear(self) -> None:
        with self._lock:
            self.blocks.clear()


_attention_buffers = _BufferPool()


def clear_attention_workspace() -> None:
    """Frees the attention kernel buffers kept for reuse between steps."""
    _attention_state["spares"].clear()
    _attention_buffers.clear()


def get_attention_flash_threshold() -> int:
    """Key length from which attention takes the tiled flash path (below it: plain GEMMs)."""
    return _attention_state["flash_threshold"]


def set_attention_flash_threshold(keys: int) -> int:
    """Sets the key length from which attention uses the flash path; returns the previous value.

    The plain path keeps the ``(B, H, Tq, Tk)`` probabilities for the backward; the flash
    path keeps only one logsumexp per query row and recomputes the probabilities tile by
    tile (forward tiles of 64 queries x 256 keys, backward 128 queries x 64 keys). ``0``
    forces flash, a huge value plain.
    """
    if not isinstance(keys, int) or isinstance(keys, bool) or keys < 0:
        raise ValueError(f"keys: expected a non-negative int, got {keys!r}")
    previous = _attention_state["flash_threshold"]
    _attention_state["flash_threshold"] = keys
    return previous


def attention_path(key_length: int) -> str:
    """``"flash"`` or ``"plain"``: the kernel path attention over ``key_length`` keys takes.

    Both paths skip the tiles above the diagonal for causal attention, which switches at
    the same length. Measured on one core at B*H = 32, D = 64, plain is 5-15% faster up
    to 1024 keys (its backward recomputes nothing), but keeps B*H*Tq*Tk probabilities
    (128 MiB there, 512 MiB at 2048); from 1024 keys on, flash, whose memory stays linear.
    """
    return "flash" if key_length >= _attention_state["flash_threshold"] else "plain"


def _head_view(arr: np.ndarray, batch: int, seq: int, heads: int, offset: int, width: int) -> np.ndarray:
    """The (B, H, T, Dh) strided view of columns [offset, offset + H*Dh) of a (B, T, width) array."""
    dh = (arr.shape[-1] if width == 0 else width) // heads
    base = arr.reshape(batch, seq, -1)[:, :, offset : offset + heads * dh]
    return np.lib.stride_tricks.as_strided(
        base, shape=(batch, heads, seq, dh), strides=(base.strides[0], dh * 4, base.strides[1], 4)
    )


def _additive_mask(
    mask: Any, shape: tuple[int, int, int, int], name: str, true_means_keep: bool
) -> np.ndarray:
    """A boolean or float mask as an additive float32 view broadcast to (B, H, Tq, Tk)."""
    m = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
    if m.dtype == np.bool_:
        keep = m if true_means_keep else ~m
        m = np.where(keep, np.float32(0.0), np.float32(-np.inf)).astype(np.float32)
    elif m.dtype.kind == "f":
        m = m.astype(np.float32, copy=False)
    else:
        raise TypeError(f"{name}: expected a bool or float mask, got dtype {m.dtype}")
    if m.ndim > 4:
        raise ValueError(
            f"{name}: expected at most 4 dimensions broadcastable to {shape}, got shape {m.shape}"
        )
    try:
        np.broadcast_shapes(m.shape, shape)
        if np.broadcast_shapes(m.shape, shape) != shape:
            raise ValueError
    except ValueError:
        raise ValueError(f"{name}: shape {m.shape} does not broadcast to (B, H, Tq, Tk) = {shape}") from None
    if m.shape[-1] != shape[-1] or not m.flags.c_contiguous:
        m = np.ascontiguousarray(np.broadcast_to(m, (*m.shape[:-1], shape[-1])))
    return np.broadcast_to(m, shape)


def _attention_grad_buffers(sources: tuple[Tensor, ...]) -> tuple[tuple, tuple[bool, ...]]:
    """Gradient buffers of the attention's sources and whether each is fresh.

    A leaf's existing ``.grad`` is added into; a leaf without one and an intermediate get
    an uninitialised buffer that the kernel overwrites (zeroing each head's rows in its
    parallel task instead of a single-threaded ``np.zeros`` here). A tensor passed twice
    (key is value) takes the zeroed path throughout.
    """
    if len({id(s) for s in sources}) != len(sources):
        return tuple(grad_buffer(s) for s in sources), (False,) * len(sources)
    buffers, fresh = [], []
    for s in sources:
        if not s.requires_grad:
            buffers.append(None)
            fresh.append(False)
        elif s.is_leaf and s.grad is not None:
            buffers.append(s.grad)
            fresh.append(False)
        else:
            data = s.data
            contiguous = data.dtype == np.float32 and data.flags.c_contiguous
            buf = _attention_buffers.empty(data.shape) if contiguous else np.empty_like(data)
            if s.is_leaf:
                s.grad = buf
            buffers.append(buf)
            fresh.append(True)
    return tuple(buffers), tuple(fresh)


# Which source holds the (q, k, v) views, by number of sources: one packed [q | k | v]
# projection, query and packed [k | v], or three tensors.
_VIEW_SOURCES = {1: (0, 0, 0), 2: (0, 1, 1), 3: (0, 1, 2)}


def _attention_node(
    sources: tuple[Tensor, ...],
    views: Any,
    out: np.ndarray,
    out_view: Any,
    mask: np.ndarray | None,
    key_bias: np.ndarray | None,
    scale: float,
    causal: bool,
    dropout_p: float,
    need_weights: bool,
) -> tuple[Tensor, np.ndarray | None]:
    """One tape node around ``_core.attention_forward/backward``.

    ``views(arrays)`` maps the sources' arrays (or None entries) to the (q, k, v) views;
    ``out_view(arr)`` maps an array shaped like ``out`` to its (B, H, Tq, Dv) view.
    """
    q, k, v = views(tuple(s.data for s in sources))
    flash = attention_path(k.shape[2]) == "flash"
    seed = int(generator().integers(0, 2**63 - 1)) if dropout_p > 0.0 else 0
    spares: list = _attention_state["spares"]
    reuse = _take_spare(spares)
    weights, cache = _core.attention_forward(
        q, k, v, out_view(out), mask, key_bias, float(scale), bool(causal), float(dropout_p), seed, flash,
        need_weights, reuse,
    )

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        g = _grad(g)
        buffers, fresh = _attention_grad_buffers(sources)
        dq, dk, dv = views(buffers)
        overwrite = tuple(fresh[i] for i in _VIEW_SOURCES[len(sources)]) if any(fresh) else None
        _core.attention_backward(cache, out_view(g), dq, dk, dv, overwrite)
        _keep_spare(spares, cache)
        return tuple(returned_grad(s, b) for s, b in zip(sources, buffers, strict=True))

    result = make_result(out, sources, backward)
    if not result.requires_grad:
        _keep_spare(spares, cache, _core.attention_release)
    return result, weights


def _check_attention_inputs(q: Tensor, k: Tensor, v: Tensor) -> None:
    if q.ndim not in (3, 4) or k.ndim != q.ndim or v.ndim != q.ndim:
        raise ValueError(
            "scaled_dot_product_attention: expected query, key, value of shapes (B, H, Tq, D), "
            "(B, H, Tk, D), "
            f"(B, H, Tk, Dv) (or without H), got {q.shape}, {k.shape}, {v.shape}"
        )
    if k.shape[:-2] != q.shape[:-2] or v.shape[:-2] != q.shape[:-2]:
        raise ValueError(
            f"scaled_dot_product_attention: batch/head dimensions differ: query {q.shape}, key {k.shape}, "
            f"value {v.shape}"
        )
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(
            f"scaled_dot_product_attention: key's feature size {k.shape[-1]} differs from query's "
            f"{q.shape[-1]} "
            f"(query {q.shape}, key {k.shape})"
        )
    if v.shape[-2] != k.shape[-2]:
        raise ValueError(
            f"scaled_dot_product_attention: value has {v.shape[-2]} positions, key has {k.shape[-2]} "
            f"(key {k.shape}, value {v.shape})"
        )


def scaled_dot_product_attention(
    query: Any,
    key: Any,
    value: Any,
    attn_mask: Any = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """``softmax(query @ key^T * scale + mask) @ value`` with ``torch.nn.functional``'s semantics.

    Shapes: query (B, H, Tq, D), key (B, H, Tk, D), value (B, H, Tk, Dv) -> (B, H, Tq, Dv);
    3-d inputs (B, T, D) are taken as one head. ``attn_mask`` broadcasts to (B, H, Tq, Tk):
    boolean True means the key takes part (as torch), a float mask is added to the scores
    (it is a constant: no gradient flows to it). ``is_causal`` lets query i see keys
    j <= i (top-left aligned, as torch) and may not be combined with ``attn_mask``.
    ``scale`` defaults to ``1 / sqrt(D)``. ``dropout_p`` drops weights (always, as torch's
    functional form; pass 0 in evaluation), with a mask from the seeded generator.

    A query row whose keys are all masked gives zeros and a zero gradient (torch's math
    path), never NaN. Keys at least :func:`get_attention_flash_threshold` long use the
    tiled flash kernel (memory linear in the sequence), shorter ones plain GEMMs.
    One tape node.
    """
    q, k, v = _float_input(query, "query"), _float_input(key, "key"), _float_input(value, "value")
    _check_attention_inputs(q, k, v)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p: expected a probability in [0, 1), got {dropout_p}")
    if is_causal and attn_mask is not None:
        raise ValueError("scaled_dot_product_attention: pass either attn_mask or is_causal=True, not both")
    three = q.ndim == 3
    B, H = (q.shape[0], 1) if three else q.shape[:2]
    Tq, D = q.shape[-2:]
    Tk, Dv = v.shape[-2:]
    scale = 1.0 / float(np.sqrt(D)) if scale is None else float(scale)
    mask = None if attn_mask is None else _additive_mask(attn_mask, (B, H, Tq, Tk), "attn_mask", True)
    def shape4(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a.reshape(B, H, a.shape[-2], a.shape[-1])

    out = _attention_buffers.empty((*q.shape[:-1], Dv))
    result, _ = _attention_node(
        (q, k, v), lambda arrs: tuple(shape4(a) for a in arrs), out, shape4, mask, None, scale, is_causal,
        dropout_p, False,
    )
    return result


def multi_head_attention_core(
    query: Tensor,
    key: Tensor | None,
    value: Tensor | None,
    num_heads: int,
    attn_mask: np.ndarray | None = None,
    key_padding_bias: np.ndarray | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    need_weights: bool = False,
) -> tuple[Tensor, np.ndarray | None]:
    """Attention of already projected, batch-first heads, without splitting copies.

    Layouts (E = num_heads * Dh): ``key`` and ``value`` None: ``query`` is the packed
    (B, T, 3E) self-attention projection [q | k | v]; only ``value`` None: ``query``
    (B, Tq, E) and ``key`` the packed (B, Tk, 2E) [k | v]; otherwise query (B, Tq, E),
    key and value (B, Tk, E). ``attn_mask`` is an additive float32 array broadcast to
    (B, H, Tq, Tk), ``key_padding_bias`` an additive (B, Tk) array. Returns the output
    (B, Tq, E) with heads merged (one tape node) and, with ``need_weights``, the weights
    (B, H, Tq, Tk) after dropout as an ndarray (no gradient flows through them).
    """
    H = num_heads
    if key is None and value is None:
        B, T, W = query.shape
        Tq = Tk = T
        E = W // 3
        sources: tuple[Tensor, ...] = (query,)

        def views(arrs: tuple) -> tuple:
            a = arrs[0]
            if a is None:
                return None, None, None
            return tuple(_head_view(a, B, T, H, i * E, E) for i in range(3))
    elif value is None:
        assert key is not None
        B, Tq, E = query.shape
        Tk = key.shape[1]
        sources = (query, key)

        def views(arrs: tuple) -> tuple:
            qa, kva = arrs
            q = None if qa is None else _head_view(qa, B, Tq, H, 0, E)
            if kva is None:
                return q, None, None
            return q, _head_view(kva, B, Tk, H, 0, E), _head_view(kva, B, Tk, H, E, E)
    else:
        assert key is not None
        B, Tq, E = query.shape
        Tk = key.shape[1]
        sources = (query, key, value)

        def views(arrs: tuple) -> tuple:
            seqs = (Tq, Tk, Tk)
            return tuple(None if a is None else _head_view(a, B, t, H, 0, E) for a, t in zip(arrs, seqs))

    mask = None if attn_mask is None else np.broadcast_to(attn_mask, (B, H, Tq, Tk))
    out = _attention_buffers.empty((B, Tq, E))
    scale = 1.0 / float(np.sqrt(E // H))
    return _attention_node(
        sources, views, out, lambda a: _head_view(a, B, Tq, H, 0, E), mask, key_padding_bias, scale,
        is_causal, dropout_p, need_weights,
    )


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


def cross_entropy(
    input: Any,
    target: Any,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    """Softmax cross-entropy of logits against integer class targets, fused in one kernel.

    Shapes: input (N, C) or (*, C) with the classes on the LAST axis (the layout of a
    language model's (B, T, V) logits; torch puts them on axis 1 for more than 2
    dimensions), target (N,) or (*) int64. Rows whose target equals ``ignore_index``
    contribute nothing. ``label_smoothing`` e mixes the one-hot target with the uniform
    distribution as torch does: ``(1 - e) * nll + e * mean_j(-log p_j)``.
    ``reduction``: ``"mean"`` (over non-ignored rows; 0 when every row is ignored, where
    torch gives NaN), ``"sum"`` or ``"none"`` (shape of target). The kernel keeps only one
    logsumexp per row; the backward recomputes the softmax while writing the gradient.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")
    x = _float_input(input)
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"target: expected integer class indices (int64), got dtype {t.dtype}")
    if x.ndim < 1 or t.shape != x.shape[:-1]:
        raise ValueError(
            f"cross_entropy: target shape {t.shape} must equal input shape {x.shape} without its last "
            "(class) axis"
        )
    V = x.shape[-1]
    x2 = x.data.reshape(-1, V)
    t1 = np.ascontiguousarray(t, dtype=np.int64).reshape(-1)
    loss, lse = _core.cross_entropy_forward(x2, t1, int(ignore_index), float(label_smoothing))
    if reduction == "none":
        out = loss.reshape(t.shape)
        weight = None
    else:
        total = np.float32(loss.sum(dtype=np.float64))
        count = int(np.count_nonzero(t1 != ignore_index))
        div = np.float32(max(count, 1)) if reduction == "mean" else np.float32(1.0)
        out = np.asarray(total / div, dtype=np.float32)
        weight = div

    def backward(g: np.ndarray) -> tuple[np.ndarray]:
        if weight is None:
            gl = _grad(g).reshape(-1)
        else:
            gl = np.full(t1.shape, np.float32(g) / weight, dtype=np.float32)
        gx = _core.cross_entropy_backward(x2, t1, lse, gl, int(ignore_index), float(label_smoothing))
        return (gx.reshape(x.shape),)

    return make_result(out, (x,), backward)
