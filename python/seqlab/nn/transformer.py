"""Transformer blocks: ``TransformerEncoderLayer`` (mirroring torch's) and a pre-LayerNorm
causal decoder block for language models (GPT-2's block)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from .. import functional as F
from ..autograd import Tensor
from .activation import GELU
from .attention import MultiheadAttention
from .container import Sequential
from .dropout import Dropout
from .linear import Linear
from .module import Module
from .normalization import LayerNorm


def _activation(activation: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    if callable(activation):
        return activation
    if activation == "relu":
        return F.relu
    if activation == "gelu":
        return F.gelu
    raise ValueError(f"activation: expected 'relu', 'gelu' or a callable, got {activation!r}")


# Activations the linear kernel applies in its epilogue (F.linear_activation).
_FUSED: dict[Callable[[Tensor], Tensor], str] = {F.relu: "relu", F.gelu: "gelu"}


class TransformerEncoderLayer(Module):
    """Self-attention and feed-forward block, as ``torch.nn.TransformerEncoderLayer``.

    Args:
        d_model: model width E.
        nhead: attention heads (must divide d_model).
        dim_feedforward: hidden width of the feed-forward network.
        dropout: dropout on the attention weights, after attention and in the feed-forward.
        activation: ``"relu"``, ``"gelu"`` (exact) or a callable on tensors.
        layer_norm_eps: LayerNorm epsilon.
        batch_first: (B, T, E) inputs (default here; torch's default is False).
        norm_first: pre-LayerNorm (``x + sa(norm1(x))``) instead of post (``norm1(x + sa(x))``).
        bias: biases in the linear layers and LayerNorms.

    Submodules carry torch's names (``self_attn``, ``linear1``, ``dropout``, ``linear2``,
    ``norm1``, ``norm2``, ``dropout1``, ``dropout2``), so state dicts move both ways.
    Shapes: src (B, T, E) -> (B, T, E).
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable[[Tensor], Tensor] = "relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = True,
        norm_first: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(
            d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first
        )
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias)
        self.norm_first = bool(norm_first)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = _activation(activation)
        self._fused_activation = _FUSED.get(self.activation)

    def _sa_block(self, x: Tensor, attn_mask: Any, key_padding_mask: Any, is_causal: bool) -> Tensor:
        out, _ = self.self_attn(
            x,
            x,
            x,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=False,
            is_causal=is_causal,
        )
        return self.dropout1(out)

    def _ff_block(self, x: Tensor) -> Tensor:
        if self._fused_activation is not None:  # bias and activation in the GEMM's epilogue
            h = F.linear_activation(x, self.linear1.weight, self.linear1.bias, self._fused_activation)
        else:
            h = self.activation(self.linear1(x))
        return self.dropout2(self.linear2(self.dropout(h)))

    def forward(
        self, src: Any, src_mask: Any = None, src_key_padding_mask: Any = None, is_causal: bool = False
    ) -> Tensor:
        """src (B, T, E); ``src_mask`` (T, T) and ``src_key_padding_mask`` (B, T) as in
        :meth:`MultiheadAttention.forward`; ``is_causal`` applies the causal mask."""
        x = src if isinstance(src, Tensor) else Tensor(src)
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x


class TransformerDecoderBlock(Module):
    """Pre-LayerNorm causal self-attention block of a GPT-style language model.

    ``x = x + dropout(attn(ln_1(x), causal)); x = x + dropout(mlp(ln_2(x)))`` with
    ``mlp = Linear(E, F) -> GELU -> Linear(F, E)``.

    Args:
        d_model: model width E.
        nhead: attention heads (must divide d_model).
        dim_feedforward: MLP hidden width F (default 4 E).
        dropout: dropout on the attention weights and on both residual branches.
        layer_norm_eps: LayerNorm epsilon.
        bias: biases in the linear layers and LayerNorms.
        gelu_approximate: ``"tanh"`` (GPT-2) or ``"none"`` (exact).

    Submodules: ``ln_1``, ``attn`` (a batch-first :class:`MultiheadAttention`), ``ln_2``,
    ``mlp`` (``mlp.0`` and ``mlp.2`` the linear layers), ``dropout``.
    Shapes: x (B, T, E) -> (B, T, E).
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int | None = None,
        dropout: float = 0.0,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        gelu_approximate: str = "tanh",
    ) -> None:
        super().__init__()
        hidden = 4 * d_model if dim_feedforward is None else dim_feedforward
        self.ln_1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=True)
        self.ln_2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.mlp = Sequential(
            Linear(d_model, hidden, bias=bias), GELU(gelu_approximate), Linear(hidden, d_model, bias=bias)
        )
        self.dropout = Dropout(dropout)

    def forward(self, x: Any, key_padding_mask: Any = None) -> Tensor:
        """x (B, T, E); ``key_padding_mask`` (B, T) bool, True = padding key."""
        x = x if isinstance(x, Tensor) else Tensor(x)
        h = self.ln_1(x)
        a, _ = self.attn(h, h, h, key_padding_mask=key_padding_mask, need_weights=False, is_causal=True)
        x = x + self.dropout(a)
        fc, gelu, proj = cast(Linear, self.mlp[0]), cast(GELU, self.mlp[1]), self.mlp[2]
        # Linear -> GELU as one fused op (bias and GELU in the GEMM's epilogue).
        act = "gelu_tanh" if gelu.approximate == "tanh" else "gelu"
        h = F.linear_activation(self.ln_2(x), fc.weight, fc.bias, act)
        return x + self.dropout(proj(h))


GPTBlock = TransformerDecoderBlock
