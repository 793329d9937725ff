"""LSTM forecaster: an LSTM encoder over the window and an MLP or recurrent decoder over the horizon."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ... import nn
from ...autograd import Tensor


class LSTMForecaster(nn.Module):
    """Encodes the input window with an LSTM and decodes the whole horizon at once.

    Args:
        n_features: input channels C.
        horizon: steps predicted H.
        n_targets: target channels predicted per step.
        hidden_size, num_layers, dropout: encoder size (dropout between layers and in the head).
        decoder: ``"mlp"`` (final hidden state -> two-layer MLP -> H * n_targets values) or
            ``"recurrent"`` (an LSTM started from the encoder's final state, fed the one-hot
            step index, read out per step).
        target_columns: indices of the targets among the input channels; when given, the
            network predicts the change from the last observed target value (which keeps
            forecasts of trending series in range).

    Shapes: input (B, L, C) -> (B, H, n_targets).
    """

    def __init__(
        self,
        n_features: int,
        horizon: int,
        n_targets: int = 1,
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        decoder: str = "mlp",
        target_columns: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if decoder not in ("mlp", "recurrent"):
            raise ValueError(f"LSTMForecaster: decoder must be 'mlp' or 'recurrent', got {decoder!r}")
        self.horizon, self.n_targets, self.decoder_kind = horizon, n_targets, decoder
        self.target_columns = None if target_columns is None else [int(c) for c in target_columns]
        if self.target_columns is not None and len(self.target_columns) != n_targets:
            raise ValueError(
                f"LSTMForecaster: {len(self.target_columns)} target_columns for n_targets={n_targets}"
            )
        self.encoder = nn.LSTM(
            n_features, hidden_size, num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0
        )
        if decoder == "mlp":
            self.head: nn.Module = nn.Sequential(
                nn.Linear(hidden_size, hidden_size),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden_size, horizon * n_targets),
            )
        else:
            self.decoder = nn.LSTM(
                horizon, hidden_size, num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0
            )
            self.head = nn.Linear(hidden_size, n_targets)
            self._steps = np.eye(horizon, dtype=np.float32)[None]

    def forward(self, x: Any) -> Tensor:
        x = x if isinstance(x, Tensor) else Tensor(x)
        _, (h, c) = self.encoder(x)
        batch = h.shape[1]
        if self.decoder_kind == "mlp":
            out = self.head(h[-1]).reshape(batch, self.horizon, self.n_targets)
        else:
            steps = np.ascontiguousarray(np.broadcast_to(self._steps, (batch, self.horizon, self.horizon)))
            dec, _ = self.decoder(steps, (h, c))
            out = self.head(dec)
        if self.target_columns is None:
            return out
        return out + x.data[:, -1:, self.target_columns]
