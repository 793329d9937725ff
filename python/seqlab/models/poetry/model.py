"""SequenceAutoencoder: recurrent encoder -> small bottleneck -> recurrent decoder (+ attention)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import functional as F
from ...autograd import Tensor, tensor
from ...nn import GRU, LSTM, RNN, Linear, Module, RecurrentDecoder
from ...nn import init as initializers
from ...random import generator
from .config import AutoencoderConfig

_ENCODERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


class SequenceAutoencoder(Module):
    """Autoencoder of word-vector sequences through a ``config.bottleneck``-d code.

    * encoder: ``config.cell`` over the inputs (B, T, E) with their lengths; the last
      layer's final states (both directions when bidirectional) give
      ``code = tanh(to_code(final))`` of shape (B, bottleneck);
    * decoder: a :class:`~seqlab.nn.RecurrentDecoder` of the same cell started from
      ``h0 = tanh(from_code(code))``, teacher-forced per timestep with the ratio
      ``teacher_forcing_ratio`` (set by the training curriculum), and with
      ``config.num_heads``-head attention over the encoder states when
      ``config.attention``; it predicts each token's vector (B, T, E). With
      ``config.code_every_step`` the code also enters every step's gates
      (``code_to_gates``, the decoder's ``gate_bias``), so the decoder does not have to
      carry it through its state across the whole sequence;
    * with ``config.linear_path``, a linear encoder/decoder pair beside the recurrent one:
      the code also receives ``linear_encoder(x_flat)`` and the prediction
      ``linear_decoder(code)``, where ``x_flat`` (B, max_len * E) is the zero-padded,
      flattened input. It holds a linear autoencoder (a PCA of the padded sequences, the
      recipe's linear baseline) inside the model, and the recurrent path learns what that
      misses; :meth:`init_linear_path` starts it at that PCA.

    Attention lets information bypass the bottleneck, so :meth:`forward` can run the
    decoder with ``use_attention=False``: the attention then sees all-zero encoder
    states and the reconstruction depends on the code alone. In training, a share
    ``config.memory_dropout`` of the rows (drawn from the seeded generator) runs that
    way, so that the decoder learns to reconstruct from the code and the code is
    trained to carry the sequence rather than being bypassed.
    """

    def __init__(self, config: AutoencoderConfig, embedding_dim: int) -> None:
        super().__init__()
        self.config = config
        self.embedding_dim = int(embedding_dim)
        c = config
        directions = 2 if c.bidirectional else 1
        self.encoder = _ENCODERS[c.cell](
            embedding_dim,
            c.hidden_size,
            num_layers=c.num_layers,
            bidirectional=c.bidirectional,
            dropout=c.dropout,
            init=c.init,
        )
        self.to_code = Linear(directions * c.hidden_size, c.bottleneck)
        self.from_code = Linear(c.bottleneck, c.decoder_size)
        self.decoder = RecurrentDecoder(
            embedding_dim,
            c.decoder_size,
            cell=c.cell,
            attention_dim=directions * c.hidden_size if c.attention else None,
            num_heads=c.num_heads,
            init=c.init,
        )
        self.linear_encoder: Linear | None = None
        self.linear_decoder: Linear | None = None
        if c.linear_path:
            self.linear_encoder = Linear(c.max_len * embedding_dim, c.bottleneck)
            self.linear_decoder = Linear(c.bottleneck, c.max_len * embedding_dim)
        self.code_to_gates: Linear | None = None
        if c.code_every_step:
            gates = self.decoder.weight_ih.shape[0]  # G * decoder hidden
            self.code_to_gates = Linear(c.bottleneck, gates, bias=False)
            if c.init == "orthogonal":
                initializers.xavier_uniform_(self.code_to_gates.weight)

    def init_linear_path(self, mean: np.ndarray, basis: np.ndarray, code_scale: float) -> None:
        """Starts the linear path at a PCA of the padded, flattened sequences, and the
        recurrent path's share of the code near zero.

        Shapes: mean (max_len * E,); basis (max_len * E, bottleneck) with orthonormal
        columns. The code is then ``tanh((x_flat - mean) @ basis / code_scale)`` and the
        linear reconstruction ``mean + basis @ code * code_scale``: the PCA's, as long as
        ``code_scale`` keeps the tanh near its linear range (a few times the largest
        component's standard deviation), plus the recurrent encoder's share, whose weights
        start at ``config.recurrent_code_share`` x their random initialisation.
        """
        if self.linear_encoder is None or self.linear_decoder is None:
            raise ValueError("init_linear_path: the model has no linear path (config.linear_path)")
        if self.linear_encoder.bias is None or self.linear_decoder.bias is None:
            raise ValueError("init_linear_path: the linear path has no biases")
        expected = (self.config.max_len * self.embedding_dim, self.config.bottleneck)
        if basis.shape != expected or mean.shape != expected[:1]:
            raise ValueError(f"init_linear_path: basis {basis.shape} and mean {mean.shape}, "
                             f"expected {expected} and {expected[:1]}")
        scale = np.float32(code_scale)
        self.linear_encoder.weight.data[...] = basis.T / scale
        self.linear_encoder.bias.data[...] = -(mean @ basis) / scale
        self.linear_decoder.weight.data[...] = basis * scale
        self.linear_decoder.bias.data[...] = mean
        # the recurrent path starts small (not zero, so that its encoder has gradients)
        self.to_code.weight.data[...] *= np.float32(self.config.recurrent_code_share)
        if self.to_code.bias is not None:
            self.to_code.bias.data[...] = 0.0

    @property
    def teacher_forcing_ratio(self) -> float:
        return self.decoder.teacher_forcing_ratio

    @teacher_forcing_ratio.setter
    def teacher_forcing_ratio(self, value: float) -> None:
        self.decoder.teacher_forcing_ratio = float(value)

    def encode(self, x: Tensor, lengths: np.ndarray) -> tuple[Tensor, Tensor]:
        """Codes (B, bottleneck) and encoder states (B, T, D*H) of inputs x (B, T, E)."""
        out, state = self.encoder(x, lengths=lengths)
        h_n = state[0] if isinstance(state, tuple) else state  # (L*D, B, H)
        directions = 2 if self.config.bidirectional else 1
        last = h_n[h_n.shape[0] - directions :]  # (D, B, H): the last layer
        final = last.transpose(1, 0, 2).reshape(x.shape[0], directions * self.config.hidden_size)
        pre = self.to_code(final)
        if self.linear_encoder is not None:
            pre = pre + self.linear_encoder(tensor(self._flat(x.data)))
        return F.tanh(pre), out

    def _flat(self, x: np.ndarray) -> np.ndarray:
        """Inputs (B, T, E) zero-padded to (B, max_len * E) for the linear path."""
        B, T, E = x.shape
        if T > self.config.max_len:
            raise ValueError(
                f"x: {T} steps, more than the model's max_len {self.config.max_len} (linear_path)"
            )
        flat = np.zeros((B, self.config.max_len, E), np.float32)
        flat[:, :T] = x
        return flat.reshape(B, -1)

    def decode(
        self,
        code: Tensor,
        targets: Tensor,
        lengths: np.ndarray,
        memory: Tensor | None = None,
        teacher_forcing: Any = None,
    ) -> Tensor:
        """Predicted vectors (B, T, E) from codes (B, bottleneck); targets feed teacher-forced steps."""
        h0 = F.tanh(self.from_code(code))
        if self.decoder.attention is None:
            memory = None
        pred = self.decoder(
            targets,
            h0,
            teacher_forcing=teacher_forcing,
            memory=memory,
            memory_lengths=lengths if memory is not None else None,
            gate_bias=None if self.code_to_gates is None else self.code_to_gates(code),
        )
        if self.linear_decoder is not None:
            B, T, E = targets.shape
            linear = self.linear_decoder(code).reshape(B, self.config.max_len, E)
            pred = pred + (linear if T == self.config.max_len else linear[:, :T])
        return pred

    def forward(
        self, x: Any, lengths: Any, teacher_forcing: Any = None, use_attention: bool = True
    ) -> tuple[Tensor, Tensor]:
        """Reconstructs x (B, T, E) with lengths (B,); returns (predictions (B, T, E), codes)."""
        x = x if isinstance(x, Tensor) else tensor(x)
        lengths = np.asarray(lengths, dtype=np.int64)
        code, states = self.encode(x, lengths)
        memory = None
        if self.decoder.attention is not None:
            if not use_attention:
                memory = tensor(np.zeros(states.shape, np.float32))
            elif self.training and self.config.memory_dropout > 0:
                keep = generator().random(states.shape[0]) >= self.config.memory_dropout
                memory = states * tensor(keep.astype(np.float32)[:, None, None])
            else:
                memory = states
        return self.decode(code, x.detach(), lengths, memory, teacher_forcing), code
