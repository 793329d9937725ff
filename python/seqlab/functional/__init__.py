"""Differentiable operations: each a thin wrapper of one ``seqlab._core`` forward/backward pair.

Every function takes and returns :class:`seqlab.Tensor` (batch-first ``(B, T, C)``
for sequences) and records one node on the autograd tape. The ops live by family:

- :mod:`.dense`: linear (with fused activation; fp32 or bf16 GEMMs, :func:`gemm_precision`),
  embedding, activations, softmax,
  dropout, layer norm;
- :mod:`.recurrent`: RNN/LSTM/GRU layers over whole sequences, the fused recurrent decoder;
- :mod:`.conv`: 1-d convolution (causal or padded) and the TCN's temporal block;
- :mod:`.attention`: scaled dot-product and multi-head attention (plain and flash paths),
  incremental attention against a key/value cache for generation;
- :mod:`.losses`: the masked cosine + MSE loss, cross-entropy, and the output layer fused
  with its cross-entropy;
- :mod:`.seq2seq`: the teacher-forced pointer-generator decoder and its loss.
"""

from __future__ import annotations

from .attention import (
    attention_path,
    clear_attention_workspace,
    get_attention_flash_threshold,
    kv_cache_attention,
    multi_head_attention_core,
    scaled_dot_product_attention,
    set_attention_flash_threshold,
)
from .conv import causal_conv1d, clear_conv_workspace, conv1d, conv1d_channels_last, temporal_block
from .dense import (
    GEMM_PRECISIONS,
    LINEAR_ACTIVATIONS,
    add_relu,
    bf16_gemm_available,
    bf16_gemm_engine,
    dropout,
    embedding,
    gelu,
    gemm_precision,
    get_gemm_precision,
    layer_norm,
    linear,
    linear_activation,
    linear_bf16,
    relu,
    sigmoid,
    softmax,
    tanh,
)
from .losses import cosine_mse_loss, cross_entropy, linear_cross_entropy
from .recurrent import RECURRENT_MODES, recurrent_decoder, recurrent_layer
from .seq2seq import pointer_generator_loss

__all__ = [
    "GEMM_PRECISIONS",
    "LINEAR_ACTIVATIONS",
    "RECURRENT_MODES",
    "add_relu",
    "attention_path",
    "bf16_gemm_available",
    "bf16_gemm_engine",
    "causal_conv1d",
    "clear_attention_workspace",
    "clear_conv_workspace",
    "conv1d",
    "conv1d_channels_last",
    "cosine_mse_loss",
    "cross_entropy",
    "dropout",
    "embedding",
    "gelu",
    "gemm_precision",
    "get_attention_flash_threshold",
    "get_gemm_precision",
    "kv_cache_attention",
    "layer_norm",
    "linear",
    "linear_activation",
    "linear_bf16",
    "linear_cross_entropy",
    "pointer_generator_loss",
    "multi_head_attention_core",
    "recurrent_decoder",
    "recurrent_layer",
    "relu",
    "scaled_dot_product_attention",
    "set_attention_flash_threshold",
    "sigmoid",
    "softmax",
    "tanh",
    "temporal_block",
]
