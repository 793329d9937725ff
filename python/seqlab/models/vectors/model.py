"""NextVectorModel: a causal sequence model over vectors that predicts the next one."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from ...autograd import Tensor, tensor
from ...nn import GRU, LSTM, Embedding, LayerNorm, Linear, Module, Sequential, TransformerDecoderBlock, init
from .config import VectorPredictorConfig

#: the fixed views of a window that the model mixes into its prediction, one weight
#: each (see :meth:`NextVectorModel.mix_features`; the recipe chooses the weights on
#: validation, :func:`~seqlab.models.vectors.mix.choose_mix`)
MIX_FEATURES = ("previous", "mean")
_HEAD_INIT_STD = 1e-4


class NextVectorModel(Module):
    """Reads vectors ``(B, S, D)`` and predicts, at every position, the vector after it.

    ``y_t = x_t + mix[0] x_{t-1} + mix[1] mean(x_0..x_t) + head(h_t)`` where ``h_t`` is
    the state of a causal ``config.cell`` (GRU, LSTM or a pre-LayerNorm causal
    transformer with learned positions) after the first ``t + 1`` inputs, and ``mix``
    two fixed weights, a buffer (``x_{-1}`` is zero; the mean covers at most
    ``config.context`` vectors); the prediction is ``y_t / |y_t|`` (the loss normalises).
    ``mix`` starts at zero and the head near zero: an untrained model predicts the last
    vector (the copy-last baseline), and training moves it only as far as the loss rewards.

    Shapes: forward(x (B, S, D), lengths (B,)) -> y (B, S, D), unnormalised.
    """

    mix: np.ndarray  # (len(MIX_FEATURES),) float32 buffer

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
        self.register_buffer("mix", np.zeros(len(MIX_FEATURES), np.float32))

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

    def mix_features(self, x: np.ndarray) -> np.ndarray:
        """``(B, S, K, D)``: at every position t of ``x`` ``(B, S, D)``, the vectors the
        model mixes in (:data:`MIX_FEATURES`): ``x_{t-1}`` (zero at t = 0) and the mean
        of the last ``min(t + 1, context)`` inputs. Constants: they depend on the data only."""
        prev = np.zeros_like(x)
        prev[:, 1:] = x[:, :-1]
        csum = np.cumsum(x, axis=1, dtype=np.float64)
        t = np.arange(x.shape[1])
        first = t - self.config.context  # the sum of the window drops rows before t + 1 - context
        drop = np.where(first[None, :, None] >= 0, csum[:, np.maximum(first, 0)], 0.0)
        mean = (csum - drop) / np.minimum(t + 1, self.config.context)[None, :, None]
        return np.stack([prev, mean.astype(np.float32)], axis=2)

    def _mixed(self, x: np.ndarray, features: np.ndarray) -> np.ndarray:
        """``x + sum_k mix[k] features[..., k, :]``."""
        return x + np.einsum("...kd,k->...d", features, self.mix).astype(np.float32)

    def forward(self, x: Any, lengths: Any = None) -> Tensor:
        x = x if isinstance(x, Tensor) else tensor(np.asarray(x, dtype=np.float32))
        if x.ndim != 3 or x.shape[2] != self.dim:
            raise ValueError(f"expected vectors of shape (B, S, {self.dim}), got {x.shape}")
        lens = (np.full(x.shape[0], x.shape[1], np.int64) if lengths is None
                else np.asarray(lengths, dtype=np.int64))
        h, _ = self.states(x, lens)
        return tensor(self._mixed(x.data, self.mix_features(x.data))) + self.head(h)

    def predict_last(self, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``(B, D)`` unnormalised predictions after the last real vector of each
        right-padded window ``x`` ``(B, T, D)`` (``lengths`` ``(B,)``); no gradient."""
        rows = np.arange(len(lengths))
        h, _ = self.states(tensor(x), lengths)
        last = lengths - 1
        mixed = self._mixed(x[rows, last], self.mix_features(x)[rows, last])
        return mixed + self.head(tensor(h.data[rows, last])).data

    def step(self, x: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """One recurrent step for streaming: x ``(B, D)`` -> (y ``(B, D)`` unnormalised, new
        state). The state is the cell's, the last ``context`` inputs and their running sum
        (float64), so a step costs O(D) beyond the cell's, whatever the history."""
        if state is None:
            state = (None, deque(maxlen=self.config.context), np.zeros(x.shape, np.float64))
        hx, recent, total = state
        if len(recent) == recent.maxlen:
            total = total - recent[0]
        prev = recent[-1] if recent else np.zeros_like(x)
        recent.append(x)
        total = total + x
        features = np.stack([prev, (total / len(recent)).astype(np.float32)], axis=1)
        out, hx = self.rnn(tensor(x[:, None, :]), hx)
        y = self._mixed(x, features) + self.head(out).data[:, 0]
        return y, (hx, recent, total)
