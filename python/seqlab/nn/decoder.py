"""RecurrentDecoder: an autoregressive LSTM/GRU/RNN decoder with per-timestep teacher
forcing and optional multi-head attention over encoder states, as one fused op.

The whole sequence is one call of :func:`seqlab.functional.recurrent_decoder` (one C++
kernel, one tape node); the teacher-forcing choices are sampled up front from the
seeded ``seqlab.random`` generator.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import Tensor, tensor
from ..random import generator
from . import init as initializers
from .linear import Linear
from .module import Module
from .parameter import Parameter

_CELLS = {"lstm": ("lstm", 4), "gru": ("gru", 3), "rnn": ("rnn_tanh", 1)}
_INITS = ("default", "orthogonal")


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


class DecoderAttention(Module):
    """The parameters of the decoder's attention, named and laid out as
    ``torch.nn.MultiheadAttention(embed_dim, num_heads, kdim=attention_dim,
    vdim=attention_dim, batch_first=True)`` so the state dicts move both ways.

    With ``attention_dim != embed_dim``: ``q_proj_weight`` (H, H), ``k_proj_weight`` and
    ``v_proj_weight`` (H, A); with ``attention_dim == embed_dim``: ``in_proj_weight``
    (3H, H), as torch does. Always ``in_proj_bias`` (3H,) and ``out_proj`` (a Linear
    H -> H). Initialised as torch: Xavier-uniform projections, zero biases.
    """

    def __init__(self, embed_dim: int, num_heads: int, attention_dim: int) -> None:
        super().__init__()
        self.embed_dim = _positive_int("hidden_size", embed_dim)
        self.num_heads = _positive_int("num_heads", num_heads)
        self.kdim = self.vdim = _positive_int("attention_dim", attention_dim)
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"num_heads: must divide hidden_size {self.embed_dim}, got {self.num_heads}"
            )
        self.head_dim = self.embed_dim // self.num_heads
        self.same_dim = self.kdim == self.embed_dim
        H, A = self.embed_dim, self.kdim
        if self.same_dim:
            self.in_proj_weight = Parameter(np.zeros((3 * H, H), np.float32))
        else:
            self.q_proj_weight = Parameter(np.zeros((H, H), np.float32))
            self.k_proj_weight = Parameter(np.zeros((H, A), np.float32))
            self.v_proj_weight = Parameter(np.zeros((H, A), np.float32))
        self.in_proj_bias = Parameter(np.zeros((3 * H,), np.float32))
        self.out_proj = Linear(H, H)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform projection weights, zero in-projection and output biases."""
        if self.same_dim:
            initializers.xavier_uniform_(self.in_proj_weight)
        else:
            for p in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                initializers.xavier_uniform_(p)
        initializers.zeros_(self.in_proj_bias)
        self.out_proj.reset_parameters()
        assert self.out_proj.bias is not None
        initializers.zeros_(self.out_proj.bias)

    def kernel_weights(self) -> dict[str, Tensor | None]:
        """The keyword arguments of :func:`seqlab.functional.recurrent_decoder`."""
        weights: dict[str, Tensor | None] = {
            "in_proj_bias": self.in_proj_bias,
            "out_proj_weight": self.out_proj.weight,
            "out_proj_bias": self.out_proj.bias,
        }
        if self.same_dim:
            weights["in_proj_weight"] = self.in_proj_weight
        else:
            weights.update(q_proj_weight=self.q_proj_weight, k_proj_weight=self.k_proj_weight,
                           v_proj_weight=self.v_proj_weight)
        return weights

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, kdim={self.kdim}"


class RecurrentDecoder(Module):
    """Autoregressive decoder over whole sequences, with teacher forcing and attention.

    ``RecurrentDecoder(input_size, hidden_size, cell="lstm", attention_dim=None,
    num_heads=8, output_size=None, init="default")``.

    Step ``t`` of ``forward(targets, h0, c0=None, teacher_forcing=None, memory=None,
    memory_lengths=None, gate_bias=None)``:

    * ``u_t = start`` (a learned ``(input_size,)`` parameter) at ``t = 0``; else
      ``targets[:, t-1]`` where ``teacher_forcing[:, t]`` is True; else the decoder's
      own previous prediction (which needs ``output_size == input_size``).
    * ``h_t = cell(u_t, h_{t-1})`` with torch's LSTMCell / GRUCell / RNNCell (tanh) math
      and parameters ``weight_ih`` (G*H, E), ``weight_hh`` (G*H, H), ``bias_ih``,
      ``bias_hh`` (G*H,), gates as torch (LSTM i, f, g, o; GRU r, z, n).
    * with ``attention_dim``: ``ctx_t`` = multi-head attention of the query ``h_t`` over
      ``memory`` (B, S, attention_dim), keys ``s >= memory_lengths[b]`` masked; the child
      module ``attention`` holds torch MultiheadAttention's parameters.
    * ``pred_t = out([h_t; ctx_t])`` (``out`` a Linear from H, or 2H with attention, to
      ``output_size``).

    * with ``gate_bias`` (B, G*H): it is added to the input part of the gates at every
      step, a per-row condition (e.g. a code ``c`` projected as ``c W_ic^T``): the cell
      then computes torch's cell on ``[u_t; c]`` with input weight ``[W_ih, W_ic]``.

    Shapes: targets (B, T, E) (their values feed teacher-forced steps; T sets the
    number of steps; they receive no gradient), h0 and c0 (B, H) or None (zeros; c0 for
    LSTM only), teacher_forcing a (B, T) bool array (column 0 unused), True/False
    (every step / no step), a ratio in [0, 1] sampled per row and step by
    :meth:`sample_teacher_forcing`, or None for
    ``teacher_forcing_ratio`` in training and no teacher forcing in eval mode;
    memory_lengths (B,) ints in [1, S]. Returns predictions (B, T, output_size).

    ``init="default"``: torch's U(-1/sqrt(H), 1/sqrt(H)) for the cell, torch's Linear
    and MultiheadAttention initialisation for ``out`` and ``attention``.
    ``init="orthogonal"``: orthogonal recurrent weights (per gate block), Xavier-uniform
    input and output weights, zero biases. ``start`` is drawn from U(-1/sqrt(E), 1/sqrt(E)).
    """

    teacher_forcing_ratio: float

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        cell: str = "lstm",
        attention_dim: int | None = None,
        num_heads: int = 8,
        output_size: int | None = None,
        init: str = "default",
    ) -> None:
        super().__init__()
        self.input_size = _positive_int("input_size", input_size)
        self.hidden_size = _positive_int("hidden_size", hidden_size)
        self.output_size = self.input_size if output_size is None else _positive_int(
            "output_size", output_size)
        if cell not in _CELLS:
            raise ValueError(f"cell: expected one of {tuple(_CELLS)}, got {cell!r}")
        if init not in _INITS:
            raise ValueError(f"init: expected one of {_INITS}, got {init!r}")
        self.cell = cell
        self.mode, gates = _CELLS[cell]
        self.init = init
        self.teacher_forcing_ratio = 1.0
        self._workspace: list = []
        H, E = self.hidden_size, self.input_size
        self.start = Parameter(np.zeros((E,), np.float32))
        self.weight_ih = Parameter(np.zeros((gates * H, E), np.float32))
        self.weight_hh = Parameter(np.zeros((gates * H, H), np.float32))
        self.bias_ih = Parameter(np.zeros((gates * H,), np.float32))
        self.bias_hh = Parameter(np.zeros((gates * H,), np.float32))
        self.attention: DecoderAttention | None = None
        self.num_heads = 0
        if attention_dim is not None:
            self.attention = DecoderAttention(H, num_heads, attention_dim)
            self.num_heads = int(num_heads)
        features = 2 * H if self.attention is not None else H
        self.out = Linear(features, self.output_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialises every parameter as described in the class docstring."""
        initializers.uniform_(self.start, -1.0 / math.sqrt(self.input_size),
                              1.0 / math.sqrt(self.input_size))
        if self.init == "default":
            bound = 1.0 / math.sqrt(self.hidden_size)
            for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
                initializers.uniform_(p, -bound, bound)
            self.out.reset_parameters()
        else:
            initializers.orthogonal_(self.weight_hh)
            initializers.xavier_uniform_(self.weight_ih)
            initializers.zeros_(self.bias_ih)
            initializers.zeros_(self.bias_hh)
            initializers.xavier_uniform_(self.out.weight)
            assert self.out.bias is not None
            initializers.zeros_(self.out.bias)
        if self.attention is not None:
            self.attention.reset_parameters()

    def sample_teacher_forcing(self, batch: int, steps: int, ratio: float | None = None) -> np.ndarray:
        """A (batch, steps) bool mask, True with probability ``ratio`` per row and step.

        Drawn from the seeded ``seqlab.random`` generator (so ``seqlab.manual_seed``
        makes it reproducible); ``ratio`` defaults to ``teacher_forcing_ratio``. Ratios
        0 and 1 give constant masks without drawing.
        """
        p = self.teacher_forcing_ratio if ratio is None else ratio
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"teacher_forcing: expected a ratio in [0, 1], got {p!r}")
        batch, steps = _positive_int("batch", batch), _positive_int("steps", steps)
        if p >= 1.0:
            return np.ones((batch, steps), dtype=bool)
        if p <= 0.0:
            return np.zeros((batch, steps), dtype=bool)
        return generator().random((batch, steps)) < p

    # ---------------------------------------------------------------- checks
    def _teacher_mask(self, teacher_forcing: Any, batch: int, steps: int) -> np.ndarray:
        if teacher_forcing is None:
            if not self.training:
                return np.zeros((batch, steps), dtype=bool)
            return self.sample_teacher_forcing(batch, steps)
        if isinstance(teacher_forcing, (bool, np.bool_)):
            return np.full((batch, steps), bool(teacher_forcing))
        if isinstance(teacher_forcing, (int, float, np.integer, np.floating)):
            return self.sample_teacher_forcing(batch, steps, float(teacher_forcing))
        mask = np.asarray(teacher_forcing.data if isinstance(teacher_forcing, Tensor) else teacher_forcing)
        if mask.dtype != bool:
            raise TypeError(f"teacher_forcing: expected a bool mask, got dtype {mask.dtype}")
        if mask.shape != (batch, steps):
            raise ValueError(
                f"teacher_forcing: expected shape ({batch}, {steps}) (batch, steps), got {mask.shape}"
            )
        return mask

    def _state(self, value: Any, name: str, batch: int) -> Tensor | None:
        if value is None:
            return None
        s = value if isinstance(value, Tensor) else tensor(value)
        if s.dtype != np.float32:
            raise TypeError(f"{name}: expected float32, got dtype {s.dtype}")
        if s.shape != (batch, self.hidden_size):
            raise ValueError(
                f"{name}: expected shape ({batch}, {self.hidden_size}) (batch, hidden_size), got {s.shape}"
            )
        return s

    def forward(
        self,
        targets: Any,
        h0: Any = None,
        c0: Any = None,
        teacher_forcing: Any = None,
        memory: Any = None,
        memory_lengths: Any = None,
        gate_bias: Any = None,
    ) -> Tensor:
        y = targets if isinstance(targets, Tensor) else tensor(targets)
        if y.dtype != np.float32:
            raise TypeError(f"targets: expected float32, got dtype {y.dtype}")
        if y.ndim != 3 or y.shape[2] != self.input_size or 0 in y.shape:
            raise ValueError(
                f"targets: expected a non-empty (batch, steps, {self.input_size}) array, got shape {y.shape}"
            )
        batch, steps = y.shape[0], y.shape[1]
        h0_t = self._state(h0, "h0", batch)
        if c0 is not None and self.mode != "lstm":
            raise ValueError(f"c0: only an LSTM decoder has a cell state, this one is {self.cell!r}")
        c0_t = self._state(c0, "c0", batch)
        mask = self._teacher_mask(teacher_forcing, batch, steps)
        bias_t = None
        if gate_bias is not None:
            bias_t = gate_bias if isinstance(gate_bias, Tensor) else tensor(gate_bias)
            gates = self.weight_ih.shape[0]
            if bias_t.dtype != np.float32:
                raise TypeError(f"gate_bias: expected float32, got dtype {bias_t.dtype}")
            if bias_t.shape != (batch, gates):
                raise ValueError(f"gate_bias: expected shape ({batch}, {gates}) (batch, gates * "
                                 f"hidden_size), got {bias_t.shape}")
        if self.output_size != self.input_size and not mask[:, 1:].all():
            raise ValueError(
                f"output_size: {self.output_size} differs from input_size {self.input_size}, so "
                "every step after the first must be teacher-forced (pass an all-True "
                "teacher_forcing mask)"
            )
        kwargs: dict[str, Any] = {}
        mem = None
        lens = None
        if self.attention is None:
            if memory is not None:
                raise ValueError("memory: given, but the decoder was built without attention_dim")
            if memory_lengths is not None:
                raise ValueError("memory_lengths: given, but the decoder was built without attention_dim")
        else:
            if memory is None:
                raise ValueError("memory: required, the decoder has attention (attention_dim set)")
            mem = memory if isinstance(memory, Tensor) else tensor(memory)
            expected = (batch, self.attention.kdim)
            if mem.ndim != 3 or (mem.shape[0], mem.shape[2]) != expected or mem.shape[1] == 0:
                raise ValueError(
                    f"memory: expected shape ({batch}, S, {self.attention.kdim}) (batch, source "
                    f"steps, attention_dim), got {mem.shape}"
                )
            if memory_lengths is not None:
                arr = np.asarray(memory_lengths.data if isinstance(memory_lengths, Tensor)
                                 else memory_lengths)
                if arr.dtype.kind not in "iu":
                    raise TypeError(f"memory_lengths: expected integers, got dtype {arr.dtype}")
                if arr.shape != (batch,):
                    raise ValueError(f"memory_lengths: expected shape ({batch},), got {arr.shape}")
                lens = np.ascontiguousarray(arr, dtype=np.int64)
            kwargs = {"num_heads": self.num_heads, **self.attention.kernel_weights()}
        return F.recurrent_decoder(
            self.mode, y, mask, self.start, self.weight_ih, self.weight_hh, self.bias_ih,
            self.bias_hh, self.out.weight, self.out.bias, h0_t, c0_t, mem, lens,
            gate_bias=bias_t, workspace=self._workspace, **kwargs,
        )

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, cell={self.cell!r}"
        if self.output_size != self.input_size:
            s += f", output_size={self.output_size}"
        if self.init != "default":
            s += f", init={self.init!r}"
        return s
