"""NextVectorModel: a causal sequence model over vectors that predicts the next one."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...autograd import Tensor, tensor
from ...nn import GRU, LSTM, Embedding, LayerNorm, Linear, Module, Sequential, TransformerDecoderBlock, init
from .config import VectorPredictorConfig

_HEAD_INIT_STD = 1e-4



class NextVectorModel(Module):
    """Reads vectors ``(B, S, D)`` and predicts, at every position, the vector after it.

    ``y_t = x_t + head(h_t)`` where ``h_t`` is the state of a causal ``config.cell``
    (GRU, LSTM or a pre-LayerNorm causal transformer with learned positions) after the
    first ``t + 1`` inputs; the prediction is ``y_t / |y_t|`` (the loss normalises).

    Shapes: forward(x (B, S, D), lengths (B,)) -> y (B, S, D), unnormalised.
    """

    def __init__(self, config: VectorPredictorConfig, dim: int) -> None:
        super().__init__()
        self.config = config
        self.dim = int(dim)
        c = config
        if c.cell == "transformer":
            self.input = Linear(dim, c.hidden_size)
            self.positions = Embedding(c.context, c.hidden_size)
            self.blocks = Sequential(  # iterated, not called: each block takes the padding mask
                *[TransformerDecoderBlock(c.hidden_size, c.num_heads, dropout=c.dropout)
                  for _ in range(c.num_layers)]
            )
            self.norm = LayerNorm(c.hidden_size)
        else:
            cell = GRU if c.cell == "gru" else LSTM
            self.rnn = cell(dim, c.hidden_size, num_layers=c.num_layers,
                            dropout=c.dropout if c.num_layers > 1 else 0.0)
        # The delta head starts near zero, so an untrained model predicts the last vector:
        # training starts from the copy-last baseline and moves away only as far as the
        # loss rewards (a default-initialised head adds a random delta about as long as
        # the vector itself, and the first epochs are spent undoing it). Not exactly zero,
        # so the sequence model below gets a gradient from the first step.
        self.head = Linear(c.hidden_size, dim)
        init.normal_(self.head.weight, std=_HEAD_INIT_STD)
        init.zeros_(self.head.bias)  # type: ignore[arg-type]

    # ------------------------------------------------------------ features
    def _transformer_states(self, x: Tensor, lengths: np.ndarray) -> Tensor:
        steps = x.shape[1]
        if steps > self.config.context:
            raise ValueError(f"the transformer reads at most context={self.config.context} vectors, "
                             f"got windows of {steps}")
        h = self.input(x) + self.positions(np.arange(steps))
        pad = np.arange(steps)[None, :] >= lengths[:, None] if (lengths < steps).any() else None
        for block in self.blocks:
            h = block(h, key_padding_mask=pad)
        return self.norm(h)

    def states(self, x: Tensor, lengths: np.ndarray, hx: Any = None) -> tuple[Tensor, Any]:
        """Hidden features ``(B, S, H)`` at every position and the recurrent state after
        the last (None for the transformer)."""
        if self.config.cell == "transformer":
            return self._transformer_states(x, lengths), None
        out, state = self.rnn(x, hx, lengths=lengths)
        return out, state

    def forward(self, x: Any, lengths: Any = None) -> Tensor:
        x = x if isinstance(x, Tensor) else tensor(np.asarray(x, dtype=np.float32))
        if x.ndim != 3 or x.shape[2] != self.dim:
            raise ValueError(f"expected vectors of shape (B, S, {self.dim}), got {x.shape}")
        lens = (np.full(x.shape[0], x.shape[1], np.int64) if lengths is None
                else np.asarray(lengths, dtype=np.int64))
        h, _ = self.states(x, lens)
        return x + self.head(h)

    def step(self, x: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """One recurrent step for streaming: x ``(B, D)`` -> (y ``(B, D)`` unnormalised, new state)."""
        xt = tensor(x[:, None, :])
        out, state = self.rnn(xt, state)
        y = x + self.head(out).data[:, 0]
        return y, state
