"""TCN forecaster: stacks of dilated causal convolutions with residual connections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ... import functional as F
from ... import nn
from ...autograd import Tensor


class TemporalBlock(nn.Module):
    """Two dilated causal convolutions (ReLU, dropout after each) plus a residual path
    (a 1x1 convolution, i.e. a Linear over channels, when the channel count changes).

    Shapes: input (B, T, C_in) -> (B, T, C_out), channels last.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.conv1 = nn.CausalConv1d(in_channels, out_channels, kernel_size, dilation=dilation)
        self.conv2 = nn.CausalConv1d(out_channels, out_channels, kernel_size, dilation=dilation)
        self.dropout = nn.Dropout(dropout)
        self.downsample = nn.Linear(in_channels, out_channels) if in_channels != out_channels else None

    def forward(self, x: Any) -> Tensor:
        if not (self.training and self.dropout.p > 0.0):  # the whole block as one op
            c1, c2, down = self.conv1, self.conv2, self.downsample
            return F.temporal_block(
                x,
                c1.weight,
                c1.bias,
                c2.weight,
                c2.bias,
                None if down is None else down.weight,
                None if down is None else down.bias,
                c1.dilation,
            )
        # With dropout: three tape nodes, each convolution with its ReLU fused, the residual
        # sum with its ReLU.
        out = self.dropout(self.conv1.forward_channels_last(x, activation="relu"))
        out = self.dropout(self.conv2.forward_channels_last(out, activation="relu"))
        res = x if self.downsample is None else self.downsample(x)
        return F.add_relu(out, res)


class TCNForecaster(nn.Module):
    """A temporal convolutional network (Bai et al., 2018) over the window; the last step's
    features are read out to the whole horizon by a Linear layer.

    Args:
        n_features: input channels C.
        horizon, n_targets: output shape per sample.
        channels: channels of every block.
        kernel_size: taps per causal convolution.
        dilations: one block per dilation (default 1, 2, 4, 8, 16: a receptive field of
            ``1 + 2*(kernel_size-1)*sum(dilations)`` steps).
        dropout: after each convolution.
        target_columns: when given, the network predicts the change from the last observed
            value of these input channels (as :class:`LSTMForecaster`).

    Shapes: input (B, L, C) -> (B, H, n_targets).
    """

    def __init__(
        self,
        n_features: int,
        horizon: int,
        n_targets: int = 1,
        channels: int = 32,
        kernel_size: int = 3,
        dilations: Sequence[int] = (1, 2, 4, 8, 16),
        dropout: float = 0.0,
        target_columns: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.target_columns = None if target_columns is None else [int(c) for c in target_columns]
        if not dilations:
            raise ValueError("TCNForecaster: dilations must not be empty")
        self.horizon, self.n_targets = horizon, n_targets
        self.dilations = [int(d) for d in dilations]
        self.blocks = nn.Sequential(
            *[
                TemporalBlock(n_features if i == 0 else channels, channels, kernel_size, d, dropout)
                for i, d in enumerate(self.dilations)
            ]
        )
        self.head = nn.Linear(channels, horizon * n_targets)
        self.receptive_field = 1 + 2 * (kernel_size - 1) * sum(self.dilations)

    def forward(self, x: Any) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(x)
        h = self.blocks(x)
        out = self.head(h[:, -1]).reshape(h.shape[0], self.horizon, self.n_targets)
        if self.target_columns is None:
            return out
        return out + x.data[:, -1:, self.target_columns]
