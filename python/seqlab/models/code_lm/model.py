"""The GPT decoder of the code language model, with a key/value-cached inference path."""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np

from ... import functional as F
from ...autograd import Tensor, no_grad, tensor
from ...nn import GELU, Dropout, Embedding, LayerNorm, Linear, Module, Sequential, init
from ...nn.transformer import TransformerDecoderBlock
from .config import CodeLMConfig


class KVCache:
    """Keys and values of every block for up to ``max_len`` positions of ``batch`` sequences.

    ``keys[l]`` is (B, H, max_len, Dh), ``values[l]`` likewise; ``length`` positions
    are filled. :meth:`GPT.forward_cached` appends to it.
    """

    def __init__(self, config: CodeLMConfig, batch: int = 1) -> None:
        dh = config.d_model // config.n_heads
        shape = (batch, config.n_heads, config.max_len, dh)
        self.keys = [np.zeros(shape, dtype=np.float32) for _ in range(config.n_layers)]
        self.values = [np.zeros(shape, dtype=np.float32) for _ in range(config.n_layers)]
        self.length = 0
        self.max_len = config.max_len

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.keys + self.values)


def bf16_fallback_message() -> str | None:
    """None when bf16 GEMMs are available; otherwise the one line saying why training with
    ``precision="bf16"`` stays in fp32."""
    if F.bf16_gemm_available():
        return None
    from ...cpu_dispatch import cpu_info

    info = cpu_info()
    why = (
        f"SEQLAB_ARCH={info['level']} forces a level without them"
        if info["features"].get("avx512_bf16") and info["forced"]
        else "this CPU lacks AVX512_BF16"
    )
    return f"precision='bf16': bf16 GEMMs are unavailable ({why}); training stays in fp32"


class GPT(Module):
    """GPT decoder: token + learned position embeddings, ``n_layers`` pre-LN causal
    :class:`~seqlab.nn.TransformerDecoderBlock` s, a final LayerNorm, and the output layer
    tied to the token embedding (logits ``= ln_f(x) @ wte.weight^T``).

    With ``config.precision == "bf16"`` (and bf16 GEMMs available, else fp32:
    :func:`bf16_fallback_message`) :meth:`forward` runs every linear layer's GEMMs (q/k/v
    and output projections, MLP, tied output layer; forward and backward) in bf16 with fp32
    accumulation (:func:`seqlab.functional.gemm_precision`); the parameters, attention,
    LayerNorm and softmax stay fp32. ``gemm_precision`` holds the precision in effect.
    Generation (:meth:`forward_cached`) runs in fp32.

    Parameter names follow nanoGPT's (``wte``, ``wpe``, ``blocks.N.*``, ``ln_f``), with
    each block's attention laid out as ``torch.nn.MultiheadAttention``'s.
    Initialisation as GPT-2: N(0, 0.02), residual output projections N(0, 0.02 / sqrt(2 L)).
    Shapes: ids (B, T) int64 with T <= max_len -> logits (B, T, vocab_size).
    """

    def __init__(self, config: CodeLMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.wte = Embedding(c.vocab_size, c.d_model)
        self.wpe = Embedding(c.max_len, c.d_model)
        self.drop = Dropout(c.dropout)
        self.blocks = Sequential(
            *[
                TransformerDecoderBlock(c.d_model, c.n_heads, c.d_ff, dropout=c.dropout)
                for _ in range(c.n_layers)
            ]
        )
        self.ln_f = LayerNorm(c.d_model)
        self.gemm_precision = "bf16" if c.precision == "bf16" and F.bf16_gemm_available() else "fp32"
        self._init_weights()

    def _init_weights(self) -> None:
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layers)
        for name, p in self.named_parameters():
            if name.endswith("bias") or name.startswith("ln_f") or ".ln_" in name:
                continue  # LayerNorm weights stay 1, biases 0
            std = residual_std if name.endswith(("out_proj.weight", "mlp.2.weight")) else 0.02
            init.normal_(p, 0.0, std)

    def _check_ids(self, ids: Any, start: int = 0) -> np.ndarray:
        arr = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"ids: expected integer token ids (int64), got dtype {arr.dtype}")
        if arr.ndim != 2:
            raise ValueError(f"ids: expected shape (batch, time), got {arr.shape}")
        if start + arr.shape[1] > self.config.max_len:
            raise ValueError(
                f"ids: {start + arr.shape[1]} positions exceed the model's maximum length "
                f"{self.config.max_len}"
            )
        if arr.size and (arr.min() < 0 or arr.max() >= self.config.vocab_size):
            raise ValueError(
                f"ids: token ids must lie in [0, {self.config.vocab_size}), got [{arr.min()}, {arr.max()}]"
            )
        return arr.astype(np.int64, copy=False)

    def _final_hidden(self, idx: np.ndarray) -> Tensor:
        """The final LayerNorm's output (B, T, d_model), the input of the tied output layer."""
        x = self.wte(idx) + self.wpe(np.arange(idx.shape[1], dtype=np.int64))
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def forward(self, ids: Any) -> Tensor:
        idx = self._check_ids(ids)
        with F.gemm_precision(self.gemm_precision):
            return F.linear(self._final_hidden(idx), self.wte.weight)

    def loss(self, ids: Any, targets: Any, ignore_index: int = -100) -> Tensor:
        """Mean next-token cross-entropy of ``ids`` (B, T) against ``targets`` (B, T) int64
        (``ignore_index`` positions excluded): the value of
        ``F.cross_entropy(self(ids), targets)`` with the tied output layer and the loss fused
        (:func:`seqlab.functional.linear_cross_entropy`), so the (B, T, vocab) logits are never
        held. What training and validation use; :meth:`forward` gives the logits."""
        idx = self._check_ids(ids)
        with F.gemm_precision(self.gemm_precision):
            return F.linear_cross_entropy(self._final_hidden(idx), self.wte.weight, targets, ignore_index)

    @no_grad()
    def forward_cached(self, ids: Any, cache: KVCache) -> np.ndarray:
        """Logits (B, T, V) of ``ids`` (B, T), the tokens after the ``cache.length`` already
        cached ones; appends their keys and values to ``cache``. Only the new tokens are
        computed: each block projects them and attends over the cache with
        :func:`seqlab.functional.kv_cache_attention`. Dropout is off (inference)."""
        idx = self._check_ids(ids, cache.length)
        B, T = idx.shape
        pos = cache.length
        c = self.config
        x = self.wte(idx) + self.wpe(np.arange(pos, pos + T, dtype=np.int64))
        for layer, module in enumerate(self.blocks):
            block = cast(TransformerDecoderBlock, module)
            attn = block.attn
            assert attn.in_proj_weight is not None  # the blocks' attention packs q, k, v in one weight
            h = block.ln_1(x)
            qkv = F.linear(h, attn.in_proj_weight, attn.in_proj_bias)
            a = F.kv_cache_attention(qkv, cache.keys[layer], cache.values[layer], pos, c.n_heads)
            x = x + attn.out_proj(tensor(a))
            fc, proj = cast(Linear, block.mlp[0]), block.mlp[2]
            act = "gelu_tanh" if cast(GELU, block.mlp[1]).approximate == "tanh" else "gelu"
            x = x + proj(F.linear_activation(block.ln_2(x), fc.weight, fc.bias, act))
        cache.length = pos + T
        return F.linear(self.ln_f(x), self.wte.weight).data
