"""Recurrent ops: RNN (tanh, relu), LSTM and GRU layers over whole sequences, and the fused
autoregressive recurrent decoder with per-timestep teacher forcing and attention."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _core
from ..autograd import Tensor, grad_buffer, make_result, returned_grad
from ._common import _float_input, _grad

RECURRENT_MODES = ("rnn_tanh", "rnn_relu", "lstm", "gru")


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
        _recycle(workspace, cache)
        state_grads = [g for s, g in ((h0, dh0), (c0, dc0)) if s is not None]
        return (dx, *_returned_grads(params, buffers), *state_grads)

    node = make_result(np.zeros(1, dtype=np.float32), inputs, kernel_backward)
    _release_unless_taped(node, _core.recurrent_release, cache, workspace)

    def output_view(data: np.ndarray | None, key: str) -> Tensor | None:
        if data is None:
            return None

        def backward(g: np.ndarray) -> tuple[np.ndarray]:
            upstream[key] = _grad(g)
            return (np.zeros(1, dtype=np.float32),)

        return make_result(data, (node,), backward)

    return output_view(y, "output"), output_view(h_n, "h_n"), output_view(c_n, "c_n")  # type: ignore[return-value]




_DecoderSlot = tuple[Tensor, slice | None] | None


def _recycle(workspace: list | None, cache: Any) -> None:
    """Hands a kernel's cache back to the caller's ``workspace`` (when it keeps one and it is
    empty), so the next call of the same layer reuses its buffers."""
    if workspace is not None and not workspace:
        workspace.append(cache)


def _release_unless_taped(node: Tensor, release: Any, cache: Any, workspace: list | None) -> None:
    """Frees a kernel's saved activations at once when nothing will call its backward."""
    if not node.requires_grad:
        release(cache)
        _recycle(workspace, cache)


def _whole(t: Tensor | None) -> _DecoderSlot:
    return None if t is None else (t, None)


def _cell_slots(start: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias_ih: Tensor | None,
                bias_hh: Tensor | None) -> list[_DecoderSlot]:
    """The decoder kernels' first five arrays: start input, cell weights and biases."""
    return [(start, None), (weight_ih, None), (weight_hh, None), _whole(bias_ih), _whole(bias_hh)]


def _slot_data(slot: _DecoderSlot) -> np.ndarray | None:
    if slot is None:
        return None
    t, rows = slot
    return t.data if rows is None else t.data[rows]


def _attention_slots(
    hidden: int,
    in_proj_weight: Tensor | None,
    q_proj_weight: Tensor | None,
    k_proj_weight: Tensor | None,
    v_proj_weight: Tensor | None,
    in_proj_bias: Tensor | None,
    out_proj_weight: Tensor | None,
    out_proj_bias: Tensor | None,
) -> list[_DecoderSlot]:
    """The decoder kernels' 8 attention arrays (w_q, w_k, w_v, b_q, b_k, b_v, w_o, b_o) as
    (parameter, rows) slots of torch MultiheadAttention's parameters."""
    if out_proj_weight is None:
        raise ValueError("out_proj_weight: required with attention (num_heads > 0)")
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
    return [*proj, *biases, (out_proj_weight, None),
            None if out_proj_bias is None else (out_proj_bias, None)]


def _slot_params(slots: Sequence[_DecoderSlot]) -> list[Tensor]:
    """The distinct parameters behind the slots, in order of first use."""
    params: list[Tensor] = []
    for s in slots:
        if s is not None and all(s[0] is not p for p in params):
            params.append(s[0])
    return params


def _slot_grads(slots: Sequence[_DecoderSlot],
                params: Sequence[Tensor]) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
    """The parameters' gradient buffers and each slot's view of them: its parameter's
    buffer, or the rows of it the slot reads."""
    buffers = [grad_buffer(p) for p in params]
    by_id = {id(p): b for p, b in zip(params, buffers, strict=True)}
    grads: list[np.ndarray | None] = []
    for s in slots:
        buf = None if s is None else by_id[id(s[0])]
        grads.append(None if buf is None else (buf if s[1] is None else buf[s[1]]))  # type: ignore[index]
    return buffers, grads


def _returned_grads(params: Sequence[Tensor],
                    buffers: Sequence[np.ndarray | None]) -> list[np.ndarray | None]:
    """What each parameter's backward returns from its gradient buffer."""
    return [returned_grad(p, b) for p, b in zip(params, buffers, strict=True)]


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
    slots = _cell_slots(start, weight_ih, weight_hh, bias_ih, bias_hh)
    if attention:
        slots += _attention_slots(weight_hh.shape[1], in_proj_weight, q_proj_weight, k_proj_weight,
                                  v_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias)
    else:
        slots += [None] * 8
    slots += [(out_weight, None), _whole(out_bias)]
    attention_arrays = [_slot_data(s) for s in slots[5:13]] if attention else None
    pred, cache = _core.decoder_forward(
        mode, y.data, tf, *(_slot_data(s) for s in slots[:5]), _slot_data(slots[13]),
        _slot_data(slots[14]), None if h0 is None else h0.data, None if c0 is None else c0.data,
        None if memory is None else memory.data, memory_lengths, attention_arrays,
        int(num_heads), workspace.pop() if workspace else None,
        None if gate_bias is None else gate_bias.data,
    )
    params = _slot_params(slots)
    states = [s for s in (h0, c0, memory, gate_bias) if s is not None]

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        buffers, grads = _slot_grads(slots, params)
        need_memory = memory is not None and memory.requires_grad
        need_bias = gate_bias is not None and gate_bias.requires_grad
        dh0, dc0, dmem, dbias = _core.decoder_backward(cache, _grad(g), grads, need_memory, need_bias)
        _recycle(workspace, cache)
        state_grads = [d for s, d in ((h0, dh0), (c0, dc0), (memory, dmem), (gate_bias, dbias))
                       if s is not None]
        return (*_returned_grads(params, buffers), *state_grads)

    out = make_result(pred, (*params, *states), backward)
    _release_unless_taped(out, _core.decoder_release, cache, workspace)
    return out
