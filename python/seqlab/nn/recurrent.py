"""Recurrent layers RNN, LSTM and GRU, mirroring ``torch.nn`` (names, layouts, shapes).

Each layer of the stack is one call of :func:`seqlab.functional.recurrent_layer` (a
fused C++ kernel over the whole sequence, both directions); dropout between layers
in training draws its mask from the seeded ``seqlab.random`` generator.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import Tensor, concatenate, mul, tensor, transpose
from ..random import generator
from . import init as initializers
from .module import Module
from .parameter import Parameter

_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
_INITS = ("default", "orthogonal")


class RNNBase(Module):
    """Shared machinery of :class:`RNN`, :class:`LSTM` and :class:`GRU`.

    Parameters, registered in PyTorch's order for each layer ``k`` and direction
    (suffix ``""`` or ``"_reverse"``): ``weight_ih_l{k}`` ``(G*H, in)``, ``weight_hh_l{k}``
    ``(G*H, H)``, ``bias_ih_l{k}`` and ``bias_hh_l{k}`` ``(G*H,)``, where ``in`` is
    ``input_size`` for layer 0 and ``D*H`` above it.
    """

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        init: str = "default",
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        if init not in _INITS:
            raise ValueError(f"init: expected one of {_INITS}, got {init!r}")
        self.mode = mode
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.init = init
        self.num_directions = 2 if bidirectional else 1
        # Per layer, kernel buffers handed back by a finished step for the next one.
        self._workspaces: list[list] = [[] for _ in range(self.num_layers)]
        gate_size = _GATES[mode] * self.hidden_size
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.hidden_size * self.num_directions
            for suffix in self._suffixes():
                setattr(self, f"weight_ih_l{layer}{suffix}",
                        Parameter(np.empty((gate_size, layer_input), np.float32)))
                setattr(self, f"weight_hh_l{layer}{suffix}",
                        Parameter(np.empty((gate_size, self.hidden_size), np.float32)))
                if self.bias:
                    setattr(self, f"bias_ih_l{layer}{suffix}",
                            Parameter(np.empty((gate_size,), np.float32)))
                    setattr(self, f"bias_hh_l{layer}{suffix}",
                            Parameter(np.empty((gate_size,), np.float32)))
        self.reset_parameters()

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def reset_parameters(self) -> None:
        """Re-initialises every parameter.

        ``init="default"``: PyTorch's U(-1/sqrt(H), 1/sqrt(H)) for all weights and
        biases. ``init="orthogonal"``: orthogonal recurrent weights (each gate block),
        Xavier-uniform input weights, zero biases.
        """
        if self.init == "default":
            bound = 1.0 / math.sqrt(self.hidden_size)
            for p in self.parameters():
                initializers.uniform_(p, -bound, bound)
            return
        for name, p in self.named_parameters():
            if name.startswith("weight_hh"):
                initializers.orthogonal_(p)
            elif name.startswith("weight_ih"):
                initializers.xavier_uniform_(p)
            else:
                initializers.zeros_(p)

    def _layer_weights(self, layer: int) -> tuple[list[Parameter], ...]:
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") if self.bias else (
            "weight_ih", "weight_hh")
        return tuple(
            [getattr(self, f"{n}_l{layer}{s}") for s in self._suffixes()] for n in names
        )

    # ---------------------------------------------------------------- checks
    def _check_input(self, input: Any) -> Tensor:
        x = input if isinstance(input, Tensor) else tensor(input)
        if x.dtype != np.float32:
            raise TypeError(f"input: expected a float tensor (float32), got dtype {x.dtype}")
        layout = "(batch, seq, features)" if self.batch_first else "(seq, batch, features)"
        if x.ndim != 3:
            raise ValueError(
                f"input: expected a 3-D tensor {layout} with features={self.input_size}, "
                f"got shape {x.shape}"
            )
        if x.shape[2] != self.input_size:
            raise ValueError(
                f"input: expected shape {layout} with features={self.input_size}, got shape "
                f"{x.shape}"
            )
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"input: expected a non-empty batch and sequence, got shape {x.shape}")
        return x

    def _check_state(self, state: Any, name: str, batch: int) -> Tensor:
        s = state if isinstance(state, Tensor) else tensor(state)
        expected = (self.num_layers * self.num_directions, batch, self.hidden_size)
        if s.dtype != np.float32:
            raise TypeError(f"{name}: expected a float tensor (float32), got dtype {s.dtype}")
        if s.shape != expected:
            raise ValueError(
                f"{name}: expected shape {expected} (num_layers*num_directions, batch, "
                f"hidden_size), got {s.shape}"
            )
        return s

    @staticmethod
    def _check_lengths(lengths: Any, batch: int, seq: int) -> np.ndarray:
        if isinstance(lengths, Tensor):
            lengths = lengths.data
        elif hasattr(lengths, "detach") and hasattr(lengths, "numpy"):
            lengths = lengths.detach().cpu().numpy()  # a torch tensor
        arr = np.asarray(lengths)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"lengths: expected integers, got dtype {arr.dtype}")
        if arr.shape != (batch,):
            raise ValueError(
                f"lengths: expected shape ({batch},) (one per sequence), got {arr.shape}"
            )
        if arr.min() < 1 or arr.max() > seq:
            raise ValueError(
                f"lengths: every length must be in [1, {seq}] (the sequence length of input), "
                f"got min {arr.min()} and max {arr.max()}"
            )
        return np.ascontiguousarray(arr, dtype=np.int64)

    # --------------------------------------------------------------- forward
    def _run(
        self, input: Any, h0: Any, c0: Any, lengths: Any, h_name: str = "hx", c_name: str = "hx"
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        x = self._check_input(input)
        if not self.batch_first:
            x = transpose(x, (1, 0, 2))
        batch, seq = x.shape[0], x.shape[1]
        h0_t = None if h0 is None else self._check_state(h0, h_name, batch)
        c0_t = None if c0 is None else self._check_state(c0, c_name, batch)
        lens = None if lengths is None else self._check_lengths(lengths, batch, seq)
        D = self.num_directions
        h_list: list[Tensor] = []
        c_list: list[Tensor] = []
        for layer in range(self.num_layers):
            if layer > 0 and self.training and self.dropout > 0.0:
                keep = generator().random(x.shape, dtype=np.float32) >= self.dropout
                x = mul(x, keep.astype(np.float32) * np.float32(1.0 / (1.0 - self.dropout)))
            weights = self._layer_weights(layer)
            rows = slice(layer * D, (layer + 1) * D)
            layer_h0 = None if h0_t is None else (h0_t if self.num_layers == 1 else h0_t[rows])
            layer_c0 = None if c0_t is None else (c0_t if self.num_layers == 1 else c0_t[rows])
            x, h_n, c_n = F.recurrent_layer(
                self.mode, x, weights[0], weights[1],
                weights[2] if self.bias else None, weights[3] if self.bias else None,
                layer_h0, layer_c0, lens, self._workspaces[layer],
            )
            h_list.append(h_n)
            if c_n is not None:
                c_list.append(c_n)
        output = x if self.batch_first else transpose(x, (1, 0, 2))
        h_out = h_list[0] if len(h_list) == 1 else concatenate(h_list, axis=0)
        c_out = None
        if c_list:
            c_out = c_list[0] if len(c_list) == 1 else concatenate(c_list, axis=0)
        return output, h_out, c_out

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.mode == "rnn_relu":
            s += ", nonlinearity='relu'"
        if not self.bias:
            s += ", bias=False"
        if not self.batch_first:
            s += ", batch_first=False"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.init != "default":
            s += f", init={self.init!r}"
        return s


_SHAPES_DOC = """
    Shapes (B batch, T steps, C = input_size, H = hidden_size, D = 2 if bidirectional
    else 1, L = num_layers): ``input`` (B, T, C) with ``batch_first=True`` (the
    default) or (T, B, C); ``output`` likewise with D*H features; states ``(L*D, B, H)``;
    ``lengths`` (B,) integers in [1, T] (outputs past a sequence's length are zero
    and its final state is taken at its last valid step, as with PyTorch's
    ``pack_padded_sequence(..., enforce_sorted=False)``). A float64 ndarray input is
    converted to float32.
"""


class RNN(RNNBase):
    """Elman RNN: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`` with act tanh or relu.

    ``RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=True, dropout=0.0, bidirectional=False, init='default')``;
    ``forward(input, hx=None, lengths=None) -> (output, h_n)``.
    """

    __doc__ = (__doc__ or "") + _SHAPES_DOC

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        init: str = "default",
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(f"rnn_{nonlinearity}", input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, init)
        self.nonlinearity = nonlinearity

    def forward(self, input: Any, hx: Any = None, lengths: Any = None) -> tuple[Tensor, Tensor]:
        output, h_n, _ = self._run(input, hx, None, lengths)
        return output, h_n


class LSTM(RNNBase):
    """Long short-term memory, gates (i, f, g, o) as in ``torch.nn.LSTM``.

    ``LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=True,
    dropout=0.0, bidirectional=False, proj_size=0, init='default')``;
    ``forward(input, hx=None, lengths=None) -> (output, (h_n, c_n))`` with
    ``hx = (h_0, c_0)`` or None.
    """

    __doc__ = (__doc__ or "") + _SHAPES_DOC

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        init: str = "default",
    ) -> None:
        if proj_size != 0:
            raise ValueError(
                f"proj_size: LSTM with projections is not supported by seqlab, got {proj_size!r}"
                " (use proj_size=0 and a Linear layer on the output)"
            )
        super().__init__("lstm", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, init)

    def forward(
        self, input: Any, hx: Any = None, lengths: Any = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h0 = c0 = None
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise ValueError("hx: expected a pair (h_0, c_0) for an LSTM")
            h0, c0 = hx
        output, h_n, c_n = self._run(input, h0, c0, lengths, "hx[0] (h_0)", "hx[1] (c_0)")
        assert c_n is not None
        return output, (h_n, c_n)


class GRU(RNNBase):
    """Gated recurrent unit, gates (r, z, n) with ``b_hn`` inside the reset product.

    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``.
    ``GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=True,
    dropout=0.0, bidirectional=False, init='default')``;
    ``forward(input, hx=None, lengths=None) -> (output, h_n)``.
    """

    __doc__ = (__doc__ or "") + _SHAPES_DOC

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        init: str = "default",
    ) -> None:
        super().__init__("gru", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, init)

    def forward(self, input: Any, hx: Any = None, lengths: Any = None) -> tuple[Tensor, Tensor]:
        output, h_n, _ = self._run(input, hx, None, lengths)
        return output, h_n
