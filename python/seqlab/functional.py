"""Differentiable operations: each a thin wrapper of one ``seqlab._core`` forward/backward pair.

Every function takes and returns :class:`seqlab.Tensor` (batch-first ``(B, T, C)``
for sequences) and records one node on the autograd tape.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _core  # noqa: F401
from .autograd import Tensor, grad_buffer, make_result, returned_grad  # noqa: F401

# =====================================================================
# Dense layers and activations: linear, embedding, sigmoid, tanh, relu,
# gelu, softmax, dropout.
# =====================================================================


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
