"""Differentiable operations: each a thin wrapper of one ``seqlab._core`` forward/backward pair.

Every function takes and returns :class:`seqlab.Tensor` (batch-first ``(B, T, C)``
for sequences) and records one node on the autograd tape.
"""

from __future__ import annotations

from . import _core  # noqa: F401
from .autograd import Tensor, grad_buffer, make_result, returned_grad  # noqa: F401

# =====================================================================
# Dense layers and activations: linear, embedding, sigmoid, tanh, relu,
# gelu, softmax, dropout.
# =====================================================================


# =====================================================================
# Recurrent layers: RNN (tanh, relu), LSTM, GRU over whole sequences.
# =====================================================================
