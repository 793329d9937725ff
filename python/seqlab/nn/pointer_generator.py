"""PointerGeneratorDecoder: an LSTM decoder with multi-head attention over encoder states
and a copy mechanism (See et al. 2017), trained teacher-forced as one fused op."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _core
from .. import functional as F
from ..autograd import Tensor, tensor
from . import init as initializers
from .decoder import DecoderAttention, _positive_int
from .linear import Linear
from .module import Module
from .parameter import Parameter


class PointerGeneratorDecoder(Module):
    """Pointer-generator decoder: ``PointerGeneratorDecoder(input_size, hidden_size,
    vocab_size, attention_dim, num_heads=1)``.

    Parameters, named as torch's: ``start`` (E,) (the input of step 0), the LSTM cell's
    ``weight_ih`` (4H, E), ``weight_hh`` (4H, H), ``bias_ih``, ``bias_hh`` (4H,) (gates
    i, f, g, o), ``attention`` (torch ``MultiheadAttention(H, num_heads,
    kdim=attention_dim, vdim=attention_dim)``'s parameters), ``out`` (Linear 2H -> V, the
    vocabulary logits from ``[h_t; ctx_t]``) and ``gen`` (Linear 2H + E -> 1, the copy
    gate read from ``[h_t; ctx_t; u_t]``).

    Step ``t`` reads ``u_t``: ``start`` at ``t = 0``, else the embedding of the previous
    target token (no input feeding); the copy distribution is the attention weights
    averaged over the heads, scattered onto the source's extended ids. See
    :func:`seqlab.functional.pointer_generator_loss` for the formulas.

    Initialisation: torch's LSTMCell U(-1/sqrt(H), 1/sqrt(H)), torch's Linear and
    MultiheadAttention initialisation; ``start`` U(-1/sqrt(E), 1/sqrt(E)).
    """

    def __init__(
        self, input_size: int, hidden_size: int, vocab_size: int, attention_dim: int, num_heads: int = 1
    ) -> None:
        super().__init__()
        self.input_size = _positive_int("input_size", input_size)
        self.hidden_size = _positive_int("hidden_size", hidden_size)
        self.vocab_size = _positive_int("vocab_size", vocab_size)
        H, E = self.hidden_size, self.input_size
        self.start = Parameter(np.zeros((E,), np.float32))
        self.weight_ih = Parameter(np.zeros((4 * H, E), np.float32))
        self.weight_hh = Parameter(np.zeros((4 * H, H), np.float32))
        self.bias_ih = Parameter(np.zeros((4 * H,), np.float32))
        self.bias_hh = Parameter(np.zeros((4 * H,), np.float32))
        self.attention = DecoderAttention(H, num_heads, attention_dim)
        self.num_heads = self.attention.num_heads
        self.out = Linear(2 * H, self.vocab_size)
        self.gen = Linear(2 * H + E, 1)
        self._workspace: list = []
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialises every parameter as described in the class docstring."""
        bound = 1.0 / math.sqrt(self.input_size)
        initializers.uniform_(self.start, -bound, bound)
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            initializers.uniform_(p, -bound, bound)
        self.attention.reset_parameters()
        self.out.reset_parameters()
        self.gen.reset_parameters()

    def forward(
        self,
        inputs: Tensor,
        memory: Tensor,
        source_ids: Any,
        target_ids: Any,
        target_mask: Any,
        extended_size: int,
        memory_lengths: Any = None,
        h0: Tensor | None = None,
        c0: Tensor | None = None,
    ) -> Tensor:
        """Mean masked NLL of ``target_ids`` (B, T) (extended ids) given the embedded
        previous tokens ``inputs`` (B, T, E) (step t reads ``inputs[:, t-1]``), the encoder
        states ``memory`` (B, S, attention_dim) with ``memory_lengths`` (B,), the source's
        extended ids ``source_ids`` (B, S), ``target_mask`` (B, T) bool and the initial
        states h0, c0 (B, H) or None. Returns a scalar Tensor."""
        if not isinstance(memory, Tensor):
            memory = tensor(memory)
        if memory.ndim != 3 or memory.shape[2] != self.attention.kdim:
            raise ValueError(
                f"memory: expected (batch, S, {self.attention.kdim}) (attention_dim), got shape "
                f"{memory.shape}"
            )
        if not isinstance(inputs, Tensor):
            inputs = tensor(inputs)
        if inputs.ndim != 3 or inputs.shape[2] != self.input_size:
            raise ValueError(
                f"inputs: expected (batch, steps, {self.input_size}) (input_size), got shape {inputs.shape}"
            )
        lens = None
        if memory_lengths is not None:
            lens = np.asarray(memory_lengths)
            if lens.dtype.kind not in "iu" or lens.shape != (memory.shape[0],):
                raise ValueError(
                    f"memory_lengths: expected ({memory.shape[0]},) integers, got shape "
                    f"{lens.shape} dtype {lens.dtype}"
                )
        return F.pointer_generator_loss(
            inputs,
            source_ids,
            target_ids,
            target_mask,
            extended_size,
            memory,
            self.start,
            self.weight_ih,
            self.weight_hh,
            self.bias_ih,
            self.bias_hh,
            self.out.weight,
            self.out.bias,
            self.gen.weight,
            self.gen.bias,
            h0,
            c0,
            lens,
            num_heads=self.num_heads,
            workspace=self._workspace,
            **self.attention.kernel_weights(),
        )

    def stepper(
        self, memory: Any, memory_lengths: Any, source_ids: Any, extended_size: int, precision: str = "fp32"
    ) -> Any:
        """A ``seqlab._core.PointerGeneratorStepper`` for incremental decoding: the keys and
        values of ``memory`` (B, S, attention_dim) projected once; its ``step(rows, x, h, c)``
        advances N rows (row n reading example ``rows[n]``) by one token from input
        embeddings x (N, E) and states h, c (N, H), returning the log-probabilities over
        the extended ids (N, extended_size) and the new states. The stepper reads the
        current parameter arrays: it is valid until the next optimizer step.

        ``precision="bf16"``: each step streams a bf16 copy of ``out.weight`` (made here,
        once), half the bytes of the fp32 weight that bounds a step's time; every id that
        can rank among a row's k best (``step_top_k``; the best for ``step``) is
        re-scored in fp32, so the ids chosen are the fp32 step's (up to near ties of a
        copied source id and a vocabulary id) and their log-probabilities differ from it
        only through the other ids' bf16 terms in the log-sum-exp (~1e-6 on peaked rows,
        up to ~1e-4 on flat rows of large logits); the other ids' log-probabilities are
        the bf16 ones."""
        mem = np.ascontiguousarray(memory.data if isinstance(memory, Tensor) else memory, dtype=np.float32)
        lens = None if memory_lengths is None else np.ascontiguousarray(memory_lengths, dtype=np.int64)
        src = np.ascontiguousarray(source_ids, dtype=np.int64)
        w = self.attention.kernel_weights()
        H = self.hidden_size
        if "in_proj_weight" in w:
            w_in = w["in_proj_weight"].data  # type: ignore[union-attr]
            w_q, w_k, w_v = w_in[:H], w_in[H : 2 * H], w_in[2 * H :]
        else:
            w_q, w_k, w_v = (w[k].data for k in ("q_proj_weight", "k_proj_weight", "v_proj_weight"))  # type: ignore[union-attr]
        b_in = self.attention.in_proj_bias.data
        attention = [
            np.ascontiguousarray(a) for a in (w_q, w_k, w_v, b_in[:H], b_in[H : 2 * H], b_in[2 * H :])
        ]
        attention += [self.attention.out_proj.weight.data, self.attention.out_proj.bias.data]  # type: ignore[union-attr]
        return _core.PointerGeneratorStepper(
            self.weight_ih.data,
            self.weight_hh.data,
            self.bias_ih.data,
            self.bias_hh.data,
            attention,
            self.num_heads,
            self.out.weight.data,
            self.out.bias.data if self.out.bias is not None else None,
            self.gen.weight.data,
            self.gen.bias.data if self.gen.bias is not None else None,
            mem,
            lens,
            src,
            int(extended_size),
            precision,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, vocab_size={self.vocab_size}, "
            f"attention_dim={self.attention.kdim}, num_heads={self.num_heads}"
        )
