"""MultiheadAttention, mirroring ``torch.nn.MultiheadAttention`` (batch-first by default)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from ..autograd import Tensor, make_result
from ..functional.attention import _additive_mask
from . import init
from .linear import Linear
from .module import Module
from .parameter import Parameter


def _row_slice(t: Tensor, start: int, stop: int) -> Tensor:
    """Rows [start, stop) of a parameter as a tensor whose gradient flows back into it."""

    def backward(g: np.ndarray) -> tuple[np.ndarray]:
        full = np.zeros_like(t.data)
        full[start:stop] = g
        return (full,)

    return make_result(t.data[start:stop], (t,), backward)


def _as_tensor(x: Any, name: str) -> Tensor:
    t = x if isinstance(x, Tensor) else Tensor(x)
    if t.data.dtype != np.float32:
        raise TypeError(f"{name}: expected float32 values, got dtype {t.data.dtype}")
    return t


class MultiheadAttention(Module):
    """Multi-head attention: ``out_proj(concat_h softmax(q_h k_h^T / sqrt(Dh) + mask) v_h)``.

    Args:
        embed_dim: model width E (query features and output features).
        num_heads: number of heads H; must divide ``embed_dim`` (Dh = E / H).
        dropout: dropout probability on the attention weights in training mode.
        bias: learn ``in_proj_bias`` (3E,) and ``out_proj.bias``.
        add_bias_kv, add_zero_attn: torch's options; only False is supported.
        kdim, vdim: key and value feature sizes (default E). When either differs from E
            the projections are ``q_proj_weight`` (E, E), ``k_proj_weight`` (E, kdim),
            ``v_proj_weight`` (E, vdim); otherwise one ``in_proj_weight`` (3E, E).
        batch_first: inputs and outputs are (B, T, E) (the default here; torch's default
            is False, (T, B, E)).

    Parameters are initialised as torch does (Xavier-uniform projections, zero biases), and
    state dicts move both ways with ``torch.nn.MultiheadAttention``.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = True,
    ) -> None:
        super().__init__()
        for name, val in (("embed_dim", embed_dim), ("num_heads", num_heads)):
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"MultiheadAttention: {name} must be a positive int, got {val!r}")
        if embed_dim % num_heads != 0:
            raise ValueError(
                f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiheadAttention: dropout must be in [0, 1), got {dropout!r}")
        if add_bias_kv or add_zero_attn:
            raise ValueError(
                "MultiheadAttention: add_bias_kv and add_zero_attn are not supported (must be False)"
            )
        self.embed_dim = embed_dim
        self.kdim = embed_dim if kdim is None else int(kdim)
        self.vdim = embed_dim if vdim is None else int(vdim)
        if self.kdim < 1 or self.vdim < 1:
            raise ValueError(f"MultiheadAttention: kdim and vdim must be positive, got {kdim!r}, {vdim!r}")
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = float(dropout)
        self.batch_first = bool(batch_first)
        E = embed_dim
        self.in_proj_weight: Parameter | None
        self.q_proj_weight: Parameter | None
        self.k_proj_weight: Parameter | None
        self.v_proj_weight: Parameter | None
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(np.zeros((3 * E, E), dtype=np.float32))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        else:
            self.q_proj_weight = Parameter(np.zeros((E, E), dtype=np.float32))
            self.k_proj_weight = Parameter(np.zeros((E, self.kdim), dtype=np.float32))
            self.v_proj_weight = Parameter(np.zeros((E, self.vdim), dtype=np.float32))
            self.register_parameter("in_proj_weight", None)
        self.in_proj_bias: Parameter | None
        if bias:
            self.in_proj_bias = Parameter(np.zeros((3 * E,), dtype=np.float32))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(E, E, bias=bias)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        if self._qkv_same_embed_dim:
            assert self.in_proj_weight is not None
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for p in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                assert p is not None
                init.xavier_uniform_(p)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
        if self.out_proj.bias is not None:
            init.zeros_(self.out_proj.bias)

    # -------------------------------------------------------------- masks
    def _masks(
        self, attn_mask: Any, key_padding_mask: Any, B: int, Tq: int, Tk: int
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        H = self.num_heads
        mask = None
        if attn_mask is not None:
            m = attn_mask.data if isinstance(attn_mask, Tensor) else np.asarray(attn_mask)
            if m.ndim == 2 and m.shape == (Tq, Tk):
                m4 = m.reshape(1, 1, Tq, Tk)
            elif m.ndim == 3 and m.shape == (B * H, Tq, Tk):
                m4 = m.reshape(B, H, Tq, Tk)
            else:
                raise ValueError(
                    f"attn_mask: expected shape ({Tq}, {Tk}) or ({B * H}, {Tq}, {Tk}) "
                    f"(batch*num_heads, target length, source length), got {m.shape}"
                )
            mask = _additive_mask(m4, (B, H, Tq, Tk), "attn_mask", true_means_keep=False)
        bias = None
        if key_padding_mask is not None:
            k = (
                key_padding_mask.data
                if isinstance(key_padding_mask, Tensor)
                else np.asarray(key_padding_mask)
            )
            if k.shape != (B, Tk):
                raise ValueError(
                    f"key_padding_mask: expected shape ({B}, {Tk}) (batch, source length), got {k.shape}"
                )
            if k.dtype == np.bool_:
                bias = np.where(k, np.float32(-np.inf), np.float32(0.0)).astype(np.float32)
            elif k.dtype.kind == "f":
                bias = np.ascontiguousarray(k, dtype=np.float32)
            else:
                raise TypeError(f"key_padding_mask: expected a bool or float mask, got dtype {k.dtype}")
        return mask, bias

    # ------------------------------------------------------------ forward
    def forward(
        self,
        query: Any,
        key: Any,
        value: Any,
        key_padding_mask: Any = None,
        need_weights: bool = True,
        attn_mask: Any = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attends ``query`` over ``key``/``value``.

        Shapes (batch_first): query (B, Tq, E), key (B, Tk, kdim), value (B, Tk, vdim), or
        unbatched (Tq, E), (Tk, kdim), (Tk, vdim). ``key_padding_mask`` (B, Tk): bool True
        = ignore that key, or float added. ``attn_mask`` (Tq, Tk) or (B*H, Tq, Tk): bool True
        = not allowed (torch's MultiheadAttention convention), or float added.
        ``is_causal`` applies the causal mask (query i sees keys j <= i), with or without
        ``attn_mask``. Fully masked query rows give zero attention output.

        Returns ``(output (B, Tq, E), weights)``: weights are None unless ``need_weights``;
        then (B, Tq, Tk) averaged over heads or (B, H, Tq, Tk) with
        ``average_attn_weights=False``, after dropout, as a tensor without gradient.
        """
        self_attn = query is key and key is value
        q_in, k_in, v_in = _as_tensor(query, "query"), _as_tensor(key, "key"), _as_tensor(value, "value")
        batched = q_in.ndim == 3
        if q_in.ndim not in (2, 3) or k_in.ndim != q_in.ndim or v_in.ndim != q_in.ndim:
            raise ValueError(
                "MultiheadAttention: query, key, value must all be 3-d (batched) or 2-d (unbatched), "
                "got shapes "
                f"{q_in.shape}, {k_in.shape}, {v_in.shape}"
            )
        if not batched:
            q_in, k_in, v_in = (t.reshape(1, *t.shape) for t in (q_in, k_in, v_in))
        elif not self.batch_first:
            q_in = q_in.transpose(1, 0, 2)
            k_in = q_in if self_attn else k_in.transpose(1, 0, 2)
            v_in = q_in if self_attn else v_in.transpose(1, 0, 2)
        E = self.embed_dim
        B, Tq, Eq = q_in.shape
        if Eq != E:
            raise ValueError(f"query: expected last dimension embed_dim={E}, got shape {tuple(query.shape)}")
        if k_in.shape[2] != self.kdim or v_in.shape[2] != self.vdim:
            raise ValueError(
                f"key/value: expected last dimensions kdim={self.kdim}, vdim={self.vdim}, got shapes "
                f"{tuple(key.shape)}, {tuple(value.shape)}"
            )
        if k_in.shape[:2] != v_in.shape[:2] or k_in.shape[0] != B:
            raise ValueError(
                "key/value: expected the same batch as query and equal lengths, got query "
                f"{tuple(query.shape)}, "
                f"key {tuple(key.shape)}, value {tuple(value.shape)}"
            )
        Tk = k_in.shape[1]
        kpm = key_padding_mask
        if kpm is not None and not batched:
            kpm = np.asarray(kpm.data if isinstance(kpm, Tensor) else kpm).reshape(1, -1)
        mask, kp_bias = self._masks(attn_mask, kpm, B, Tq, Tk)

        w, b = self.in_proj_weight, self.in_proj_bias
        bq = bk = bv = None
        if b is not None and not (self._qkv_same_embed_dim and self_attn):
            bq, bk, bv = (_row_slice(b, i * E, (i + 1) * E) for i in range(3))
        if self._qkv_same_embed_dim and self_attn:
            assert w is not None
            packed = F.linear(q_in, w, b)
            q, k, v = packed, None, None
        elif self._qkv_same_embed_dim and key is value:
            assert w is not None
            q = F.linear(q_in, _row_slice(w, 0, E), bq)
            bkv = None if b is None else _row_slice(b, E, 3 * E)
            k = F.linear(k_in, _row_slice(w, E, 3 * E), bkv)
            v = None
        else:
            if self._qkv_same_embed_dim:
                assert w is not None
                wq, wk, wv = (_row_slice(w, i * E, (i + 1) * E) for i in range(3))
            else:
                assert self.q_proj_weight is not None and self.k_proj_weight is not None
                assert self.v_proj_weight is not None  # separate projections when kdim/vdim differ
                wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
            q = F.linear(q_in, wq, bq)
            k = F.linear(k_in, wk, bk)
            v = F.linear(v_in, wv, bv)
        dropout_p = self.dropout if self.training else 0.0
        attn, weights = F.multi_head_attention_core(
            q, k, v, self.num_heads, mask, kp_bias, bool(is_causal), dropout_p, bool(need_weights)
        )
        out = self.out_proj(attn)
        if not batched:
            out = out.reshape(Tq, E)
        elif not self.batch_first:
            out = out.transpose(1, 0, 2)
        if weights is None:
            return out, None
        if average_attn_weights:
            weights = weights.mean(axis=1)
        if not batched:
            weights = weights[0]
        return out, Tensor(np.ascontiguousarray(weights, dtype=np.float32))

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
            f"kdim={self.kdim}, vdim={self.vdim}, batch_first={self.batch_first}"
        )
