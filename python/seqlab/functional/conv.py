"""Convolution: 1-d convolution over channels-last sequences (causal or padded) and the
fused temporal block of the TCN."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _core
from ..autograd import Tensor, grad_buffer, make_result, returned_grad
from ._common import _float_input, _grad, _keep_spare, _take_spare

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


def _recycled_kernel_node(
    x: Tensor,
    params: tuple[Tensor | None, ...],
    spares: list,
    forward: Callable[[Any], tuple[np.ndarray, Any]],
    backward: Callable[[Any, np.ndarray, list[np.ndarray | None], bool], np.ndarray | None],
    release: Callable[[Any], None],
) -> Tensor:
    """One tape node over a kernel whose caches are recycled through ``spares``.

    ``forward(reuse)`` runs the kernel on a spare cache (or None) and returns ``(out,
    cache)``; ``backward(cache, g, buffers, need_input)`` fills the gradient buffers of
    ``params`` (None for an absent parameter) and returns the input gradient. The cache
    goes back to ``spares`` after the backward, or at once (released) when no graph is
    recorded."""
    out, cache = forward(_take_spare(spares))
    present = [p for p in params if p is not None]

    def node_backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        buffers = [None if p is None else grad_buffer(p) for p in params]
        gx = backward(cache, _grad(g), buffers, x.requires_grad)
        _keep_spare(spares, cache)
        return (gx, *(returned_grad(p, b) for p, b in zip(params, buffers, strict=True) if p is not None))

    result = make_result(out, (x, *present), node_backward)
    if not result.requires_grad:
        _keep_spare(spares, cache, release)
    return result


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
    return _recycled_kernel_node(
        x, (weight, bias), _conv_spares,
        lambda reuse: _core.conv1d_forward(x.data, weight.data, None if bias is None else bias.data,
                                           int(dilation), left, right, reuse, activation or "none"),
        lambda cache, g, buffers, need_x: _core.conv1d_backward(cache, g, *buffers, need_x),
        _core.conv1d_release,
    )


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
    return _recycled_kernel_node(
        x, params, _block_spares,
        lambda reuse: _core.temporal_block_forward(
            x.data, *(None if p is None else p.data for p in params), int(dilation), reuse
        ),
        lambda cache, g, buffers, need_x: _core.temporal_block_backward(cache, g, *buffers, need_x),
        _core.temporal_block_release,
    )


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
