"""Sequence-to-sequence ops: the teacher-forced pointer-generator decoder and its loss
(See et al. 2017) over a whole target, as one fused kernel and one tape node."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core
from ..autograd import Tensor, make_result
from ._common import _float_input
from .recurrent import (
    _attention_slots,
    _cell_slots,
    _recycle,
    _release_unless_taped,
    _returned_grads,
    _slot_data,
    _slot_grads,
    _slot_params,
    _whole,
)


def _ids(value: Any, name: str, shape: tuple[int, int]) -> np.ndarray:
    arr = np.asarray(value.data if isinstance(value, Tensor) else value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer ids, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def pointer_generator_loss(
    inputs: Tensor,
    source_ids: np.ndarray,
    target_ids: np.ndarray,
    target_mask: np.ndarray,
    extended_size: int,
    memory: Tensor,
    start: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None,
    bias_hh: Tensor | None,
    out_weight: Tensor,
    out_bias: Tensor | None,
    gen_weight: Tensor,
    gen_bias: Tensor | None,
    h0: Tensor | None = None,
    c0: Tensor | None = None,
    memory_lengths: np.ndarray | None = None,
    *,
    num_heads: int,
    in_proj_weight: Tensor | None = None,
    q_proj_weight: Tensor | None = None,
    k_proj_weight: Tensor | None = None,
    v_proj_weight: Tensor | None = None,
    in_proj_bias: Tensor | None = None,
    out_proj_weight: Tensor | None = None,
    out_proj_bias: Tensor | None = None,
    workspace: list | None = None,
) -> Tensor:
    """Mean negative log-likelihood of a teacher-forced pointer-generator decoder.

    Step ``t`` of the LSTM decoder reads ``u_t = start`` at ``t = 0``, else
    ``inputs[:, t-1]`` (the embedding of the previous target token; no input feeding),
    then ``h_t = LSTMCell(u_t, h_{t-1})``, ``ctx_t = MHA(h_t, memory, memory)`` (torch's
    MultiheadAttention, keys ``s >= memory_lengths[b]`` masked; ``a_t`` its weights
    averaged over the heads: the copy distribution), vocabulary logits
    ``[h_t; ctx_t] @ out_weight.T + out_bias``, the gate
    ``p_gen = sigmoid(gen_weight . [h_t; ctx_t; u_t] + gen_bias)`` and

        P(w) = p_gen softmax(logits)[w] + (1 - p_gen) sum_{s: source_ids[b, s] = w} a_t[s]

    over the extended vocabulary (ids ``>= V`` are the example's source-only tokens).
    Returns the scalar ``sum over target_mask of -log(P(target_ids) + 1e-12) / count``.

    Shapes: inputs (B, T, E); source_ids (B, S), target_ids (B, T) int extended ids in
    ``[0, extended_size)``; target_mask (B, T) bool; memory (B, S, A); start (E,);
    weight_ih (4H, E); weight_hh (4H, H); biases (4H,); out_weight (V, 2H); out_bias (V,);
    gen_weight (1, 2H + E); gen_bias (1,); h0, c0 (B, H); memory_lengths (B,) in [1, S].
    Attention weights as :func:`seqlab.functional.recurrent_decoder`. Gradients flow into
    inputs, memory, h0, c0 and every parameter.
    """
    x = _float_input(inputs, "inputs")
    if x.ndim != 3:
        raise ValueError(f"inputs: expected (batch, steps, embedding), got shape {x.shape}")
    batch, steps = x.shape[0], x.shape[1]
    mem = _float_input(memory, "memory")
    if mem.ndim != 3 or mem.shape[0] != batch:
        raise ValueError(
            f"memory: expected ({batch}, S, A) (batch, source steps, features), got shape {mem.shape}"
        )
    src = _ids(source_ids, "source_ids", (batch, mem.shape[1]))
    tgt = _ids(target_ids, "target_ids", (batch, steps))
    mask = np.asarray(target_mask)
    if mask.shape != (batch, steps):
        raise ValueError(f"target_mask: expected shape {(batch, steps)}, got {mask.shape}")
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    lens = None if memory_lengths is None else np.ascontiguousarray(memory_lengths, dtype=np.int64)
    slots = _cell_slots(start, weight_ih, weight_hh, bias_ih, bias_hh)
    slots += _attention_slots(weight_hh.shape[1], in_proj_weight, q_proj_weight, k_proj_weight,
                              v_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias)
    slots += [(out_weight, None), _whole(out_bias), (gen_weight, None), _whole(gen_bias)]
    data = [_slot_data(s) for s in slots]
    loss, cache = _core.pointer_generator_forward(
        x.data,
        *data[:5],
        data[5:13],
        int(num_heads),
        data[13],
        data[14],
        data[15],
        data[16],
        mem.data,
        lens,
        src,
        tgt,
        mask,
        int(extended_size),
        None if h0 is None else h0.data,
        None if c0 is None else c0.data,
        workspace.pop() if workspace else None,
    )
    params = _slot_params(slots)
    states = [s for s in (h0, c0) if s is not None]

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        buffers, grads = _slot_grads(slots, params)
        d_in, dh0, dc0, dmem = _core.pointer_generator_backward(
            cache, float(np.asarray(g).reshape(())), grads, x.requires_grad, mem.requires_grad
        )
        _recycle(workspace, cache)
        state_grads = [d for s, d in ((h0, dh0), (c0, dc0)) if s is not None]
        return (d_in, dmem, *_returned_grads(params, buffers), *state_grads)

    out = make_result(np.asarray(loss, dtype=np.float32), (x, mem, *params, *states), backward)
    _release_unless_taped(out, _core.pointer_generator_release, cache, workspace)
    return out
