"""The fused incremental step of the GPT decoder: one C++ call per generated token.

:class:`FusedDecoder` binds a :class:`GPT`'s parameters (read in place, never copied) and
a :class:`KVCache` to ``seqlab._core.GptDecoder``, whose step runs the whole incremental
forward of the new tokens (embeddings, every block's LayerNorm, QKV projection, append
to the cache, attention over it, output projection, MLP and residuals, the final
LayerNorm and the tied output layer) with preallocated buffers and no autograd tape.
:meth:`GPT.forward_cached` is the same computation as composable ops, the reference.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from ... import _core
from ...nn import GELU, LayerNorm
from ...nn.transformer import TransformerDecoderBlock
from .model import GPT, KVCache


class FusedDecoder:
    """Incremental decoding of ``model`` into ``cache`` (batch ``cache``'s, up to ``max_len`` positions).

    :meth:`step` takes the next tokens ids (B, Tn) of every sequence, appends their keys
    and values at ``cache.length`` and returns the logits (B, V) of each sequence's last
    new token. The parameters are read where they live: build the decoder after training
    (or after any change that replaces a parameter array) and before decoding. It computes
    in float32 (the master weights) whatever precision the model trained in.
    """

    def __init__(self, model: GPT, cache: KVCache) -> None:
        blocks = [cast(TransformerDecoderBlock, b) for b in model.blocks]
        norms = [cast(LayerNorm, n) for b in blocks for n in (b.ln_1, b.ln_2)] + [model.ln_f]
        eps = {n.eps for n in norms}
        gelus = {cast(GELU, b.mlp[1]).approximate for b in blocks}
        if len(eps) != 1 or len(gelus) != 1:
            raise ValueError(
                "FusedDecoder: every block must share one LayerNorm eps and one GELU form, got eps "
                f"{sorted(eps)} and GELU {sorted(gelus)}"
            )
        params: dict[str, Any] = {name: p.data for name, p in model.named_parameters()}
        self.cache = cache
        self._logits = np.empty((len(cache.keys[0]), model.config.vocab_size), dtype=np.float32)
        self._core = _core.GptDecoder(
            params, cache.keys, cache.values, model.config.n_heads, eps.pop(), gelus.pop() == "tanh"
        )

    def step(self, ids: Any) -> np.ndarray:
        """Logits (B, V) after the new tokens ``ids`` (B, Tn) int64; advances ``cache.length`` by Tn.

        The returned array is overwritten by the next step (copy it to keep it)."""
        arr = np.asarray(ids)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"ids: expected integer token ids (int64), got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.int64)
        if arr.ndim == 1:
            arr = arr[:, None]
        self._core.step(arr, self.cache.length, self._logits)
        self.cache.length += arr.shape[1]
        return self._logits
