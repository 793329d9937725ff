"""Conv1d and CausalConv1d: 1-d convolutions mirroring ``torch.nn.Conv1d`` (stride 1, groups 1)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from . import init
from .module import Module
from .parameter import Parameter


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"Conv1d: {name} must be a positive int, got {value!r}")
    return int(value)


class Conv1d(Module):
    """1-d convolution over channels-first input, as ``torch.nn.Conv1d``.

    Args:
        in_channels, out_channels, kernel_size, dilation, bias: as in torch.
        stride, groups: only 1 is supported (a ValueError names anything else).
        padding: zeros on both sides (int), ``'valid'``, ``'same'`` (odd receptive
            field) or ``'causal'`` (``dilation*(kernel_size-1)`` zeros on the left only).
        causal: shorthand for ``padding='causal'``.

    Shapes: input (B, C_in, L) -> (B, C_out, L_out) with L_out = L for 'same'/'causal'
    and ``L + 2*padding - dilation*(kernel_size-1)`` otherwise. Parameters ``weight``
    (C_out, C_in, kernel_size) and ``bias`` (C_out,), initialised as torch does, so a
    ``state_dict`` moves both ways with ``torch.nn.Conv1d``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | str = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = _positive_int("in_channels", in_channels)
        self.out_channels = _positive_int("out_channels", out_channels)
        self.kernel_size = _positive_int("kernel_size", kernel_size)
        self.dilation = _positive_int("dilation", dilation)
        if stride != 1 or groups != 1:
            raise ValueError(
                f"Conv1d: only stride=1 and groups=1 are supported, got stride={stride}, groups={groups}"
            )
        self.stride, self.groups = 1, 1
        span = self.dilation * (self.kernel_size - 1)
        if causal or padding == "causal":
            self.padding: int | str = "causal"
            self._pad = (span, 0)
        elif padding == "same":
            if span % 2:
                raise ValueError("Conv1d: padding='same' needs an even dilation*(kernel_size-1)")
            self.padding, self._pad = "same", (span // 2, span // 2)
        elif padding == "valid":
            self.padding, self._pad = "valid", (0, 0)
        elif isinstance(padding, (int, np.integer)) and not isinstance(padding, bool) and padding >= 0:
            self.padding, self._pad = int(padding), (int(padding), int(padding))
        else:
            raise ValueError(
                f"Conv1d: padding must be a non-negative int, 'valid', 'same' or 'causal', got {padding!r}"
            )
        self.weight = Parameter(np.zeros((self.out_channels, self.in_channels, self.kernel_size), np.float32))
        self.bias: Parameter | None
        if bias:
            self.bias = Parameter(np.zeros((self.out_channels,), dtype=np.float32))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's default: kaiming_uniform(a=sqrt(5)) weights, U(-1/sqrt(fan_in), ..) bias."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5.0))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size)
            init.uniform_(self.bias, -bound, bound)

    def forward_channels_last(self, input: Any, activation: str | None = None) -> Tensor:
        """The same convolution over channels-last input (B, L, C_in) -> (B, L_out, C_out),
        without the two transposes of :meth:`forward`; ``activation="relu"`` fuses a ReLU."""
        return F.conv1d_channels_last(input, self.weight, self.bias, self.dilation, self._pad, activation)

    def forward(self, input: Any) -> Tensor:
        x = input if isinstance(input, Tensor) else Tensor(input)
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv1d: expected input (B, {self.in_channels}, L), got shape {x.shape}")
        return self.forward_channels_last(x.transpose(0, 2, 1)).transpose(0, 2, 1)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"dilation={self.dilation}, padding={self.padding!r}, bias={self.bias is not None}"
        )


class CausalConv1d(Conv1d):
    """Dilated causal convolution over batch-first channels-last sequences.

    Shapes: input (B, T, C_in) -> (B, T, C_out); output step t sees input steps
    t, t-d, ..., t-d*(kernel_size-1). Parameters as :class:`Conv1d` (torch layout).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1, bias: bool = True
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias, causal=True)

    def forward(self, input: Any) -> Tensor:
        return self.forward_channels_last(input)
