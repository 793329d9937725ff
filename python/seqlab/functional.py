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

    Gradients flow into every parameter, h0, c0 and memory, including through the
    fed-back predictions. ``workspace``: as in :func:`recurrent_layer`.
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
    )
    params: list[Tensor] = []
    for s in slots:
        if s is not None and all(s[0] is not p for p in params):
            params.append(s[0])
    states = [s for s in (h0, c0, memory) if s is not None]

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        buffers = [grad_buffer(p) for p in params]
        by_id = {id(p): b for p, b in zip(params, buffers, strict=True)}
        grads = []
        for s in slots:
            buf = None if s is None else by_id[id(s[0])]
            grads.append(None if buf is None else (buf if s[1] is None else buf[s[1]]))  # type: ignore[index]
        need_memory = memory is not None and memory.requires_grad
        dh0, dc0, dmem = _core.decoder_backward(cache, _grad(g), grads, need_memory)
        if workspace is not None and not workspace:
            workspace.append(cache)
        state_grads = [d for s, d in ((h0, dh0), (c0, dc0), (memory, dmem)) if s is not None]
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
